//! Tables for the eviction's decisions.

use super::*;
use crate::kinds::resolve;

fn now() -> jiff::Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn pod(phase: &str, ready: bool, labels: Value) -> Pod {
    serde_json::from_value(pod_json(phase, ready, labels)).unwrap()
}

fn pod_json(phase: &str, ready: bool, labels: Value) -> Value {
    let ready = if ready { "True" } else { "False" };
    json!({
        "metadata": { "name": "web-1", "namespace": "default", "labels": labels,
                      "uid": "u1", "resourceVersion": "7" },
        "spec": { "nodeName": "n1", "containers": [] },
        "status": { "phase": phase,
                    "conditions": [{ "type": "Ready", "status": ready }] }
    })
}

fn budget(name: &str, generation: i64, status: Value) -> PodDisruptionBudget {
    serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": "default", "generation": generation },
        "spec": { "minAvailable": 2, "selector": { "matchLabels": { "app": "web" } } },
        "status": status
    }))
    .unwrap()
}

fn computed(allowed: i32, current: i32, desired: i32) -> Value {
    json!({ "observedGeneration": 1, "disruptionsAllowed": allowed,
            "currentHealthy": current, "desiredHealthy": desired, "expectedPods": current })
}

#[test]
fn finished_pending_and_terminating_pods_skip_the_budgets() {
    let web = json!({ "app": "web" });
    assert!(!may_ignore_budgets(&pod("Running", true, web.clone())));
    for phase in ["Succeeded", "Failed", "Pending"] {
        assert!(
            may_ignore_budgets(&pod(phase, false, web.clone())),
            "{phase}"
        );
    }
    let mut going = pod("Running", true, web);
    going.metadata.deletion_timestamp = Some(Time(now()));
    assert!(may_ignore_budgets(&going));
}

#[test]
fn one_budget_guards_and_two_are_not_supported() {
    let web = pod("Running", true, json!({ "app": "web" }));
    let one = [budget("a", 1, computed(1, 3, 2))];
    assert!(matches!(guard(&web, &one), Guard::One(b) if b.metadata.name.as_deref() == Some("a")));
    let two = [
        budget("a", 1, computed(1, 3, 2)),
        budget("b", 1, computed(1, 3, 2)),
    ];
    assert_eq!(guard(&web, &two), Guard::Several);
    let db = pod("Running", true, json!({ "app": "db" }));
    assert_eq!(guard(&db, &two), Guard::Unguarded);
}

#[test]
fn a_disruption_is_taken_and_recorded_until_none_is_left() {
    let pdb = budget("web", 1, computed(1, 3, 2));
    let status = take_disruption(&pdb, "web-1", now()).unwrap();
    assert_eq!(status.disruptions_allowed, 0);
    assert_eq!(
        status.disrupted_pods.as_ref().and_then(|d| d.get("web-1")),
        Some(&Time(now()))
    );
    // The last disruption taken turns the condition False.
    let condition = &status.conditions.as_ref().unwrap()[0];
    assert_eq!(
        (condition.type_.as_str(), condition.status.as_str()),
        ("DisruptionAllowed", "False")
    );
    let exhausted = PodDisruptionBudget {
        status: Some(status),
        ..pdb
    };
    let refused = take_disruption(&exhausted, "web-2", now()).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    let status = refused.status_object();
    assert_eq!(
        status["details"]["causes"][0],
        json!({ "reason": "DisruptionBudget",
                "message": "The disruption budget web needs 2 healthy pods and has 3 \
                            currently" })
    );
    // Kubernetes suggests no time for this one: no retryAfterSeconds at all.
    assert!(status["details"].get("retryAfterSeconds").is_none());
}

#[test]
fn a_budget_not_yet_computed_for_its_generation_refuses_for_now() {
    let stale = budget("web", 2, computed(5, 7, 2));
    let refused = take_disruption(&stale, "web-1", now()).unwrap_err();
    assert!(matches!(
        refused,
        ApiError::TooManyRequests {
            retry_after_seconds: 10,
            ..
        }
    ));
    let status = refused.status_object();
    assert!(status["details"]["causes"][0]["message"]
        .as_str()
        .unwrap()
        .ends_with("is still being processed by the server."));
    assert_eq!(status["details"]["retryAfterSeconds"], 10);
    let never = budget("web", 1, json!({}));
    assert!(matches!(
        take_disruption(&never, "web-1", now()),
        Err(ApiError::TooManyRequests { .. })
    ));
    let negative = budget("web", 1, computed(-1, 1, 2));
    assert!(take_disruption(&negative, "web-1", now())
        .unwrap_err()
        .to_string()
        .contains("pdb disruptions allowed is negative"));
}

#[test]
fn an_unready_pod_goes_when_the_application_is_whole_or_the_policy_allows() {
    let unready = pod("Running", false, json!({ "app": "web" }));
    let whole = budget("web", 1, computed(0, 2, 2));
    assert!(may_lose_unready(&whole, &unready));
    let disrupted = budget("web", 1, computed(0, 1, 2));
    assert!(!may_lose_unready(&disrupted, &unready));
    let mut always = disrupted.clone();
    always.spec.as_mut().unwrap().unhealthy_pod_eviction_policy = Some(ALWAYS_ALLOW.into());
    assert!(may_lose_unready(&always, &unready));
    // A Ready pod always takes a disruption.
    assert!(!may_lose_unready(
        &always,
        &pod("Running", true, json!({ "app": "web" }))
    ));
}

#[test]
fn preconditions_are_the_callers_and_worded_as_kubernetes_words_them() {
    let web = pod_json("Running", true, json!({}));
    assert!(check_preconditions(&web, &DeleteOptions::default()).is_ok());
    let same = DeleteOptions {
        precondition_uid: "u1".into(),
        precondition_resource_version: "7".into(),
        ..DeleteOptions::default()
    };
    assert!(check_preconditions(&web, &same).is_ok());
    let other_pod = DeleteOptions {
        precondition_uid: "u0".into(),
        ..DeleteOptions::default()
    };
    assert_eq!(
        check_preconditions(&web, &other_pod)
            .unwrap_err()
            .to_string(),
        "Operation cannot be fulfilled on Pod \"web-1\": the UID in the precondition (u0) \
         does not match the UID in record (u1). The object might have been deleted and \
         then recreated"
    );
    let older = DeleteOptions {
        precondition_resource_version: "6".into(),
        ..DeleteOptions::default()
    };
    assert!(matches!(
        check_preconditions(&web, &older),
        Err(ApiError::Conflict { .. })
    ));
}

#[test]
fn a_pod_kept_for_its_kubelet_becomes_a_disruption_target_in_the_same_write() {
    let pods = resolve("pods").unwrap();
    let options = DeleteOptions::default();
    let running = pod_json("Running", true, json!({}));
    let typed_running: Pod = serde_json::from_value(running.clone()).unwrap();
    let PodWrite::Put(marked) = pod_write(pods, &running, &typed_running, &options, now()).unwrap()
    else {
        panic!("a bound pod is marked");
    };
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
    assert!(marked["metadata"].get("resourceVersion").is_none());
    let conditions = marked["status"]["conditions"].as_array().unwrap();
    assert_eq!(conditions[0]["type"], "Ready", "the others stay");
    assert_eq!(
        conditions[1],
        json!({ "type": "DisruptionTarget", "status": "True",
                "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting",
                "lastTransitionTime": "2026-01-01T00:00:00Z" })
    );
    // Evicted again while it terminates: nothing more to write.
    let typed_marked: Pod = serde_json::from_value(marked.clone()).unwrap();
    assert_eq!(
        pod_write(pods, &marked, &typed_marked, &options, now()).unwrap(),
        PodWrite::Nothing
    );
    // Terminating without the condition (deleted, not evicted): it gets the condition.
    let mut deleted = marked.clone();
    deleted["status"]["conditions"] = json!([{ "type": "Ready", "status": "True" }]);
    let typed_deleted: Pod = serde_json::from_value(deleted.clone()).unwrap();
    let PodWrite::Put(targeted) =
        pod_write(pods, &deleted, &typed_deleted, &options, now()).unwrap()
    else {
        panic!("the condition is written");
    };
    assert_eq!(
        targeted["metadata"]["deletionTimestamp"],
        deleted["metadata"]["deletionTimestamp"]
    );
    assert_eq!(
        targeted["status"]["conditions"][1]["type"],
        "DisruptionTarget"
    );
}

#[test]
fn finished_unbound_and_immediate_evictions_remove_the_pod() {
    let pods = resolve("pods").unwrap();
    let finished = pod_json("Succeeded", false, json!({}));
    let typed_finished: Pod = serde_json::from_value(finished.clone()).unwrap();
    let options = DeleteOptions::default();
    assert_eq!(
        pod_write(pods, &finished, &typed_finished, &options, now()).unwrap(),
        PodWrite::Remove
    );
    let mut unbound = pod_json("Running", true, json!({}));
    unbound["spec"]["nodeName"] = Value::Null;
    let typed_unbound: Pod = serde_json::from_value(unbound.clone()).unwrap();
    assert_eq!(
        pod_write(pods, &unbound, &typed_unbound, &options, now()).unwrap(),
        PodWrite::Remove
    );
    let running = pod_json("Running", true, json!({}));
    let typed_running: Pod = serde_json::from_value(running.clone()).unwrap();
    let at_once = DeleteOptions {
        grace_period_seconds: Some(0),
        ..DeleteOptions::default()
    };
    assert_eq!(
        pod_write(pods, &running, &typed_running, &at_once, now()).unwrap(),
        PodWrite::Remove
    );
}

#[test]
fn a_budget_that_kept_changing_is_a_504_naming_it() {
    let error = contended("web");
    assert_eq!(
        error.to_string(),
        "Timeout: couldn't update PodDisruptionBudget \"web\" due to conflicts"
    );
    assert_eq!(error.status_object()["code"], 504);
}

#[test]
fn attempts_pause_half_a_second_with_up_to_ten_percent_jitter() {
    assert_eq!(retry_pause(0.0), Duration::from_millis(500));
    assert!(retry_pause(0.999) < Duration::from_millis(550));
    assert!(retry_pause(0.999) > Duration::from_millis(549));
    for _ in 0..100 {
        let drawn = jitter();
        assert!((0.0..1.0).contains(&drawn), "{drawn}");
    }
}
