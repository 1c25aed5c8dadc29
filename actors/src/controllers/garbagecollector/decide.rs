//! What the collector does about one object (pure), as Kubernetes' garbage collector
//! decides it:
//!
//! - an owner deleted with Orphan propagation: release every dependent (remove the owner's
//!   reference), then remove the `orphan` finalizer;
//! - an owner deleted in the Foreground: look at every dependent not yet being deleted
//!   (each is deleted unless another owner of it lives, in the foreground when it has
//!   dependents of its own); once no dependent blocks it (`blockOwnerDeletion`), remove the
//!   `foregroundDeletion` finalizer;
//! - a dependent: with at least one owner that exists, drop only the references to owners
//!   that are gone or deleting in the foreground; with none, delete it (foreground when an
//!   owner waits for it and it has dependents, else by its own finalizers' policy).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use rudder_proto::objects::deletion::{FOREGROUND_DELETION, ORPHAN};

use super::graph::{Identity, Node};

/// What is known of one owner a dependent names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// It exists (observed, or confirmed by a read) and is not deleting in the foreground.
    Present,
    /// It exists and is deleting in the foreground: it waits for this dependent.
    WaitingForDependents,
    /// It does not exist (a read found nothing, or another object under its name).
    Absent,
}

/// How a dependent is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Background,
    Foreground,
    Orphan,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Background => "Background",
            Self::Foreground => "Foreground",
            Self::Orphan => "Orphan",
        }
    }
}

/// One write of the collector.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Delete `object` with `policy`, only at its uid and the resourceVersion decided on
    /// (a dependent changed since, say given a new owner, is decided again).
    Delete {
        object: Identity,
        resource_version: String,
        policy: Policy,
    },
    /// Remove the references to `owners` (uids) from `object`, at its resourceVersion,
    /// keeping `keep`.
    DropOwners {
        object: Identity,
        resource_version: String,
        owners: Vec<String>,
        keep: Vec<OwnerReference>,
    },
    /// Remove `finalizer` from `object`, at its resourceVersion, keeping `keep`.
    RemoveFinalizer {
        object: Identity,
        resource_version: String,
        finalizer: &'static str,
        keep: Vec<String>,
    },
}

/// Drop the references to `owners` from `object`.
fn drop_owners(object: &Node, owners: Vec<String>) -> Action {
    Action::DropOwners {
        object: object.identity.clone(),
        resource_version: object.resource_version.clone(),
        keep: object
            .owners
            .iter()
            .filter(|owner| !owners.contains(&owner.uid))
            .cloned()
            .collect(),
        owners,
    }
}

/// Remove `finalizer` from `object`.
fn remove_finalizer(object: &Node, finalizer: &'static str) -> Action {
    Action::RemoveFinalizer {
        object: object.identity.clone(),
        resource_version: object.resource_version.clone(),
        finalizer,
        keep: object
            .finalizers
            .iter()
            .filter(|held| *held != finalizer)
            .cloned()
            .collect(),
    }
}

/// What an owner waiting for the collector needs: writes, and dependents to look at (each
/// decides for itself with [`for_dependent`], so one with another living owner stays).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OwnerPlan {
    pub writes: Vec<Action>,
    /// Uids of dependents to look at.
    pub wake: Vec<String>,
}

/// An owner waiting for the collector (Orphan or Foreground deletion) and its observed
/// `dependents`.
pub fn for_owner(owner: &Node, dependents: &[&Node]) -> OwnerPlan {
    let uid = &owner.identity.uid;
    if owner.orphans_dependents() {
        let mut writes: Vec<Action> = dependents
            .iter()
            .map(|dependent| drop_owners(dependent, vec![uid.clone()]))
            .collect();
        if writes.is_empty() {
            writes.push(remove_finalizer(owner, ORPHAN));
        }
        // With dependents left, the finalizer goes on the next look, once the cache shows
        // them released (a release that failed is retried first).
        return OwnerPlan {
            writes,
            wake: Vec::new(),
        };
    }
    if owner.deletes_dependents_first() {
        let wake = dependents
            .iter()
            .filter(|dependent| !dependent.deleting)
            .map(|dependent| dependent.identity.uid.clone())
            .collect();
        let mut writes = Vec::new();
        if !dependents.iter().any(|dependent| dependent.blocks(uid)) {
            writes.push(remove_finalizer(owner, FOREGROUND_DELETION));
        }
        return OwnerPlan { writes, wake };
    }
    OwnerPlan::default()
}

/// A dependent whose owners are in the states `owners` (by uid, one per reference).
pub fn for_dependent(
    dependent: &Node,
    owners: &[(String, OwnerState)],
    has_dependents: bool,
) -> Vec<Action> {
    if dependent.deleting || owners.is_empty() {
        return Vec::new();
    }
    let with = |state: OwnerState| -> Vec<String> {
        owners
            .iter()
            .filter(|(_, s)| *s == state)
            .map(|(uid, _)| uid.clone())
            .collect()
    };
    let absent = with(OwnerState::Absent);
    let waiting = with(OwnerState::WaitingForDependents);
    let present = with(OwnerState::Present);
    if !present.is_empty() {
        let mut dropped = absent;
        dropped.extend(waiting);
        if dropped.is_empty() {
            return Vec::new();
        }
        return vec![drop_owners(dependent, dropped)];
    }
    let policy = if !waiting.is_empty() && has_dependents {
        Policy::Foreground
    } else if dependent.holds(ORPHAN) {
        Policy::Orphan
    } else if dependent.holds(FOREGROUND_DELETION) {
        Policy::Foreground
    } else {
        Policy::Background
    };
    vec![Action::Delete {
        object: dependent.identity.clone(),
        resource_version: dependent.resource_version.clone(),
        policy,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner_ref(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: format!("rs-{uid}"),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(block),
        }
    }

    fn node(kind: &str, uid: &str, owners: Vec<OwnerReference>) -> Node {
        Node {
            identity: Identity {
                api_version: "v1".into(),
                kind: kind.into(),
                namespace: "default".into(),
                name: format!("{kind}-{uid}").to_lowercase(),
                uid: uid.into(),
            },
            resource_version: "5".into(),
            owners,
            deleting: false,
            finalizers: vec![],
        }
    }

    fn deleting(mut node: Node, finalizer: &str) -> Node {
        node.deleting = true;
        node.finalizers = vec![finalizer.to_string()];
        node
    }

    fn kinds_and_uids(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|action| match action {
                Action::Delete { object, policy, .. } => {
                    format!("delete {} {}", object.uid, policy.as_str())
                }
                Action::DropOwners { object, owners, .. } => {
                    format!("drop {} from {}", owners.join(","), object.uid)
                }
                Action::RemoveFinalizer {
                    object, finalizer, ..
                } => format!("unfinalize {} {finalizer}", object.uid),
            })
            .collect()
    }

    #[test]
    fn a_dependent_whose_only_owner_is_gone_is_deleted_in_the_background() {
        let pod = node("Pod", "p1", vec![owner_ref("rs1", true)]);
        let actions = for_dependent(&pod, &[("rs1".into(), OwnerState::Absent)], false);
        assert_eq!(kinds_and_uids(&actions), ["delete p1 Background"]);
        // Its own Orphan finalizer decides how its own dependents fare.
        let held = Node {
            finalizers: vec![ORPHAN.into()],
            ..node("ReplicaSet", "rs2", vec![owner_ref("d1", true)])
        };
        let actions = for_dependent(&held, &[("d1".into(), OwnerState::Absent)], true);
        assert_eq!(kinds_and_uids(&actions), ["delete rs2 Orphan"]);
    }

    #[test]
    fn a_dependent_with_a_living_owner_only_loses_the_references_to_gone_ones() {
        let pod = node(
            "Pod",
            "p1",
            vec![
                owner_ref("a", false),
                owner_ref("b", false),
                owner_ref("c", false),
            ],
        );
        let owners = [
            ("a".into(), OwnerState::Present),
            ("b".into(), OwnerState::Absent),
            ("c".into(), OwnerState::WaitingForDependents),
        ];
        let actions = for_dependent(&pod, &owners, false);
        assert_eq!(kinds_and_uids(&actions), ["drop b,c from p1"]);
        let Action::DropOwners { keep, .. } = &actions[0] else {
            panic!("a drop");
        };
        assert_eq!(keep, &vec![owner_ref("a", false)]);
        let all_present = [("a".into(), OwnerState::Present)];
        assert!(for_dependent(&pod, &all_present, false).is_empty());
    }

    #[test]
    fn a_dependent_already_being_deleted_or_without_owners_is_left_alone() {
        let mut pod = node("Pod", "p1", vec![owner_ref("rs1", true)]);
        pod.deleting = true;
        assert!(for_dependent(&pod, &[("rs1".into(), OwnerState::Absent)], false).is_empty());
        let free = node("Pod", "p2", vec![]);
        assert!(for_dependent(&free, &[], false).is_empty());
    }

    #[test]
    fn a_foreground_owner_waiting_for_a_dependent_with_dependents_deletes_it_in_the_foreground() {
        let rs = node("ReplicaSet", "rs1", vec![owner_ref("d1", true)]);
        let waiting = [("d1".into(), OwnerState::WaitingForDependents)];
        let actions = for_dependent(&rs, &waiting, true);
        assert_eq!(kinds_and_uids(&actions), ["delete rs1 Foreground"]);
        let actions = for_dependent(&rs, &waiting, false);
        assert_eq!(kinds_and_uids(&actions), ["delete rs1 Background"]);
    }

    #[test]
    fn a_foreground_owner_wakes_its_dependents_and_keeps_its_finalizer_while_one_blocks() {
        let owner = deleting(node("Deployment", "d1", vec![]), FOREGROUND_DELETION);
        let blocking = node("ReplicaSet", "rs1", vec![owner_ref("d1", true)]);
        let loose = node("ConfigMap", "cm1", vec![owner_ref("d1", false)]);
        let plan = for_owner(&owner, &[&blocking, &loose]);
        assert_eq!(plan.wake, ["rs1", "cm1"]);
        assert!(plan.writes.is_empty(), "rs1 blocks");
        // Both going: the blocking one still holds the owner, and needs no look.
        let going = deleting(blocking.clone(), FOREGROUND_DELETION);
        assert_eq!(for_owner(&owner, &[&going]), OwnerPlan::default());
        // Only non-blocking dependents left: the owner goes.
        let plan = for_owner(&owner, &[&loose]);
        assert_eq!(plan.wake, ["cm1"]);
        assert_eq!(
            kinds_and_uids(&plan.writes),
            ["unfinalize d1 foregroundDeletion"]
        );
        let plan = for_owner(&owner, &[]);
        assert_eq!(
            kinds_and_uids(&plan.writes),
            ["unfinalize d1 foregroundDeletion"]
        );
    }

    #[test]
    fn a_dependent_of_a_foreground_owner_with_another_living_owner_only_drops_the_reference() {
        let pod = node(
            "Pod",
            "p1",
            vec![owner_ref("rs1", true), owner_ref("cm1", false)],
        );
        let owners = [
            ("rs1".into(), OwnerState::WaitingForDependents),
            ("cm1".into(), OwnerState::Present),
        ];
        let actions = for_dependent(&pod, &owners, false);
        assert_eq!(kinds_and_uids(&actions), ["drop rs1 from p1"]);
    }

    #[test]
    fn an_owner_not_waiting_for_the_collector_needs_nothing() {
        let owner = node("ReplicaSet", "rs1", vec![]);
        let pod = node("Pod", "p1", vec![owner_ref("rs1", true)]);
        assert_eq!(for_owner(&owner, &[&pod]), OwnerPlan::default());
        let graceful = Node {
            deleting: true,
            ..owner
        };
        assert_eq!(for_owner(&graceful, &[&pod]), OwnerPlan::default());
    }
}
