//! The replica's applied state shared between the state machine (writer), readers and
//! watchers, plus the feed that carries each applied revision to watchers.
//!
//! The state machine publishes while it still holds the write lock, and a watcher subscribes
//! while holding the read lock; so every revision is either in the history a watcher read or
//! in its feed — never both, never neither.
//!
//! Readers of the past read overwritten values from [`Keyspace::history`] while they hold the
//! read lock: the state machine persists every version before it releases the write lock, and
//! compaction removes versions from the database under the same lock.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::kv::{Event, Revision};
use crate::mvcc::{History, Mvcc};
use crate::sessions::Sessions;
use crate::types::{LogId, NodeId, StoredMembership};

/// How many applied revisions the feed buffers for a slow watcher before it falls back to
/// reading history.
const FEED_CAPACITY: usize = 4096;

/// State-machine metadata, persisted with every applied batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmMeta {
    pub applied: Option<LogId>,
    pub membership: StoredMembership,
    /// Every member id the cluster has ever had: a removed id is never given out again.
    pub members_ever: BTreeSet<NodeId>,
    /// Fixed when the first membership is applied; the same on every member.
    pub cluster_id: u64,
}

#[derive(Debug, Default)]
pub struct Replicated {
    pub mvcc: Mvcc,
    pub meta: SmMeta,
    /// Recently applied client requests, so that a retried one applies once.
    pub sessions: Sessions,
}

/// What the feed carries.
#[derive(Debug)]
pub enum FeedItem {
    /// The events of one applied revision.
    Revision {
        revision: Revision,
        events: Vec<Event>,
    },
    /// The state was replaced by a snapshot: watchers must re-read history.
    Reset,
}

pub struct Keyspace {
    state: RwLock<Replicated>,
    feed: broadcast::Sender<Arc<FeedItem>>,
    history: Box<dyn History + Send + Sync>,
}

impl std::fmt::Debug for Keyspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyspace")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Keyspace {
    pub fn new(state: Replicated, history: Box<dyn History + Send + Sync>) -> Self {
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        Self {
            state: RwLock::new(state),
            feed,
            history,
        }
    }

    /// Where the values of overwritten versions are read back (with a read guard held).
    pub fn history(&self) -> &dyn History {
        &*self.history
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Replicated> {
        // A poisoned lock means a panic mid-apply: the state can no longer be trusted.
        self.state
            .read()
            .expect("keyspace lock poisoned by a panic while applying")
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, Replicated> {
        self.state
            .write()
            .expect("keyspace lock poisoned by a panic while applying")
    }

    /// Call with the write guard still held.
    pub fn publish(&self, item: FeedItem) {
        // No receivers is fine: nobody is watching.
        let _ = self.feed.send(Arc::new(item));
    }

    /// Call with a read guard held.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FeedItem>> {
        self.feed.subscribe()
    }
}
