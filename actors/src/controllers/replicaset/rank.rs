//! Which pods a shrinking ReplicaSet deletes first (Kubernetes' `ActivePodsWithRanks`): the
//! ones whose loss hurts least. Pure.
//!
//! In order: not yet on a node; Pending before Unknown before Running; not ready; on a node
//! crowded with the set's pods; ready for a shorter time; restarted more; created later.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::pods::cached::Pod;
use crate::pods::{is_assigned, phase, ready_since, restarts};

/// `pods` in the order they should be deleted, most expendable first.
pub fn deletion_order(pods: &[Arc<Pod>]) -> Vec<Arc<Pod>> {
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for pod in pods {
        *per_node.entry(node_of(pod)).or_default() += 1;
    }
    let mut ranked: Vec<(Rank, &Arc<Pod>)> = pods
        .iter()
        .map(|pod| (Rank::of(pod, per_node[node_of(pod)]), pod))
        .collect();
    ranked.sort_by(|a, b| a.0.cmp(&b.0));
    ranked.into_iter().map(|(_, pod)| pod.clone()).collect()
}

fn node_of(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// Smaller ranks go first.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    assigned: bool,
    phase: u8,
    ready: bool,
    /// More of the set's pods on the same node first.
    crowding: Reverse<usize>,
    /// Ready more recently first.
    ready_since: Reverse<Option<jiff::Timestamp>>,
    restarts: Reverse<i32>,
    /// Newer first.
    created: Reverse<Option<jiff::Timestamp>>,
    name: Reverse<String>,
}

impl Rank {
    fn of(pod: &Pod, crowding: usize) -> Self {
        let phase = match phase(pod) {
            "Pending" => 0,
            "Unknown" | "" => 1,
            _ => 2,
        };
        let ready = ready_since(pod);
        Self {
            assigned: is_assigned(pod),
            phase,
            ready: ready.is_some(),
            crowding: Reverse(if is_assigned(pod) { crowding } else { 0 }),
            ready_since: Reverse(ready),
            restarts: Reverse(restarts(pod)),
            created: Reverse(pod.metadata.creation_timestamp.as_ref().map(|t| t.0)),
            name: Reverse(pod.metadata.name.clone().unwrap_or_default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;

    use super::*;
    use crate::pods::fixtures::{pod, ready_pod};

    fn names(pods: &[Arc<Pod>]) -> Vec<String> {
        pods.iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect()
    }

    #[test]
    fn unscheduled_then_pending_then_unready_then_newest_go_first() {
        let unscheduled = pod(
            serde_json::json!({ "metadata": { "name": "unscheduled" }, "status": { "phase": "Pending" } }),
        );
        let pending = pod(
            serde_json::json!({ "metadata": { "name": "pending" }, "spec": { "nodeName": "n1", "containers": [] }, "status": { "phase": "Pending" } }),
        );
        let unready = pod(
            serde_json::json!({ "metadata": { "name": "unready" }, "spec": { "nodeName": "n1", "containers": [] }, "status": { "phase": "Running" } }),
        );
        let old = ready_pod("old", "2024-01-01T00:00:00Z");
        let new = ready_pod("new", "2024-01-02T00:00:00Z");
        let pods: Vec<Arc<Pod>> = [old, new, unready, pending, unscheduled]
            .into_iter()
            .map(Arc::new)
            .collect();
        assert_eq!(
            names(&deletion_order(&pods)),
            ["unscheduled", "pending", "unready", "new", "old"]
        );
    }

    #[test]
    fn among_equals_the_one_restarted_more_goes_first() {
        let calm = ready_pod("calm", "2024-01-01T00:00:00Z");
        let mut crashy = ready_pod("crashy", "2024-01-01T00:00:00Z");
        crashy.status.as_mut().unwrap().container_statuses =
            Some(vec![serde_json::from_value(serde_json::json!({
                "name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": 4
            }))
            .unwrap()]);
        assert_eq!(
            Rank::of(&crashy, 1).cmp(&Rank::of(&calm, 1)),
            Ordering::Less
        );
    }

    #[test]
    fn pods_on_a_crowded_node_go_first() {
        let mut a = ready_pod("a", "2024-01-01T00:00:00Z");
        let mut b = ready_pod("b", "2024-01-01T00:00:00Z");
        let mut c = ready_pod("c", "2024-01-01T00:00:00Z");
        for (p, node) in [(&mut a, "n1"), (&mut b, "n2"), (&mut c, "n2")] {
            p.spec.as_mut().unwrap().node_name = Some(node.into());
        }
        let pods: Vec<Arc<Pod>> = [a, b, c].into_iter().map(Arc::new).collect();
        assert_eq!(names(&deletion_order(&pods))[2], "a");
    }
}
