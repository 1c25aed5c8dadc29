//! The proxy's Prometheus metrics: `rudder_proxy_sync_duration_seconds` (one write of the
//! table: the `nft` transaction and the conntrack clean-up after it),
//! `rudder_proxy_sync_failures_total`, and what the table holds after the last write that
//! succeeded: `rudder_proxy_services`, `rudder_proxy_rules` (in the Services' chains) and
//! `rudder_proxy_map_elements` (in the table's sets and maps).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;
use rudder_proto::metrics::{duration_histogram, Metrics};

use super::ruleset::Ruleset;

/// The proxy's figures; clones share them. [`Default`] makes figures no registry serves.
#[derive(Clone, Debug)]
pub struct ProxyMetrics {
    pub sync_duration: Histogram,
    pub sync_failures: Counter,
    services: Gauge,
    rules: Gauge,
    map_elements: Gauge,
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        Self {
            sync_duration: duration_histogram(),
            sync_failures: Counter::default(),
            services: Gauge::default(),
            rules: Gauge::default(),
            map_elements: Gauge::default(),
        }
    }
}

impl ProxyMetrics {
    /// New figures, registered in `metrics`.
    pub fn registered(metrics: &Metrics) -> Self {
        let figures = Self::default();
        metrics.register_with_unit(
            "rudder_proxy_sync_duration",
            "Time to write the node's table (nft transaction and conntrack clean-up)",
            Unit::Seconds,
            figures.sync_duration.clone(),
        );
        metrics.register(
            "rudder_proxy_sync_failures",
            "Writes of the node's table that failed",
            figures.sync_failures.clone(),
        );
        metrics.register(
            "rudder_proxy_services",
            "Services in the node's table",
            figures.services.clone(),
        );
        metrics.register(
            "rudder_proxy_rules",
            "Rules in the Services' chains of the node's table",
            figures.rules.clone(),
        );
        metrics.register(
            "rudder_proxy_map_elements",
            "Elements in the node's table's sets and maps",
            figures.map_elements.clone(),
        );
        figures
    }

    /// The table now holds `rules`.
    pub fn written(&self, rules: &Ruleset) {
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.services.set(count(rules.services().len()));
        self.rules.set(count(rules.rule_count()));
        self.map_elements.set(count(rules.elements().count()));
    }
}
