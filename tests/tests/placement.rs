//! Issue 13's placement acceptance through the real binary: one `rudder server` (its
//! embedded scheduler leads), hollow nodes in processes of their own (`rudder node --hollow
//! --hollow-cpus N --labels ...`), taints set through the API as `kubectl taint` does. Pods
//! land on nodes that fit (resources, taints and tolerations, nodeSelector, host ports); a pod
//! too big for every node stays Pending with `PodScheduled=False` and kube-scheduler's
//! `FailedScheduling` words, and is bound within 1 s of a big enough node registering; nine
//! pods spread over three zones land 3/3/3; required anti-affinity keeps replicas apart; a
//! pod that fits nowhere preempts one of lower priority. Everything is read back from the API.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rudder_proto::api::ListRequest;
use rudder_proto::client::ApiClient;
use rudder_tests::{
    hollow_nodes_with, rudder_binary_beside_tests, until, wait_for_default_namespace,
    ProcessCluster,
};
use serde_json::{json, Value};
use tokio::process::Child;

/// The single master and its client, once the default namespace exists.
async fn master() -> (ProcessCluster, ApiClient) {
    let cluster = ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 1, &[]).unwrap();
    let client = ApiClient::new(cluster.endpoints());
    wait_for_default_namespace(&client).await;
    (cluster, client)
}

/// Hollow nodes started for a test; each process is killed by its PID at the end.
struct Nodes {
    servers: String,
    client: ApiClient,
    processes: Vec<Child>,
}

impl Nodes {
    fn new(cluster: &ProcessCluster) -> Self {
        Self {
            servers: cluster.endpoints().join(","),
            client: ApiClient::new(cluster.endpoints()),
            processes: Vec::new(),
        }
    }

    /// A hollow node `name` of `cpu` CPUs with `labels` (key=value,...), registered and Ready,
    /// then tainted with `taints` through the API; returns when the API shows it so.
    async fn add(&mut self, name: &str, cpu: u32, labels: &str, taints: Value) {
        let mut flags = vec![
            "--hollow-cpus".to_string(),
            cpu.to_string(),
            "--hollow-memory-mib".into(),
            "8192".into(),
        ];
        if !labels.is_empty() {
            flags.extend(["--labels".to_string(), labels.to_string()]);
        }
        // `rudder node --hollow --name P` names its nodes P-0, P-1, ...: one node, P-0.
        let prefix = name
            .strip_suffix("-0")
            .expect("hollow node names end in -0");
        self.processes
            .push(hollow_nodes_with(&self.servers, prefix, 1, &flags));
        let client = &self.client;
        until(
            &format!("{name} Ready"),
            Duration::from_secs(30),
            async || {
                client
                    .get_object("nodes", "", name)
                    .await
                    .is_ok_and(|node| {
                        node["status"]["conditions"].as_array().is_some_and(|c| {
                            c.iter()
                                .any(|c| c["type"] == "Ready" && c["status"] == "True")
                        })
                    })
            },
        )
        .await;
        if taints.as_array().is_some_and(|t| !t.is_empty()) {
            client
                .patch_object(
                    "nodes",
                    "",
                    name,
                    &json!({ "spec": { "taints": taints } }),
                    false,
                )
                .await
                .expect("tainting a node");
        }
    }

    async fn stop(self) {
        for mut process in self.processes {
            process.kill().await.expect("stopping a hollow node");
        }
    }
}

/// Waits for `condition` (every 20 ms), failing the test after 30 s.
async fn eventually(what: &str, condition: impl AsyncFnMut() -> bool) {
    until(what, Duration::from_secs(30), condition).await;
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
    eventually(&format!("{name} bound"), async || {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_land_where_they_fit_and_a_pod_too_big_waits_in_kubernetes_words() {
    let (cluster, client) = master().await;
    let mut nodes = Nodes::new(&cluster);
    nodes.add("node-1-0", 2, "disk=ssd", json!([])).await;
    nodes.add("node-2-0", 2, "", json!([])).await;
    let infra = json!([{ "key": "dedicated", "value": "infra", "effect": "NoSchedule" }]);
    nodes.add("node-3-0", 8, "", infra).await;

    // Too big for every node it tolerates.
    create_pod(&client, "big", "4", json!({})).await;
    let expected = "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: infra}, \
                    2 Insufficient cpu.";
    eventually("big is reported unschedulable", async || {
        let big = pod(&client, "big").await;
        scheduled_condition(&big).is_some_and(|c| {
            c["status"] == "False" && c["reason"] == "Unschedulable" && c["message"] == expected
        })
    })
    .await;
    assert_eq!(node_of(&pod(&client, "big").await), None);
    eventually("a FailedScheduling event for big", async || {
        events_about(&client, "big").await.iter().any(|e| {
            e["reason"] == "FailedScheduling" && e["type"] == "Warning" && e["message"] == expected
        })
    })
    .await;

    // A big enough node registers: big is bound to it soon after it is Ready.
    nodes.add("node-4-0", 8, "", json!([])).await;
    let ready = Instant::now();
    assert_eq!(wait_bound(&client, "big").await, "node-4-0");
    let waited = ready.elapsed();
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
    eventually("a Scheduled event for big", async || {
        events_about(&client, "big").await.iter().any(|e| {
            e["reason"] == "Scheduled"
                && e["message"] == "Successfully assigned default/big to node-4-0"
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
        json!({ "tolerations": tolerates, "nodeSelector": { "kubernetes.io/hostname": "node-3-0" } }),
    )
    .await;
    create_pod(
        &client,
        "fast",
        "100m",
        json!({ "nodeSelector": { "disk": "ssd" } }),
    )
    .await;
    assert_eq!(wait_bound(&client, "infra").await, "node-3-0");
    assert_eq!(wait_bound(&client, "fast").await, "node-1-0");

    // Two pods wanting host port 8080 on node-2-0: the second waits, its message says why.
    let pinned = json!({ "kubernetes.io/hostname": "node-2-0" });
    let port = json!([{ "containerPort": 8080, "hostPort": 8080 }]);
    create_pod(
        &client,
        "port-a",
        "100m",
        json!({ "nodeSelector": pinned, "ports": port }),
    )
    .await;
    assert_eq!(wait_bound(&client, "port-a").await, "node-2-0");
    create_pod(
        &client,
        "port-b",
        "100m",
        json!({ "nodeSelector": pinned, "ports": port }),
    )
    .await;
    eventually("port-b is reported unschedulable", async || {
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
        assert_ne!(
            node, "node-3-0",
            "small-{i} does not tolerate node-3-0's taint"
        );
    }
    nodes.stop().await;
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nine_pods_spread_three_per_zone_and_anti_affinity_keeps_replicas_apart() {
    let (cluster, client) = master().await;
    let mut nodes = Nodes::new(&cluster);
    for (i, zone) in ["a", "a", "b", "b", "c", "c"].iter().enumerate() {
        let labels = format!("topology.kubernetes.io/zone={zone}");
        nodes
            .add(&format!("node-{i}-0"), 16, &labels, json!([]))
            .await;
    }

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
        let index: usize = node
            .trim_start_matches("node-")
            .trim_end_matches("-0")
            .parse()
            .expect("node-N-0");
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
    eventually("three of four apart pods bound", async || {
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
                let index: usize = node
            .trim_start_matches("node-")
            .trim_end_matches("-0")
            .parse()
            .expect("node-N-0");
                zones.push(["a", "a", "b", "b", "c", "c"][index]);
            }
            None => eventually("the fourth is reported unschedulable", async || {
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
    nodes.stop().await;
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_fits_nowhere_preempts_a_lower_priority_one() {
    let (cluster, client) = master().await;
    let mut nodes = Nodes::new(&cluster);
    nodes.add("node-1-0", 2, "", json!([])).await;
    create_pod(
        &client,
        "low",
        "1500m",
        json!({ "priority": 0, "terminationGracePeriodSeconds": 0 }),
    )
    .await;
    assert_eq!(wait_bound(&client, "low").await, "node-1-0");
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
    assert_eq!(wait_bound(&client, "high").await, "node-1-0");
    let high = pod(&client, "high").await;
    assert_eq!(high["status"]["nominatedNodeName"], "node-1-0");
    let low = client.get_object("pods", "default", "low").await;
    assert!(
        low.is_err() || low.as_ref().is_ok_and(|l| l["metadata"]["uid"] != low_uid),
        "the victim is gone"
    );
    eventually("a Preempted event for low", async || {
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
    eventually("also-high is reported unschedulable", async || {
        let pod = pod(&client, "also-high").await;
        scheduled_condition(&pod).is_some_and(|c| c["reason"] == "Unschedulable")
    })
    .await;
    assert_eq!(node_of(&pod(&client, "high").await), Some("node-1-0"));
    nodes.stop().await;
    drop(cluster);
}
