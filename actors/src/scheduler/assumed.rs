//! The assume cache's bookkeeping, as kube-scheduler's: a pod is assumed on its node as soon
//! as it is placed, so the next decision counts its requests before the bind returns. The
//! watch confirms it (the pod shows up bound); a failed bind forgets it; an assumption the
//! watch has not confirmed 30 s after its bind returned, although the cache has seen past
//! the bind's revision, expires (the pod went away unseen). A cache that merely lags (a
//! reconnecting watch, a long relist) expires nothing. Each assumption is of one pod (its
//! uid): a pod deleted and created again under the same name is another. Pure: time and
//! revisions are arguments.
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
    uid: String,
    node: String,
    /// `None` while its bind is in flight: an assumption never expires mid-bind.
    deadline: Option<Instant>,
    /// The revision the bind wrote, once it returned.
    revision: u64,
}

/// The pods assumed on a node and not yet seen bound.
#[derive(Debug, Default)]
pub struct Assumed {
    pods: HashMap<ObjectKey, Assumption>,
}

impl Assumed {
    /// Pod `key` with `uid` was placed on `node`; its bind starts.
    pub fn assume(&mut self, key: ObjectKey, uid: &str, node: &str) {
        self.pods.insert(
            key,
            Assumption {
                uid: uid.to_string(),
                node: node.to_string(),
                deadline: None,
                revision: 0,
            },
        );
    }

    /// Its bind succeeded at `now`, writing `revision`: the watch has [`ASSUMED_TTL`] to
    /// show it once the cache is past that revision.
    pub fn bound(&mut self, key: &ObjectKey, uid: &str, revision: u64, now: Instant) {
        if let Some(assumption) = self.pods.get_mut(key).filter(|a| a.uid == uid) {
            assumption.deadline = Some(now + ASSUMED_TTL);
            assumption.revision = revision;
        }
    }

    /// The node `key` is assumed on, if it is.
    pub fn node_of(&self, key: &ObjectKey) -> Option<&str> {
        self.pods.get(key).map(|a| a.node.as_str())
    }

    /// Whether the assumption for `key` is of the pod with `uid`.
    pub fn is_of(&self, key: &ObjectKey, uid: &str) -> bool {
        self.pods.get(key).is_some_and(|a| a.uid == uid)
    }

    /// The watch showed the pod (bound, or gone), or its bind failed: the assumption of
    /// the pod with `uid` ends. Returns whether there was one.
    pub fn end(&mut self, key: &ObjectKey, uid: &str) -> bool {
        if self.is_of(key, uid) {
            self.pods.remove(key);
            return true;
        }
        false
    }

    /// Removes and returns the assumptions whose deadline passed while the cache (at
    /// `cache_revision`) has seen past their bind.
    pub fn expire(&mut self, now: Instant, cache_revision: u64) -> Vec<(ObjectKey, String)> {
        let expired: Vec<ObjectKey> = self
            .pods
            .iter()
            .filter(|(_, a)| a.deadline.is_some_and(|d| d <= now) && cache_revision >= a.revision)
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
    fn an_assumption_expires_only_after_its_bind_the_ttl_and_the_cache_catching_up() {
        let t0 = Instant::now();
        let key = ObjectKey::new("default", "a");
        let mut assumed = Assumed::default();
        assumed.assume(key.clone(), "u1", "node-1");
        assert!(
            assumed
                .expire(t0 + Duration::from_secs(3_600), 100)
                .is_empty(),
            "never while binding"
        );
        assumed.bound(&key, "u1", 50, t0);
        assert!(assumed
            .expire(t0 + ASSUMED_TTL - Duration::from_millis(1), 100)
            .is_empty());
        assert!(
            assumed.expire(t0 + ASSUMED_TTL, 49).is_empty(),
            "the cache has not seen the bind yet: it lags, nothing is lost"
        );
        assert_eq!(
            assumed.expire(t0 + ASSUMED_TTL, 50),
            vec![(key.clone(), "node-1".to_string())]
        );
        assert!(assumed.is_empty());
    }

    #[test]
    fn the_watch_ends_an_assumption_of_the_same_pod_only() {
        let key = ObjectKey::new("default", "a");
        let mut assumed = Assumed::default();
        assumed.assume(key.clone(), "u2", "node-1");
        assert_eq!(assumed.node_of(&key), Some("node-1"));
        assert!(!assumed.end(&key, "u1"), "the old pod of that name");
        assumed.bound(&key, "u1", 7, Instant::now());
        assert!(assumed.expire(Instant::now() + ASSUMED_TTL, 100).is_empty());
        assert!(assumed.end(&key, "u2"));
        assert!(!assumed.end(&key, "u2"));
        assert_eq!(assumed.len(), 0);
    }
}
