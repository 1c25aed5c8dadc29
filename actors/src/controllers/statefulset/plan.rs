//! What one StatefulSet sync decides (`reconcile.rs` decides it): the actions, in the order
//! the actor carries them out, the status, what the set waits for, when to look again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSetStatus};
use k8s_openapi::api::core::v1::{self, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::pods::cached::Pod;

/// A pod to create, with those of its claims that do not exist yet (created first).
#[derive(Debug, Clone, PartialEq)]
pub struct NewPod {
    pub ordinal: i64,
    pub pod: v1::Pod,
    pub claims: Vec<PersistentVolumeClaim>,
}

/// Why a pod is deleted (for events and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// It ended (Failed or Succeeded); it is made anew once it is gone.
    Ended,
    /// Its ordinal is out of range, or its name is not one of the set's.
    ScaleDown,
    /// It is not at the update revision; it is made anew at it once it is gone.
    Update,
}

/// One step, carried out by the actor in the order of [`Plan::actions`]. On a failure the
/// actor stops there (later steps may depend on it), writes the status, and retries later.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// An orphan revision the selector matches: set the set as its controller.
    AdoptRevision(Arc<ControllerRevision>),
    /// An orphan pod named `<set>-<n>` the selector matches: set the set as its controller.
    AdoptPod(Arc<Pod>),
    /// A pod the set controls but no longer selects: remove the set's reference.
    ReleasePod(Arc<Pod>),
    CreateRevision(Box<ControllerRevision>),
    /// An older revision holds the template again (a rollback): set its `revision`.
    RenumberRevision {
        revision: Arc<ControllerRevision>,
        number: i64,
    },
    /// Claims a pending pod mounts that do not exist (deleted under it).
    CreateClaims(Vec<PersistentVolumeClaim>),
    /// Set a claim's owner references (with its resourceVersion), per the retention policy.
    SetClaimOwners {
        claim: Arc<PersistentVolumeClaim>,
        owner_references: Vec<OwnerReference>,
    },
    /// Create the claims (AlreadyExists is a failure: the cache lags), then the pod.
    CreatePod(Box<NewPod>),
    /// Merge these identity labels into the pod's.
    LabelPod {
        pod: Arc<Pod>,
        labels: BTreeMap<String, String>,
    },
    /// Delete the pod, with its UID as precondition (a stale cache must not make the actor
    /// delete a newer pod of the same name).
    DeletePod {
        pod: Arc<Pod>,
        reason: DeleteReason,
    },
    DeleteRevision(Arc<ControllerRevision>),
}

/// What the set waits for before it can go on (for events, logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// The selector is missing, invalid or selects everything: the set does nothing.
    InvalidSelector,
    /// `<set>-<hash>` is another revision's name: `collisionCount` goes up, and the next
    /// sync tries another hash.
    RevisionCollision { name: String },
    /// A pod not the set's holds the name of one of its ordinals.
    NameTaken { pod: String },
    /// The pod is being deleted (or its node stopped answering and it cannot be): it stays
    /// until the API has removed it.
    Terminating { pod: String },
    /// OrderedReady: the pod is not Running and Ready.
    NotReady { pod: String },
    /// OrderedReady: the pod is ready but not yet for `minReadySeconds`.
    NotAvailable { pod: String },
    /// OrderedReady scale-down: another pod is unhealthy.
    Unhealthy { pod: String },
    /// The rolling update waits for the pod to come back updated and available.
    Updating { pod: String },
    /// A claim the pod mounts is being deleted.
    ClaimTerminating { claim: String },
    /// A claim still belongs to an earlier pod of the name (whenScaled: Delete); the garbage
    /// collector is removing it.
    StaleClaim { claim: String },
}

/// What the controller does for one StatefulSet.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// The status to write when `status_changed` (whatever became of the actions: it counts
    /// the cache, as Kubernetes does).
    pub status: StatefulSetStatus,
    pub status_changed: bool,
    /// Look again then: a ready pod becomes available after `minReadySeconds`.
    pub requeue_after: Option<Duration>,
    pub waiting: Vec<Wait>,
}

impl Plan {
    /// How many pods the plan creates (for the actor's expectations).
    pub fn creations(&self) -> u32 {
        let count = self
            .actions
            .iter()
            .filter(|a| matches!(a, Action::CreatePod(_)))
            .count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    /// The names of the pods the plan deletes (for the actor's expectations).
    pub fn deletions(&self) -> Vec<String> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::DeletePod { pod, .. } => {
                    Some(pod.metadata.name.clone().unwrap_or_default())
                }
                _ => None,
            })
            .collect()
    }
}
