//! The assume cache's bookkeeping, as kube-scheduler's: a pod is assumed on its node as soon
//! as it is placed, so the next decision counts its requests before the bind returns. The
//! watch confirms it (the pod shows up bound); a failed bind forgets it; an assumption the
//! watch has not confirmed 30 s after its bind returned expires (the bind's effect was lost
//! or the pod went away unseen). Pure: time is an argument.
//!
//! ```text
//!  assume(placed) ─► binding ── bind ok ─► bound (deadline now + 30 s) ── watch ─► confirmed
//!                             └─ bind failed ─► forgotten            └─ deadline ─► expired
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::informer::ObjectKey;

/// How long a bound pod may stay unconfirmed by the watch (kube-scheduler's
/// `durationToExpireAssumedPod`).
pub const ASSUMED_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Assumption {
    node: String,
    /// `None` while its bind is in flight: an assumption never expires mid-bind.
    deadline: Option<Instant>,
}

/// The pods assumed on a node and not yet seen bound.
#[derive(Debug, Default)]
pub struct Assumed {
    pods: HashMap<ObjectKey, Assumption>,
}

impl Assumed {
    /// `key` was placed on `node`; its bind starts.
    pub fn assume(&mut self, key: ObjectKey, node: &str) {
        self.pods.insert(
            key,
            Assumption {
                node: node.to_string(),
                deadline: None,
            },
        );
    }

    /// Its bind succeeded at `now`: the watch has [`ASSUMED_TTL`] to show it.
    pub fn bound(&mut self, key: &ObjectKey, now: Instant) {
        if let Some(assumption) = self.pods.get_mut(key) {
            assumption.deadline = Some(now + ASSUMED_TTL);
        }
    }

    /// The node `key` is assumed on, if it is.
    pub fn node_of(&self, key: &ObjectKey) -> Option<&str> {
        self.pods.get(key).map(|a| a.node.as_str())
    }

    /// The watch showed the pod (bound, or gone): the assumption ends. Returns whether
    /// there was one.
    pub fn end(&mut self, key: &ObjectKey) -> bool {
        self.pods.remove(key).is_some()
    }

    /// Removes and returns the assumptions whose deadline passed.
    pub fn expire(&mut self, now: Instant) -> Vec<(ObjectKey, String)> {
        let expired: Vec<ObjectKey> = self
            .pods
            .iter()
            .filter(|(_, a)| a.deadline.is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        expired
            .into_iter()
            .filter_map(|key| self.pods.remove(&key).map(|a| (key, a.node)))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assumption_expires_only_after_its_bind_and_the_ttl() {
        let t0 = Instant::now();
        let key = ObjectKey::new("default", "a");
        let mut assumed = Assumed::default();
        assumed.assume(key.clone(), "node-1");
        assert!(
            assumed.expire(t0 + Duration::from_secs(3_600)).is_empty(),
            "never while binding"
        );
        assumed.bound(&key, t0);
        assert!(assumed
            .expire(t0 + ASSUMED_TTL - Duration::from_millis(1))
            .is_empty());
        assert_eq!(
            assumed.expire(t0 + ASSUMED_TTL),
            vec![(key.clone(), "node-1".to_string())]
        );
        assert!(assumed.is_empty());
    }

    #[test]
    fn the_watch_ends_an_assumption() {
        let key = ObjectKey::new("default", "a");
        let mut assumed = Assumed::default();
        assumed.assume(key.clone(), "node-1");
        assert_eq!(assumed.node_of(&key), Some("node-1"));
        assert!(assumed.end(&key));
        assert!(!assumed.end(&key));
        assert_eq!(assumed.len(), 0);
    }
}
