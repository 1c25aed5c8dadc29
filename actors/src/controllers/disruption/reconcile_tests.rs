//! Tables for the disruption controller's pure core.

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
    assert_eq!(
        plan.sync_failed.as_deref(),
        Some("found no controllers for pod \"x\"")
    );
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
