//! The informer runtime: an [`Informer`] keeps a [`Cache`] of one resource's objects
//! current and tells subscribers of each change.
//!
//! ```text
//!  API ─ list / watch ─► reflector.rs ─ Change ─► cache.rs (Store: store.rs + index.rs)
//!         (event.rs decodes)   (shell)                 │ Event (Added/Updated/Deleted/Synced)
//!                                                      ▼
//!                                      Subscription (a Stream) ─► actor ─► work-queue keys
//! ```
//!
//! - `store.rs` (pure): snapshots as differences, stale events ignored, queries; tested in
//!   `store_tests.rs`. `index.rs` (pure): pluggable indexes (owner uid, node name).
//! - `event.rs`: [`Event`] for subscribers, [`Change`] decoded from a watch event.
//! - `cache.rs`: the shared store and its subscribers.
//! - `reflector.rs`: list, watch, resume and relist for a [`Query`], with `backoff.rs`'s
//!   bounded delays.
//! - `shared.rs`: [`SharedInformers`], one informer per kind for the components of a
//!   process (a master's controller manager and scheduler share their pods, as
//!   [`crate::pods::cached::Pod`]: what they read of one).
//! - `key.rs`: [`ObjectKey`]; `object.rs`: [`ApiObject`], the kinds an informer can follow;
//!   `meta.rs`: [`MetaOnly`], any kind followed for its metadata only.
//!
//! A controller maps events to keys: `event.states()` → `ObjectKey::controller_of(meta,
//! "ReplicaSet")` for a pod, `event.key()` for its own kind.

mod backoff;
mod cache;
mod event;
mod index;
mod key;
mod meta;
mod object;
mod reflector;
mod shared;
mod store;

use std::sync::Arc;

use rudder_proto::client::ApiClient;
use tokio::sync::watch;

pub use cache::{Cache, Subscription};
pub use event::{decode, Change, DecodeError, Event};
pub use index::{by_owner_uid, pods_by_node, Index, NODE_NAME, OWNER_UID};
pub use key::ObjectKey;
pub use meta::MetaOnly;
pub use object::ApiObject;
pub use reflector::Query;
pub use shared::{SharedCache, SharedInformers};
pub use store::{revision_of, NoSuchIndex, Store};

/// A running informer: its reflector fills [`Informer::cache`] until [`Informer::stop`] is
/// called or the last clone of the informer is dropped (the cache may outlive it, frozen).
pub struct Informer<K> {
    cache: Cache<K>,
    stop: Arc<watch::Sender<()>>,
}

impl<K> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
            stop: self.stop.clone(),
        }
    }
}

impl<K: ApiObject> Informer<K> {
    /// Starts following `query` through `client` on the current tokio runtime, keeping
    /// `indexes` in the cache.
    pub fn start(client: Arc<ApiClient>, query: Query, indexes: Vec<Index<K>>) -> Self {
        Self::start_on(Cache::new(indexes), client, query)
    }

    /// Starts filling a cache an earlier informer of the same query filled: it resumes from
    /// the cache's revision (a controller that regains its lease keeps its caches warm), and
    /// lists again, announcing what changed meanwhile, if that revision was compacted.
    pub fn start_on(cache: Cache<K>, client: Arc<ApiClient>, query: Query) -> Self {
        let (stop, mut stopped) = watch::channel(());
        let reflect = reflector::reflect(client, query, cache.clone());
        tokio::spawn(async move {
            tokio::select! {
                // Either `stop` was called, or every sender (every informer) is gone.
                _ = stopped.changed() => {}
                () = reflect => {}
            }
        });
        Self {
            cache,
            stop: Arc::new(stop),
        }
    }

    pub fn cache(&self) -> &Cache<K> {
        &self.cache
    }

    /// Events from now on, after `Added` for what is cached already.
    pub fn subscribe(&self) -> Subscription<K> {
        self.cache.subscribe()
    }

    /// Stops the reflector (the cache keeps its contents).
    pub fn stop(&self) {
        let _ = self.stop.send(());
    }

    /// Whether the reflector has stopped.
    pub fn is_stopped(&self) -> bool {
        self.stop.is_closed()
    }
}
