//! A DaemonSet's template history as ControllerRevisions (Kubernetes' `constructHistory` and
//! `cleanupHistory`). Pure.
//!
//! - The **template hash** (the `controller-revision-hash` label on pods and revisions) is
//!   FNV-1a (32 bit) over the template's JSON as `serde_json` writes it (k8s-openapi fields in
//!   declaration order, maps sorted, so equal templates give equal bytes), then, when
//!   `status.collisionCount` is set, eight more bytes: the count as a little-endian `u32` and
//!   four zeros, as Kubernetes' `ComputeHash` adds it. The decimal of the sum is spelled in
//!   Kubernetes' safe alphabet (`rand.SafeEncodeString`: no vowels, no 0/1/3). Kubernetes hashes
//!   a Go dump of the struct instead, so the values differ from a real cluster's, never their use.
//! - The **current revision** is the one whose `data` equals the DaemonSet's patch
//!   `{"spec":{"template":{…,"$patch":"replace"}}}`; none → create `<name>-<hash>` numbered one
//!   above the others; several → keep the highest, delete the rest; an older number → renumber.
//!   A revision already named `<name>-<hash>` with other data is a hash collision: the
//!   DaemonSet's `collisionCount` goes up and the next sync tries the new hash.
//! - **Old revisions** beyond `revisionHistoryLimit` (10) are deleted oldest first, except those
//!   whose hash a pod still carries.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;

use super::placement::REVISION_HASH_LABEL;
use crate::pods::cached::Pod;

/// Revisions kept besides the current one unless the DaemonSet says otherwise.
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;

/// Kubernetes' `rand.SafeEncodeString` alphabet.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The hash of `template` (see the module map).
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let mut hash = fnv1a(FNV_OFFSET, &bytes);
    if let Some(count) = collision_count {
        let mut extra = [0u8; 8];
        extra[..4].copy_from_slice(&count.to_le_bytes());
        hash = fnv1a(hash, &extra);
    }
    hash.to_string()
        .bytes()
        .map(|b| char::from(SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()]))
        .collect()
}

const FNV_OFFSET: u32 = 0x811c_9dc5;

fn fnv1a(mut hash: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// `<name>-<hash>`, the prefix cut so the name stays within 253 characters
/// (`ControllerRevisionName`).
pub fn revision_name(daemon_set: &str, hash: &str) -> String {
    let prefix: String = daemon_set.chars().take(223).collect();
    format!("{prefix}-{hash}")
}

/// What a revision stores: a patch that puts the template back (`getPatch`).
pub fn revision_data(template: &PodTemplateSpec) -> serde_json::Value {
    let mut template = serde_json::to_value(template).unwrap_or_default();
    if let Some(map) = template.as_object_mut() {
        map.insert("$patch".to_string(), "replace".into());
    }
    serde_json::json!({ "spec": { "template": template } })
}

/// What to do with the DaemonSet's revisions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RevisionPlan {
    /// The hash its up-to-date pods carry: the current revision's label, or the new hash.
    pub current_hash: String,
    /// No revision holds the template: create this one.
    pub create: Option<ControllerRevision>,
    /// The current revision is not the newest: set its `revision` to this number.
    pub renumber: Option<(String, i64)>,
    /// Duplicates of the current revision and history beyond the limit.
    pub delete: Vec<String>,
    /// `<name>-<hash>` exists with another template: raise `status.collisionCount` to this.
    pub collision_count: Option<i32>,
}

/// `revisions`: those the DaemonSet controls. `pods`: its pods, whose hashes keep old revisions.
/// `prune`: whether to delete history beyond the limit (only when the controller may act).
pub fn plan_revisions(
    ds: &DaemonSet,
    owner: &OwnerReference,
    revisions: &[Arc<ControllerRevision>],
    pods: &[Arc<Pod>],
    prune: bool,
) -> RevisionPlan {
    let spec = ds.spec.clone().unwrap_or_default();
    let name = ds.metadata.name.clone().unwrap_or_default();
    let collision_count = ds.status.as_ref().and_then(|s| s.collision_count);
    let data = revision_data(&spec.template);
    let (mut current, mut old): (Vec<_>, Vec<_>) = revisions
        .iter()
        .partition(|r| r.data.as_ref().is_some_and(|d| d.0 == data));
    current.sort_by_key(|r| std::cmp::Reverse(r.revision));
    let next_number = old.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
    let mut plan = RevisionPlan::default();
    match current.split_first() {
        Some((keep, duplicates)) => {
            plan.current_hash = hash_label(keep)
                .unwrap_or_else(|| object_name(keep))
                .to_string();
            plan.delete
                .extend(duplicates.iter().map(|r| object_name(r).to_string()));
            if keep.revision < next_number {
                plan.renumber = Some((object_name(keep).to_string(), next_number));
            }
        }
        None => {
            let hash = template_hash(&spec.template, collision_count);
            let new_name = revision_name(&name, &hash);
            if old.iter().any(|r| object_name(r) == new_name) {
                plan.collision_count = Some(collision_count.unwrap_or(0).saturating_add(1));
            } else {
                plan.create = Some(new_revision(ds, owner, &spec.template, &hash, next_number));
            }
            plan.current_hash = hash;
        }
    }
    if prune {
        let limit = spec
            .revision_history_limit
            .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT);
        let excess = old
            .len()
            .saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
        let live: BTreeSet<&str> = pods
            .iter()
            .filter_map(|p| p.metadata.labels.as_ref()?.get(REVISION_HASH_LABEL))
            .map(String::as_str)
            .collect();
        old.sort_by_key(|r| r.revision);
        let expired = old
            .iter()
            .filter(|r| hash_label(r).is_none_or(|h| !live.contains(h)))
            .take(excess);
        plan.delete
            .extend(expired.map(|r| object_name(r).to_string()));
    }
    plan
}

fn new_revision(
    ds: &DaemonSet,
    owner: &OwnerReference,
    template: &PodTemplateSpec,
    hash: &str,
    number: i64,
) -> ControllerRevision {
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.to_string(), hash.to_string());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(
                ds.metadata.name.as_deref().unwrap_or(""),
                hash,
            )),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: ds.metadata.annotations.clone(),
            owner_references: Some(vec![owner.clone()]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(revision_data(template))),
        revision: number,
    }
}

fn hash_label(revision: &ControllerRevision) -> Option<&str> {
    revision
        .metadata
        .labels
        .as_ref()?
        .get(REVISION_HASH_LABEL)
        .map(String::as_str)
}

fn object_name(revision: &ControllerRevision) -> &str {
    revision.metadata.name.as_deref().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn daemon_set(image: &str, limit: i32) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": { "name": "agent", "namespace": "kube-system", "uid": "ds-uid" },
            "spec": { "selector": { "matchLabels": { "app": "agent" } },
                      "revisionHistoryLimit": limit,
                      "template": { "metadata": { "labels": { "app": "agent" } },
                                    "spec": { "containers": [{ "name": "a", "image": image }] } } }
        }))
        .unwrap()
    }

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "DaemonSet".into(),
            name: "agent".into(),
            uid: "ds-uid".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn revision_of(image: &str, number: i64) -> Arc<ControllerRevision> {
        let ds = daemon_set(image, 10);
        let template = ds.spec.clone().unwrap().template;
        let hash = template_hash(&template, None);
        Arc::new(new_revision(&ds, &owner(), &template, &hash, number))
    }

    fn pod_with_hash(hash: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({ "metadata": { "name": "p",
                "labels": { REVISION_HASH_LABEL: hash } } }))
            .unwrap(),
        )
    }

    #[test]
    fn the_hash_is_stable_safe_and_moved_by_the_template_and_the_collision_count() {
        let t = daemon_set("v1", 10).spec.unwrap().template;
        let hash = template_hash(&t, None);
        assert_eq!(hash, template_hash(&t.clone(), None));
        assert!(hash.bytes().all(|b| SAFE_ALPHABET.contains(&b)), "{hash}");
        assert_ne!(
            hash,
            template_hash(&daemon_set("v2", 10).spec.unwrap().template, None)
        );
        assert_ne!(hash, template_hash(&t, Some(1)));
        assert_ne!(template_hash(&t, Some(0)), template_hash(&t, Some(1)));
        assert_eq!(revision_name("agent", &hash), format!("agent-{hash}"));
        assert_eq!(revision_name(&"x".repeat(300), "h").len(), 225);
    }

    #[test]
    fn a_new_template_gets_a_revision_one_above_the_others() {
        let plan = plan_revisions(
            &daemon_set("v3", 10),
            &owner(),
            &[revision_of("v1", 1), revision_of("v2", 2)],
            &[],
            true,
        );
        let created = plan.create.expect("a new revision");
        assert_eq!(created.revision, 3);
        assert_eq!(
            created.metadata.name,
            Some(format!("agent-{}", plan.current_hash))
        );
        assert_eq!(
            created.metadata.labels.unwrap()[REVISION_HASH_LABEL],
            plan.current_hash
        );
        assert_eq!(created.metadata.owner_references.unwrap()[0].uid, "ds-uid");
        assert!(plan.delete.is_empty() && plan.renumber.is_none());
    }

    #[test]
    fn a_rollback_to_an_old_template_renumbers_its_revision() {
        let v1 = revision_of("v1", 1);
        let plan = plan_revisions(
            &daemon_set("v1", 10),
            &owner(),
            &[v1.clone(), revision_of("v2", 2)],
            &[],
            true,
        );
        assert!(plan.create.is_none());
        assert_eq!(plan.renumber, Some((v1.metadata.name.clone().unwrap(), 3)));
        assert_eq!(
            Some(&plan.current_hash),
            v1.metadata
                .labels
                .as_ref()
                .unwrap()
                .get(REVISION_HASH_LABEL)
        );
    }

    #[test]
    fn a_name_taken_by_another_template_raises_the_collision_count() {
        let ds = daemon_set("v2", 10);
        let mut impostor = (*revision_of("v1", 1)).clone();
        impostor.metadata.name = Some(revision_name(
            "agent",
            &template_hash(&ds.spec.clone().unwrap().template, None),
        ));
        let plan = plan_revisions(&ds, &owner(), &[Arc::new(impostor)], &[], true);
        assert!(plan.create.is_none());
        assert_eq!(plan.collision_count, Some(1));
    }

    #[test]
    fn old_history_beyond_the_limit_goes_oldest_first_unless_a_pod_still_uses_it() {
        let old: Vec<_> = (1..=4).map(|n| revision_of(&format!("v{n}"), n)).collect();
        let current = revision_of("v5", 5);
        let mut all = old.clone();
        all.push(current);
        let in_use = old[0].metadata.labels.as_ref().unwrap()[REVISION_HASH_LABEL].clone();
        let plan = plan_revisions(
            &daemon_set("v5", 2),
            &owner(),
            &all,
            &[pod_with_hash(&in_use)],
            true,
        );
        let names = |rs: &[Arc<ControllerRevision>]| -> Vec<String> {
            rs.iter()
                .map(|r| r.metadata.name.clone().unwrap())
                .collect()
        };
        assert_eq!(
            plan.delete,
            names(&old[1..3]),
            "v1 is in use, v2 and v3 go, v4 stays"
        );
        let held = plan_revisions(&daemon_set("v5", 2), &owner(), &all, &[], false);
        assert!(
            held.delete.is_empty(),
            "no pruning while the controller may not act"
        );
    }

    #[test]
    fn duplicates_of_the_current_revision_keep_the_highest() {
        let mut dup = (*revision_of("v1", 1)).clone();
        dup.metadata.name = Some("agent-dup".into());
        dup.revision = 4;
        let plan = plan_revisions(
            &daemon_set("v1", 10),
            &owner(),
            &[revision_of("v1", 1), Arc::new(dup)],
            &[],
            true,
        );
        assert_eq!(
            plan.delete,
            [revision_of("v1", 1).metadata.name.clone().unwrap()]
        );
        assert_eq!(plan.renumber, None);
        assert_eq!(
            plan.current_hash,
            template_hash(&daemon_set("v1", 10).spec.unwrap().template, None)
        );
    }
}
