//! The kubelet actor's node duties: register the Node, renew its Lease (the heartbeat the
//! node lifecycle controller watches), and keep its status current. Each duty is a timer
//! on the actor; each run is one async task through the API, never two at once. Over 700
//! lines, kept whole: this is the actor and its handlers; what they decide is pure, in the
//! files beside it (`sync.rs`, `claims.rs`, `volume_files.rs`, ...).
//!
//! ```text
//!  started ─► register (create Node; exists → refresh its status) ─ retry every second
//!  every lease_renew   ─► get Lease ─ renewed_lease (pure) ─► create / update (CAS)
//!  every status_update ─► get Node ─ node_status (pure)    ─► update-status (CAS)
//!  with a runtime: informer (pods with spec.nodeName = this node) ─► desired pods
//!     desired + runtime.pods() ─ sync (pure, sync.rs) ─► start / stop / report (first
//!     come first served, report_queue.rs) / confirm
//!     start: configMaps, secrets and projected volumes (a ServiceAccount's token, asked
//!     for bound to the pod: volume_files.rs) read, claims Bound and their volumes' host paths
//!     (claims.rs; not on hollow nodes) ─► runtime; else the pod waits (FailedMount event;
//!     claims not ready: tried again after 1 s, doubling to 30 s, on one retry timer)
//!     reports that reach the API ─► pod start latency, container restarts (metrics.rs)
//!  with --manifests: static pods (static_pods.rs) join the desired pods; each gets a
//!     mirror pod in the API (created again when deleted; removed with its file)
//! ```
//!
//! One file over 700 lines on purpose: it is the actor alone (its state, timers, handlers
//! and the async tasks they spawn); every decision it takes is pure elsewhere (`sync.rs`,
//! `claims.rs`, `static_pods.rs`, `crate::status`), and splitting the handlers would only
//! spread one actor's state over several files.

pub mod claims;
pub mod metrics;
mod report_queue;
pub mod static_pods;
pub mod sync;
mod volume_files;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use rudder_actors::events::{EventType, Recorder};
use rudder_actors::informer::{Event, Informer, Query};
use rudder_proto::api as pb;
use rudder_proto::client::{ApiClient, ClientError};

use crate::machine::Machine;
use crate::runtime::{PodPlan, Runtime};
use crate::status::{node_object, node_status, renewed_lease, NodeConfig, NODE_LEASE_NAMESPACE};
use metrics::KubeletMetrics;
use report_queue::ReportQueue;
use sync::{desired, keeping_conditions, running_status, PodOp};

/// The kubelet's timers (Kubernetes' defaults).
#[derive(Debug, Clone, Copy)]
pub struct KubeletTimers {
    /// Lease renewal: 10 s.
    pub lease_renew: Duration,
    /// How long a lease holds without renewal: 40 s.
    pub lease_duration: Duration,
    /// NodeStatus updates: 10 s.
    pub status_update: Duration,
    /// Pods synced even when nothing was heard (retries failed operations): 5 s.
    pub resync: Duration,
}

impl Default for KubeletTimers {
    fn default() -> Self {
        Self {
            lease_renew: Duration::from_secs(10),
            lease_duration: Duration::from_secs(40),
            status_update: Duration::from_secs(10),
            resync: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error(transparent)]
    Api(#[from] ClientError),
    #[error("the server sent a {kind} that does not decode: {source}")]
    Decode {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Claim(#[from] claims::ClaimError),
}

/// How soon a pod whose claims were not ready (not bound yet) is tried again the first
/// time; the wait doubles with each failure up to [`CLAIMS_RETRY_MAX`]. Other volume
/// problems wait for the next resync.
const CLAIMS_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between two attempts at a pod's claims.
const CLAIMS_RETRY_MAX: Duration = Duration::from_secs(30);

/// The wait after the `failures`-th failed attempt at a pod's claims in a row: 1 s, 2 s,
/// 4 s, ... up to 30 s (each attempt reads every claim and its volume from the API).
fn claims_retry(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    CLAIMS_RETRY
        .saturating_mul(1 << doublings)
        .min(CLAIMS_RETRY_MAX)
}

/// Why a pod's volumes could not be prepared last time.
#[derive(Debug, Clone)]
struct MountProblem {
    message: String,
    /// Logged and reported (a reason is, once seen twice in a row).
    reported: bool,
    /// Failed attempts at its claims in a row.
    claim_failures: u32,
    /// When its claims are tried again; `None`: at the next sync.
    next_attempt: Option<Instant>,
}

/// How long a sync waits for more changes to arrive with the first.
const SYNC_COALESCE: Duration = Duration::from_millis(10);

/// Status reports a kubelet has in flight at once; the others wait in a queue
/// (report_queue.rs) for the sync that a report's success asks for (after a failure, for
/// the resync). Kubernetes' status manager sends one at a time. Sending every
/// pod's report together, a node whose hundred pods started at once made the master
/// serving it hold a hundred patches decoded at the same time, and a hundred nodes did it
/// together (87 MB of a master's 326 MB heap peak at 10,000 pods, heaptrack).
const REPORTS_IN_FLIGHT: usize = 4;

pub struct Kubelet {
    client: Arc<ApiClient>,
    config: NodeConfig,
    machine: Machine,
    timers: KubeletTimers,
    registered: bool,
    renewing: bool,
    updating: bool,
    /// Runs this node's pods; `None`: the node registers and heartbeats but runs no pods.
    runtime: Option<Arc<dyn Runtime>>,
    /// Pods bound here, by uid, as the API last showed them.
    pods: BTreeMap<String, serde_json::Value>,
    /// Pods with an API call in flight (a report, a deletion confirmation, reading the
    /// configMaps and secrets a start needs).
    in_flight: BTreeSet<String>,
    /// Status reports in flight (at most [`REPORTS_IN_FLIGHT`]).
    reports_in_flight: usize,
    /// Pods whose status waits to be reported, first come first served.
    waiting_reports: ReportQueue,
    /// uid → the status this kubelet last reported ([`sync::fingerprint`]).
    reported: BTreeMap<String, serde_json::Value>,
    /// The static pod manifest directory, if any.
    manifests: Option<std::path::PathBuf>,
    /// Static pods by uid, as last read from `manifests`.
    static_pods: BTreeMap<String, serde_json::Value>,
    /// Manifest problems already logged (each is logged once).
    manifest_problems: BTreeSet<String>,
    /// What the pods (not mirrors) and static pods want, decoded once per change: uid →
    /// desired pod.
    desired: BTreeMap<String, sync::DesiredPod>,
    /// A sync is scheduled (bursts of changes share one).
    sync_scheduled: bool,
    /// Whether the informer has listed the pods bound here: before that, an empty `pods`
    /// means "not known yet", and syncing would stop every pod the runtime re-adopted.
    listed: bool,
    /// Follows the pods bound here (with a runtime); dropping it stops the reflector.
    informer: Option<Informer<Pod>>,
    /// Reports on pods (with a runtime): why one waits for its volumes.
    recorder: Option<Recorder>,
    /// uid → why the pod's volumes could not be prepared last time, whether that was
    /// reported (a reason is reported once it is seen twice in a row, then not again), and
    /// when its claims are tried again.
    mount_problems: BTreeMap<String, MountProblem>,
    /// The one timer that wakes the pods waiting to try their claims again: when it fires.
    claims_retry_timer: Option<(Instant, SpawnHandle)>,
    /// Pod starts and container restarts, counted from the reports that reach the API.
    metrics: KubeletMetrics,
}

impl Kubelet {
    pub fn new(
        client: Arc<ApiClient>,
        config: NodeConfig,
        machine: Machine,
        timers: KubeletTimers,
        runtime: Option<Arc<dyn Runtime>>,
    ) -> Self {
        Self {
            client,
            config,
            machine,
            timers,
            registered: false,
            renewing: false,
            updating: false,
            runtime,
            pods: BTreeMap::new(),
            in_flight: BTreeSet::new(),
            reports_in_flight: 0,
            waiting_reports: ReportQueue::default(),
            reported: BTreeMap::new(),
            manifests: None,
            static_pods: BTreeMap::new(),
            manifest_problems: BTreeSet::new(),
            listed: false,
            informer: None,
            desired: BTreeMap::new(),
            sync_scheduled: false,
            recorder: None,
            mount_problems: BTreeMap::new(),
            claims_retry_timer: None,
            metrics: KubeletMetrics::default(),
        }
    }

    /// Counts pod starts and container restarts in `metrics` (a node that serves them).
    pub fn with_metrics(mut self, metrics: KubeletMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Also runs the static pods of this directory's manifests.
    pub fn with_manifests(mut self, dir: std::path::PathBuf) -> Self {
        self.manifests = Some(dir);
        self
    }

    /// Re-reads the static pod manifests.
    fn refresh_static_pods(&mut self) {
        let Some(dir) = &self.manifests else { return };
        let (pods, problems) = static_pods::read_manifests(dir, &self.config.name);
        for problem in problems {
            if self.manifest_problems.insert(problem.clone()) {
                tracing::warn!(%problem, "static pod manifest");
            }
        }
        let pods: BTreeMap<String, serde_json::Value> = pods
            .into_iter()
            .filter_map(|p| Some((p["metadata"]["uid"].as_str()?.to_string(), p)))
            .collect();
        if pods != self.static_pods {
            for uid in self.static_pods.keys() {
                self.desired.remove(uid);
            }
            for (uid, pod) in &pods {
                if let Some(wanted) = desired(pod) {
                    self.desired.insert(uid.clone(), wanted);
                }
            }
            self.static_pods = pods;
        }
    }

    /// Records the API's pod (a mirror pod is shown, not run).
    fn remember(&mut self, uid: String, pod: serde_json::Value) {
        match desired(&pod).filter(|_| !static_pods::is_mirror(&pod)) {
            Some(wanted) => self.desired.insert(uid.clone(), wanted),
            None => self.desired.remove(&uid),
        };
        self.pods.insert(uid, pod);
    }

    /// Syncs soon: changes that arrive together (a burst of watch events, runtime notices)
    /// share one sync.
    fn request_sync(&mut self, ctx: &mut Context<Self>) {
        if self.sync_scheduled {
            return;
        }
        self.sync_scheduled = true;
        ctx.run_later(SYNC_COALESCE, |kubelet, ctx| {
            kubelet.sync_scheduled = false;
            kubelet.sync_pods(ctx);
        });
    }

    /// Every static pod has one current mirror pod; mirrors of nothing, of an older manifest
    /// or being deleted through the API go (and are made again).
    fn sync_mirrors(&mut self, ctx: &mut Context<Self>) {
        let mirrors = self.pods.values().filter(|p| static_pods::is_mirror(p));
        let (stale, wanted) = static_pods::mirror_changes(mirrors, &self.static_pods);
        for mirror in stale {
            self.confirm_deletion(ctx, mirror.namespace, mirror.name, mirror.uid);
        }
        for (uid, mirror) in wanted {
            let key = format!("mirror:{uid}");
            if !self.in_flight.insert(key.clone()) {
                continue;
            }
            let namespace = mirror["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let client = self.client.clone();
            let task = async move { client.create_object("pods", &namespace, &mirror).await };
            ctx.spawn(task.into_actor(self).map(move |outcome, kubelet, _| {
                kubelet.in_flight.remove(&key);
                // The status is reported to the new mirror.
                kubelet.reported.remove(&uid);
                match outcome {
                    Ok(created) => {
                        if let Some(api_uid) = created["metadata"]["uid"].as_str() {
                            kubelet.pods.insert(api_uid.to_string(), created);
                        }
                    }
                    Err(error) if error.reason() == "AlreadyExists" => {}
                    Err(error) => tracing::warn!(%uid, %error, "creating a mirror pod"),
                }
            }));
        }
    }

    /// Brings the runtime in line with the pods bound here.
    fn sync_pods(&mut self, ctx: &mut Context<Self>) {
        let Some(runtime) = self.runtime.clone() else {
            return;
        };
        if !self.listed {
            return;
        }
        let wanted: Vec<_> = self.desired.values().cloned().collect();
        let desired = &self.desired;
        self.mount_problems
            .retain(|uid, _| desired.contains_key(uid));
        self.metrics.retain(|uid| desired.contains_key(uid));
        self.waiting_reports.retain(|uid| desired.contains_key(uid));
        if self.manifests.is_some() {
            self.sync_mirrors(ctx);
        }
        let ops = sync::sync(
            &wanted,
            &runtime.pods(),
            &self.reported,
            &self.config.internal_ip,
        );
        for op in ops {
            match op {
                PodOp::Start(plan) => self.start_pod(ctx, runtime.clone(), *plan),
                PodOp::Report { uid } => self.waiting_reports.push(&uid),
                PodOp::Stop { uid, grace } => {
                    if let Err(error) = runtime.stop(&uid, grace) {
                        tracing::warn!(%uid, %error, "stopping pod");
                    }
                }
                PodOp::ConfirmDeletion {
                    namespace,
                    name,
                    uid,
                } => self.confirm_deletion(ctx, namespace, name, uid),
            }
        }
        self.send_reports(ctx);
        self.arm_claims_retry(ctx);
    }

    /// Reports the waiting pods' statuses, longest waiting first, while there is room.
    fn send_reports(&mut self, ctx: &mut Context<Self>) {
        while self.reports_in_flight < REPORTS_IN_FLIGHT {
            let Some(uid) = self.waiting_reports.pop() else {
                return;
            };
            self.report(ctx, &uid);
        }
    }

    /// Sets the one retry timer for the earliest pod due to try its claims again (a sync
    /// then starts every pod that is due); a later timer already set is replaced.
    fn arm_claims_retry(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let Some(due) = self
            .mount_problems
            .values()
            .filter_map(|p| p.next_attempt)
            .filter(|due| *due > now)
            .min()
        else {
            return;
        };
        if let Some((armed, handle)) = self.claims_retry_timer {
            if armed <= due {
                return;
            }
            ctx.cancel_future(handle);
        }
        let handle = ctx.run_later(due - now, |kubelet, ctx| {
            kubelet.claims_retry_timer = None;
            kubelet.request_sync(ctx);
        });
        self.claims_retry_timer = Some((due, handle));
    }

    /// Starts a pod, first reading the configMaps and secrets its volumes name and, when the
    /// runtime mounts volumes, resolving its claims to their volumes' host paths.
    fn start_pod(&mut self, ctx: &mut Context<Self>, runtime: Arc<dyn Runtime>, plan: PodPlan) {
        let resolve_claims =
            runtime.mounts_volumes() && !claims::claim_volumes(&plan.name, &plan.spec).is_empty();
        if !needs_volume_files(&plan) && !resolve_claims {
            if let Err(error) = runtime.start(&plan, jiff::Timestamp::now()) {
                tracing::warn!(pod = %plan.name, %error, "starting pod");
            }
            return;
        }
        let problem = self.mount_problems.get_mut(&plan.uid);
        if problem
            .as_ref()
            .and_then(|p| p.next_attempt)
            .is_some_and(|due| Instant::now() < due)
        {
            // Its claims were not ready a moment ago: not due yet (the retry timer wakes it).
            return;
        }
        if !self.in_flight.insert(plan.uid.clone()) {
            return;
        }
        if let Some(problem) = problem {
            problem.next_attempt = None;
        }
        let client = self.client.clone();
        let node = resolve_claims.then(|| self.config.name.clone());
        let task = async move {
            let mut plan = plan;
            let prepared = prepare_volumes(&client, &mut plan, node.as_deref()).await;
            (plan, prepared)
        };
        ctx.spawn(
            task.into_actor(self)
                .map(move |(plan, prepared), kubelet, ctx| {
                    kubelet.in_flight.remove(&plan.uid);
                    match prepared {
                        Ok(()) => {
                            kubelet.mount_problems.remove(&plan.uid);
                            if let Err(error) = runtime.start(&plan, jiff::Timestamp::now()) {
                                tracing::warn!(pod = %plan.name, %error, "starting pod");
                            }
                        }
                        // Kubernetes waits for them too (the pod stays ContainerCreating);
                        // claims not ready are tried again after a per-pod backoff.
                        Err(error) => {
                            kubelet.volumes_not_ready(&plan, &error);
                            kubelet.arm_claims_retry(ctx);
                        }
                    }
                }),
        );
    }

    /// The pod's volumes are not ready (a claim not bound yet, a configMap missing): it is
    /// tried again soon. A reason seen twice in a row is logged and reported once
    /// (`FailedMount`, as the volume manager reports it); a claim bound a moment after its
    /// pod (the scheduler binds the pod as the claim is provisioned) is not worth a warning.
    fn volumes_not_ready(&mut self, plan: &PodPlan, error: &KubeletError) {
        let message = format!(
            "Unable to attach or mount volumes: unmounted volumes=[{}]: {error}",
            unmounted_volumes(plan).join(" ")
        );
        let previous = self.mount_problems.remove(&plan.uid);
        let claim_failures = match error {
            KubeletError::Claim(_) => previous.as_ref().map_or(0, |p| p.claim_failures) + 1,
            _ => 0,
        };
        let next_attempt =
            (claim_failures > 0).then(|| Instant::now() + claims_retry(claim_failures));
        let seen_before = previous.as_ref().is_some_and(|p| p.message == message);
        let reported = previous.is_some_and(|p| p.reported) && seen_before;
        self.mount_problems.insert(
            plan.uid.clone(),
            MountProblem {
                message: message.clone(),
                reported: seen_before,
                claim_failures,
                next_attempt,
            },
        );
        if reported {
            tracing::debug!(pod = %plan.name, %error, "volumes still not ready");
            return;
        }
        if !seen_before {
            tracing::debug!(pod = %plan.name, %error, "volumes not ready yet");
            return;
        }
        tracing::warn!(pod = %plan.name, %error, "the pod's volumes are not ready; it waits");
        if let Some(recorder) = &self.recorder {
            let pod = ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                namespace: Some(plan.namespace.clone()),
                name: Some(plan.name.clone()),
                uid: Some(plan.uid.clone()),
                ..ObjectReference::default()
            };
            recorder.record(&pod, EventType::Warning, "FailedMount", message);
        }
    }

    fn report(&mut self, ctx: &mut Context<Self>, uid: &str) {
        if self.reports_in_flight >= REPORTS_IN_FLIGHT {
            return;
        }
        // A static pod's status goes to its mirror (same namespace and name).
        let pod = self.pods.get(uid).or_else(|| self.static_pods.get(uid));
        let (Some(runtime), Some(pod)) = (self.runtime.clone(), pod) else {
            return;
        };
        let Some(running) = runtime.pods().into_iter().find(|p| p.uid == uid) else {
            return;
        };
        let namespace = pod["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
        let patch = keeping_conditions(
            running_status(&running, &self.config.internal_ip, jiff::Timestamp::now()),
            pod,
        );
        let reported = sync::fingerprint(&running, &self.config.internal_ip);
        if !self.in_flight.insert(uid.to_string()) {
            return;
        }
        self.reports_in_flight += 1;
        let shown = pod.clone();
        let client = self.client.clone();
        let uid = uid.to_string();
        let task = async move {
            client
                .patch_object("pods", &namespace, &name, &patch, true)
                .await
        };
        ctx.spawn(task.into_actor(self).map(move |outcome, kubelet, ctx| {
            kubelet.in_flight.remove(&uid);
            kubelet.reports_in_flight -= 1;
            match outcome {
                Ok(_) => {
                    kubelet.metrics.reported(&shown, &running);
                    // Unless the pod went while the report was on its way.
                    if kubelet.pods.contains_key(&uid) || kubelet.static_pods.contains_key(&uid) {
                        kubelet.reported.insert(uid, reported);
                    }
                    // The pod may have changed while this report was on its way (a change
                    // seen then was skipped), and reports may be waiting for room: look
                    // again now, not at the next resync.
                    kubelet.request_sync(ctx);
                }
                // Retried at the resync, as are the reports waiting behind it: a failing
                // API is not asked again every few milliseconds.
                Err(error) => tracing::warn!(%uid, %error, "reporting pod status"),
            }
        }));
    }

    fn confirm_deletion(
        &mut self,
        ctx: &mut Context<Self>,
        namespace: String,
        name: String,
        uid: String,
    ) {
        if !self.in_flight.insert(uid.clone()) {
            return;
        }
        let request = pb::DeleteRequest {
            resource: "pods".into(),
            namespace,
            name,
            grace_period_seconds: Some(0),
            precondition_uid: uid.clone(),
            ..Default::default()
        };
        let client = self.client.clone();
        let task = async move { client.delete_object(request).await };
        ctx.spawn(task.into_actor(self).map(move |outcome, kubelet, _| {
            kubelet.in_flight.remove(&uid);
            match outcome {
                Ok(_) => {
                    kubelet.pods.remove(&uid);
                    kubelet.desired.remove(&uid);
                    kubelet.reported.remove(&uid);
                }
                Err(error) if error.is_not_found() => {
                    kubelet.pods.remove(&uid);
                    kubelet.desired.remove(&uid);
                    kubelet.reported.remove(&uid);
                }
                Err(error) => tracing::warn!(%uid, %error, "confirming pod deletion"),
            }
        }));
    }

    fn register(&mut self, ctx: &mut Context<Self>) {
        let node = node_object(&self.config, &self.machine, jiff::Timestamp::now());
        let task = register(
            self.client.clone(),
            node,
            self.config.clone(),
            self.machine.clone(),
        );
        ctx.spawn(task.into_actor(self).map(|outcome, kubelet, ctx| match outcome {
            Ok(()) => {
                tracing::info!(node = %kubelet.config.name, "node registered");
                kubelet.registered = true;
            }
            Err(error) => {
                tracing::warn!(node = %kubelet.config.name, %error, "registering; retrying in 1 s");
                ctx.run_later(Duration::from_secs(1), |kubelet, ctx| kubelet.register(ctx));
            }
        }));
    }

    fn renew_lease(&mut self, ctx: &mut Context<Self>) {
        if self.renewing {
            return;
        }
        self.renewing = true;
        let duration = i32::try_from(self.timers.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let task = renew(self.client.clone(), self.config.name.clone(), duration);
        ctx.spawn(task.into_actor(self).map(|outcome, kubelet, _| {
            kubelet.renewing = false;
            if let Err(error) = outcome {
                tracing::warn!(node = %kubelet.config.name, %error, "renewing the node lease");
            }
        }));
    }

    fn update_status(&mut self, ctx: &mut Context<Self>) {
        if self.updating || !self.registered {
            return;
        }
        self.updating = true;
        let task = refresh(
            self.client.clone(),
            self.config.clone(),
            self.machine.clone(),
        );
        ctx.spawn(task.into_actor(self).map(|outcome, kubelet, _| {
            kubelet.updating = false;
            if let Err(error) = outcome {
                tracing::warn!(node = %kubelet.config.name, %error, "updating node status");
            }
        }));
    }
}

impl Actor for Kubelet {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.register(ctx);
        self.renew_lease(ctx);
        ctx.run_interval(self.timers.lease_renew, |kubelet, ctx| {
            kubelet.renew_lease(ctx)
        });
        ctx.run_interval(self.timers.status_update, |kubelet, ctx| {
            kubelet.update_status(ctx)
        });
        if let Some(runtime) = &self.runtime {
            let address = ctx.address();
            runtime.set_notify(Arc::new(move || address.do_send(SyncNow)));
            let bound_here =
                Query::all::<Pod>().fields(format!("spec.nodeName={}", self.config.name));
            let informer = Informer::start(self.client.clone(), bound_here, Vec::new());
            ctx.add_message_stream(informer.subscribe());
            self.informer = Some(informer);
            self.recorder = Some(Recorder::new(
                self.client.clone(),
                "kubelet",
                &self.config.name,
            ));
            self.refresh_static_pods();
            ctx.run_interval(self.timers.resync, |kubelet, ctx| {
                kubelet.refresh_static_pods();
                kubelet.sync_pods(ctx)
            });
        }
    }
}

impl Handler<Event<Pod>> for Kubelet {
    type Result = ();

    fn handle(&mut self, event: Event<Pod>, ctx: &mut Context<Self>) {
        let as_json = |pod: &Pod| match serde_json::to_value(pod) {
            Ok(pod) => Some(pod),
            Err(error) => {
                tracing::warn!(%error, "a pod from the informer does not encode");
                None
            }
        };
        match event {
            // A relist's differences arrive as events first: `Synced` means every pod bound
            // here is known.
            Event::Synced => self.listed = true,
            Event::Added(pod) | Event::Updated { new: pod, .. } => {
                let uid = pod.metadata.uid.clone();
                if let (Some(uid), Some(pod)) = (uid, as_json(&pod)) {
                    self.remember(uid, pod);
                }
            }
            Event::Deleted(pod) => {
                if let Some(uid) = &pod.metadata.uid {
                    self.pods.remove(uid);
                    self.desired.remove(uid);
                    self.reported.remove(uid);
                }
            }
        }
        self.request_sync(ctx);
    }
}

/// A runtime saw a pod change: sync now.
#[derive(Message)]
#[rtype(result = "()")]
struct SyncNow;

impl Handler<SyncNow> for Kubelet {
    type Result = ();

    fn handle(&mut self, _: SyncNow, ctx: &mut Context<Self>) {
        self.request_sync(ctx);
    }
}

fn needs_volume_files(plan: &PodPlan) -> bool {
    plan.spec
        .volumes
        .iter()
        .flatten()
        .any(|v| v.config_map.is_some() || v.secret.is_some() || v.projected.is_some())
}

/// Gets the pod's volumes ready: with `claims_on` (this node's name), its claims become
/// their volumes' host paths (claims.rs); then the files of its configMap and secret volumes
/// are read.
async fn prepare_volumes(
    client: &ApiClient,
    plan: &mut PodPlan,
    claims_on: Option<&str>,
) -> Result<(), KubeletError> {
    if let Some(node) = claims_on {
        claims::resolve(client, plan, node).await?;
    }
    if needs_volume_files(plan) {
        plan.volume_files = volume_files::volume_files(client, plan).await?;
    }
    Ok(())
}

/// The volumes the kubelet prepares before a start (claims, configMaps, secrets), by name.
fn unmounted_volumes(plan: &PodPlan) -> Vec<String> {
    plan.spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| {
            v.persistent_volume_claim.is_some()
                || v.ephemeral.is_some()
                || v.config_map.is_some()
                || v.secret.is_some()
                || v.projected.is_some()
        })
        .map(|v| v.name.clone())
        .collect()
}

/// A typed object from the API's JSON.
fn typed<T: serde::de::DeserializeOwned>(
    kind: &'static str,
    json: serde_json::Value,
) -> Result<T, KubeletError> {
    serde_json::from_value(json).map_err(|source| KubeletError::Decode { kind, source })
}

/// A typed object as the API's JSON.
fn json<T: serde::Serialize>(object: &T) -> serde_json::Value {
    serde_json::to_value(object).unwrap_or_default()
}

/// The object, or `None` when it does not exist.
async fn get(
    client: &ApiClient,
    resource: &str,
    namespace: &str,
    name: &str,
) -> Result<Option<serde_json::Value>, ClientError> {
    match client.get_object(resource, namespace, name).await {
        Ok(object) => Ok(Some(object)),
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(error),
    }
}

/// Creates the Node; a Node already there (a restarted kubelet) gets a fresh status.
async fn register(
    client: Arc<ApiClient>,
    node: Node,
    config: NodeConfig,
    machine: Machine,
) -> Result<(), KubeletError> {
    match client.create_object("nodes", "", &json(&node)).await {
        Ok(_) => Ok(()),
        Err(error) if error.reason() == "AlreadyExists" => refresh(client, config, machine).await,
        Err(error) => Err(error.into()),
    }
}

/// One heartbeat: the Lease renewed (created the first time), compare-and-swap.
async fn renew(
    client: Arc<ApiClient>,
    holder: String,
    duration_seconds: i32,
) -> Result<(), KubeletError> {
    let now = jiff::Timestamp::now();
    match get(&client, "leases", NODE_LEASE_NAMESPACE, &holder).await? {
        None => {
            let lease = renewed_lease(None, &holder, duration_seconds, now);
            client
                .create_object("leases", NODE_LEASE_NAMESPACE, &json(&lease))
                .await?;
        }
        Some(current) => {
            let current: Lease = typed("Lease", current)?;
            let lease = renewed_lease(Some(&current), &holder, duration_seconds, now);
            client
                .update_object(
                    "leases",
                    NODE_LEASE_NAMESPACE,
                    &holder,
                    &json(&lease),
                    false,
                )
                .await?;
        }
    }
    Ok(())
}

/// The Node's status brought up to date, compare-and-swap on the Node read.
async fn refresh(
    client: Arc<ApiClient>,
    config: NodeConfig,
    machine: Machine,
) -> Result<(), KubeletError> {
    let Some(current) = get(&client, "nodes", "", &config.name).await? else {
        let node = node_object(&config, &machine, jiff::Timestamp::now());
        client.create_object("nodes", "", &json(&node)).await?;
        return Ok(());
    };
    let mut node: Node = typed("Node", current)?;
    node.status = Some(node_status(
        &config,
        &machine,
        node.status.as_ref(),
        jiff::Timestamp::now(),
    ));
    client
        .update_object("nodes", "", &config.name, &json(&node), true)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_not_ready_are_tried_again_after_a_wait_doubling_to_thirty_seconds() {
        let waits: Vec<u64> = (1..=8).map(|n| claims_retry(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(claims_retry(u32::MAX), CLAIMS_RETRY_MAX);
    }
}
