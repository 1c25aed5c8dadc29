//! Tables for the snapshot: sums, waiting pods, updates, the assume cache, ports, images.

use super::*;
use crate::scheduler::testing::{bound, pending, pod, sized, snapshot_of};
use serde_json::json;

fn cpu_on(snapshot: &Snapshot, node: &str) -> (i64, i64) {
    let info = snapshot.node(node).expect("the node is in the snapshot");
    (info.requested().milli_cpu, info.requested().pods)
}

#[test]
fn bound_pods_add_up_on_their_node_and_ended_ones_do_not_count() {
    let mut s = snapshot_of(&[sized("n1", "4", "8Gi", json!({}))], &[]);
    let a = pending("a", json!({ "app": "web" }), "500m", "1Gi");
    assert!(s.add_pod(bound(&a, "n1")));
    assert!(s.add_pod(bound(&pending("b", json!({}), "250m", "1Gi"), "n1")));
    assert_eq!(cpu_on(&s, "n1"), (750, 2));
    assert_eq!(
        s.node("n1").unwrap().non_zero_requested().memory,
        2 * 1024 * 1024 * 1024
    );

    let mut done = (*bound(&a, "n1")).clone();
    done.status = Some(serde_json::from_value(json!({ "phase": "Succeeded" })).unwrap());
    assert!(!s.add_pod(Arc::new(done)), "an ended pod leaves");
    assert_eq!(cpu_on(&s, "n1"), (250, 1));
    assert!(!s.add_pod(Arc::new(a)), "an unscheduled pod does not count");
    assert_eq!(s.pod_count(), 1);
}

#[test]
fn an_update_replaces_the_pod_even_on_another_node() {
    let mut s = snapshot_of(
        &[
            sized("n1", "4", "8Gi", json!({})),
            sized("n2", "4", "8Gi", json!({})),
        ],
        &[],
    );
    let a = pending("a", json!({}), "1", "1Gi");
    s.add_pod(bound(&a, "n1"));
    s.add_pod(bound(&a, "n2"));
    assert_eq!(cpu_on(&s, "n1"), (0, 0));
    assert_eq!(cpu_on(&s, "n2"), (1000, 1));
    assert_eq!(s.pod_node("default", "a"), Some("n2"));
}

#[test]
fn pods_for_an_unknown_node_count_once_it_appears_and_wait_when_it_goes() {
    let mut s = Snapshot::new();
    s.add_pod(bound(&pending("a", json!({}), "1", "1Gi"), "n1"));
    assert!(s.node("n1").is_none());
    s.upsert_node(sized("n1", "4", "8Gi", json!({})));
    assert_eq!(cpu_on(&s, "n1"), (1000, 1));

    s.upsert_node(sized("n1", "8", "8Gi", json!({ "zone": "a" })));
    assert_eq!(
        cpu_on(&s, "n1"),
        (1000, 1),
        "an updated node keeps its pods"
    );
    assert_eq!(s.node("n1").unwrap().allocatable().milli_cpu, 8000);

    assert!(s.remove_node("n1").is_some());
    assert!(s.is_empty());
    s.upsert_node(sized("n1", "4", "8Gi", json!({})));
    assert_eq!(cpu_on(&s, "n1"), (1000, 1), "its pods waited");
    assert!(s.remove_pod("default", "a").is_some());
    assert_eq!(cpu_on(&s, "n1"), (0, 0));
}

#[test]
fn removing_a_node_keeps_the_others_in_order() {
    let names = ["n1", "n2", "n3", "n4"];
    let nodes: Vec<_> = names
        .iter()
        .map(|n| sized(n, "1", "1Gi", json!({})))
        .collect();
    let mut s = snapshot_of(&nodes, &[]);
    s.remove_node("n2");
    let order: Vec<&str> = s.nodes().iter().map(NodeInfo::name).collect();
    assert_eq!(order, ["n1", "n3", "n4"]);
    assert_eq!(s.index_of("n4"), Some(2));
    assert_eq!(s.node("n3").unwrap().name(), "n3");
}

#[test]
fn an_assumed_pod_counts_until_it_is_removed() {
    let mut s = snapshot_of(&[sized("n1", "4", "8Gi", json!({}))], &[]);
    let p = pending("a", json!({ "app": "web" }), "1", "1Gi");
    let key = s.assume(&p, "n1");
    assert_eq!(key.to_string(), "default/a");
    assert_eq!(cpu_on(&s, "n1"), (1000, 1));
    assert_eq!(s.node("n1").unwrap().groups()[0].count, 1);
    // The informer's update of the bound pod replaces the assumed copy.
    s.add_pod(bound(&p, "n1"));
    assert_eq!(cpu_on(&s, "n1"), (1000, 1));
    assert!(s.remove_pod("default", "a").is_some());
    assert_eq!(cpu_on(&s, "n1"), (0, 0));
    assert!(s.node("n1").unwrap().groups().is_empty());
    assert!(s.remove_pod("default", "a").is_none());
}

#[test]
fn label_groups_and_affinity_lists_follow_the_pods() {
    let mut s = snapshot_of(&[sized("n1", "4", "8Gi", json!({}))], &[]);
    for name in ["a", "b"] {
        s.add_pod(bound(
            &pending(name, json!({ "app": "web" }), "1", "1Gi"),
            "n1",
        ));
    }
    let apart = pod(json!({ "metadata": { "name": "c", "namespace": "default",
        "labels": { "app": "db" } },
        "spec": { "nodeName": "n1", "containers": [], "affinity": { "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [{ "topologyKey": "zone",
                "labelSelector": { "matchLabels": { "app": "db" } } }] } } } }));
    s.add_pod(Arc::new(apart));
    let n1 = s.node("n1").unwrap();
    let counts: Vec<(String, usize)> = n1
        .groups()
        .iter()
        .map(|g| (g.labels["app"].clone(), g.count))
        .collect();
    assert_eq!(counts, [("web".to_string(), 2), ("db".to_string(), 1)]);
    assert_eq!(n1.pods_with_affinity().len(), 1);
    assert_eq!(n1.pods_with_required_anti_affinity().len(), 1);
    s.remove_pod("default", "c");
    assert!(s.node("n1").unwrap().pods_with_affinity().is_empty());
}

#[test]
fn host_ports_default_their_address_and_protocol_and_collide_as_kubernetes_says() {
    let spec: PodSpec = serde_json::from_value(json!({
        "initContainers": [
            { "name": "side", "restartPolicy": "Always",
              "ports": [{ "containerPort": 1, "hostPort": 9000 }] },
            { "name": "init", "ports": [{ "containerPort": 1, "hostPort": 9001 }] }],
        "containers": [{ "name": "c", "ports": [
            { "containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1", "protocol": "UDP" },
            { "containerPort": 81 }] }] }))
    .unwrap();
    let ports = host_ports(&spec);
    let shown: Vec<(&str, &str, i32)> = ports
        .iter()
        .map(|p| (p.ip.as_str(), p.protocol.as_str(), p.port))
        .collect();
    assert_eq!(shown, [("0.0.0.0", "TCP", 9000), ("10.0.0.1", "UDP", 8080)]);

    let used: BTreeMap<HostPort, usize> = ports.into_iter().map(|p| (p, 1)).collect();
    let port = |ip: &str, protocol: &str, port: i32| HostPort {
        ip: ip.into(),
        protocol: protocol.into(),
        port,
    };
    let table = [
        (
            port("10.0.0.2", "TCP", 9000),
            true,
            "9000 is bound on every address",
        ),
        (
            port("0.0.0.0", "UDP", 8080),
            true,
            "0.0.0.0 wants it on 10.0.0.1 too",
        ),
        (port("10.0.0.1", "UDP", 8080), true, "the same address"),
        (port("10.0.0.2", "UDP", 8080), false, "another address"),
        (port("10.0.0.1", "TCP", 8080), false, "another protocol"),
    ];
    for (want, expected, why) in table {
        assert_eq!(want.conflicts_with(&used), expected, "{why}");
    }
}

#[test]
fn images_are_counted_per_node_reporting_them() {
    let with_image = |name: &str| {
        crate::scheduler::testing::node(json!({ "metadata": { "name": name },
            "status": { "images": [{ "names": ["nginx:1.25", "docker.io/library/nginx:1.25"],
                                     "sizeBytes": 500 }] } }))
    };
    let mut s = snapshot_of(&[with_image("n1"), with_image("n2")], &[]);
    assert_eq!(s.image_nodes("nginx:1.25"), 2);
    assert_eq!(s.node("n1").unwrap().image_size("nginx:1.25"), Some(500));
    s.remove_node("n1");
    assert_eq!(s.image_nodes("docker.io/library/nginx:1.25"), 1);
    s.upsert_node(sized("n2", "1", "1Gi", json!({})));
    assert_eq!(s.image_nodes("nginx:1.25"), 0, "n2 no longer reports it");
}
