//! Expectations (kube-controller-manager's `ControllerExpectations`): what a controller has
//! asked the API for and not yet seen in its cache. While a controller still expects its own
//! creations or deletions, its cache lags behind its actions, and acting on that cache again
//! would create or delete twice; so it waits until it has seen them all, or until they are
//! five minutes old (a watch event lost for good must not stall it forever).
//!
//! Pure: `now` comes from the caller.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How long expectations hold before the controller acts anyway (Kubernetes: 5 minutes).
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    creations: u32,
    /// The names of the objects whose deletion was asked for and not yet seen.
    deletions: BTreeSet<String>,
    since: Instant,
}

/// Per controller key (`namespace/name`), what it still expects.
#[derive(Debug, Clone, Default)]
pub struct Expectations {
    pending: BTreeMap<String, Pending>,
}

impl Expectations {
    /// Whether `key` may act on its cache: nothing pending, or pending too long.
    pub fn satisfied(&self, key: &str, now: Instant) -> bool {
        self.pending.get(key).is_none_or(|p| {
            (p.creations == 0 && p.deletions.is_empty())
                || now.saturating_duration_since(p.since) >= EXPECTATIONS_TIMEOUT
        })
    }

    /// How long until `key`'s unsatisfied expectations lapse (`None`: satisfied): a
    /// controller waiting on them looks again then, even if no event comes.
    pub fn lapses_in(&self, key: &str, now: Instant) -> Option<Duration> {
        if self.satisfied(key, now) {
            return None;
        }
        let since = self.pending.get(key)?.since;
        Some(EXPECTATIONS_TIMEOUT.saturating_sub(now.saturating_duration_since(since)))
    }

    /// The controller is about to ask for `creations` new objects and the deletion of
    /// `deletions`; this replaces what it expected before.
    pub fn expect(&mut self, key: &str, creations: u32, deletions: &[String], now: Instant) {
        self.pending.insert(
            key.to_string(),
            Pending {
                creations,
                deletions: deletions.iter().cloned().collect(),
                since: now,
            },
        );
    }

    /// One creation of `key`'s was seen in the cache, or failed (and so will never be seen).
    pub fn creation_observed(&mut self, key: &str) {
        if let Some(p) = self.pending.get_mut(key) {
            p.creations = p.creations.saturating_sub(1);
        }
    }

    /// The deletion of `name` was seen, or failed.
    pub fn deletion_observed(&mut self, key: &str, name: &str) {
        if let Some(p) = self.pending.get_mut(key) {
            p.deletions.remove(name);
        }
    }

    /// The controller is gone: forget it.
    pub fn forget(&mut self, key: &str) {
        self.pending.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_controller_waits_until_every_creation_and_deletion_is_seen() {
        let now = Instant::now();
        let mut e = Expectations::default();
        assert!(e.satisfied("ns/rs", now), "nothing expected");
        e.expect("ns/rs", 2, &["p1".to_string()], now);
        assert!(!e.satisfied("ns/rs", now));
        e.creation_observed("ns/rs");
        e.creation_observed("ns/rs");
        assert!(!e.satisfied("ns/rs", now), "p1's deletion not seen yet");
        e.deletion_observed("ns/rs", "other");
        assert!(
            !e.satisfied("ns/rs", now),
            "another pod's deletion does not count"
        );
        e.deletion_observed("ns/rs", "p1");
        assert!(e.satisfied("ns/rs", now));
        assert!(e.satisfied("ns/other", now), "keys are independent");
    }

    #[test]
    fn expectations_lapse_after_five_minutes() {
        let now = Instant::now();
        let mut e = Expectations::default();
        e.expect("ns/rs", 1, &[], now);
        assert!(!e.satisfied(
            "ns/rs",
            now + EXPECTATIONS_TIMEOUT - Duration::from_millis(1)
        ));
        assert!(e.satisfied("ns/rs", now + EXPECTATIONS_TIMEOUT));
    }

    #[test]
    fn extra_observations_never_go_below_zero() {
        let now = Instant::now();
        let mut e = Expectations::default();
        e.expect("ns/rs", 1, &[], now);
        e.creation_observed("ns/rs");
        e.creation_observed("ns/rs");
        e.expect("ns/rs", 1, &[], now);
        assert!(!e.satisfied("ns/rs", now));
        e.forget("ns/rs");
        assert!(e.satisfied("ns/rs", now));
    }
}
