//! The PersistentVolume binder's decisions, as kube-controller-manager's PV controller makes
//! them (`syncClaim`, `syncVolume`, `FindMatchingVolume`, `bind`). Pure: the caches' state
//! in, what to do out; the actor carries it out.
//!
//! ```text
//!  claim ─ plan_claim ─┬─ not bound yet: its pre-bound volume, or the smallest Available one
//!                      │  that fits (class, access modes, size, selector, mode) ─► Bind
//!                      │  none: no class yet and a default exists ─► AssignClass
//!                      │        class waits for a pod and none is scheduled ─► Pending
//!                      │        the class provisions ─► Provision (provisioner.rs)
//!                      └─ bound: its volume still points back ─► Bind (repairs a half bind)
//!                                its volume is gone or someone else's ─► Lost
//!  volume ─ plan_volume ─ no claim ref ─► Available     claim bound here ─► Bound
//!                         claim gone (uid) ─► Released, then Delete / Retain
//!                         claim not bound yet ─► look at the claim now
//!  Bind ─► the four writes of `edits.rs`, in Kubernetes' order
//! ```
//!
//! One deviation: a claim whose class waits for the first consumer is matched to a static
//! volume here, on the node the scheduler selected, rather than by the scheduler itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, ObjectReference, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rudder_proto::objects::quantity::Quantity;
use rudder_proto::objects::selector::LabelSelector;
use rudder_proto::objects::storage::{
    claim_class, claim_has_class, default_class, selected_node, volume_class,
    waits_for_first_consumer, BIND_COMPLETED_ANNOTATION, BOUND_BY_CONTROLLER_ANNOTATION,
    HOSTNAME_LABEL, LOCAL_PATH_PROVISIONER, PROVISIONED_BY_ANNOTATION, RECLAIM_DELETE,
    RECLAIM_RECYCLE, RECLAIM_RETAIN,
};

use super::provisioner::{self, Provisioning, Target};
use crate::events::EventType;
use crate::scheduling::node_affinity::selector_matches;

pub const PHASE_PENDING: &str = "Pending";
pub const PHASE_AVAILABLE: &str = "Available";
pub const PHASE_BOUND: &str = "Bound";
pub const PHASE_RELEASED: &str = "Released";
pub const PHASE_FAILED: &str = "Failed";
pub const PHASE_LOST: &str = "Lost";

/// An event to record about the object a decision is for, in Kubernetes' words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub type_: EventType,
    pub reason: &'static str,
    pub message: String,
}

impl Note {
    fn normal(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_: EventType::Normal,
            reason,
            message: message.into(),
        }
    }

    fn warning(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_: EventType::Warning,
            reason,
            message: message.into(),
        }
    }
}

/// What to do for a claim.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimPlan {
    /// Bind it to this volume (or finish binding it).
    Bind { volume: Arc<PersistentVolume> },
    /// Give it the default class (it was made before one existed); it is looked at again.
    AssignClass { class: String },
    /// Create this volume for it; the binder binds it once the volume is seen.
    Provision { volume: Box<PersistentVolume> },
    /// It waits (phase Pending), with an event saying for what.
    Pending { note: Option<Note> },
    /// Its volume is gone or belongs to another claim: phase Lost, with a warning.
    Lost(Note),
}

/// What to do for a volume.
#[derive(Debug, Clone, PartialEq)]
pub enum VolumePlan {
    /// Set this phase (when it is not already so).
    Phase(&'static str),
    /// Its claim is gone: phase Released, then its reclaim policy.
    Reclaim(Reclaim),
    /// Its claim is not bound to it yet: the claim's sync finishes the binding.
    SyncClaim { namespace: String, name: String },
    /// It points at a claim bound elsewhere: let it go (the whole reference when the
    /// controller made it, else only the claim's uid) and make it Available.
    Unbind { by_controller: bool },
    /// Nothing to do now, perhaps an event.
    Wait(Option<Note>),
}

/// What becomes of a released volume, by its reclaim policy.
#[derive(Debug, Clone, PartialEq)]
pub enum Reclaim {
    /// Retain: it stays Released until an administrator deals with it.
    Keep,
    /// Delete, and its provisioner is the built-in one: delete the object.
    Delete,
    /// Delete, for an external provisioner to carry out: it stays Released.
    External,
    /// It cannot be reclaimed as asked: phase Failed, with the reason.
    Fail(Note),
}

/// The caches a claim's plan reads.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub volumes: &'a [Arc<PersistentVolume>],
    pub classes: &'a [Arc<StorageClass>],
    /// The node the scheduler selected for the claim, when it is known.
    pub selected: Option<&'a Node>,
}

impl View<'_> {
    fn class(&self, name: &str) -> Option<&StorageClass> {
        self.classes
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
            .map(|c| &**c)
    }

    fn volume(&self, name: &str) -> Option<&Arc<PersistentVolume>> {
        self.volumes
            .iter()
            .find(|v| v.metadata.name.as_deref() == Some(name))
    }
}

pub(super) fn spec_volume_name(claim: &PersistentVolumeClaim) -> &str {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("")
}

pub(super) fn has_annotation(meta: &ObjectMeta, key: &str) -> bool {
    meta.annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(key))
}

pub(super) fn claim_ref(volume: &PersistentVolume) -> Option<&ObjectReference> {
    volume.spec.as_ref()?.claim_ref.as_ref()
}

/// `IsVolumeBoundToClaim`: the volume's claim reference names the claim (and, when it holds
/// a uid, the claim's uid).
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
pub(super) fn storage_of(capacity: Option<&BTreeMap<String, ApiQuantity>>) -> Quantity {
    capacity
        .and_then(|c| c.get("storage"))
        .and_then(|q| Quantity::parse(&q.0).ok())
        .unwrap_or(Quantity::ZERO)
}

fn requested(claim: &PersistentVolumeClaim) -> Quantity {
    storage_of(
        claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref()),
    )
}

pub(super) fn capacity(volume: &PersistentVolume) -> Quantity {
    storage_of(volume.spec.as_ref().and_then(|s| s.capacity.as_ref()))
}

/// Whether claim and volume ask for different volume modes (an unset mode is Filesystem).
fn modes_differ(claim: &PersistentVolumeClaim, volume: &PersistentVolume) -> bool {
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

pub(super) fn phase_of(volume: &PersistentVolume) -> &str {
    volume
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// The volume for an unbound claim (`FindMatchingVolume`): one already bound to it (pre-bound
/// by a user, or provisioned for it) wins; else the smallest Available volume of the claim's
/// class that is big enough, offers its access modes and volume mode and matches its
/// selector, among those with the fewest access modes. `node`: the node the claim's pod goes
/// to, whose labels the volume's node affinity must admit. With `delay_binding` and no node
/// only a volume already bound to the claim is taken: the claim waits for its pod's node.
pub fn find_match<'v>(
    claim: &PersistentVolumeClaim,
    volumes: &'v [Arc<PersistentVolume>],
    node: Option<&Node>,
    delay_binding: bool,
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

/// What to do for `claim`, given the volumes, classes and selected node in `view`.
pub fn plan_claim(claim: &PersistentVolumeClaim, view: &View<'_>) -> ClaimPlan {
    if has_annotation(&claim.metadata, BIND_COMPLETED_ANNOTATION) {
        plan_bound_claim(claim, view)
    } else {
        plan_unbound_claim(claim, view)
    }
}

fn plan_bound_claim(claim: &PersistentVolumeClaim, view: &View<'_>) -> ClaimPlan {
    let name = spec_volume_name(claim);
    if name.is_empty() {
        return ClaimPlan::Lost(Note::warning(
            "ClaimLost",
            "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
        ));
    }
    let Some(volume) = view.volume(name) else {
        return ClaimPlan::Lost(Note::warning(
            "ClaimLost",
            "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
        ));
    };
    // A volume that lost its reference (or whose binding is not seen yet) is bound again;
    // one that points back finishes its binding (each step writes only what is missing).
    if claim_ref(volume).is_none() || is_bound_to(volume, claim) {
        return ClaimPlan::Bind {
            volume: volume.clone(),
        };
    }
    ClaimPlan::Lost(Note::warning(
        "ClaimMisbound",
        "Two claims are bound to the same volume, this one is bound incorrectly",
    ))
}

fn plan_unbound_claim(claim: &PersistentVolumeClaim, view: &View<'_>) -> ClaimPlan {
    let wanted = spec_volume_name(claim);
    if !wanted.is_empty() {
        return plan_pre_bound_claim(claim, wanted, view);
    }
    let class_name = claim_class(claim);
    let class = view.class(class_name);
    let delay = class.is_some_and(waits_for_first_consumer);
    let selected = selected_node(claim);
    // A claim whose pod has a node may take a static volume on that node.
    let node = view
        .selected
        .filter(|n| delay && selected.is_some() && n.metadata.name.as_deref() == selected);
    if let Some(volume) = find_match(claim, view.volumes, node, delay) {
        return ClaimPlan::Bind {
            volume: volume.clone(),
        };
    }
    if !claim_has_class(claim) {
        if let Some(class) = default_class(view.classes) {
            if let Some(name) = class.metadata.name.clone() {
                return ClaimPlan::AssignClass { class: name };
            }
        }
    }
    if delay && selected.is_none() {
        return ClaimPlan::Pending {
            note: Some(Note::normal(
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding",
            )),
        };
    }
    if class_name.is_empty() {
        return ClaimPlan::Pending {
            note: Some(Note::normal(
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set",
            )),
        };
    }
    let Some(class) = class else {
        return ClaimPlan::Pending {
            note: Some(Note::warning(
                "ProvisioningFailed",
                format!("storageclass.storage.k8s.io {class_name:?} not found"),
            )),
        };
    };
    let target = selected.map(|node| Target {
        node,
        hostname: view
            .selected
            .filter(|n| n.metadata.name.as_deref() == Some(node))
            .and_then(|n| n.metadata.labels.as_ref()?.get(HOSTNAME_LABEL))
            .map_or(node, String::as_str),
    });
    match provisioner::provision(claim, class, target) {
        Provisioning::Create(volume) => ClaimPlan::Provision { volume },
        Provisioning::External { provisioner } => ClaimPlan::Pending {
            note: Some(Note::normal(
                "ExternalProvisioning",
                format!(
                    "Waiting for a volume to be created either by the external provisioner \
                     '{provisioner}' or manually by the system administrator. If volume \
                     creation is delayed, please verify that the provisioner is running and \
                     correctly registered."
                ),
            )),
        },
        Provisioning::Failed(why) => ClaimPlan::Pending {
            note: Some(Note::warning(
                "ProvisioningFailed",
                format!("Failed to provision volume with StorageClass {class_name:?}: {why}"),
            )),
        },
    }
}

/// A claim that names its volume in `spec.volumeName` but is not bound yet.
fn plan_pre_bound_claim(claim: &PersistentVolumeClaim, name: &str, view: &View<'_>) -> ClaimPlan {
    let Some(volume) = view.volume(name) else {
        // Not there (yet): it may still be made.
        return ClaimPlan::Pending { note: None };
    };
    if claim_ref(volume).is_none() {
        return match satisfies(volume, claim) {
            Ok(()) => ClaimPlan::Bind {
                volume: volume.clone(),
            },
            Err(why) => ClaimPlan::Pending {
                note: Some(Note::warning(
                    "VolumeMismatch",
                    format!("Cannot bind to requested volume {name:?}: {why}"),
                )),
            },
        };
    }
    if is_bound_to(volume, claim) {
        return ClaimPlan::Bind {
            volume: volume.clone(),
        };
    }
    ClaimPlan::Pending {
        note: Some(Note::warning(
            "FailedBinding",
            format!("volume {name:?} already bound to a different claim."),
        )),
    }
}

/// What to do for `volume`, whose claim reference names `claim` (`None`: no such claim).
pub fn plan_volume(volume: &PersistentVolume, claim: Option<&PersistentVolumeClaim>) -> VolumePlan {
    let Some(reference) = claim_ref(volume) else {
        return VolumePlan::Phase(PHASE_AVAILABLE);
    };
    let Some(uid) = reference.uid.as_deref().filter(|u| !u.is_empty()) else {
        // Reserved for a claim that has not been bound to it yet: the claim's sync does it.
        return VolumePlan::Phase(PHASE_AVAILABLE);
    };
    let claim = claim.filter(|c| c.metadata.uid.as_deref() == Some(uid));
    let Some(claim) = claim else {
        return VolumePlan::Reclaim(reclaim(volume));
    };
    let bound_to = spec_volume_name(claim);
    let name = volume.metadata.name.as_deref().unwrap_or_default();
    if bound_to.is_empty() {
        if modes_differ(claim, volume) {
            return VolumePlan::Wait(Some(Note::warning(
                "VolumeMismatch",
                format!(
                    "Cannot bind PersistentVolume to requested PersistentVolumeClaim {:?} due \
                     to incompatible volumeMode.",
                    claim.metadata.name.as_deref().unwrap_or_default()
                ),
            )));
        }
        return VolumePlan::SyncClaim {
            namespace: claim.metadata.namespace.clone().unwrap_or_default(),
            name: claim.metadata.name.clone().unwrap_or_default(),
        };
    }
    if bound_to == name {
        return VolumePlan::Phase(PHASE_BOUND);
    }
    let provisioned = has_annotation(&volume.metadata, PROVISIONED_BY_ANNOTATION);
    if provisioned && reclaim_policy(volume) == RECLAIM_DELETE {
        // Made for this claim, which got another volume: not needed.
        return VolumePlan::Reclaim(reclaim(volume));
    }
    VolumePlan::Unbind {
        by_controller: has_annotation(&volume.metadata, BOUND_BY_CONTROLLER_ANNOTATION),
    }
}

fn reclaim_policy(volume: &PersistentVolume) -> &str {
    volume
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or(RECLAIM_RETAIN)
}

/// What the reclaim policy of a released volume comes to here.
fn reclaim(volume: &PersistentVolume) -> Reclaim {
    let provisioner = volume
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PROVISIONED_BY_ANNOTATION));
    match reclaim_policy(volume) {
        RECLAIM_DELETE => match provisioner.map(String::as_str) {
            Some(LOCAL_PATH_PROVISIONER) => Reclaim::Delete,
            Some(_) => Reclaim::External,
            None => Reclaim::Fail(Note::warning(
                "VolumeFailedDelete",
                "error getting deleter volume plugin for volume: no deletable volume plugin \
                 matched (only volumes provisioned by rudder.io/local-path are deleted here; \
                 delete this PersistentVolume and its storage by hand)",
            )),
        },
        RECLAIM_RECYCLE => Reclaim::Fail(Note::warning(
            "VolumeFailedRecycle",
            "Recycle is not supported: the volume is not scrubbed for reuse; delete it, or \
             set persistentVolumeReclaimPolicy to Retain or Delete",
        )),
        _ => Reclaim::Keep,
    }
}

#[cfg(test)]
#[path = "binder_tests.rs"]
mod tests;
