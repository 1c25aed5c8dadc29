//! The node IPAM controller's shell: any node event asks for one pass over every node; the
//! pass gives each node without a pod range the next free block and writes it under the
//! leader's fence. A block is reserved for its node (by uid) before the write is sent and
//! stays taken until the cache shows it on that node, or the node is gone, or the write
//! surely failed: a write whose outcome is unknown (a timeout) keeps its block, so two nodes
//! never get the same one from a lagging cache.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use rudder_proto::api::Fence;
use rudder_proto::client::{ApiClient, ClientError};
use serde_json::json;

use super::allocate::{allocate, Cidr};
use crate::controllers::nodelifecycle::actor::Cluster;
use crate::controllers::runtime::{Controller, Subscriptions, Watches};
use crate::informer::{Cache, Event};
use crate::queue::WorkQueue;

/// The range nodes' blocks come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ranges {
    /// `--cluster-cidr`.
    pub cluster: Cidr,
    /// `--node-cidr-mask-size`.
    pub node_mask: u8,
}

#[derive(Clone)]
pub struct NodeIpamController {
    client: Arc<ApiClient>,
    fence: Fence,
    nodes: Cache<Node>,
    queue: WorkQueue<Cluster>,
    ranges: Ranges,
    /// Blocks reserved, by node uid, until the cache shows them on that node.
    reserved: Arc<Mutex<BTreeMap<String, String>>>,
}

impl NodeIpamController {
    pub fn new(client: Arc<ApiClient>, fence: Fence, nodes: Cache<Node>, ranges: Ranges) -> Self {
        Self {
            client,
            fence,
            nodes,
            queue: WorkQueue::default(),
            ranges,
            reserved: Arc::default(),
        }
    }

    fn reserved(&self) -> MutexGuard<'_, BTreeMap<String, String>> {
        self.reserved.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Controller for NodeIpamController {
    type Key = Cluster;
    const NAME: &'static str = "nodeipam";

    fn queue(&self) -> &WorkQueue<Cluster> {
        &self.queue
    }

    fn watch(&self, caches: &mut Subscriptions<'_, Self>) {
        caches.watch(&self.nodes);
    }

    async fn sync(&self, _: Cluster) -> Result<Option<Duration>, ClientError> {
        let cached = self.nodes.list();
        // What the cache does not show yet is laid over it; what it shows (or a node gone)
        // needs no more holding.
        let nodes: Vec<Arc<Node>> = {
            let mut reserved = self.reserved();
            reserved.retain(|uid, _| {
                cached.iter().any(|n| {
                    n.metadata.uid.as_deref() == Some(uid)
                        && n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_none()
                })
            });
            cached
                .iter()
                .map(|node| {
                    let uid = node.metadata.uid.as_deref().unwrap_or_default();
                    match reserved.get(uid) {
                        Some(cidr) => {
                            let mut node = Node::clone(node);
                            node.spec.get_or_insert_with(Default::default).pod_cidr =
                                Some(cidr.clone());
                            Arc::new(node)
                        }
                        None => node.clone(),
                    }
                })
                .collect()
        };
        let (assignments, error) = allocate(self.ranges.cluster, self.ranges.node_mask, &nodes);
        if let Some(error) = error {
            tracing::warn!(%error, "allocating pod ranges");
        }
        let api = self.client.fenced(&self.fence);
        let mut failed = None;
        for assignment in assignments {
            let Some(node) = nodes
                .iter()
                .find(|n| n.metadata.name.as_deref() == Some(assignment.node.as_str()))
            else {
                continue;
            };
            let uid = node.metadata.uid.clone().unwrap_or_default();
            self.reserved()
                .insert(uid.clone(), assignment.pod_cidr.clone());
            // At the node's uid: a node deleted and registered again under the name is
            // another node, with a pass of its own.
            let patch = json!({
                "metadata": { "uid": uid },
                "spec": { "podCIDR": assignment.pod_cidr, "podCIDRs": [assignment.pod_cidr] },
            });
            match api
                .patch_object("nodes", "", &assignment.node, &patch, false)
                .await
            {
                Ok(_) => {
                    tracing::info!(node = %assignment.node, cidr = %assignment.pod_cidr, "pod range allocated");
                }
                Err(error) => {
                    if surely_not_written(&error) {
                        self.reserved().remove(&uid);
                    }
                    if !error.is_not_found() {
                        tracing::warn!(node = %assignment.node, %error, "writing the pod range");
                        failed.get_or_insert(error);
                    }
                }
            }
        }
        failed.map_or(Ok(None), Err)
    }
}

/// Whether a failed write certainly did not land (refused by the API), so its block is free
/// again; a timeout or a lost connection may have landed.
fn surely_not_written(error: &ClientError) -> bool {
    error.is_not_found()
        || error.is_fence_refused()
        || matches!(error.reason(), "Invalid" | "Conflict" | "BadRequest")
}

impl Watches<Node> for NodeIpamController {
    fn on_event(&self, event: &Event<Node>) {
        let needs_range = event
            .latest()
            .is_none_or(|n| n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_none());
        if needs_range || matches!(event, Event::Deleted(_)) {
            self.queue.add(Cluster);
        }
    }
}
