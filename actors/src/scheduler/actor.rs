//! The scheduler's shell: an actix actor that keeps the [`Snapshot`] and the
//! [`SchedulingQueue`] from the pod and node caches, places one pod at a time with the pure
//! [`place`], assumes it on its node, and binds it through the API under the leader's fence.
//!
//! ```text
//!  Event<Node> ─► snapshot.upsert/remove ─► parked pods may fit: queue.move_parked
//!  Event<Pod>  ─► bound: snapshot (the watch confirms an assumption); pending and ours: queue
//!  Pass ─► pop ─► place ─► Ok:  snapshot.assume, bind (fenced, many in flight) ─► BindDone
//!                      └─► Err: PodScheduled=False Unschedulable, FailedScheduling event, park
//!  tick (100 ms) ─► flush parked (60 s), expire unconfirmed assumptions (30 s), Pass
//! ```
//!
//! A pass places at most [`PASS_BUDGET`] pods before it yields to the events waiting (the
//! binds it started are in them), and never more binds in flight than the configured bound.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rudder_proto::api::Fence;
use rudder_proto::client::{ApiClient, ClientError};
use serde_json::json;

use super::assumed::Assumed;
use super::decide::{is_gated, is_ours, place_with, Options, Unschedulable};
use super::queue::SchedulingQueue;
use super::snapshot::Snapshot;
use crate::controllers::runtime::SyncGate;
use crate::controllers::Stop;
use crate::events::{object_reference, EventType, Recorder};
use crate::informer::{Cache, Event, ObjectKey};

/// Pods placed in one pass before the actor looks at its mailbox again.
pub const PASS_BUDGET: usize = 128;
/// How often parked pods, backoffs and assumptions are looked at.
const TICK: Duration = Duration::from_millis(100);

/// What the scheduler reads.
#[derive(Clone)]
pub struct Caches {
    pub pods: Cache<Pod>,
    pub nodes: Cache<Node>,
}

/// How one term of the scheduler runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Binds in flight at once.
    pub binds_in_flight: usize,
    pub options: Options,
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
    /// Pods, nodes: no pod is placed before both have synced.
    gate: SyncGate,
    open: bool,
    binds_in_flight: usize,
    next_start: usize,
    /// Varies the choice among equally good nodes from one decision to the next.
    tie_break: u64,
    pass_pending: bool,
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
            gate: SyncGate::new(2),
            open: false,
            binds_in_flight: 0,
            next_start: 0,
            tie_break: 0,
            pass_pending: false,
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
            if placed == PASS_BUDGET {
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
            match place_with(
                &pod,
                &self.snapshot,
                self.next_start,
                self.tie_break,
                &self.settings.options,
            ) {
                Ok(placement) => {
                    self.next_start = placement.next_start;
                    self.snapshot.assume(&pod, &placement.node);
                    self.assumed.assume(key.clone(), &placement.node);
                    self.bind(key, &pod, placement.node, ctx);
                }
                Err(unschedulable) => {
                    self.next_start = unschedulable.next_start;
                    self.queue.unschedulable(&key, now);
                    self.report_unschedulable(&pod, &unschedulable, ctx);
                }
            }
        }
    }

    fn bind(&mut self, key: ObjectKey, pod: &Pod, node: String, ctx: &mut Context<Self>) {
        self.binds_in_flight += 1;
        let client = self.client.clone();
        let fence = self.fence.clone();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let target = node.clone();
        let (namespace, name) = (key.namespace.clone(), key.name.clone());
        let binding = async move {
            client
                .fenced(&fence)
                .bind(&namespace, &name, &target, &uid)
                .await
                .map(drop)
        };
        let reference = object_reference(pod);
        ctx.spawn(binding.into_actor(self).map(move |result, actor, ctx| {
            actor.binds_in_flight -= 1;
            actor.bound(key, &reference, node, result, ctx);
        }));
    }

    fn bound(
        &mut self,
        key: ObjectKey,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
        node: String,
        result: Result<(), ClientError>,
        ctx: &mut Context<Self>,
    ) {
        let now = Instant::now();
        match result {
            Ok(()) => {
                self.assumed.bound(&key, now);
                self.queue.done(&key);
                self.recorder.record(
                    reference,
                    EventType::Normal,
                    "Scheduled",
                    format!("Successfully assigned {key} to {node}"),
                );
            }
            Err(error) => {
                // Not placed after all: its requests no longer count on the node (unless the
                // watch already showed what happened to it).
                if self.assumed.end(&key) {
                    self.snapshot.remove_pod(&key.namespace, &key.name);
                    if let Some(pod) = self.caches.pods.get(&key) {
                        self.snapshot.add_pod(pod);
                    }
                }
                if error.is_fence_refused() {
                    tracing::info!(pod = %key, "the scheduler lease is lost; this bind was refused");
                } else if is_moot(&error) {
                    // Bound by someone else, being deleted, or gone: the watch says which;
                    // if it is still pending, it comes back after its backoff.
                    tracing::debug!(pod = %key, %error, "bind not needed");
                } else {
                    tracing::warn!(pod = %key, %node, %error, "binding; retrying after a backoff");
                    self.recorder.record(
                        reference,
                        EventType::Warning,
                        "FailedScheduling",
                        format!("Binding rejected: {error}"),
                    );
                }
                self.queue.failed(&key, now);
            }
        }
        self.want_pass(ctx);
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
        let Some(conditions) = unschedulable_conditions(pod, message, jiff::Timestamp::now())
        else {
            return;
        };
        let client = self.client.clone();
        let fence = self.fence.clone();
        let key = ObjectKey::of(&pod.metadata);
        let patch = json!({ "status": { "conditions": conditions } });
        let write = async move {
            let result = client
                .fenced(&fence)
                .patch_object("pods", &key.namespace, &key.name, &patch, true)
                .await;
            if let Err(error) = result {
                if !error.is_not_found() && !error.is_fence_refused() {
                    tracing::warn!(pod = %key, %error, "writing PodScheduled=False");
                }
            }
        };
        ctx.spawn(write.into_actor(self));
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        self.queue.flush(now);
        for (key, node) in self.assumed.expire(now) {
            tracing::warn!(pod = %key, %node, "the watch never showed this bind; forgetting it");
            self.snapshot.remove_pod(&key.namespace, &key.name);
            if let Some(pod) = self.caches.pods.get(&key) {
                self.snapshot.add_pod(pod.clone());
                if is_pending_for_us(&pod) {
                    self.queue.add(key, priority(&pod), now);
                }
            }
        }
        if self.queue.next_due().is_some_and(|due| due <= now) || self.queue.counts().0 > 0 {
            self.want_pass(ctx);
        }
    }
}

/// A pod this scheduler should place now.
fn is_pending_for_us(pod: &Pod) -> bool {
    is_ours(pod) && !is_gated(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// Whether an update may change where the pod fits: its spec, labels or annotations
/// (kube-scheduler's `isPodUpdated` ignores the status and the server's bookkeeping).
fn may_fit_differently(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec
        || old.metadata.labels != new.metadata.labels
        || old.metadata.annotations != new.metadata.annotations
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// A bind refused because the pod changed under it (bound already, being deleted, deleted and
/// created again, gone): nothing to retry for that pod as it was.
fn is_moot(error: &ClientError) -> bool {
    error.is_not_found() || matches!(error.reason(), "Conflict" | "Forbidden" | "AlreadyExists")
}

/// The pod's conditions with PodScheduled set False for `message`; `None` when they already
/// say so.
fn unschedulable_conditions(
    pod: &Pod,
    message: &str,
    now: jiff::Timestamp,
) -> Option<Vec<PodCondition>> {
    let mut conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let wanted = PodCondition {
        type_: "PodScheduled".into(),
        status: "False".into(),
        reason: Some("Unschedulable".into()),
        message: Some(message.to_string()),
        last_transition_time: Some(Time(now)),
        ..PodCondition::default()
    };
    match conditions.iter_mut().find(|c| c.type_ == "PodScheduled") {
        Some(current)
            if current.status == wanted.status
                && current.reason == wanted.reason
                && current.message == wanted.message =>
        {
            None
        }
        Some(current) => {
            let transition = if current.status == wanted.status {
                current.last_transition_time.clone()
            } else {
                wanted.last_transition_time.clone()
            };
            *current = PodCondition {
                last_transition_time: transition,
                ..wanted
            };
            Some(conditions)
        }
        None => {
            conditions.push(wanted);
            Some(conditions)
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Pass;

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.add_message_stream(self.caches.nodes.subscribe());
        ctx.add_message_stream(self.caches.pods.subscribe());
        ctx.run_interval(TICK, |actor, ctx| actor.tick(ctx));
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
            Event::Added(node) | Event::Updated { new: node, .. } => {
                self.snapshot.upsert_node(node.clone());
                self.queue.move_parked(Instant::now());
                self.want_pass(ctx);
            }
            Event::Deleted(node) => {
                self.snapshot
                    .remove_node(node.metadata.name.as_deref().unwrap_or_default());
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
                if is_pending_for_us(pod) {
                    // An assumed pod the watch still shows pending keeps its assumption; a
                    // change only to its status (our own PodScheduled=False among them)
                    // cannot make it fit and must not cut its backoff short.
                    let changed = match &event {
                        Event::Updated { old, new } => may_fit_differently(old, new),
                        _ => true,
                    };
                    if changed && self.assumed.node_of(&key).is_none() {
                        self.queue.add(key, priority(pod), now);
                        self.want_pass(ctx);
                    }
                    return;
                }
                self.queue.remove(&key);
                self.assumed.end(&key);
                let was_counted = self.snapshot.pod_node(&key.namespace, &key.name).is_some();
                let counts = self.snapshot.add_pod(pod.clone());
                if was_counted && !counts {
                    // It ended: what it held is free.
                    self.queue.move_parked(now);
                    self.want_pass(ctx);
                }
            }
            Event::Deleted(pod) => {
                let key = ObjectKey::of(&pod.metadata);
                self.queue.remove(&key);
                self.assumed.end(&key);
                if self
                    .snapshot
                    .remove_pod(&key.namespace, &key.name)
                    .is_some()
                {
                    self.queue.move_parked(now);
                    self.want_pass(ctx);
                }
            }
        }
    }
}
