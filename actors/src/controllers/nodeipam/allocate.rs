//! Pod CIDR allocation (kube-controller-manager's node IPAM range allocator): a node without
//! `spec.podCIDR` gets the lowest block of `--cluster-cidr` (a /24 by default) that no node
//! holds. IPv4 only. Pure.
//!
//! ```text
//!  cluster 10.244.0.0/16, node size /24 ─► blocks 10.244.0.0/24 … 10.244.255.0/24
//!  taken = every block overlapping a node's podCIDR or podCIDRs
//!  nodes without one, by name ─► the lowest free block each, or RangeFull
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
pub use rudder_proto::objects::cidr::{CidrError, Ipv4Cidr as Cidr};

/// The size of each node's block unless configured (`--node-cidr-mask-size`).
pub const DEFAULT_NODE_MASK: u8 = 24;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodCidrError {
    #[error("the cluster CIDR {0}")]
    InvalidClusterCidr(#[from] CidrError),
    #[error(
        "node blocks of /{node_mask} do not fit the cluster CIDR {cluster_cidr} \
         (--node-cidr-mask-size must be between the cluster's prefix and 32)"
    )]
    NodeMaskOutOfRange { cluster_cidr: String, node_mask: u8 },
    #[error(
        "the cluster CIDR {cluster_cidr} has no free /{node_mask} left for node {node}; \
         widen --cluster-cidr or remove nodes"
    )]
    RangeFull {
        cluster_cidr: String,
        node_mask: u8,
        node: String,
    },
}

/// One node's new block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub node: String,
    /// The `spec.podCIDR` (and `spec.podCIDRs[0]`) to set.
    pub pod_cidr: String,
}

/// Blocks for the nodes that have none; `RangeFull` names the first node left without one
/// (those before it keep their assignment).
pub fn allocate(
    cluster: Cidr,
    node_mask: u8,
    nodes: &[Arc<Node>],
) -> (Vec<Assignment>, Option<PodCidrError>) {
    if node_mask < cluster.prefix || node_mask > 32 {
        let error = PodCidrError::NodeMaskOutOfRange {
            cluster_cidr: cluster.to_string(),
            node_mask,
        };
        return (Vec::new(), Some(error));
    }
    let shift = 32 - u32::from(node_mask);
    let block_of = |addr: u32| u64::from((addr - cluster.base).checked_shr(shift).unwrap_or(0));
    let blocks = 1u64 << (node_mask - cluster.prefix);
    let mut taken = BTreeSet::new();
    for held in nodes.iter().flat_map(|n| held_cidrs(n)) {
        let (first, last) = (held.base.max(cluster.base), held.last().min(cluster.last()));
        if first <= last {
            taken.extend(block_of(first)..=block_of(last));
        }
    }
    let mut waiting: Vec<&str> = nodes
        .iter()
        .filter(|n| n.metadata.deletion_timestamp.is_none() && held_cidrs(n).is_empty())
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    waiting.sort_unstable();
    let mut assignments = Vec::new();
    let mut next = 0u64;
    for node in waiting {
        while taken.contains(&next) {
            next += 1;
        }
        if next >= blocks {
            let error = PodCidrError::RangeFull {
                cluster_cidr: cluster.to_string(),
                node_mask,
                node: node.to_string(),
            };
            return (assignments, Some(error));
        }
        let offset = u32::try_from(next << shift).unwrap_or(0);
        let block = Cidr {
            base: cluster.base + offset,
            prefix: node_mask,
        };
        taken.insert(next);
        assignments.push(Assignment {
            node: node.to_string(),
            pod_cidr: block.to_string(),
        });
    }
    (assignments, None)
}

/// The node's podCIDR and podCIDRs that parse as IPv4.
fn held_cidrs(node: &Node) -> Vec<Cidr> {
    let Some(spec) = node.spec.as_ref() else {
        return Vec::new();
    };
    spec.pod_cidr
        .iter()
        .chain(spec.pod_cidrs.iter().flatten())
        .filter_map(|text| Cidr::parse(text).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cidr: Option<&str>) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({ "metadata": { "name": name },
                "spec": { "podCIDR": cidr } }))
            .unwrap(),
        )
    }

    fn cluster(text: &str) -> Cidr {
        Cidr::parse(text).unwrap()
    }

    fn given(assignments: &[Assignment]) -> Vec<(&str, &str)> {
        assignments
            .iter()
            .map(|a| (a.node.as_str(), a.pod_cidr.as_str()))
            .collect()
    }

    #[test]
    fn nodes_without_a_block_get_the_lowest_free_ones() {
        let nodes = [
            node("b", None),
            node("held", Some("10.244.0.0/24")),
            node("a", None),
            node("far", Some("10.244.2.0/24")),
        ];
        let (assigned, error) = allocate(cluster("10.244.0.0/16"), 24, &nodes);
        assert_eq!(error, None);
        assert_eq!(
            given(&assigned),
            [("a", "10.244.1.0/24"), ("b", "10.244.3.0/24")]
        );
    }

    #[test]
    fn a_wider_block_held_by_a_node_takes_every_block_it_covers() {
        let nodes = [node("big", Some("10.244.0.0/23")), node("new", None)];
        let (assigned, _) = allocate(cluster("10.244.0.0/16"), 24, &nodes);
        assert_eq!(given(&assigned), [("new", "10.244.2.0/24")]);
        let outside = [node("odd", Some("192.168.0.0/24")), node("new", None)];
        let (assigned, _) = allocate(cluster("10.244.0.0/16"), 24, &outside);
        assert_eq!(given(&assigned), [("new", "10.244.0.0/24")]);
    }

    #[test]
    fn a_full_range_is_an_error_that_names_it() {
        let nodes = [
            node("a", None),
            node("b", None),
            node("c", None),
            node("held", Some("10.244.0.0/24")),
        ];
        let (assigned, error) = allocate(cluster("10.244.0.0/23"), 24, &nodes);
        assert_eq!(given(&assigned), [("a", "10.244.1.0/24")]);
        let error = error.unwrap();
        assert_eq!(
            error.to_string(),
            "the cluster CIDR 10.244.0.0/23 has no free /24 left for node b; widen \
             --cluster-cidr or remove nodes"
        );
    }

    #[test]
    fn cluster_cidrs_and_masks_are_checked() {
        assert_eq!(cluster("10.244.7.9/16").to_string(), "10.244.0.0/16");
        let error = PodCidrError::from(Cidr::parse("10.244.0.0").unwrap_err());
        assert_eq!(
            error.to_string(),
            "the cluster CIDR \"10.244.0.0\" is not an IPv4 CIDR like 10.244.0.0/16: no /prefix"
        );
        assert!(Cidr::parse("fd00::/64").is_err());
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        let (_, error) = allocate(cluster("10.244.0.0/16"), 8, &[node("a", None)]);
        assert!(matches!(
            error,
            Some(PodCidrError::NodeMaskOutOfRange { .. })
        ));
        let (assigned, _) = allocate(cluster("0.0.0.0/0"), 32, &[node("a", None)]);
        assert_eq!(given(&assigned), [("a", "0.0.0.0/32")]);
    }
}
