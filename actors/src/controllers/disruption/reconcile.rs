//! The disruption controller's pure core: a PodDisruptionBudget's status from the pods it
//! counts, as kube-controller-manager's `disruption.go` computes it.
//!
//! ```text
//!  pods it counts ─► expected pods, desired healthy (minAvailable / maxUnavailable, scaled
//!                    against the pods' controllers' replicas when a percentage or
//!                    maxUnavailable)
//!                 ─► disrupted pods still awaited (approved evictions younger than 2 min)
//!                 ─► current healthy (Ready, not being deleted, not awaited)
//!                 ─► disruptionsAllowed = max(0, current - desired); 0 while nothing is
//!                    expected; the DisruptionAllowed condition; observedGeneration
//!  no controller found for a pod ─► fail safe: 0 allowed, DisruptionAllowed=False SyncFailed
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{ObjectReference, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rudder_proto::objects::disruption::{
    conditions_up_to_date, counts, set_condition, update_disruption_allowed, DELETION_TIMEOUT,
    DISRUPTION_ALLOWED, SYNC_FAILED,
};
use rudder_proto::objects::selector::LabelSelector;

use crate::events::{object_reference, EventType};
use crate::intstr::scaled_value;
use crate::pods::cached::Pod;
use crate::pods::{controller_of, is_ready};

/// The workloads of the budget's namespace whose replicas may be what it counts against
/// (the controller's `finders`: ReplicationControllers, Deployments through their
/// ReplicaSets, ReplicaSets no Deployment controls, StatefulSets).
#[derive(Debug, Clone, Default)]
pub struct Workloads {
    pub replica_sets: Vec<Arc<ReplicaSet>>,
    pub controllers: Vec<Arc<ReplicationController>>,
    pub stateful_sets: Vec<Arc<StatefulSet>>,
    pub deployments: Vec<Arc<Deployment>>,
}

/// A controller found for a pod: its uid and its `spec.replicas`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Scale {
    uid: String,
    replicas: i32,
}

/// `apps/v1` → `apps`; `v1` → `` (the core group).
fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

/// The controller's `verifyGroupKind`.
fn refers_to(reference: &OwnerReference, kind: &str, groups: &[&str]) -> bool {
    reference.kind == kind && groups.contains(&group_of(&reference.api_version))
}

/// The object `reference` names: same name and same uid (one made again under the name is
/// another object).
fn named<'a, T>(items: &'a [Arc<T>], reference: &OwnerReference) -> Option<&'a T>
where
    T: k8s_openapi::Metadata<Ty = ObjectMeta>,
{
    items.iter().map(|item| &**item).find(|item| {
        let meta = item.metadata();
        meta.name.as_deref() == Some(reference.name.as_str())
            && meta.uid.as_deref() == Some(reference.uid.as_str())
    })
}

fn scale(meta: &ObjectMeta, replicas: Option<i32>) -> Scale {
    Scale {
        uid: meta.uid.clone().unwrap_or_default(),
        // The API server defaults replicas to 1.
        replicas: replicas.unwrap_or(1),
    }
}

const APPS: &[&str] = &["apps", "extensions"];

impl Workloads {
    /// The controller a pod's controller reference names and its scale, trying each kind
    /// in Kubernetes' order; `None` when none of them has it.
    fn scale_of(&self, reference: &OwnerReference) -> Option<Scale> {
        self.replication_controller(reference)
            .or_else(|| self.deployment(reference))
            .or_else(|| self.replica_set(reference))
            .or_else(|| self.stateful_set(reference))
    }

    fn replication_controller(&self, reference: &OwnerReference) -> Option<Scale> {
        if !refers_to(reference, "ReplicationController", &[""]) {
            return None;
        }
        let rc = named(&self.controllers, reference)?;
        Some(scale(
            &rc.metadata,
            rc.spec.as_ref().and_then(|s| s.replicas),
        ))
    }

    /// A ReplicaSet's Deployment, when a Deployment controls it.
    fn deployment(&self, reference: &OwnerReference) -> Option<Scale> {
        if !refers_to(reference, "ReplicaSet", APPS) {
            return None;
        }
        let rs = named(&self.replica_sets, reference)?;
        let owner = controller_of(&rs.metadata)?;
        if !refers_to(owner, "Deployment", APPS) {
            return None;
        }
        let deployment = named(&self.deployments, owner)?;
        Some(scale(
            &deployment.metadata,
            deployment.spec.as_ref().and_then(|s| s.replicas),
        ))
    }

    /// A ReplicaSet no Deployment controls.
    fn replica_set(&self, reference: &OwnerReference) -> Option<Scale> {
        if !refers_to(reference, "ReplicaSet", APPS) {
            return None;
        }
        let rs = named(&self.replica_sets, reference)?;
        if controller_of(&rs.metadata).is_some_and(|owner| owner.kind == "Deployment") {
            return None;
        }
        Some(scale(
            &rs.metadata,
            rs.spec.as_ref().and_then(|s| s.replicas),
        ))
    }

    fn stateful_set(&self, reference: &OwnerReference) -> Option<Scale> {
        if !refers_to(reference, "StatefulSet", &["apps"]) {
            return None;
        }
        let set = named(&self.stateful_sets, reference)?;
        Some(scale(
            &set.metadata,
            set.spec.as_ref().and_then(|s| s.replicas),
        ))
    }
}

/// How many pods the budget counts against, how many must stay healthy, and the pods that
/// no controller manages (they count for neither, with a percentage or maxUnavailable).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    pods: i32,
    desired_healthy: i32,
    unmanaged: Vec<String>,
}

/// `getExpectedScale`: the sum of the replicas of the pods' controllers (each counted once).
fn expected_scale(pods: &[&Pod], workloads: &Workloads) -> Result<(i32, Vec<String>), String> {
    let mut scales: BTreeMap<String, i32> = BTreeMap::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut unmanaged = Vec::new();
    for pod in pods {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let Some(reference) = controller_of(&pod.metadata) else {
            unmanaged.push(name.to_string());
            continue;
        };
        if !seen.insert(reference.uid.as_str()) {
            continue;
        }
        let found = workloads
            .scale_of(reference)
            .ok_or_else(|| format!("found no controllers for pod {name:?}"))?;
        scales.insert(found.uid, found.replicas);
    }
    let total = scales.values().fold(0i32, |sum, n| sum.saturating_add(*n));
    Ok((total, unmanaged))
}

/// `getExpectedPodCount`.
fn expected(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    workloads: &Workloads,
) -> Result<Expected, String> {
    let spec = pdb.spec.clone().unwrap_or_default();
    if let Some(max_unavailable) = &spec.max_unavailable {
        let (pods, unmanaged) = expected_scale(pods, workloads)?;
        let unavailable =
            scaled_value(max_unavailable, pods, true).map_err(|error| error.to_string())?;
        return Ok(Expected {
            pods,
            desired_healthy: (pods - unavailable).max(0),
            unmanaged,
        });
    }
    match &spec.min_available {
        Some(IntOrString::Int(min_available)) => Ok(Expected {
            pods: i32::try_from(pods.len()).unwrap_or(i32::MAX),
            desired_healthy: *min_available,
            unmanaged: Vec::new(),
        }),
        Some(percentage @ IntOrString::String(_)) => {
            let (pods, unmanaged) = expected_scale(pods, workloads)?;
            let desired_healthy =
                scaled_value(percentage, pods, true).map_err(|error| error.to_string())?;
            Ok(Expected {
                pods,
                desired_healthy,
                unmanaged,
            })
        }
        None => Ok(Expected {
            pods: 0,
            desired_healthy: 0,
            unmanaged: Vec::new(),
        }),
    }
}

/// [`DELETION_TIMEOUT`] on the timestamps' scale.
fn deletion_timeout() -> jiff::SignedDuration {
    jiff::SignedDuration::from_secs(i64::try_from(DELETION_TIMEOUT.as_secs()).unwrap_or(i64::MAX))
}

fn plus_timeout(approved: &Time) -> jiff::Timestamp {
    approved
        .0
        .checked_add(deletion_timeout())
        .unwrap_or(jiff::Timestamp::MAX)
}

/// The approved evictions of a budget's pods, sorted out at one moment.
struct Awaited<'a> {
    /// Still awaited: pod name → when its eviction was approved.
    kept: BTreeMap<String, Time>,
    /// The earliest moment one of them times out.
    recheck: Option<jiff::Timestamp>,
    /// Pods whose eviction was approved too long ago and that are still not being deleted.
    timed_out: Vec<&'a Pod>,
}

/// `buildDisruptedPodMap`: the approved evictions still awaited (the pod exists, is not yet
/// being deleted, and was approved less than [`DELETION_TIMEOUT`] ago).
fn awaited<'a>(pdb: &PodDisruptionBudget, pods: &[&'a Pod], now: jiff::Timestamp) -> Awaited<'a> {
    let mut sorted = Awaited {
        kept: BTreeMap::new(),
        recheck: None,
        timed_out: Vec::new(),
    };
    let Some(approved) = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref()) else {
        return sorted;
    };
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(at) = approved.get(&name) else {
            continue;
        };
        let expected_deletion = plus_timeout(at);
        if expected_deletion < now {
            sorted.timed_out.push(*pod);
        } else {
            let earliest = sorted
                .recheck
                .map_or(expected_deletion, |r| r.min(expected_deletion));
            sorted.recheck = Some(earliest);
            sorted.kept.insert(name, at.clone());
        }
    }
    sorted
}

/// `countHealthyPods`: Ready, not being deleted, and not about to go by an approved eviction.
fn healthy(pods: &[&Pod], awaited: &BTreeMap<String, Time>, now: jiff::Timestamp) -> i32 {
    let count = pods
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            awaited.get(name).is_none_or(|at| plus_timeout(at) <= now)
        })
        .filter(|pod| is_ready(pod))
        .count();
    i32::try_from(count).unwrap_or(i32::MAX)
}

/// Something to tell users, about the budget or one of its pods.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub about: ObjectReference,
    pub type_: EventType,
    pub reason: &'static str,
    pub message: String,
}

/// What one sync of a budget does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The status to write (at the budget's resourceVersion); `None`: the stored one is
    /// current.
    pub status: Option<PodDisruptionBudgetStatus>,
    /// Look again then: just after the earliest awaited eviction times out.
    pub recheck_after: Option<Duration>,
    pub events: Vec<Note>,
    /// Why the budget could not be computed, when it could not: `status` is then the fail
    /// safe (no disruption allowed, `DisruptionAllowed=False` with reason `SyncFailed`).
    pub sync_failed: Option<String>,
}

/// Computes `pdb`'s status at `now` from the pods of its namespace (those it counts are
/// picked here) and the workloads that may control them. Pure.
pub fn reconcile(
    pdb: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
    workloads: &Workloads,
    now: jiff::Timestamp,
) -> Plan {
    let counted: Vec<&Pod> = pods
        .iter()
        .map(|pod| &**pod)
        .filter(|pod| counts(pdb, &pod.metadata))
        .collect();
    let budget = object_reference(pdb);
    let mut plan = Plan::default();
    let mut note =
        |about: &ObjectReference, type_: EventType, reason: &'static str, message: String| {
            plan.events.push(Note {
                about: about.clone(),
                type_,
                reason,
                message,
            })
        };
    if counted.is_empty() {
        note(
            &budget,
            EventType::Normal,
            "NoPods",
            "No matching pods found".into(),
        );
    }
    let expected = match expected(pdb, &counted, workloads) {
        Ok(expected) => expected,
        Err(error) => {
            note(
                &budget,
                EventType::Warning,
                "CalculateExpectedPodCountFailed",
                format!("Failed to calculate the number of expected pods: {error}"),
            );
            let status = fail_safe(pdb, &error, now);
            plan.status = (pdb.status.as_ref() != Some(&status)).then_some(status);
            plan.sync_failed = Some(error);
            return plan;
        }
    };
    if !expected.unmanaged.is_empty() {
        note(
            &budget,
            EventType::Warning,
            "UnmanagedPods",
            format!(
                "Pods selected by this PodDisruptionBudget (selector: {}) were found to be \
                 unmanaged. As a result, the status of the PDB cannot be calculated correctly, \
                 which may result in undefined behavior. To account for these pods please set \
                 \".spec.minAvailable\" field of the PDB to an integer value.",
                selector_text(pdb)
            ),
        );
    }
    let Awaited {
        kept: awaited,
        recheck,
        timed_out,
    } = awaited(pdb, &counted, now);
    for pod in timed_out {
        note(
            &object_reference(pod),
            EventType::Warning,
            "NotDeleted",
            format!(
                "Pod was expected by PDB {}/{} to be deleted but it wasn't",
                budget.namespace.as_deref().unwrap_or_default(),
                budget.name.as_deref().unwrap_or_default()
            ),
        );
    }
    let current_healthy = healthy(&counted, &awaited, now);
    plan.status = status(pdb, current_healthy, &expected, awaited, now);
    plan.recheck_after = recheck.map(|at| {
        // Just past the timeout: an eviction is dropped once its time is over, not at it.
        let seconds = at.as_second().saturating_sub(now.as_second()) + 1;
        Duration::from_secs(u64::try_from(seconds).unwrap_or(1).max(1))
    });
    plan
}

/// The selector as users write it on the command line (`app=web`).
fn selector_text(pdb: &PodDisruptionBudget) -> String {
    let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
    LabelSelector::from_optional_api(selector)
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// `updatePdbStatus`: the status for these counts, or `None` when the stored one says the
/// same at the budget's generation.
fn status(
    pdb: &PodDisruptionBudget,
    current_healthy: i32,
    expected: &Expected,
    awaited: BTreeMap<String, Time>,
    now: jiff::Timestamp,
) -> Option<PodDisruptionBudgetStatus> {
    // Nothing is allowed while no pod is expected, so that a budget whose first pods appear
    // before its first status is safe.
    let allowed = if expected.pods <= 0 {
        0
    } else {
        (current_healthy - expected.desired_healthy).max(0)
    };
    let old = pdb.status.clone().unwrap_or_default();
    let generation = pdb.metadata.generation.unwrap_or(0);
    let same = old.current_healthy == current_healthy
        && old.desired_healthy == expected.desired_healthy
        && old.expected_pods == expected.pods
        && old.disruptions_allowed == allowed
        && old.disrupted_pods.clone().unwrap_or_default() == awaited
        && old.observed_generation.unwrap_or(0) == generation
        && conditions_up_to_date(pdb);
    if same {
        return None;
    }
    let mut status = PodDisruptionBudgetStatus {
        current_healthy,
        desired_healthy: expected.desired_healthy,
        expected_pods: expected.pods,
        disruptions_allowed: allowed,
        disrupted_pods: (!awaited.is_empty()).then_some(awaited),
        observed_generation: Some(generation),
        conditions: old.conditions,
    };
    update_disruption_allowed(&mut status, now);
    Some(status)
}

/// `failSafe`: when the budget cannot be computed, no disruption is allowed, and the
/// condition says why.
fn fail_safe(
    pdb: &PodDisruptionBudget,
    error: &str,
    now: jiff::Timestamp,
) -> PodDisruptionBudgetStatus {
    let mut status = pdb.status.clone().unwrap_or_default();
    status.disruptions_allowed = 0;
    let generation = status.observed_generation;
    set_condition(
        status.conditions.get_or_insert_with(Vec::new),
        DISRUPTION_ALLOWED,
        "False",
        SYNC_FAILED,
        error,
        generation,
        now,
    );
    status
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
