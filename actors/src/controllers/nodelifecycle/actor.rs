//! The node lifecycle controller's shell: one pass over the whole cluster (reconcile.rs) at
//! least every `--node-monitor-period` and when a node comes or goes, carried out under the
//! leader's fence: node conditions through the status verb, taints as a whole list, and the
//! evicted pods deleted.
//!
//! ```text
//!  Event<Node> (added, gone, taints changed) ─► Cluster ─► WorkQueue ─► pass ─► conditions,
//!  every monitor period (requeue) ───────────────────────────────────────────► taints, evictions
//! ```
//!
//! Leases and pods are read, not followed: a kubelet renews its Lease every 10 s and pods
//! change all the time, and a pass looks at them all anyway (kube-controller-manager polls
//! the same way). Their caches still gate the first pass, which must not judge a node by a
//! Lease it has not read yet.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use rudder_proto::api::Fence;
use rudder_proto::client::{ApiClient, ClientError};
use serde_json::json;

use super::disruption::Disruption;
use super::reconcile::{reconcile, Observed, Plan, Settings};
use crate::controllers::runtime::{Controller, Subscriptions, Watches};
use crate::controllers::writes;
use crate::informer::{Cache, Event};
use crate::pods::cached::Pod;
use crate::pods::is_assigned;
use crate::queue::WorkQueue;

/// How soon a pass whose writes partly failed looks again.
const RETRY_FAILED: Duration = Duration::from_secs(1);

/// The one key: the controller always looks at the whole cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cluster;

impl fmt::Display for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cluster")
    }
}

#[derive(Clone)]
pub struct Caches {
    pub nodes: Cache<Node>,
    /// The Leases of `kube-node-lease`.
    pub leases: Cache<Lease>,
    pub pods: Cache<Pod>,
}

/// How the controller runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LifecycleSettings {
    pub settings: Settings,
    /// `--node-monitor-period`: the longest between two passes.
    pub monitor_period: Duration,
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        Self {
            settings: Settings::default(),
            monitor_period: Duration::from_secs(5),
        }
    }
}

/// The node lifecycle controller: clones share the caches, the queue and the zones'
/// disruption state.
#[derive(Clone)]
pub struct NodeLifecycleController {
    client: Arc<ApiClient>,
    fence: Fence,
    caches: Caches,
    queue: WorkQueue<Cluster>,
    settings: LifecycleSettings,
    disruption: Arc<Mutex<Disruption>>,
}

impl NodeLifecycleController {
    /// The controller for the leader holding `fence`.
    pub fn new(
        client: Arc<ApiClient>,
        fence: Fence,
        caches: Caches,
        settings: LifecycleSettings,
    ) -> Self {
        Self {
            client,
            fence,
            caches,
            queue: WorkQueue::default(),
            settings,
            disruption: Arc::new(Mutex::new(Disruption::starting_at(jiff::Timestamp::now()))),
        }
    }
}

impl Controller for NodeLifecycleController {
    type Key = Cluster;
    const NAME: &'static str = "nodelifecycle";

    fn queue(&self) -> &WorkQueue<Cluster> {
        &self.queue
    }

    fn watch(&self, caches: &mut Subscriptions<'_, Self>) {
        caches.watch(&self.caches.nodes);
        caches.watch(&self.caches.leases);
        caches.watch(&self.caches.pods);
    }

    async fn sync(&self, _: Cluster) -> Result<Option<Duration>, ClientError> {
        let nodes = self.caches.nodes.list();
        let leases = self.caches.leases.list();
        let pods: Vec<Arc<Pod>> = self
            .caches
            .pods
            .list()
            .into_iter()
            .filter(|p| is_assigned(p))
            .collect();
        let observed = Observed {
            nodes: &nodes,
            leases: &leases,
            pods: &pods,
        };
        let plan = {
            let mut disruption = self.disruption.lock().unwrap_or_else(|p| p.into_inner());
            reconcile(
                observed,
                &mut disruption,
                &self.settings.settings,
                jiff::Timestamp::now(),
            )
        };
        let failed = carry_out(self, &nodes, &plan).await;
        let period = self.settings.monitor_period;
        let mut next = plan.requeue_after.map_or(period, |r| r.min(period));
        if failed > 0 {
            // Some nodes' writes failed (most likely a conflict with their kubelet's own
            // status report): the others were written; look again soon.
            next = next.min(RETRY_FAILED);
        }
        Ok(Some(next))
    }
}

/// A node added or gone, or its taints changed by someone else: look now rather than at
/// the next period. The first Synced starts the passes.
impl Watches<Node> for NodeLifecycleController {
    fn on_event(&self, event: &Event<Node>) {
        let relevant = match event {
            Event::Added(_) | Event::Deleted(_) | Event::Synced => true,
            Event::Updated { old, new } => {
                old.spec.as_ref().map(|s| &s.taints) != new.spec.as_ref().map(|s| &s.taints)
            }
        };
        if relevant {
            self.queue.add(Cluster);
        }
    }
}

impl Watches<Lease> for NodeLifecycleController {
    fn on_event(&self, _: &Event<Lease>) {}
}

impl Watches<Pod> for NodeLifecycleController {
    fn on_event(&self, _: &Event<Pod>) {}
}

/// The plan's writes, each node's on its own: conditions and taints at the resourceVersion
/// the pass read (a kubelet's report or an operator's taint in between makes them fail
/// rather than be overwritten), then the evictions. Returns how many writes failed; a
/// failure stops nothing else.
async fn carry_out(
    controller: &NodeLifecycleController,
    nodes: &[Arc<Node>],
    plan: &Plan,
) -> usize {
    let api = controller.client.fenced(&controller.fence);
    // The version each node's next write expects: as the pass read it, then as our own
    // conditions write left it.
    let mut versions: std::collections::BTreeMap<String, Option<String>> = nodes
        .iter()
        .map(|n| {
            let name = n.metadata.name.clone().unwrap_or_default();
            (name, n.metadata.resource_version.clone())
        })
        .collect();
    let mut failed = 0;
    let mut report = |node: &str, what: &str, error: ClientError| {
        if !error.is_not_found() {
            failed += 1;
            tracing::info!(%node, %error, "writing the node's {what}; looking again soon");
        }
    };
    for update in &plan.conditions {
        let patch = json!({
            "metadata": { "resourceVersion": versions.get(&update.node).cloned().flatten() },
            "status": { "conditions": update.conditions },
        });
        match api
            .patch_object("nodes", "", &update.node, &patch, true)
            .await
        {
            Ok(written) => {
                let version = written["metadata"]["resourceVersion"]
                    .as_str()
                    .map(String::from);
                versions.insert(update.node.clone(), version);
            }
            Err(error) => report(&update.node, "conditions", error),
        }
    }
    for update in &plan.taints {
        tracing::info!(node = %update.node, taints = ?update.taints.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect::<Vec<_>>(), "node taints");
        let patch = json!({
            "metadata": { "resourceVersion": versions.get(&update.node).cloned().flatten() },
            "spec": { "taints": update.taints },
        });
        if let Err(error) = api
            .patch_object("nodes", "", &update.node, &patch, false)
            .await
        {
            report(&update.node, "taints", error);
        }
    }
    let mut by_namespace: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for pod in &plan.evict {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        tracing::info!(pod = %format!("{namespace}/{name}"), node = ?pod.spec.as_ref().and_then(|s| s.node_name.clone()), "evicting: its node is tainted NoExecute");
        by_namespace.entry(namespace).or_default().push(name);
    }
    for (namespace, names) in by_namespace {
        let deleted = writes::delete_all(&api, "pods", &namespace, &names).await;
        if let Some(error) = deleted.error {
            report(&namespace, "pods' evictions", error);
        }
    }
    failed
}
