//! The per-node scores of kube-scheduler's default profile, each 0..=100 once normalized as
//! kube-scheduler normalizes it, and the profile's weights. Pure. Topology spreading and
//! inter-pod affinity score in [`super::spread`] and [`super::interpod`]; [`super::decide`]
//! adds everything up.
//!
//! | plugin                          | raw score per node                      | normalized   | w |
//! |---------------------------------|-----------------------------------------|--------------|---|
//! | TaintToleration                 | untolerated PreferNoSchedule taints     | reversed     | 3 |
//! | NodeAffinity                    | Σ weights of matching preferred terms   | ·100 / max   | 2 |
//! | NodeResourcesFit LeastAllocated | free share of cpu and memory (non-zero) | already      | 1 |
//! | PodTopologySpread               | see `spread`                            | fewer best   | 2 |
//! | InterPodAffinity                | see `interpod`                          | min..max     | 2 |
//! | NodeResourcesBalancedAllocation | 1 − spread of cpu and memory fractions  | already      | 1 |
//! | ImageLocality                   | sizes of the pod's images on the node   | already      | 1 |

use k8s_openapi::api::core::v1::{NodeSelector, Toleration};

use super::resources::Resources;
use super::snapshot::{NodeInfo, Snapshot};
use crate::pods::cached::PodSpec;
use crate::scheduling::node_affinity::selector_matches;
use crate::scheduling::taints::{is_tolerated, PREFER_NO_SCHEDULE};

/// The best score a plugin gives a node (`framework.MaxNodeScore`).
pub const MAX_NODE_SCORE: i64 = 100;

const MB: i64 = 1024 * 1024;
/// Below this much of its images on a node, ImageLocality gives nothing.
const MIN_IMAGE_THRESHOLD: i64 = 23 * MB;
/// Per container, above this much ImageLocality gives no more.
const MAX_CONTAINER_IMAGE_THRESHOLD: i64 = 1000 * MB;

/// How much each plugin's score counts; the default is kube-scheduler's default profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weights {
    pub taint_toleration: i64,
    pub node_affinity: i64,
    pub topology_spread: i64,
    pub inter_pod_affinity: i64,
    pub resources_fit: i64,
    pub balanced_allocation: i64,
    pub image_locality: i64,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            taint_toleration: 3,
            node_affinity: 2,
            topology_spread: 2,
            inter_pod_affinity: 2,
            resources_fit: 1,
            balanced_allocation: 1,
            image_locality: 1,
        }
    }
}

/// Scales scores so the highest is 100, or, `reverse`, the highest 0 and zero 100
/// (`helper.DefaultNormalizeScore`). All zero stays zero, or becomes 100 when reversed.
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().fold(0, i64::max);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for score in scores.iter_mut() {
        let scaled = MAX_NODE_SCORE * *score / max;
        *score = if reverse {
            MAX_NODE_SCORE - scaled
        } else {
            scaled
        };
    }
}

/// The pod's tolerations that may tolerate PreferNoSchedule taints (effect empty or that).
pub fn prefer_no_schedule_tolerations(tolerations: &[Toleration]) -> Vec<Toleration> {
    tolerations
        .iter()
        .filter(|t| {
            let effect = t.effect.as_deref().unwrap_or("");
            effect.is_empty() || effect == PREFER_NO_SCHEDULE
        })
        .cloned()
        .collect()
}

/// TaintToleration's raw score: the node's PreferNoSchedule taints none of `tolerations`
/// tolerates (fewer is better; normalize reversed).
pub fn intolerable_taints(node: &NodeInfo, tolerations: &[Toleration]) -> i64 {
    node.taints()
        .iter()
        .filter(|t| t.effect == PREFER_NO_SCHEDULE && !is_tolerated(t, tolerations))
        .count() as i64
}

/// The pod's preferred node affinity terms with a weight, each as a one-term selector.
pub fn preferred_node_terms(spec: &PodSpec) -> Vec<(i64, NodeSelector)> {
    spec.affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .filter(|term| term.weight != 0)
        .map(|term| {
            let selector = NodeSelector {
                node_selector_terms: vec![term.preference.clone()],
            };
            (i64::from(term.weight), selector)
        })
        .collect()
}

/// NodeAffinity's raw score: the weights of the preferred terms the node matches (an empty or
/// invalid term matches none).
pub fn node_affinity_score(terms: &[(i64, NodeSelector)], node: &NodeInfo) -> i64 {
    terms
        .iter()
        .filter(|(_, selector)| selector_matches(selector, node.node()))
        .map(|(weight, _)| weight)
        .sum()
}

/// NodeResourcesFit's LeastAllocated score: the mean free share of cpu and memory after the
/// pod, by non-zero requests (`pod` from `resources::non_zero_requests`). A resource the node
/// has none of is left out.
pub fn least_allocated(pod: &Resources, node: &NodeInfo) -> i64 {
    let used = node.non_zero_requested();
    let allocatable = node.allocatable();
    let pairs = [
        (
            allocatable.milli_cpu,
            used.milli_cpu.saturating_add(pod.milli_cpu),
        ),
        (allocatable.memory, used.memory.saturating_add(pod.memory)),
    ];
    let mut sum = 0;
    let mut weights = 0;
    for (capacity, requested) in pairs {
        if capacity == 0 {
            continue;
        }
        sum += least_requested(requested, capacity);
        weights += 1;
    }
    if weights == 0 {
        0
    } else {
        sum / weights
    }
}

fn least_requested(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    let free = i128::from(capacity - requested) * i128::from(MAX_NODE_SCORE);
    (free / i128::from(capacity)) as i64
}

/// NodeResourcesBalancedAllocation's score: 100 · (1 − the standard deviation of the cpu and
/// memory fractions requested after the pod), by actual requests (`pod` from
/// `resources::pod_requests`). A pod requesting neither scores 0 everywhere (kube-scheduler
/// skips it, so that such pods do not pile onto one node).
pub fn balanced_allocation(pod: &Resources, node: &NodeInfo) -> i64 {
    if pod.milli_cpu == 0 && pod.memory == 0 {
        return 0;
    }
    let used = node.requested();
    let allocatable = node.allocatable();
    let fractions: Vec<f64> = [
        (
            allocatable.milli_cpu,
            used.milli_cpu.saturating_add(pod.milli_cpu),
        ),
        (allocatable.memory, used.memory.saturating_add(pod.memory)),
    ]
    .into_iter()
    .filter(|(capacity, _)| *capacity != 0)
    .map(|(capacity, requested)| (requested as f64 / capacity as f64).min(1.0))
    .collect();
    let deviation = if let &[cpu, memory] = fractions.as_slice() {
        ((cpu - memory) / 2.0).abs()
    } else {
        0.0
    };
    ((1.0 - deviation) * MAX_NODE_SCORE as f64) as i64
}

/// ImageLocality's score: the sizes of the pod's (init) container images the node has, each
/// scaled by the share of nodes that have it, between 23 MiB and 1000 MiB per container.
pub fn image_locality(spec: &PodSpec, node: &NodeInfo, snapshot: &Snapshot) -> i64 {
    let total_nodes = snapshot.len();
    let mut sum: i64 = 0;
    let mut containers: i64 = 0;
    for container in spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
    {
        containers += 1;
        let name = normalized_image_name(container.image.as_deref().unwrap_or(""));
        if let Some(size) = node.image_size(&name) {
            let spread = snapshot.image_nodes(&name) as f64 / total_nodes as f64;
            sum = sum.saturating_add((size as f64 * spread) as i64);
        }
    }
    let max_threshold = MAX_CONTAINER_IMAGE_THRESHOLD * containers;
    let clamped = if sum < MIN_IMAGE_THRESHOLD {
        MIN_IMAGE_THRESHOLD
    } else if sum > max_threshold {
        max_threshold
    } else {
        sum
    };
    MAX_NODE_SCORE * (clamped - MIN_IMAGE_THRESHOLD) / (max_threshold - MIN_IMAGE_THRESHOLD)
}

/// An image name as nodes report it: `:latest` added when it has no tag.
pub fn normalized_image_name(name: &str) -> String {
    let position = |found: Option<usize>| found.map_or(-1, |at| at as i64);
    if position(name.rfind(':')) <= position(name.rfind('/')) {
        format!("{name}:latest")
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::resources::{non_zero_requests, pod_requests};
    use crate::scheduler::snapshot::spec_of;
    use crate::scheduler::testing::{bound, node, pending, sized, snapshot_of, with_node_spec};
    use serde_json::json;

    #[test]
    fn default_normalize_scales_to_the_highest() {
        let mut plain = [0, 5, 10];
        default_normalize(&mut plain, false);
        assert_eq!(plain, [0, 50, 100]);
        let mut reversed = [0, 1, 2];
        default_normalize(&mut reversed, true);
        assert_eq!(reversed, [100, 50, 0]);
        let mut none = [0, 0];
        default_normalize(&mut none, true);
        assert_eq!(none, [100, 100]);
    }

    #[test]
    fn least_allocated_prefers_free_nodes_and_counts_empty_requests() {
        let s = snapshot_of(
            &[
                sized("n1", "4", "8Gi", json!({})),
                sized("n2", "4", "8Gi", json!({})),
            ],
            &[bound(&pending("old", json!({}), "2", "4Gi"), "n2")],
        );
        let pod = pending("p", json!({}), "1", "2Gi");
        let non_zero = non_zero_requests(spec_of(&pod));
        let scores: Vec<i64> = s
            .nodes()
            .iter()
            .map(|n| least_allocated(&non_zero, n))
            .collect();
        // n1: cpu 3/4 free, memory 6/8 → 75; n2: 1/4 and 2/8 → 25.
        assert_eq!(scores, [75, 25]);
        let empty = pending("e", json!({}), "0", "0");
        let empty = crate::scheduler::testing::with_spec(
            empty,
            "containers",
            json!([{ "name": "c", "image": "app:1" }]),
        );
        let defaults = non_zero_requests(spec_of(&empty));
        assert_eq!((defaults.milli_cpu, defaults.memory), (100, 200 * MB));
        assert_eq!(least_allocated(&defaults, &s.nodes()[0]), (97 + 97) / 2);
    }

    #[test]
    fn balanced_allocation_prefers_even_cpu_and_memory_use() {
        let s = snapshot_of(&[sized("n1", "4", "8Gi", json!({}))], &[]);
        let n1 = &s.nodes()[0];
        let even = pod_requests(spec_of(&pending("e", json!({}), "1", "2Gi")));
        let skewed = pod_requests(spec_of(&pending("s", json!({}), "1", "4Gi")));
        assert_eq!(balanced_allocation(&even, n1), 100);
        // Fractions 1/4 and 4/8: deviation 0.125.
        assert_eq!(balanced_allocation(&skewed, n1), 87);
        assert_eq!(
            balanced_allocation(&Resources::default(), n1),
            0,
            "best effort"
        );
    }

    #[test]
    fn untolerated_prefer_no_schedule_taints_lower_the_score() {
        let base = sized("n1", "4", "8Gi", json!({}));
        let tainted = with_node_spec(
            &sized("n2", "4", "8Gi", json!({})),
            json!({ "taints": [
            { "key": "spot", "effect": "PreferNoSchedule" },
            { "key": "hard", "effect": "NoSchedule" }] }),
        );
        let s = snapshot_of(&[base, tainted], &[]);
        let none: Vec<Toleration> = Vec::new();
        let mut scores: Vec<i64> = s
            .nodes()
            .iter()
            .map(|n| intolerable_taints(n, &none))
            .collect();
        default_normalize(&mut scores, true);
        assert_eq!(scores, [100, 0]);
        let tolerations: Vec<Toleration> = serde_json::from_value(json!([
            { "key": "spot", "operator": "Exists" },
            { "operator": "Exists", "effect": "NoExecute" }]))
        .unwrap();
        let kept = prefer_no_schedule_tolerations(&tolerations);
        assert_eq!(kept.len(), 1);
        assert_eq!(intolerable_taints(&s.nodes()[1], &kept), 0);
    }

    #[test]
    fn preferred_node_affinity_sums_the_weights_of_matching_terms() {
        let s = snapshot_of(
            &[
                sized("n1", "4", "8Gi", json!({ "disk": "ssd", "zone": "a" })),
                sized("n2", "4", "8Gi", json!({ "disk": "hdd", "zone": "a" })),
                sized("n3", "4", "8Gi", json!({})),
            ],
            &[],
        );
        let spec: PodSpec = serde_json::from_value(json!({ "containers": [], "affinity": {
            "nodeAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [
                { "weight": 30, "preference": { "matchExpressions": [
                    { "key": "disk", "operator": "In", "values": ["ssd"] }] } },
                { "weight": 10, "preference": { "matchExpressions": [
                    { "key": "zone", "operator": "Exists" }] } },
                { "weight": 50, "preference": {} }] } } }))
        .unwrap();
        let terms = preferred_node_terms(&spec);
        let mut scores: Vec<i64> = s
            .nodes()
            .iter()
            .map(|n| node_affinity_score(&terms, n))
            .collect();
        assert_eq!(scores, [40, 10, 0]);
        default_normalize(&mut scores, false);
        assert_eq!(scores, [100, 25, 0]);
    }

    #[test]
    fn image_locality_rewards_big_images_already_on_many_nodes() {
        let with_image = |name: &str| {
            node(
                json!({ "metadata": { "name": name }, "status": { "images": [
                { "names": ["app:1"], "sizeBytes": 500 * MB }] } }),
            )
        };
        let s = snapshot_of(
            &[
                with_image("n1"),
                with_image("n2"),
                node(json!({
            "metadata": { "name": "n3" } })),
            ],
            &[],
        );
        let spec = spec_of(&pending("p", json!({}), "1", "1Gi")).clone();
        let scores: Vec<i64> = s
            .nodes()
            .iter()
            .map(|n| image_locality(&spec, n, &s))
            .collect();
        // 500 MiB on 2 of 3 nodes: 333 MiB, (333 - 23) / (1000 - 23) of 100.
        assert_eq!(scores, [31, 31, 0]);
        assert_eq!(normalized_image_name("nginx"), "nginx:latest");
        assert_eq!(
            normalized_image_name("registry:5000/nginx"),
            "registry:5000/nginx:latest"
        );
        assert_eq!(normalized_image_name("nginx:1.25"), "nginx:1.25");
    }
}
