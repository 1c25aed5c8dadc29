//! The disruption controller's shell: budget events, events of the pods a budget counts and
//! replica changes of the workloads that may control them become budget keys; a worker
//! computes one budget's status (reconcile.rs), records the plan's events and writes the
//! status under the leader's fence.
//!
//! ```text
//!  Event<PodDisruptionBudget | Pod | ReplicaSet | ReplicationController | StatefulSet |
//!        Deployment> ─► budget keys ─► WorkQueue ─► sync(key):
//!     cache ─► reconcile ─► events; update-status at the budget's resourceVersion
//!     ─► forget | rate-limited retry (a conflict: an eviction took a disruption meanwhile)
//!     | look again when an awaited eviction times out
//! ```
//!
//! A budget that cannot be computed (a pod whose controller is not found) gets the fail-safe
//! status and is forgotten until an event queues it again, as Kubernetes does.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::ReplicationController;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use rudder_proto::api::Fence;
use rudder_proto::client::{ApiClient, ClientError};
use rudder_proto::objects::disruption::counts;

use super::reconcile::{reconcile, Workloads};
use crate::controllers::runtime::{Controller, Subscriptions, Watches};
use crate::events::Recorder;
use crate::informer::{ApiObject, Cache, Event, ObjectKey};
use crate::pods::cached::Pod;
use crate::queue::WorkQueue;

/// What the controller reads.
#[derive(Clone)]
pub struct Caches {
    pub budgets: Cache<PodDisruptionBudget>,
    pub pods: Cache<Pod>,
    pub replica_sets: Cache<ReplicaSet>,
    pub controllers: Cache<ReplicationController>,
    pub stateful_sets: Cache<StatefulSet>,
    pub deployments: Cache<Deployment>,
}

/// The disruption controller: clones share the caches, the queue and the recorder.
#[derive(Clone)]
pub struct DisruptionController {
    client: Arc<ApiClient>,
    fence: Fence,
    caches: Caches,
    queue: WorkQueue<ObjectKey>,
    recorder: Recorder,
}

impl DisruptionController {
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

    /// Every budget of `namespace`: a workload's scale may be what any of them counts against.
    fn all_budgets_in(&self, namespace: &str) {
        for budget in self.caches.budgets.in_namespace(namespace) {
            self.queue.add(ObjectKey::of(&budget.metadata));
        }
    }

    /// A workload's event concerns the budgets of its namespace when its replicas changed
    /// (or it came or went).
    fn on_workload<K: ApiObject>(&self, event: &Event<K>, replicas: impl Fn(&K) -> Option<i32>) {
        let concerns = match event {
            Event::Updated { old, new } => replicas(&**old) != replicas(&**new),
            Event::Added(_) | Event::Deleted(_) => true,
            Event::Synced => false,
        };
        if let Some(key) = event.key().filter(|_| concerns) {
            self.all_budgets_in(&key.namespace);
        }
    }
}

impl Controller for DisruptionController {
    type Key = ObjectKey;
    const NAME: &'static str = "disruption";

    fn queue(&self) -> &WorkQueue<ObjectKey> {
        &self.queue
    }

    /// Budgets, pods and every workload kind whose replicas a budget may count against: a
    /// status computed from a cache still filling would allow too much.
    fn watch(&self, caches: &mut Subscriptions<'_, Self>) {
        caches.watch(&self.caches.budgets);
        caches.watch(&self.caches.pods);
        caches.watch(&self.caches.replica_sets);
        caches.watch(&self.caches.controllers);
        caches.watch(&self.caches.stateful_sets);
        caches.watch(&self.caches.deployments);
    }

    async fn sync(&self, key: ObjectKey) -> Result<Option<Duration>, ClientError> {
        let Some(budget) = self.caches.budgets.get(&key) else {
            return Ok(None);
        };
        let namespace = key.namespace.as_str();
        let pods = self.caches.pods.in_namespace(namespace);
        let workloads = Workloads {
            replica_sets: self.caches.replica_sets.in_namespace(namespace),
            controllers: self.caches.controllers.in_namespace(namespace),
            stateful_sets: self.caches.stateful_sets.in_namespace(namespace),
            deployments: self.caches.deployments.in_namespace(namespace),
        };
        let plan = reconcile(&budget, &pods, &workloads, jiff::Timestamp::now());
        if let Some(why) = &plan.sync_failed {
            // Kubernetes logs it too; the fail-safe status allows no disruption meanwhile.
            tracing::warn!(budget = %key, %why, "failed to sync the budget");
        }
        for note in plan.events {
            self.recorder
                .record(&note.about, note.type_, note.reason, note.message);
        }
        if let Some(status) = plan.status {
            let mut body = serde_json::to_value(&*budget).expect("a budget always encodes");
            body["status"] = serde_json::to_value(&status).expect("a status always encodes");
            // At the resourceVersion the status was computed from: had an eviction taken a
            // disruption meanwhile, this is a conflict, and the key is synced again on the
            // budget as it is now (its update event queues it too).
            let written = self
                .client
                .fenced(&self.fence)
                .update_object(
                    "poddisruptionbudgets",
                    &key.namespace,
                    &key.name,
                    &body,
                    true,
                )
                .await;
            match written {
                Ok(_) => {}
                // Deleted meanwhile: nothing left to keep.
                Err(error) if error.is_not_found() => return Ok(None),
                Err(error) => return Err(error),
            }
        }
        // A budget that could not be computed (fail safe, `plan.sync_failed`) is not retried
        // on a backoff: as in Kubernetes (`sync` returns `failSafe`'s write, nil once
        // written), what can change the outcome — a pod, the budget, or (here also) a
        // workload appearing or scaling — queues it again; a retry would only recompute it.
        Ok(plan.recheck_after)
    }
}

impl Watches<PodDisruptionBudget> for DisruptionController {
    fn on_event(&self, event: &Event<PodDisruptionBudget>) {
        if let Some(key) = event.key() {
            self.queue.add(key);
        }
    }
}

impl Watches<Pod> for DisruptionController {
    /// Every budget counting the pod, before or after the change (a relabelled pod leaves
    /// one budget for another).
    fn on_event(&self, event: &Event<Pod>) {
        for pod in event.states() {
            let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
            for budget in self.caches.budgets.in_namespace(namespace) {
                if counts(&budget, &pod.metadata) {
                    self.queue.add(ObjectKey::of(&budget.metadata));
                }
            }
        }
    }
}

impl Watches<ReplicaSet> for DisruptionController {
    fn on_event(&self, event: &Event<ReplicaSet>) {
        self.on_workload(event, |rs| rs.spec.as_ref().and_then(|s| s.replicas));
    }
}

impl Watches<ReplicationController> for DisruptionController {
    fn on_event(&self, event: &Event<ReplicationController>) {
        self.on_workload(event, |rc| rc.spec.as_ref().and_then(|s| s.replicas));
    }
}

impl Watches<StatefulSet> for DisruptionController {
    fn on_event(&self, event: &Event<StatefulSet>) {
        self.on_workload(event, |set| set.spec.as_ref().and_then(|s| s.replicas));
    }
}

impl Watches<Deployment> for DisruptionController {
    fn on_event(&self, event: &Event<Deployment>) {
        self.on_workload(event, |d| d.spec.as_ref().and_then(|s| s.replicas));
    }
}
