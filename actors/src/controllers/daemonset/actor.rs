//! The DaemonSet controller's shell: DaemonSet, node, pod and ControllerRevision events
//! become DaemonSet keys; a worker reconciles one (reconcile.rs) and carries the plan out
//! under the leader's fence, in Kubernetes' order: the new revision first, then adoption,
//! deletes and creates (one expectation for both), old revisions pruned, the status last.
//!
//! ```text
//!  Event<DaemonSet> ─► its key          Event<Node> (labels, spec) ─► every DaemonSet's key
//!  Event<Pod> ─► its DaemonSet's key (expectations lowered), an orphan's: those selecting it
//!  Event<ControllerRevision> ─► its DaemonSet's key
//! ```

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::Node;
use rudder_proto::api::Fence;
use rudder_proto::client::{ApiClient, ClientError};
use serde_json::json;

use super::backoff::FailedPodBackoff;
use super::reconcile::{owner_reference, reconcile, Observed, Plan};
use crate::controllers::runtime::{selecting, Controller, Subscriptions, Watches};
use crate::controllers::writes;
use crate::events::{object_reference, Recorder};
use crate::expectations::Expectations;
use crate::informer::{Cache, Event, ObjectKey};
use crate::pods::cached::Pod;
use crate::queue::WorkQueue;

#[derive(Clone)]
pub struct Caches {
    pub daemon_sets: Cache<DaemonSet>,
    pub nodes: Cache<Node>,
    pub pods: Cache<Pod>,
    pub revisions: Cache<ControllerRevision>,
}

/// The DaemonSet controller: clones share the caches, the queue, the expectations and the
/// failed-pod backoff (each worker holds one).
#[derive(Clone)]
pub struct DaemonSetController {
    client: Arc<ApiClient>,
    fence: Fence,
    caches: Caches,
    queue: WorkQueue<ObjectKey>,
    expectations: Arc<Mutex<Expectations>>,
    recorder: Recorder,
    backoff: Arc<Mutex<FailedPodBackoff>>,
}

impl DaemonSetController {
    /// The controller for the leader holding `fence`.
    pub fn new(client: Arc<ApiClient>, fence: Fence, caches: Caches, recorder: Recorder) -> Self {
        Self {
            client,
            fence,
            caches,
            recorder,
            queue: WorkQueue::default(),
            expectations: Arc::default(),
            backoff: Arc::default(),
        }
    }

    fn expectations(&self) -> MutexGuard<'_, Expectations> {
        self.expectations.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enqueue_all(&self) {
        for set in self.caches.daemon_sets.list() {
            self.queue.add(ObjectKey::of(&set.metadata));
        }
    }
}

impl Controller for DaemonSetController {
    type Key = ObjectKey;
    const NAME: &'static str = "daemonset";

    fn queue(&self) -> &WorkQueue<ObjectKey> {
        &self.queue
    }

    fn watch(&self, caches: &mut Subscriptions<'_, Self>) {
        caches.watch(&self.caches.daemon_sets);
        caches.watch(&self.caches.nodes);
        caches.watch(&self.caches.pods);
        caches.watch(&self.caches.revisions);
    }

    async fn sync(&self, key: ObjectKey) -> Result<Option<Duration>, ClientError> {
        sync(self, &key).await
    }
}

impl Watches<DaemonSet> for DaemonSetController {
    fn on_event(&self, event: &Event<DaemonSet>) {
        if let Some(key) = event.key() {
            self.queue.add(key);
        }
    }
}

/// A node added or gone, or one whose labels or spec (taints, unschedulable) changed, may
/// change where every DaemonSet runs; heartbeats change nothing.
impl Watches<Node> for DaemonSetController {
    fn on_event(&self, event: &Event<Node>) {
        let relevant = match event {
            Event::Added(_) | Event::Deleted(_) => true,
            Event::Updated { old, new } => {
                old.metadata.labels != new.metadata.labels || old.spec != new.spec
            }
            Event::Synced => false,
        };
        if relevant {
            self.enqueue_all();
        }
    }
}

impl Watches<Pod> for DaemonSetController {
    fn on_event(&self, event: &Event<Pod>) {
        if let Event::Added(pod) = event {
            if let Some(set) = ObjectKey::controller_of(&pod.metadata, "DaemonSet") {
                self.expectations().creation_observed(&set.to_string());
            }
        }
        if let Some(pod) = event.deletion_seen() {
            if let Some(set) = ObjectKey::controller_of(&pod.metadata, "DaemonSet") {
                let name = pod.metadata.name.clone().unwrap_or_default();
                self.expectations()
                    .deletion_observed(&set.to_string(), &name);
            }
        }
        for pod in event.states() {
            match ObjectKey::controller_of(&pod.metadata, "DaemonSet") {
                Some(set) => self.queue.add(set),
                None if crate::pods::controller_of(&pod.metadata).is_none() => {
                    let sets = &self.caches.daemon_sets;
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

impl Watches<ControllerRevision> for DaemonSetController {
    fn on_event(&self, event: &Event<ControllerRevision>) {
        for revision in event.states() {
            if let Some(set) = ObjectKey::controller_of(&revision.metadata, "DaemonSet") {
                self.queue.add(set);
            }
        }
    }
}

async fn sync(
    controller: &DaemonSetController,
    key: &ObjectKey,
) -> Result<Option<Duration>, ClientError> {
    let expectation_key = key.to_string();
    let Some(set) = controller.caches.daemon_sets.get(key) else {
        controller.expectations().forget(&expectation_key);
        return Ok(None);
    };
    let nodes = controller.caches.nodes.list();
    let pods = controller.caches.pods.in_namespace(&key.namespace);
    let revisions = controller.caches.revisions.in_namespace(&key.namespace);
    let may_act = controller
        .expectations()
        .satisfied(&expectation_key, Instant::now());
    let now = jiff::Timestamp::now();
    let plan = {
        let mut backoff = controller.backoff.lock().unwrap_or_else(|p| p.into_inner());
        backoff.collect_garbage(now);
        let observed = Observed {
            nodes: &nodes,
            pods: &pods,
            revisions: &revisions,
        };
        reconcile(&set, observed, may_act, &mut backoff, now)
    };
    if let Some(invalid) = &plan.invalid_strategy {
        tracing::warn!(daemonset = %key, %invalid, "the rolling update's bounds do not parse; the update waits");
    }
    carry_out(controller, key, &set, &plan).await?;
    // Waiting on expectations: look again when they lapse, even if no event comes.
    let lapses_in = controller
        .expectations()
        .lapses_in(&expectation_key, Instant::now());
    Ok(match (plan.requeue_after, lapses_in) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

async fn carry_out(
    controller: &DaemonSetController,
    key: &ObjectKey,
    set: &DaemonSet,
    plan: &Plan,
) -> Result<(), ClientError> {
    let api = controller.client.fenced(&controller.fence);
    let namespace = key.namespace.as_str();
    let expectation_key = key.to_string();
    let revisions = &plan.revisions;
    if let Some(revision) = &revisions.create {
        let body = serde_json::to_value(revision).expect("a revision always encodes");
        match api
            .create_object("controllerrevisions", namespace, &body)
            .await
        {
            Ok(_) => {}
            // Made by an earlier sync whose answer was lost: the next sync reads it.
            Err(error) if error.reason() == "AlreadyExists" => {}
            Err(error) => return Err(error),
        }
    }
    if let Some((name, number)) = &revisions.renumber {
        api.patch_object(
            "controllerrevisions",
            namespace,
            name,
            &json!({ "revision": number }),
            false,
        )
        .await?;
    }
    let owner = owner_reference(&set.metadata);
    for pod in &plan.adopt {
        writes::adopt(&api, "pods", &pod.metadata, owner.clone()).await?;
    }
    for pod in &plan.release {
        writes::release(&api, "pods", &pod.metadata, &owner.uid).await?;
    }
    let bodies: Vec<_> = plan
        .create
        .iter()
        .map(|new| serde_json::to_value(&new.pod).expect("a pod always encodes"))
        .collect();
    let bookkeeping = writes::Bookkeeping {
        expectations: &controller.expectations,
        expectation_key: &expectation_key,
        recorder: &controller.recorder,
        owner: &object_reference(set),
    };
    writes::replace_pods(&api, &bookkeeping, namespace, &plan.delete, &bodies).await?;
    let pruned =
        writes::delete_all(&api, "controllerrevisions", namespace, &revisions.delete).await;
    if let Some(error) = pruned.error {
        return Err(error);
    }
    if let Some(status) = &plan.status {
        if set.status.as_ref() != Some(status) {
            api.patch_object(
                "daemonsets",
                namespace,
                &key.name,
                &json!({ "status": status }),
                true,
            )
            .await?;
        }
    }
    Ok(())
}
