//! The scheduler's Prometheus metrics: `rudder_scheduler_scheduling_attempt_duration_seconds`
//! by result (`scheduled`: a node was chosen, `unschedulable`: none fits), `rudder_scheduler_binds_total`
//! by result (`bound`, `error`), and `rudder_scheduler_pending_pods` by queue (`active`,
//! `backoff`, `unschedulable`, `in_flight`: placed, its bind not yet seen through), looked
//! at every tick; `rudder_scheduler_is_leader`: whether this process schedules now.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;
use rudder_proto::metrics::{duration_histogram, observe, Metrics};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: &'static str,
}

/// The scheduler's figures; clones share them (every term of leadership reports to the
/// same series). [`Default`] makes figures no registry serves.
#[derive(Clone, Debug)]
pub struct SchedulerMetrics {
    attempt_duration: Family<ResultLabel, Histogram, fn() -> Histogram>,
    binds: Family<ResultLabel, Counter>,
    pending: Family<QueueLabel, Gauge>,
    /// 1 while this process holds the scheduler lease and schedules.
    pub leading: Gauge,
}

impl Default for SchedulerMetrics {
    fn default() -> Self {
        Self {
            leading: Gauge::default(),
            attempt_duration: Family::new_with_constructor(duration_histogram),
            binds: Family::default(),
            pending: Family::default(),
        }
    }
}

impl SchedulerMetrics {
    /// New figures, registered in `metrics`.
    pub fn registered(metrics: &Metrics) -> Self {
        let figures = Self::default();
        metrics.register(
            "rudder_scheduler_is_leader",
            "1 while this process holds the scheduler lease and schedules",
            figures.leading.clone(),
        );
        metrics.register_with_unit(
            "rudder_scheduler_scheduling_attempt_duration",
            "Time to decide where one pod goes, by result",
            Unit::Seconds,
            figures.attempt_duration.clone(),
        );
        metrics.register(
            "rudder_scheduler_binds",
            "Binds of pods to nodes, by result",
            figures.binds.clone(),
        );
        metrics.register(
            "rudder_scheduler_pending_pods",
            "Pods in the scheduling queue, by queue",
            figures.pending.clone(),
        );
        figures
    }

    /// One decision took `took`; `placed`: a node was chosen.
    pub fn attempted(&self, placed: bool, took: std::time::Duration) {
        let result = if placed { "scheduled" } else { "unschedulable" };
        observe(
            &self.attempt_duration.get_or_create(&ResultLabel { result }),
            took,
        );
    }

    /// One bind answered; `bound`: the API took it.
    pub fn bind_answered(&self, bound: bool) {
        let result = if bound { "bound" } else { "error" };
        self.binds.get_or_create(&ResultLabel { result }).inc();
    }

    /// The queue holds (active, backing off, parked unschedulable, in flight) pods.
    pub fn queued(&self, (active, backoff, parked, in_flight): (usize, usize, usize, usize)) {
        let places = [
            ("active", active),
            ("backoff", backoff),
            ("unschedulable", parked),
            ("in_flight", in_flight),
        ];
        for (queue, count) in places {
            let count = i64::try_from(count).unwrap_or(i64::MAX);
            self.pending.get_or_create(&QueueLabel { queue }).set(count);
        }
    }
}
