//! Tables for the DaemonSet decision.

use serde_json::json;

use super::*;
use crate::controllers::daemonset::history::template_hash;
use crate::controllers::daemonset::placement::REVISION_HASH_LABEL;
use crate::pods::fixtures::ready_pod;
use crate::scheduling::node_affinity::pinned_to;

const UID: &str = "ds-uid";

fn daemon_set(strategy: serde_json::Value) -> DaemonSet {
    serde_json::from_value(json!({
        "metadata": { "name": "agent", "namespace": "kube-system", "uid": UID, "generation": 4 },
        "spec": { "selector": { "matchLabels": { "app": "agent" } },
                  "updateStrategy": strategy,
                  "template": { "metadata": { "labels": { "app": "agent" } },
                                "spec": { "containers": [{ "name": "a", "image": "agent:v2" }] } } },
        "status": { "observedGeneration": 3, "currentNumberScheduled": 0,
                    "desiredNumberScheduled": 0, "numberMisscheduled": 0, "numberReady": 0 }
    }))
    .unwrap()
}

fn rolling() -> DaemonSet {
    daemon_set(json!({ "type": "RollingUpdate" }))
}

fn hash_of(ds: &DaemonSet) -> String {
    template_hash(&ds.spec.as_ref().unwrap().template, None)
}

fn node(name: &str) -> Arc<Node> {
    Arc::new(serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap())
}

fn tainted(name: &str, key: &str, effect: &str) -> Arc<Node> {
    Arc::new(
        serde_json::from_value(json!({ "metadata": { "name": name },
            "spec": { "taints": [{ "key": key, "effect": effect }] } }))
        .unwrap(),
    )
}

/// A ready daemon pod bound to `node`, created at `created`.
fn daemon_pod(name: &str, node: &str, hash: &str, created: &str) -> Pod {
    let mut p = ready_pod(name, created);
    p.metadata.namespace = Some("kube-system".into());
    p.metadata.labels = Some(
        [
            ("app".to_string(), "agent".to_string()),
            (REVISION_HASH_LABEL.to_string(), hash.to_string()),
        ]
        .into(),
    );
    p.metadata.owner_references = Some(vec![owner_reference(&rolling().metadata)]);
    p.spec.as_mut().unwrap().node_name = Some(node.into());
    p
}

fn current(name: &str, node: &str) -> Pod {
    daemon_pod(name, node, &hash_of(&rolling()), "2024-01-01T00:00:00Z")
}

fn outdated(name: &str, node: &str) -> Pod {
    daemon_pod(name, node, "old-hash", "2024-01-01T00:00:00Z")
}

fn arcs(pods: Vec<Pod>) -> Vec<Arc<Pod>> {
    pods.into_iter().map(Arc::new).collect()
}

fn now() -> jiff::Timestamp {
    "2024-01-01T01:00:00Z".parse().unwrap()
}

fn run(ds: &DaemonSet, nodes: &[Arc<Node>], pods: &[Arc<Pod>]) -> Plan {
    let observed = Observed {
        nodes,
        pods,
        revisions: &[],
    };
    reconcile(ds, observed, true, &mut FailedPodBackoff::default(), now())
}

fn created_on(plan: &Plan) -> Vec<&str> {
    plan.create.iter().map(|c| c.node.as_str()).collect()
}

fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
    pods.iter()
        .map(|p| p.metadata.name.as_deref().unwrap())
        .collect()
}

#[test]
fn every_fitting_node_gets_one_pod_pinned_by_affinity_and_a_tainted_one_none() {
    let mut nodes: Vec<_> = (0..9).map(|i| node(&format!("n{i}"))).collect();
    nodes.push(tainted("gpu", "dedicated", "NoSchedule"));
    let plan = run(&rolling(), &nodes, &[]);
    assert_eq!(plan.create.len(), 9);
    assert!(!created_on(&plan).contains(&"gpu"));
    let first = &plan.create[0];
    let spec = first.pod.spec.as_ref().unwrap();
    assert_eq!(spec.node_name, None, "the scheduler binds it");
    let affinity = spec
        .affinity
        .as_ref()
        .unwrap()
        .node_affinity
        .as_ref()
        .unwrap();
    assert_eq!(
        affinity.required_during_scheduling_ignored_during_execution,
        Some(pinned_to(&first.node))
    );
    let labels = first.pod.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[REVISION_HASH_LABEL], hash_of(&rolling()));
    assert_eq!(first.pod.metadata.generate_name.as_deref(), Some("agent-"));
    assert_eq!(
        first.pod.metadata.owner_references.as_ref().unwrap()[0].uid,
        UID
    );
    assert_eq!(
        spec.tolerations.as_ref().unwrap().len(),
        6,
        "the daemon tolerations"
    );
    let status = plan.status.unwrap();
    assert_eq!(status.desired_number_scheduled, 9);

    let mut tolerant = rolling();
    tolerant
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .tolerations = Some(vec![serde_json::from_value(
        json!({ "key": "dedicated", "operator": "Exists" }),
    )
    .unwrap()]);
    assert_eq!(
        run(&tolerant, &nodes, &[]).create.len(),
        10,
        "a toleration admits the tenth"
    );
}

#[test]
fn a_no_schedule_taint_keeps_the_running_pod_and_a_no_execute_one_removes_it() {
    let pods = arcs(vec![current("kept", "soft"), current("evicted", "hard")]);
    let nodes = [
        tainted("soft", "x", "NoSchedule"),
        tainted("hard", "x", "NoExecute"),
    ];
    let plan = run(&rolling(), &nodes, &pods);
    assert!(plan.create.is_empty());
    assert_eq!(names(&plan.delete), ["evicted"]);
    let status = plan.status.unwrap();
    assert_eq!(
        (status.desired_number_scheduled, status.number_misscheduled),
        (0, 2)
    );
}

#[test]
fn extra_pods_on_a_node_leave_the_oldest() {
    let pods = arcs(vec![
        daemon_pod("newer", "n1", &hash_of(&rolling()), "2024-01-01T00:30:00Z"),
        daemon_pod("oldest", "n1", &hash_of(&rolling()), "2024-01-01T00:00:00Z"),
        daemon_pod("newest", "n1", &hash_of(&rolling()), "2024-01-01T00:40:00Z"),
    ]);
    let plan = run(&rolling(), &[node("n1")], &pods);
    assert_eq!(names(&plan.delete), ["newer", "newest"]);
    assert!(plan.create.is_empty());
}

#[test]
fn pods_on_nodes_that_stopped_fitting_go_and_unbound_ones_for_vanished_nodes_too() {
    let mut picky = rolling();
    picky
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .node_selector = Some([("disk".to_string(), "ssd".to_string())].into());
    let mut unbound = current("unbound", "gone");
    unbound.spec.as_mut().unwrap().node_name = None;
    unbound.spec.as_mut().unwrap().affinity =
        Some(Box::new(k8s_openapi::api::core::v1::Affinity {
            node_affinity: Some(k8s_openapi::api::core::v1::NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(pinned_to("gone")),
                preferred_during_scheduling_ignored_during_execution: None,
            }),
            ..Default::default()
        }));
    let bound_elsewhere = current("bound", "also-gone");
    let pods = arcs(vec![current("stale", "n1"), unbound, bound_elsewhere]);
    let plan = run(&picky, &[node("n1")], &pods);
    assert_eq!(
        names(&plan.delete),
        ["stale", "unbound"],
        "bound pods are PodGC's"
    );
}

#[test]
fn a_failed_pod_is_deleted_then_the_next_waits_out_the_backoff() {
    let mut failed = current("failed", "n1");
    failed.status.as_mut().unwrap().phase = Some("Failed".into());
    let pods = arcs(vec![failed]);
    let nodes = [node("n1")];
    let observed = Observed {
        nodes: &nodes,
        pods: &pods,
        revisions: &[],
    };
    let mut backoff = FailedPodBackoff::default();
    let plan = reconcile(&rolling(), observed, true, &mut backoff, now());
    assert_eq!(names(&plan.delete), ["failed"]);
    assert!(
        plan.create.is_empty(),
        "the next sync creates its replacement"
    );
    let plan = reconcile(&rolling(), observed, true, &mut backoff, now());
    assert!(plan.delete.is_empty(), "within the backoff");
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(1)));
}

#[test]
fn a_lagging_cache_changes_nothing_and_keeps_the_observed_generation() {
    let observed = Observed {
        nodes: &[node("n1")],
        pods: &[],
        revisions: &[],
    };
    let plan = reconcile(
        &rolling(),
        observed,
        false,
        &mut FailedPodBackoff::default(),
        now(),
    );
    assert!(plan.create.is_empty());
    let status = plan.status.unwrap();
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(status.desired_number_scheduled, 1);
    let plan = run(&rolling(), &[node("n1")], &[]);
    assert_eq!(plan.status.unwrap().observed_generation, Some(4));
}

#[test]
fn a_template_change_replaces_pods_within_max_unavailable() {
    let nodes: Vec<_> = (1..=4).map(|i| node(&format!("n{i}"))).collect();
    let pods = arcs(
        (1..=4)
            .map(|i| outdated(&format!("p{i}"), &format!("n{i}")))
            .collect(),
    );
    let plan = run(&rolling(), &nodes, &pods);
    assert_eq!(names(&plan.delete), ["p1"], "maxUnavailable defaults to 1");
    let half = daemon_set(json!({ "type": "RollingUpdate",
        "rollingUpdate": { "maxUnavailable": "50%" } }));
    assert_eq!(run(&half, &nodes, &pods).delete.len(), 2);
    let on_delete = daemon_set(json!({ "type": "OnDelete" }));
    let plan = run(&on_delete, &nodes, &pods);
    assert!(
        plan.delete.is_empty() && plan.create.is_empty(),
        "OnDelete waits for the user"
    );
    assert_eq!(plan.status.unwrap().updated_number_scheduled, Some(0));
}

#[test]
fn the_update_waits_while_the_core_loop_still_has_work() {
    let nodes = [node("n1"), node("n2")];
    let pods = arcs(vec![outdated("p1", "n1")]);
    let plan = run(&rolling(), &nodes, &pods);
    assert_eq!(created_on(&plan), ["n2"]);
    assert!(plan.delete.is_empty());
}

#[test]
fn with_surge_the_new_pod_joins_the_old_one_first() {
    let surge = daemon_set(json!({ "type": "RollingUpdate",
        "rollingUpdate": { "maxSurge": 1, "maxUnavailable": 0 } }));
    let hash = hash_of(&surge);
    let nodes = [node("n1"), node("n2")];
    let pods = arcs(vec![outdated("o1", "n1"), outdated("o2", "n2")]);
    let plan = run(&surge, &nodes, &pods);
    assert_eq!(created_on(&plan), ["n1"]);
    assert!(plan.delete.is_empty());
    let mut starting = daemon_pod("new1", "n1", &hash, "2024-01-01T00:59:00Z");
    starting.status.as_mut().unwrap().conditions = None;
    let pods = arcs(vec![outdated("o1", "n1"), starting, outdated("o2", "n2")]);
    let plan = run(&surge, &nodes, &pods);
    assert!(
        plan.delete.is_empty() && plan.create.is_empty(),
        "one surge at a time"
    );
    let up = daemon_pod("new1", "n1", &hash, "2024-01-01T00:59:00Z");
    let pods = arcs(vec![outdated("o1", "n1"), up, outdated("o2", "n2")]);
    assert_eq!(names(&run(&surge, &nodes, &pods).delete), ["o1"]);
}

#[test]
fn status_counts_the_oldest_pod_of_each_fitting_node() {
    let mut ds = rolling();
    ds.spec.as_mut().unwrap().min_ready_seconds = Some(600);
    let fresh = daemon_pod("fresh", "n2", &hash_of(&ds), "2024-01-01T00:55:00Z");
    let mut unready = current("unready", "n3");
    unready.status.as_mut().unwrap().conditions = None;
    let nodes = [
        node("n1"),
        node("n2"),
        node("n3"),
        node("n4"),
        tainted("t", "x", "NoSchedule"),
    ];
    let pods = arcs(vec![
        outdated("old", "n1"),
        fresh,
        unready,
        current("stray", "t"),
    ]);
    let observed = Observed {
        nodes: &nodes,
        pods: &pods,
        revisions: &[],
    };
    let plan = reconcile(
        &ds,
        observed,
        false,
        &mut FailedPodBackoff::default(),
        now(),
    );
    let s = plan.status.unwrap();
    assert_eq!(s.desired_number_scheduled, 4);
    assert_eq!(s.current_number_scheduled, 3);
    assert_eq!(s.number_misscheduled, 1);
    assert_eq!(s.number_ready, 2);
    assert_eq!(
        s.number_available,
        Some(1),
        "fresh is ready for 5 of 10 minutes"
    );
    assert_eq!(s.updated_number_scheduled, Some(2));
    assert_eq!(s.number_unavailable, Some(3));
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(300)));
}

#[test]
fn orphans_are_adopted_and_a_new_set_gets_its_first_revision() {
    let mut orphan = current("orphan", "n1");
    orphan.metadata.owner_references = None;
    let plan = run(&rolling(), &[node("n1")], &arcs(vec![orphan]));
    assert_eq!(names(&plan.adopt), ["orphan"]);
    assert!(plan.create.is_empty(), "the orphan serves n1");
    let revision = plan.revisions.create.expect("the first revision");
    assert_eq!(revision.revision, 1);
    assert_eq!(plan.revisions.current_hash, hash_of(&rolling()));
}

#[test]
fn a_set_being_deleted_or_selecting_everything_does_nothing() {
    let mut deleting = rolling();
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
    let plan = run(&deleting, &[node("n1")], &[]);
    assert!(plan.create.is_empty() && plan.status.is_none());
    let mut everything = rolling();
    everything.spec.as_mut().unwrap().selector = Default::default();
    assert!(run(&everything, &[node("n1")], &[]).create.is_empty());
}
