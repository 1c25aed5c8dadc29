//! [`SharedInformers`]: one informer per kind for every component of a process that follows
//! every object of that kind, as client-go's shared informer factory. A master runs the
//! controller manager and the scheduler; each followed every pod on its own, so at 10,000
//! pods the second copy was 125 MB of the leading master's heap (heaptrack, BENCHMARKS.md).
//! The pods they share are [`crate::pods::cached::Pod`]s: what the controllers and the
//! scheduler read of a pod: 3.4 KB where k8s-openapi's takes 17.5.
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
//! watches with the client of the component that asked first: components sharing a kind must
//! each be allowed to read all of it (the scheduler and the controller manager are, by the
//! default roles). It runs on the registry's runtime ([`SharedInformers::on`]: a master's
//! own), so its task outlives any one component's thread (the client's connection is still
//! the asking component's, whose thread in a master lives as long as the master). A registry
//! without a runtime runs it on the runtime of whoever asked first; one found stopped is
//! started again for the next asker (earlier holders keep the stopped one's cache).

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
    /// Where the informers run; `None`: on the runtime of the component that asks first.
    runtime: Option<tokio::runtime::Handle>,
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
    /// A registry whose informers run on `runtime` (one that lives as long as every
    /// component using the registry), whichever component asks.
    pub fn on(runtime: tokio::runtime::Handle) -> Self {
        Self {
            running: Arc::default(),
            runtime: Some(runtime),
        }
    }

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
            .and_then(Weak::upgrade)
            .filter(|held| !held.informer.is_stopped());
        if let Some(held) = held {
            held.informer.cache().add_indexes(indexes);
            return SharedCache { running: held };
        }
        let _on_runtime = self.runtime.as_ref().map(|runtime| runtime.enter());
        let cache = Cache::new(indexes);
        let started = Arc::new(Running {
            informer: Informer::start_on(cache, client.clone(), Query::all::<K>()),
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
    use super::*;
    use crate::informer::{by_owner_uid, OWNER_UID};
    use crate::pods::cached::Pod;

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

    #[test]
    fn an_informer_on_the_registry_s_runtime_outlives_the_thread_that_asked_for_it() {
        let master = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let informers = SharedInformers::on(master.handle().clone());
        let asker = informers.clone();
        let held = std::thread::spawn(move || {
            let component = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            component.block_on(async { asker.all::<Pod>(&client(), vec![]) })
        })
        .join()
        .unwrap();
        // The asking component's runtime is gone; a reflector spawned there would be too.
        assert!(!held.running.informer.is_stopped());
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
