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
use k8s_openapi::api::core::v1::{ObjectReference, Pod, ReplicationController};
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
        .filter(|pod| counts(pdb, pod))
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
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().expect("a test time")
    }

    fn now() -> jiff::Timestamp {
        at("2026-01-01T00:10:00Z")
    }

    fn budget(spec: Value, status: Value) -> PodDisruptionBudget {
        let mut spec = spec;
        spec["selector"] = json!({ "matchLabels": { "app": "web" } });
        serde_json::from_value(json!({
            "metadata": { "name": "web", "namespace": "default", "generation": 1,
                          "resourceVersion": "7" },
            "spec": spec,
            "status": status
        }))
        .expect("a test budget")
    }

    /// A pod of `app=web` controlled by `owner` (kind, name, uid), Ready as given.
    fn pod(name: &str, ready: bool, owner: Option<(&str, &str, &str)>) -> Arc<Pod> {
        let owners: Vec<Value> = owner
            .into_iter()
            .map(|(kind, name, uid)| {
                let api_version = if kind == "ReplicationController" {
                    "v1"
                } else {
                    "apps/v1"
                };
                json!({ "apiVersion": api_version, "kind": kind, "name": name, "uid": uid,
                        "controller": true })
            })
            .collect();
        Arc::new(
            serde_json::from_value(json!({
                "metadata": { "name": name, "namespace": "default", "labels": { "app": "web" },
                              "ownerReferences": owners },
                "status": { "phase": "Running", "conditions": [
                    { "type": "Ready", "status": if ready { "True" } else { "False" },
                      "lastTransitionTime": "2026-01-01T00:00:00Z" }] }
            }))
            .expect("a test pod"),
        )
    }

    fn owned(name: &str, uid: &str, owner: Option<(&str, &str)>, replicas: i32) -> Value {
        let owners: Vec<Value> = owner
            .into_iter()
            .map(|(name, uid)| {
                json!({ "apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                        "uid": uid, "controller": true })
            })
            .collect();
        json!({
            "metadata": { "name": name, "namespace": "default", "uid": uid,
                          "ownerReferences": owners },
            "spec": { "replicas": replicas, "selector": {}, "template": {} }
        })
    }

    /// ReplicaSet `web-rs` (uid rs1) of Deployment `web` (uid d1, 5 replicas), ReplicaSet
    /// `solo` (uid rs2, 4 replicas), StatefulSet `db` (uid s1, 3 replicas).
    fn workloads() -> Workloads {
        fn decode<K: serde::de::DeserializeOwned>(v: Value) -> K {
            serde_json::from_value(v).expect("a test workload")
        }
        Workloads {
            replica_sets: vec![
                Arc::new(decode(owned("web-rs", "rs1", Some(("web", "d1")), 2))),
                Arc::new(decode(owned("solo", "rs2", None, 4))),
            ],
            deployments: vec![Arc::new(decode(owned("web", "d1", None, 5)))],
            stateful_sets: vec![Arc::new(decode(owned("db", "s1", None, 3)))],
            controllers: Vec::new(),
        }
    }

    fn counts_of(status: &PodDisruptionBudgetStatus) -> (i32, i32, i32, i32) {
        (
            status.expected_pods,
            status.desired_healthy,
            status.current_healthy,
            status.disruptions_allowed,
        )
    }

    #[test]
    fn budgets_count_their_pods_and_their_controllers_replicas() {
        let deployed = |name, ready| pod(name, ready, Some(("ReplicaSet", "web-rs", "rs1")));
        let three = vec![
            deployed("a", true),
            deployed("b", true),
            deployed("c", false),
        ];
        // (spec, expected, desired, healthy, allowed)
        let table = [
            // An integer minAvailable counts the pods themselves.
            (json!({ "minAvailable": 2 }), (3, 2, 2, 0)),
            (json!({ "minAvailable": 1 }), (3, 1, 2, 1)),
            // A percentage or maxUnavailable counts the Deployment's 5 replicas.
            (json!({ "minAvailable": "50%" }), (5, 3, 2, 0)),
            (json!({ "maxUnavailable": 4 }), (5, 1, 2, 1)),
            (json!({ "maxUnavailable": "25%" }), (5, 3, 2, 0)),
            (json!({ "maxUnavailable": 9 }), (5, 0, 2, 2)),
            // Neither: nothing expected, nothing allowed.
            (json!({}), (0, 0, 2, 0)),
        ];
        for (spec, expected) in table {
            let plan = reconcile(
                &budget(spec.clone(), json!({})),
                &three,
                &workloads(),
                now(),
            );
            let status = plan.status.expect("a first status is written");
            assert_eq!(counts_of(&status), expected, "{spec}");
            assert_eq!(status.observed_generation, Some(1));
        }
        // A StatefulSet and a ReplicaSet no Deployment controls add their replicas.
        let mixed = vec![
            pod("s-0", true, Some(("StatefulSet", "db", "s1"))),
            pod("r-0", true, Some(("ReplicaSet", "solo", "rs2"))),
            pod("r-1", true, Some(("ReplicaSet", "solo", "rs2"))),
        ];
        let plan = reconcile(
            &budget(json!({ "maxUnavailable": 1 }), json!({})),
            &mixed,
            &workloads(),
            now(),
        );
        assert_eq!(counts_of(&plan.status.unwrap()), (7, 6, 3, 0));
    }

    #[test]
    fn the_condition_says_whether_disruptions_are_allowed() {
        let pods = vec![
            pod("a", true, None),
            pod("b", true, None),
            pod("c", true, None),
        ];
        let plan = reconcile(
            &budget(json!({ "minAvailable": 2 }), json!({})),
            &pods,
            &Workloads::default(),
            now(),
        );
        let status = plan.status.unwrap();
        let condition = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (
                condition.type_.as_str(),
                condition.status.as_str(),
                condition.reason.as_str()
            ),
            ("DisruptionAllowed", "True", "SufficientPods")
        );
        // Written back as computed, the next sync writes nothing.
        let mut stored = budget(json!({ "minAvailable": 2 }), json!({}));
        stored.status = Some(status);
        let again = reconcile(&stored, &pods, &Workloads::default(), now());
        assert_eq!(again.status, None);
        // The spec changed (a new generation): computed again.
        stored.metadata.generation = Some(2);
        let changed = reconcile(&stored, &pods, &Workloads::default(), now());
        assert_eq!(changed.status.unwrap().observed_generation, Some(2));
    }

    #[test]
    fn approved_evictions_count_as_gone_until_deleted_or_timed_out() {
        let pods = vec![
            pod("a", true, None),
            pod("b", true, None),
            pod("c", true, None),
        ];
        let status = json!({
            "observedGeneration": 1, "expectedPods": 3, "desiredHealthy": 2,
            "currentHealthy": 3, "disruptionsAllowed": 0,
            // a: approved a minute ago; b: three minutes ago (timed out); gone: no such pod.
            "disruptedPods": { "a": "2026-01-01T00:09:00Z", "b": "2026-01-01T00:07:00Z",
                               "gone": "2026-01-01T00:09:30Z" }
        });
        let plan = reconcile(
            &budget(json!({ "minAvailable": 2 }), status),
            &pods,
            &Workloads::default(),
            now(),
        );
        let written = plan.status.unwrap();
        assert_eq!(counts_of(&written), (3, 2, 2, 0));
        let awaited: Vec<&String> = written.disrupted_pods.as_ref().unwrap().keys().collect();
        assert_eq!(awaited, ["a"]);
        // Looked at again just after a's approval times out (2 min after 00:09:00).
        assert_eq!(plan.recheck_after, Some(Duration::from_secs(61)));
        let not_deleted: Vec<&str> = plan
            .events
            .iter()
            .filter(|e| e.reason == "NotDeleted")
            .map(|e| e.about.name.as_deref().unwrap_or_default())
            .collect();
        assert_eq!(not_deleted, ["b"]);

        // Once a is being deleted it is neither awaited nor healthy.
        let mut going = Pod::clone(&pods[0]);
        going.metadata.deletion_timestamp = Some(Time(now()));
        let pods = vec![Arc::new(going), pods[1].clone(), pods[2].clone()];
        let stored = budget(
            json!({ "minAvailable": 2 }),
            serde_json::to_value(&written).unwrap(),
        );
        let plan = reconcile(&stored, &pods, &Workloads::default(), now());
        let written = plan.status.unwrap();
        assert_eq!(counts_of(&written), (3, 2, 2, 0));
        assert_eq!(written.disrupted_pods, None);
        assert_eq!(plan.recheck_after, None);
    }

    #[test]
    fn a_pod_whose_controller_is_unknown_fails_safe() {
        let pods = vec![
            pod("a", true, Some(("ReplicaSet", "web-rs", "rs1"))),
            pod("x", true, Some(("ReplicaSet", "vanished", "rs9"))),
        ];
        let previous = json!({ "observedGeneration": 1, "expectedPods": 5, "desiredHealthy": 1,
                               "currentHealthy": 2, "disruptionsAllowed": 1 });
        let plan = reconcile(
            &budget(json!({ "maxUnavailable": 1 }), previous),
            &pods,
            &workloads(),
            now(),
        );
        let status = plan.status.unwrap();
        assert_eq!(status.disruptions_allowed, 0);
        let condition = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("False", "SyncFailed")
        );
        assert_eq!(condition.message, "found no controllers for pod \"x\"");
        assert!(plan
            .events
            .iter()
            .any(|e| e.reason == "CalculateExpectedPodCountFailed"));
        // An integer minAvailable needs no controller: unmanaged pods simply count.
        let plan = reconcile(
            &budget(json!({ "minAvailable": 1 }), json!({})),
            &pods,
            &workloads(),
            now(),
        );
        assert_eq!(counts_of(&plan.status.unwrap()), (2, 1, 2, 1));
    }

    #[test]
    fn unmanaged_pods_are_reported_and_a_budget_without_pods_says_so() {
        let pods = vec![
            pod("a", true, Some(("ReplicaSet", "web-rs", "rs1"))),
            pod("lone", true, None),
        ];
        let plan = reconcile(
            &budget(json!({ "maxUnavailable": 1 }), json!({})),
            &pods,
            &workloads(),
            now(),
        );
        assert_eq!(counts_of(plan.status.as_ref().unwrap()), (5, 4, 2, 0));
        let unmanaged = plan
            .events
            .iter()
            .find(|e| e.reason == "UnmanagedPods")
            .expect("an UnmanagedPods event");
        assert!(
            unmanaged.message.contains("(selector: app=web)"),
            "{}",
            unmanaged.message
        );
        let plan = reconcile(
            &budget(json!({ "minAvailable": 1 }), json!({})),
            &[],
            &workloads(),
            now(),
        );
        assert_eq!(plan.events[0].reason, "NoPods");
        assert_eq!(counts_of(&plan.status.unwrap()), (0, 1, 0, 0));
    }
}
