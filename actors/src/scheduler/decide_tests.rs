//! Tables for the decision: how many nodes are searched, which node wins, and the
//! `FailedScheduling` message when none does.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use serde_json::{json, Value};

use super::*;
use crate::scheduler::snapshot::PodKey;
use crate::scheduler::testing::{bound, pending, sized, snapshot_of, with_node_spec, with_spec};

fn tainted(name: &str, key: &str, value: &str, effect: &str) -> Arc<Node> {
    with_node_spec(
        &sized(name, "8", "16Gi", json!({})),
        json!({ "taints": [{ "key": key, "value": value, "effect": effect }] }),
    )
}

fn zones_of_two() -> Snapshot {
    let nodes: Vec<Arc<Node>> = ["a", "b", "c"]
        .iter()
        .flat_map(|zone| {
            (1..=2).map(move |i| sized(&format!("{zone}{i}"), "4", "8Gi", json!({ "zone": zone })))
        })
        .collect();
    snapshot_of(&nodes, &[])
}

fn per_zone(snapshot: &Snapshot) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for node in snapshot.nodes() {
        let zone = node.label("zone").unwrap_or("").to_string();
        *counts.entry(zone).or_insert(0) += node.pods().len();
    }
    counts
}

#[test]
fn nodes_to_find_adapts_to_the_cluster_size() {
    let table = [
        (50, None, 50),
        (100, None, 100),
        (1000, None, 420),
        (5000, None, 500),
        (10_000, None, 500),
        (1000, Some(0), 420),
        (1000, Some(100), 1000),
        (1000, Some(10), 100),
        (1000, Some(5), 100),
        (50, Some(10), 50),
    ];
    for (total, percentage, expected) in table {
        assert_eq!(
            nodes_to_find(total, percentage),
            expected,
            "{total} nodes at {percentage:?}"
        );
    }
}

#[test]
fn the_message_counts_reasons_sorted_as_strings() {
    let reasons = BTreeMap::from([
        ("Insufficient cpu".to_string(), 2),
        (
            "node(s) had untolerated taint {dedicated: infra}".to_string(),
            3,
        ),
    ]);
    assert_eq!(
        fit_error_message(5, &reasons),
        "0/5 nodes are available: 2 Insufficient cpu, 3 node(s) had untolerated taint {dedicated: infra}."
    );
    let reasons = BTreeMap::from([
        ("Insufficient cpu".to_string(), 2),
        ("Insufficient memory".to_string(), 10),
    ]);
    assert_eq!(
        fit_error_message(12, &reasons),
        "0/12 nodes are available: 10 Insufficient memory, 2 Insufficient cpu."
    );
    assert_eq!(
        fit_error_message(0, &BTreeMap::new()),
        "0/0 nodes are available:"
    );
}

#[test]
fn an_unschedulable_pod_gets_kubernetes_failed_scheduling_message() {
    let mut nodes = vec![
        sized("n1", "1", "8Gi", json!({})),
        sized("n2", "1", "8Gi", json!({})),
    ];
    for name in ["n3", "n4", "n5"] {
        nodes.push(tainted(name, "dedicated", "infra", "NoSchedule"));
    }
    let s = snapshot_of(&nodes, &[]);
    let err = place(&pending("p", json!({}), "2", "1Gi"), &s, 3, 0).unwrap_err();
    assert_eq!(
        err.message,
        "0/5 nodes are available: 2 Insufficient cpu, 3 node(s) had untolerated taint {dedicated: infra}."
    );
    assert_eq!(err.reasons.values().sum::<usize>(), 5);
    assert_eq!(
        err.plugins,
        BTreeSet::from(["NodeResourcesFit", "TaintToleration"])
    );
    assert_eq!(err.next_start, 3, "all five were searched");

    // One node short of two resources gives a reason for each.
    let s = snapshot_of(
        &[
            sized("n1", "1", "1Gi", json!({})),
            sized("n2", "1", "8Gi", json!({})),
            tainted("n3", "dedicated", "infra", "NoExecute"),
        ],
        &[],
    );
    let err = place(&pending("p", json!({}), "2", "2Gi"), &s, 0, 0).unwrap_err();
    assert_eq!(
        err.message,
        "0/3 nodes are available: 1 Insufficient memory, 1 node(s) had untolerated taint {dedicated: infra}, \
         2 Insufficient cpu."
    );

    let none = place(&pending("p", json!({}), "1", "1Gi"), &Snapshot::new(), 7, 0);
    assert_eq!(
        none.unwrap_err().message,
        "no nodes available to schedule pods"
    );
}

#[test]
fn the_pod_goes_to_the_best_node_and_ties_break_by_the_callers_value() {
    let busy = bound(&pending("busy", json!({}), "3", "6Gi"), "n1");
    let s = snapshot_of(
        &[
            sized("n1", "4", "8Gi", json!({})),
            sized("n2", "4", "8Gi", json!({})),
        ],
        &[busy],
    );
    let p = pending("p", json!({}), "500m", "1Gi");
    assert_eq!(
        place(&p, &s, 0, 0).unwrap(),
        Placement {
            node: "n2".into(),
            evaluated: 2,
            feasible: 2,
            next_start: 0
        }
    );

    // An untolerated PreferNoSchedule taint (weight 3) outweighs a fuller node.
    let soft = tainted("soft", "spot", "", "PreferNoSchedule");
    let s = snapshot_of(
        &[soft, sized("n2", "8", "16Gi", json!({}))],
        &[bound(&pending("busy", json!({}), "2", "4Gi"), "n2")],
    );
    assert_eq!(place(&p, &s, 0, 0).unwrap().node, "n2");

    let twins = snapshot_of(
        &[
            sized("a", "4", "8Gi", json!({})),
            sized("b", "4", "8Gi", json!({})),
        ],
        &[],
    );
    assert_eq!(place(&p, &twins, 0, 0).unwrap().node, "a");
    assert_eq!(place(&p, &twins, 0, 1).unwrap().node, "b");
    assert_eq!(place(&p, &twins, 0, 2).unwrap().node, "a");
    assert_eq!(
        place(&p, &twins, 1, 0).unwrap().node,
        "b",
        "the search began at b"
    );
}

#[test]
fn large_clusters_are_searched_in_part_from_where_the_last_search_stopped() {
    let nodes: Vec<Arc<Node>> = (0..200)
        .map(|i| sized(&format!("n{i:03}"), "4", "8Gi", json!({})))
        .collect();
    let s = snapshot_of(&nodes, &[]);
    let p = pending("p", json!({}), "100m", "128Mi");
    let placed = place(&p, &s, 150, 0).unwrap();
    assert_eq!(
        (placed.evaluated, placed.feasible, placed.next_start),
        (100, 100, 50)
    );
    assert_eq!(
        placed.node, "n150",
        "all tie; the first found wins at tie_break 0"
    );
    let options = Options {
        percentage_of_nodes_to_score: Some(100),
        ..Options::default()
    };
    let all = place_with(&p, &s, 150, 0, &options).unwrap();
    assert_eq!((all.evaluated, all.next_start), (200, 150));
}

#[test]
fn nine_spread_pods_placed_one_by_one_end_three_per_zone() {
    for when in ["DoNotSchedule", "ScheduleAnyway"] {
        let mut s = zones_of_two();
        let constraint = json!([{ "maxSkew": 1, "topologyKey": "zone",
            "whenUnsatisfiable": when, "labelSelector": { "matchLabels": { "app": "web" } } }]);
        let mut start = 0;
        for i in 0..9u64 {
            let p = with_spec(
                pending(
                    &format!("web-{i}"),
                    json!({ "app": "web" }),
                    "100m",
                    "128Mi",
                ),
                "topologySpreadConstraints",
                constraint.clone(),
            );
            let placed = place(&p, &s, start, i).expect("a zone within the skew");
            start = placed.next_start;
            s.assume(&p, &placed.node);
        }
        let expected: BTreeMap<String, usize> = BTreeMap::from([
            ("a".to_string(), 3),
            ("b".to_string(), 3),
            ("c".to_string(), 3),
        ]);
        assert_eq!(per_zone(&s), expected, "{when}");
    }
}

#[test]
fn default_spreading_by_owner_spreads_replicas_over_nodes() {
    let mut s = zones_of_two();
    let web: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
    let options = Options {
        default_spread_selector: spread::default_selector(&[&web], None),
        ..Options::default()
    };
    for i in 0..6u64 {
        let p = pending(
            &format!("web-{i}"),
            json!({ "app": "web" }),
            "100m",
            "128Mi",
        );
        let placed = place_with(&p, &s, 0, 0, &options).unwrap();
        s.assume(&p, &placed.node);
    }
    assert!(
        s.nodes().iter().all(|n| n.pods().len() == 1),
        "one per node"
    );
}

#[test]
fn required_anti_affinity_keeps_replicas_on_separate_nodes() {
    let mut s = snapshot_of(
        &[
            sized("n1", "4", "8Gi", json!({})),
            sized("n2", "4", "8Gi", json!({})),
            sized("n3", "4", "8Gi", json!({})),
        ],
        &[],
    );
    let replica = |i: u64| {
        with_spec(
            pending(
                &format!("web-{i}"),
                json!({ "app": "web" }),
                "100m",
                "128Mi",
            ),
            "affinity",
            json!({ "podAntiAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [
                { "topologyKey": "kubernetes.io/hostname",
                  "labelSelector": { "matchLabels": { "app": "web" } } }] } }),
        )
    };
    let mut used = BTreeSet::new();
    for i in 0..3 {
        let p = replica(i);
        let placed = place(&p, &s, 0, i).unwrap();
        assert!(used.insert(placed.node.clone()), "{} twice", placed.node);
        s.assume(&p, &placed.node);
    }
    let err = place(&replica(3), &s, 0, 0).unwrap_err();
    assert_eq!(
        err.message,
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
    );
    assert_eq!(err.plugins, BTreeSet::from(["InterPodAffinity"]));

    // A pod without the term is still kept off by the replicas' own anti-affinity.
    let other = pending("other", json!({ "app": "web" }), "100m", "128Mi");
    let err = place(&other, &s, 0, 0).unwrap_err();
    assert_eq!(
        err.message,
        "0/3 nodes are available: 3 node(s) didn't satisfy existing pods anti-affinity rules."
    );
}

#[test]
fn a_pod_pinned_by_name_checks_only_that_node() {
    let s = snapshot_of(
        &[
            sized("n1", "4", "8Gi", json!({})),
            sized("n2", "1", "8Gi", json!({})),
            sized("n3", "4", "8Gi", json!({})),
        ],
        &[],
    );
    let pin = |cpu: &str, terms: Value| {
        with_spec(
            pending("ds", json!({}), cpu, "1Gi"),
            "affinity",
            json!({ "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": terms } } }),
        )
    };
    let n2 = json!([{ "matchFields": [
        { "key": "metadata.name", "operator": "In", "values": ["n2"] }] }]);
    let err = place(&pin("2", n2.clone()), &s, 0, 0).unwrap_err();
    assert_eq!(
        err.message,
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't satisfy plugin(s) \
         [NodeAffinity]."
    );
    assert_eq!(err.next_start, 1);
    let placed = place(&pin("500m", n2), &s, 2, 0).unwrap();
    assert_eq!(
        (placed.node.as_str(), placed.evaluated, placed.next_start),
        ("n2", 1, 0)
    );

    let disjoint = json!([{ "matchFields": [
        { "key": "metadata.name", "operator": "In", "values": ["n1"] },
        { "key": "metadata.name", "operator": "In", "values": ["n2"] }] }]);
    let err = place(&pin("500m", disjoint), &s, 0, 0).unwrap_err();
    assert_eq!(
        err.message,
        "0/3 nodes are available: pod affinity terms conflict."
    );
}

#[test]
fn only_unbound_live_pods_for_the_default_scheduler_are_ours() {
    let p = pending("p", json!({}), "1m", "1Mi");
    let mut ended = p.clone();
    ended.status = Some(serde_json::from_value(json!({ "phase": "Failed" })).unwrap());
    let table = [
        (p.clone(), true, "pending"),
        (
            with_spec(p.clone(), "schedulerName", json!("")),
            true,
            "empty name",
        ),
        (
            with_spec(p.clone(), "schedulerName", json!("default-scheduler")),
            true,
            "default",
        ),
        (
            with_spec(p.clone(), "schedulerName", json!("other")),
            false,
            "another",
        ),
        ((*bound(&p, "n1")).clone(), false, "bound"),
        (ended, false, "ended"),
    ];
    for (pod, expected, why) in table {
        assert_eq!(is_ours(&pod), expected, "{why}");
    }
    assert!(is_gated(&with_spec(
        p.clone(),
        "schedulingGates",
        json!([{ "name": "wait" }])
    )));
    assert!(!is_gated(&p));
}

#[test]
fn a_pod_goes_where_its_claims_volume_is_or_waits_for_its_claim() {
    let nodes: Vec<Arc<Node>> = (1..=3)
        .map(|i| sized(&format!("n{i}"), "4", "8Gi", json!({})))
        .collect();
    let mut snapshot = snapshot_of(&nodes, &[]);
    let using = with_spec(
        pending("web-0", json!({ "app": "web" }), "100m", "64Mi"),
        "volumes",
        json!([{ "name": "data", "persistentVolumeClaim": { "claimName": "data-web-0" } }]),
    );
    let missing = place(&using, &snapshot, 0, 0).expect_err("no claim yet");
    assert_eq!(
        missing.message,
        "0/3 nodes are available: persistentvolumeclaim \"data-web-0\" not found."
    );
    assert_eq!(
        missing.plugins,
        BTreeSet::from([crate::scheduler::unfit::VOLUME_BINDING_PLUGIN])
    );

    let claim = serde_json::from_value(json!({
        "metadata": { "name": "data-web-0", "namespace": "default",
                      "annotations": { "pv.kubernetes.io/bind-completed": "yes" } },
        "spec": { "volumeName": "pvc-1", "accessModes": ["ReadWriteOnce"] } }))
    .expect("a claim decodes");
    let volume = serde_json::from_value(json!({
        "metadata": { "name": "pvc-1" },
        "spec": { "hostPath": { "path": "/var/lib/rudder/storage/pvc-1" },
                  "nodeAffinity": { "required": { "nodeSelectorTerms": [{ "matchExpressions": [
                      { "key": "kubernetes.io/hostname", "operator": "In",
                        "values": ["n2"] }] }] } } } }))
    .expect("a volume decodes");
    snapshot.storage_mut().upsert_claim(Arc::new(claim));
    snapshot.storage_mut().upsert_volume(Arc::new(volume));
    for start in 0..3 {
        let placed = place(&using, &snapshot, start, start as u64).expect("placed");
        assert_eq!(placed.node, "n2", "from {start}: the volume lives on n2");
    }
    snapshot.storage_mut().remove_volume("pvc-1");
    let gone = place(&using, &snapshot, 0, 0).expect_err("its volume is gone");
    assert_eq!(
        gone.message,
        "0/3 nodes are available: 3 node(s) unavailable due to one or more pvc(s) bound to \
         non-existent pv(s)."
    );
}

/// `pod` of `priority`, pending, nominated to `node` by a preemption.
fn nominated(pod: Pod, priority: i32, node: &str) -> Arc<Pod> {
    let mut pod = with_spec(pod, "priority", json!(priority));
    pod.status = Some(serde_json::from_value(json!({ "nominatedNodeName": node })).unwrap());
    Arc::new(pod)
}

#[test]
fn room_freed_for_a_nominated_pod_of_equal_or_higher_priority_is_left_to_it() {
    let mut s = snapshot_of(
        &[
            sized("freed", "4", "8Gi", json!({})),
            sized("other", "4", "8Gi", json!({})),
            sized("small", "1", "8Gi", json!({})),
        ],
        &[bound(&pending("busy", json!({}), "3", "6Gi"), "other")],
    );
    let p = with_spec(pending("p", json!({}), "2", "1Gi"), "priority", json!(100));
    // Alone, p goes to the emptiest node.
    assert_eq!(place(&p, &s, 0, 0).unwrap().node, "freed");
    // A pod of p's priority was promised 3 of freed's 4 cpus: p must go elsewhere, and with
    // the others full it cannot go at all.
    let promised = nominated(pending("promised", json!({}), "3", "1Gi"), 100, "freed");
    s.nominate(&PodKey::of(&promised), Some(promised.clone()));
    let refused = place(&p, &s, 0, 0).unwrap_err();
    assert_eq!(
        refused.message,
        "0/3 nodes are available: 3 Insufficient cpu."
    );
    // A lower-priority nomination does not hold room against p.
    let lower = nominated(pending("promised", json!({}), "3", "1Gi"), 10, "freed");
    s.nominate(&PodKey::of(&lower), Some(lower));
    assert_eq!(place(&p, &s, 0, 0).unwrap().node, "freed");
    // The nominated pod itself is not in its own way, and a pod bound or gone holds nothing.
    let itself = nominated(pending("p", json!({}), "2", "1Gi"), 100, "freed");
    s.nominate(&PodKey::of(&promised), Some(promised.clone()));
    s.nominate(&PodKey::of(&itself), Some(itself.clone()));
    assert!(place(&p, &s, 0, 0).is_err(), "promised still holds freed");
    s.nominate(&PodKey::of(&promised), None);
    assert_eq!(place(&itself, &s, 0, 0).unwrap().node, "freed");
}
