//! Tables for PodGC's pass.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{json, Value};

use super::*;

fn at(seconds: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_700_000_000 + seconds).expect("a time")
}

fn stamp(seconds: i64) -> String {
    at(seconds).to_string()
}

/// A pod named `name` created at `created`, changed by `change` (spec, status, metadata).
fn pod(name: &str, created: i64, change: impl FnOnce(&mut Value)) -> Arc<Pod> {
    let mut value = json!({
        "metadata": { "name": name, "namespace": "default", "uid": format!("uid-{name}"),
                      "creationTimestamp": stamp(created) },
        "spec": { "containers": [{ "name": "c", "image": "i" }] },
        "status": { "phase": "Running" }
    });
    change(&mut value);
    Arc::new(serde_json::from_value(value).expect("a test pod"))
}

fn finished(name: &str, created: i64, phase: &str) -> Arc<Pod> {
    pod(name, created, |p| {
        p["spec"]["nodeName"] = json!("n1");
        p["status"]["phase"] = json!(phase);
    })
}

fn on_node(name: &str, node: &str) -> Arc<Pod> {
    pod(name, 0, |p| p["spec"]["nodeName"] = json!(node))
}

fn terminating(name: &str, node: Option<&str>) -> Arc<Pod> {
    pod(name, 0, |p| {
        p["metadata"]["deletionTimestamp"] = json!(stamp(5));
        p["metadata"]["finalizers"] = json!(["example.com/hold"]);
        p["status"]["phase"] = json!("Pending");
        if let Some(node) = node {
            p["spec"]["nodeName"] = json!(node);
        }
    })
}

fn node(name: &str, ready: &str, taints: Value) -> Arc<Node> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": { "name": name },
            "spec": { "taints": taints },
            "status": { "conditions": [{ "type": "Ready", "status": ready }] }
        }))
        .expect("a test node"),
    )
}

fn ready(name: &str) -> Arc<Node> {
    node(name, "True", json!([]))
}

fn settings(threshold: u32) -> Settings {
    Settings {
        terminated_pod_gc_threshold: threshold,
        quarantine: QUARANTINE,
    }
}

fn pass(
    pods: &[Arc<Pod>],
    nodes: &[Arc<Node>],
    quarantine: &mut Quarantine,
    threshold: u32,
    now: i64,
) -> Plan {
    reconcile(
        Observed { pods, nodes },
        quarantine,
        &settings(threshold),
        at(now),
    )
}

fn names(deletions: &[Deletion]) -> Vec<&str> {
    deletions
        .iter()
        .map(|d| d.pod.metadata.name.as_deref().unwrap_or_default())
        .collect()
}

fn gone(nodes: &[&str]) -> BTreeSet<String> {
    nodes.iter().map(|n| n.to_string()).collect()
}

#[test]
fn terminated_pods_beyond_the_threshold_go_evicted_first_then_oldest() {
    let evicted = pod("evicted", 50, |p| {
        p["spec"]["nodeName"] = json!("n1");
        p["status"] = json!({ "phase": "Failed", "reason": "Evicted" });
    });
    let pods = vec![
        finished("newest", 40, "Succeeded"),
        finished("oldest", 10, "Failed"),
        evicted,
        finished("middle", 20, "Succeeded"),
        finished("b-same-time", 30, "Succeeded"),
        finished("a-same-time", 30, "Succeeded"),
        on_node("running-and-old", "n1"),
    ];
    let nodes = [ready("n1")];
    let plan = pass(&pods, &nodes, &mut Quarantine::default(), 2, 100);
    assert_eq!(
        names(&plan.delete),
        ["evicted", "oldest", "middle", "a-same-time"]
    );
    assert!(plan
        .delete
        .iter()
        .all(|d| d.reason == Reason::Terminated && d.mark_failed.is_none()));
}

#[test]
fn the_threshold_keeps_that_many_and_zero_keeps_them_all() {
    let pods: Vec<Arc<Pod>> = (0..3)
        .map(|i| finished(&format!("done-{i}"), i, "Succeeded"))
        .collect();
    let nodes = [ready("n1")];
    let cases = [(0, 0), (1, 2), (2, 1), (3, 0), (4, 0)];
    for (threshold, deleted) in cases {
        let plan = pass(&pods, &nodes, &mut Quarantine::default(), threshold, 100);
        assert_eq!(plan.delete.len(), deleted, "threshold {threshold}");
    }
}

#[test]
fn a_node_not_yet_in_the_cache_keeps_its_pods_through_the_quarantine() {
    // The pod informer shows a pod bound to a node the node informer has not delivered yet.
    let pods = [on_node("web", "n-new")];
    let mut quarantine = Quarantine::default();
    let first = pass(&pods, &[], &mut quarantine, 0, 0);
    assert_eq!(first.delete, vec![]);
    assert_eq!(first.verify, Vec::<String>::new());
    assert_eq!(first.requeue_after, Some(Duration::from_secs(40)));
    assert!(quarantine.contains("n-new"));
    let later = pass(&pods, &[], &mut quarantine, 0, 39);
    assert_eq!((later.delete.len(), later.verify.len()), (0, 0));
    assert_eq!(later.requeue_after, Some(Duration::from_secs(1)));
    // The cache catches up before the quarantine ends: the node is not looked at again.
    let caught_up = pass(&pods, &[ready("n-new")], &mut quarantine, 0, 41);
    assert_eq!(caught_up, Plan::default());
    assert!(quarantine.is_empty());
}

#[test]
fn a_node_missing_for_the_whole_quarantine_is_read_live_before_its_pods_go() {
    let pods = vec![
        on_node("orphan", "ghost"),
        on_node("kept", "n1"),
        pod("unscheduled", 0, |_| {}),
    ];
    let nodes = [ready("n1")];
    let mut quarantine = Quarantine::default();
    pass(&pods, &nodes, &mut quarantine, 0, 0);
    let due = pass(&pods, &nodes, &mut quarantine, 0, 40);
    assert_eq!(due.verify, ["ghost"]);
    assert_eq!(due.delete, vec![], "nothing goes before the live read");
    assert_eq!(due.requeue_after, None);

    // The live read found no such node.
    let orphaned = orphans(&pods, &gone(&["ghost"]), &due.delete, at(41));
    assert_eq!(names(&orphaned), ["orphan"]);
    let marked = orphaned[0]
        .mark_failed
        .clone()
        .expect("a running orphan is failed first");
    let conditions = marked.conditions.expect("with its condition");
    assert_eq!(conditions.len(), 1);
    let condition = &conditions[0];
    assert_eq!(
        (
            condition.type_.as_str(),
            condition.status.as_str(),
            condition.reason.as_deref(),
            condition.message.as_deref(),
        ),
        (
            "DisruptionTarget",
            "True",
            Some("DeletionByPodGC"),
            Some("PodGC: node no longer exists"),
        )
    );
    assert_eq!(condition.last_transition_time, Some(Time(at(41))));
    assert_eq!(orphaned[0].reason, Reason::Orphaned);
}

#[test]
fn a_node_the_live_read_finds_starts_a_new_quarantine() {
    let pods = [on_node("web", "slow")];
    let mut quarantine = Quarantine::default();
    pass(&pods, &[], &mut quarantine, 0, 0);
    let due = pass(&pods, &[], &mut quarantine, 0, 45);
    assert_eq!(due.verify, ["slow"]);
    // The node exists: the cache is behind, nothing is orphaned.
    quarantine.release("slow");
    assert_eq!(orphans(&pods, &gone(&[]), &due.delete, at(45)), vec![]);
    let next = pass(&pods, &[], &mut quarantine, 0, 46);
    assert_eq!(next.verify, Vec::<String>::new());
    assert_eq!(next.requeue_after, Some(Duration::from_secs(40)));
}

#[test]
fn a_node_the_cache_saw_deleted_is_read_live_without_waiting() {
    let pods = [on_node("web-1", "lost"), on_node("other", "n1")];
    let both = [ready("lost"), ready("n1")];
    let one = [ready("n1")];
    let mut quarantine = Quarantine::default();
    assert_eq!(pass(&pods, &both, &mut quarantine, 0, 0), Plan::default());
    quarantine.node_deleted("lost", at(1));
    let plan = pass(&pods, &one, &mut quarantine, 0, 1);
    assert_eq!(plan.verify, ["lost"]);
    // Registered again under the same name: the deletion is forgotten...
    assert_eq!(pass(&pods, &both, &mut quarantine, 0, 2), Plan::default());
    assert!(quarantine.is_empty());
    // ...and a later absence waits out a full quarantine.
    let missing_again = pass(&pods, &one, &mut quarantine, 0, 3);
    assert_eq!(missing_again.verify, Vec::<String>::new());
    assert_eq!(missing_again.requeue_after, Some(Duration::from_secs(40)));
}

#[test]
fn a_deletion_seen_before_the_pod_cache_catches_up_still_counts() {
    let pods = [on_node("web-1", "lost")];
    let one = [ready("n1")];
    let mut quarantine = Quarantine::default();
    quarantine.node_deleted("lost", at(0));
    // The pod cache lags: no pod names the node yet.
    assert_eq!(pass(&[], &one, &mut quarantine, 0, 5), Plan::default());
    assert_eq!(pass(&pods, &one, &mut quarantine, 0, 6).verify, ["lost"]);
    // A deletion no pod names for a whole quarantine is forgotten.
    let mut unused = Quarantine::default();
    unused.node_deleted("empty", at(0));
    pass(&[], &one, &mut unused, 0, 39);
    assert!(unused.contains("empty"));
    pass(&[], &one, &mut unused, 0, 40);
    assert!(unused.is_empty());
}

#[test]
fn a_confirmed_missing_node_is_read_again_while_pods_remain_and_forgotten_after() {
    let pods = [on_node("web", "ghost")];
    let mut quarantine = Quarantine::default();
    pass(&pods, &[], &mut quarantine, 0, 0);
    assert_eq!(pass(&pods, &[], &mut quarantine, 0, 40).verify, ["ghost"]);
    // The delete failed: the next pass reads the node again at once rather than waiting.
    assert_eq!(pass(&pods, &[], &mut quarantine, 0, 60).verify, ["ghost"]);
    // The pods are gone: so is the quarantine.
    assert_eq!(pass(&[], &[], &mut quarantine, 0, 80), Plan::default());
    assert!(quarantine.is_empty());
}

#[test]
fn unscheduled_terminating_pods_are_failed_and_force_deleted() {
    let pods = vec![
        terminating("stuck", None),
        pod("pending", 0, |p| p["status"]["phase"] = json!("Pending")),
        terminating("on-a-node", Some("n1")),
    ];
    let plan = pass(&pods, &[ready("n1")], &mut Quarantine::default(), 0, 10);
    assert_eq!(names(&plan.delete), ["stuck"]);
    assert_eq!(plan.delete[0].reason, Reason::TerminatingUnscheduled);
    assert_eq!(
        plan.delete[0].mark_failed,
        Some(MarkFailed { conditions: None })
    );
}

#[test]
fn terminating_pods_go_only_from_a_not_ready_node_tainted_out_of_service() {
    let out_of_service = json!([{ "key": OUT_OF_SERVICE, "value": "nodeshutdown",
                                  "effect": "NoExecute" }]);
    let nodes = [
        node("down", "False", out_of_service.clone()),
        node("unknown", "Unknown", out_of_service.clone()),
        node("ready-but-tainted", "True", out_of_service),
        node("down-untainted", "False", json!([])),
    ];
    let pods = vec![
        terminating("on-down", Some("down")),
        terminating("on-unknown", Some("unknown")),
        terminating("on-ready", Some("ready-but-tainted")),
        terminating("on-untainted", Some("down-untainted")),
        on_node("running-on-down", "down"),
    ];
    let plan = pass(&pods, &nodes, &mut Quarantine::default(), 0, 10);
    assert_eq!(names(&plan.delete), ["on-down", "on-unknown"]);
    assert!(plan
        .delete
        .iter()
        .all(|d| d.reason == Reason::TerminatingOutOfService && d.mark_failed.is_some()));
}

#[test]
fn a_pod_is_deleted_once_whatever_its_reasons() {
    // Finished beyond the threshold and on a node that is gone.
    let pods = vec![
        pod("old", 0, |p| {
            p["spec"]["nodeName"] = json!("ghost");
            p["status"]["phase"] = json!("Succeeded");
        }),
        finished("newer", 10, "Succeeded"),
    ];
    let mut quarantine = Quarantine::default();
    pass(&pods, &[ready("n1")], &mut quarantine, 1, 0);
    let due = pass(&pods, &[ready("n1")], &mut quarantine, 1, 40);
    assert_eq!(names(&due.delete), ["old"]);
    assert_eq!(due.verify, ["ghost"]);
    assert_eq!(
        orphans(&pods, &gone(&["ghost"]), &due.delete, at(40)),
        vec![]
    );
}

#[test]
fn a_finished_orphan_is_deleted_without_a_status_write() {
    let pods = [pod("done", 0, |p| {
        p["spec"]["nodeName"] = json!("ghost");
        p["status"]["phase"] = json!("Failed");
    })];
    let orphaned = orphans(&pods, &gone(&["ghost"]), &[], at(0));
    assert_eq!(names(&orphaned), ["done"]);
    assert_eq!(orphaned[0].mark_failed, None);
}

#[test]
fn a_condition_keeps_its_transition_time_while_its_status_stays() {
    let with = |status: &str| {
        pod("p", 0, |p| {
            p["status"]["conditions"] = json!([
                { "type": "Ready", "status": "False", "lastTransitionTime": stamp(1) },
                { "type": "DisruptionTarget", "status": status,
                  "lastTransitionTime": stamp(2) },
            ]);
        })
    };
    let condition = PodCondition {
        type_: DISRUPTION_TARGET.into(),
        status: "True".into(),
        reason: Some(DELETION_BY_POD_GC.into()),
        ..PodCondition::default()
    };
    let same = with_condition(&with("True"), condition.clone(), at(9));
    assert_eq!(same.len(), 2);
    assert_eq!(same[1].last_transition_time, Some(Time(at(2))));
    assert_eq!(same[1].reason.as_deref(), Some(DELETION_BY_POD_GC));
    let changed = with_condition(&with("False"), condition, at(9));
    assert_eq!(changed[1].last_transition_time, Some(Time(at(9))));
    assert_eq!(
        changed[0].type_, "Ready",
        "other conditions stay as they were"
    );
}
