//! PodGC's pass (kube-controller-manager's pod garbage collector), pure: every pod and node
//! of the cache, the nodes in quarantine and `now` in; the pods to force-delete and the nodes
//! to read live out.
//!
//! ```text
//!  terminated pods beyond the threshold ─► oldest first (evicted ones before the rest)
//!  terminating pods on a not-ready node tainted out-of-service ─┐
//!  terminating pods never scheduled ────────────────────────────┼─► force delete (grace 0),
//!  pods on a node missing from the cache ─► quarantine (40 s) ─► live read ─► NotFound:
//!                                                              orphans (`orphans`) ──┘
//! ```
//!
//! A node missing from the cache may only be new (the node informer lags behind the pod
//! informer that already shows a pod bound to it): its pods are deleted only once the node has
//! stayed missing for the whole quarantine *and* a live read says it does not exist. A node
//! the cache saw deleted is not new, so it skips the wait (Kubernetes waits anyway; a node
//! removed to let a StatefulSet's pod move on should not cost 40 s more): the live read still
//! decides. A pod that is not finished is first marked Failed (an orphan with the
//! `DisruptionTarget` condition), as no kubelet will ever report its end.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, PodCondition};
use rudder_proto::objects::disruption::update_pod_condition;

use crate::pods::cached::Pod;
use crate::pods::{is_terminal, phase};

/// `--terminated-pod-gc-threshold`'s default, as kube-controller-manager's.
pub const DEFAULT_TERMINATED_POD_GC_THRESHOLD: u32 = 12_500;
/// How long a node missing from the cache is waited for before a live read decides
/// (kube-controller-manager's `quarantineTime`).
pub const QUARANTINE: Duration = Duration::from_secs(40);
/// The taint an operator puts on a node that is out of service for good: its terminating
/// pods need not wait for a kubelet that will not come back.
pub const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";
/// The condition an orphan is marked with before it goes (Kubernetes' words).
pub use rudder_proto::objects::disruption::DISRUPTION_TARGET;
pub const DELETION_BY_POD_GC: &str = "DeletionByPodGC";
pub const NODE_GONE_MESSAGE: &str = "PodGC: node no longer exists";

/// The controller's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Terminated pods (Succeeded or Failed) kept; beyond it the oldest go. 0 keeps all.
    pub terminated_pod_gc_threshold: u32,
    /// How long a node may be missing from the cache before it is read live.
    pub quarantine: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            terminated_pod_gc_threshold: DEFAULT_TERMINATED_POD_GC_THRESHOLD,
            quarantine: QUARANTINE,
        }
    }
}

/// What the pass looks at, from the caches.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub pods: &'a [Arc<Pod>],
    pub nodes: &'a [Arc<Node>],
}

/// Why a pod is deleted (Kubernetes' PodGC reasons, for the logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// Finished, and more finished pods exist than the threshold keeps.
    Terminated,
    /// Being deleted on a not-ready node tainted out-of-service.
    TerminatingOutOfService,
    /// Bound to a node that does not exist.
    Orphaned,
    /// Being deleted, never scheduled.
    TerminatingUnscheduled,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Terminated => "terminated beyond the threshold",
            Reason::TerminatingOutOfService => "terminating on an out-of-service node",
            Reason::Orphaned => "its node no longer exists",
            Reason::TerminatingUnscheduled => "terminating and never scheduled",
        }
    }
}

/// The status written before the delete: phase Failed, and `conditions` (the whole list)
/// when the pod gains one.
#[derive(Debug, Clone, PartialEq)]
pub struct MarkFailed {
    pub conditions: Option<Vec<PodCondition>>,
}

/// One pod to force-delete (grace period 0, at its uid).
#[derive(Debug, Clone, PartialEq)]
pub struct Deletion {
    pub pod: Arc<Pod>,
    pub reason: Reason,
    /// `None`: the pod already Succeeded or Failed.
    pub mark_failed: Option<MarkFailed>,
}

/// When each node missing from the cache was first seen missing, and which nodes the cache
/// saw deleted. Carried from pass to pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quarantine {
    since: BTreeMap<String, jiff::Timestamp>,
    /// When the cache saw each node deleted.
    deleted: BTreeMap<String, jiff::Timestamp>,
}

impl Quarantine {
    /// Whether `node` is being waited for (or was seen deleted).
    pub fn contains(&self, node: &str) -> bool {
        self.since.contains_key(node) || self.deleted.contains_key(node)
    }

    /// The cache saw `node` deleted at `now`: the pods that name it (now, or within a
    /// quarantine, as the pod cache may lag) are read live at once instead of after a
    /// quarantine, which guards only against a node the cache has not seen yet.
    pub fn node_deleted(&mut self, node: &str, now: jiff::Timestamp) {
        self.deleted.insert(node.to_string(), now);
    }

    pub fn is_empty(&self) -> bool {
        self.since.is_empty() && self.deleted.is_empty()
    }

    /// A live read found `node`: it leaves quarantine, and starts a new one if the cache
    /// still lacks it at a later pass.
    pub fn release(&mut self, node: &str) {
        self.since.remove(node);
        self.deleted.remove(node);
    }
}

/// What one pass does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Pods to force-delete now, each once.
    pub delete: Vec<Deletion>,
    /// Nodes missing from the cache for the whole quarantine: read each live; the pods of
    /// those that do not exist are orphans ([`orphans`]).
    pub verify: Vec<String>,
    /// Run again then: a quarantine ends.
    pub requeue_after: Option<Duration>,
}

/// One pass over every pod. `quarantine` carries the missing nodes from pass to pass.
pub fn reconcile(
    observed: Observed<'_>,
    quarantine: &mut Quarantine,
    settings: &Settings,
    now: jiff::Timestamp,
) -> Plan {
    let nodes: BTreeMap<&str, &Node> = observed
        .nodes
        .iter()
        .filter_map(|n| Some((n.metadata.name.as_deref()?, &**n)))
        .collect();
    let mut plan = Plan::default();
    if settings.terminated_pod_gc_threshold > 0 {
        let threshold = usize::try_from(settings.terminated_pod_gc_threshold).unwrap_or(usize::MAX);
        let mut terminated: Vec<&Arc<Pod>> =
            observed.pods.iter().filter(|p| is_terminal(p)).collect();
        if terminated.len() > threshold {
            terminated.sort_by(|a, b| oldest_first(a, b));
            let excess = terminated.len() - threshold;
            for pod in terminated.into_iter().take(excess) {
                plan.add(pod, Reason::Terminated, None, now);
            }
        }
    }
    for pod in observed.pods.iter().filter(|p| is_terminating(p)) {
        let on_node = node_name(pod).and_then(|name| nodes.get(name));
        if on_node.is_some_and(|node| is_out_of_service(node)) {
            plan.add(pod, Reason::TerminatingOutOfService, None, now);
        }
    }
    for pod in observed.pods.iter() {
        if is_terminating(pod) && node_name(pod).is_none() {
            plan.add(pod, Reason::TerminatingUnscheduled, None, now);
        }
    }
    let missing: BTreeSet<&str> = observed
        .pods
        .iter()
        .filter_map(|p| node_name(p))
        .filter(|name| !nodes.contains_key(name))
        .collect();
    let quarantine_span =
        jiff::SignedDuration::try_from(settings.quarantine).unwrap_or(jiff::SignedDuration::MAX);
    quarantine
        .since
        .retain(|node, _| missing.contains(node.as_str()));
    quarantine.deleted.retain(|node, at| {
        !nodes.contains_key(node.as_str())
            && (missing.contains(node.as_str()) || now.duration_since(*at) < quarantine_span)
    });
    for node in missing {
        let since = *quarantine.since.entry(node.to_string()).or_insert(now);
        let left = quarantine_span.saturating_sub(now.duration_since(since));
        if !left.is_positive() || quarantine.deleted.contains_key(node) {
            plan.verify.push(node.to_string());
        } else {
            let left = Duration::try_from(left).unwrap_or_default();
            plan.requeue_after = Some(plan.requeue_after.map_or(left, |r| r.min(left)));
        }
    }
    plan
}

/// The pods bound to a node in `gone` (a live read found no such node), each marked Failed
/// with the `DisruptionTarget` condition, less those `planned` already deletes.
pub fn orphans(
    pods: &[Arc<Pod>],
    gone: &BTreeSet<String>,
    planned: &[Deletion],
    now: jiff::Timestamp,
) -> Vec<Deletion> {
    let mut plan = Plan {
        delete: planned.to_vec(),
        ..Plan::default()
    };
    for pod in pods {
        if node_name(pod).is_some_and(|node| gone.contains(node)) {
            let condition = PodCondition {
                type_: DISRUPTION_TARGET.to_string(),
                status: "True".to_string(),
                reason: Some(DELETION_BY_POD_GC.to_string()),
                message: Some(NODE_GONE_MESSAGE.to_string()),
                ..PodCondition::default()
            };
            plan.add(pod, Reason::Orphaned, Some(condition), now);
        }
    }
    plan.delete.split_off(planned.len())
}

impl Plan {
    /// Deletes `pod` for `reason` unless the plan already does; a pod that is not finished
    /// is marked Failed first, with `condition` if given.
    fn add(
        &mut self,
        pod: &Arc<Pod>,
        reason: Reason,
        condition: Option<PodCondition>,
        now: jiff::Timestamp,
    ) {
        let same = |d: &Deletion| {
            d.pod.metadata.namespace == pod.metadata.namespace
                && d.pod.metadata.name == pod.metadata.name
        };
        if self.delete.iter().any(same) {
            return;
        }
        let mark_failed = (!is_terminal(pod)).then(|| MarkFailed {
            conditions: condition.map(|c| with_condition(pod, c, now)),
        });
        self.delete.push(Deletion {
            pod: pod.clone(),
            reason,
            mark_failed,
        });
    }
}

/// The pod's conditions with `condition` set (Kubernetes' `UpdatePodCondition`, the one the
/// eviction subresource uses too): one of the same type is replaced, keeping its transition
/// time if the status stays; otherwise it is added, having changed `now`.
pub fn with_condition(
    pod: &Pod,
    condition: PodCondition,
    now: jiff::Timestamp,
) -> Vec<PodCondition> {
    let mut conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    update_pod_condition(&mut conditions, condition, now);
    conditions
}

/// Which terminated pods go first: evicted ones (they were not their controller's to
/// finish), then by creation time, then by namespace and name.
fn oldest_first(a: &Pod, b: &Pod) -> Ordering {
    is_evicted(b)
        .cmp(&is_evicted(a))
        .then_with(|| {
            let created = |p: &Pod| p.metadata.creation_timestamp.clone();
            created(a).cmp(&created(b))
        })
        .then_with(|| a.metadata.namespace.cmp(&b.metadata.namespace))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Failed because the kubelet evicted it (Kubernetes' `PodIsEvicted`).
fn is_evicted(pod: &Pod) -> bool {
    phase(pod) == "Failed"
        && pod.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")
}

fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The node the pod is bound to (`None`: not scheduled).
fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// Not Ready and tainted out-of-service (any effect): no kubelet will finish its pods.
fn is_out_of_service(node: &Node) -> bool {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    let tainted = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|taints| taints.iter().any(|t| t.key == OUT_OF_SERVICE));
    !ready && tainted
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
