//! Which PersistentVolume a claim may use, and on which node: what Kubernetes keeps in
//! `component-helpers/storage/volume` (`FindMatchingVolume`, `CheckNodeAffinity`,
//! `IsVolumeBoundToClaim`, `GetBindVolumeToClaim`) and the PV controller's
//! `checkVolumeSatisfyClaim`. Shared by the scheduler's VolumeBinding, which reserves static
//! volumes for claims that wait for their pod's node, and the PersistentVolume controller,
//! which binds every claim. Pure.
//!
//! ```text
//!  find_match(claim, volumes, node, delay_binding, excluded):
//!     a volume already bound to the claim ─► it, if its node affinity admits the node
//!     no node and delay_binding ─► nothing more (the scheduler picks for such claims)
//!     else the smallest Available volume of the claim's class that is big enough, of its
//!     volume mode, offers its access modes, matches its selector and admits the node,
//!     among those with the fewest access modes; `excluded` ones (taken by the pod's other
//!     claims) are skipped
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, ObjectReference, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use rudder_proto::objects::quantity::Quantity;
use rudder_proto::objects::selector::LabelSelector;
use rudder_proto::objects::storage::{claim_class, volume_class, BOUND_BY_CONTROLLER_ANNOTATION};

use super::node_affinity::selector_matches;

/// The phase of a volume no claim holds.
pub const PHASE_AVAILABLE: &str = "Available";

/// The volume's claim reference, if it has one.
pub fn claim_ref(volume: &PersistentVolume) -> Option<&ObjectReference> {
    volume.spec.as_ref()?.claim_ref.as_ref()
}

/// The volume's phase (`""` without a status).
pub fn phase_of(volume: &PersistentVolume) -> &str {
    volume
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// `IsVolumeBoundToClaim`: the volume's claim reference names the claim (and, when it holds
/// a uid, the claim's uid). A reference without a uid is a reservation the claim has not
/// taken up yet.
pub fn is_bound_to(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(reference) = claim_ref(volume) else {
        return false;
    };
    reference.name == claim.metadata.name
        && reference.namespace == claim.metadata.namespace
        && reference
            .uid
            .as_deref()
            .is_none_or(|uid| uid.is_empty() || Some(uid) == claim.metadata.uid.as_deref())
}

/// The `storage` entry of a capacity or request map (zero without one).
pub fn storage_of(capacity: Option<&BTreeMap<String, ApiQuantity>>) -> Quantity {
    capacity
        .and_then(|c| c.get("storage"))
        .and_then(|q| Quantity::parse(&q.0).ok())
        .unwrap_or(Quantity::ZERO)
}

/// The storage the claim requests (zero without a request).
pub fn requested(claim: &PersistentVolumeClaim) -> Quantity {
    storage_of(
        claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref()),
    )
}

/// The volume's storage capacity (zero without one).
pub fn capacity(volume: &PersistentVolume) -> Quantity {
    storage_of(volume.spec.as_ref().and_then(|s| s.capacity.as_ref()))
}

/// Whether claim and volume ask for different volume modes (an unset mode is Filesystem).
pub fn modes_differ(claim: &PersistentVolumeClaim, volume: &PersistentVolume) -> bool {
    let claim_mode = claim.spec.as_ref().and_then(|s| s.volume_mode.as_deref());
    let volume_mode = volume.spec.as_ref().and_then(|s| s.volume_mode.as_deref());
    claim_mode.unwrap_or("Filesystem") != volume_mode.unwrap_or("Filesystem")
}

/// `CheckAccessModes`: the volume offers every access mode the claim asks for.
fn offers_access_modes(claim: &PersistentVolumeClaim, volume: &PersistentVolume) -> bool {
    let offered = volume
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default();
    claim
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default()
        .iter()
        .all(|mode| offered.contains(mode))
}

fn attributes_class_differs(claim: &PersistentVolumeClaim, volume: &PersistentVolume) -> bool {
    let of_claim = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_attributes_class_name.as_deref());
    let of_volume = volume
        .spec
        .as_ref()
        .and_then(|s| s.volume_attributes_class_name.as_deref());
    of_claim.unwrap_or("") != of_volume.unwrap_or("")
}

/// Whether the volume's node affinity admits `node` (`CheckNodeAffinity`); a volume without
/// one goes anywhere.
pub fn fits_node(volume: &PersistentVolume, node: &Node) -> bool {
    volume
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .is_none_or(|required| selector_matches(required, node))
}

/// The volume for an unbound claim (`FindMatchingVolume`): one already bound to it (pre-bound
/// by a user, reserved by the scheduler, or provisioned for it) wins; else the smallest
/// Available volume of the claim's class that is big enough, offers its access modes and
/// volume mode and matches its selector, among those with the fewest access modes. `node`:
/// the node the claim's pod goes to, whose labels the volume's node affinity must admit.
/// With `delay_binding` and no node only a volume already bound to the claim is taken: the
/// scheduler picks for the claim once its pod has a node. Volumes named in `excluded` (taken
/// by the pod's other claims) are skipped.
pub fn find_match<'v>(
    claim: &PersistentVolumeClaim,
    volumes: &'v [Arc<PersistentVolume>],
    node: Option<&Node>,
    delay_binding: bool,
    excluded: &[&str],
) -> Option<&'v Arc<PersistentVolume>> {
    let wanted = requested(claim);
    let class = claim_class(claim);
    let selector = claim
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .map(LabelSelector::from_api);
    let selector = match selector {
        // An invalid selector matches nothing (Kubernetes fails the sync).
        Some(Err(_)) => return None,
        Some(Ok(selector)) => Some(selector),
        None => None,
    };
    let mut best: Option<(usize, Quantity, &'v Arc<PersistentVolume>)> = None;
    for volume in volumes {
        let name = volume.metadata.name.as_deref().unwrap_or_default();
        if excluded.contains(&name) {
            continue;
        }
        if claim_ref(volume).is_some() && !is_bound_to(volume, claim) {
            continue;
        }
        let size = capacity(volume);
        if size < wanted || modes_differ(claim, volume) || attributes_class_differs(claim, volume) {
            continue;
        }
        if volume.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let fits = node.is_none_or(|node| fits_node(volume, node));
        if is_bound_to(volume, claim) {
            return fits.then_some(volume);
        }
        if node.is_none() && delay_binding {
            continue;
        }
        let selected = selector
            .as_ref()
            .is_none_or(|s| s.matches_labels(volume.metadata.labels.as_ref()));
        let usable = phase_of(volume) == PHASE_AVAILABLE
            && selected
            && volume_class(volume) == class
            && fits
            && offers_access_modes(claim, volume);
        if !usable {
            continue;
        }
        let modes = volume
            .spec
            .as_ref()
            .and_then(|s| s.access_modes.as_ref())
            .map_or(0, Vec::len);
        let better = best
            .as_ref()
            .is_none_or(|(best_modes, best_size, _)| (modes, size) < (*best_modes, *best_size));
        if better {
            best = Some((modes, size, volume));
        }
    }
    best.map(|(_, _, volume)| volume)
}

/// Why a volume a claim names cannot be bound to it (`checkVolumeSatisfyClaim`).
pub fn satisfies(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> Result<(), String> {
    let name = volume.metadata.name.as_deref().unwrap_or_default();
    if volume.metadata.deletion_timestamp.is_some() {
        return Err(format!("the volume is marked for deletion {name:?}"));
    }
    if capacity(volume) < requested(claim) {
        return Err("requested PV is too small".into());
    }
    if volume_class(volume) != claim_class(claim) {
        return Err("storageClassName does not match".into());
    }
    if modes_differ(claim, volume) {
        return Err("incompatible volumeMode".into());
    }
    if !offers_access_modes(claim, volume) {
        return Err("incompatible accessMode".into());
    }
    Ok(())
}

/// The volume with its claim reference set to `claim` (and marked bound by the controller
/// when it was not already bound to it); `None` when it already is (`GetBindVolumeToClaim`).
/// The PersistentVolume controller writes it as the first step of a bind; the scheduler
/// writes it to reserve a static volume for a claim whose pod it placed.
pub fn volume_bound(
    volume: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Option<PersistentVolume> {
    let current = claim_ref(volume);
    let same = current.is_some_and(|r| {
        r.name == claim.metadata.name
            && r.namespace == claim.metadata.namespace
            && r.uid == claim.metadata.uid
    });
    if same {
        return None;
    }
    let mut bound = volume.clone();
    if !is_bound_to(volume, claim) {
        bound
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(
                BOUND_BY_CONTROLLER_ANNOTATION.to_string(),
                "yes".to_string(),
            );
    }
    bound.spec.get_or_insert_with(Default::default).claim_ref = Some(ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: claim.metadata.namespace.clone(),
        name: claim.metadata.name.clone(),
        uid: claim.metadata.uid.clone(),
        resource_version: claim.metadata.resource_version.clone(),
        field_path: None,
    });
    Some(bound)
}

/// Claims, volumes and nodes as the volume tables build them (here and in the binder's).
#[cfg(test)]
pub(crate) mod fixtures {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
    use serde_json::{json, Value};

    pub fn claim(change: impl FnOnce(&mut Value)) -> PersistentVolumeClaim {
        let mut value = json!({
            "metadata": { "name": "data", "namespace": "default", "uid": "claim-uid",
                          "resourceVersion": "10" },
            "spec": { "accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                      "resources": { "requests": { "storage": "1Gi" } } },
            "status": { "phase": "Pending" }
        });
        change(&mut value);
        serde_json::from_value(value).expect("a test claim decodes")
    }

    pub fn volume(
        name: &str,
        size: &str,
        change: impl FnOnce(&mut Value),
    ) -> Arc<PersistentVolume> {
        let mut value = json!({
            "metadata": { "name": name, "resourceVersion": "5" },
            "spec": { "accessModes": ["ReadWriteOnce"], "capacity": { "storage": size },
                      "storageClassName": "manual", "hostPath": { "path": "/mnt/data" },
                      "persistentVolumeReclaimPolicy": "Retain" },
            "status": { "phase": "Available" }
        });
        change(&mut value);
        Arc::new(serde_json::from_value(value).expect("a test volume decodes"))
    }

    pub fn node(name: &str) -> Node {
        serde_json::from_value(json!({ "metadata": { "name": name,
            "labels": { "kubernetes.io/hostname": name } } }))
        .expect("a test node decodes")
    }

    pub fn on_node(node: &str) -> impl FnOnce(&mut Value) {
        let node = node.to_string();
        move |v: &mut Value| {
            v["spec"]["nodeAffinity"] = json!({ "required": { "nodeSelectorTerms": [{
                "matchExpressions": [{ "key": "kubernetes.io/hostname", "operator": "In",
                                       "values": [node] }] }] } })
        }
    }

    pub fn bound_to_claim(v: &mut Value) {
        v["spec"]["claimRef"] = json!({ "kind": "PersistentVolumeClaim", "namespace": "default",
                                        "name": "data", "uid": "claim-uid" });
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use serde_json::{json, Value};

    fn name_of(found: Option<&Arc<PersistentVolume>>) -> Option<&str> {
        found.and_then(|v| v.metadata.name.as_deref())
    }

    #[test]
    fn the_smallest_fitting_volume_of_the_class_is_matched() {
        let none = |_: &mut Value| {};
        /// (what, the claim, the volumes, the volume chosen)
        type Row<'a> = (
            &'a str,
            PersistentVolumeClaim,
            Vec<Arc<PersistentVolume>>,
            Option<&'a str>,
        );
        let table: Vec<Row> = vec![
            ("nothing", claim(|_| {}), vec![], None),
            (
                "the smallest big enough",
                claim(|_| {}),
                vec![
                    volume("small", "500Mi", none),
                    volume("huge", "10Gi", none),
                    volume("fits", "2Gi", none),
                ],
                Some("fits"),
            ),
            (
                "another class",
                claim(|_| {}),
                vec![volume("fast", "2Gi", |v| {
                    v["spec"]["storageClassName"] = json!("fast")
                })],
                None,
            ),
            (
                "not Available",
                claim(|_| {}),
                vec![volume("released", "2Gi", |v| {
                    v["status"]["phase"] = json!("Released")
                })],
                None,
            ),
            (
                "claimed by another claim",
                claim(|_| {}),
                vec![volume("taken", "2Gi", |v| {
                    v["spec"]["claimRef"] = json!({ "namespace": "default", "name": "other" })
                })],
                None,
            ),
            (
                "missing an access mode",
                claim(|c| c["spec"]["accessModes"] = json!(["ReadWriteMany"])),
                vec![volume("rwo", "2Gi", none)],
                None,
            ),
            (
                "fewest access modes first",
                claim(|_| {}),
                vec![
                    volume("both", "1Gi", |v| {
                        v["spec"]["accessModes"] = json!(["ReadWriteOnce", "ReadOnlyMany"])
                    }),
                    volume("one", "5Gi", none),
                ],
                Some("one"),
            ),
            (
                "another volume mode",
                claim(|c| c["spec"]["volumeMode"] = json!("Block")),
                vec![volume("fs", "2Gi", none)],
                None,
            ),
            (
                "the selector",
                claim(|c| c["spec"]["selector"] = json!({ "matchLabels": { "tier": "gold" } })),
                vec![
                    volume("plain", "1Gi", none),
                    volume("gold", "3Gi", |v| {
                        v["metadata"]["labels"] = json!({ "tier": "gold" })
                    }),
                ],
                Some("gold"),
            ),
            (
                "being deleted",
                claim(|_| {}),
                vec![volume("going", "2Gi", |v| {
                    v["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z")
                })],
                None,
            ),
            (
                "pre-bound to it wins over a smaller one, whatever its phase",
                claim(|_| {}),
                vec![
                    volume("small", "1Gi", none),
                    volume("mine", "8Gi", |v| {
                        bound_to_claim(v);
                        v["status"]["phase"] = json!("Bound")
                    }),
                ],
                Some("mine"),
            ),
        ];
        for (why, claim, volumes, expected) in table {
            assert_eq!(
                name_of(find_match(&claim, &volumes, None, false, &[])),
                expected,
                "{why}"
            );
        }
    }

    #[test]
    fn a_claim_waiting_for_its_pod_takes_only_a_volume_on_the_pods_node() {
        let volumes = vec![
            volume("on-n1", "2Gi", on_node("n1")),
            volume("on-n2", "1Gi", on_node("n2")),
        ];
        let claim = claim(|_| {});
        assert_eq!(
            name_of(find_match(&claim, &volumes, None, true, &[])),
            None,
            "no node yet: wait"
        );
        assert_eq!(
            name_of(find_match(&claim, &volumes, Some(&node("n1")), true, &[])),
            Some("on-n1")
        );
        assert_eq!(
            name_of(find_match(&claim, &volumes, Some(&node("n3")), true, &[])),
            None
        );
        let mine = vec![volume("mine", "1Gi", |v| {
            bound_to_claim(v);
            on_node("n2")(v)
        })];
        assert_eq!(
            name_of(find_match(&claim, &mine, Some(&node("n1")), true, &[])),
            None,
            "its own volume on another node does not fit"
        );
        assert_eq!(
            name_of(find_match(&claim, &mine, None, true, &[])),
            Some("mine")
        );
    }

    #[test]
    fn a_volume_another_claim_of_the_pod_took_is_skipped() {
        let volumes = vec![
            volume("small", "1Gi", on_node("n1")),
            volume("big", "5Gi", on_node("n1")),
        ];
        let n1 = node("n1");
        let claim = claim(|_| {});
        assert_eq!(
            name_of(find_match(&claim, &volumes, Some(&n1), true, &["small"])),
            Some("big")
        );
        assert_eq!(
            name_of(find_match(
                &claim,
                &volumes,
                Some(&n1),
                true,
                &["small", "big"]
            )),
            None
        );
    }

    #[test]
    fn a_volume_is_reserved_for_a_claim_once() {
        let free = volume("pv-1", "1Gi", |_| {});
        let claim = claim(|_| {});
        let reserved = volume_bound(&free, &claim).expect("a claim reference to write");
        let reference = claim_ref(&reserved).expect("a reference");
        assert_eq!(
            (
                reference.name.as_deref(),
                reference.uid.as_deref(),
                reference.resource_version.as_deref()
            ),
            (Some("data"), Some("claim-uid"), Some("10"))
        );
        assert_eq!(
            reserved
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(BOUND_BY_CONTROLLER_ANNOTATION))
                .map(String::as_str),
            Some("yes")
        );
        assert_eq!(
            reserved.metadata.resource_version.as_deref(),
            Some("5"),
            "written at the version it was read at"
        );
        assert!(is_bound_to(&reserved, &claim));
        assert_eq!(
            volume_bound(&reserved, &claim),
            None,
            "nothing left to write"
        );
        let by_user = volume("pv-1", "1Gi", |v| {
            v["spec"]["claimRef"] = json!({ "namespace": "default", "name": "data" })
        });
        let taken_up = volume_bound(&by_user, &claim).expect("the uid to write");
        assert!(
            taken_up.metadata.annotations.is_none(),
            "a user's reservation is not marked as the controller's"
        );
    }
}
