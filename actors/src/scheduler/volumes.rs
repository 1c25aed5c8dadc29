//! VolumeBinding, as kube-scheduler's plugin decides it: a pod's PersistentVolumeClaims and
//! where their volumes let it run. Pure: the claims, volumes and classes are the snapshot's
//! ([`Storage`], kept event by event).
//!
//! ```text
//!  PodVolumes::new (PreFilter, once per pod), for each claim volume (and ephemeral one):
//!     claim missing / being deleted / Lost ─► refused: no node can do ("persistentvolumeclaim
//!                                             "data" not found")
//!     bound (volumeName + bind-completed) ──► its volume's node affinity must admit the node
//!     unbound, class WaitForFirstConsumer ─► decided per node (below)
//!     unbound, any other class ────────────► refused: "pod has unbound immediate
//!                                             PersistentVolumeClaims" (the binder binds it)
//!  PodVolumes::check(node) (Filter):
//!     bound volume gone ─► "node(s) unavailable due to one or more pvc(s) bound to
//!                           non-existent pv(s)"
//!     bound volume pinned elsewhere ─► "node(s) had volume node affinity conflict"
//!     waiting claim: selected for another node, or neither a static volume here nor a
//!     provisioner that can make one here ─► "node(s) didn't find available persistent
//!                                            volumes to bind"
//! ```
//!
//! Once a node is chosen, the waiting claims that have no node yet
//! ([`PodVolumes::unselected`]) are annotated `volume.kubernetes.io/selected-node` before the
//! pod is bound; the PersistentVolume controller then binds or provisions them there. Unlike
//! kube-scheduler, no volume is assumed or pre-bound here: two pods racing for the last
//! static volume on a node can both be sent there, and the second waits for its claim.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use rudder_proto::objects::storage::{
    claim_class, is_claim_bound, selected_node, waits_for_first_consumer, NO_PROVISIONER,
};

use super::unfit::Unfit;
use crate::controllers::volume::binder::{find_match, fits_node};
use crate::informer::ObjectKey;

/// kube-scheduler's message for unbound claims whose class binds at once.
pub const UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";

/// The claims, volumes and classes the scheduler knows.
#[derive(Debug, Clone, Default)]
pub struct Storage {
    claims: HashMap<ObjectKey, Arc<PersistentVolumeClaim>>,
    volumes: BTreeMap<String, Arc<PersistentVolume>>,
    classes: HashMap<String, Arc<StorageClass>>,
}

impl Storage {
    pub fn upsert_claim(&mut self, claim: Arc<PersistentVolumeClaim>) {
        self.claims.insert(ObjectKey::of(&claim.metadata), claim);
    }

    pub fn remove_claim(&mut self, key: &ObjectKey) {
        self.claims.remove(key);
    }

    pub fn upsert_volume(&mut self, volume: Arc<PersistentVolume>) {
        let name = volume.metadata.name.clone().unwrap_or_default();
        self.volumes.insert(name, volume);
    }

    pub fn remove_volume(&mut self, name: &str) {
        self.volumes.remove(name);
    }

    pub fn upsert_class(&mut self, class: Arc<StorageClass>) {
        let name = class.metadata.name.clone().unwrap_or_default();
        self.classes.insert(name, class);
    }

    pub fn remove_class(&mut self, name: &str) {
        self.classes.remove(name);
    }

    pub fn claim(&self, namespace: &str, name: &str) -> Option<&Arc<PersistentVolumeClaim>> {
        self.claims.get(&ObjectKey::new(namespace, name))
    }

    pub fn volume(&self, name: &str) -> Option<&Arc<PersistentVolume>> {
        self.volumes.get(name)
    }

    pub fn class(&self, name: &str) -> Option<&Arc<StorageClass>> {
        self.classes.get(name)
    }
}

/// An unbound claim whose class waits for its first pod's node.
#[derive(Debug, Clone)]
struct Waiting {
    claim: Arc<PersistentVolumeClaim>,
    class: Arc<StorageClass>,
}

/// What a pod's claims ask of a node, worked out once per pod (VolumeBinding's PreFilter).
#[derive(Debug, Clone, Default)]
pub struct PodVolumes {
    /// Why no node can take the pod now; the message of its `FailedScheduling`.
    refusal: Option<String>,
    /// The volume of each bound claim (`None`: the volume does not exist).
    bound: Vec<Option<Arc<PersistentVolume>>>,
    waiting: Vec<Waiting>,
    /// Every volume, for the waiting claims' static matches (only when there are some).
    volumes: Vec<Arc<PersistentVolume>>,
}

/// The claim each of the pod's claim volumes uses: `(claim name, ephemeral)`.
fn claim_names(pod: &Pod) -> Vec<(String, bool)> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|volume| {
            if let Some(claim) = &volume.persistent_volume_claim {
                Some((claim.claim_name.clone(), false))
            } else if volume.ephemeral.is_some() {
                // Generic ephemeral volumes: the claim `<pod>-<volume>` made for the pod.
                Some((format!("{pod_name}-{}", volume.name), true))
            } else {
                None
            }
        })
        .collect()
}

impl PodVolumes {
    /// The pod's claims as `storage` shows them.
    pub fn new(pod: &Pod, storage: &Storage) -> Self {
        let mut volumes = Self::default();
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let mut unbound_immediate = false;
        for (name, ephemeral) in claim_names(pod) {
            let Some(claim) = storage.claim(namespace, &name) else {
                volumes.refusal = Some(if ephemeral {
                    format!(
                        "waiting for ephemeral volume controller to create the \
                         persistentvolumeclaim {name:?}"
                    )
                } else {
                    format!("persistentvolumeclaim {name:?} not found")
                });
                return volumes;
            };
            if let Some(refusal) = refusal(pod, claim, ephemeral) {
                volumes.refusal = Some(refusal);
                return volumes;
            }
            if is_claim_bound(claim) {
                let volume = claim
                    .spec
                    .as_ref()
                    .and_then(|s| s.volume_name.as_deref())
                    .and_then(|v| storage.volume(v));
                volumes.bound.push(volume.cloned());
                continue;
            }
            match storage.class(claim_class(claim)) {
                Some(class) if waits_for_first_consumer(class) => volumes.waiting.push(Waiting {
                    claim: claim.clone(),
                    class: class.clone(),
                }),
                _ => unbound_immediate = true,
            }
        }
        if unbound_immediate {
            volumes.refusal = Some(UNBOUND_IMMEDIATE.to_string());
        } else if !volumes.waiting.is_empty() {
            volumes.volumes = storage.volumes.values().cloned().collect();
        }
        volumes
    }

    /// Why no node can take the pod now (VolumeBinding's PreFilter said
    /// UnschedulableAndUnresolvable), if so.
    pub fn refusal(&self) -> Option<&str> {
        self.refusal.as_deref()
    }

    /// Whether the pod's claims let it run on `node` (VolumeBinding's Filter).
    pub fn check(&self, node: &Node) -> Result<(), Unfit> {
        if let Some(refusal) = &self.refusal {
            return Err(Unfit::Claims(refusal.clone()));
        }
        for volume in &self.bound {
            match volume {
                None => return Err(Unfit::VolumeMissing),
                Some(volume) if !fits_node(volume, node) => return Err(Unfit::VolumeNodeConflict),
                Some(_) => {}
            }
        }
        let name = node.metadata.name.as_deref();
        for waiting in &self.waiting {
            if let Some(selected) = selected_node(&waiting.claim) {
                // Being provisioned for that node already.
                if Some(selected) != name {
                    return Err(Unfit::VolumeBindConflict);
                }
                continue;
            }
            if find_match(&waiting.claim, &self.volumes, Some(node), true).is_some() {
                continue;
            }
            let provisions = waiting.class.provisioner != NO_PROVISIONER;
            if !provisions || !allowed_topology(&waiting.class, node) {
                return Err(Unfit::VolumeBindConflict);
            }
        }
        Ok(())
    }

    /// The waiting claims no node was selected for yet: annotated with the chosen node
    /// before the pod is bound.
    pub fn unselected(&self) -> Vec<Arc<PersistentVolumeClaim>> {
        self.waiting
            .iter()
            .filter(|w| selected_node(&w.claim).is_none())
            .map(|w| w.claim.clone())
            .collect()
    }
}

/// Why one claim keeps the pod off every node (`podHasPVCs`), if it does.
fn refusal(pod: &Pod, claim: &PersistentVolumeClaim, ephemeral: bool) -> Option<String> {
    let name = claim.metadata.name.as_deref().unwrap_or_default();
    let lost = claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Lost");
    if lost {
        let volume = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .unwrap_or_default();
        return Some(format!(
            "persistentvolumeclaim {name:?} bound to non-existent persistentvolume {volume:?}"
        ));
    }
    if claim.metadata.deletion_timestamp.is_some() {
        return Some(format!("persistentvolumeclaim {name:?} is being deleted"));
    }
    let owned_by_pod = || {
        claim
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.controller == Some(true) && Some(&o.uid) == pod.metadata.uid.as_ref())
    };
    if ephemeral && !owned_by_pod() {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        return Some(format!(
            "PVC {namespace}/{name} was not created for pod {namespace}/{pod_name} (pod is not \
             owner)"
        ));
    }
    None
}

/// Whether the class may provision on `node` (`MatchTopologySelectorTerms`): no terms, or a
/// term whose every expression the node's labels meet.
fn allowed_topology(class: &StorageClass, node: &Node) -> bool {
    let Some(terms) = class
        .allowed_topologies
        .as_deref()
        .filter(|t| !t.is_empty())
    else {
        return true;
    };
    let labels = node.metadata.labels.as_ref();
    terms.iter().any(|term| {
        let expressions = term.match_label_expressions.as_deref().unwrap_or_default();
        !expressions.is_empty()
            && expressions.iter().all(|e| {
                labels
                    .and_then(|l| l.get(&e.key))
                    .is_some_and(|v| e.values.contains(v))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rudder_proto::objects::storage::default_storage_class;
    use serde_json::{json, Value};

    fn node(name: &str, zone: &str) -> Node {
        serde_json::from_value(json!({ "metadata": { "name": name, "labels": {
            "kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone } } }))
        .expect("a test node decodes")
    }

    fn claim(name: &str, change: impl FnOnce(&mut Value)) -> Arc<PersistentVolumeClaim> {
        let mut value = json!({
            "metadata": { "name": name, "namespace": "default", "uid": format!("{name}-uid") },
            "spec": { "accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                      "resources": { "requests": { "storage": "1Gi" } } },
            "status": { "phase": "Pending" }
        });
        change(&mut value);
        Arc::new(serde_json::from_value(value).expect("a test claim decodes"))
    }

    fn bound_to(volume: &str) -> impl FnOnce(&mut Value) {
        let volume = volume.to_string();
        move |c: &mut Value| {
            c["spec"]["volumeName"] = json!(volume);
            c["metadata"]["annotations"] = json!({ "pv.kubernetes.io/bind-completed": "yes" });
            c["status"]["phase"] = json!("Bound");
        }
    }

    fn volume_on(
        name: &str,
        node: Option<&str>,
        change: impl FnOnce(&mut Value),
    ) -> Arc<PersistentVolume> {
        let mut value = json!({
            "metadata": { "name": name },
            "spec": { "accessModes": ["ReadWriteOnce"], "capacity": { "storage": "1Gi" },
                      "storageClassName": "local", "local": { "path": "/mnt/disk" } },
            "status": { "phase": "Available" }
        });
        if let Some(node) = node {
            value["spec"]["nodeAffinity"] = json!({ "required": { "nodeSelectorTerms": [{
                "matchExpressions": [{ "key": "kubernetes.io/hostname", "operator": "In",
                                       "values": [node] }] }] } });
        }
        change(&mut value);
        Arc::new(serde_json::from_value(value).expect("a test volume decodes"))
    }

    fn storage(
        claims: &[Arc<PersistentVolumeClaim>],
        volumes: &[Arc<PersistentVolume>],
    ) -> Storage {
        let mut storage = Storage::default();
        let mut local = default_storage_class();
        local.metadata.name = Some("local".into());
        local.provisioner = NO_PROVISIONER.into();
        let mut immediate = default_storage_class();
        immediate.metadata.name = Some("fast".into());
        immediate.provisioner = "example.com/ssd".into();
        immediate.volume_binding_mode = Some("Immediate".into());
        let mut zoned = default_storage_class();
        zoned.metadata.name = Some("zoned".into());
        zoned.allowed_topologies = Some(
            serde_json::from_value(json!([{ "matchLabelExpressions": [
                { "key": "topology.kubernetes.io/zone", "values": ["a"] }] }]))
            .expect("terms decode"),
        );
        for class in [default_storage_class(), local, immediate, zoned] {
            storage.upsert_class(Arc::new(class));
        }
        for claim in claims {
            storage.upsert_claim(claim.clone());
        }
        for volume in volumes {
            storage.upsert_volume(volume.clone());
        }
        storage
    }

    fn pod_using(claims: &[&str]) -> Pod {
        let volumes: Vec<Value> = claims
            .iter()
            .map(|c| json!({ "name": c, "persistentVolumeClaim": { "claimName": c } }))
            .collect();
        serde_json::from_value(json!({
            "metadata": { "name": "web-0", "namespace": "default", "uid": "pod-uid" },
            "spec": { "containers": [{ "name": "c" }], "volumes": volumes } }))
        .expect("a test pod decodes")
    }

    /// Each node's verdict: `Ok` or the reason.
    fn verdicts(pod: &Pod, storage: &Storage) -> Vec<String> {
        let volumes = PodVolumes::new(pod, storage);
        [node("n1", "a"), node("n2", "b")]
            .iter()
            .map(|n| match volumes.check(n) {
                Ok(()) => "ok".to_string(),
                Err(unfit) => unfit.reasons().join(", "),
            })
            .collect()
    }

    #[test]
    fn claims_keep_a_pod_off_every_node_in_kubernetes_words() {
        let table: Vec<(&str, Vec<Arc<PersistentVolumeClaim>>, &str)> =
            vec![
            ("missing", vec![], "persistentvolumeclaim \"data\" not found"),
            (
                "being deleted",
                vec![claim("data", |c| {
                    c["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z")
                })],
                "persistentvolumeclaim \"data\" is being deleted",
            ),
            (
                "lost",
                vec![claim("data", |c| {
                    c["spec"]["volumeName"] = json!("gone");
                    c["status"]["phase"] = json!("Lost")
                })],
                "persistentvolumeclaim \"data\" bound to non-existent persistentvolume \"gone\"",
            ),
            (
                "unbound, binds at once",
                vec![claim("data", |c| c["spec"]["storageClassName"] = json!("fast"))],
                UNBOUND_IMMEDIATE,
            ),
            (
                "unbound, a class that does not exist",
                vec![claim("data", |c| c["spec"]["storageClassName"] = json!("gold"))],
                UNBOUND_IMMEDIATE,
            ),
        ];
        for (why, claims, expected) in table {
            let volumes = PodVolumes::new(&pod_using(&["data"]), &storage(&claims, &[]));
            assert_eq!(volumes.refusal(), Some(expected), "{why}");
        }
        let ephemeral: Pod = serde_json::from_value(json!({
            "metadata": { "name": "web-0", "namespace": "default", "uid": "pod-uid" },
            "spec": { "containers": [{ "name": "c" }],
                      "volumes": [{ "name": "scratch", "ephemeral": { "volumeClaimTemplate": {
                          "spec": { "accessModes": ["ReadWriteOnce"] } } } }] } }))
        .expect("a pod decodes");
        let volumes = PodVolumes::new(&ephemeral, &storage(&[], &[]));
        assert_eq!(
            volumes.refusal(),
            Some(
                "waiting for ephemeral volume controller to create the persistentvolumeclaim \
                 \"web-0-scratch\""
            )
        );
    }

    #[test]
    fn each_node_is_checked_against_the_claims_volumes() {
        let pv_n1 = volume_on("pv-n1", Some("n1"), |_| {});
        /// (what, the claims, the volumes, the verdicts on the two nodes)
        type Row<'a> = (
            &'a str,
            Vec<Arc<PersistentVolumeClaim>>,
            Vec<Arc<PersistentVolume>>,
            [&'a str; 2],
        );
        let table: Vec<Row> = vec![
            (
                "bound to a volume on n1",
                vec![claim("data", bound_to("pv-n1"))],
                vec![pv_n1.clone()],
                ["ok", "node(s) had volume node affinity conflict"],
            ),
            (
                "bound to a volume without affinity",
                vec![claim("data", bound_to("pv-any"))],
                vec![volume_on("pv-any", None, |_| {})],
                ["ok", "ok"],
            ),
            (
                "bound to a volume that is gone",
                vec![claim("data", bound_to("pv-gone"))],
                vec![],
                [
                    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)",
                    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)",
                ],
            ),
            (
                "waiting, provisioned anywhere",
                vec![claim("data", |_| {})],
                vec![],
                ["ok", "ok"],
            ),
            (
                "waiting, selected for n2 already",
                vec![claim("data", |c| {
                    c["metadata"]["annotations"] =
                        json!({ "volume.kubernetes.io/selected-node": "n2" })
                })],
                vec![],
                [
                    "node(s) didn't find available persistent volumes to bind",
                    "ok",
                ],
            ),
            (
                "waiting, static volumes only, one on n1",
                vec![claim("data", |c| {
                    c["spec"]["storageClassName"] = json!("local")
                })],
                vec![pv_n1.clone()],
                [
                    "ok",
                    "node(s) didn't find available persistent volumes to bind",
                ],
            ),
            (
                "waiting, static volumes only, taken",
                vec![claim("data", |c| {
                    c["spec"]["storageClassName"] = json!("local")
                })],
                vec![volume_on("pv-n1", Some("n1"), |v| {
                    v["spec"]["claimRef"] = json!({ "namespace": "default", "name": "other" });
                    v["status"]["phase"] = json!("Bound")
                })],
                [
                    "node(s) didn't find available persistent volumes to bind",
                    "node(s) didn't find available persistent volumes to bind",
                ],
            ),
            (
                "waiting, provisioned only in zone a",
                vec![claim("data", |c| {
                    c["spec"]["storageClassName"] = json!("zoned")
                })],
                vec![],
                [
                    "ok",
                    "node(s) didn't find available persistent volumes to bind",
                ],
            ),
        ];
        for (why, claims, volumes, expected) in table {
            let verdicts = verdicts(&pod_using(&["data"]), &storage(&claims, &volumes));
            assert_eq!(verdicts, expected, "{why}");
        }
    }

    #[test]
    fn only_claims_without_a_node_are_annotated() {
        let fresh = claim("fresh", |_| {});
        let selected = claim("selected", |c| {
            c["metadata"]["annotations"] = json!({ "volume.kubernetes.io/selected-node": "n1" })
        });
        let done = claim("done", bound_to("pv-any"));
        let storage = storage(
            &[fresh, selected, done],
            &[volume_on("pv-any", None, |_| {})],
        );
        let volumes = PodVolumes::new(&pod_using(&["fresh", "selected", "done"]), &storage);
        assert_eq!(volumes.refusal(), None);
        let names: Vec<_> = volumes
            .unselected()
            .iter()
            .map(|c| c.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["fresh"]);
        assert!(PodVolumes::new(&pod_using(&[]), &storage)
            .unselected()
            .is_empty());
    }
}
