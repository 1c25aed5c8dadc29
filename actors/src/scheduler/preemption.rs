//! Preemption: for a pod that no node fits, the node where evicting pods of lower priority makes
//! room, and the fewest, least important such pods, as kube-scheduler's DefaultPreemption
//! PostFilter decides it (`PodEligibleToPreemptOthers`, `findCandidates`, `DryRunPreemption`,
//! `SelectVictimsOnNode`, `pickOneNodeForPreemption`). Pure: where the dry run starts among
//! the nodes is the caller's (kube-scheduler picks it at random), and PodDisruptionBudgets
//! come in as a function.
//!
//! ```text
//!  place ─► Err(Unschedulable) ─► preempt(&pod, &snapshot, &unschedulable)
//!    may it?      not with preemptionPolicy Never, nor while lower-priority pods on its
//!                 nominated node are still terminating (unless that node is out for good)
//!    where?       nodes that failed only for what other pods cause: resources, host ports,
//!                 spreading skew, anti-affinity (Unfit::is_resolvable_by_preemption)
//!    per node, from `offset`, until candidates_to_find have been found:
//!        take off every pod of lower priority ─► the pod fits now?  no ─► next node
//!        put them back, most important first, each one that still lets it fit
//!        ─► the others are the victims
//!    which node?  fewest budgets broken, lowest top victim priority, smallest sum of victim
//!                 priorities, fewest victims, latest start among the top victims, first found
//!  ─► Some(Preemption { node, victims }) ─► the shell deletes the victims, nominates the node
//! ```
//!
//! The dry run takes pods off a copy of the one node when only that node's pods decide whether
//! the pod fits (resources, host ports). A pod with DoNotSchedule spread constraints or
//! required pod (anti-)affinity, or one that existing pods' required anti-affinity selects,
//! fits by counts over every node: for it, one working copy of the snapshot is made per call,
//! victims are taken out of it and put back ([`Snapshot::take_pod`],
//! [`Snapshot::restore_pod`]), and the PreFilter counts are worked out again for each check.
//! kube-scheduler updates those counts pod by pod (`AddPod`/`RemovePod` PreFilter
//! extensions); `SpreadFilter` and `AffinityFilter` cannot yet, so each check costs a pass
//! over the cluster, for such pods only.
//!
//! Pods nominated to a node that the pod must leave room for (`Snapshot::nominated_before`)
//! count on it in every check, as in the decision and in kube-scheduler's dry run.
//!
//! Not here: extenders, and
//! the `DisruptionTarget` condition newer kube-schedulers also require of a terminating pod
//! before waiting for it.

use std::cmp::{Ordering, Reverse};
use std::fmt;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rudder_proto::objects::priority::PREEMPT_NEVER;

use super::decide::Unschedulable;
use super::filters::{run_filters_with_nominated, NodeNames, PreFilter};
use super::interpod::AffinityFilter;
use super::snapshot::{spec_of, NodeInfo, PodInfo, PodKey, Snapshot};
use super::spread::{constraints, DO_NOT_SCHEDULE};
use super::unfit::{
    INTER_POD_AFFINITY_PLUGIN, NODE_PORTS_PLUGIN, NODE_RESOURCES_FIT_PLUGIN,
    POD_TOPOLOGY_SPREAD_PLUGIN,
};
use crate::pods::cached::Pod;

/// `minCandidateNodesPercentage`: the dry run stops once it has candidates on this share of
/// the nodes where preemption may help...
pub const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;
/// `minCandidateNodesAbsolute`: ...and at least this many (or all of them, if fewer).
pub const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;

/// The plugins some of whose failures preemption may cure; when none of them said no, no
/// node can be a candidate.
const RESOLVABLE_PLUGINS: [&str; 4] = [
    NODE_PORTS_PLUGIN,
    NODE_RESOURCES_FIT_PLUGIN,
    POD_TOPOLOGY_SPREAD_PLUGIN,
    INTER_POD_AFFINITY_PLUGIN,
];

/// Where the pod should run once `victims` are gone.
#[derive(Debug, Clone, PartialEq)]
pub struct Preemption {
    /// The node to nominate (`status.nominatedNodeName`).
    pub node: String,
    /// The pods to delete, most important first (never empty).
    pub victims: Vec<Arc<Pod>>,
}

/// Which of one node's pods, evicted together in the order given (most important first),
/// would break a PodDisruptionBudget; one answer per pod, a missing answer being no. As
/// kube-scheduler's `filterPodsWithPDBViolation`: each pod a budget selects, and that is not
/// among its `status.disruptedPods`, spends one of its `status.disruptionsAllowed`; the pods
/// after those run out break it. Budgets start afresh for each node.
pub type BudgetCheck<'a> = &'a dyn Fn(&[Arc<Pod>]) -> Vec<bool>;

/// What a caller may set beyond kube-scheduler's defaults.
#[derive(Clone, Copy, Default)]
pub struct Options<'a> {
    /// Where the dry run starts among the nodes where preemption may help, modulo their
    /// number (kube-scheduler draws it at random).
    pub offset: usize,
    /// The PodDisruptionBudgets; `None`: there are none.
    pub budgets: Option<BudgetCheck<'a>>,
}

impl fmt::Debug for Options<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("offset", &self.offset)
            .field("budgets", &self.budgets.is_some())
            .finish()
    }
}

/// A pod's priority: `spec.priority`, which admission sets from its PriorityClass; 0 for a
/// pod without (created when no class was the default).
pub fn priority(pod: &Pod) -> i32 {
    spec_of(pod).priority.unwrap_or(0)
}

/// How many candidates the dry run looks for among `nodes` where preemption may help
/// (`calculateNumCandidates`): 10% of them, at least 100, at most all.
pub fn candidates_to_find(nodes: usize) -> usize {
    (nodes * MIN_CANDIDATE_NODES_PERCENTAGE / 100)
        .max(MIN_CANDIDATE_NODES_ABSOLUTE)
        .min(nodes)
}

/// Whether the pod may preempt others now (`PodEligibleToPreemptOthers`): not with
/// `preemptionPolicy: Never`; not while a pod of lower priority on its nominated node is
/// terminating (its earlier victims are still going), unless that node can no longer take it
/// whatever runs there.
pub fn can_preempt(pod: &Pod, snapshot: &Snapshot) -> bool {
    if spec_of(pod).preemption_policy.as_deref() == Some(PREEMPT_NEVER) {
        return false;
    }
    let nominated = pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|name| !name.is_empty());
    let Some(node) = nominated.and_then(|name| snapshot.node(name)) else {
        return true;
    };
    let own = priority(pod);
    let awaiting_victims = node
        .pods()
        .iter()
        .any(|p| p.is_terminating() && priority(&p.pod) < own);
    if !awaiting_victims {
        return true;
    }
    let pre = PreFilter::new(pod, snapshot, None);
    verdict(&pre, node, &[]) == Verdict::Unresolvable
}

/// [`preempt_with`] kube-scheduler's defaults and no PodDisruptionBudgets, starting at the
/// first node where preemption may help.
pub fn preempt(
    pod: &Pod,
    snapshot: &Snapshot,
    unschedulable: &Unschedulable,
) -> Option<Preemption> {
    preempt_with(pod, snapshot, unschedulable, &Options::default())
}

/// The node where evicting pods of lower priority lets `pod` fit, and those pods; `None` when
/// the pod may not preempt ([`can_preempt`]) or no eviction helps. `unschedulable` is what
/// [`super::decide::place`] just said of the pod on this snapshot: when none of the plugins
/// that said no could be satisfied by evicting pods, no node is dry-run at all.
pub fn preempt_with(
    pod: &Pod,
    snapshot: &Snapshot,
    unschedulable: &Unschedulable,
    options: &Options<'_>,
) -> Option<Preemption> {
    let may_help = RESOLVABLE_PLUGINS
        .iter()
        .any(|plugin| unschedulable.plugins.contains(plugin));
    if !may_help || !can_preempt(pod, snapshot) {
        return None;
    }
    // Filtering needs no default spreading: the system defaults never filter.
    let pre = PreFilter::new(pod, snapshot, None);
    let (key, own) = (PodKey::of(pod), priority(pod));
    // The pods nominated to a node that this pod must leave room for, as in the decision.
    let nominated_on = |node: &NodeInfo| -> Vec<Arc<PodInfo>> {
        snapshot
            .nominated_before(node.name(), &key, own)
            .cloned()
            .collect()
    };
    let potential: Vec<usize> = snapshot
        .nodes()
        .iter()
        .enumerate()
        .filter(|(_, node)| verdict(&pre, node, &nominated_on(node)) == Verdict::Resolvable)
        .map(|(at, _)| at)
        .collect();
    if potential.is_empty() {
        return None;
    }

    let mut working = counts_across_nodes(pod, &pre, snapshot).then(|| snapshot.clone());
    let wanted = candidates_to_find(potential.len());
    let start = options.offset % potential.len();
    let mut clean = Vec::new();
    let mut breaking = Vec::new();
    for i in 0..potential.len() {
        let at = potential[(start + i) % potential.len()];
        let node = &snapshot.nodes()[at];
        let nominated = nominated_on(node);
        let found = select_victims(
            pod,
            &pre,
            (node, at),
            nominated,
            working.as_mut(),
            options.budgets,
        );
        let Some(found) = found else {
            continue;
        };
        let list = if found.violations == 0 {
            &mut clean
        } else {
            &mut breaking
        };
        if list.len() < wanted {
            list.push(found);
        }
        if !clean.is_empty() && clean.len() + breaking.len() >= wanted {
            break;
        }
    }
    clean.append(&mut breaking);

    let best = pick(clean)?;
    Some(Preemption {
        node: snapshot.nodes()[best.at].name().to_string(),
        victims: best.victims.iter().map(|v| Arc::clone(&v.pod)).collect(),
    })
}

/// What the filters say of a node, in kube-scheduler's status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Fits,
    /// `Unschedulable`: evicting pods may cure it.
    Resolvable,
    /// `UnschedulableAndUnresolvable`, or a node the pod's affinity does not even name.
    Unresolvable,
}

fn verdict(pre: &PreFilter<'_>, node: &NodeInfo, nominated: &[Arc<PodInfo>]) -> Verdict {
    let checked = match &pre.node_names {
        NodeNames::All => true,
        NodeNames::Only(names) => names.contains(node.name()),
        NodeNames::Conflict => false,
    };
    if !checked {
        return Verdict::Unresolvable;
    }
    match run_filters_with_nominated(pre, node, nominated) {
        Ok(()) => Verdict::Fits,
        Err(unfit) if unfit.is_resolvable_by_preemption() => Verdict::Resolvable,
        Err(_) => Verdict::Unresolvable,
    }
}

/// Whether the pod's fit on one node counts pods on other nodes too: DoNotSchedule spreading,
/// its required pod (anti-)affinity, or existing pods' required anti-affinity selecting it.
fn counts_across_nodes(pod: &Pod, pre: &PreFilter<'_>, snapshot: &Snapshot) -> bool {
    !constraints(pod, DO_NOT_SCHEDULE, None).is_empty()
        || !AffinityFilter::new(pod, &pre.terms, snapshot).is_empty()
}

/// A node where preemption makes room.
struct Candidate {
    /// The node's index in the snapshot.
    at: usize,
    /// Most important first; never empty.
    victims: Vec<Arc<PodInfo>>,
    /// How many victims break a PodDisruptionBudget.
    violations: usize,
}

impl Candidate {
    fn highest_priority(&self) -> i32 {
        self.victims
            .iter()
            .map(|v| priority(&v.pod))
            .max()
            .unwrap_or(i32::MIN)
    }

    /// Each priority shifted by 2³¹ first, so that more victims never sum to less (kube-scheduler
    /// does the same, for negative priorities).
    fn priority_sum(&self) -> i64 {
        self.victims
            .iter()
            .map(|v| i64::from(priority(&v.pod)) + i64::from(i32::MAX) + 1)
            .sum()
    }

    /// When the earliest of the highest-priority victims started (`GetEarliestPodStartTime`).
    fn earliest_top_start(&self) -> (bool, Option<Time>) {
        let top = self.highest_priority();
        self.victims
            .iter()
            .filter(|v| priority(&v.pod) == top)
            .map(|v| started(&v.pod))
            .min()
            .map_or((true, None), |(not_yet, at)| (not_yet, at.cloned()))
    }
}

/// `pickOneNodeForPreemption`: each rule keeps the best of the candidates left, until one is
/// left; then the first in the order found.
fn pick(mut left: Vec<Candidate>) -> Option<Candidate> {
    keep_best(&mut left, |c| Reverse(c.violations));
    keep_best(&mut left, |c| Reverse(c.highest_priority()));
    keep_best(&mut left, |c| Reverse(c.priority_sum()));
    keep_best(&mut left, |c| Reverse(c.victims.len()));
    // The later the top victims started, the less work their eviction throws away.
    keep_best(&mut left, Candidate::earliest_top_start);
    left.into_iter().next()
}

fn keep_best<K: Ord>(left: &mut Vec<Candidate>, key: impl Fn(&Candidate) -> K) {
    if left.len() < 2 {
        return;
    }
    if let Some(best) = left.iter().map(&key).max() {
        left.retain(|c| key(c) == best);
    }
}

/// When a pod started, as an ordering key: started pods by time, then those not started yet
/// (kube-scheduler takes the current time for them, later than any start so far).
fn started(pod: &Pod) -> (bool, Option<&Time>) {
    let at = pod.status.as_ref().and_then(|s| s.start_time.as_ref());
    (at.is_none(), at)
}

/// `MoreImportantPod` as an ordering, most important first: higher priority, then the one
/// that started earlier.
fn by_importance(a: &Pod, b: &Pod) -> Ordering {
    priority(b)
        .cmp(&priority(a))
        .then_with(|| started(a).cmp(&started(b)))
}

/// `SelectVictimsOnNode`: the fewest, least important pods of lower priority whose eviction
/// lets the pod fit on `node`, or `None` when evicting every one of them does not. `working`
/// is the snapshot copy for a pod whose fit counts other nodes' pods; it is left as it came.
fn select_victims(
    pod: &Pod,
    pre: &PreFilter<'_>,
    (node, at): (&NodeInfo, usize),
    nominated: Vec<Arc<PodInfo>>,
    working: Option<&mut Snapshot>,
    budgets: Option<BudgetCheck<'_>>,
) -> Option<Candidate> {
    let own = priority(pod);
    let mut potential: Vec<Arc<PodInfo>> = node
        .pods()
        .iter()
        .filter(|p| priority(&p.pod) < own)
        .cloned()
        .collect();
    if potential.is_empty() {
        return None;
    }
    let place = match working {
        Some(snapshot) => Place::Cluster { snapshot, at },
        None => Place::Node(Box::new(node.clone())),
    };
    let mut scratch = Scratch { place, nominated };
    for victim in &potential {
        scratch.take(&victim.key);
    }
    let found = if scratch.fits(pod, pre) {
        potential.sort_by(|a, b| by_importance(&a.pod, &b.pod));
        Some(reprieve(&mut scratch, pod, pre, &potential, budgets))
    } else {
        None
    };
    if matches!(scratch.place, Place::Cluster { .. }) {
        // The working copy serves the next node: put back what is still out.
        let still_out = found.as_ref().map_or(&potential, |(victims, _)| victims);
        for victim in still_out {
            scratch.put_back(victim);
        }
    }
    let (victims, violations) = found?;
    if victims.is_empty() {
        return None;
    }
    Some(Candidate {
        at,
        victims,
        violations,
    })
}

/// Puts the `potential` victims back one by one, those whose eviction would break a budget
/// first, each group most important first, keeping each that still lets the pod fit. The
/// rest are the victims (most important first), with how many of them break a budget.
fn reprieve(
    scratch: &mut Scratch<'_>,
    pod: &Pod,
    pre: &PreFilter<'_>,
    potential: &[Arc<PodInfo>],
    budgets: Option<BudgetCheck<'_>>,
) -> (Vec<Arc<PodInfo>>, usize) {
    let breaking = match budgets {
        Some(check) => {
            let pods: Vec<Arc<Pod>> = potential.iter().map(|p| Arc::clone(&p.pod)).collect();
            check(pods.as_slice())
        }
        None => Vec::new(),
    };
    let (first, then): (Vec<usize>, Vec<usize>) =
        (0..potential.len()).partition(|&i| breaking.get(i).copied().unwrap_or(false));
    let mut victims = Vec::new();
    let mut violations = 0;
    for &i in &first {
        if !scratch.keeps(&potential[i], pod, pre) {
            victims.push(Arc::clone(&potential[i]));
            violations += 1;
        }
    }
    for &i in &then {
        if !scratch.keeps(&potential[i], pod, pre) {
            victims.push(Arc::clone(&potential[i]));
        }
    }
    if !first.is_empty() && !then.is_empty() {
        victims.sort_by(|a, b| by_importance(&a.pod, &b.pod));
    }
    (victims, violations)
}

/// Where one node's dry run takes pods off and puts them back, and the pods nominated to the
/// node that the pod must leave room for (they count in every check, as in the decision).
struct Scratch<'w> {
    place: Place<'w>,
    nominated: Vec<Arc<PodInfo>>,
}

enum Place<'w> {
    /// A copy of the node: enough when only its own pods decide the fit, and the PreFilter
    /// worked out on the snapshot still holds.
    Node(Box<NodeInfo>),
    /// The working copy of the snapshot and the node's index in it; the PreFilter is worked
    /// out again for every check.
    Cluster {
        snapshot: &'w mut Snapshot,
        at: usize,
    },
}

impl Scratch<'_> {
    fn take(&mut self, key: &PodKey) {
        match &mut self.place {
            Place::Node(node) => {
                node.remove_pod(key);
            }
            Place::Cluster { snapshot, .. } => {
                snapshot.take_pod(key);
            }
        }
    }

    fn put_back(&mut self, info: &Arc<PodInfo>) {
        match &mut self.place {
            Place::Node(node) => node.add_pod(Arc::clone(info)),
            Place::Cluster { snapshot, .. } => snapshot.restore_pod(Arc::clone(info)),
        }
    }

    fn fits(&self, pod: &Pod, pre: &PreFilter<'_>) -> bool {
        match &self.place {
            Place::Node(node) => run_filters_with_nominated(pre, node, &self.nominated).is_ok(),
            Place::Cluster { snapshot, at } => {
                let counted = PreFilter::new(pod, snapshot, None);
                let node = &snapshot.nodes()[*at];
                run_filters_with_nominated(&counted, node, &self.nominated).is_ok()
            }
        }
    }

    /// Puts `info` back and keeps it there if the pod still fits; else takes it off again.
    fn keeps(&mut self, info: &Arc<PodInfo>, pod: &Pod, pre: &PreFilter<'_>) -> bool {
        self.put_back(info);
        let fits = self.fits(pod, pre);
        if !fits {
            self.take(&info.key);
        }
        fits
    }
}

#[cfg(test)]
#[path = "preemption_tests.rs"]
mod tests;
