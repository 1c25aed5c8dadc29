//! A StatefulSet pod's claims, pure: whether they let the pod be created (Kubernetes'
//! `createPersistentVolumeClaims` and `PodClaimIsStale`), and whose they are under the
//! retention policy (`isClaimOwnerUpToDate` and `updateClaimOwnerRefForSetAndPod`).
//!
//! ```text
//!  before a pod is created:  claim being deleted ──────────────► wait (not a dying claim)
//!                            whenScaled Delete and the claim is
//!                            owned by an earlier pod of the name ► wait for the garbage collector
//!                            missing ──────────────────────────► create it with the pod
//!  owners (set S, pod P):    Retain/Retain ► none        whenDeleted Delete ► S
//!                            whenScaled Delete ► P once the pod is out of range (both: S, then P)
//! ```
//!
//! A claim whose reference to the set or pod names an object of another UID (an earlier set
//! or pod of the same name) is left alone, as is one another controller owns (the references
//! to this set and pod are then removed, none added).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::identity::Identity;
use crate::pods::cached::Pod;

/// The claims of the set's namespace by name.
pub type ClaimIndex<'a> = BTreeMap<&'a str, &'a Arc<PersistentVolumeClaim>>;

/// Why a pod cannot have its claims yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// The claim is being deleted.
    Terminating(String),
    /// The claim still belongs to an earlier pod of the same name (whenScaled Delete); the
    /// garbage collector removes it once that pod is gone.
    Stale(String),
}

/// The claims of the pod of `ordinal` that do not exist yet, ready to create. `new_pod`: the
/// pod itself is about to be created, so a claim owned by an earlier pod of its name is stale.
pub fn missing_claims(
    id: &Identity,
    ordinal: i64,
    existing: &ClaimIndex<'_>,
    new_pod: bool,
) -> Result<Vec<PersistentVolumeClaim>, Blocked> {
    let pod_name = id.pod_name(ordinal);
    let found = |name: &str| existing.get(name).copied();
    let names = id.claim_names(ordinal);
    let held_before = |c: &Arc<PersistentVolumeClaim>| refers_to_pod(c, &pod_name);
    let dying = |c: &Arc<PersistentVolumeClaim>| c.metadata.deletion_timestamp.is_some();
    if new_pod && id.retention.delete_when_scaled {
        let stale = names
            .iter()
            .find(|name| found(name.as_str()).is_some_and(held_before));
        if let Some(name) = stale {
            return Err(Blocked::Stale(name.clone()));
        }
    }
    let going = names
        .iter()
        .find(|name| found(name.as_str()).is_some_and(dying));
    if let Some(name) = going {
        return Err(Blocked::Terminating(name.clone()));
    }
    Ok(id
        .new_claims(ordinal)
        .into_iter()
        .filter(|c| found(c.metadata.name.as_deref().unwrap_or("")).is_none())
        .collect())
}

/// Any reference to a pod of this name: a pod not created yet has no UID, so whatever UID
/// the reference holds belongs to an earlier pod.
fn refers_to_pod(claim: &PersistentVolumeClaim, pod_name: &str) -> bool {
    refs(claim)
        .iter()
        .any(|r| r.api_version == "v1" && r.kind == "Pod" && r.name == pod_name)
}

/// An owner as a reference names it.
struct Owner<'a> {
    api_version: &'a str,
    kind: &'a str,
    name: &'a str,
    uid: &'a str,
}

impl Owner<'_> {
    fn names(&self, r: &OwnerReference) -> bool {
        r.api_version == self.api_version && r.kind == self.kind && r.name == self.name
    }

    /// The first reference naming it holds another UID (`hasStaleOwnerRef`).
    fn is_stale_in(&self, refs: &[OwnerReference]) -> bool {
        refs.iter()
            .find(|r| self.names(r))
            .is_some_and(|r| r.uid != self.uid)
    }

    fn is_in(&self, refs: &[OwnerReference]) -> bool {
        !self.uid.is_empty() && refs.iter().any(|r| r.uid == self.uid)
    }

    fn controller_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: self.api_version.to_string(),
            kind: self.kind.to_string(),
            name: self.name.to_string(),
            uid: self.uid.to_string(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }
}

fn refs(claim: &PersistentVolumeClaim) -> &[OwnerReference] {
    claim
        .metadata
        .owner_references
        .as_deref()
        .unwrap_or_default()
}

/// The owner references `claim` (of `pod`, whose ordinal is or is not `in_range`) should
/// have under the set's retention policy; `None` when it has them or must not be touched.
pub fn owners_to_set(
    id: &Identity,
    claim: &PersistentVolumeClaim,
    pod: &Pod,
    in_range: bool,
) -> Option<Vec<OwnerReference>> {
    let set = Owner {
        api_version: "apps/v1",
        kind: "StatefulSet",
        name: &id.name,
        uid: &id.uid,
    };
    let pod = Owner {
        api_version: "v1",
        kind: "Pod",
        name: pod.metadata.name.as_deref().unwrap_or(""),
        uid: pod.metadata.uid.as_deref().unwrap_or(""),
    };
    let refs = refs(claim);
    if set.is_stale_in(refs) || pod.is_stale_in(refs) {
        return None;
    }
    let foreign_controller = !id.retention.retains_all()
        && refs
            .iter()
            .any(|r| !set.names(r) && !pod.names(r) && r.controller == Some(true));
    let ours = |r: &OwnerReference| set.names(r) || pod.names(r);
    let without_ours =
        || -> Vec<OwnerReference> { refs.iter().filter(|&r| !ours(r)).cloned().collect() };
    if foreign_controller {
        return (set.is_in(refs) || pod.is_in(refs)).then(without_ours);
    }
    let want_set = id.retention.owned_by_set(in_range);
    // A pod is referenced by its UID: one without (never so in the cache) cannot own.
    let want_pod = id.retention.owned_by_pod(in_range) && !pod.uid.is_empty();
    let uncontrolled = refs.iter().any(|r| {
        (r.uid == set.uid || (!pod.uid.is_empty() && r.uid == pod.uid))
            && r.controller != Some(true)
    });
    if !uncontrolled && set.is_in(refs) == want_set && pod.is_in(refs) == want_pod {
        return None;
    }
    let mut owners = without_ours();
    if want_set {
        owners.push(set.controller_reference());
    }
    if want_pod {
        owners.push(pod.controller_reference());
    }
    Some(owners)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::statefulset::identity::Retention;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn id(deleted: bool, scaled: bool) -> Identity {
        Identity {
            name: "web".into(),
            namespace: "default".into(),
            uid: "sts-uid".into(),
            claim_templates: vec![serde_json::from_value(
                serde_json::json!({ "metadata": { "name": "www" } }),
            )
            .unwrap()],
            retention: Retention {
                delete_when_deleted: deleted,
                delete_when_scaled: scaled,
            },
            ..Identity::default()
        }
    }

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "web-1", "uid": "pod-uid" } }))
        .unwrap()
    }

    fn reference(kind: &str, name: &str, uid: &str, controller: bool) -> OwnerReference {
        OwnerReference {
            api_version: if kind == "Pod" { "v1" } else { "apps/v1" }.into(),
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            controller: Some(controller),
            block_owner_deletion: Some(true),
        }
    }

    fn claim(owners: Vec<OwnerReference>) -> Arc<PersistentVolumeClaim> {
        let mut c = PersistentVolumeClaim::default();
        c.metadata.name = Some("www-web-1".into());
        c.metadata.owner_references = Some(owners);
        Arc::new(c)
    }

    fn uids(owners: &[OwnerReference]) -> Vec<&str> {
        owners.iter().map(|o| o.uid.as_str()).collect()
    }

    #[test]
    fn owners_follow_the_policy_and_the_pods_place_in_the_range() {
        // (whenDeleted Delete, whenScaled Delete, in range) -> owners wanted (None: as is)
        let table: [(bool, bool, bool, Option<Vec<&str>>); 8] = [
            (false, false, true, None),
            (false, false, false, None),
            (true, false, true, Some(vec!["sts-uid"])),
            (true, false, false, Some(vec!["sts-uid"])),
            (false, true, true, None),
            (false, true, false, Some(vec!["pod-uid"])),
            (true, true, true, Some(vec!["sts-uid"])),
            (true, true, false, Some(vec!["pod-uid"])),
        ];
        for (deleted, scaled, in_range, wanted) in table {
            let got = owners_to_set(&id(deleted, scaled), &claim(vec![]), &pod(), in_range);
            assert_eq!(
                got.as_deref().map(uids),
                wanted,
                "{deleted} {scaled} {in_range}"
            );
        }
    }

    #[test]
    fn a_claim_already_owned_right_is_left_alone_and_a_scaled_away_one_changes_hands() {
        let set_owned = claim(vec![reference("StatefulSet", "web", "sts-uid", true)]);
        assert_eq!(
            owners_to_set(&id(true, true), &set_owned, &pod(), true),
            None
        );
        let moved = owners_to_set(&id(true, true), &set_owned, &pod(), false).unwrap();
        assert_eq!(uids(&moved), ["pod-uid"]);
        let plain = claim(vec![reference("StatefulSet", "web", "sts-uid", false)]);
        let fixed = owners_to_set(&id(true, false), &plain, &pod(), true).unwrap();
        assert_eq!(
            (uids(&fixed), fixed[0].controller),
            (vec!["sts-uid"], Some(true))
        );
        let retained = owners_to_set(&id(false, false), &set_owned, &pod(), true).unwrap();
        assert!(retained.is_empty(), "Retain drops the set's reference");
    }

    #[test]
    fn stale_references_and_other_controllers_are_not_fought() {
        let earlier_set = claim(vec![reference("StatefulSet", "web", "old-uid", true)]);
        assert_eq!(
            owners_to_set(&id(true, true), &earlier_set, &pod(), false),
            None
        );
        let earlier_pod = claim(vec![reference("Pod", "web-1", "old-pod", true)]);
        assert_eq!(
            owners_to_set(&id(true, true), &earlier_pod, &pod(), true),
            None
        );
        let other = reference("Thing", "x", "x-uid", true);
        let foreign = claim(vec![other.clone()]);
        assert_eq!(owners_to_set(&id(true, true), &foreign, &pod(), true), None);
        let shared = claim(vec![
            other,
            reference("StatefulSet", "web", "sts-uid", true),
        ]);
        let cleaned = owners_to_set(&id(true, true), &shared, &pod(), true).unwrap();
        assert_eq!(uids(&cleaned), ["x-uid"], "only our reference goes");
    }

    fn check(
        id: &Identity,
        existing: &Arc<PersistentVolumeClaim>,
        new_pod: bool,
    ) -> Result<Vec<PersistentVolumeClaim>, Blocked> {
        let index: ClaimIndex<'_> = [("www-web-1", existing)].into();
        missing_claims(id, 1, &index, new_pod)
    }

    #[test]
    fn a_new_pod_waits_for_a_dying_or_stale_claim_and_brings_the_missing_ones() {
        let missing = missing_claims(&id(false, false), 1, &ClaimIndex::new(), true).unwrap();
        assert_eq!(missing[0].metadata.name.as_deref(), Some("www-web-1"));
        let kept = claim(vec![]);
        assert_eq!(check(&id(false, true), &kept, true), Ok(vec![]));
        let stale = claim(vec![reference("Pod", "web-1", "old-pod", true)]);
        assert_eq!(
            check(&id(false, true), &stale, true),
            Err(Blocked::Stale("www-web-1".into()))
        );
        assert_eq!(
            check(&id(false, false), &stale, true),
            Ok(vec![]),
            "under Retain a claim is reused whoever held it"
        );
        let mut dying = (*kept).clone();
        dying.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        assert_eq!(
            check(&id(false, false), &Arc::new(dying), false),
            Err(Blocked::Terminating("www-web-1".into()))
        );
    }
}
