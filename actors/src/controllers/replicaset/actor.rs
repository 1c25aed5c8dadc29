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
use std::time::Instant;

use actix::prelude::*;
use futures::future::join_all;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use rudder_proto::api::{DeleteRequest, Fence};
use rudder_proto::client::{ApiClient, ClientError};
use serde_json::json;

use super::reconcile::{reconcile, slow_start_batches, Plan, ReplicatedSet, SetStatus};
use crate::controllers::runtime::{work, SyncGate};
use crate::controllers::Stop;
use crate::expectations::Expectations;
use crate::informer::{Cache, Event, ObjectKey};
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

/// Everything a worker needs; shared by the actor and its workers.
#[derive(Clone)]
struct Shared {
    client: Arc<ApiClient>,
    fence: Fence,
    caches: Caches,
    queue: WorkQueue<SetKey>,
    expectations: Arc<Mutex<Expectations>>,
}

impl Shared {
    fn expectations(&self) -> MutexGuard<'_, Expectations> {
        self.expectations.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct ReplicaSetController {
    shared: Shared,
    workers: usize,
    /// Pods, ReplicaSets, RCs: workers start only when all have synced, or a sync on a
    /// cache still filling would see too few pods and create too many.
    gate: SyncGate,
}

impl ReplicaSetController {
    /// The controller for the leader holding `fence`, with `workers` syncs at a time.
    pub fn new(client: Arc<ApiClient>, fence: Fence, caches: Caches, workers: usize) -> Self {
        Self {
            shared: Shared {
                client,
                fence,
                caches,
                queue: WorkQueue::default(),
                expectations: Arc::default(),
            },
            workers: workers.max(1),
            gate: SyncGate::new(3),
        }
    }

    /// Notes that cache `which` has synced; starts the workers once every cache has.
    fn synced(&mut self, which: usize, ctx: &mut Context<Self>) {
        if !self.gate.synced(which) {
            return;
        }
        for _ in 0..self.workers {
            let shared = self.shared.clone();
            let queue = shared.queue.clone();
            let worker = work(queue, "replicaset", move |key| {
                let shared = shared.clone();
                async move { sync(&shared, &key).await }
            });
            ctx.spawn(worker.into_actor(self));
        }
    }
}

impl Actor for ReplicaSetController {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let caches = &self.shared.caches;
        ctx.add_message_stream(caches.pods.subscribe());
        ctx.add_message_stream(caches.replica_sets.subscribe());
        ctx.add_message_stream(caches.controllers.subscribe());
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.shared.queue.shut_down();
    }
}

impl Handler<Stop> for ReplicaSetController {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<Event<ReplicaSet>> for ReplicaSetController {
    type Result = ();

    fn handle(&mut self, event: Event<ReplicaSet>, ctx: &mut Self::Context) {
        if let Event::Synced = event {
            self.synced(1, ctx);
        }
        if let Some(key) = event.key() {
            self.shared.queue.add(SetKey {
                kind: SetKind::ReplicaSet,
                key,
            });
        }
    }
}

impl Handler<Event<ReplicationController>> for ReplicaSetController {
    type Result = ();

    fn handle(&mut self, event: Event<ReplicationController>, ctx: &mut Self::Context) {
        if let Event::Synced = event {
            self.synced(2, ctx);
        }
        if let Some(key) = event.key() {
            self.shared.queue.add(SetKey {
                kind: SetKind::ReplicationController,
                key,
            });
        }
    }
}

impl Handler<Event<Pod>> for ReplicaSetController {
    type Result = ();

    fn handle(&mut self, event: Event<Pod>, ctx: &mut Self::Context) {
        if let Event::Synced = event {
            self.synced(0, ctx);
        }
        let shared = &self.shared;
        if let Event::Added(pod) = &event {
            if let Some(owner) = owner_key(pod) {
                shared.expectations().creation_observed(&owner.to_string());
            }
        }
        // A deletion is seen when the pod is gone or once it is being deleted (a pod on a
        // node stays until its kubelet confirms; the set must not wait for that).
        let deleting = match &event {
            Event::Deleted(pod) => Some(pod),
            Event::Updated { old, new }
                if old.metadata.deletion_timestamp.is_none()
                    && new.metadata.deletion_timestamp.is_some() =>
            {
                Some(new)
            }
            _ => None,
        };
        if let Some(pod) = deleting {
            if let Some(owner) = owner_key(pod) {
                let name = pod.metadata.name.clone().unwrap_or_default();
                shared
                    .expectations()
                    .deletion_observed(&owner.to_string(), &name);
            }
        }
        for pod in event.states() {
            match owner_key(pod) {
                Some(owner) => shared.queue.add(owner),
                // An orphan: every set that selects it may adopt it.
                None => {
                    for key in sets_selecting(&shared.caches, pod) {
                        shared.queue.add(key);
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
async fn sync(shared: &Shared, key: &SetKey) -> Result<Option<std::time::Duration>, ClientError> {
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
    shared: &Shared,
    key: &SetKey,
    set: &ReplicatedSet,
    plan: &Plan,
) -> Result<(), ClientError> {
    let api = shared.client.fenced(&shared.fence);
    let expectation_key = key.to_string();
    for pod in &plan.adopt {
        let mut owners = pod.metadata.owner_references.clone().unwrap_or_default();
        owners.push(set.owner_reference());
        patch_owners(&api, pod, owners).await?;
    }
    for pod in &plan.release {
        let owners: Vec<_> = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .filter(|o| o.uid != set.uid)
            .cloned()
            .collect();
        patch_owners(&api, pod, owners).await?;
    }
    if plan.create > 0 {
        shared.expectations().expect(
            &expectation_key,
            u32::try_from(plan.create).unwrap_or(u32::MAX),
            &[],
            Instant::now(),
        );
        let pod = serde_json::to_value(set.new_pod()).expect("a pod always encodes");
        let mut created = 0;
        for batch in slow_start_batches(plan.create) {
            let results =
                join_all((0..batch).map(|_| api.create_object("pods", &set.namespace, &pod))).await;
            let failed: Vec<ClientError> = results.into_iter().filter_map(Result::err).collect();
            created += batch - failed.len();
            if let Some(error) = failed.into_iter().next() {
                // Neither the failed creates nor the skipped batches will be seen.
                for _ in created..plan.create {
                    shared.expectations().creation_observed(&expectation_key);
                }
                return Err(error);
            }
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
        let deletes = names.iter().map(|name| {
            let request = DeleteRequest {
                resource: "pods".into(),
                namespace: set.namespace.clone(),
                name: name.clone(),
                ..Default::default()
            };
            async move { (name, api.delete_object(request).await) }
        });
        let mut first_error = None;
        for (name, result) in join_all(deletes).await {
            match result {
                Ok(_) => {}
                Err(error) if error.is_not_found() => shared
                    .expectations()
                    .deletion_observed(&expectation_key, name),
                Err(error) => {
                    shared
                        .expectations()
                        .deletion_observed(&expectation_key, name);
                    first_error.get_or_insert(error);
                }
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }
    }
    write_status(shared, key, set, &plan.status).await
}

async fn patch_owners(
    api: &rudder_proto::client::Fenced<'_>,
    pod: &Pod,
    owners: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
) -> Result<(), ClientError> {
    let patch = json!({ "metadata": {
        "ownerReferences": owners,
        "resourceVersion": pod.metadata.resource_version,
    } });
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    api.patch_object("pods", &namespace, &name, &patch, false)
        .await
        .map(drop)
}

/// The status, written only when it differs from what the cache shows.
async fn write_status(
    shared: &Shared,
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
