//! The PersistentVolume binder's decisions, as kube-controller-manager's PV controller makes
//! them (`syncClaim`, `syncVolume`, `findBestMatchForClaim`, `bind`). Pure: the caches' state
//! in, what to do out; the actor carries it out. Which volume fits which claim is
//! [`crate::scheduling::volumes`]'s, shared with the scheduler.
//!
//! ```text
//!  claim ─ plan_claim ─┬─ not bound yet: its pre-bound volume, or the smallest Available one
//!                      │  that fits (class, access modes, size, selector, mode) ─► Bind
//!                      │  (a class that waits for a pod takes only a volume bound to the
//!                      │  claim already: the scheduler reserves static ones for it)
//!                      │  none: no class yet and a default exists ─► AssignClass
//!                      │        class waits for a pod and none is scheduled ─► Pending
//!                      │        selected node gone (local-path) ─► Reschedule
//!                      │        the class provisions ─► Provision (provisioner.rs)
//!                      └─ bound: its volume points back (same uid) ─► Bind (repairs a half
//!                                bind, and a claim marked Lost whose volume came back)
//!                                its volume is gone or someone else's ─► Lost
//!  volume ─ plan_volume ─ no claim ref ─► Available     claim bound here ─► Bound
//!                         claim gone (uid) ─► Released, then Delete / Retain
//!                         claim not bound yet ─► look at the claim now
//!  Bind ─► the four writes of `edits.rs`, in Kubernetes' order
//! ```

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rudder_proto::objects::storage::{
    claim_class, claim_has_class, default_class, selected_node, waits_for_first_consumer,
    BIND_COMPLETED_ANNOTATION, BOUND_BY_CONTROLLER_ANNOTATION, HOSTNAME_LABEL,
    LOCAL_PATH_PROVISIONER, PROVISIONED_BY_ANNOTATION, RECLAIM_DELETE, RECLAIM_RECYCLE,
    RECLAIM_RETAIN,
};

use super::provisioner::{self, Provisioning, Target};
use crate::events::EventType;
pub use crate::scheduling::volumes::PHASE_AVAILABLE;
use crate::scheduling::volumes::{claim_ref, find_match, is_bound_to, modes_differ, satisfies};

pub const PHASE_PENDING: &str = "Pending";
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
    /// The node selected for it is gone: the selected-node annotation is removed (phase
    /// Pending, with the warning), so that its pod is scheduled again, as Kubernetes'
    /// external provisioners do (`ProvisioningReschedule`).
    Reschedule(Note),
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
    /// The node the claim's selected-node annotation names, as the caches (or, when they do
    /// not have it, the API) show it; `None` when there is no such node.
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
    // one that points back, by the claim's uid, finishes its binding (each step writes only
    // what is missing; a claim marked Lost while its volume was away is Bound again). A
    // reference without the uid is not this claim's binding (`syncBoundClaim`).
    let points_back = claim_ref(volume).map(|r| r.uid.as_deref().unwrap_or(""));
    if points_back.is_none_or(|uid| uid == claim.metadata.uid.as_deref().unwrap_or("")) {
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
    // A claim whose class waits for its first consumer takes only a volume bound to it
    // already: reserved by the scheduler on its pod's node, or provisioned for it
    // (`findBestMatchForClaim` with delayBinding).
    if let Some(volume) = find_match(claim, view.volumes, None, delay, &[]) {
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
    let selected = selected_node(claim);
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
    let known = view
        .selected
        .filter(|n| selected.is_some() && n.metadata.name.as_deref() == selected);
    let target = match (selected, known) {
        (Some(name), Some(node)) => Some(Target {
            node: name,
            hostname: node
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(HOSTNAME_LABEL))
                .map_or(name, String::as_str),
        }),
        (Some(name), None) if class.provisioner == LOCAL_PATH_PROVISIONER => {
            return ClaimPlan::Reschedule(Note::warning(
                "ProvisioningFailed",
                format!(
                    "failed to get target node: node {name:?} not found; the claim's \
                     selected-node annotation is removed so that its pod is scheduled again"
                ),
            ));
        }
        _ => None,
    };
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

/// Whether the claim `volume` is bound to (by uid) needs a sync of its own when the volume
/// changes: it is not marked Bound (its binding is being finished, or it was marked Lost
/// while the volume was away and is Bound again by that sync).
pub fn claim_needs_sync(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(uid) = claim_ref(volume)
        .and_then(|r| r.uid.as_deref())
        .filter(|uid| !uid.is_empty())
    else {
        return false;
    };
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
    Some(uid) == claim.metadata.uid.as_deref() && phase != Some(PHASE_BOUND)
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
