//! The Deployment controller's shell: an actix actor that turns Deployment and ReplicaSet
//! events into Deployment keys (a ReplicaSet's to its controller's, an orphan's to every
//! Deployment selecting it), and workers that reconcile a key and carry the plan out under
//! the leader's fence: ReplicaSets adopted, released, created, resized and deleted, the
//! revision annotation and the status written.
//!
//! No expectations are needed: a new ReplicaSet is named by its template's hash, so a second
//! create of the same one is refused by the API (AlreadyExists) instead of doubling it; a
//! create refused for another template of that name is a hash collision, and
//! `status.collisionCount` goes up so the next name differs (as Kubernetes).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use rudder_proto::api::{DeleteRequest, Fence};
use rudder_proto::client::{ApiClient, ClientError};
use rudder_proto::objects::selector::LabelSelector;
use serde_json::json;

use super::reconcile::{reconcile, Plan};
use super::sets::{same_template, REVISION};
use crate::controllers::runtime::{Controller, Subscriptions, Watches};
use crate::controllers::writes;
use crate::events::{object_reference, EventType, Recorder};
use crate::informer::{Cache, Event, ObjectKey};
use crate::pods::cached::Pod;
use crate::queue::WorkQueue;

#[derive(Clone)]
pub struct Caches {
    pub deployments: Cache<Deployment>,
    pub replica_sets: Cache<ReplicaSet>,
    /// For Recreate: no new pod while an old one is left.
    pub pods: Cache<Pod>,
}

/// The Deployment controller: clones share the caches and the queue (each worker holds one).
#[derive(Clone)]
pub struct DeploymentController {
    client: Arc<ApiClient>,
    fence: Fence,
    caches: Caches,
    queue: WorkQueue<ObjectKey>,
    recorder: Recorder,
}

impl DeploymentController {
    /// The controller for the leader holding `fence`.
    pub fn new(client: Arc<ApiClient>, fence: Fence, caches: Caches, recorder: Recorder) -> Self {
        Self {
            client,
            fence,
            caches,
            recorder,
            queue: WorkQueue::default(),
        }
    }
}

impl Controller for DeploymentController {
    type Key = ObjectKey;
    const NAME: &'static str = "deployment";

    fn queue(&self) -> &WorkQueue<ObjectKey> {
        &self.queue
    }

    fn watch(&self, caches: &mut Subscriptions<'_, Self>) {
        caches.watch(&self.caches.deployments);
        caches.watch(&self.caches.replica_sets);
        caches.watch(&self.caches.pods);
    }

    async fn sync(&self, key: ObjectKey) -> Result<Option<Duration>, ClientError> {
        sync(self, &key).await
    }
}

impl Watches<Deployment> for DeploymentController {
    fn on_event(&self, event: &Event<Deployment>) {
        if let Some(key) = event.key() {
            self.queue.add(key);
        }
    }
}

impl Watches<ReplicaSet> for DeploymentController {
    fn on_event(&self, event: &Event<ReplicaSet>) {
        for set in event.states() {
            match ObjectKey::controller_of(&set.metadata, "Deployment") {
                Some(owner) => self.queue.add(owner),
                None if crate::pods::controller_of(&set.metadata).is_none() => {
                    for key in deployments_selecting(&self.caches, set) {
                        self.queue.add(key);
                    }
                }
                None => {}
            }
        }
    }
}

/// A pod of a Deployment's set is gone: a Recreate waiting for the old pods may go on.
impl Watches<Pod> for DeploymentController {
    fn on_event(&self, event: &Event<Pod>) {
        let Event::Deleted(pod) = event else { return };
        let Some(set) = ObjectKey::controller_of(&pod.metadata, "ReplicaSet") else {
            return;
        };
        let Some(set) = self.caches.replica_sets.get(&set) else {
            return;
        };
        if let Some(deployment) = ObjectKey::controller_of(&set.metadata, "Deployment") {
            self.queue.add(deployment);
        }
    }
}

fn deployments_selecting(caches: &Caches, set: &ReplicaSet) -> Vec<ObjectKey> {
    let namespace = set.metadata.namespace.clone().unwrap_or_default();
    let empty = BTreeMap::new();
    let labels = set.metadata.labels.as_ref().unwrap_or(&empty);
    caches
        .deployments
        .in_namespace(&namespace)
        .into_iter()
        .filter(|d| {
            let selector = d.spec.as_ref().map(|s| &s.selector);
            selector
                .and_then(|s| LabelSelector::from_api(s).ok())
                .is_some_and(|s| s.matches(labels))
        })
        .map(|d| ObjectKey::of(&d.metadata))
        .collect()
}

async fn sync(
    shared: &DeploymentController,
    key: &ObjectKey,
) -> Result<Option<Duration>, ClientError> {
    let Some(deployment) = shared.caches.deployments.get(key) else {
        return Ok(None);
    };
    let sets = shared.caches.replica_sets.in_namespace(&key.namespace);
    let pods = shared.caches.pods.in_namespace(&key.namespace);
    let plan = match reconcile(&deployment, &sets, &pods, jiff::Timestamp::now()) {
        Ok(plan) => plan,
        Err(error) => {
            // The API validates these; nothing to do until the Deployment changes.
            tracing::warn!(deployment = %key, %error, "cannot roll out");
            return Ok(None);
        }
    };
    carry_out(shared, key, &deployment, &plan).await?;
    Ok(plan.requeue_after)
}

async fn carry_out(
    shared: &DeploymentController,
    key: &ObjectKey,
    deployment: &Deployment,
    plan: &Plan,
) -> Result<(), ClientError> {
    let api = shared.client.fenced(&shared.fence);
    let namespace = key.namespace.as_str();
    let uid = deployment.metadata.uid.clone().unwrap_or_default();
    for set in &plan.adopt {
        let owner = k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: key.name.clone(),
            uid: uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        writes::adopt(&api, "replicasets", &set.metadata, owner).await?;
    }
    for set in &plan.release {
        writes::release(&api, "replicasets", &set.metadata, &uid).await?;
    }
    if let Some(new) = &plan.create {
        let body = serde_json::to_value(new).expect("a ReplicaSet always encodes");
        match api.create_object("replicasets", namespace, &body).await {
            Ok(_) => {}
            Err(error) if error.reason() == "AlreadyExists" => {
                let name = new.metadata.name.clone().unwrap_or_default();
                // Not in the cache yet: it may be our own create of a moment ago that the
                // ReplicaSet watch has not delivered; look again later rather than guess.
                let Some(existing) = shared
                    .caches
                    .replica_sets
                    .get(&ObjectKey::new(namespace, &name))
                else {
                    return Err(error);
                };
                let controlled =
                    crate::pods::controller_of(&existing.metadata).is_some_and(|o| o.uid == uid);
                let template = existing.spec.as_ref().and_then(|s| s.template.as_ref());
                let wanted = deployment.spec.as_ref().map(|s| &s.template);
                let same = matches!((template, wanted), (Some(t), Some(w)) if same_template(t, w));
                if !(controlled && same) {
                    // Another template (or another owner) has this name: a hash collision.
                    let count = deployment
                        .status
                        .as_ref()
                        .and_then(|s| s.collision_count)
                        .unwrap_or(0)
                        + 1;
                    api.patch_object(
                        "deployments",
                        namespace,
                        &key.name,
                        &json!({ "status": { "collisionCount": count } }),
                        true,
                    )
                    .await?;
                }
                return Ok(());
            }
            Err(error) => return Err(error),
        }
    }
    let reference = object_reference(deployment);
    if let Some(new) = &plan.create {
        let name = new.metadata.name.as_deref().unwrap_or_default();
        let replicas = new.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let message = format!("Scaled up replica set {name} from 0 to {replicas}");
        shared
            .recorder
            .record(&reference, EventType::Normal, "ScalingReplicaSet", message);
    }
    for resize in &plan.resize {
        // The size before this write: read after it, the cache may already show the new one
        // (and the event would be lost).
        let from = shared
            .caches
            .replica_sets
            .get(&ObjectKey::new(namespace, &resize.name))
            .and_then(|s| s.spec.as_ref().and_then(|s| s.replicas))
            .unwrap_or(0);
        let patch = json!({
            "metadata": { "annotations": resize.annotations },
            "spec": { "replicas": resize.replicas },
        });
        api.patch_object("replicasets", namespace, &resize.name, &patch, false)
            .await?;
        if from != resize.replicas {
            let direction = if resize.replicas > from { "up" } else { "down" };
            let message = format!(
                "Scaled {direction} replica set {} from {from} to {}",
                resize.name, resize.replicas
            );
            shared
                .recorder
                .record(&reference, EventType::Normal, "ScalingReplicaSet", message);
        }
    }
    for name in &plan.delete {
        let request = DeleteRequest {
            resource: "replicasets".into(),
            namespace: namespace.into(),
            name: name.clone(),
            ..Default::default()
        };
        match api.delete_object(request).await {
            Ok(_) => {}
            Err(error) if error.is_not_found() => {}
            Err(error) => return Err(error),
        }
    }
    if let Some(revision) = &plan.revision {
        let patch = json!({ "metadata": { "annotations": { REVISION: revision } } });
        api.patch_object("deployments", namespace, &key.name, &patch, false)
            .await?;
    }
    let current = serde_json::to_value(&deployment.status).unwrap_or_default();
    let wanted = serde_json::to_value(&plan.status).expect("a status always encodes");
    if current != wanted {
        api.patch_object(
            "deployments",
            namespace,
            &key.name,
            &json!({ "status": wanted }),
            true,
        )
        .await?;
    }
    Ok(())
}
