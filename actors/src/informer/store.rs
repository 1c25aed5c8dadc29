//! [`Store`]: the pure core of a cache. It applies list snapshots (as differences, so a
//! subscriber hears of deletions that happened while the informer was away) and watch
//! changes (ignoring any older than what it holds), keeps the indexes, and answers queries.
//! No locks and no I/O: `Cache` wraps it for sharing.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rudder_proto::objects::selector::LabelSelector;

use super::event::{Change, Event};
use super::index::{Index, Indexes};
use super::key::ObjectKey;
use super::object::ApiObject;

/// A query named an index the cache does not keep.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the cache keeps no index named {name:?}; add it when starting the informer")]
pub struct NoSuchIndex {
    pub name: String,
}

/// The objects of one resource as last heard, with their indexes.
pub struct Store<K> {
    objects: BTreeMap<ObjectKey, Arc<K>>,
    indexes: Indexes<K>,
    /// The last revision seen: a list's, an event's or a bookmark's.
    revision: Option<u64>,
    /// A list has been applied.
    synced: bool,
    /// The server said the revision is compacted: only a list can go on.
    expired: bool,
}

/// An object's resourceVersion as a number (`None` if missing or not a number).
pub fn revision_of(meta: &ObjectMeta) -> Option<u64> {
    meta.resource_version.as_deref()?.parse().ok()
}

impl<K: ApiObject> Store<K> {
    pub fn new(indexes: Vec<Index<K>>) -> Self {
        Self {
            objects: BTreeMap::new(),
            indexes: Indexes::new(indexes),
            revision: None,
            synced: false,
            expired: false,
        }
    }

    /// Replaces the contents with a list taken at `revision`. Returns what changed: an object
    /// not listed any more is `Deleted`, one with a new uid under the same name is `Deleted`
    /// then `Added`, one with another resourceVersion `Updated`; then `Synced`.
    pub fn replace(&mut self, items: Vec<K>, revision: u64) -> Vec<Event<K>> {
        let mut listed: BTreeMap<ObjectKey, Arc<K>> = items
            .into_iter()
            .map(|item| (ObjectKey::of(item.metadata()), Arc::new(item)))
            .collect();
        let mut events = Vec::new();
        let gone: Vec<ObjectKey> = self
            .objects
            .keys()
            .filter(|key| !listed.contains_key(*key))
            .cloned()
            .collect();
        for key in gone {
            if let Some(old) = self.remove(&key) {
                events.push(Event::Deleted(old));
            }
        }
        for (key, new) in std::mem::take(&mut listed) {
            let unchanged = self.objects.get(&key).is_some_and(|old| {
                old.metadata().uid == new.metadata().uid
                    && old.metadata().resource_version == new.metadata().resource_version
            });
            if !unchanged {
                events.extend(self.upsert(key, new));
            }
        }
        self.revision = Some(revision);
        self.synced = true;
        self.expired = false;
        events.push(Event::Synced);
        events
    }

    /// Applies one watch change. Returns what subscribers should hear: nothing for a change
    /// older than what is held (by resourceVersion), a bookmark, or the deletion of an object
    /// never held. `Expired` marks the store as needing a list.
    pub fn apply(&mut self, change: Change<K>) -> Vec<Event<K>> {
        match change {
            Change::Applied(object) | Change::Deleted(object) if self.is_stale(&object) => {
                Vec::new()
            }
            Change::Applied(object) => {
                self.advance(revision_of(object.metadata()));
                let key = ObjectKey::of(object.metadata());
                let object = Arc::new(object);
                self.upsert(key, object)
            }
            Change::Deleted(object) => {
                self.advance(revision_of(object.metadata()));
                let key = ObjectKey::of(object.metadata());
                match self.remove(&key) {
                    Some(_) => vec![Event::Deleted(Arc::new(object))],
                    None => Vec::new(),
                }
            }
            Change::Bookmark(revision) => {
                self.advance(Some(revision));
                Vec::new()
            }
            Change::Expired => {
                self.expired = true;
                Vec::new()
            }
            Change::Failed(_) => Vec::new(),
        }
    }

    /// Where a watch should resume: the last revision seen, once listed and while not expired.
    pub fn resume_from(&self) -> Option<u64> {
        self.revision.filter(|_| self.synced && !self.expired)
    }

    /// Whether a list has been applied (it stays so across relists).
    pub fn has_synced(&self) -> bool {
        self.synced
    }

    /// The last revision seen (list, event or bookmark).
    pub fn revision(&self) -> Option<u64> {
        self.revision
    }

    pub fn get(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.objects.get(key).cloned()
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Every object, by namespace then name.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.objects.values().cloned().collect()
    }

    /// The objects of one namespace, by name: a range of the keys, which sort by namespace.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        let start = ObjectKey::new(namespace, "");
        self.objects
            .range(start..)
            .take_while(|(key, _)| key.namespace == namespace)
            .map(|(_, object)| object.clone())
            .collect()
    }

    /// The objects of `namespace` whose labels `selector` matches (a nil workload selector,
    /// [`LabelSelector::nothing`], matches none).
    pub fn selected(&self, namespace: &str, selector: &LabelSelector) -> Vec<Arc<K>> {
        let mut selected = self.in_namespace(namespace);
        selected.retain(|object| selector.matches_labels(object.metadata().labels.as_ref()));
        selected
    }

    /// Keeps `indexes` too (those not kept already), filing every object held in them.
    pub fn add_indexes(&mut self, indexes: Vec<Index<K>>) {
        for index in indexes {
            let objects = self.objects.iter().map(|(key, object)| (key, &**object));
            self.indexes.add(index, objects);
        }
    }

    /// The objects filed under `value` in the index `name`, by key.
    pub fn indexed(&self, name: &str, value: &str) -> Result<Vec<Arc<K>>, NoSuchIndex> {
        let keys = self
            .indexes
            .lookup(name, value)
            .ok_or_else(|| NoSuchIndex {
                name: name.to_string(),
            })?;
        Ok(keys.into_iter().filter_map(|key| self.get(key)).collect())
    }

    /// Older than the revision already seen, or not newer than the state held: the event was
    /// already applied (a resumed stream repeating itself) or superseded.
    fn is_stale(&self, object: &K) -> bool {
        let Some(revision) = revision_of(object.metadata()) else {
            return false;
        };
        let key = ObjectKey::of(object.metadata());
        let held = self
            .objects
            .get(&key)
            .and_then(|o| revision_of(o.metadata()));
        self.revision.is_some_and(|seen| revision < seen)
            || held.is_some_and(|held| revision <= held)
    }

    fn advance(&mut self, revision: Option<u64>) {
        if let Some(revision) = revision {
            self.revision = Some(self.revision.map_or(revision, |seen| seen.max(revision)));
        }
    }

    /// Puts `new` in `key`'s place: `Added`, `Updated`, or `Deleted` + `Added` when the old
    /// object had another uid (deleted and created again while unseen).
    fn upsert(&mut self, key: ObjectKey, new: Arc<K>) -> Vec<Event<K>> {
        let old = self.remove(&key);
        self.indexes.insert(&key, &new);
        self.objects.insert(key, new.clone());
        match old {
            None => vec![Event::Added(new)],
            Some(old) if old.metadata().uid != new.metadata().uid => {
                vec![Event::Deleted(old), Event::Added(new)]
            }
            Some(old) => vec![Event::Updated { old, new }],
        }
    }

    fn remove(&mut self, key: &ObjectKey) -> Option<Arc<K>> {
        let old = self.objects.remove(key)?;
        self.indexes.remove(key, &old);
        Some(old)
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
