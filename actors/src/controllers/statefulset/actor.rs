//! The StatefulSet controller's shell: StatefulSet, pod, claim and ControllerRevision events
//! become set keys; a worker reconciles one (reconcile.rs) and carries the actions out in
//! order under the leader's fence, stopping at the first failure, then writes the status.
//!
//! ```text
//!  Event<StatefulSet> ─► its key     Event<Pod> ─► its set's key (expectations lowered);
//!  Event<ControllerRevision> ─► its set's key   an orphan's: the sets selecting it
//!  Event<PersistentVolumeClaim> ─► the sets of its namespace
//! ```
//!
//! At most one pod per ordinal: the plan never creates a name the cache shows, expectations
//! hold the next sync back until the cache shows this one's creates and deletes, a pod is
//! deleted only with its uid as a precondition (never a newer pod of the same name), and a
//! create that meets AlreadyExists is a failure (the cache lags; look again).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use rudder_proto::api::{DeleteRequest, Fence};
use rudder_proto::client::{ApiClient, ClientError, Fenced};
use serde_json::json;

use super::identity::Identity;
use super::plan::{Action, Plan};
use super::reconcile::reconcile;
use crate::controllers::runtime::{selecting, Controller, Subscriptions, Watches};
use crate::controllers::writes;
use crate::events::{object_reference, EventType, Recorder};
use crate::expectations::Expectations;
use crate::informer::{Cache, Event, ObjectKey};
use crate::pods::cached::Pod;
use crate::queue::WorkQueue;

#[derive(Clone)]
pub struct Caches {
    pub stateful_sets: Cache<StatefulSet>,
    pub pods: Cache<Pod>,
    pub claims: Cache<PersistentVolumeClaim>,
    pub revisions: Cache<ControllerRevision>,
}

/// The StatefulSet controller: clones share the caches, the queue and the expectations.
#[derive(Clone)]
pub struct StatefulSetController {
    client: Arc<ApiClient>,
    fence: Fence,
    caches: Caches,
    queue: WorkQueue<ObjectKey>,
    expectations: Arc<Mutex<Expectations>>,
    recorder: Recorder,
}

impl StatefulSetController {
    /// The controller for the leader holding `fence`.
    pub fn new(client: Arc<ApiClient>, fence: Fence, caches: Caches, recorder: Recorder) -> Self {
        Self {
            client,
            fence,
            caches,
            recorder,
            queue: WorkQueue::default(),
            expectations: Arc::default(),
        }
    }

    fn expectations(&self) -> MutexGuard<'_, Expectations> {
        self.expectations.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Controller for StatefulSetController {
    type Key = ObjectKey;
    const NAME: &'static str = "statefulset";

    fn queue(&self) -> &WorkQueue<ObjectKey> {
        &self.queue
    }

    fn watch(&self, caches: &mut Subscriptions<'_, Self>) {
        caches.watch(&self.caches.stateful_sets);
        caches.watch(&self.caches.pods);
        caches.watch(&self.caches.claims);
        caches.watch(&self.caches.revisions);
    }

    async fn sync(&self, key: ObjectKey) -> Result<Option<Duration>, ClientError> {
        sync(self, &key).await
    }
}

impl Watches<StatefulSet> for StatefulSetController {
    fn on_event(&self, event: &Event<StatefulSet>) {
        if let Some(key) = event.key() {
            self.queue.add(key);
        }
    }
}

impl Watches<Pod> for StatefulSetController {
    fn on_event(&self, event: &Event<Pod>) {
        if let Event::Added(pod) = event {
            if let Some(set) = ObjectKey::controller_of(&pod.metadata, "StatefulSet") {
                self.expectations().creation_observed(&set.to_string());
            }
        }
        if let Some(pod) = event.deletion_seen() {
            if let Some(set) = ObjectKey::controller_of(&pod.metadata, "StatefulSet") {
                let name = pod.metadata.name.clone().unwrap_or_default();
                self.expectations()
                    .deletion_observed(&set.to_string(), &name);
            }
        }
        for pod in event.states() {
            match ObjectKey::controller_of(&pod.metadata, "StatefulSet") {
                Some(set) => self.queue.add(set),
                None if crate::pods::controller_of(&pod.metadata).is_none() => {
                    let sets = &self.caches.stateful_sets;
                    for key in selecting(sets, &pod.metadata, |s| {
                        s.spec.as_ref().map(|s| &s.selector)
                    }) {
                        self.queue.add(key);
                    }
                }
                None => {}
            }
        }
    }
}

/// A claim changed (created, bound, being deleted): the sets of its namespace look again.
impl Watches<PersistentVolumeClaim> for StatefulSetController {
    fn on_event(&self, event: &Event<PersistentVolumeClaim>) {
        let Some(claim) = event.latest() else { return };
        let namespace = claim.metadata.namespace.as_deref().unwrap_or_default();
        for set in self.caches.stateful_sets.in_namespace(namespace) {
            self.queue.add(ObjectKey::of(&set.metadata));
        }
    }
}

impl Watches<ControllerRevision> for StatefulSetController {
    fn on_event(&self, event: &Event<ControllerRevision>) {
        for revision in event.states() {
            if let Some(set) = ObjectKey::controller_of(&revision.metadata, "StatefulSet") {
                self.queue.add(set);
            }
        }
    }
}

async fn sync(
    controller: &StatefulSetController,
    key: &ObjectKey,
) -> Result<Option<Duration>, ClientError> {
    let expectation_key = key.to_string();
    let Some(set) = controller.caches.stateful_sets.get(key) else {
        controller.expectations().forget(&expectation_key);
        return Ok(None);
    };
    let lapses_in = controller
        .expectations()
        .lapses_in(&expectation_key, Instant::now());
    if let Some(lapses_in) = lapses_in {
        // The cache does not show this set's last creates and deletes yet: their events
        // bring it back, or the expectations lapse (an event lost for good stalls nothing).
        return Ok(Some(lapses_in));
    }
    let pods = controller.caches.pods.in_namespace(&key.namespace);
    let claims = controller.caches.claims.in_namespace(&key.namespace);
    let revisions = controller.caches.revisions.in_namespace(&key.namespace);
    let plan = reconcile(&set, &pods, &claims, &revisions, jiff::Timestamp::now());
    for wait in &plan.waiting {
        tracing::debug!(statefulset = %key, ?wait, "waiting");
    }
    let acted = carry_out(controller, key, &set, &plan).await;
    if plan.status_changed {
        let api = controller.client.fenced(&controller.fence);
        api.patch_object(
            "statefulsets",
            &key.namespace,
            &key.name,
            &json!({ "status": plan.status }),
            true,
        )
        .await?;
    }
    acted?;
    Ok(plan.requeue_after)
}

/// The plan's actions in order, stopping at the first failure; what a failure leaves undone
/// is taken off the expectations.
async fn carry_out(
    controller: &StatefulSetController,
    key: &ObjectKey,
    set: &StatefulSet,
    plan: &Plan,
) -> Result<(), ClientError> {
    let api = controller.client.fenced(&controller.fence);
    let expectation_key = key.to_string();
    let (creations, deletions) = (plan.creations(), plan.deletions());
    if creations > 0 || !deletions.is_empty() {
        controller
            .expectations()
            .expect(&expectation_key, creations, &deletions, Instant::now());
    }
    let owner = Identity::of(set).owner_reference();
    let reference = object_reference(set);
    for (done, action) in plan.actions.iter().enumerate() {
        let result = act(&api, &key.namespace, &owner, action).await;
        record(&controller.recorder, &reference, &key.name, action, &result);
        if let Err(error) = result {
            let mut expectations = controller.expectations();
            for undone in &plan.actions[done..] {
                match undone {
                    Action::CreatePod(_) => expectations.creation_observed(&expectation_key),
                    Action::DeletePod { pod, .. } => {
                        let name = pod.metadata.name.as_deref().unwrap_or_default();
                        expectations.deletion_observed(&expectation_key, name);
                    }
                    _ => {}
                }
            }
            return Err(error);
        }
    }
    Ok(())
}

/// The events Kubernetes' StatefulSet controller records for pods and claims, in its words.
fn record(
    recorder: &Recorder,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    set: &str,
    action: &Action,
    result: &Result<(), ClientError>,
) {
    let (verb, pod) = match action {
        Action::CreatePod(new) => ("create", new.pod.metadata.name.clone().unwrap_or_default()),
        Action::DeletePod { pod, .. } => ("delete", pod.metadata.name.clone().unwrap_or_default()),
        _ => return,
    };
    let (type_, reason, outcome) = match (verb, result) {
        ("create", Ok(())) => (
            EventType::Normal,
            "SuccessfulCreate",
            "successful".to_string(),
        ),
        ("delete", Ok(())) => (
            EventType::Normal,
            "SuccessfulDelete",
            "successful".to_string(),
        ),
        ("create", Err(error)) => (
            EventType::Warning,
            "FailedCreate",
            format!("failed error: {error}"),
        ),
        (_, Err(error)) => (
            EventType::Warning,
            "FailedDelete",
            format!("failed error: {error}"),
        ),
        _ => return,
    };
    let message = format!("{verb} Pod {pod} in StatefulSet {set} {outcome}");
    recorder.record(reference, type_, reason, message);
}

async fn act(
    api: &Fenced<'_>,
    namespace: &str,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    action: &Action,
) -> Result<(), ClientError> {
    match action {
        Action::AdoptRevision(revision) => {
            writes::adopt(
                api,
                "controllerrevisions",
                &revision.metadata,
                owner.clone(),
            )
            .await
        }
        Action::AdoptPod(pod) => writes::adopt(api, "pods", &pod.metadata, owner.clone()).await,
        Action::ReleasePod(pod) => writes::release(api, "pods", &pod.metadata, &owner.uid).await,
        Action::CreateRevision(revision) => {
            let body = serde_json::to_value(revision).expect("a revision always encodes");
            api.create_object("controllerrevisions", namespace, &body)
                .await
                .map(drop)
        }
        Action::RenumberRevision { revision, number } => {
            let name = revision.metadata.name.as_deref().unwrap_or_default();
            let patch = json!({
                "metadata": { "resourceVersion": revision.metadata.resource_version },
                "revision": number,
            });
            api.patch_object("controllerrevisions", namespace, name, &patch, false)
                .await
                .map(drop)
        }
        Action::CreateClaims(claims) => create_claims(api, namespace, claims).await,
        Action::SetClaimOwners {
            claim,
            owner_references,
        } => {
            writes::set_owners(
                api,
                "persistentvolumeclaims",
                &claim.metadata,
                owner_references.clone(),
            )
            .await
        }
        Action::CreatePod(new) => {
            create_claims(api, namespace, &new.claims).await?;
            let body = serde_json::to_value(&new.pod).expect("a pod always encodes");
            api.create_object("pods", namespace, &body).await.map(drop)
        }
        Action::LabelPod { pod, labels } => {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            let patch = json!({ "metadata": {
                "labels": labels,
                "resourceVersion": pod.metadata.resource_version,
            } });
            api.patch_object("pods", namespace, name, &patch, false)
                .await
                .map(drop)
        }
        Action::DeletePod { pod, reason } => {
            let name = pod.metadata.name.clone().unwrap_or_default();
            tracing::info!(pod = %format!("{namespace}/{name}"), ?reason, "deleting");
            let request = DeleteRequest {
                resource: "pods".into(),
                namespace: namespace.into(),
                name,
                precondition_uid: pod.metadata.uid.clone().unwrap_or_default(),
                ..Default::default()
            };
            match api.delete_object(request).await {
                Ok(_) => Ok(()),
                Err(error) if error.is_not_found() => Ok(()),
                Err(error) => Err(error),
            }
        }
        Action::DeleteRevision(revision) => {
            let names = [revision.metadata.name.clone().unwrap_or_default()];
            let deleted = writes::delete_all(api, "controllerrevisions", namespace, &names).await;
            deleted.error.map_or(Ok(()), Err)
        }
    }
}

/// Creates the claims a pod needs. AlreadyExists is a failure, as in Kubernetes: the cache
/// lags, and the claim there may still be an earlier pod's, owned or being deleted; the next
/// sync sees it and decides.
async fn create_claims(
    api: &Fenced<'_>,
    namespace: &str,
    claims: &[PersistentVolumeClaim],
) -> Result<(), ClientError> {
    for claim in claims {
        let body = serde_json::to_value(claim).expect("a claim always encodes");
        api.create_object("persistentvolumeclaims", namespace, &body)
            .await?;
    }
    Ok(())
}
