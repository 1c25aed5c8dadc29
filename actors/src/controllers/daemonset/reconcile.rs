//! The DaemonSet controller's decision (Kubernetes' `syncDaemonSet`: `manage`, then
//! `rollingUpdate`, `cleanupHistory`, `updateDaemonSetStatus`), pure: the set, the nodes, the
//! pods and revisions of its namespace, whether its expectations allow acting, the failed-pod
//! backoff and `now` in; what to adopt, release, create, delete, the revisions and the status
//! out.
//!
//! ```text
//!  pods ─ claim ─► owned ─ by target node (nodeName, else the pinning affinity) ─┐
//!  nodes ─ fit (placement.rs) ─► should run / may continue ───────────────────────┤
//!                                                                                  ▼
//!  manage, per node:  should run, no pod ──────────────► create one, pinned to the node
//!                     may continue: failed pod ────────► delete (after the node's backoff)
//!                                   two or more ───────► keep the oldest (surge: see rollout)
//!                     may not continue ────────────────► delete its pods
//!  nothing to manage and RollingUpdate ─► rollout.rs step (maxUnavailable / maxSurge)
//!  revisions ─ history.rs ─► current hash, create / renumber / prune
//!  status: desired, current, misscheduled, ready, available, updated, unavailable
//! ```
//!
//! Pods are never bound here: a new pod carries a required node affinity to its node
//! (`metadata.name In [node]`) and the scheduler binds it, as in Kubernetes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{self, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use rudder_proto::objects::selector::LabelSelector;

use super::backoff::FailedPodBackoff;
use super::history::{plan_revisions, RevisionPlan};
use super::placement::{add_daemon_tolerations, daemon_template, fit, pin_to_node, Fit};
use super::rollout::{is_updated, surplus_while_surging, Bounds, Rollout};
use crate::intstr::{scaled_value, NotAPercentage};
use crate::pods::cached::Pod;
use crate::pods::{
    available_in, controller_of, is_assigned, is_available, is_ready, is_terminal, phase,
};
use crate::scheduling::node_affinity::target_node;

/// At most this many pods are created or deleted in one sync (Kubernetes' DaemonSet
/// `BurstReplicas`).
pub const BURST_REPLICAS: usize = 250;

/// What the controller looks at, from its caches.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub nodes: &'a [Arc<Node>],
    /// The pods of the DaemonSet's namespace.
    pub pods: &'a [Arc<Pod>],
    /// The ControllerRevisions of its namespace (those it controls are picked here).
    pub revisions: &'a [Arc<ControllerRevision>],
}

/// A daemon pod to create, pinned to `node`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPod {
    pub node: String,
    pub pod: v1::Pod,
}

/// What the controller does for one DaemonSet.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Orphans it selects: they get its controller reference.
    pub adopt: Vec<Arc<Pod>>,
    /// Pods it controls that its selector no longer selects: their reference goes.
    pub release: Vec<Arc<Pod>>,
    pub create: Vec<NewPod>,
    pub delete: Vec<Arc<Pod>>,
    pub revisions: RevisionPlan,
    /// `None`: write nothing (the set is being deleted or selects nothing).
    pub status: Option<DaemonSetStatus>,
    /// Look again then: a failed pod's backoff ends, a ready pod becomes available.
    pub requeue_after: Option<Duration>,
    /// The RollingUpdate bounds do not parse: the update waits (worth an event).
    pub invalid_strategy: Option<NotAPercentage>,
}

/// `may_act`: its expectations are satisfied, so the cache shows its earlier actions. Deleting
/// a failed pod is recorded in `backoff`, which holds the next one on that node back.
pub fn reconcile(
    ds: &DaemonSet,
    observed: Observed<'_>,
    may_act: bool,
    backoff: &mut FailedPodBackoff,
    now: jiff::Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    let spec = ds.spec.clone().unwrap_or_default();
    let selector = LabelSelector::from_api(&spec.selector).ok();
    let Some(selector) = selector.filter(|s| !s.is_everything()) else {
        return plan;
    };
    if ds.metadata.deletion_timestamp.is_some() {
        return plan;
    }
    let owner = owner_reference(&ds.metadata);
    let owned = claim(&selector, &owner.uid, observed.pods, &mut plan);
    let controlled: Vec<_> = observed
        .revisions
        .iter()
        .filter(|r| controller_of(&r.metadata).is_some_and(|o| o.uid == owner.uid))
        .cloned()
        .collect();
    plan.revisions = plan_revisions(ds, &owner, &controlled, &owned, may_act);
    let old_status = ds.status.clone().unwrap_or_default();
    if let Some(count) = plan.revisions.collision_count {
        plan.status = Some(DaemonSetStatus {
            collision_count: Some(count),
            ..old_status
        });
        return plan;
    }
    let hash = plan.revisions.current_hash.clone();
    let daemon = Daemon::new(ds, &hash, owner, now);
    let by_node = by_target_node(&owned);
    let fits: BTreeMap<&str, Fit> = observed
        .nodes
        .iter()
        .map(|n| {
            (
                n.metadata.name.as_deref().unwrap_or(""),
                fit(&daemon.spec, n),
            )
        })
        .collect();
    if may_act {
        daemon.manage(&fits, &by_node, backoff, &mut plan);
        let idle = plan.create.is_empty() && plan.delete.is_empty();
        if idle && daemon.rolling {
            daemon.roll(&fits, &by_node, &mut plan);
        }
    }
    let generation = if may_act {
        ds.metadata.generation
    } else {
        old_status.observed_generation
    };
    plan.status = Some(daemon.status(&fits, &by_node, generation, old_status));
    plan.requeue_after = earliest(plan.requeue_after, daemon.next_available(&fits, &by_node));
    plan
}

/// The controller reference a DaemonSet puts on its pods and revisions.
pub fn owner_reference(meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "DaemonSet".into(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The pods it controls and still selects, with the orphans it adopts; the rest of its own
/// it releases (Kubernetes' `ClaimPods`).
fn claim(selector: &LabelSelector, uid: &str, pods: &[Arc<Pod>], plan: &mut Plan) -> Vec<Arc<Pod>> {
    let empty = BTreeMap::new();
    let mut owned = Vec::new();
    for pod in pods {
        let selects = selector.matches(pod.metadata.labels.as_ref().unwrap_or(&empty));
        match controller_of(&pod.metadata) {
            Some(o) if o.uid == uid && selects => owned.push(pod.clone()),
            Some(o) if o.uid == uid => plan.release.push(pod.clone()),
            None if selects && pod.metadata.deletion_timestamp.is_none() => {
                plan.adopt.push(pod.clone());
                owned.push(pod.clone());
            }
            _ => {}
        }
    }
    owned
}

/// Owned pods by the node they are for, oldest first (bound before unbound, then creation
/// time, then name: `podByCreationTimestampAndPhase`); pods that ended and are being deleted
/// are already out of the controller's hands.
fn by_target_node(owned: &[Arc<Pod>]) -> BTreeMap<String, Vec<Arc<Pod>>> {
    let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
    for pod in owned {
        if is_terminal(pod) && pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let Some(node) = pod.spec.as_ref().and_then(target_node) {
            by_node
                .entry(node.to_string())
                .or_default()
                .push(pod.clone());
        }
    }
    for pods in by_node.values_mut() {
        pods.sort_by(|a, b| {
            let key = |p: &Pod| {
                (
                    !is_assigned(p),
                    p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    p.metadata.name.clone(),
                )
            };
            key(a).cmp(&key(b))
        });
    }
    by_node
}

/// The DaemonSet as the decision needs it.
struct Daemon<'a> {
    ds: &'a DaemonSet,
    hash: &'a str,
    owner: OwnerReference,
    /// The template's spec with the daemon tolerations: what eligibility is judged on.
    spec: v1::PodSpec,
    min_ready_seconds: i32,
    rolling: bool,
    surge: bool,
    now: jiff::Timestamp,
}

impl<'a> Daemon<'a> {
    fn new(ds: &'a DaemonSet, hash: &'a str, owner: OwnerReference, now: jiff::Timestamp) -> Self {
        let spec = ds.spec.clone().unwrap_or_default();
        let mut pod_spec = spec.template.spec.clone().unwrap_or_default();
        add_daemon_tolerations(&mut pod_spec);
        let strategy = spec.update_strategy.unwrap_or_default();
        let rolling = strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
        let max_surge = strategy.rolling_update.and_then(|r| r.max_surge);
        let surge =
            rolling && max_surge.is_some_and(|s| scaled_value(&s, 1, true).is_ok_and(|n| n != 0));
        Self {
            ds,
            hash,
            owner,
            spec: pod_spec,
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            rolling,
            surge,
            now,
        }
    }

    fn uid(&self) -> &str {
        &self.owner.uid
    }

    /// Kubernetes' `podsShouldBeOnNode` for every node, and unbound pods for nodes that are gone.
    fn manage(
        &self,
        fits: &BTreeMap<&str, Fit>,
        by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
        backoff: &mut FailedPodBackoff,
        plan: &mut Plan,
    ) {
        let mut create_on = Vec::new();
        let mut delete = Vec::new();
        for (&node, fit) in fits {
            let pods = by_node.get(node).map(Vec::as_slice).unwrap_or_default();
            let live = pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none());
            if fit.should_run && pods.is_empty() {
                create_on.push(node.to_string());
            } else if fit.may_continue {
                let mut running = Vec::new();
                for pod in live {
                    if phase(pod) != "Failed" {
                        running.push(pod.clone());
                    } else if let Some(wait) = backoff.remaining(self.uid(), node, self.now) {
                        plan.requeue_after = earliest(plan.requeue_after, Some(wait));
                    } else {
                        backoff.record(self.uid(), node, self.now);
                        delete.push(pod.clone());
                    }
                }
                if self.surge {
                    delete.extend(surplus_while_surging(
                        &running,
                        self.hash,
                        self.min_ready_seconds,
                        self.now,
                    ));
                } else {
                    delete.extend(running.into_iter().skip(1));
                }
            } else {
                delete.extend(live.cloned());
            }
        }
        let vanished = by_node
            .iter()
            .filter(|(node, _)| !fits.contains_key(node.as_str()))
            .flat_map(|(_, pods)| pods)
            .filter(|p| !is_assigned(p) && p.metadata.deletion_timestamp.is_none());
        delete.extend(vanished.cloned());
        plan.create.extend(
            create_on
                .iter()
                .take(BURST_REPLICAS)
                .map(|n| self.new_pod(n)),
        );
        plan.delete.extend(delete.into_iter().take(BURST_REPLICAS));
    }

    /// One RollingUpdate step, over the nodes with pods and those that should have one.
    fn roll(
        &self,
        fits: &BTreeMap<&str, Fit>,
        by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
        plan: &mut Plan,
    ) {
        let eligible: BTreeSet<String> = fits
            .iter()
            .filter(|(_, f)| f.should_run)
            .map(|(n, _)| n.to_string())
            .collect();
        let mut nodes = by_node.clone();
        for node in &eligible {
            nodes.entry(node.clone()).or_default();
        }
        let strategy = self
            .ds
            .spec
            .as_ref()
            .and_then(|s| s.update_strategy.clone())
            .unwrap_or_default();
        let bounds = match Bounds::of(&strategy, eligible.len()) {
            Ok(bounds) => bounds,
            Err(e) => {
                plan.invalid_strategy = Some(e);
                return;
            }
        };
        let step = Rollout {
            by_node: &nodes,
            eligible: &eligible,
            hash: self.hash,
            min_ready_seconds: self.min_ready_seconds,
            bounds,
            now: self.now,
        }
        .step();
        plan.delete.extend(step.delete);
        plan.create
            .extend(step.create_on.iter().map(|n| self.new_pod(n)));
    }

    fn new_pod(&self, node: &str) -> NewPod {
        let name = self.ds.metadata.name.clone().unwrap_or_default();
        let template = daemon_template(
            &self
                .ds
                .spec
                .as_ref()
                .map(|s| s.template.clone())
                .unwrap_or_default(),
            self.hash,
        );
        let meta = template.metadata.unwrap_or_default();
        let mut spec = template.spec.unwrap_or_default();
        pin_to_node(&mut spec, node);
        let pod = v1::Pod {
            metadata: ObjectMeta {
                generate_name: Some(format!("{name}-")),
                namespace: self.ds.metadata.namespace.clone(),
                labels: meta.labels,
                annotations: meta.annotations,
                finalizers: meta.finalizers,
                owner_references: Some(vec![self.owner.clone()]),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
            status: None,
        };
        NewPod {
            node: node.to_string(),
            pod,
        }
    }

    /// Kubernetes' `updateDaemonSetStatus`: each node that should run the daemon counts its
    /// oldest pod.
    fn status(
        &self,
        fits: &BTreeMap<&str, Fit>,
        by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
        observed_generation: Option<i64>,
        old: DaemonSetStatus,
    ) -> DaemonSetStatus {
        let mut s = DaemonSetStatus {
            observed_generation,
            collision_count: old.collision_count,
            conditions: old.conditions,
            ..DaemonSetStatus::default()
        };
        let (mut available, mut updated) = (0, 0);
        for (&node, fit) in fits {
            let oldest = by_node.get(node).and_then(|p| p.first());
            match (fit.should_run, oldest) {
                (true, None) => s.desired_number_scheduled += 1,
                (true, Some(pod)) => {
                    s.desired_number_scheduled += 1;
                    s.current_number_scheduled += 1;
                    if is_ready(pod) {
                        s.number_ready += 1;
                        available += i32::from(is_available(pod, self.min_ready_seconds, self.now));
                    }
                    updated += i32::from(is_updated(pod, self.hash));
                }
                (false, Some(_)) => s.number_misscheduled += 1,
                (false, None) => {}
            }
        }
        s.number_available = Some(available);
        s.updated_number_scheduled = Some(updated);
        s.number_unavailable = Some(s.desired_number_scheduled - available);
        s
    }

    /// When the first ready but not yet available daemon pod becomes available.
    fn next_available(
        &self,
        fits: &BTreeMap<&str, Fit>,
        by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    ) -> Option<Duration> {
        if self.min_ready_seconds <= 0 {
            return None;
        }
        fits.iter()
            .filter(|(_, f)| f.should_run)
            .filter_map(|(node, _)| by_node.get(*node)?.first())
            .filter_map(|p| available_in(p, self.min_ready_seconds, self.now))
            .min()
    }
}

fn earliest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
