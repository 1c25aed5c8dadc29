//! The PersistentVolume controller's shell: claim and volume events become keys; a worker
//! plans one (binder.rs, provisioner.rs) from the caches and carries the plan out under the
//! leader's fence, every write of an object at the resourceVersion it was read at.
//!
//! ```text
//!  claim event ─► Claim(ns/name) (+ its volume when it goes)    class made default ─► every
//!  volume event ─► Volume(name) (+ its claim when it goes,      claim without a class
//!                  + the unbound claims of its class when it is free)
//!  Claim ─ plan_claim ─► Bind: volume claimRef ► volume Bound ► claim volumeName ► claim Bound
//!                        AssignClass ─► claim update      Provision ─► create pvc-<uid>
//!                        Pending / Lost ─► claim phase (when it changes) and the event
//!                        Reschedule ─► selected-node annotation removed, Pending, the event
//!  Volume ─ plan_volume ─► phase · SyncClaim ─► queue · Unbind ─► volume update
//!                          Reclaim ─► Released, then delete (built-in provisioner) or keep
//!  volume event ─► also its claim, when that is not marked Bound (a Lost claim recovers)
//! ```
//!
//! A volume is released only after its claim's absence is confirmed by a read from the API:
//! a cache that has not seen a new claim yet must not have its volume deleted. Likewise a
//! claim's selected node missing from the cache is read from the API before the claim is
//! sent back to the scheduler: a node registered a moment ago is not taken for gone.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus,
    PersistentVolumeStatus,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rudder_proto::api::{DeleteRequest, Fence};
use rudder_proto::client::{ApiClient, ClientError, Fenced};
use rudder_proto::objects::storage::{
    claim_class, claim_has_class, is_claim_bound, is_default_class, selected_node, volume_class,
    BIND_COMPLETED_ANNOTATION, LOCAL_PATH_PROVISIONER, SELECTED_NODE_ANNOTATION,
};
use serde::Serialize;
use serde_json::Value;

use super::binder::{
    claim_needs_sync, has_annotation, plan_claim, plan_volume, ClaimPlan, Note, Reclaim, View,
    VolumePlan, PHASE_AVAILABLE, PHASE_BOUND, PHASE_FAILED, PHASE_LOST, PHASE_PENDING,
    PHASE_RELEASED,
};
use super::edits::{
    claim_bound, claim_bound_status, claim_phase, volume_bound, volume_phase, volume_unbound,
};
use crate::controllers::runtime::{Controller, Subscriptions, Watches};
use crate::events::{object_reference, EventType, Recorder};
use crate::informer::{Cache, Event, ObjectKey};
use crate::queue::WorkQueue;

/// The component this controller's events are from (kube-controller-manager's).
pub const COMPONENT: &str = "persistentvolume-controller";

const CLAIMS: &str = "persistentvolumeclaims";
const VOLUMES: &str = "persistentvolumes";
/// How soon a key whose sync met an object that does not encode or decode is looked at
/// again (the API's answer or our object is wrong: retrying at once would not help).
const BROKEN_OBJECT_RETRY: Duration = Duration::from_secs(30);

/// What syncing a claim or volume can fail with.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error(transparent)]
    Api(#[from] ClientError),
    #[error("encoding {kind} {name:?} for the API: {source}")]
    Encode {
        kind: &'static str,
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the API server sent a {kind} {key} that does not decode as one: {source}; is the \
         server of another version than this controller manager?"
    )]
    Undecodable {
        kind: &'static str,
        key: ObjectKey,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Clone)]
pub struct Caches {
    pub claims: Cache<PersistentVolumeClaim>,
    pub volumes: Cache<PersistentVolume>,
    pub classes: Cache<StorageClass>,
    /// Read for the node a claim was selected for (its labels, for static volumes' node
    /// affinity and the provisioned volume's hostname).
    pub nodes: Cache<Node>,
}

/// What the work queue holds: a claim or a volume.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VolumeKey {
    Claim(ObjectKey),
    Volume(String),
}

impl fmt::Display for VolumeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Claim(key) => write!(f, "persistentvolumeclaim {key}"),
            Self::Volume(name) => write!(f, "persistentvolume {name}"),
        }
    }
}

/// The PersistentVolume controller with its built-in local-path provisioner: clones share
/// the caches, the queue and the recorder.
#[derive(Clone)]
pub struct VolumeController {
    client: Arc<ApiClient>,
    fence: Fence,
    caches: Caches,
    queue: WorkQueue<VolumeKey>,
    recorder: Recorder,
}

impl VolumeController {
    /// The controller for the leader holding `fence`.
    pub fn new(client: Arc<ApiClient>, fence: Fence, caches: Caches, recorder: Recorder) -> Self {
        Self {
            client,
            fence,
            caches,
            queue: WorkQueue::default(),
            recorder,
        }
    }

    fn api(&self) -> Fenced<'_> {
        self.client.fenced(&self.fence)
    }

    fn note(&self, reference: &ObjectReference, note: Note) {
        self.recorder
            .record(reference, note.type_, note.reason, note.message);
    }
}

impl Controller for VolumeController {
    type Key = VolumeKey;
    const NAME: &'static str = "persistentvolume-binder";

    fn queue(&self) -> &WorkQueue<VolumeKey> {
        &self.queue
    }

    fn watch(&self, caches: &mut Subscriptions<'_, Self>) {
        caches.watch(&self.caches.claims);
        caches.watch(&self.caches.volumes);
        caches.watch(&self.caches.classes);
        caches.watch(&self.caches.nodes);
    }

    async fn sync(&self, key: VolumeKey) -> Result<Option<Duration>, ClientError> {
        let synced = match &key {
            VolumeKey::Claim(key) => self.sync_claim(key).await,
            VolumeKey::Volume(name) => self.sync_volume(name).await,
        };
        match synced {
            Ok(()) => Ok(None),
            Err(SyncError::Api(error)) => Err(error),
            Err(error) => {
                tracing::error!(%key, %error, "syncing; looked at again in 30 s");
                Ok(Some(BROKEN_OBJECT_RETRY))
            }
        }
    }
}

impl VolumeController {
    async fn sync_claim(&self, key: &ObjectKey) -> Result<(), SyncError> {
        let Some(claim) = self.caches.claims.get(key) else {
            return Ok(());
        };
        let volumes = self.caches.volumes.list();
        let classes = self.caches.classes.list();
        let unbound = !has_annotation(&claim.metadata, BIND_COMPLETED_ANNOTATION);
        let selected = match selected_node(&claim).filter(|_| unbound) {
            Some(node) => self.node(node).await?,
            None => None,
        };
        let view = View {
            volumes: &volumes,
            classes: &classes,
            selected: selected.as_deref(),
        };
        let reference = object_reference(&*claim);
        match plan_claim(&claim, &view) {
            ClaimPlan::Bind { volume } => self.bind(&volume, &claim).await,
            ClaimPlan::AssignClass { class } => {
                let mut classed = PersistentVolumeClaim::clone(&claim);
                classed
                    .spec
                    .get_or_insert_with(Default::default)
                    .storage_class_name = Some(class.clone());
                self.write(CLAIMS, key, &classed, false).await?;
                tracing::info!(claim = %key, %class, "the default StorageClass assigned");
                Ok(())
            }
            ClaimPlan::Provision { volume } => {
                let name = volume.metadata.name.clone().unwrap_or_default();
                let body = body("PersistentVolume", &name, &*volume)?;
                match self.api().create_object(VOLUMES, "", &body).await {
                    Ok(_) => {
                        tracing::info!(claim = %key, volume = %name, "volume provisioned");
                        self.recorder.record(
                            &reference,
                            EventType::Normal,
                            "ProvisioningSucceeded",
                            format!(
                                "Successfully provisioned volume {name} using \
                                 {LOCAL_PATH_PROVISIONER}"
                            ),
                        );
                        Ok(())
                    }
                    // Made by an earlier sync whose answer was lost: the binder finds it.
                    Err(error) if error.reason() == "AlreadyExists" => Ok(()),
                    Err(error) => {
                        if !error.is_fence_refused() {
                            self.recorder.record(
                                &reference,
                                EventType::Warning,
                                "ProvisioningFailed",
                                format!("Failed to create PersistentVolume {name}: {error}"),
                            );
                        }
                        Err(error.into())
                    }
                }
            }
            ClaimPlan::Pending { note } => {
                if let Some(note) = note {
                    self.note(&reference, note);
                }
                if let Some(status) = claim_phase(&claim, PHASE_PENDING) {
                    self.write_claim_status(&claim, status).await?;
                }
                Ok(())
            }
            ClaimPlan::Lost(note) => {
                if let Some(status) = claim_phase(&claim, PHASE_LOST) {
                    self.write_claim_status(&claim, status).await?;
                    self.note(&reference, note);
                }
                Ok(())
            }
            ClaimPlan::Reschedule(note) => {
                let mut unselected = PersistentVolumeClaim::clone(&claim);
                if let Some(annotations) = unselected.metadata.annotations.as_mut() {
                    annotations.remove(SELECTED_NODE_ANNOTATION);
                }
                let version = self.write(CLAIMS, key, &unselected, false).await?;
                tracing::info!(claim = %key, "its selected node is gone: scheduled again");
                self.note(&reference, note);
                let unselected = versioned(unselected, version);
                if let Some(status) = claim_phase(&unselected, PHASE_PENDING) {
                    self.write_claim_status(&unselected, status).await?;
                }
                Ok(())
            }
        }
    }

    /// The node `name`: the cache's, else the API's (a node registered a moment ago may not
    /// be in the cache yet); `None` when there is no such node.
    async fn node(&self, name: &str) -> Result<Option<Arc<Node>>, SyncError> {
        let key = ObjectKey::new("", name);
        if let Some(node) = self.caches.nodes.get(&key) {
            return Ok(Some(node));
        }
        match self.client.get_object("nodes", "", name).await {
            Ok(node) => serde_json::from_value(node)
                .map(|node| Some(Arc::new(node)))
                .map_err(|source| SyncError::Undecodable {
                    kind: "Node",
                    key,
                    source,
                }),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Binds `claim` to `volume` in Kubernetes' four writes, each skipped when already done,
    /// each at the resourceVersion of the object as the write before left it.
    async fn bind(
        &self,
        volume: &PersistentVolume,
        claim: &PersistentVolumeClaim,
    ) -> Result<(), SyncError> {
        let volume_name = volume.metadata.name.clone().unwrap_or_default();
        let volume_key = ObjectKey::new("", &volume_name);
        let claim_key = ObjectKey::of(&claim.metadata);
        let mut volume = volume.clone();
        if let Some(bound) = volume_bound(&volume, claim) {
            let version = self.write(VOLUMES, &volume_key, &bound, false).await?;
            volume = versioned(bound, version);
        }
        if let Some(status) = volume_phase(&volume, PHASE_BOUND, None) {
            volume = self.write_volume_status(&volume, status).await?;
        }
        let mut claim = claim.clone();
        if let Some(bound) = claim_bound(&claim, &volume) {
            let version = self.write(CLAIMS, &claim_key, &bound, false).await?;
            claim = versioned(bound, version);
        }
        if let Some(status) = claim_bound_status(&claim, &volume) {
            self.write_claim_status(&claim, status).await?;
            tracing::info!(claim = %claim_key, volume = %volume_name, "claim bound");
        }
        Ok(())
    }

    async fn sync_volume(&self, name: &str) -> Result<(), SyncError> {
        let Some(volume) = self.caches.volumes.get(&ObjectKey::new("", name)) else {
            return Ok(());
        };
        let reference = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        let claim_key = reference.map(|r| {
            ObjectKey::new(
                r.namespace.clone().unwrap_or_default(),
                r.name.clone().unwrap_or_default(),
            )
        });
        let cached = claim_key.as_ref().and_then(|k| self.caches.claims.get(k));
        let mut plan = plan_volume(&volume, cached.as_deref());
        let releasing = matches!(plan, VolumePlan::Reclaim(_));
        if let Some(key) = claim_key.as_ref().filter(|_| releasing) {
            // Confirm with the API before letting the volume go: the cache may not show a
            // claim made (or made again) a moment ago.
            let fresh = self.read_claim(key).await?;
            plan = plan_volume(&volume, fresh.as_ref());
        }
        let volume_ref = object_reference(&*volume);
        match plan {
            VolumePlan::Phase(phase) => {
                if let Some(status) = volume_phase(&volume, phase, None) {
                    self.write_volume_status(&volume, status).await?;
                }
            }
            VolumePlan::SyncClaim { namespace, name } => {
                self.queue
                    .add(VolumeKey::Claim(ObjectKey::new(namespace, name)));
            }
            VolumePlan::Unbind { by_controller } => {
                let unbound = volume_unbound(&volume, by_controller);
                let key = ObjectKey::new("", name);
                let version = self.write(VOLUMES, &key, &unbound, false).await?;
                let unbound = versioned(unbound, version);
                if let Some(status) = volume_phase(&unbound, PHASE_AVAILABLE, None) {
                    self.write_volume_status(&unbound, status).await?;
                }
            }
            VolumePlan::Wait(note) => {
                if let Some(note) = note {
                    self.note(&volume_ref, note);
                }
            }
            VolumePlan::Reclaim(reclaim) => self.reclaim(&volume, reclaim, &volume_ref).await?,
        }
        Ok(())
    }

    /// Marks a volume whose claim is gone Released, then applies its reclaim policy.
    async fn reclaim(
        &self,
        volume: &PersistentVolume,
        reclaim: Reclaim,
        reference: &ObjectReference,
    ) -> Result<(), SyncError> {
        let name = volume.metadata.name.clone().unwrap_or_default();
        let phase = volume
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("");
        let mut volume = volume.clone();
        // Released or Failed already: a Failed volume keeps saying why.
        if phase != PHASE_RELEASED && phase != PHASE_FAILED {
            if let Some(status) = volume_phase(&volume, PHASE_RELEASED, None) {
                volume = self.write_volume_status(&volume, status).await?;
                tracing::info!(volume = %name, "volume released: its claim is gone");
            }
        }
        match reclaim {
            Reclaim::Keep | Reclaim::External => Ok(()),
            Reclaim::Delete => {
                // Only the volume as it was judged: one changed meanwhile (bound again by
                // hand, its policy changed) is looked at again.
                let request = DeleteRequest {
                    resource: VOLUMES.into(),
                    name: name.clone(),
                    precondition_uid: volume.metadata.uid.clone().unwrap_or_default(),
                    precondition_resource_version: volume
                        .metadata
                        .resource_version
                        .clone()
                        .unwrap_or_default(),
                    ..Default::default()
                };
                match self.api().delete_object(request).await {
                    Ok(_) => {
                        tracing::info!(volume = %name, "released volume deleted (policy Delete)");
                        Ok(())
                    }
                    Err(error) if error.is_not_found() => Ok(()),
                    Err(error) => {
                        if !error.is_fence_refused() && error.reason() != "Conflict" {
                            self.recorder.record(
                                reference,
                                EventType::Warning,
                                "VolumeFailedDelete",
                                format!("deleting the released volume: {error}"),
                            );
                        }
                        Err(error.into())
                    }
                }
            }
            Reclaim::Fail(note) => {
                if phase != PHASE_FAILED {
                    let message = note.message.clone();
                    if let Some(status) = volume_phase(&volume, PHASE_FAILED, Some(&message)) {
                        self.write_volume_status(&volume, status).await?;
                    }
                    self.note(reference, note);
                }
                Ok(())
            }
        }
    }

    /// The claim as the API has it now; `None` when there is none.
    async fn read_claim(
        &self,
        key: &ObjectKey,
    ) -> Result<Option<PersistentVolumeClaim>, SyncError> {
        match self
            .client
            .get_object(CLAIMS, &key.namespace, &key.name)
            .await
        {
            Ok(claim) => {
                serde_json::from_value(claim)
                    .map(Some)
                    .map_err(|source| SyncError::Undecodable {
                        kind: "PersistentVolumeClaim",
                        key: key.clone(),
                        source,
                    })
            }
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Replaces `object` at the resourceVersion it carries (compare-and-swap): with `status`
    /// only its status, else all but its status (which only the status verb writes).
    /// Returns the new resourceVersion.
    async fn write<K: Serialize>(
        &self,
        resource: &str,
        key: &ObjectKey,
        object: &K,
        status: bool,
    ) -> Result<Option<String>, SyncError> {
        let kind = if resource == VOLUMES {
            "PersistentVolume"
        } else {
            "PersistentVolumeClaim"
        };
        let mut json = body(kind, &key.to_string(), object)?;
        if !status {
            if let Some(fields) = json.as_object_mut() {
                fields.remove("status");
            }
        }
        let written = self
            .api()
            .update_object(resource, &key.namespace, &key.name, &json, status)
            .await?;
        Ok(written["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_string))
    }

    async fn write_volume_status(
        &self,
        volume: &PersistentVolume,
        status: PersistentVolumeStatus,
    ) -> Result<PersistentVolume, SyncError> {
        let mut next = volume.clone();
        next.status = Some(status);
        let key = ObjectKey::of(&next.metadata);
        let version = self.write(VOLUMES, &key, &next, true).await?;
        Ok(versioned(next, version))
    }

    async fn write_claim_status(
        &self,
        claim: &PersistentVolumeClaim,
        status: PersistentVolumeClaimStatus,
    ) -> Result<PersistentVolumeClaim, SyncError> {
        let mut next = claim.clone();
        next.status = Some(status);
        let key = ObjectKey::of(&next.metadata);
        let version = self.write(CLAIMS, &key, &next, true).await?;
        Ok(versioned(next, version))
    }

    /// The unbound claims of the volume's class that name no volume, or name this one.
    fn claims_a_volume_may_suit(&self, volume: &PersistentVolume, name: &str) -> Vec<VolumeKey> {
        let class = volume_class(volume);
        self.caches
            .claims
            .list()
            .iter()
            .filter(|claim| !is_claim_bound(claim) && claim_class(claim) == class)
            .filter(|claim| {
                let wanted = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref());
                wanted.is_none_or(|w| w.is_empty() || w == name)
            })
            .map(|claim| VolumeKey::Claim(ObjectKey::of(&claim.metadata)))
            .collect()
    }

    /// Every claim that names no class, for a class just made the default.
    fn claims_without_class(&self) -> Vec<VolumeKey> {
        self.caches
            .claims
            .list()
            .iter()
            .filter(|claim| !claim_has_class(claim))
            .map(|claim| VolumeKey::Claim(ObjectKey::of(&claim.metadata)))
            .collect()
    }
}

/// `object` at `version` (the resourceVersion its write returned).
fn versioned<K: k8s_openapi::Metadata<Ty = ObjectMeta>>(
    mut object: K,
    version: Option<String>,
) -> K {
    object.metadata_mut().resource_version = version;
    object
}

/// `object`, the `kind` named `name`, as the API's JSON.
fn body<K: Serialize>(kind: &'static str, name: &str, object: &K) -> Result<Value, SyncError> {
    serde_json::to_value(object).map_err(|source| SyncError::Encode {
        kind,
        name: name.to_string(),
        source,
    })
}

impl Watches<PersistentVolumeClaim> for VolumeController {
    fn on_event(&self, event: &Event<PersistentVolumeClaim>) {
        let Some(claim) = event.latest() else {
            return;
        };
        self.queue
            .add(VolumeKey::Claim(ObjectKey::of(&claim.metadata)));
        if let Event::Deleted(claim) = event {
            // Its volume is released (found by name, or by its reference to the claim when
            // the binding had not been completed).
            let name = claim.spec.as_ref().and_then(|s| s.volume_name.clone());
            if let Some(name) = name.filter(|n| !n.is_empty()) {
                self.queue.add(VolumeKey::Volume(name));
            }
            for volume in self.caches.volumes.list() {
                let points_here = volume
                    .spec
                    .as_ref()
                    .and_then(|s| s.claim_ref.as_ref())
                    .is_some_and(|r| {
                        r.name == claim.metadata.name && r.namespace == claim.metadata.namespace
                    });
                if points_here {
                    let name = volume.metadata.name.clone().unwrap_or_default();
                    self.queue.add(VolumeKey::Volume(name));
                }
            }
        }
    }
}

impl Watches<PersistentVolume> for VolumeController {
    fn on_event(&self, event: &Event<PersistentVolume>) {
        let Some(volume) = event.latest() else {
            return;
        };
        let name = volume.metadata.name.clone().unwrap_or_default();
        self.queue.add(VolumeKey::Volume(name.clone()));
        let reserved_by = volume
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .filter(|r| r.uid.as_deref().is_some_and(|uid| !uid.is_empty()));
        if reserved_by.is_none() && !matches!(event, Event::Deleted(_)) {
            // A free volume (new, or let go): the unbound claims it may suit look again (no
            // periodic resync here, unlike kube-controller-manager's 15 s).
            for key in self.claims_a_volume_may_suit(volume, &name) {
                self.queue.add(key);
            }
        }
        if let Some(reference) = reserved_by.filter(|_| !matches!(event, Event::Deleted(_))) {
            // Its claim, when not marked Bound: a binding to finish (the scheduler reserved
            // this volume for it), or a claim marked Lost while this volume was away.
            let key = ObjectKey::new(
                reference.namespace.clone().unwrap_or_default(),
                reference.name.clone().unwrap_or_default(),
            );
            let claim = self.caches.claims.get(&key);
            if claim.is_some_and(|claim| claim_needs_sync(volume, &claim)) {
                self.queue.add(VolumeKey::Claim(key));
            }
        }
        if let Event::Deleted(volume) = event {
            // Its claim has lost it.
            if let Some(reference) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
                self.queue.add(VolumeKey::Claim(ObjectKey::new(
                    reference.namespace.clone().unwrap_or_default(),
                    reference.name.clone().unwrap_or_default(),
                )));
            }
        }
    }
}

impl Watches<StorageClass> for VolumeController {
    /// A class made (or marked) the default gives claims without a class one; a class that
    /// appears may let its claims be provisioned.
    fn on_event(&self, event: &Event<StorageClass>) {
        let Some(class) = event.latest() else {
            return;
        };
        if matches!(event, Event::Deleted(_)) {
            return;
        }
        let name = class.metadata.name.as_deref().unwrap_or_default();
        let mut keys = if is_default_class(class) {
            self.claims_without_class()
        } else {
            Vec::new()
        };
        keys.extend(
            self.caches
                .claims
                .list()
                .iter()
                .filter(|claim| claim_class(claim) == name && !is_claim_bound(claim))
                .map(|claim| VolumeKey::Claim(ObjectKey::of(&claim.metadata))),
        );
        for key in keys {
            self.queue.add(key);
        }
    }
}

impl Watches<Node> for VolumeController {
    /// Nodes are only read (for the node a claim was selected for); their events, heartbeats
    /// among them, ask for nothing. A claim selected for a node the cache has not seen yet
    /// does not wait for it: its sync reads the node from the API.
    fn on_event(&self, _: &Event<Node>) {}
}
