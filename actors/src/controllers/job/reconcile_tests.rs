//! The Job decision's tables (reconcile.rs), kept apart so that file stays one idea.

use super::*;
use crate::controllers::job::fixtures::*;
use serde_json::json;

/// The next reconcile once `plan`'s status is stored and the pods are `pods` (the deleted
/// gone, the finalizers released).
fn after(spec: serde_json::Value, plan: &Plan, pods: &[Arc<Pod>]) -> Plan {
    let stored = serde_json::to_value(&plan.status).unwrap();
    reconcile(&job(spec, stored), pods, true, now())
}

fn condition<'a>(plan: &'a Plan, type_: &str) -> Option<&'a JobCondition> {
    let conditions = plan.status.conditions.iter().flatten();
    conditions
        .filter(|c| c.status == "True")
        .find(|c| c.type_ == type_)
}

#[test]
fn a_new_job_starts_parallelism_pods_and_its_clock() {
    let plan = reconcile(&job(json!({}), json!({})), &[], true, now());
    assert_eq!(plan.create.len(), 2);
    assert!(plan.create.iter().all(|p| p.index.is_none()));
    assert_eq!(plan.status.start_time, Some(Time(now())));
    assert_eq!(plan.status.active, Some(0));
    assert!(plan.status_changed);
}

#[test]
fn active_pods_never_exceed_the_completions_left() {
    let done = job_pod("a", "Succeeded", T0);
    let running = job_pod("b", "Running", T0);
    let status = json!({ "succeeded": 1, "startTime": T0 });
    let plan = reconcile(
        &job(json!({}), status),
        &[released(done), running],
        true,
        now(),
    );
    assert_eq!(
        plan.create.len(),
        1,
        "3 completions - 1 succeeded - 1 active"
    );
    let plan = reconcile(
        &job(json!({ "completions": 2 }), json!({ "succeeded": 1 })),
        &[job_pod("b", "Running", T0), job_pod("c", "Running", T0)],
        true,
        now(),
    );
    assert_eq!((plan.create.len(), plan.delete.len()), (0, 1));
    assert_eq!(plan.status.active, Some(1));
}

#[test]
fn reaching_completions_completes_the_job_once_its_pods_are_gone_and_counted() {
    let pods = [job_pod("a", "Succeeded", T0), job_pod("b", "Running", T0)];
    let status = json!({ "succeeded": 2, "startTime": T0 });
    let plan = reconcile(&job(json!({}), status), &pods, true, now());
    let met = condition(&plan, "SuccessCriteriaMet").expect("SuccessCriteriaMet");
    assert_eq!(met.reason.as_deref(), Some("CompletionsReached"));
    assert!(
        condition(&plan, "Complete").is_none(),
        "b still runs and a is not counted yet"
    );
    assert_eq!(names(&plan.delete), ["b"]);
    assert!(plan.create.is_empty());
    // Stored as uncounted, then released: counted, and nothing runs any more.
    let plan = after(json!({}), &plan, &[released(pods[0].clone())]);
    let complete = condition(&plan, "Complete").expect("Complete");
    assert_eq!(complete.last_transition_time, Some(Time(now())));
    assert_eq!(plan.status.completion_time, Some(Time(now())));
    assert_eq!(plan.status.succeeded, Some(3));
    assert!(plan.create.is_empty() && plan.delete.is_empty());
}

#[test]
fn a_work_queue_job_completes_when_one_succeeded_and_none_is_active() {
    let spec = json!({ "completions": null, "parallelism": 3 });
    let plan = reconcile(&job(spec.clone(), json!({})), &[], true, now());
    assert_eq!(plan.create.len(), 3, "no success yet: parallelism pods");
    let pods = [
        released(job_pod("a", "Succeeded", T0)),
        job_pod("b", "Running", T0),
    ];
    let plan = reconcile(
        &job(spec.clone(), json!({ "succeeded": 1 })),
        &pods,
        true,
        now(),
    );
    assert!(
        plan.create.is_empty() && plan.delete.is_empty(),
        "the rest runs on"
    );
    assert!(condition(&plan, "Complete").is_none());
    let plan = reconcile(
        &job(spec, json!({ "succeeded": 1 })),
        &pods[..1],
        true,
        now(),
    );
    assert!(condition(&plan, "Complete").is_some());
}

#[test]
fn failures_beyond_the_backoff_limit_fail_the_job() {
    let cases = [
        // (backoffLimit, failed so far, fails)
        (2, 2, false),
        (2, 3, true),
        (0, 1, true),
    ];
    for (limit, failed, fails) in cases {
        let spec = json!({ "backoffLimit": limit });
        let status = json!({ "failed": failed, "startTime": T0 });
        let plan = reconcile(
            &job(spec, status),
            &[job_pod("r", "Running", T0)],
            true,
            now(),
        );
        let target = condition(&plan, "FailureTarget");
        assert_eq!(target.is_some(), fails, "limit {limit}, failed {failed}");
        assert!(condition(&plan, "Failed").is_none(), "r still runs");
        if fails {
            assert_eq!(
                target.unwrap().reason.as_deref(),
                Some("BackoffLimitExceeded")
            );
            assert_eq!(names(&plan.delete), ["r"]);
            assert_eq!(plan.status.completion_time, None);
            assert_eq!(plan.status.active, Some(0));
            // r gone: the Job has failed, for the reason decided.
            let plan = after(json!({ "backoffLimit": limit }), &plan, &[]);
            let failure = condition(&plan, "Failed").expect("Failed");
            assert_eq!(failure.reason.as_deref(), Some("BackoffLimitExceeded"));
            assert!(plan.create.is_empty());
        }
    }
}

#[test]
fn replacements_wait_for_the_failure_backoff_and_on_failure_restarts_count() {
    let failed = released(job_pod("f", "Failed", "2024-01-01T00:59:55Z"));
    let spec = json!({ "completions": 1, "parallelism": 1 });
    let plan = reconcile(&job(spec, json!({ "failed": 1 })), &[failed], true, now());
    assert!(plan.create.is_empty());
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(5)));
    let spec = |policy: &str| {
        json!({ "backoffLimit": 2, "template": { "spec": {
            "restartPolicy": policy, "containers": [{ "name": "c" }] } } })
    };
    let pods = [restarting("r", 2)];
    let plan = reconcile(&job(spec("OnFailure"), json!({})), &pods, true, now());
    assert!(condition(&plan, "FailureTarget").is_some());
    assert_eq!(names(&plan.delete), ["r"]);
    let plan = reconcile(&job(spec("Never"), json!({})), &pods, true, now());
    assert!(condition(&plan, "FailureTarget").is_none());
}

#[test]
fn the_active_deadline_fails_the_job_or_sets_the_requeue() {
    let status = json!({ "startTime": "2024-01-01T00:58:20Z" });
    let pods = [job_pod("r", "Running", T0)];
    let plan = reconcile(
        &job(json!({ "activeDeadlineSeconds": 200 }), status.clone()),
        &pods,
        true,
        now(),
    );
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(100)));
    let plan = reconcile(
        &job(json!({ "activeDeadlineSeconds": 100 }), status),
        &pods,
        true,
        now(),
    );
    let target = condition(&plan, "FailureTarget").unwrap();
    assert_eq!(target.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(names(&plan.delete), ["r"]);
    let plan = after(json!({ "activeDeadlineSeconds": 100 }), &plan, &[]);
    let failed = condition(&plan, "Failed").unwrap();
    assert_eq!(failed.reason.as_deref(), Some("DeadlineExceeded"));
}

#[test]
fn indexed_jobs_create_the_lowest_missing_indexes_and_track_completed_ones() {
    let spec = json!({ "completionMode": "Indexed", "completions": 6, "parallelism": 3 });
    let pods = [
        indexed(job_pod("one", "Running", T0), 1),
        indexed(job_pod("three", "Succeeded", T0), 3),
        indexed(job_pod("dup-a", "Running", T0), 4),
        indexed(job_pod("dup-b", "Running", T0), 4),
        indexed(job_pod("done-again", "Running", T0), 0),
    ];
    let status = json!({ "completedIndexes": "0", "succeeded": 1 });
    let plan = reconcile(&job(spec, status), &pods, true, now());
    assert_eq!(plan.status.completed_indexes.as_deref(), Some("0,3"));
    assert_eq!(plan.status.succeeded, Some(2));
    let mut deleted = names(&plan.delete);
    deleted.sort();
    assert_eq!(deleted.len(), 2);
    assert!(deleted.contains(&"done-again"), "{deleted:?}");
    assert!(deleted.iter().any(|n| n.starts_with("dup-")), "{deleted:?}");
    let created: Vec<_> = plan.create.iter().map(|p| p.index).collect();
    assert_eq!(
        created,
        [Some(2)],
        "3 wanted, 1 and 4 run: the lowest missing is 2"
    );
    assert_eq!(
        plan.create[0].pod.metadata.generate_name.as_deref(),
        Some("pi-2-")
    );
}

#[test]
fn an_indexed_job_completes_when_every_index_succeeded() {
    let spec = json!({ "completionMode": "Indexed", "completions": 3 });
    let pods = [indexed(job_pod("two", "Succeeded", T0), 2)];
    let plan = reconcile(
        &job(spec.clone(), json!({ "completedIndexes": "0-1" })),
        &pods,
        true,
        now(),
    );
    assert_eq!(plan.status.completed_indexes.as_deref(), Some("0-2"));
    assert!(condition(&plan, "SuccessCriteriaMet").is_some());
    let plan = after(spec, &plan, &[released(pods[0].clone())]);
    assert!(condition(&plan, "Complete").is_some());
}

#[test]
fn suspending_deletes_active_pods_and_resuming_restarts_the_clock() {
    let pods = [job_pod("r", "Running", T0)];
    let status = json!({ "startTime": T0 });
    let plan = reconcile(&job(json!({ "suspend": true }), status), &pods, true, now());
    assert_eq!(names(&plan.delete), ["r"]);
    assert!(plan.create.is_empty());
    assert!(condition(&plan, "Suspended").is_some());
    assert_eq!(plan.status.start_time, None);
    let suspended = serde_json::to_value(&plan.status).unwrap();
    let plan = reconcile(
        &job(json!({ "suspend": false }), suspended),
        &[],
        true,
        now(),
    );
    assert!(condition(&plan, "Suspended").is_none());
    assert_eq!(plan.status.start_time, Some(Time(now())));
    assert_eq!(plan.create.len(), 2);
}

#[test]
fn a_steady_suspended_job_writes_no_status() {
    let plan = reconcile(
        &job(json!({ "suspend": true }), json!({})),
        &[],
        true,
        now(),
    );
    assert!(plan.status_changed);
    let stored = serde_json::to_value(&plan.status).unwrap();
    let later = now() + jiff::SignedDuration::from_secs(60);
    let plan = reconcile(&job(json!({ "suspend": true }), stored), &[], true, later);
    assert!(!plan.status_changed);
}

#[test]
fn parallelism_zero_stops_every_pod() {
    let pods = [job_pod("r", "Running", T0)];
    let plan = reconcile(
        &job(json!({ "parallelism": 0 }), json!({})),
        &pods,
        true,
        now(),
    );
    assert_eq!(names(&plan.delete), ["r"]);
    assert!(plan.create.is_empty());
}

#[test]
fn a_lagging_cache_neither_creates_nor_deletes_but_still_counts() {
    let pods = [job_pod("a", "Succeeded", T0)];
    let plan = reconcile(
        &job(json!({ "parallelism": 0 }), json!({})),
        &pods,
        false,
        now(),
    );
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    assert!(plan
        .status
        .uncounted_terminated_pods
        .unwrap()
        .succeeded
        .is_some());
    let plan = reconcile(&job(json!({}), json!({})), &[], false, now());
    assert!(plan.create.is_empty());
}

#[test]
fn a_finished_job_releases_its_pods_and_expires_after_its_ttl() {
    let finished = json!({ "succeeded": 3, "conditions": [{ "type": "Complete",
        "status": "True", "lastTransitionTime": "2024-01-01T00:59:00Z" }] });
    let pods = [
        job_pod("a", "Succeeded", T0),
        released(job_pod("b", "Succeeded", T0)),
    ];
    let cases = [
        (None, None, false),
        (Some(100), Some(40), false),
        (Some(60), None, true),
    ];
    for (ttl, requeue, delete) in cases {
        let spec = json!({ "ttlSecondsAfterFinished": ttl });
        let plan = reconcile(&job(spec, finished.clone()), &pods, true, now());
        assert_eq!(names(&plan.remove_finalizers), ["a"]);
        assert!(plan.create.is_empty());
        assert_eq!(plan.status.succeeded, Some(3), "frozen");
        assert_eq!(
            plan.requeue_after.map(|d| d.as_secs()),
            requeue,
            "ttl {ttl:?}"
        );
        assert_eq!(plan.delete_job, delete, "ttl {ttl:?}");
    }
}

#[test]
fn finishing_requeues_for_the_ttl() {
    let pods = [job_pod("a", "Succeeded", T0)];
    let spec = json!({ "completions": 1, "ttlSecondsAfterFinished": 30 });
    let plan = reconcile(&job(spec.clone(), json!({})), &pods, true, now());
    assert!(
        condition(&plan, "Complete").is_none(),
        "a is not counted yet"
    );
    let plan = after(spec, &plan, &[released(pods[0].clone())]);
    assert!(condition(&plan, "Complete").is_some());
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(30)));
}

#[test]
fn invalid_jobs_are_refused() {
    let always = json!({ "template": { "spec": { "restartPolicy": "Always", "containers": [] } } });
    let cases = [
        (
            always,
            InvalidJob::RestartPolicy {
                policy: "Always".into(),
            },
        ),
        (
            json!({ "completionMode": "Indexed", "completions": null }),
            InvalidJob::IndexedWithoutCompletions,
        ),
        (
            json!({ "completionMode": "Sparse" }),
            InvalidJob::CompletionMode {
                mode: "Sparse".into(),
            },
        ),
    ];
    for (spec, error) in cases {
        let plan = reconcile(&job(spec, json!({})), &[], true, now());
        assert_eq!(plan.invalid, Some(error));
        assert!(plan.create.is_empty() && !plan.status_changed);
    }
}

#[test]
fn pods_of_other_controllers_are_ignored() {
    let mut foreign = (*job_pod("x", "Running", T0)).clone();
    foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "other".into();
    let plan = reconcile(
        &job(json!({}), json!({})),
        &[Arc::new(foreign)],
        true,
        now(),
    );
    assert_eq!(plan.create.len(), 2);
}
