//! PodGC's shell: one pass over the whole cluster (reconcile.rs) every `gcCheckPeriod`
//! (20 s), when a quarantine ends, and when an event makes work likely (a node deleted, a
//! pod terminating without a node, finished pods past the threshold). Nodes whose quarantine
//! ended (or that the cache saw deleted) are read live first; then each pod is marked Failed
//! if it is not finished and force-deleted (grace 0, at its uid), all under the leader's
//! fence.
//!
//! ```text
//!  Event<Node>, Event<Pod> (relevant) ─► Cluster ─► WorkQueue ─► pass ─► GET nodes ─► orphans
//!  every period / quarantine end (requeue) ──────────────────────────► status Failed, delete
//! ```
//!
//! A write that fails is tried again at the next pass, as Kubernetes does; a refused fence
//! ends the pass as the lost lease it is.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use rudder_proto::api::{DeleteRequest, Fence};
use rudder_proto::client::{ApiClient, ClientError, Fenced};
use serde_json::json;

use super::reconcile::{
    orphans, reconcile, Deletion, Observed, Quarantine, Settings, OUT_OF_SERVICE,
};
use crate::controllers::nodelifecycle::actor::Cluster;
use crate::controllers::runtime::{Controller, Subscriptions, Watches};
use crate::informer::{Cache, Event};
use crate::pods::cached::Pod;
use crate::pods::is_terminal;
use crate::queue::WorkQueue;

/// kube-controller-manager's `gcCheckPeriod`: the longest between two passes.
pub const GC_CHECK_PERIOD: Duration = Duration::from_secs(20);
/// Pods deleted at a time.
const PARALLEL_DELETES: usize = 16;

#[derive(Clone)]
pub struct Caches {
    pub pods: Cache<Pod>,
    pub nodes: Cache<Node>,
}

/// How the controller runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodGcSettings {
    pub settings: Settings,
    /// The longest between two passes.
    pub period: Duration,
}

impl Default for PodGcSettings {
    fn default() -> Self {
        Self {
            settings: Settings::default(),
            period: GC_CHECK_PERIOD,
        }
    }
}

/// PodGC: clones share the caches, the queue and the quarantine of missing nodes.
#[derive(Clone)]
pub struct PodGcController {
    client: Arc<ApiClient>,
    fence: Fence,
    caches: Caches,
    queue: WorkQueue<Cluster>,
    settings: PodGcSettings,
    quarantine: Arc<Mutex<Quarantine>>,
}

impl PodGcController {
    /// The controller for the leader holding `fence`.
    pub fn new(
        client: Arc<ApiClient>,
        fence: Fence,
        caches: Caches,
        settings: PodGcSettings,
    ) -> Self {
        Self {
            client,
            fence,
            caches,
            queue: WorkQueue::default(),
            settings,
            quarantine: Arc::default(),
        }
    }

    fn quarantine(&self) -> std::sync::MutexGuard<'_, Quarantine> {
        self.quarantine.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads each node live: those that do not exist are returned; those that do leave
    /// quarantine (the cache is behind). A read that fails decides nothing: the node stays
    /// in quarantine and is read again at the next pass.
    async fn confirm_gone(&self, nodes: &[String]) -> BTreeSet<String> {
        let mut gone = BTreeSet::new();
        for node in nodes {
            match self.client.get_object("nodes", "", node).await {
                Err(error) if error.is_not_found() => {
                    gone.insert(node.clone());
                }
                Ok(_) => {
                    tracing::debug!(%node, "the node exists; the node cache is behind");
                    self.quarantine().release(node);
                }
                Err(error) => {
                    tracing::warn!(
                        %node,
                        %error,
                        "reading a node missing from the cache; trying again at the next pass"
                    );
                }
            }
        }
        gone
    }
}

impl Controller for PodGcController {
    type Key = Cluster;
    const NAME: &'static str = "podgc";

    fn queue(&self) -> &WorkQueue<Cluster> {
        &self.queue
    }

    fn watch(&self, caches: &mut Subscriptions<'_, Self>) {
        caches.watch(&self.caches.pods);
        caches.watch(&self.caches.nodes);
    }

    async fn sync(&self, _: Cluster) -> Result<Option<Duration>, ClientError> {
        let pods = self.caches.pods.list();
        let nodes = self.caches.nodes.list();
        let now = jiff::Timestamp::now();
        let mut plan = {
            let mut quarantine = self.quarantine();
            let observed = Observed {
                pods: &pods,
                nodes: &nodes,
            };
            reconcile(observed, &mut quarantine, &self.settings.settings, now)
        };
        if !plan.verify.is_empty() {
            let gone = self.confirm_gone(&plan.verify).await;
            let orphaned = orphans(&pods, &gone, &plan.delete, now);
            plan.delete.extend(orphaned);
        }
        let api = self.client.fenced(&self.fence);
        let outcomes: Vec<Result<(), ClientError>> = futures::stream::iter(&plan.delete)
            .map(|deletion| force_delete(api, deletion))
            .buffer_unordered(PARALLEL_DELETES)
            .collect()
            .await;
        let mut failed = 0;
        for error in outcomes.into_iter().filter_map(Result::err) {
            if error.is_fence_refused() {
                return Err(error);
            }
            failed += 1;
            if failed == 1 {
                tracing::warn!(%error, "force-deleting pods; trying again at the next pass");
            }
        }
        let period = self.settings.period;
        Ok(Some(plan.requeue_after.map_or(period, |r| r.min(period))))
    }
}

/// Marks the pod Failed unless it is finished (at the resourceVersion the pass read: a pod
/// that changed meanwhile waits for the next pass), then deletes it at once, at its uid (a
/// pod of the same name created since is another pod). A pod already gone, or replaced,
/// is done.
async fn force_delete(api: Fenced<'_>, deletion: &Deletion) -> Result<(), ClientError> {
    let meta = &deletion.pod.metadata;
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let name = meta.name.as_deref().unwrap_or_default();
    if let Some(mark) = &deletion.mark_failed {
        let mut status = json!({ "phase": "Failed" });
        if let Some(conditions) = &mark.conditions {
            status["conditions"] = json!(conditions);
        }
        let patch = json!({
            "metadata": { "resourceVersion": meta.resource_version },
            "status": status,
        });
        match api
            .patch_object("pods", namespace, name, &patch, true)
            .await
        {
            Ok(_) => {}
            Err(error) if error.is_not_found() => return Ok(()),
            Err(error) => return Err(error),
        }
    }
    let request = DeleteRequest {
        resource: "pods".into(),
        namespace: namespace.into(),
        name: name.into(),
        grace_period_seconds: Some(0),
        precondition_uid: meta.uid.clone().unwrap_or_default(),
        ..Default::default()
    };
    match api.delete_object(request).await {
        Ok(_) => {
            tracing::info!(
                pod = %format!("{namespace}/{name}"),
                reason = deletion.reason.as_str(),
                "PodGC force-deleted the pod"
            );
            Ok(())
        }
        Err(error) if error.is_not_found() || error.reason() == "Conflict" => Ok(()),
        Err(error) => Err(error),
    }
}

/// A node deleted may leave orphans: the cache saw it go, so its pods need no quarantine
/// (the live read still decides) and a pass runs now; a node tainted out-of-service may
/// hold terminating pods. The first Synced starts the passes.
impl Watches<Node> for PodGcController {
    fn on_event(&self, event: &Event<Node>) {
        if let Event::Deleted(node) = event {
            if let Some(name) = node.metadata.name.as_deref() {
                self.quarantine().node_deleted(name, jiff::Timestamp::now());
            }
        }
        let relevant = match event {
            Event::Deleted(_) | Event::Synced => true,
            Event::Added(node) => out_of_service(node),
            Event::Updated { old, new } => !out_of_service(old) && out_of_service(new),
        };
        if relevant {
            self.queue.add(Cluster);
        }
    }
}

/// A pod that is terminating without a node, or one more finished pod when there may be
/// more than the threshold keeps, is worth a pass now; everything else waits for the
/// period.
impl Watches<Pod> for PodGcController {
    fn on_event(&self, event: &Event<Pod>) {
        let threshold = self.settings.settings.terminated_pod_gc_threshold;
        let relevant = match event {
            Event::Synced => true,
            Event::Deleted(_) => false,
            Event::Added(pod) => {
                is_unscheduled_terminating(pod) || (is_terminal(pod) && self.past(threshold))
            }
            Event::Updated { old, new } => {
                (is_unscheduled_terminating(new) && !is_unscheduled_terminating(old))
                    || (is_terminal(new) && !is_terminal(old) && self.past(threshold))
            }
        };
        if relevant {
            self.queue.add(Cluster);
        }
    }
}

impl PodGcController {
    /// Whether the cache holds more pods than `threshold` (only then can finished ones be
    /// too many); a threshold of 0 keeps every finished pod.
    fn past(&self, threshold: u32) -> bool {
        threshold > 0 && self.caches.pods.len() > usize::try_from(threshold).unwrap_or(usize::MAX)
    }
}

fn out_of_service(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|taints| taints.iter().any(|t| t.key == OUT_OF_SERVICE))
}

fn is_unscheduled_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        && pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_none_or(str::is_empty)
}
