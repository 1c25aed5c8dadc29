//! Tables for preemption: who may preempt, which nodes are candidates, the victims on a node
//! and the node chosen.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use serde_json::{json, Value};

use super::*;
use crate::pods::cached::Pod;
use crate::scheduler::decide::place;
use crate::scheduler::testing::{bound, pending, sized, snapshot_of, with_node_spec, with_spec};

/// `pod` with `edit` applied to its JSON.
fn edited(pod: Pod, edit: impl FnOnce(&mut Value)) -> Pod {
    let mut json = serde_json::to_value(&pod).expect("a test pod encodes");
    edit(&mut json);
    serde_json::from_value(json).expect("a test pod decodes")
}

/// `pod` at `priority`.
fn at(pod: Pod, priority: i32) -> Pod {
    with_spec(pod, "priority", json!(priority))
}

/// A pod labelled `app: <name>` requesting `cpu`, at `priority`.
fn pod_of(name: &str, cpu: &str, priority: i32) -> Pod {
    at(
        pending(name, json!({ "app": name }), cpu, "128Mi"),
        priority,
    )
}

/// `pod_of` bound to `node`.
fn running(name: &str, cpu: &str, priority: i32, node: &str) -> Arc<Pod> {
    bound(&pod_of(name, cpu, priority), node)
}

/// `running`, started at `time`.
fn started_at(name: &str, cpu: &str, priority: i32, node: &str, time: &str) -> Arc<Pod> {
    let pod = edited(pod_of(name, cpu, priority), |json| {
        json["status"]["startTime"] = json!(time);
    });
    bound(&pod, node)
}

/// A node with 4 cpus.
fn node(name: &str) -> Arc<Node> {
    sized(name, "4", "8Gi", json!({}))
}

/// The preemptor: `cpu` at priority 100.
fn preemptor(cpu: &str) -> Pod {
    pod_of("p", cpu, 100)
}

/// The node and the victims' names `preempt_with` chooses for `pod`, after `place` found no
/// node for it.
fn chosen_with(
    pod: &Pod,
    snapshot: &Snapshot,
    options: &Options<'_>,
) -> Option<(String, Vec<String>)> {
    let why = place(pod, snapshot, 0, 0).expect_err("the pod fits nowhere as things are");
    let preemption = preempt_with(pod, snapshot, &why, options)?;
    let victims = preemption
        .victims
        .iter()
        .map(|v| v.metadata.name.clone().unwrap_or_default())
        .collect();
    Some((preemption.node, victims))
}

fn chosen(pod: &Pod, snapshot: &Snapshot) -> Option<(String, Vec<String>)> {
    chosen_with(pod, snapshot, &Options::default())
}

fn expect(node: &str, victims: &[&str]) -> Option<(String, Vec<String>)> {
    Some((
        node.to_string(),
        victims.iter().map(|v| v.to_string()).collect(),
    ))
}

/// A table row: what it shows, the pods, what is expected.
type Row<E> = (&'static str, Vec<Arc<Pod>>, E);

/// The node chosen and its victims' names.
type Chosen = (String, Vec<String>);

#[test]
fn priority_is_the_specs_or_zero() {
    assert_eq!(priority(&preemptor("1")), 100);
    assert_eq!(priority(&pending("p", json!({}), "1", "1Gi")), 0);
    assert_eq!(priority(&at(pending("p", json!({}), "1", "1Gi"), -5)), -5);
}

#[test]
fn candidates_sought_are_a_tenth_of_the_nodes_at_least_a_hundred() {
    let table = [
        (0, 0),
        (50, 50),
        (100, 100),
        (999, 100),
        (1000, 100),
        (5000, 500),
    ];
    for (nodes, expected) in table {
        assert_eq!(candidates_to_find(nodes), expected, "{nodes} nodes");
    }
}

#[test]
fn one_low_priority_victim_on_the_only_node_makes_room() {
    let low = running("low", "3", 0, "n1");
    let s = snapshot_of(&[node("n1")], &[Arc::clone(&low)]);
    let p = preemptor("2");
    let why = place(&p, &s, 0, 0).unwrap_err();
    assert_eq!(
        preempt(&p, &s, &why),
        Some(Preemption {
            node: "n1".into(),
            victims: vec![low],
        })
    );

    let unset = bound(&pending("unset", json!({}), "3", "128Mi"), "n1");
    let s = snapshot_of(&[node("n1")], &[unset]);
    assert_eq!(
        chosen(&p, &s),
        expect("n1", &["unset"]),
        "no priority is priority 0"
    );
}

#[test]
fn of_two_nodes_the_one_needing_fewer_victims_wins() {
    let s = snapshot_of(
        &[node("n1"), node("n2")],
        &[
            running("a", "2", 0, "n1"),
            running("b", "2", 0, "n1"),
            running("c", "4", 0, "n2"),
        ],
    );
    for offset in [0, 1, 7] {
        let options = Options {
            offset,
            ..Options::default()
        };
        assert_eq!(
            chosen_with(&preemptor("3"), &s, &options),
            expect("n2", &["c"]),
            "starting at {offset}"
        );
    }
}

#[test]
fn reprieve_keeps_the_pods_that_need_not_go() {
    let table: Vec<Row<&[&str]>> = vec![
        (
            "the lowest goes, the two above stay",
            vec![
                running("a", "1", 1, "n1"),
                running("b", "1", 2, "n1"),
                running("c", "2", 0, "n1"),
            ],
            &["c"],
        ),
        (
            "the most important are put back first, not the smallest",
            vec![
                running("a", "2", 1, "n1"),
                running("b", "1", 2, "n1"),
                running("c", "1", 0, "n1"),
            ],
            &["a"],
        ),
        (
            "at equal priority the one started earlier stays",
            vec![
                started_at("late", "2", 0, "n1", "2024-06-01T00:00:00Z"),
                started_at("early", "2", 0, "n1", "2024-01-01T00:00:00Z"),
            ],
            &["late"],
        ),
        (
            "a pod not started yet counts as the latest",
            vec![
                running("pending", "2", 0, "n1"),
                started_at("early", "2", 0, "n1", "2024-01-01T00:00:00Z"),
            ],
            &["pending"],
        ),
        (
            "every pod of lower priority, if it takes all",
            vec![running("a", "2", 1, "n1"), running("b", "2", 0, "n1")],
            &["a", "b"],
        ),
    ];
    for (why, pods, victims) in table {
        let s = snapshot_of(&[node("n1")], &pods);
        let needed = if victims.len() == 2 { "3" } else { "2" };
        assert_eq!(
            chosen(&preemptor(needed), &s),
            expect("n1", victims),
            "{why}"
        );
    }
}

#[test]
fn pods_of_equal_or_higher_priority_are_never_victims() {
    let s = snapshot_of(
        &[node("n1")],
        &[
            running("peer", "3", 100, "n1"),
            running("low", "1", 0, "n1"),
        ],
    );
    assert_eq!(
        chosen(&preemptor("3"), &s),
        None,
        "evicting low frees one cpu"
    );
    assert_eq!(chosen(&preemptor("1"), &s), expect("n1", &["low"]));

    let s = snapshot_of(&[node("n1")], &[running("boss", "4", 1000, "n1")]);
    assert_eq!(chosen(&preemptor("1"), &s), None);
}

#[test]
fn a_pod_with_preemption_policy_never_waits() {
    let s = snapshot_of(&[node("n1")], &[running("low", "4", 0, "n1")]);
    let polite = with_spec(preemptor("1"), "preemptionPolicy", json!("Never"));
    assert!(!can_preempt(&polite, &s));
    assert_eq!(chosen(&polite, &s), None);
    let eager = with_spec(
        preemptor("1"),
        "preemptionPolicy",
        json!("PreemptLowerPriority"),
    );
    assert_eq!(chosen(&eager, &s), expect("n1", &["low"]));
}

#[test]
fn a_node_failing_on_a_taint_is_not_a_candidate() {
    let tainted = with_node_spec(
        &node("n1"),
        json!({ "taints": [{ "key": "dedicated", "value": "infra", "effect": "NoSchedule" }] }),
    );
    let pods = [
        running("one", "4", 0, "n1"),
        running("a", "2", 0, "n2"),
        running("b", "2", 0, "n2"),
    ];
    let s = snapshot_of(&[Arc::clone(&tainted), node("n2")], &pods);
    assert_eq!(
        chosen(&preemptor("3"), &s),
        expect("n2", &["a", "b"]),
        "n1 would need one victim only, but its taint stays"
    );

    let tolerant = with_spec(
        preemptor("3"),
        "tolerations",
        json!([{ "key": "dedicated", "operator": "Exists" }]),
    );
    assert_eq!(chosen(&tolerant, &s), expect("n1", &["one"]));

    let s = snapshot_of(&[tainted], &[running("one", "4", 0, "n1")]);
    let why = place(&preemptor("3"), &s, 0, 0).unwrap_err();
    assert_eq!(why.plugins, BTreeSet::from(["TaintToleration"]));
    assert_eq!(preempt(&preemptor("3"), &s, &why), None);
}

#[test]
fn a_host_port_conflict_is_resolved_by_preempting_the_port_holder() {
    let on_port = |pod: Pod| {
        with_spec(
            pod,
            "containers",
            json!([{ "name": "c", "resources": { "requests": { "cpu": "1" } },
                     "ports": [{ "containerPort": 80, "hostPort": 8080 }] }]),
        )
    };
    let holder = bound(&on_port(pod_of("holder", "1", 0)), "n1");
    let s = snapshot_of(
        &[sized("n1", "8", "16Gi", json!({}))],
        &[running("other", "1", 0, "n1"), holder],
    );
    let p = on_port(preemptor("1"));
    let why = place(&p, &s, 0, 0).unwrap_err();
    assert_eq!(why.plugins, BTreeSet::from(["NodePorts"]));
    assert_eq!(chosen(&p, &s), expect("n1", &["holder"]));
}

#[test]
fn required_anti_affinity_is_resolved_but_required_affinity_is_not() {
    let s = snapshot_of(
        &[node("n1")],
        &[
            running("db", "1", 0, "n1"),
            running("cache", "1", 500, "n1"),
        ],
    );
    let term = |app: &str| {
        json!([{ "topologyKey": "kubernetes.io/hostname",
                 "labelSelector": { "matchLabels": { "app": app } } }])
    };
    let required = "requiredDuringSchedulingIgnoredDuringExecution";
    let shy = with_spec(
        preemptor("1"),
        "affinity",
        json!({ "podAntiAffinity": { required: term("db") } }),
    );
    assert_eq!(chosen(&shy, &s), expect("n1", &["db"]));

    let clingy = with_spec(
        preemptor("1"),
        "affinity",
        json!({ "podAffinity": { required: term("queue") } }),
    );
    assert_eq!(chosen(&clingy, &s), None, "no eviction brings a queue");
}

#[test]
fn a_spread_constraint_is_met_by_evicting_the_fewest_peers() {
    let web = |name: &str| {
        bound(
            &at(pending(name, json!({ "app": "web" }), "1", "128Mi"), 0),
            "n1",
        )
    };
    let s = snapshot_of(
        &[sized("n1", "8", "16Gi", json!({})), node("n2")],
        &[
            web("w1"),
            web("w2"),
            web("w3"),
            running("big", "4", 1000, "n2"),
        ],
    );
    let p = with_spec(
        at(pending("p", json!({ "app": "web" }), "1", "128Mi"), 100),
        "topologySpreadConstraints",
        json!([{ "maxSkew": 2, "topologyKey": "kubernetes.io/hostname",
                 "whenUnsatisfiable": "DoNotSchedule",
                 "labelSelector": { "matchLabels": { "app": "web" } } }]),
    );
    let why = place(&p, &s, 0, 0).unwrap_err();
    assert_eq!(
        why.plugins,
        BTreeSet::from(["NodeResourcesFit", "PodTopologySpread"])
    );
    // n1 holds 3 of the pod's peers and n2 none: with the pod, n1 may hold 2 at most.
    assert_eq!(chosen(&p, &s), expect("n1", &["w2", "w3"]));
}

#[test]
fn the_chosen_node_follows_kubernetes_order() {
    let table: Vec<Row<Option<Chosen>>> = vec![
        (
            "the lowest highest-priority victim",
            vec![running("a", "4", 5, "n1"), running("b", "4", 1, "n2")],
            expect("n2", &["b"]),
        ),
        (
            "the smallest sum of victim priorities",
            vec![
                running("x", "2", 3, "n1"),
                running("y", "2", 1, "n1"),
                running("u", "2", 3, "n2"),
                running("v", "2", 3, "n2"),
            ],
            expect("n1", &["x", "y"]),
        ),
        (
            "the latest start among the top victims",
            vec![
                started_at("old", "4", 0, "n1", "2024-01-01T00:00:00Z"),
                started_at("new", "4", 0, "n2", "2024-06-01T00:00:00Z"),
            ],
            expect("n2", &["new"]),
        ),
        (
            "then the first found",
            vec![running("a", "4", 0, "n1"), running("b", "4", 0, "n2")],
            expect("n1", &["a"]),
        ),
    ];
    for (why, pods, expected) in table {
        let s = snapshot_of(&[node("n1"), node("n2")], &pods);
        assert_eq!(chosen(&preemptor("3"), &s), expected, "{why}");
    }
}

#[test]
fn a_node_whose_victims_break_a_budget_loses() {
    let s = snapshot_of(
        &[node("n1"), node("n2")],
        &[
            running("guarded", "4", 0, "n1"),
            running("free", "4", 5, "n2"),
        ],
    );
    let p = preemptor("3");
    assert_eq!(chosen(&p, &s), expect("n1", &["guarded"]));

    let guarded = |pods: &[Arc<Pod>]| -> Vec<bool> {
        pods.iter()
            .map(|pod| pod.metadata.name.as_deref() == Some("guarded"))
            .collect()
    };
    let options = Options {
        offset: 0,
        budgets: Some(&guarded),
    };
    assert_eq!(chosen_with(&p, &s, &options), expect("n2", &["free"]));

    let s = snapshot_of(&[node("n1")], &[running("guarded", "4", 0, "n1")]);
    assert_eq!(
        chosen_with(&p, &s, &options),
        expect("n1", &["guarded"]),
        "breaking a budget is a last resort, not a veto"
    );
}

#[test]
fn a_pod_waiting_for_its_victims_does_not_preempt_again() {
    let nominated = |pod: Pod| {
        edited(pod, |json| {
            json["status"]["nominatedNodeName"] = json!("n1");
        })
    };
    let going = |priority: i32| {
        let pod = edited(pod_of("going", "3", priority), |json| {
            json["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        });
        bound(&pod, "n1")
    };
    let p = nominated(preemptor("2"));
    let waiting = snapshot_of(
        &[node("n1"), node("n2")],
        &[going(0), running("low", "3", 0, "n2")],
    );
    assert!(!can_preempt(&p, &waiting));
    assert_eq!(chosen(&p, &waiting), None);

    let cordoned = with_node_spec(&node("n1"), json!({ "unschedulable": true }));
    let moved_on = snapshot_of(
        &[cordoned, node("n2")],
        &[going(0), running("low", "3", 0, "n2")],
    );
    assert!(can_preempt(&p, &moved_on), "n1 cannot take it any more");
    assert_eq!(chosen(&p, &moved_on), expect("n2", &["low"]));

    let other = snapshot_of(
        &[node("n1"), node("n2")],
        &[going(500), running("low", "3", 0, "n2")],
    );
    assert!(
        can_preempt(&p, &other),
        "what terminates there is not its victim"
    );
    assert_eq!(chosen(&p, &other), expect("n2", &["low"]));
}

#[test]
fn taking_a_pod_out_and_restoring_it_leaves_the_snapshot_as_it_was() {
    let mut s = snapshot_of(
        &[node("n1")],
        &[running("a", "1", 0, "n1"), running("b", "2", 0, "n1")],
    );
    let key = PodKey::new("default", "a");
    let info = s.take_pod(&key).expect("a counts on n1");
    assert_eq!(s.node("n1").unwrap().requested().milli_cpu, 2000);
    assert_eq!(s.pod_node("default", "a"), None);
    s.restore_pod(info);
    assert_eq!(s.node("n1").unwrap().requested().milli_cpu, 3000);
    assert_eq!(s.pod_node("default", "a"), Some("n1"));
    assert_eq!(s.pod_count(), 2);
}

#[test]
fn the_dry_run_leaves_the_room_promised_to_a_nominated_pod_of_equal_or_higher_priority() {
    // n1 (4 cpus) runs low (3 cpus); another pod of the preemptor's priority was nominated
    // there for 3 cpus (low's room). The preemptor wants 2: evicting low frees 3, all of it
    // promised, so preempting on n1 cannot help it; n2's low-priority pod can go instead.
    let nominated_there = |priority: i32| {
        let mut promised = at(pending("promised", json!({}), "3", "128Mi"), priority);
        promised.status =
            Some(serde_json::from_value(json!({ "nominatedNodeName": "n1" })).unwrap());
        Arc::new(promised)
    };
    let pods = [
        running("low", "3", 0, "n1"),
        running("other", "3", 10, "n2"),
    ];
    let mut snapshot = snapshot_of(&[node("n1"), node("n2")], &pods);
    assert_eq!(chosen(&preemptor("2"), &snapshot), expect("n1", &["low"]));
    let promised = nominated_there(100);
    snapshot.nominate(&PodKey::of(&promised), Some(promised));
    assert_eq!(chosen(&preemptor("2"), &snapshot), expect("n2", &["other"]));
    // A nomination of lower priority holds nothing against the preemptor.
    let lower = nominated_there(50);
    snapshot.nominate(&PodKey::of(&lower), Some(lower));
    assert_eq!(chosen(&preemptor("2"), &snapshot), expect("n1", &["low"]));
}
