//! The PersistentVolume controller (kube-controller-manager's `persistentvolume-binder`) with
//! a built-in local-path provisioner, as k3s ships one: claims are bound to volumes that fit,
//! or get a hostPath volume on the node their first pod is scheduled to, so StatefulSets
//! with volumeClaimTemplates run out of the box.
//!
//! ```text
//!  claim ─ class WaitForFirstConsumer ─► the scheduler picks the pod's node and annotates
//!        │                               volume.kubernetes.io/selected-node on the claim
//!        ├─ a fitting volume ─────────► bind (volume claimRef, Bound; claim volumeName, Bound)
//!        └─ class rudder.io/local-path ─► PV pvc-<uid> pinned to that node ─► bind
//!  claim deleted ─► its volume Released ─► reclaimPolicy Delete: deleted; Retain: kept
//! ```
//!
//! - `binder.rs`: what to do for a claim or a volume (pure, table-tested).
//! - `edits.rs`: the object edits a bind is made of, in Kubernetes' order (pure).
//! - `provisioner.rs`: the local-path volume for a claim, or why there is none (pure).
//! - `actor.rs`: the shell: events to keys, plans carried out under the leader's fence.
//!
//! Not done: the provisioned directory is left on its node when the volume is deleted (the
//! kubelet makes it on first mount; nothing removes it yet), and claims have no
//! `kubernetes.io/pvc-protection` finalizer (a claim in use can be deleted).

pub mod actor;
pub mod binder;
pub mod edits;
pub mod provisioner;
