//! The node lifecycle controller's pass (Kubernetes' `monitorNodeHealth`, the tainting passes
//! and the taint eviction controller), pure: every node, their Leases, every bound pod, the
//! disruption state and `now` in; the node conditions and taints to write and the pods to
//! evict out. The actor runs it every few seconds (`--node-monitor-period`, 5 s) and when told.
//!
//! ```text
//!  node + Lease ─ health.rs ─► readiness, Unknown conditions to write
//!  zones of readiness ─ disruption.rs ─► mode, per-zone token buckets
//!  NoSchedule taints ◄─ conditions (always, at once)
//!  NoExecute  taints ◄─ readiness: removed or swapped at once, added through the zone bucket
//!                       (none added, all lifted, in full disruption)
//!  pods on each node ─ eviction.rs (against the taints as written now) ─► evict / later
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint};

use super::disruption::{zone_of, Disruption, Mode, RateSettings};
use super::eviction::{decide, Eviction};
use super::health::{
    assess, is_managed, no_schedule_taints, Grace, Readiness, NODE_LEASE_NAMESPACE,
};
use crate::pods::cached::Pod;
use crate::scheduling::taints::{is_same_taint, taint, NO_EXECUTE, NO_SCHEDULE};

/// The controller's flags.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Settings {
    pub grace: Grace,
    pub rates: RateSettings,
}

/// What the controller looks at, from its caches.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub nodes: &'a [Arc<Node>],
    /// The Leases of `kube-node-lease` (others are ignored).
    pub leases: &'a [Arc<Lease>],
    /// Every pod bound to a node.
    pub pods: &'a [Arc<Pod>],
}

/// A node's new `status.conditions` (through the status verb).
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionUpdate {
    pub node: String,
    pub conditions: Vec<NodeCondition>,
}

/// A node's new `spec.taints`, whole.
#[derive(Debug, Clone, PartialEq)]
pub struct TaintUpdate {
    pub node: String,
    pub taints: Vec<Taint>,
}

/// What one pass does.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub conditions: Vec<ConditionUpdate>,
    pub taints: Vec<TaintUpdate>,
    /// Pods to delete now: a NoExecute taint they do not tolerate (any longer).
    pub evict: Vec<Arc<Pod>>,
    pub mode: Option<Mode>,
    /// Run again then: a node's grace ends, a zone may taint again, a toleration runs out.
    pub requeue_after: Option<Duration>,
}

/// One pass over the whole cluster. `disruption` carries the zones from pass to pass.
pub fn reconcile(
    observed: Observed<'_>,
    disruption: &mut Disruption,
    settings: &Settings,
    now: jiff::Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    let mut wake = Wake::new(now);
    let leases: BTreeMap<&str, &Lease> = observed
        .leases
        .iter()
        .filter(|l| l.metadata.namespace.as_deref() == Some(NODE_LEASE_NAMESPACE))
        .filter_map(|l| Some((l.metadata.name.as_deref()?, l.as_ref())))
        .collect();
    let mut nodes: Vec<Assessed> = Vec::new();
    for node in observed.nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let health = assess(
            node,
            leases.get(name.as_str()).copied(),
            settings.grace,
            disruption.grace_restart,
            now,
        );
        wake.at(health.silent_at);
        let conditions = health.new_conditions.clone().unwrap_or_else(|| {
            node.status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default()
        });
        if let Some(new) = health.new_conditions {
            plan.conditions.push(ConditionUpdate {
                node: name.clone(),
                conditions: new,
            });
        }
        nodes.push(Assessed {
            name,
            zone: zone_of(node),
            readiness: health.readiness,
            since: ready_transition(&conditions),
            no_schedule: no_schedule_taints(node, &conditions),
            taints: node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default(),
        });
    }
    let mut zones: BTreeMap<String, Vec<Readiness>> = BTreeMap::new();
    for n in &nodes {
        zones.entry(n.zone.clone()).or_default().push(n.readiness);
    }
    let mode = disruption.observe(&zones, &settings.rates, now);
    plan.mode = Some(mode);
    // Nodes waiting longest for their NoExecute taint get the zone's tokens first.
    nodes.sort_by(|a, b| (a.since, &a.name).cmp(&(b.since, &b.name)));
    let mut taints_now: BTreeMap<String, Vec<Taint>> = BTreeMap::new();
    for n in &nodes {
        let mut taints = with_no_schedule(&n.taints, &n.no_schedule);
        taints = n.with_no_execute(taints, mode, disruption, &mut wake, now);
        if taints != n.taints {
            plan.taints.push(TaintUpdate {
                node: n.name.clone(),
                taints: taints.clone(),
            });
        }
        taints_now.insert(n.name.clone(), taints);
    }
    plan.taints.sort_by(|a, b| a.node.cmp(&b.node));
    if mode == Mode::Normal {
        for pod in observed
            .pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
            let Some(taints) = node.and_then(|n| taints_now.get(n)) else {
                continue;
            };
            match decide(pod, taints, now) {
                Eviction::Now => plan.evict.push(pod.clone()),
                Eviction::At(at) => wake.at(Some(at)),
                Eviction::Stay => {}
            }
        }
    }
    plan.requeue_after = wake.after;
    plan
}

/// A node as the pass judged it.
struct Assessed {
    name: String,
    zone: String,
    readiness: Readiness,
    /// When its Ready condition last changed.
    since: Option<jiff::Timestamp>,
    no_schedule: Vec<&'static str>,
    taints: Vec<Taint>,
}

impl Assessed {
    /// The taints with the NoExecute one its readiness calls for: lifted or swapped at once,
    /// added when the zone's bucket allows.
    fn with_no_execute(
        &self,
        mut taints: Vec<Taint>,
        mode: Mode,
        disruption: &mut Disruption,
        wake: &mut Wake,
        now: jiff::Timestamp,
    ) -> Vec<Taint> {
        let wanted = match mode {
            Mode::Normal => self.readiness.no_execute_taint(),
            Mode::EnteringFullDisruption | Mode::FullDisruption => None,
        };
        let ours = |t: &Taint| t.effect == NO_EXECUTE && is_managed(t);
        let had_one = taints.iter().any(ours);
        taints.retain(|t| !ours(t) || Some(t.key.as_str()) == wanted);
        let Some(key) = wanted else {
            return taints;
        };
        if taints.iter().any(ours) {
            return taints;
        }
        // A swap (unreachable ↔ not-ready) is not a new eviction: no token needed.
        if had_one || disruption.try_taint(&self.zone, now) {
            taints.push(taint(key, NO_EXECUTE, Some(now)));
        } else {
            wake.after_duration(disruption.wait(&self.zone, now));
        }
        taints
    }
}

/// `taints` with exactly the managed NoSchedule taints `keys` (others untouched, kept in place).
fn with_no_schedule(taints: &[Taint], keys: &[&str]) -> Vec<Taint> {
    let mut result: Vec<Taint> = taints
        .iter()
        .filter(|t| t.effect != NO_SCHEDULE || !is_managed(t) || keys.contains(&t.key.as_str()))
        .cloned()
        .collect();
    for key in keys {
        let wanted = taint(key, NO_SCHEDULE, None);
        if !result.iter().any(|t| is_same_taint(t, &wanted)) {
            result.push(wanted);
        }
    }
    result
}

fn ready_transition(conditions: &[NodeCondition]) -> Option<jiff::Timestamp> {
    conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

/// The earliest moment the pass should run again.
struct Wake {
    now: jiff::Timestamp,
    after: Option<Duration>,
}

impl Wake {
    fn new(now: jiff::Timestamp) -> Self {
        Self { now, after: None }
    }

    fn at(&mut self, when: Option<jiff::Timestamp>) {
        let wait = when.map(|w| {
            let seconds = w.duration_since(self.now).as_secs_f64().max(0.0);
            // A moment past the deadline, so that the next pass sees it passed.
            Duration::from_secs_f64(seconds) + Duration::from_millis(1)
        });
        self.after_duration(wait);
    }

    fn after_duration(&mut self, wait: Option<Duration>) {
        self.after = match (self.after, wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
