//! What every controller's shell shares: the gate that holds its workers until all its
//! caches have synced (client-go's `WaitForCacheSync`: a sync on a cache still filling sees
//! too little and acts twice), and the worker loop over its work queue.

use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::time::Duration;

use rudder_proto::client::ClientError;

use crate::queue::WorkQueue;

/// Which of a controller's caches have applied their first list.
#[derive(Debug, Clone)]
pub struct SyncGate {
    synced: Vec<bool>,
    opened: bool,
}

impl SyncGate {
    /// A gate over `caches` caches.
    pub fn new(caches: usize) -> Self {
        Self {
            synced: vec![false; caches],
            opened: false,
        }
    }

    /// Cache `which` has synced: true exactly once, when the last of them has.
    pub fn synced(&mut self, which: usize) -> bool {
        if let Some(flag) = self.synced.get_mut(which) {
            *flag = true;
        }
        if self.opened || !self.synced.iter().all(|s| *s) {
            return false;
        }
        self.opened = true;
        true
    }
}

/// Takes keys from `queue` until it shuts down: a sync that succeeds is forgotten by the
/// backoff (and looked at again when it asks), one that fails is retried after the key's
/// backoff. `what` names the controller in the logs.
pub async fn work<K, F, Fut>(queue: WorkQueue<K>, what: &'static str, sync: F)
where
    K: Eq + Hash + Clone + Display,
    F: Fn(K) -> Fut,
    Fut: Future<Output = Result<Option<Duration>, ClientError>>,
{
    while let Some(key) = queue.next().await {
        match sync(key.clone()).await {
            Ok(requeue) => {
                queue.forget(&key);
                if let Some(after) = requeue {
                    queue.add_after(key.clone(), after);
                }
            }
            Err(error) => {
                let delay = queue.add_rate_limited(key.clone());
                if error.is_fence_refused() {
                    tracing::info!(controller = what, %key, "the controller lease is lost; this write was refused");
                } else {
                    tracing::warn!(controller = what, %key, %error, ?delay, "syncing; retrying");
                }
            }
        }
        queue.done(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_opens_once_when_the_last_cache_syncs() {
        let mut gate = SyncGate::new(3);
        assert!(!gate.synced(0));
        assert!(!gate.synced(0), "the same cache twice is not all");
        assert!(!gate.synced(2));
        assert!(gate.synced(1));
        assert!(!gate.synced(1), "a relist's Synced does not open it again");
    }
}
