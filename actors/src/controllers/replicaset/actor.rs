//! The ReplicaSet controller's shell: an actix actor that turns cache events into work-queue
//! keys (a pod's event into its controller's key, an orphan's into every set selecting it),
//! and workers that reconcile a key and carry the plan out through the API under the
//! leader's fence.
//!
//! ```text
//!  Event<Pod | ReplicaSet | ReplicationController> ─► keys ─► WorkQueue ─► sync(key):
//!     cache ─► reconcile (reconcile.rs) ─► adopt/release patches, creates (slow start),
//!     deletes, status ─► forget | rate-limited retry | requeue_after
//! ```
//!
//! Expectations record the creates and deletes asked for; the pod events seen lower them, so
//! a lagging cache never scales twice.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ObjectReference, ReplicationController};
use rudder_proto::api::Fence;
use rudder_proto::client::{ApiClient, ClientError};
use serde_json::json;

use super::reconcile::{reconcile, Plan, ReplicatedSet, SetStatus};
use crate::controllers::runtime::{Controller, Subscriptions, Watches};
use crate::controllers::writes;
use crate::events::Recorder;
use crate::expectations::Expectations;
use crate::informer::{Cache, Event, ObjectKey};
use crate::pods::cached::Pod;
use crate::queue::WorkQueue;

/// Which kind a key names: both kinds share the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SetKind {
    ReplicaSet,
    ReplicationController,
}

impl SetKind {
    fn kind(self) -> &'static str {
        match self {
            SetKind::ReplicaSet => "ReplicaSet",
            SetKind::ReplicationController => "ReplicationController",
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            SetKind::ReplicaSet => "apps/v1",
            SetKind::ReplicationController => "v1",
        }
    }

    fn resource(self) -> &'static str {
        match self {
            SetKind::ReplicaSet => "replicasets",
            SetKind::ReplicationController => "replicationcontrollers",
        }
    }
}

/// A work-queue key: a set of either kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SetKey {
    pub kind: SetKind,
    pub key: ObjectKey,
}

/// What the controller reads.
#[derive(Clone)]
pub struct Caches {
    pub pods: Cache<Pod>,
    pub replica_sets: Cache<ReplicaSet>,
    pub controllers: Cache<ReplicationController>,
}

/// The ReplicaSet and ReplicationController controller: clones share the caches, the queue
/// and the expectations (each worker holds one).
#[derive(Clone)]
pub struct ReplicaSetController {
    client: Arc<ApiClient>,
    fence: Fence,
    caches: Caches,
    queue: WorkQueue<SetKey>,
    expectations: Arc<Mutex<Expectations>>,
    recorder: Recorder,
}

impl ReplicaSetController {
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

impl Controller for ReplicaSetController {
    type Key = SetKey;
    const NAME: &'static str = "replicaset";

    fn queue(&self) -> &WorkQueue<SetKey> {
        &self.queue
    }

    /// Pods, ReplicaSets, RCs: workers start only when all have synced, or a sync on a
    /// cache still filling would see too few pods and create too many.
    fn watch(&self, caches: &mut Subscriptions<'_, Self>) {
        caches.watch(&self.caches.pods);
        caches.watch(&self.caches.replica_sets);
        caches.watch(&self.caches.controllers);
    }

    async fn sync(&self, key: SetKey) -> Result<Option<Duration>, ClientError> {
        sync(self, &key).await
    }
}

impl Watches<ReplicaSet> for ReplicaSetController {
    fn on_event(&self, event: &Event<ReplicaSet>) {
        if let Some(key) = event.key() {
            self.queue.add(SetKey {
                kind: SetKind::ReplicaSet,
                key,
            });
        }
    }
}

impl Watches<ReplicationController> for ReplicaSetController {
    fn on_event(&self, event: &Event<ReplicationController>) {
        if let Some(key) = event.key() {
            self.queue.add(SetKey {
                kind: SetKind::ReplicationController,
                key,
            });
        }
    }
}

impl Watches<Pod> for ReplicaSetController {
    fn on_event(&self, event: &Event<Pod>) {
        if let Event::Added(pod) = event {
            if let Some(owner) = owner_key(pod) {
                self.expectations().creation_observed(&owner.to_string());
            }
        }
        if let Some(pod) = event.deletion_seen() {
            if let Some(owner) = owner_key(pod) {
                let name = pod.metadata.name.clone().unwrap_or_default();
                self.expectations()
                    .deletion_observed(&owner.to_string(), &name);
            }
        }
        for pod in event.states() {
            match owner_key(pod) {
                Some(owner) => self.queue.add(owner),
                // An orphan: every set that selects it may adopt it.
                None => {
                    for key in sets_selecting(&self.caches, pod) {
                        self.queue.add(key);
                    }
                }
            }
        }
    }
}

/// The set controlling the pod, if it is a ReplicaSet or a ReplicationController.
fn owner_key(pod: &Pod) -> Option<SetKey> {
    [SetKind::ReplicaSet, SetKind::ReplicationController]
        .into_iter()
        .find_map(|kind| {
            ObjectKey::controller_of(&pod.metadata, kind.kind()).map(|key| SetKey { kind, key })
        })
}

fn sets_selecting(caches: &Caches, pod: &Pod) -> Vec<SetKey> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let selects = |set: &ReplicatedSet| set.selector.as_ref().is_some_and(|s| s.matches(labels));
    let sets = caches
        .replica_sets
        .in_namespace(&namespace)
        .into_iter()
        .map(|s| (SetKind::ReplicaSet, ReplicatedSet::from_replica_set(&s)));
    let rcs = caches
        .controllers
        .in_namespace(&namespace)
        .into_iter()
        .map(|c| {
            (
                SetKind::ReplicationController,
                ReplicatedSet::from_controller(&c),
            )
        });
    sets.chain(rcs)
        .filter(|(_, set)| selects(set))
        .map(|(kind, set)| SetKey {
            kind,
            key: ObjectKey::new(set.namespace, set.name),
        })
        .collect()
}

impl std::fmt::Display for SetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind.kind(), self.key)
    }
}

/// One reconcile of one set, carried out. Returns when to look again.
async fn sync(
    shared: &ReplicaSetController,
    key: &SetKey,
) -> Result<Option<Duration>, ClientError> {
    let expectation_key = key.to_string();
    let set = match key.kind {
        SetKind::ReplicaSet => shared
            .caches
            .replica_sets
            .get(&key.key)
            .map(|s| ReplicatedSet::from_replica_set(&s)),
        SetKind::ReplicationController => shared
            .caches
            .controllers
            .get(&key.key)
            .map(|c| ReplicatedSet::from_controller(&c)),
    };
    let Some(set) = set else {
        shared.expectations().forget(&expectation_key);
        return Ok(None);
    };
    let pods = shared.caches.pods.in_namespace(&set.namespace);
    let may_scale = shared
        .expectations()
        .satisfied(&expectation_key, Instant::now());
    let plan = reconcile(&set, &pods, may_scale, jiff::Timestamp::now());
    carry_out(shared, key, &set, &plan).await?;
    Ok(plan.requeue_after)
}

async fn carry_out(
    shared: &ReplicaSetController,
    key: &SetKey,
    set: &ReplicatedSet,
    plan: &Plan,
) -> Result<(), ClientError> {
    let api = shared.client.fenced(&shared.fence);
    let expectation_key = key.to_string();
    let reference = ObjectReference {
        api_version: Some(key.kind.api_version().into()),
        kind: Some(key.kind.kind().into()),
        namespace: Some(set.namespace.clone()),
        name: Some(set.name.clone()),
        uid: Some(set.uid.clone()),
        ..ObjectReference::default()
    };
    for pod in &plan.adopt {
        writes::adopt(&api, "pods", &pod.metadata, set.owner_reference()).await?;
    }
    for pod in &plan.release {
        writes::release(&api, "pods", &pod.metadata, &set.uid).await?;
    }
    if plan.create > 0 {
        shared.expectations().expect(
            &expectation_key,
            u32::try_from(plan.create).unwrap_or(u32::MAX),
            &[],
            Instant::now(),
        );
        let pod = serde_json::to_value(set.new_pod()).expect("a pod always encodes");
        let bodies = vec![pod; plan.create];
        let created = writes::create_in_batches(&api, "pods", &set.namespace, &bodies).await;
        writes::record_pod_writes(&shared.recorder, &reference, &created, &[], None);
        if let Err(failed) = created {
            for _ in 0..failed.unseen {
                shared.expectations().creation_observed(&expectation_key);
            }
            return Err(failed.error);
        }
    }
    if !plan.delete.is_empty() {
        let names: Vec<String> = plan
            .delete
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        shared
            .expectations()
            .expect(&expectation_key, 0, &names, Instant::now());
        let deleted = writes::delete_all(&api, "pods", &set.namespace, &names).await;
        let none = Ok(Vec::new());
        let error = deleted.error.as_ref();
        writes::record_pod_writes(&shared.recorder, &reference, &none, &deleted.done, error);
        for name in &deleted.unseen {
            shared
                .expectations()
                .deletion_observed(&expectation_key, name);
        }
        if let Some(error) = deleted.error {
            return Err(error);
        }
    }
    write_status(shared, key, set, &plan.status).await
}

/// The status, written only when it differs from what the cache shows.
async fn write_status(
    shared: &ReplicaSetController,
    key: &SetKey,
    set: &ReplicatedSet,
    status: &SetStatus,
) -> Result<(), ClientError> {
    let current = match key.kind {
        SetKind::ReplicaSet => shared
            .caches
            .replica_sets
            .get(&key.key)
            .and_then(|s| serde_json::to_value(&s.status).ok()),
        SetKind::ReplicationController => shared
            .caches
            .controllers
            .get(&key.key)
            .and_then(|c| serde_json::to_value(&c.status).ok()),
    };
    let wanted = json!({
        "replicas": status.replicas,
        "fullyLabeledReplicas": status.fully_labeled_replicas,
        "readyReplicas": status.ready_replicas,
        "availableReplicas": status.available_replicas,
        "observedGeneration": status.observed_generation,
    });
    let same = current.as_ref().is_some_and(|c| {
        wanted
            .as_object()
            .into_iter()
            .flatten()
            .all(|(k, v)| c.get(k).unwrap_or(&json!(0)) == v)
    });
    if same {
        return Ok(());
    }
    let api = shared.client.fenced(&shared.fence);
    api.patch_object(
        key.kind.resource(),
        &set.namespace,
        &set.name,
        &json!({ "status": wanted }),
        true,
    )
    .await
    .map(drop)
}
