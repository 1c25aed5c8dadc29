//! VolumeBinding, as kube-scheduler's plugin decides it: a pod's PersistentVolumeClaims, where
//! their volumes let it run, and what must be written and waited for before it is bound
//! there. Pure: the claims, volumes and classes are the snapshot's ([`Storage`], kept event
//! by event, with the scheduler's own writes assumed ahead of the watch).
//!
//! ```text
//!  PodVolumes::new (PreFilter, once per pod), for each claim volume (and ephemeral one):
//!     claim missing / being deleted / Lost ─► refused: no node can do ("persistentvolumeclaim
//!                                             "data" not found")
//!     bound (volumeName + bind-completed) ──► its volume's node affinity must admit the node
//!     unbound, class WaitForFirstConsumer, no volumeName ─► decided per node (below)
//!     unbound, any other class, or naming its volume ─► refused: "pod has unbound immediate
//!                                             PersistentVolumeClaims" (the binder binds it)
//!  PodVolumes::check(node) (Filter, FindPodVolumes):
//!     bound volume gone ─► "node(s) unavailable due to one or more pvc(s) bound to
//!                           non-existent pv(s)"
//!     bound volume pinned elsewhere ─► "node(s) had volume node affinity conflict"
//!     waiting claim selected for another node ─► "node(s) didn't find available persistent
//!                                                 volumes to bind"
//!     else a static volume here for each (smallest request first, none taken twice), or
//!     provisioning here: the class has a provisioner and its allowedTopologies admit the
//!     node (else the same reason); a claim the built-in provisioner can make on no node
//!     (ReadWriteMany, Block, ...) ─► that reason, in full
//!  PodVolumes::pre_bind(node) (Reserve, AssumePodVolumes) ─► PreBind: the static volumes to
//!     reserve (their claimRef), the claims to annotate with the node, every claim to wait for
//!  check_bindings (PreBind's wait, checkBindings) ─► Bound | Waiting | Failed(why)
//! ```
//!
//! The shell ([`super::actor`], [`super::claims`]) assumes a [`PreBind`] in the snapshot at
//! once (the next pod sees the volume taken), writes it at the resourceVersions read (a
//! claim or volume changed meanwhile fails the bind, and the pod is tried again), waits for
//! the PersistentVolume controller to bind the claims, and only then binds the pod, as
//! kube-scheduler's `BindPodVolumes` does: a pod is bound to a node only once its claims
//! are bound to volumes that node can use.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rudder_proto::objects::storage::{
    claim_class, is_claim_bound, selected_node, waits_for_first_consumer, LOCAL_PATH_PROVISIONER,
    NO_PROVISIONER, SELECTED_NODE_ANNOTATION,
};

use super::unfit::{Unfit, VOLUME_BIND_CONFLICT};
use crate::controllers::volume::provisioner;
use crate::informer::ObjectKey;
use crate::pods::cached::Pod;
use crate::scheduling::volumes::{
    claim_ref, find_match, fits_node, is_bound_to, requested, volume_bound,
};

/// kube-scheduler's message for unbound claims whose class binds at once.
pub const UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";

/// An object's resourceVersion as a number (the store's revision); 0 when it has none.
fn version(meta: &ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The claims, volumes and classes the scheduler knows: as the watch shows them, and as the
/// scheduler's own PreBind writes will leave them (kube-scheduler's assume cache). An assumed
/// object stands in for the watched one until the watch shows a newer version of it (the
/// write, or a change that makes the write fail) or the bind fails.
#[derive(Debug, Clone, Default)]
pub struct Storage {
    claims: HashMap<ObjectKey, Arc<PersistentVolumeClaim>>,
    volumes: BTreeMap<String, Arc<PersistentVolume>>,
    classes: HashMap<String, Arc<StorageClass>>,
    assumed_claims: HashMap<ObjectKey, Arc<PersistentVolumeClaim>>,
    assumed_volumes: HashMap<String, Arc<PersistentVolume>>,
}

impl Storage {
    pub fn upsert_claim(&mut self, claim: Arc<PersistentVolumeClaim>) {
        let key = ObjectKey::of(&claim.metadata);
        let newer = |assumed: &Arc<PersistentVolumeClaim>| {
            version(&claim.metadata) > version(&assumed.metadata)
        };
        if self.assumed_claims.get(&key).is_some_and(newer) {
            self.assumed_claims.remove(&key);
        }
        self.claims.insert(key, claim);
    }

    pub fn remove_claim(&mut self, key: &ObjectKey) {
        self.claims.remove(key);
        self.assumed_claims.remove(key);
    }

    pub fn upsert_volume(&mut self, volume: Arc<PersistentVolume>) {
        let name = volume.metadata.name.clone().unwrap_or_default();
        let newer = |assumed: &Arc<PersistentVolume>| {
            version(&volume.metadata) > version(&assumed.metadata)
        };
        if self.assumed_volumes.get(&name).is_some_and(newer) {
            self.assumed_volumes.remove(&name);
        }
        self.volumes.insert(name, volume);
    }

    pub fn remove_volume(&mut self, name: &str) {
        self.volumes.remove(name);
        self.assumed_volumes.remove(name);
    }

    pub fn upsert_class(&mut self, class: Arc<StorageClass>) {
        let name = class.metadata.name.clone().unwrap_or_default();
        self.classes.insert(name, class);
    }

    pub fn remove_class(&mut self, name: &str) {
        self.classes.remove(name);
    }

    /// Takes the claim as a PreBind is about to write it (its selected-node annotation).
    pub fn assume_claim(&mut self, claim: PersistentVolumeClaim) {
        let key = ObjectKey::of(&claim.metadata);
        if self.claims.contains_key(&key) {
            self.assumed_claims.insert(key, Arc::new(claim));
        }
    }

    /// Takes the volume as a PreBind is about to write it (reserved for a claim).
    pub fn assume_volume(&mut self, volume: PersistentVolume) {
        let name = volume.metadata.name.clone().unwrap_or_default();
        if self.volumes.contains_key(&name) {
            self.assumed_volumes.insert(name, Arc::new(volume));
        }
    }

    /// A PreBind failed: its claims and volumes are taken as the watch shows them again.
    pub fn forget(&mut self, pre_bind: &PreBind) {
        for claim in &pre_bind.select {
            self.assumed_claims.remove(&ObjectKey::of(&claim.metadata));
        }
        for volume in &pre_bind.reserve {
            let name = volume.metadata.name.as_deref().unwrap_or_default();
            self.assumed_volumes.remove(name);
        }
    }

    /// The claim as the scheduler takes it (assumed, else watched).
    pub fn claim(&self, namespace: &str, name: &str) -> Option<&Arc<PersistentVolumeClaim>> {
        let key = ObjectKey::new(namespace, name);
        self.assumed_claims
            .get(&key)
            .or_else(|| self.claims.get(&key))
    }

    /// The volume as the scheduler takes it (assumed, else watched).
    pub fn volume(&self, name: &str) -> Option<&Arc<PersistentVolume>> {
        self.assumed_volumes
            .get(name)
            .or_else(|| self.volumes.get(name))
    }

    /// Every volume as the scheduler takes it.
    pub fn volumes(&self) -> impl Iterator<Item = &Arc<PersistentVolume>> {
        self.volumes
            .iter()
            .map(|(name, volume)| self.assumed_volumes.get(name).unwrap_or(volume))
    }

    /// The claim as the watch last showed it (what the PersistentVolume controller did).
    pub fn watched_claim(&self, key: &ObjectKey) -> Option<&Arc<PersistentVolumeClaim>> {
        self.claims.get(key)
    }

    /// The volume as the watch last showed it.
    pub fn watched_volume(&self, name: &str) -> Option<&Arc<PersistentVolume>> {
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
    /// Why the class's provisioner (the built-in one) can make no volume for the claim, on
    /// any node; `None`: it can, or the provisioner is another's.
    cannot_provision: Option<String>,
}

/// What a pod's claims ask of a node, worked out once per pod (VolumeBinding's PreFilter).
#[derive(Debug, Clone, Default)]
pub struct PodVolumes {
    /// Why no node can take the pod now; the message of its `FailedScheduling`.
    refusal: Option<String>,
    /// The volume of each bound claim (`None`: the volume does not exist).
    bound: Vec<Option<Arc<PersistentVolume>>>,
    /// Smallest request first, so that each takes the smallest volume that fits
    /// (`findMatchingVolumes` sorts them so).
    waiting: Vec<Waiting>,
    /// Every volume, for the waiting claims' static matches (only when there are some).
    volumes: Vec<Arc<PersistentVolume>>,
}

/// The waiting claims' fate on one node: a static volume for each of `bindings`, a volume
/// provisioned there for each of `provisions`.
#[derive(Debug, Default)]
struct Found<'a> {
    bindings: Vec<(&'a Waiting, &'a Arc<PersistentVolume>)>,
    provisions: Vec<&'a Waiting>,
}

/// One claim a pod's bind waits for, and how its binding is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimWait {
    pub claim: ObjectKey,
    /// The static volume reserved for it; `None`: provisioned on the pod's node.
    pub volume: Option<String>,
    /// The resourceVersion the PreBind's write of it left (the volume's, or the claim's):
    /// a watched copy older than that has not seen the write yet. 0: nothing was written.
    pub written: u64,
}

/// What VolumeBinding's PreBind does for a pod placed on a node (`AssumePodVolumes`): the
/// writes, each at the resourceVersion it was made from, and the claims the pod's bind then
/// waits for. Empty when every claim is bound already (or the pod has none).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PreBind {
    /// Static volumes with their claimRef set to the claim that takes each.
    pub reserve: Vec<PersistentVolume>,
    /// Claims to provision on the node, annotated `volume.kubernetes.io/selected-node`.
    pub select: Vec<PersistentVolumeClaim>,
    /// Every waiting claim (those written above, and those reserved or selected already).
    pub waits: Vec<ClaimWait>,
}

impl PreBind {
    /// Whether the pod may be bound at once.
    pub fn is_empty(&self) -> bool {
        self.waits.is_empty()
    }
}

/// Where a pod's wait for its claims stands (`checkBindings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Every claim is bound, to a volume the node can use: bind the pod.
    Bound,
    /// The PersistentVolume controller (or the watch) has not got there yet.
    Waiting,
    /// It cannot end well: the bind fails with this, and the pod is scheduled again.
    Failed(String),
}

/// Whether the pod has volumes that are claims (or ephemeral ones): only then does
/// VolumeBinding have anything to do for it.
pub fn uses_claims(pod: &Pod) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .any(|v| v.persistent_volume_claim.is_some() || v.ephemeral.is_some())
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
    /// The pod's claims as `storage` shows them (`GetPodVolumeClaims`).
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
            let volume_name = claim
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.as_deref())
                .unwrap_or_default();
            if is_claim_bound(claim) {
                volumes.bound.push(storage.volume(volume_name).cloned());
                continue;
            }
            // A claim that names its volume is the binder's to bind, whatever its class.
            match storage.class(claim_class(claim)) {
                Some(class) if waits_for_first_consumer(class) && volume_name.is_empty() => {
                    let cannot_provision = (class.provisioner == LOCAL_PATH_PROVISIONER)
                        .then(|| provisioner::refusal(claim))
                        .flatten();
                    volumes.waiting.push(Waiting {
                        claim: claim.clone(),
                        class: class.clone(),
                        cannot_provision,
                    });
                }
                _ => unbound_immediate = true,
            }
        }
        if unbound_immediate {
            volumes.refusal = Some(UNBOUND_IMMEDIATE.to_string());
        } else if !volumes.waiting.is_empty() {
            volumes
                .waiting
                .sort_by_key(|waiting| requested(&waiting.claim));
            volumes.volumes = storage.volumes().cloned().collect();
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
        self.find(node).map(drop)
    }

    /// What must be written, and waited for, before the pod is bound to `node`
    /// (VolumeBinding's Reserve); what [`Self::check`] says when the node does not fit.
    pub fn pre_bind(&self, node: &Node) -> Result<PreBind, Unfit> {
        let found = self.find(node)?;
        let node_name = node.metadata.name.as_deref().unwrap_or_default();
        let mut plan = PreBind::default();
        for (waiting, volume) in found.bindings {
            if let Some(reserved) = volume_bound(volume, &waiting.claim) {
                plan.reserve.push(reserved);
            }
            plan.waits.push(ClaimWait {
                claim: ObjectKey::of(&waiting.claim.metadata),
                volume: volume.metadata.name.clone(),
                written: 0,
            });
        }
        for waiting in found.provisions {
            if selected_node(&waiting.claim) != Some(node_name) {
                let mut selected = PersistentVolumeClaim::clone(&waiting.claim);
                selected
                    .metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(SELECTED_NODE_ANNOTATION.to_string(), node_name.to_string());
                plan.select.push(selected);
            }
            plan.waits.push(ClaimWait {
                claim: ObjectKey::of(&waiting.claim.metadata),
                volume: None,
                written: 0,
            });
        }
        Ok(plan)
    }

    /// The claims' volumes on `node` (`FindPodVolumes`), or why there are none.
    fn find(&self, node: &Node) -> Result<Found<'_>, Unfit> {
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
        let mut found = Found::default();
        if self.waiting.is_empty() {
            return Ok(found);
        }
        let name = node.metadata.name.as_deref();
        let mut to_match = Vec::new();
        for waiting in &self.waiting {
            match selected_node(&waiting.claim) {
                // Being provisioned for another node already.
                Some(selected) if Some(selected) != name => {
                    return Err(Unfit::VolumeBindConflict);
                }
                Some(_) => found.provisions.push(waiting),
                None => to_match.push(waiting),
            }
        }
        let mut taken: Vec<&str> = Vec::new();
        for waiting in to_match {
            match find_match(&waiting.claim, &self.volumes, Some(node), true, &taken) {
                Some(volume) => {
                    taken.push(volume.metadata.name.as_deref().unwrap_or_default());
                    found.bindings.push((waiting, volume));
                }
                None => found.provisions.push(waiting),
            }
        }
        for waiting in &found.provisions {
            // `checkVolumeProvisions`.
            let provisioner = waiting.class.provisioner.as_str();
            let provisions = !provisioner.is_empty() && provisioner != NO_PROVISIONER;
            if !provisions || !allowed_topology(&waiting.class, node) {
                return Err(Unfit::VolumeBindConflict);
            }
            if let Some(why) = &waiting.cannot_provision {
                let name = waiting.claim.metadata.name.as_deref().unwrap_or_default();
                return Err(Unfit::CannotProvision(format!(
                    "{VOLUME_BIND_CONFLICT} (persistentvolumeclaim {name:?} cannot be \
                     provisioned: {why})"
                )));
            }
        }
        Ok(found)
    }
}

/// Where the claims a pod's bind waits for stand, as `storage` shows what the watch saw
/// (`checkBindings`): every one bound, to a volume `node` can use; not yet; or never, and
/// why (a reserved volume's claimRef reset, a claim's selected node changed because its
/// provisioning failed, a volume pinned elsewhere, an object gone).
pub fn check_bindings(waits: &[ClaimWait], storage: &Storage, node: &Node) -> Progress {
    let node_name = node.metadata.name.as_deref().unwrap_or_default();
    let mut all_bound = true;
    for wait in waits {
        let Some(claim) = storage.watched_claim(&wait.claim) else {
            return Progress::Failed(format!("persistentvolumeclaim {} not found", wait.claim));
        };
        match &wait.volume {
            Some(name) => {
                let Some(volume) = storage.watched_volume(name) else {
                    return Progress::Failed(format!("persistentvolume {name:?} not found"));
                };
                if version(&volume.metadata) < wait.written {
                    // The watch has not shown the reservation yet.
                    all_bound = false;
                    continue;
                }
                if !fits_node(volume, node) {
                    return Progress::Failed(format!(
                        "pv {name:?} node affinity doesn't match node {node_name:?}"
                    ));
                }
                let Some(reference) = claim_ref(volume)
                    .filter(|r| r.uid.as_deref().is_some_and(|uid| !uid.is_empty()))
                else {
                    // Reserved by another pod's PreBind (this one wrote nothing), not watched
                    // yet: the assumed copy says so until the watch shows it, or it failed.
                    if storage.volume(name).is_some_and(|v| is_bound_to(v, claim)) {
                        all_bound = false;
                        continue;
                    }
                    return Progress::Failed(format!("ClaimRef got reset for pv {name:?}"));
                };
                if !is_bound_to(volume, claim) {
                    // Kubernetes waits out its bind timeout here; nothing will change it.
                    return Progress::Failed(format!(
                        "pv {name:?} is bound to another claim ({}/{})",
                        reference.namespace.as_deref().unwrap_or_default(),
                        reference.name.as_deref().unwrap_or_default()
                    ));
                }
            }
            None => {
                if version(&claim.metadata) < wait.written {
                    all_bound = false;
                    continue;
                }
                if selected_node(claim) != Some(node_name) {
                    let assumed = storage.claim(&wait.claim.namespace, &wait.claim.name);
                    if assumed.is_some_and(|c| selected_node(c) == Some(node_name)) {
                        // Another pod's PreBind annotated it, not watched yet.
                        all_bound = false;
                        continue;
                    }
                    // The provisioner removes the annotation when it cannot provision there.
                    return Progress::Failed(format!(
                        "provisioning failed for PVC {:?}",
                        wait.claim.name
                    ));
                }
                let volume_name = claim
                    .spec
                    .as_ref()
                    .and_then(|s| s.volume_name.as_deref())
                    .unwrap_or_default();
                if !volume_name.is_empty() {
                    match storage.watched_volume(volume_name) {
                        // Not seen yet (or gone, when the claim is soon unbound).
                        None => {
                            all_bound = false;
                            continue;
                        }
                        Some(volume) if !fits_node(volume, node) => {
                            return Progress::Failed(format!(
                                "pv {volume_name:?} node affinity doesn't match node \
                                 {node_name:?}"
                            ));
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        if !is_claim_bound(claim) {
            all_bound = false;
        }
    }
    if all_bound {
        Progress::Bound
    } else {
        Progress::Waiting
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
#[path = "volumes_tests.rs"]
mod tests;
