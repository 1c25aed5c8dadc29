//! The object edits the binder's plans are carried out with, each pure: the volume or claim
//! as it should be written, or `None` when it already is so (nothing to write). A bind is
//! four of them, in Kubernetes' order (`bind`): [`volume_bound`], [`volume_phase`] Bound,
//! [`claim_bound`], [`claim_bound_status`]; the actor writes each at the resourceVersion it
//! was made from, so a write on stale state is refused, and a crash between two leaves a
//! state the next sync of either object finishes.

use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus, PersistentVolumeStatus,
};
use rudder_proto::objects::storage::{BIND_COMPLETED_ANNOTATION, BOUND_BY_CONTROLLER_ANNOTATION};

use super::binder::{spec_volume_name, PHASE_BOUND};
use crate::scheduling::volumes::{capacity, phase_of, storage_of};

/// Step 1 of a bind: the volume with its claim reference set to the claim (and marked bound
/// by the controller when it was not already bound to it); `None` when it already is
/// (`bindVolumeToClaim`). The scheduler writes the same edit to reserve a static volume.
pub use crate::scheduling::volumes::volume_bound;

/// The volume's status in `phase` (with `message`), or `None` when it is already in it.
pub fn volume_phase(
    volume: &PersistentVolume,
    phase: &str,
    message: Option<&str>,
) -> Option<PersistentVolumeStatus> {
    if phase_of(volume) == phase {
        return None;
    }
    let mut status = volume.status.clone().unwrap_or_default();
    status.phase = Some(phase.to_string());
    status.message = message.map(str::to_string);
    Some(status)
}

/// Step 3 of a bind: the claim naming `volume`, marked bound (and bound by the controller
/// when it named no volume); `None` when it already is (`bindClaimToVolume`).
pub fn claim_bound(
    claim: &PersistentVolumeClaim,
    volume: &PersistentVolume,
) -> Option<PersistentVolumeClaim> {
    let name = volume.metadata.name.clone().unwrap_or_default();
    let mut bound = claim.clone();
    let mut dirty = false;
    let annotations = bound
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    if spec_volume_name(claim) != name {
        if !annotations.contains_key(BOUND_BY_CONTROLLER_ANNOTATION) {
            annotations.insert(
                BOUND_BY_CONTROLLER_ANNOTATION.to_string(),
                "yes".to_string(),
            );
        }
        bound.spec.get_or_insert_with(Default::default).volume_name = Some(name);
        dirty = true;
    }
    if !annotations.contains_key(BIND_COMPLETED_ANNOTATION) {
        annotations.insert(BIND_COMPLETED_ANNOTATION.to_string(), "yes".to_string());
        dirty = true;
    }
    dirty.then_some(bound)
}

/// Step 4 of a bind: the claim's status Bound with the volume's access modes and capacity;
/// `None` when it already says so.
pub fn claim_bound_status(
    claim: &PersistentVolumeClaim,
    volume: &PersistentVolume,
) -> Option<PersistentVolumeClaimStatus> {
    let mut status = claim.status.clone().unwrap_or_default();
    let spec = volume.spec.clone().unwrap_or_default();
    let mut dirty = false;
    if status.phase.as_deref() != Some(PHASE_BOUND) {
        status.phase = Some(PHASE_BOUND.to_string());
        dirty = true;
    }
    if status.access_modes != spec.access_modes {
        status.access_modes = spec.access_modes.clone();
        dirty = true;
    }
    let claimed = status.capacity.as_ref().map(|c| storage_of(Some(c)));
    if claimed != Some(capacity(volume)) {
        status.capacity = spec.capacity.clone();
        dirty = true;
    }
    dirty.then_some(status)
}

/// The claim's status in `phase`, or `None` when it already is.
pub fn claim_phase(
    claim: &PersistentVolumeClaim,
    phase: &str,
) -> Option<PersistentVolumeClaimStatus> {
    let mut status = claim.status.clone().unwrap_or_default();
    if status.phase.as_deref() == Some(phase) {
        return None;
    }
    status.phase = Some(phase.to_string());
    Some(status)
}

/// The volume with its claim reference let go (`unbindVolume`): removed whole when the
/// controller made it, else only its uid (the user's reservation stays).
pub fn volume_unbound(volume: &PersistentVolume, by_controller: bool) -> PersistentVolume {
    let mut unbound = volume.clone();
    let spec = unbound.spec.get_or_insert_with(Default::default);
    if by_controller {
        spec.claim_ref = None;
        if let Some(annotations) = unbound.metadata.annotations.as_mut() {
            annotations.remove(BOUND_BY_CONTROLLER_ANNOTATION);
        }
    } else if let Some(reference) = spec.claim_ref.as_mut() {
        reference.uid = None;
    }
    unbound
}
