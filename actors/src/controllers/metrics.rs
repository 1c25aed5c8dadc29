//! The controllers' Prometheus metrics, by controller name: `rudder_controller_queue_depth`
//! (keys ready in its work queue), `rudder_controller_reconcile_duration_seconds` (one sync
//! of one key) and `rudder_controller_reconcile_errors_total` (syncs that failed and were
//! put back with a backoff; a write the fence refused counts too).
//!
//! `rudder_controller_manager_is_leader` says whether this process runs them now (the
//! others stand by, and show no series of their own until they lead). The families outlive
//! the terms of leadership: each term's queues and workers report to
//! the same series.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;
use rudder_proto::metrics::{duration_histogram, Metrics};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabel {
    controller: &'static str,
}

/// Every controller's figures; clones share them. [`Default`] makes figures no registry
/// serves.
#[derive(Clone, Debug)]
pub struct ControllerMetrics {
    queue_depth: Family<ControllerLabel, Gauge>,
    reconcile_duration: Family<ControllerLabel, Histogram, fn() -> Histogram>,
    reconcile_errors: Family<ControllerLabel, Counter>,
    /// 1 while this process holds the controller lease and runs the controllers.
    pub leading: Gauge,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        Self {
            leading: Gauge::default(),
            queue_depth: Family::default(),
            reconcile_duration: Family::new_with_constructor(duration_histogram),
            reconcile_errors: Family::default(),
        }
    }
}

/// One controller's series.
#[derive(Clone, Debug)]
pub struct ControllerFigures {
    pub queue_depth: Gauge,
    pub reconcile_duration: Histogram,
    pub reconcile_errors: Counter,
}

impl ControllerMetrics {
    /// New figures, registered in `metrics`.
    pub fn registered(metrics: &Metrics) -> Self {
        let figures = Self::default();
        metrics.register(
            "rudder_controller_manager_is_leader",
            "1 while this process holds the controller lease and runs the controllers",
            figures.leading.clone(),
        );
        metrics.register(
            "rudder_controller_queue_depth",
            "Keys ready in a controller's work queue",
            figures.queue_depth.clone(),
        );
        metrics.register_with_unit(
            "rudder_controller_reconcile_duration",
            "Time of one sync of one key",
            Unit::Seconds,
            figures.reconcile_duration.clone(),
        );
        metrics.register(
            "rudder_controller_reconcile_errors",
            "Syncs that failed and were retried after a backoff",
            figures.reconcile_errors.clone(),
        );
        figures
    }

    /// The series of `controller`.
    pub fn of(&self, controller: &'static str) -> ControllerFigures {
        let label = ControllerLabel { controller };
        ControllerFigures {
            queue_depth: self.queue_depth.get_or_create_owned(&label),
            reconcile_duration: self.reconcile_duration.get_or_create_owned(&label),
            reconcile_errors: self.reconcile_errors.get_or_create_owned(&label),
        }
    }
}
