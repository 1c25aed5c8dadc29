//! The decision for one pod: the node it should run on, or why there is none, as
//! kube-scheduler's `schedulePod` makes it (`findNodesThatFitPod`, `prioritizeNodes`,
//! `selectHost`, `FitError`). Pure: where the search starts and how ties break are the
//! caller's, so the same inputs always give the same answer.
//!
//! ```text
//!  PreFilter ─► the pod's claims refuse every node ─► Unschedulable "0/N nodes are
//!            │  available: persistentvolumeclaim "data" not found."
//!            ─► nodes to check (all, or those required affinity pins by name)
//!            ─► filter them round-robin from `start` until `nodes_to_find` fit
//!                 none fit ─► Unschedulable "0/N nodes are available: 2 Insufficient cpu, …."
//!            ─► score the feasible ones (weighted sum) ─► the best; ties by `tie_break`
//! ```

use std::collections::{BTreeMap, BTreeSet};

use rudder_proto::objects::selector::LabelSelector;

use super::filters::{run_filters_with_nominated, NodeNames, PreFilter};
use super::interpod;
use super::resources::non_zero_requests;
use super::scores::{
    balanced_allocation, default_normalize, image_locality, intolerable_taints, least_allocated,
    node_affinity_score, prefer_no_schedule_tolerations, preferred_node_terms, Weights,
};
use super::snapshot::{spec_of, NodeInfo, PodKey, Snapshot};
use super::spread;
use super::unfit::{
    AFFINITY_TERMS_CONFLICT, NODE_AFFINITY_PLUGIN, NOT_PINNED, VOLUME_BINDING_PLUGIN,
};
use crate::pods;
use crate::pods::cached::Pod;

/// The scheduler name pods get by default; an empty `schedulerName` means it too.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";
/// Below this many nodes all are checked, and at least this many feasible ones are sought.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive share of nodes to find never goes below this percentage.
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;
/// kube-scheduler's `ErrNoNodesAvailable`.
pub const NO_NODES_AVAILABLE: &str = "no nodes available to schedule pods";

/// Where the pod should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub node: String,
    /// Nodes filtered before enough fitted.
    pub evaluated: usize,
    /// Nodes that fitted (and were scored).
    pub feasible: usize,
    /// Where the next pod's search starts (`nextStartNodeIndex`).
    pub next_start: usize,
}

/// Why no node fits: the `FailedScheduling` message, its reasons with how many nodes gave
/// each, the plugins that said no (what must change before a retry can succeed), and where
/// the next pod's search starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unschedulable {
    pub message: String,
    pub reasons: BTreeMap<String, usize>,
    pub plugins: BTreeSet<&'static str>,
    pub next_start: usize,
}

/// What a caller may set beyond kube-scheduler's defaults.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `percentageOfNodesToScore`; `None` or 0 is adaptive (see [`nodes_to_find`]).
    pub percentage_of_nodes_to_score: Option<u32>,
    /// The pod's selector for system default spreading (`spread::default_selector`: its
    /// Services, controller, ReplicaSet or StatefulSet); `None`: not spread by default.
    pub default_spread_selector: Option<LabelSelector>,
    pub weights: Weights,
}

/// Whether the pod is this scheduler's to place: not bound, not ended, and for
/// `default-scheduler` (or no scheduler named). A pod being deleted or with scheduling gates
/// is the queue's to hold back ([`is_gated`]).
pub fn is_ours(pod: &Pod) -> bool {
    let spec = spec_of(pod);
    let bound = spec.node_name.as_deref().is_some_and(|n| !n.is_empty());
    let scheduler = spec
        .scheduler_name
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(DEFAULT_SCHEDULER);
    !bound && scheduler == DEFAULT_SCHEDULER && !pods::is_terminal(pod)
}

/// Whether `spec.schedulingGates` still holds the pod back from scheduling.
pub fn is_gated(pod: &Pod) -> bool {
    spec_of(pod)
        .scheduling_gates
        .as_deref()
        .is_some_and(|gates| !gates.is_empty())
}

/// How many feasible nodes to find before scoring (`numFeasibleNodesToFind`): all of fewer
/// than 100; else `percentage` of them, or adaptively 50% less 1% per 125 nodes (at least 5%),
/// and never fewer than 100.
pub fn nodes_to_find(total: usize, percentage: Option<u32>) -> usize {
    if total < MIN_FEASIBLE_NODES_TO_FIND {
        return total;
    }
    let mut percentage = percentage.map_or(0, |p| p.min(100) as usize);
    if percentage == 0 {
        percentage = 50usize
            .saturating_sub(total / 125)
            .max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND);
    }
    (total * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// [`place_with`] kube-scheduler's defaults.
pub fn place(
    pod: &Pod,
    snapshot: &Snapshot,
    start: usize,
    tie_break: u64,
) -> Result<Placement, Unschedulable> {
    place_with(pod, snapshot, start, tie_break, &Options::default())
}

/// Chooses the node for `pod`: filters the nodes round-robin from index `start` (the previous
/// decision's `next_start`) until enough fit, scores those, and takes the best; among equally
/// good nodes, the `tie_break % n`-th in the order they were found (kube-scheduler picks one
/// at random).
pub fn place_with(
    pod: &Pod,
    snapshot: &Snapshot,
    start: usize,
    tie_break: u64,
    options: &Options,
) -> Result<Placement, Unschedulable> {
    let total = snapshot.len();
    if total == 0 {
        return Err(Unschedulable {
            message: NO_NODES_AVAILABLE.to_string(),
            reasons: BTreeMap::new(),
            plugins: BTreeSet::new(),
            next_start: 0,
        });
    }
    let start = start % total;
    let pre = PreFilter::new(pod, snapshot, options.default_spread_selector.as_ref());
    if let Some(refusal) = pre.volume_refusal() {
        // VolumeBinding's PreFilter: no node can do until the claims change.
        return Err(Unschedulable {
            message: format!("0/{total} nodes are available: {refusal}."),
            reasons: BTreeMap::from([(refusal.to_string(), total)]),
            plugins: BTreeSet::from([VOLUME_BINDING_PLUGIN]),
            next_start: start,
        });
    }
    let candidates: Vec<usize> = match &pre.node_names {
        NodeNames::All => (0..total).collect(),
        NodeNames::Only(names) => snapshot
            .nodes()
            .iter()
            .enumerate()
            .filter(|(_, node)| names.contains(node.name()))
            .map(|(at, _)| at)
            .collect(),
        NodeNames::Conflict => {
            return Err(Unschedulable {
                message: format!("0/{total} nodes are available: {AFFINITY_TERMS_CONFLICT}."),
                reasons: BTreeMap::from([(AFFINITY_TERMS_CONFLICT.to_string(), total)]),
                plugins: BTreeSet::from([NODE_AFFINITY_PLUGIN]),
                next_start: start,
            });
        }
    };

    let checked = candidates.len();
    let wanted = nodes_to_find(checked, options.percentage_of_nodes_to_score);
    let mut feasible = Vec::with_capacity(wanted);
    let mut rejected = 0;
    let mut reasons = BTreeMap::new();
    let mut plugins = BTreeSet::new();
    let offset = if checked == 0 { 0 } else { start % checked };
    let (key, priority) = (PodKey::of(pod), spec_of(pod).priority.unwrap_or(0));
    for i in 0..checked {
        if feasible.len() >= wanted {
            break;
        }
        let node = &snapshot.nodes()[candidates[(offset + i) % checked]];
        let at = candidates[(offset + i) % checked];
        let nominated = snapshot.nominated_before(node.name(), &key, priority);
        match run_filters_with_nominated(&pre, node, nominated) {
            Ok(()) => feasible.push(at),
            Err(unfit) => {
                rejected += 1;
                plugins.insert(unfit.plugin());
                for reason in unfit.reasons() {
                    *reasons.entry(reason).or_insert(0) += 1;
                }
            }
        }
    }
    let evaluated = feasible.len() + rejected;
    let next_start = (start + evaluated) % total;

    if feasible.is_empty() {
        let unchecked = total - checked;
        if unchecked > 0 {
            *reasons.entry(NOT_PINNED.to_string()).or_insert(0) += unchecked;
            plugins.insert(NODE_AFFINITY_PLUGIN);
        }
        return Err(Unschedulable {
            message: fit_error_message(total, &reasons),
            reasons,
            plugins,
            next_start,
        });
    }

    let chosen = if feasible.len() == 1 {
        feasible[0]
    } else {
        let scores = prioritize(&pre, snapshot, &feasible, &options.weights);
        let best = scores.iter().copied().max().unwrap_or(0);
        let ties: Vec<usize> = feasible
            .iter()
            .zip(&scores)
            .filter(|(_, score)| **score == best)
            .map(|(at, _)| *at)
            .collect();
        ties[(tie_break % ties.len() as u64) as usize]
    };
    Ok(Placement {
        node: snapshot.nodes()[chosen].name().to_string(),
        evaluated,
        feasible: feasible.len(),
        next_start,
    })
}

/// The weighted sum of every plugin's normalized score for each of the `feasible` nodes
/// (indices into the snapshot), in their order (`prioritizeNodes`).
pub fn prioritize(
    pre: &PreFilter<'_>,
    snapshot: &Snapshot,
    feasible: &[usize],
    weights: &Weights,
) -> Vec<i64> {
    let nodes: Vec<&NodeInfo> = feasible.iter().map(|&at| &snapshot.nodes()[at]).collect();
    let mut total = vec![0; nodes.len()];

    let tolerations = prefer_no_schedule_tolerations(pre.tolerations());
    let mut taints: Vec<i64> = nodes
        .iter()
        .map(|node| intolerable_taints(node, &tolerations))
        .collect();
    default_normalize(&mut taints, true);
    add(&mut total, weights.taint_toleration, &taints);

    let preferred = preferred_node_terms(pre.spec);
    if !preferred.is_empty() {
        let mut affinity: Vec<i64> = nodes
            .iter()
            .map(|node| node_affinity_score(&preferred, node))
            .collect();
        default_normalize(&mut affinity, false);
        add(&mut total, weights.node_affinity, &affinity);
    }

    let non_zero = non_zero_requests(pre.spec);
    let fit: Vec<i64> = nodes
        .iter()
        .map(|node| least_allocated(&non_zero, node))
        .collect();
    add(&mut total, weights.resources_fit, &fit);

    let spreading = spread::score_nodes(pre.pod, snapshot, feasible, pre.default_spread);
    add(&mut total, weights.topology_spread, &spreading);

    let affinity = interpod::score_nodes(pre.pod, &pre.terms, snapshot, feasible);
    add(&mut total, weights.inter_pod_affinity, &affinity);

    let balanced: Vec<i64> = nodes
        .iter()
        .map(|node| balanced_allocation(&pre.requests, node))
        .collect();
    add(&mut total, weights.balanced_allocation, &balanced);

    let images: Vec<i64> = nodes
        .iter()
        .map(|node| image_locality(pre.spec, node, snapshot))
        .collect();
    add(&mut total, weights.image_locality, &images);
    total
}

fn add(total: &mut [i64], weight: i64, scores: &[i64]) {
    for (sum, score) in total.iter_mut().zip(scores) {
        *sum += weight * score;
    }
}

/// `FitError.Error()`: "0/N nodes are available: " and each reason with its count, the
/// "count reason" strings sorted as strings (so "10 …" comes before "2 …"), then ".".
pub fn fit_error_message(total: usize, reasons: &BTreeMap<String, usize>) -> String {
    let mut histogram: Vec<String> = reasons
        .iter()
        .map(|(reason, count)| format!("{count} {reason}"))
        .collect();
    histogram.sort();
    let mut message = format!("0/{total} nodes are available:");
    if !histogram.is_empty() {
        message.push(' ');
        message.push_str(&histogram.join(", "));
        message.push('.');
    }
    message
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
