//! The ownership graph (pure): every object the collector follows, by uid, with its owner
//! references, and for every uid the objects that name it as an owner (also for owners
//! never observed: their absence is what the collector acts on).

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use rudder_proto::objects::deletion::{FOREGROUND_DELETION, ORPHAN};

/// Which object: what a write or a lookup needs to name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub api_version: String,
    pub kind: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Identity {
    /// `ReplicaSet.apps` / `Pod`: how the API resolves the kind (group-qualified).
    pub fn resource(&self) -> String {
        resource_of(&self.api_version, &self.kind)
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {} ({})", self.kind, self.name, self.uid)
        } else {
            write!(
                f,
                "{} {}/{} ({})",
                self.kind, self.namespace, self.name, self.uid
            )
        }
    }
}

/// The API's name for `kind` of `api_version`: `ReplicaSet.apps` for `apps/v1`, `Pod` for
/// the core group's `v1`.
pub fn resource_of(api_version: &str, kind: &str) -> String {
    match api_version.split_once('/') {
        Some((group, _)) => format!("{kind}.{group}"),
        None => kind.to_string(),
    }
}

/// One observed object.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub identity: Identity,
    pub resource_version: String,
    pub owners: Vec<OwnerReference>,
    /// It has a deletionTimestamp.
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

impl Node {
    pub fn from_meta(api_version: &str, kind: &str, meta: &ObjectMeta) -> Self {
        Self {
            identity: Identity {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
                namespace: meta.namespace.clone().unwrap_or_default(),
                name: meta.name.clone().unwrap_or_default(),
                uid: meta.uid.clone().unwrap_or_default(),
            },
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            owners: meta.owner_references.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
        }
    }

    pub fn holds(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }

    /// Being deleted in the foreground: it waits for its blocking dependents.
    pub fn deletes_dependents_first(&self) -> bool {
        self.deleting && self.holds(FOREGROUND_DELETION)
    }

    /// Being deleted with Orphan propagation: its dependents are to be released.
    pub fn orphans_dependents(&self) -> bool {
        self.deleting && self.holds(ORPHAN)
    }

    /// Whether it waits for the collector as an owner.
    pub fn awaits_collector(&self) -> bool {
        self.deletes_dependents_first() || self.orphans_dependents()
    }

    /// Whether its reference to `owner_uid` blocks that owner's foreground deletion.
    pub fn blocks(&self, owner_uid: &str) -> bool {
        self.owners
            .iter()
            .any(|o| o.uid == owner_uid && o.block_owner_deletion == Some(true))
    }
}

/// Every observed object and who names whom as owner.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    /// Owner uid → the uids of the objects that name it (the owner may be unobserved).
    dependents: HashMap<String, BTreeSet<String>>,
}

impl Graph {
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The observed objects that name `owner_uid` as an owner.
    pub fn dependents_of(&self, owner_uid: &str) -> Vec<&Node> {
        self.dependents
            .get(owner_uid)
            .into_iter()
            .flatten()
            .filter_map(|uid| self.nodes.get(uid))
            .collect()
    }

    /// Records `node` (added or changed); returns its state before.
    pub fn observe(&mut self, node: Node) -> Option<Node> {
        let uid = node.identity.uid.clone();
        if uid.is_empty() {
            return None;
        }
        let before = self.nodes.insert(uid.clone(), node);
        if let Some(before) = &before {
            self.unlink(&uid, &before.owners);
        }
        let owners: Vec<String> = self.nodes[&uid]
            .owners
            .iter()
            .map(|o| o.uid.clone())
            .collect();
        for owner in owners {
            self.dependents
                .entry(owner)
                .or_default()
                .insert(uid.clone());
        }
        before
    }

    /// Forgets the object `uid` (deleted); returns its last state.
    pub fn forget(&mut self, uid: &str) -> Option<Node> {
        let node = self.nodes.remove(uid)?;
        self.unlink(uid, &node.owners);
        Some(node)
    }

    fn unlink(&mut self, uid: &str, owners: &[OwnerReference]) {
        for owner in owners {
            if let Some(set) = self.dependents.get_mut(&owner.uid) {
                set.remove(uid);
                if set.is_empty() {
                    self.dependents.remove(&owner.uid);
                }
            }
        }
    }

    /// The objects the collector has to look at after a (re)list: those naming an owner that
    /// is not observed, and owners waiting for it (Foreground or Orphan deletion).
    pub fn needing_attention(&self) -> Vec<String> {
        self.nodes
            .values()
            .filter(|node| {
                node.awaits_collector()
                    || node
                        .owners
                        .iter()
                        .any(|owner| !self.nodes.contains_key(&owner.uid))
            })
            .map(|node| node.identity.uid.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn owner_ref(kind: &str, name: &str, uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(block),
        }
    }

    fn node(uid: &str, owners: Vec<OwnerReference>) -> Node {
        Node {
            identity: Identity {
                api_version: "v1".into(),
                kind: "Pod".into(),
                namespace: "default".into(),
                name: format!("pod-{uid}"),
                uid: uid.into(),
            },
            resource_version: "1".into(),
            owners,
            deleting: false,
            finalizers: vec![],
        }
    }

    #[test]
    fn dependents_are_indexed_by_owner_uid_even_for_owners_never_seen() {
        let mut graph = Graph::default();
        graph.observe(node(
            "p1",
            vec![owner_ref("ReplicaSet", "web", "rs1", true)],
        ));
        graph.observe(node(
            "p2",
            vec![owner_ref("ReplicaSet", "web", "rs1", true)],
        ));
        let names = |graph: &Graph| -> Vec<String> {
            let mut uids: Vec<String> = graph
                .dependents_of("rs1")
                .iter()
                .map(|n| n.identity.uid.clone())
                .collect();
            uids.sort();
            uids
        };
        assert_eq!(names(&graph), ["p1", "p2"]);
        let mut attention = graph.needing_attention();
        attention.sort();
        assert_eq!(attention, ["p1", "p2"], "their owner is not observed");
        // p2 is released (its owner reference removed), p1 deleted.
        graph.observe(node("p2", vec![]));
        assert_eq!(names(&graph), ["p1"]);
        graph.forget("p1");
        assert!(graph.dependents_of("rs1").is_empty());
        assert!(graph.needing_attention().is_empty());
    }

    #[test]
    fn an_observed_owner_needs_no_attention_until_it_waits_for_the_collector() {
        let mut graph = Graph::default();
        let mut owner = node("rs1", vec![]);
        owner.identity.kind = "ReplicaSet".into();
        graph.observe(owner.clone());
        graph.observe(node(
            "p1",
            vec![owner_ref("ReplicaSet", "web", "rs1", true)],
        ));
        assert!(graph.needing_attention().is_empty());
        owner.deleting = true;
        owner.finalizers = vec![FOREGROUND_DELETION.into()];
        graph.observe(owner);
        assert_eq!(graph.needing_attention(), ["rs1"]);
        assert!(graph.get("rs1").unwrap().deletes_dependents_first());
        assert!(graph.get("p1").unwrap().blocks("rs1"));
    }

    #[test]
    fn kinds_resolve_by_group() {
        assert_eq!(resource_of("apps/v1", "ReplicaSet"), "ReplicaSet.apps");
        assert_eq!(resource_of("v1", "Pod"), "Pod");
        assert_eq!(resource_of("batch/v1", "Job"), "Job.batch");
    }
}
