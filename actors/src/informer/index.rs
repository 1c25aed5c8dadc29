//! Secondary indexes of a cache: an [`Index`] names a function from an object to the values
//! it is found under (its owners' uids, its node); [`Indexes`] keeps value → keys for each.
//! Pure: the cache calls `insert` and `remove` as objects come and go.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::Metadata;

use super::key::ObjectKey;
use crate::pods::cached::Pod;

/// A named way to find objects: `values` says under which values an object is found.
pub struct Index<K> {
    pub name: &'static str,
    pub values: fn(&K) -> Vec<String>,
}

impl<K> Clone for Index<K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for Index<K> {}

/// The name of the index [`by_owner_uid`] builds.
pub const OWNER_UID: &str = "owner-uid";
/// The name of the index [`pods_by_node`] builds.
pub const NODE_NAME: &str = "node-name";

/// Objects by the uid of each of their owners (`metadata.ownerReferences`).
pub fn by_owner_uid<K: Metadata<Ty = ObjectMeta>>() -> Index<K> {
    Index {
        name: OWNER_UID,
        values: |object| {
            let owners = object.metadata().owner_references.iter().flatten();
            owners.map(|owner| owner.uid.clone()).collect()
        },
    }
}

/// Pods by the node they are bound to (`spec.nodeName`); unbound pods are under no node.
pub fn pods_by_node() -> Index<Pod> {
    Index {
        name: NODE_NAME,
        values: |pod| {
            let node = pod.spec.as_ref().and_then(|spec| spec.node_name.clone());
            node.into_iter().filter(|node| !node.is_empty()).collect()
        },
    }
}

/// One index's entries: value → the keys filed under it.
type Entries = BTreeMap<String, BTreeSet<ObjectKey>>;

/// Every index of one cache with its entries.
pub struct Indexes<K> {
    indexes: Vec<(Index<K>, Entries)>,
}

impl<K> Indexes<K> {
    pub fn new(indexes: Vec<Index<K>>) -> Self {
        let indexes = indexes.into_iter().map(|i| (i, BTreeMap::new())).collect();
        Self { indexes }
    }

    /// Files `object` under its values in every index.
    pub fn insert(&mut self, key: &ObjectKey, object: &K) {
        for (index, entries) in &mut self.indexes {
            for value in (index.values)(object) {
                entries.entry(value).or_default().insert(key.clone());
            }
        }
    }

    /// Takes `object` (as it was filed) out of every index.
    pub fn remove(&mut self, key: &ObjectKey, object: &K) {
        for (index, entries) in &mut self.indexes {
            for value in (index.values)(object) {
                if let Some(keys) = entries.get_mut(&value) {
                    keys.remove(key);
                    if keys.is_empty() {
                        entries.remove(&value);
                    }
                }
            }
        }
    }

    /// Whether an index of this name is kept.
    pub fn has(&self, name: &str) -> bool {
        self.indexes.iter().any(|(index, _)| index.name == name)
    }

    /// Keeps `index` too (unless one of its name is kept already), filing `objects` in it.
    pub fn add<'a>(
        &mut self,
        index: Index<K>,
        objects: impl Iterator<Item = (&'a ObjectKey, &'a K)>,
    ) where
        K: 'a,
    {
        if self.has(index.name) {
            return;
        }
        let mut entries = Entries::new();
        for (key, object) in objects {
            for value in (index.values)(object) {
                entries.entry(value).or_default().insert(key.clone());
            }
        }
        self.indexes.push((index, entries));
    }

    /// The keys filed under `value` in the index `name`; `None` if there is no such index.
    pub fn lookup(&self, name: &str, value: &str) -> Option<Vec<&ObjectKey>> {
        let (_, entries) = self.indexes.iter().find(|(index, _)| index.name == name)?;
        Some(entries.get(value).into_iter().flatten().collect())
    }
}
