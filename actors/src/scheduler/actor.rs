//! The scheduler's shell: an actix actor that keeps the [`Snapshot`] and the
//! [`SchedulingQueue`] from the pod and node caches, places one pod at a time with the pure
//! [`place`], assumes it on its node, and binds it through the API under the leader's fence.
//!
//! ```text
//!  Event<Node> ─► snapshot.upsert/remove ─► labels, taints, capacity or conditions changed:
//!                 parked pods may fit (queue.move_parked); a heartbeat moves nothing
//!  Event<Namespace> ─► snapshot namespace labels (affinity's namespaceSelector)
//!  Event<claim, volume, class> ─► snapshot storage (VolumeBinding); pods it parked look again;
//!                                 pods waiting for their claims are checked
//!  Event<Pod>  ─► bound: snapshot (the watch confirms an assumption); pending and ours: queue
//!  Pass ─► pods whose claims are bound ─► bind
//!       ─► pop ─► place ─► Ok:  snapshot.assume; a pod with claims to bind: its PreBind
//!                               (volumes.rs) assumed in the snapshot and written (claims.rs),
//!                               then it waits, holding no bind slot, until its claims are
//!                               bound (or fails); bind (fenced, many in flight) ─► bound()
//!                      └─► Err: FailedScheduling event, PodScheduled=False at the pod's
//!                               resourceVersion (a pod bound meanwhile is left alone), park;
//!                               preemption.rs finds lower-priority victims: nominate the
//!                               node, delete them gracefully (their going wakes the pod)
//!  tick (100 ms) ─► flush parked (60 s), expire unconfirmed assumptions (30 s), fail waits
//!                   for claims past VOLUME_BIND_TIMEOUT, Pass
//! ```
//!
//! A pass places at most [`PASS_BUDGET`] pods, or works [`PASS_TIME`], before it yields to
//! the events waiting (the binds it started are in them), and never has more binds in flight
//! than the configured bound. A bind's answer is matched to its pod by uid: a pod deleted and
//! created again under the same name meanwhile is another pod. A pod without claims to bind
//! goes straight to its bind: VolumeBinding costs it nothing past a look at its volumes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use k8s_openapi::api::core::v1::{
    Namespace, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use rudder_proto::api::Fence;
use rudder_proto::client::{ApiClient, ClientError};
use serde_json::json;

use super::assumed::Assumed;
use super::changes::{
    is_moot, is_pending_for_us, may_fit_differently, node_may_help, unschedulable_conditions,
};
use super::claims::PreBindError;
use super::decide::{place_with, Options, Unschedulable};
use super::metrics::SchedulerMetrics;
use super::preemption::priority;
use super::queue::{ClusterEvent, SchedulingQueue};
use super::snapshot::{PodKey, Snapshot};
use super::volumes::{uses_claims, ClaimWait, PreBind};
use crate::controllers::runtime::SyncGate;
use crate::controllers::Stop;
use crate::events::{object_reference, EventType, Recorder};
use crate::informer::{Cache, Event, ObjectKey};
use crate::pods::cached::Pod;

/// Pods placed in one pass before the actor looks at its mailbox again.
pub const PASS_BUDGET: usize = 128;
/// The longest a pass works before the actor looks at its mailbox again.
pub const PASS_TIME: Duration = Duration::from_millis(20);
/// PodScheduled=False writes in flight at once; past it, the event alone tells.
const STATUS_WRITES_IN_FLIGHT: usize = 32;
/// How often parked pods, backoffs and assumptions are looked at.
const TICK: Duration = Duration::from_millis(100);
/// How long a placed pod waits for its claims to be bound before its bind fails and it is
/// scheduled again (kube-scheduler's VolumeBinding `bindTimeoutSeconds`, 600 by default).
/// A waiting pod holds no bind slot.
pub const VOLUME_BIND_TIMEOUT: Duration = Duration::from_secs(600);

/// What the scheduler reads.
#[derive(Clone)]
pub struct Caches {
    pub pods: Cache<Pod>,
    pub nodes: Cache<Node>,
    pub namespaces: Cache<Namespace>,
    /// What VolumeBinding reads.
    pub claims: Cache<PersistentVolumeClaim>,
    pub volumes: Cache<PersistentVolume>,
    pub classes: Cache<StorageClass>,
    /// PodDisruptionBudgets: preemption spares the pods whose eviction would break one.
    pub budgets: Cache<PodDisruptionBudget>,
}

/// How one term of the scheduler runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Binds in flight at once.
    pub binds_in_flight: usize,
    pub options: Options,
    pub metrics: SchedulerMetrics,
}

pub struct Scheduler {
    client: Arc<ApiClient>,
    fence: Fence,
    recorder: Recorder,
    caches: Caches,
    settings: Settings,
    snapshot: Snapshot,
    queue: SchedulingQueue,
    assumed: Assumed,
    /// Nodes, pods, namespaces, claims, volumes, classes: no pod is placed before all have
    /// synced.
    gate: SyncGate,
    open: bool,
    binds_in_flight: usize,
    status_writes_in_flight: usize,
    next_start: usize,
    /// Varies the choice among equally good nodes from one decision to the next.
    tie_break: u64,
    pass_pending: bool,
    /// Placed pods whose PreBind was written, waiting for their claims to be bound.
    volume_waits: HashMap<ObjectKey, VolumeWait>,
    /// Placed pods whose claims are bound, waiting for a bind slot.
    ready: VecDeque<(Attempt, ObjectReference)>,
}

/// A placed pod waiting for its claims to be bound before it is bound itself.
struct VolumeWait {
    attempt: Attempt,
    reference: ObjectReference,
    /// What was assumed in the snapshot, to forget if the bind fails.
    plan: PreBind,
    /// The claims, with the resourceVersions the PreBind's writes left.
    waits: Vec<ClaimWait>,
    deadline: Instant,
}

/// How a wait for a pod's claims ends.
enum WaitEnd {
    Bound,
    /// The pod is gone, bound elsewhere, or being deleted: its own events say what follows.
    Gone,
    Failed(String),
}

/// Why a placed pod was not bound.
enum BindFailure {
    /// The API refused the bind.
    Api(ClientError),
    /// VolumeBinding's PreBind writes were refused (a claim or volume changed meanwhile).
    PreBind(PreBindError),
    /// Its claims cannot be bound there (or not in time).
    Volumes(String),
}

impl Scheduler {
    pub fn new(
        client: Arc<ApiClient>,
        fence: Fence,
        recorder: Recorder,
        caches: Caches,
        settings: Settings,
    ) -> Self {
        Self {
            client,
            fence,
            recorder,
            caches,
            settings,
            snapshot: Snapshot::new(),
            queue: SchedulingQueue::default(),
            assumed: Assumed::default(),
            gate: SyncGate::new(6),
            open: false,
            binds_in_flight: 0,
            status_writes_in_flight: 0,
            next_start: 0,
            tie_break: 0,
            pass_pending: false,
            volume_waits: HashMap::new(),
            ready: VecDeque::new(),
        }
    }

    fn synced(&mut self, which: usize, ctx: &mut Context<Self>) {
        if self.gate.synced(which) {
            self.open = true;
            tracing::info!(
                nodes = self.snapshot.len(),
                pods = self.snapshot.pod_count(),
                "scheduler caches synced: scheduling"
            );
            self.want_pass(ctx);
        }
    }

    /// Asks for a pass once the mailbox's waiting events are handled.
    fn want_pass(&mut self, ctx: &mut Context<Self>) {
        if self.open && !self.pass_pending {
            self.pass_pending = true;
            ctx.notify(Pass);
        }
    }

    fn pass(&mut self, ctx: &mut Context<Self>) {
        self.pass_pending = false;
        let now = Instant::now();
        let mut placed = 0;
        while self.binds_in_flight < self.settings.binds_in_flight.max(1) {
            // Pods whose claims got bound go first: they were placed before any queued pod.
            if let Some((attempt, reference)) = self.ready.pop_front() {
                self.bind_pod(attempt, reference, ctx);
                continue;
            }
            if placed == PASS_BUDGET || now.elapsed() >= PASS_TIME {
                self.want_pass(ctx);
                return;
            }
            let Some(key) = self.queue.pop(now) else {
                return;
            };
            let Some(pod) = self.caches.pods.get(&key) else {
                self.queue.remove(&key);
                continue;
            };
            if !is_pending_for_us(&pod) {
                self.queue.remove(&key);
                continue;
            }
            placed += 1;
            self.tie_break = self.tie_break.wrapping_add(1);
            let deciding = Instant::now();
            let decision = place_with(
                &pod,
                &self.snapshot,
                self.next_start,
                self.tie_break,
                &self.settings.options,
            );
            self.settings
                .metrics
                .attempted(decision.is_ok(), deciding.elapsed());
            match decision {
                Ok(placement) => {
                    self.next_start = placement.next_start;
                    self.snapshot.assume(&pod, &placement.node);
                    self.assumed
                        .assume(key.clone(), uid_of(&pod), &placement.node);
                    self.bind(key, &pod, placement.node, ctx);
                }
                Err(unschedulable) => {
                    self.next_start = unschedulable.next_start;
                    let plugins = unschedulable.plugins.clone();
                    self.queue.unschedulable(&key, plugins, now);
                    self.report_unschedulable(&pod, &unschedulable, ctx);
                    self.preempt_for(&pod, &unschedulable, ctx);
                }
            }
        }
    }

    /// Binds a placed pod: at once when it has no claims to bind; else after its
    /// PreBind (VolumeBinding's Reserve and PreBind) and once its claims are bound.
    fn bind(&mut self, key: ObjectKey, pod: &Pod, node: String, ctx: &mut Context<Self>) {
        let attempt = Attempt {
            key,
            uid: uid_of(pod).to_string(),
            node,
        };
        let reference = object_reference(pod);
        if uses_claims(pod) {
            match self.reserve_volumes(pod, &attempt.node) {
                Ok(plan) if !plan.is_empty() => {
                    self.write_pre_bind(attempt, reference, plan, ctx);
                    return;
                }
                Ok(_) => {}
                Err(why) => {
                    self.bound(attempt, &reference, Err(BindFailure::Volumes(why)), ctx);
                    return;
                }
            }
        }
        self.bind_pod(attempt, reference, ctx);
    }

    /// The bind itself (fenced, compare-and-swap on an unbound pod).
    fn bind_pod(&mut self, attempt: Attempt, reference: ObjectReference, ctx: &mut Context<Self>) {
        self.binds_in_flight += 1;
        let client = self.client.clone();
        let fence = self.fence.clone();
        let (namespace, name) = (attempt.key.namespace.clone(), attempt.key.name.clone());
        let (node, uid) = (attempt.node.clone(), attempt.uid.clone());
        let binding = async move {
            let bound = client
                .fenced(&fence)
                .bind(&namespace, &name, &node, &uid)
                .await?;
            let revision = bound["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|rv| rv.parse().ok())
                .unwrap_or(0);
            Ok::<u64, ClientError>(revision)
        };
        ctx.spawn(binding.into_actor(self).map(move |result, actor, ctx| {
            actor.binds_in_flight -= 1;
            actor.settings.metrics.bind_answered(result.is_ok());
            actor.bound(attempt, &reference, result.map_err(BindFailure::Api), ctx);
        }));
    }

    fn bound(
        &mut self,
        attempt: Attempt,
        reference: &ObjectReference,
        result: Result<u64, BindFailure>,
        ctx: &mut Context<Self>,
    ) {
        let now = Instant::now();
        let Attempt { key, uid, node } = attempt;
        // The queue's entry under this name is this pod's only if the name still holds it.
        let current = self.caches.pods.get(&key);
        let same_pod = current.as_ref().is_some_and(|p| uid_of(p) == uid);
        match result {
            Ok(revision) => {
                self.assumed.bound(&key, &uid, revision, now);
                self.recorder.record(
                    reference,
                    EventType::Normal,
                    "Scheduled",
                    format!("Successfully assigned {key} to {node}"),
                );
                if same_pod {
                    self.queue.done(&key);
                }
                self.bind_again_if_planted(&key, &uid, &node, ctx);
            }
            Err(failure) => {
                // Not placed after all: its requests no longer count on the node (unless the
                // watch already showed what happened to it).
                if self.assumed.end(&key, &uid) {
                    self.snapshot.remove_pod(&key.namespace, &key.name);
                    if let Some(pod) = &current {
                        self.snapshot.add_pod(pod.clone());
                    }
                }
                self.report_bind_failure(&key, &node, reference, &failure);
                if same_pod {
                    self.queue.failed(&key, now);
                }
            }
        }
        if !same_pod {
            // Another pod holds the name now: it is queued afresh, whatever this attempt was.
            self.queue.remove(&key);
            if let Some(pod) = current.filter(|p| is_pending_for_us(p)) {
                self.queue.add(key, priority(&pod), now);
            }
        }
        self.want_pass(ctx);
    }

    /// Planted (`scheduler-binds-again`, a chaos build only): the pod just bound is bound
    /// again to another node, as a scheduler that misread the answer and tried elsewhere
    /// would. The API server's refusal to bind a bound pod keeps it harmless; `--plant
    /// double-bind` turns that refusal off too.
    fn bind_again_if_planted(
        &self,
        key: &ObjectKey,
        uid: &str,
        node: &str,
        ctx: &mut Context<Self>,
    ) {
        if rudder_proto::failpoints::eval("scheduler-binds-again", |_| ()).is_none() {
            return;
        }
        let nodes = self.snapshot.nodes().iter().map(|info| info.name());
        let Some(other) = nodes.into_iter().find(|name| *name != node) else {
            return;
        };
        let (client, fence) = (self.client.clone(), self.fence.clone());
        let (namespace, name) = (key.namespace.clone(), key.name.clone());
        let (other, uid) = (other.to_string(), uid.to_string());
        let again = async move {
            let answer = client
                .fenced(&fence)
                .bind(&namespace, &name, &other, &uid)
                .await;
            tracing::warn!(pod = %name, node = %other, ?answer, "planted: bound again");
        };
        ctx.spawn(again.into_actor(self));
    }

    /// Logs a failed bind and, unless nothing is wrong, says why in a `FailedScheduling`
    /// event, in kube-scheduler's words.
    fn report_bind_failure(
        &self,
        key: &ObjectKey,
        node: &str,
        reference: &ObjectReference,
        failure: &BindFailure,
    ) {
        let message = match failure {
            BindFailure::Api(error) if error.is_fence_refused() => {
                tracing::info!(pod = %key, "the scheduler lease is lost; this bind was refused");
                return;
            }
            BindFailure::Api(error) if is_moot(error) => {
                // Bound by someone else, being deleted, or gone: the watch says which; if it
                // is still pending, it comes back after its backoff.
                tracing::debug!(pod = %key, %error, "bind not needed");
                return;
            }
            BindFailure::Api(error) => {
                tracing::warn!(pod = %key, %node, %error, "binding; retrying after a backoff");
                format!("Binding rejected: {error}")
            }
            BindFailure::PreBind(error) if error.is_fence_refused() => {
                tracing::info!(pod = %key, "the scheduler lease is lost; a PreBind was refused");
                return;
            }
            BindFailure::PreBind(error) => {
                // Most often a claim or volume changed since the decision read it.
                tracing::info!(pod = %key, %node, %error, "PreBind failed; retried later");
                format!("running PreBind plugin \"VolumeBinding\": {error}")
            }
            BindFailure::Volumes(why) => {
                tracing::warn!(pod = %key, %node, %why, "claims not bound; retried later");
                format!("running PreBind plugin \"VolumeBinding\": binding volumes: {why}")
            }
        };
        self.recorder
            .record(reference, EventType::Warning, "FailedScheduling", message);
    }

    /// `PodScheduled=False, reason Unschedulable` with the message, and a `FailedScheduling`
    /// event; the status is written only when it says something new.
    fn report_unschedulable(
        &mut self,
        pod: &Pod,
        unschedulable: &Unschedulable,
        ctx: &mut Context<Self>,
    ) {
        let message = &unschedulable.message;
        tracing::debug!(pod = %ObjectKey::of(&pod.metadata), %message, "unschedulable");
        self.recorder.record(
            &object_reference(pod),
            EventType::Warning,
            "FailedScheduling",
            message.clone(),
        );
        if self.status_writes_in_flight >= STATUS_WRITES_IN_FLIGHT {
            return;
        }
        let Some(conditions) = unschedulable_conditions(pod, message, jiff::Timestamp::now())
        else {
            return;
        };
        let client = self.client.clone();
        let fence = self.fence.clone();
        let key = ObjectKey::of(&pod.metadata);
        // At the resourceVersion the decision read: a pod bound meanwhile keeps its
        // PodScheduled=True (the write fails as a conflict, which is what we want).
        let patch = json!({
            "metadata": { "resourceVersion": pod.metadata.resource_version },
            "status": { "conditions": conditions },
        });
        let write = async move {
            let result = client
                .fenced(&fence)
                .patch_object("pods", &key.namespace, &key.name, &patch, true)
                .await;
            if let Err(error) = result {
                let expected = error.is_not_found()
                    || error.is_fence_refused()
                    || error.reason() == "Conflict";
                if !expected {
                    tracing::warn!(pod = %key, %error, "writing PodScheduled=False");
                }
            }
        };
        self.status_writes_in_flight += 1;
        ctx.spawn(write.into_actor(self).map(|(), actor, _| {
            actor.status_writes_in_flight -= 1;
        }));
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        self.queue.flush(now);
        self.settings.metrics.queued(self.queue.counts());
        let seen = self.caches.pods.revision().unwrap_or(0);
        for (key, node) in self.assumed.expire(now, seen) {
            tracing::warn!(pod = %key, %node, "the watch never showed this bind; forgetting it");
            self.snapshot.remove_pod(&key.namespace, &key.name);
            if let Some(pod) = self.caches.pods.get(&key) {
                self.snapshot.add_pod(pod.clone());
                if is_pending_for_us(&pod) {
                    self.queue.add(key, priority(&pod), now);
                }
            }
        }
        if self.volume_waits.values().any(|w| w.deadline <= now) {
            self.check_volume_waits(now, ctx);
        }
        if self.queue.has_due(now) {
            self.want_pass(ctx);
        }
    }
}

/// What a bind's answer is about.
struct Attempt {
    key: ObjectKey,
    uid: String,
    node: String,
}

fn uid_of(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

#[derive(Message)]
#[rtype(result = "()")]
struct Pass;

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.add_message_stream(self.caches.nodes.subscribe());
        ctx.add_message_stream(self.caches.pods.subscribe());
        ctx.add_message_stream(self.caches.namespaces.subscribe());
        ctx.add_message_stream(self.caches.claims.subscribe());
        ctx.add_message_stream(self.caches.volumes.subscribe());
        ctx.add_message_stream(self.caches.classes.subscribe());
        ctx.run_interval(TICK, |actor, ctx| actor.tick(ctx));
    }

    /// A term ended: this process schedules nothing now, and its queue figures say so.
    fn stopped(&mut self, _: &mut Self::Context) {
        self.settings.metrics.queued((0, 0, 0, 0));
    }
}

impl Handler<Stop> for Scheduler {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<Pass> for Scheduler {
    type Result = ();

    fn handle(&mut self, _: Pass, ctx: &mut Self::Context) {
        self.pass(ctx);
    }
}

impl Handler<Event<Node>> for Scheduler {
    type Result = ();

    fn handle(&mut self, event: Event<Node>, ctx: &mut Self::Context) {
        match &event {
            Event::Synced => self.synced(0, ctx),
            Event::Added(node) => {
                self.snapshot.upsert_node(node.clone());
                self.queue
                    .move_parked(ClusterEvent::NodeChanged, Instant::now());
                self.want_pass(ctx);
            }
            Event::Updated { old, new } => {
                self.snapshot.upsert_node(new.clone());
                if node_may_help(old, new) {
                    self.queue
                        .move_parked(ClusterEvent::NodeChanged, Instant::now());
                    self.want_pass(ctx);
                }
            }
            Event::Deleted(node) => {
                self.snapshot
                    .remove_node(node.metadata.name.as_deref().unwrap_or_default());
                self.check_volume_waits(Instant::now(), ctx);
            }
        }
    }
}

impl Handler<Event<Pod>> for Scheduler {
    type Result = ();

    fn handle(&mut self, event: Event<Pod>, ctx: &mut Self::Context) {
        let now = Instant::now();
        match &event {
            Event::Synced => self.synced(1, ctx),
            Event::Added(pod) | Event::Updated { new: pod, .. } => {
                let key = ObjectKey::of(&pod.metadata);
                let uid = uid_of(pod);
                let pod_key = PodKey::new(&key.namespace, &key.name);
                if is_pending_for_us(pod) {
                    // Where a preemption nominated it: others leave the room it freed.
                    self.snapshot.nominate(&pod_key, Some(pod.clone()));
                    // An assumed pod the watch still shows pending keeps its assumption; a
                    // change only to its status (our own PodScheduled=False among them)
                    // cannot make it fit and must not cut its backoff short.
                    let changed = match &event {
                        Event::Updated { old, new } => may_fit_differently(old, new),
                        _ => true,
                    };
                    if changed && !self.assumed.is_of(&key, uid) {
                        self.queue.add(key, priority(pod), now);
                        self.want_pass(ctx);
                    }
                    return;
                }
                self.snapshot.nominate(&pod_key, None);
                self.queue.remove(&key);
                self.assumed.end(&key, uid);
                if self.volume_waits.contains_key(&key) {
                    // Bound by someone else, or being deleted: its wait ends.
                    self.check_volume_waits(now, ctx);
                }
                let was_counted = self.snapshot.pod_node(&key.namespace, &key.name).is_some();
                let counts = self.snapshot.add_pod(pod.clone());
                let relabelled = match &event {
                    Event::Updated { old, new } => old.metadata.labels != new.metadata.labels,
                    _ => false,
                };
                if was_counted && !counts {
                    // It ended: what it held is free.
                    self.queue.move_parked(ClusterEvent::PodGone, now);
                    self.want_pass(ctx);
                } else if counts && (!was_counted || relabelled) {
                    // Placed (by us, confirmed, or by anyone) or relabelled: affinity and
                    // spread counts changed.
                    self.queue.move_parked(ClusterEvent::PodPlaced, now);
                    self.want_pass(ctx);
                }
            }
            Event::Deleted(pod) => {
                let key = ObjectKey::of(&pod.metadata);
                let uid = uid_of(pod);
                if self.assumed.node_of(&key).is_some() && !self.assumed.is_of(&key, uid) {
                    // A new pod of the same name, placed from a cache ahead of its events,
                    // holds the name in the snapshot: the old one's deletion is not its.
                    return;
                }
                self.snapshot
                    .nominate(&PodKey::new(&key.namespace, &key.name), None);
                self.queue.remove(&key);
                self.assumed.end(&key, uid);
                if self.volume_waits.contains_key(&key) {
                    self.check_volume_waits(now, ctx);
                }
                if self
                    .snapshot
                    .remove_pod(&key.namespace, &key.name)
                    .is_some()
                {
                    self.queue.move_parked(ClusterEvent::PodGone, now);
                    self.want_pass(ctx);
                }
            }
        }
    }
}

impl Handler<Event<Namespace>> for Scheduler {
    type Result = ();

    /// Namespace labels, for affinity terms' `namespaceSelector`.
    fn handle(&mut self, event: Event<Namespace>, ctx: &mut Self::Context) {
        match &event {
            Event::Synced => self.synced(2, ctx),
            Event::Added(namespace) | Event::Updated { new: namespace, .. } => {
                let name = namespace.metadata.name.as_deref().unwrap_or_default();
                let labels = namespace.metadata.labels.clone().unwrap_or_default();
                self.snapshot.upsert_namespace(name, labels);
                if let Event::Updated { old, new } = &event {
                    if old.metadata.labels != new.metadata.labels {
                        self.queue
                            .move_parked(ClusterEvent::PodPlaced, Instant::now());
                        self.want_pass(ctx);
                    }
                }
            }
            Event::Deleted(namespace) => {
                self.snapshot
                    .remove_namespace(namespace.metadata.name.as_deref().unwrap_or_default());
            }
        }
    }
}

#[path = "actor_preemption.rs"]
mod preemption_shell;
#[path = "actor_volumes.rs"]
mod volumes;
