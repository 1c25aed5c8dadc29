//! The node IPAM controller's shell: any node event asks for one pass over every node; the
//! pass gives each node without a pod range the next free block and writes it under the
//! leader's fence. An assignment written but not yet in the cache still counts as taken, so
//! two nodes never get the same block from a lagging cache.

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
    /// Blocks written, by node, until the cache shows them.
    written: Arc<Mutex<BTreeMap<String, String>>>,
}

impl NodeIpamController {
    pub fn new(client: Arc<ApiClient>, fence: Fence, nodes: Cache<Node>, ranges: Ranges) -> Self {
        Self {
            client,
            fence,
            nodes,
            queue: WorkQueue::default(),
            ranges,
            written: Arc::default(),
        }
    }

    fn written(&self) -> MutexGuard<'_, BTreeMap<String, String>> {
        self.written.lock().unwrap_or_else(|p| p.into_inner())
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
            let mut written = self.written();
            written.retain(|name, _| {
                cached.iter().any(|n| {
                    n.metadata.name.as_deref() == Some(name)
                        && n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_none()
                })
            });
            cached
                .iter()
                .map(|node| {
                    let name = node.metadata.name.as_deref().unwrap_or_default();
                    match written.get(name) {
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
        for assignment in assignments {
            let patch = json!({ "spec": {
                "podCIDR": assignment.pod_cidr,
                "podCIDRs": [assignment.pod_cidr],
            } });
            match api
                .patch_object("nodes", "", &assignment.node, &patch, false)
                .await
            {
                Ok(_) => {
                    tracing::info!(node = %assignment.node, cidr = %assignment.pod_cidr, "pod range allocated");
                    self.written()
                        .insert(assignment.node.clone(), assignment.pod_cidr.clone());
                }
                Err(error) if error.is_not_found() => {}
                Err(error) => return Err(error),
            }
        }
        Ok(None)
    }
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
