//! The scheduler run against in-process API servers, with Node objects as a kubelet would
//! register them: pods land on nodes that fit (resources, taints and tolerations,
//! nodeSelector, host ports); a pod too big for every node stays Pending with
//! `PodScheduled=False` and kube-scheduler's `FailedScheduling` words, and is bound soon
//! after a big enough node registers; nine pods spread over three zones land 3/3/3; required
//! anti-affinity keeps replicas apart. Everything is read back from the API.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Component, Plane};
use rudder_apiserver::test_support::eventually;
use rudder_proto::api::ListRequest;
use rudder_proto::client::ApiClient;
use serde_json::{json, Value};

async fn create_node(client: &ApiClient, name: &str, cpu: &str, labels: Value, taints: Value) {
    let mut labels = labels;
    labels["kubernetes.io/hostname"] = json!(name);
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": name, "labels": labels },
        "spec": { "taints": taints },
        "status": {
            "capacity": { "cpu": cpu, "memory": "8Gi", "pods": "110" },
            "allocatable": { "cpu": cpu, "memory": "8Gi", "pods": "110" },
            "conditions": [{ "type": "Ready", "status": "True" }]
        }
    });
    client
        .create_object("nodes", "", &node)
        .await
        .expect("creating a node");
}

async fn create_pod(client: &ApiClient, name: &str, cpu: &str, extra: Value) {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "default", "labels": { "app": "web" } },
        "spec": { "containers": [{ "name": "c", "image": "kubia",
                                   "resources": { "requests": { "cpu": cpu } } }] }
    });
    if let Value::Object(extra) = extra {
        for (field, value) in extra {
            if field == "labels" {
                pod["metadata"]["labels"] = value;
            } else if field == "ports" {
                pod["spec"]["containers"][0]["ports"] = value;
            } else {
                pod["spec"][field] = value;
            }
        }
    }
    client
        .create_object("pods", "default", &pod)
        .await
        .expect("creating a pod");
}

async fn pod(client: &ApiClient, name: &str) -> Value {
    client
        .get_object("pods", "default", name)
        .await
        .expect("reading a pod")
}

fn node_of(pod: &Value) -> Option<&str> {
    pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty())
}

fn scheduled_condition(pod: &Value) -> Option<&Value> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "PodScheduled")
}

async fn wait_bound(client: &ApiClient, name: &str) -> String {
    eventually(&format!("{name} bound"), || async {
        node_of(&pod(client, name).await).is_some()
    })
    .await;
    node_of(&pod(client, name).await)
        .expect("bound")
        .to_string()
}

async fn events_about(client: &ApiClient, name: &str) -> Vec<Value> {
    let listed = client
        .list(ListRequest {
            resource: "events".into(),
            namespace: "default".into(),
            ..Default::default()
        })
        .await
        .expect("listing events");
    listed
        .items
        .iter()
        .map(|item| serde_json::from_slice::<Value>(item).expect("an event"))
        .filter(|event| event["involvedObject"]["name"] == name)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_land_where_they_fit_and_a_pod_too_big_waits_in_kubernetes_words() {
    let plane = Plane::start(1).await;
    let client = plane.client.clone();
    create_node(&client, "node-1", "2", json!({ "disk": "ssd" }), json!([])).await;
    create_node(&client, "node-2", "2", json!({}), json!([])).await;
    let infra = json!([{ "key": "dedicated", "value": "infra", "effect": "NoSchedule" }]);
    create_node(&client, "node-3", "8", json!({}), infra).await;
    let scheduler = Component::scheduler(plane.new_client());

    // Too big for every node it tolerates.
    create_pod(&client, "big", "4", json!({})).await;
    let expected = "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: infra}, \
                    2 Insufficient cpu.";
    eventually("big is reported unschedulable", || async {
        let big = pod(&client, "big").await;
        scheduled_condition(&big).is_some_and(|c| {
            c["status"] == "False" && c["reason"] == "Unschedulable" && c["message"] == expected
        })
    })
    .await;
    assert_eq!(node_of(&pod(&client, "big").await), None);
    eventually("a FailedScheduling event for big", || async {
        events_about(&client, "big").await.iter().any(|e| {
            e["reason"] == "FailedScheduling" && e["type"] == "Warning" && e["message"] == expected
        })
    })
    .await;

    // A big enough node registers: big is bound to it soon after.
    let registered = Instant::now();
    create_node(&client, "node-4", "8", json!({}), json!([])).await;
    assert_eq!(wait_bound(&client, "big").await, "node-4");
    let waited = registered.elapsed();
    assert!(
        waited < Duration::from_secs(1),
        "bound {waited:?} after the node registered: the node event must not wait out the \
         pod's backoff when nothing else is queued"
    );
    let big = pod(&client, "big").await;
    assert_eq!(
        scheduled_condition(&big).expect("a condition")["status"],
        "True"
    );
    eventually("a Scheduled event for big", || async {
        events_about(&client, "big").await.iter().any(|e| {
            e["reason"] == "Scheduled"
                && e["message"] == "Successfully assigned default/big to node-4"
        })
    })
    .await;

    // A toleration opens node-3; a nodeSelector narrows to node-1.
    let tolerates = json!([{ "key": "dedicated", "operator": "Equal", "value": "infra",
                             "effect": "NoSchedule" }]);
    create_pod(
        &client,
        "infra",
        "100m",
        json!({ "tolerations": tolerates, "nodeSelector": { "kubernetes.io/hostname": "node-3" } }),
    )
    .await;
    create_pod(
        &client,
        "fast",
        "100m",
        json!({ "nodeSelector": { "disk": "ssd" } }),
    )
    .await;
    assert_eq!(wait_bound(&client, "infra").await, "node-3");
    assert_eq!(wait_bound(&client, "fast").await, "node-1");

    // Two pods wanting host port 8080 on node-2: the second waits, its message says why.
    let pinned = json!({ "kubernetes.io/hostname": "node-2" });
    let port = json!([{ "containerPort": 8080, "hostPort": 8080 }]);
    create_pod(
        &client,
        "port-a",
        "100m",
        json!({ "nodeSelector": pinned, "ports": port }),
    )
    .await;
    assert_eq!(wait_bound(&client, "port-a").await, "node-2");
    create_pod(
        &client,
        "port-b",
        "100m",
        json!({ "nodeSelector": pinned, "ports": port }),
    )
    .await;
    eventually("port-b is reported unschedulable", || async {
        let b = pod(&client, "port-b").await;
        scheduled_condition(&b).is_some_and(|c| {
            c["message"].as_str().is_some_and(|m| {
                m.contains("1 node(s) didn't have free ports for the requested pod ports")
            })
        })
    })
    .await;
    assert_eq!(node_of(&pod(&client, "port-b").await), None);

    // Plain pods fill what is left and never land on the tainted node.
    for i in 0..4 {
        create_pod(&client, &format!("small-{i}"), "500m", json!({})).await;
    }
    for i in 0..4 {
        let node = wait_bound(&client, &format!("small-{i}")).await;
        assert_ne!(node, "node-3", "small-{i} does not tolerate node-3's taint");
    }
    scheduler.stop().await;
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nine_pods_spread_three_per_zone_and_anti_affinity_keeps_replicas_apart() {
    let plane = Plane::start(1).await;
    let client = plane.client.clone();
    for (i, zone) in ["a", "a", "b", "b", "c", "c"].iter().enumerate() {
        let labels = json!({ "topology.kubernetes.io/zone": zone });
        create_node(&client, &format!("node-{i}"), "16", labels, json!([])).await;
    }
    let scheduler = Component::scheduler(plane.new_client());

    let spread = json!([{ "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                          "whenUnsatisfiable": "DoNotSchedule",
                          "labelSelector": { "matchLabels": { "app": "spread" } } }]);
    for i in 0..9 {
        create_pod(
            &client,
            &format!("spread-{i}"),
            "100m",
            json!({ "labels": { "app": "spread" }, "topologySpreadConstraints": spread }),
        )
        .await;
    }
    let mut per_zone = BTreeMap::new();
    for i in 0..9 {
        let node = wait_bound(&client, &format!("spread-{i}")).await;
        let index: usize = node.trim_start_matches("node-").parse().expect("node-N");
        *per_zone
            .entry(["a", "a", "b", "b", "c", "c"][index])
            .or_insert(0) += 1;
    }
    assert_eq!(per_zone, BTreeMap::from([("a", 3), ("b", 3), ("c", 3)]));

    let apart = json!({ "podAntiAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": { "matchLabels": { "app": "apart" } },
        "topologyKey": "topology.kubernetes.io/zone" }] } });
    for i in 0..4 {
        create_pod(
            &client,
            &format!("apart-{i}"),
            "100m",
            json!({ "labels": { "app": "apart" }, "affinity": apart }),
        )
        .await;
    }
    eventually("three of four apart pods bound", || async {
        let mut bound = 0;
        for i in 0..4 {
            bound += usize::from(node_of(&pod(&client, &format!("apart-{i}")).await).is_some());
        }
        bound == 3
    })
    .await;
    let mut zones = Vec::new();
    for i in 0..4 {
        let apart = pod(&client, &format!("apart-{i}")).await;
        match node_of(&apart) {
            Some(node) => {
                let index: usize = node.trim_start_matches("node-").parse().expect("node-N");
                zones.push(["a", "a", "b", "b", "c", "c"][index]);
            }
            None => eventually("the fourth is reported unschedulable", || async {
                let apart = pod(&client, &format!("apart-{i}")).await;
                scheduled_condition(&apart).is_some_and(|c| {
                    c["message"] == "0/6 nodes are available: 6 node(s) didn't match pod anti-affinity rules."
                })
            })
            .await,
        }
    }
    zones.sort();
    assert_eq!(zones, ["a", "b", "c"], "one per zone");
    scheduler.stop().await;
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_that_fits_nowhere_preempts_a_lower_priority_one() {
    let plane = Plane::start(1).await;
    let client = plane.client.clone();
    create_node(&client, "node-1", "2", json!({}), json!([])).await;
    let scheduler = Component::scheduler(plane.new_client());
    create_pod(
        &client,
        "low",
        "1500m",
        json!({ "priority": 0, "terminationGracePeriodSeconds": 0 }),
    )
    .await;
    assert_eq!(wait_bound(&client, "low").await, "node-1");
    let low_uid = pod(&client, "low").await["metadata"]["uid"].clone();

    // Pods name a class for their priority; the API server's admission sets the number.
    let class = json!({
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": { "name": "high" }, "value": 1000
    });
    client
        .create_object("priorityclasses", "", &class)
        .await
        .expect("creating a PriorityClass");
    create_pod(&client, "high", "1", json!({ "priorityClassName": "high" })).await;
    assert_eq!(pod(&client, "high").await["spec"]["priority"], 1000);
    assert_eq!(wait_bound(&client, "high").await, "node-1");
    let high = pod(&client, "high").await;
    assert_eq!(high["status"]["nominatedNodeName"], "node-1");
    let low = client.get_object("pods", "default", "low").await;
    assert!(
        low.is_err() || low.as_ref().is_ok_and(|l| l["metadata"]["uid"] != low_uid),
        "the victim is gone"
    );
    eventually("a Preempted event for low", || async {
        events_about(&client, "low")
            .await
            .iter()
            .any(|e| e["reason"] == "Preempted")
    })
    .await;

    // Equal priority never preempts: a second high-priority pod waits.
    create_pod(
        &client,
        "also-high",
        "1500m",
        json!({ "priorityClassName": "high" }),
    )
    .await;
    eventually("also-high is reported unschedulable", || async {
        let pod = pod(&client, "also-high").await;
        scheduled_condition(&pod).is_some_and(|c| c["reason"] == "Unschedulable")
    })
    .await;
    assert_eq!(node_of(&pod(&client, "high").await), Some("node-1"));
    scheduler.stop().await;
    plane.shutdown().await;
}
