//! Tables for the node lifecycle pass.

use serde_json::json;

use super::*;
use crate::controllers::nodelifecycle::disruption::Mode;
use crate::scheduling::taints::{NOT_READY, UNREACHABLE, UNSCHEDULABLE};

fn at(seconds: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_700_000_000 + seconds).unwrap()
}

fn stamp(seconds: i64) -> String {
    at(seconds).to_string()
}

/// A node that reported `ready` at time 0 and whose Lease was renewed at `renewed`.
fn node(name: &str, ready: &str) -> Node {
    serde_json::from_value(json!({
        "metadata": { "name": name, "creationTimestamp": stamp(-1000) },
        "status": { "conditions": [{ "type": "Ready", "status": ready,
            "lastHeartbeatTime": stamp(0), "lastTransitionTime": stamp(-500) }] }
    }))
    .unwrap()
}

fn lease(name: &str, renewed: i64) -> Arc<Lease> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": { "name": name, "namespace": NODE_LEASE_NAMESPACE },
            "spec": { "renewTime": stamp(renewed) }
        }))
        .unwrap(),
    )
}

fn pod(name: &str, node: &str, tolerations: serde_json::Value) -> Arc<Pod> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": { "name": name, "namespace": "default" },
            "spec": { "nodeName": node, "containers": [], "tolerations": tolerations }
        }))
        .unwrap(),
    )
}

/// Nodes `n0..n{count}`, all Ready with Leases renewed at `renewed`, except the `silent` ones
/// (renewed at 0).
fn cluster(count: usize, silent: &[usize], renewed: i64) -> (Vec<Arc<Node>>, Vec<Arc<Lease>>) {
    let nodes = (0..count)
        .map(|i| Arc::new(node(&format!("n{i}"), "True")))
        .collect();
    let leases = (0..count)
        .map(|i| {
            lease(
                &format!("n{i}"),
                if silent.contains(&i) { 0 } else { renewed },
            )
        })
        .collect();
    (nodes, leases)
}

fn pass(
    nodes: &[Arc<Node>],
    leases: &[Arc<Lease>],
    pods: &[Arc<Pod>],
    d: &mut Disruption,
    now: i64,
) -> Plan {
    let observed = Observed {
        nodes,
        leases,
        pods,
    };
    reconcile(observed, d, &Settings::default(), at(now))
}

fn taint_keys(plan: &Plan, node: &str) -> Vec<(String, String)> {
    plan.taints
        .iter()
        .find(|t| t.node == node)
        .map(|t| {
            t.taints
                .iter()
                .map(|t| (t.key.clone(), t.effect.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn pair(key: &str, effect: &str) -> (String, String) {
    (key.to_string(), effect.to_string())
}

fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
    pods.iter()
        .map(|p| p.metadata.name.as_deref().unwrap())
        .collect()
}

/// Applies a plan's writes to the nodes, as the actor would.
fn apply(nodes: &[Arc<Node>], plan: &Plan) -> Vec<Arc<Node>> {
    nodes
        .iter()
        .map(|n| {
            let mut n = (**n).clone();
            let name = n.metadata.name.clone().unwrap();
            if let Some(c) = plan.conditions.iter().find(|c| c.node == name) {
                n.status.get_or_insert_with(Default::default).conditions =
                    Some(c.conditions.clone());
            }
            if let Some(t) = plan.taints.iter().find(|t| t.node == name) {
                n.spec.get_or_insert_with(Default::default).taints = Some(t.taints.clone());
            }
            Arc::new(n)
        })
        .collect()
}

#[test]
fn a_silent_node_becomes_unknown_tainted_and_loses_its_intolerant_pods() {
    let (nodes, leases) = cluster(3, &[1], 50);
    let pods = [
        pod("plain", "n1", json!([])),
        pod(
            "patient",
            "n1",
            json!([{ "key": UNREACHABLE, "operator": "Exists",
            "effect": "NoExecute", "tolerationSeconds": 300 }]),
        ),
        pod("elsewhere", "n0", json!([])),
    ];
    let mut d = Disruption::default();
    let plan = pass(&nodes, &leases, &pods, &mut d, 41);
    assert_eq!(plan.mode, Some(Mode::Normal));
    assert_eq!(plan.conditions.len(), 1);
    assert_eq!(plan.conditions[0].node, "n1");
    assert_eq!(plan.conditions[0].conditions[0].status, "Unknown");
    assert_eq!(
        taint_keys(&plan, "n1"),
        [
            pair(UNREACHABLE, "NoSchedule"),
            pair(UNREACHABLE, "NoExecute")
        ]
    );
    let no_execute = &plan.taints[0].taints[1];
    assert_eq!(no_execute.time_added.as_ref().map(|t| t.0), Some(at(41)));
    assert_eq!(names(&plan.evict), ["plain"]);
    let requeue = plan.requeue_after.unwrap();
    assert!(requeue <= Duration::from_secs(300), "{requeue:?}");

    let nodes = apply(&nodes, &plan);
    let (_, renewed) = cluster(3, &[1], 330);
    let later = pass(&nodes, &renewed, &pods, &mut d, 341);
    assert!(
        later.taints.is_empty() && later.conditions.is_empty(),
        "nothing new to write"
    );
    assert_eq!(
        names(&later.evict),
        ["plain", "patient"],
        "300 s after timeAdded"
    );
}

#[test]
fn a_node_reporting_not_ready_is_tainted_not_ready_and_a_swap_is_immediate() {
    let (mut nodes, leases) = cluster(3, &[], 50);
    nodes[2] = Arc::new(node("n2", "False"));
    let mut d = Disruption::default();
    let plan = pass(&nodes, &leases, &[], &mut d, 60);
    assert_eq!(
        taint_keys(&plan, "n2"),
        [pair(NOT_READY, "NoSchedule"), pair(NOT_READY, "NoExecute")]
    );
    // The same node, having gone silent after being tainted unreachable, reports NotReady:
    // the swap needs no token even with the bucket just emptied.
    let mut swapped = (*nodes[1]).clone();
    swapped
        .status
        .as_mut()
        .unwrap()
        .conditions
        .as_mut()
        .unwrap()[0]
        .status = "False".into();
    swapped.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
        taints: Some(vec![taint(UNREACHABLE, NO_EXECUTE, Some(at(0)))]),
        ..Default::default()
    });
    nodes[1] = Arc::new(swapped);
    let plan = pass(&nodes, &leases, &[], &mut d, 61);
    assert_eq!(
        taint_keys(&plan, "n1"),
        [pair(NOT_READY, "NoSchedule"), pair(NOT_READY, "NoExecute")]
    );
}

#[test]
fn a_node_ready_again_loses_the_controller_taints_and_keeps_its_own() {
    let (nodes, leases) = cluster(2, &[], 50);
    let mut tainted = (*nodes[0]).clone();
    tainted.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
        taints: Some(vec![
            taint("dedicated", NO_SCHEDULE, None),
            taint(UNREACHABLE, NO_SCHEDULE, None),
            taint(UNREACHABLE, NO_EXECUTE, Some(at(0))),
        ]),
        unschedulable: Some(true),
        ..Default::default()
    });
    let nodes = [Arc::new(tainted), nodes[1].clone()];
    let plan = pass(&nodes, &leases, &[], &mut Disruption::default(), 60);
    assert_eq!(
        taint_keys(&plan, "n0"),
        [
            pair("dedicated", "NoSchedule"),
            pair(UNSCHEDULABLE, "NoSchedule")
        ]
    );
}

#[test]
fn nodes_are_tainted_for_eviction_one_per_ten_seconds_per_zone() {
    let (nodes, leases) = cluster(10, &[3, 7], 50);
    let mut d = Disruption::default();
    let plan = pass(&nodes, &leases, &[], &mut d, 41);
    let no_execute = |plan: &Plan| -> Vec<String> {
        plan.taints
            .iter()
            .filter(|t| t.taints.iter().any(|t| t.effect == NO_EXECUTE))
            .map(|t| t.node.clone())
            .collect()
    };
    assert_eq!(no_execute(&plan), ["n3"]);
    assert_eq!(plan.taints.len(), 2, "n7 gets its NoSchedule taint at once");
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(10)));
    let nodes = apply(&nodes, &plan);
    assert!(no_execute(&pass(&nodes, &leases, &[], &mut d, 45)).is_empty());
    let plan = pass(&nodes, &leases, &[], &mut d, 51);
    assert_eq!(no_execute(&plan), ["n7"]);
}

#[test]
fn when_every_node_is_down_nothing_is_tainted_for_eviction_and_nothing_evicted() {
    let (nodes, leases) = cluster(3, &[0, 1, 2], 0);
    let pods = [pod("p", "n0", json!([]))];
    let mut d = Disruption::default();
    let plan = pass(&nodes, &leases, &pods, &mut d, 41);
    assert_eq!(plan.mode, Some(Mode::EnteringFullDisruption));
    assert_eq!(
        plan.conditions.len(),
        3,
        "the nodes are still marked Unknown"
    );
    assert!(plan.evict.is_empty());
    assert!(plan
        .taints
        .iter()
        .all(|t| t.taints.iter().all(|t| t.effect != NO_EXECUTE)));

    // A NoExecute taint set before the partition is lifted.
    let mut nodes = apply(&nodes, &plan);
    let mut old = (*nodes[0]).clone();
    old.spec
        .as_mut()
        .unwrap()
        .taints
        .as_mut()
        .unwrap()
        .push(taint(UNREACHABLE, NO_EXECUTE, Some(at(0))));
    nodes[0] = Arc::new(old);
    let plan = pass(&nodes, &leases, &pods, &mut d, 60);
    assert_eq!(plan.mode, Some(Mode::FullDisruption));
    assert_eq!(taint_keys(&plan, "n0"), [pair(UNREACHABLE, "NoSchedule")]);
    assert!(plan.evict.is_empty());
}

#[test]
fn after_a_full_disruption_the_nodes_get_a_fresh_grace_period() {
    let (nodes, leases) = cluster(3, &[0, 1, 2], 0);
    let mut d = Disruption::default();
    let plan = pass(&nodes, &leases, &[], &mut d, 41);
    let mut nodes = apply(&nodes, &plan);
    // n0's kubelet is back: it renewed its Lease and posted Ready.
    nodes[0] = Arc::new(node("n0", "True"));
    let mut leases = leases;
    leases[0] = lease("n0", 100);
    let plan = pass(&nodes, &leases, &[], &mut d, 100);
    assert_eq!(plan.mode, Some(Mode::Normal));
    assert_eq!(d.grace_restart, Some(at(100)));
    let no_execute: Vec<&str> = plan
        .taints
        .iter()
        .filter(|t| t.taints.iter().any(|t| t.effect == NO_EXECUTE))
        .map(|t| t.node.as_str())
        .collect();
    assert_eq!(
        no_execute,
        ["n1"],
        "still-silent nodes are tainted again, at the normal rate"
    );
}

#[test]
fn a_cordoned_node_is_tainted_unschedulable() {
    let (nodes, leases) = cluster(2, &[], 50);
    let mut cordoned = (*nodes[0]).clone();
    cordoned.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
        unschedulable: Some(true),
        ..Default::default()
    });
    let nodes = [Arc::new(cordoned), nodes[1].clone()];
    let plan = pass(&nodes, &leases, &[], &mut Disruption::default(), 60);
    assert_eq!(taint_keys(&plan, "n0"), [pair(UNSCHEDULABLE, "NoSchedule")]);
}
