//! [`SharedInformers`]: one informer per kind for every component of a process that follows
//! every object of that kind, as client-go's shared informer factory. A master runs the
//! controller manager and the scheduler; each followed every pod on its own, and a typed pod
//! costs about 12 KB in memory, so at 10,000 pods the second copy was 125 MB of the leading
//! master's heap (heaptrack, BENCHMARKS.md "The controllers").
//!
//! ```text
//!  controller manager term ─┐                      ┌─► Cache<Pod> (one, with the indexes
//!                           ├─ SharedInformers::all::<Pod>(indexes) ─►   both asked for)
//!  scheduler term ──────────┘         │
//!                          first asker starts the informer; the last handle dropped stops it
//! ```
//!
//! A handle ([`SharedCache`]) is held for a term of leadership: while any component leads,
//! the informer runs; when none does, it stops and its cache is freed. The informer lists and
//! watches with the client of the component that asked first, on that component's tokio
//! runtime: components sharing a kind must each be allowed to read all of it (the scheduler
//! and the controller manager are, by the default roles), and in a master every component's
//! runtime lives as long as the master.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};

use rudder_proto::client::ApiClient;

use super::{ApiObject, Cache, Index, Informer, Query};

/// The informers of one process, by kind. Clones share them.
#[derive(Clone, Default)]
pub struct SharedInformers {
    /// Per kind, a `Weak<Running<K>>`: alive while some [`SharedCache`] holds it.
    running: Arc<Mutex<HashMap<TypeId, Box<dyn Any + Send>>>>,
}

impl fmt::Debug for SharedInformers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds = self.lock().len();
        f.debug_struct("SharedInformers")
            .field("kinds", &kinds)
            .finish()
    }
}

/// One running informer; stopped when the last handle to it goes.
struct Running<K> {
    informer: Informer<K>,
}

impl<K> Drop for Running<K> {
    fn drop(&mut self) {
        // What `Informer::stop` does, which needs `K: ApiObject` (a bound `Drop` cannot add).
        let _ = self.informer.stop.send(());
    }
}

/// A component's hold on a shared informer's cache: the informer runs while one is held.
pub struct SharedCache<K> {
    running: Arc<Running<K>>,
}

impl<K> Clone for SharedCache<K> {
    fn clone(&self) -> Self {
        Self {
            running: self.running.clone(),
        }
    }
}

impl<K: ApiObject> SharedCache<K> {
    pub fn cache(&self) -> &Cache<K> {
        self.running.informer.cache()
    }
}

impl SharedInformers {
    /// The cache of every object of kind `K`, keeping `indexes` (added to the shared cache
    /// if another component started it without them); starts its informer through `client`
    /// if no component holds one.
    pub fn all<K: ApiObject + Send + Sync>(
        &self,
        client: &Arc<ApiClient>,
        indexes: Vec<Index<K>>,
    ) -> SharedCache<K> {
        let mut running = self.lock();
        let held = running
            .get(&TypeId::of::<K>())
            .and_then(|held| held.downcast_ref::<Weak<Running<K>>>())
            .and_then(Weak::upgrade);
        if let Some(held) = held {
            held.informer.cache().add_indexes(indexes);
            return SharedCache { running: held };
        }
        let started = Arc::new(Running {
            informer: Informer::start(client.clone(), Query::all::<K>(), indexes),
        });
        running.insert(TypeId::of::<K>(), Box::new(Arc::downgrade(&started)));
        SharedCache { running: started }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TypeId, Box<dyn Any + Send>>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;

    use super::*;
    use crate::informer::{by_owner_uid, OWNER_UID};

    /// A client of no server: the informers keep trying, which is all these tests need.
    fn client() -> Arc<ApiClient> {
        Arc::new(ApiClient::new(vec!["127.0.0.1:1".into()]))
    }

    #[tokio::test]
    async fn two_components_share_one_cache_with_the_indexes_both_asked_for() {
        let informers = SharedInformers::default();
        let scheduler = informers.all::<Pod>(&client(), vec![]);
        assert!(
            scheduler.cache().indexed(OWNER_UID, "u").is_err(),
            "not asked for yet"
        );
        let controllers = informers.all::<Pod>(&client(), vec![by_owner_uid()]);
        assert!(Arc::ptr_eq(&scheduler.running, &controllers.running));
        assert!(scheduler.cache().indexed(OWNER_UID, "u").is_ok());
    }

    #[tokio::test]
    async fn the_informer_stops_with_its_last_holder_and_starts_anew_for_the_next() {
        let informers = SharedInformers::default();
        let first = informers.all::<Pod>(&client(), vec![]);
        let second = first.clone();
        drop(first);
        let watched = second.running.informer.clone();
        tokio::task::yield_now().await;
        assert!(!watched.is_stopped(), "one holder is left");
        let old_cache = second.cache().clone();
        old_cache.replace(vec![Pod::default()], 1);
        drop(second);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while !watched.is_stopped() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the last holder's drop stops the reflector"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let next = informers.all::<Pod>(&client(), vec![]);
        assert!(!next.running.informer.is_stopped());
        assert_eq!(next.cache().len(), 0, "a new cache, not the stopped one's");
    }
}
