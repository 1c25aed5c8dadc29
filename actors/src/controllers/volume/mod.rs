//! The PersistentVolume controller (kube-controller-manager's `persistentvolume-binder`) with
//! a built-in local-path provisioner, as k3s ships one: claims are bound to volumes that fit,
//! or get a hostPath volume on the node their first pod is scheduled to, so StatefulSets
//! with volumeClaimTemplates run out of the box.
//!
//! ```text
//!  claim ─ class Immediate ─► the smallest fitting Available volume ─► bind (volume claimRef,
//!        │                    Bound; claim volumeName, Bound)
//!        └ class WaitForFirstConsumer ─► the scheduler picks the pod's node, then either
//!             reserves a static volume there (writes its claimRef) ─► bind
//!             or annotates volume.kubernetes.io/selected-node on the claim
//!               └─ class rudder.io/local-path ─► PV pvc-<uid> pinned to that node ─► bind
//!             (the pod is bound once its claims are)
//!  claim deleted ─► its volume Released ─► reclaimPolicy Delete: deleted; Retain: kept
//! ```
//!
//! - `binder.rs`: what to do for a claim or a volume (pure, table-tested); which volume fits
//!   a claim is `crate::scheduling::volumes`'s, shared with the scheduler.
//! - `edits.rs`: the object edits a bind is made of, in Kubernetes' order (pure).
//! - `provisioner.rs`: the local-path volume for a claim, or why there is none (pure).
//! - `actor.rs`: the shell: events to keys, plans carried out under the leader's fence.
//!
//! Not done: the provisioned directory is left on its node when the volume is deleted (the
//! kubelet makes it on first mount; nothing removes it yet); claims have no
//! `kubernetes.io/pvc-protection` finalizer (a claim in use can be deleted); generic
//! ephemeral volumes have no controller to make their claims, so a pod with one waits
//! forever ("waiting for ephemeral volume controller to create the persistentvolumeclaim");
//! no periodic resync of claims and volumes (kube-controller-manager's 15 s): events alone
//! drive the controller.

pub mod actor;
pub mod binder;
pub mod edits;
pub mod provisioner;
