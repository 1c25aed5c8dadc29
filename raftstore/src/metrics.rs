//! The store's Prometheus metrics: `rudder_raft_*` (Raft's term, leadership, log indexes
//! and the latencies of proposals, applies and log fsyncs) and `rudder_store_*` (database
//! size, keys, watchers, events sent, compactions).
//!
//! [`StoreMetrics`] holds what the code records as it runs (counters and histograms, cheap
//! to touch on the write path); `store::figures` reads the rest from the member at each
//! scrape; [`count_leader_changes`] follows openraft's metrics to count leaders seen.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;
use rudder_proto::metrics::{duration_histogram, Metrics};
use tokio::sync::watch;

use crate::types::{Member, NodeId};

type ServerMetrics = openraft::metrics::RaftServerMetrics<NodeId, Member>;

/// What the store records as it runs. Clones share the figures; [`Default`] makes figures
/// no registry serves (for code run outside a member, as the storage tests do).
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    /// From a write's arrival at this member to its answer, whatever it is (forwarding to
    /// the leader and commit included).
    pub proposal_duration: Histogram,
    /// Writes that got no outcome: no leader in time, timed out, the member stopping (a
    /// write refused by its own compare, or as invalid, has an outcome).
    pub proposals_failed: Counter,
    /// Applying one batch of committed entries to the state machine.
    pub apply_duration: Histogram,
    /// One fsync of the Raft log (covering every append queued behind it).
    pub log_fsync_duration: Histogram,
    /// The highest log index this member knows to be committed.
    pub commit_index: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Leaders this member has seen take over (etcd's `leader_changes_seen`).
    pub leader_changes: Counter,
    pub snapshots_sent: Counter,
    pub snapshots_received: Counter,
    /// Watches open on this member.
    pub watchers: Gauge,
    /// Events sent to watchers.
    pub watch_events_sent: Counter,
    /// Compactions applied.
    pub compactions: Counter,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self {
            proposal_duration: duration_histogram(),
            proposals_failed: Counter::default(),
            apply_duration: duration_histogram(),
            log_fsync_duration: duration_histogram(),
            commit_index: Gauge::default(),
            leader_changes: Counter::default(),
            snapshots_sent: Counter::default(),
            snapshots_received: Counter::default(),
            watchers: Gauge::default(),
            watch_events_sent: Counter::default(),
            compactions: Counter::default(),
        }
    }
}

impl StoreMetrics {
    /// New figures, registered in `metrics`.
    pub fn registered(metrics: &Metrics) -> Self {
        let figures = Self::default();
        let seconds = || Unit::Seconds;
        metrics.register_with_unit(
            "rudder_raft_proposal_duration",
            "Time from a write's arrival at this member to its answer, failures included",
            seconds(),
            figures.proposal_duration.clone(),
        );
        metrics.register(
            "rudder_raft_proposals_failed",
            "Writes that got no outcome (no leader in time, timed out, member stopping)",
            figures.proposals_failed.clone(),
        );
        metrics.register_with_unit(
            "rudder_raft_apply_duration",
            "Time to apply one batch of committed entries",
            seconds(),
            figures.apply_duration.clone(),
        );
        metrics.register_with_unit(
            "rudder_raft_log_fsync_duration",
            "Time of one fsync of the Raft log",
            seconds(),
            figures.log_fsync_duration.clone(),
        );
        metrics.register(
            "rudder_raft_commit_index",
            "The highest log index this member knows to be committed",
            figures.commit_index.clone(),
        );
        metrics.register(
            "rudder_raft_leader_changes_seen",
            "Leaders this member has seen take over",
            figures.leader_changes.clone(),
        );
        metrics.register(
            "rudder_raft_snapshots_sent",
            "Raft snapshots sent to lagging members",
            figures.snapshots_sent.clone(),
        );
        metrics.register(
            "rudder_raft_snapshots_received",
            "Raft snapshots received from a leader",
            figures.snapshots_received.clone(),
        );
        metrics.register(
            "rudder_store_watchers",
            "Watches open on this member",
            figures.watchers.clone(),
        );
        metrics.register(
            "rudder_store_watch_events_sent",
            "Events sent to watchers",
            figures.watch_events_sent.clone(),
        );
        metrics.register(
            "rudder_store_compactions",
            "Compactions applied",
            figures.compactions.clone(),
        );
        figures
    }
}

/// Counts one open watch while it lives.
#[derive(Debug)]
pub struct OpenWatch(Gauge);

impl OpenWatch {
    pub fn new(watchers: &Gauge) -> Self {
        watchers.inc();
        Self(watchers.clone())
    }
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The leaders a member has seen: a leader counts when it is not the last one seen, or
/// when the last one is seen again in a later term (it lost leadership and won it back);
/// a leaderless moment between two terms counts nothing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LeaderSightings {
    last: Option<(NodeId, u64)>,
}

impl LeaderSightings {
    /// Whether `leader` in `term` is a change from the last leader seen (remembered).
    pub fn saw(&mut self, leader: Option<NodeId>, term: u64) -> bool {
        let Some(leader) = leader else {
            return false;
        };
        let changed = match self.last {
            Some((last, last_term)) => last != leader || term > last_term,
            None => true,
        };
        if changed {
            self.last = Some((leader, term));
        }
        changed
    }
}

/// Counts every leader seen in openraft's server metrics (which change with the vote,
/// the state, the leader or the membership only, not with every write) until they close
/// (the member stopped), the first included, as etcd's `leader_changes_seen_total` does.
pub async fn count_leader_changes(
    mut raft_metrics: watch::Receiver<ServerMetrics>,
    leader_changes: Counter,
) {
    let mut sightings = LeaderSightings::default();
    loop {
        let (leader, term) = {
            let now = raft_metrics.borrow_and_update();
            (now.current_leader, now.vote.leader_id().term)
        };
        if sightings.saw(leader, term) {
            leader_changes.inc();
        }
        if raft_metrics.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_leader_counts_once_and_a_leaderless_moment_does_not() {
        let mut sightings = LeaderSightings::default();
        assert!(!sightings.saw(None, 1), "no leader yet");
        assert!(sightings.saw(Some(2), 2), "the first leader seen");
        assert!(!sightings.saw(Some(2), 2), "the same report again");
        assert!(!sightings.saw(None, 3), "between terms");
        assert!(sightings.saw(Some(3), 3), "another member leads");
        assert!(
            sightings.saw(Some(3), 5),
            "it won leadership back in a later term"
        );
        assert!(!sightings.saw(Some(3), 5));
        assert!(sightings.saw(Some(2), 6));
    }
}
