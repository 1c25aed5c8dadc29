//! `rudder node` against real masters: it registers a Ready Node with the machine's
//! capacity, heartbeats through its Lease in kube-node-lease, stops heartbeating when killed,
//! and a restarted node re-registers and resumes under the same lease; hollow mode runs many.

use std::process::Stdio;
use std::time::Duration;

use rudder_proto::api as pb;
use rudder_proto::client::ApiClient;
use rudder_tests::{rudder_binary_beside_tests, NodeScratch, ProcessCluster};
use serde_json::Value;
use tokio::process::{Child, Command};

fn node(servers: &str, args: &[&str]) -> Child {
    Command::new(rudder_binary_beside_tests())
        .arg("node")
        .args(args)
        .args([
            "--server",
            servers,
            "--lease-renew-ms",
            "200",
            "--status-update-ms",
            "500",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("rudder node starts")
}

async fn get(client: &ApiClient, resource: &str, namespace: &str, name: &str) -> Option<Value> {
    client.get_object(resource, namespace, name).await.ok()
}

/// Waits (at most 20 s) until `condition` holds for the object.
async fn until(
    client: &ApiClient,
    resource: &str,
    namespace: &str,
    name: &str,
    what: &str,
    condition: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(object) = get(client, resource, namespace, name).await {
            if condition(&object) {
                return object;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn is_ready(node: &Value) -> bool {
    node["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn renew_time(lease: &Value) -> String {
    lease["spec"]["renewTime"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_registers_heartbeats_stops_when_killed_and_resumes_when_restarted() {
    let cluster = ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 3, &[]).unwrap();
    let servers = cluster.endpoints().join(",");
    let client = ApiClient::new(cluster.endpoints());
    let scratch = NodeScratch::new("n1");
    let mut args = vec!["--name", "n1", "--pod-cidr", "10.244.1.0/24"];
    let flags = scratch.flags();
    args.extend(flags.iter().map(String::as_str));
    let mut worker = node(&servers, &args);

    let registered = until(&client, "nodes", "", "n1", "n1 Ready", is_ready).await;
    assert_eq!(registered["spec"]["podCIDR"], "10.244.1.0/24");
    let cpus = std::thread::available_parallelism()
        .unwrap()
        .get()
        .to_string();
    assert_eq!(registered["status"]["capacity"]["cpu"], cpus.as_str());
    assert_eq!(registered["status"]["capacity"]["pods"], "110");
    assert_eq!(
        registered["metadata"]["labels"]["kubernetes.io/hostname"],
        "n1"
    );

    // The lease is renewed again and again by its node.
    let first = until(
        &client,
        "leases",
        "kube-node-lease",
        "n1",
        "the lease",
        |l| !renew_time(l).is_empty(),
    )
    .await;
    assert_eq!(first["spec"]["holderIdentity"], "n1");
    let renewed = until(
        &client,
        "leases",
        "kube-node-lease",
        "n1",
        "a renewal",
        |l| renew_time(l) != renew_time(&first),
    )
    .await;
    assert!(renew_time(&renewed) > renew_time(&first));

    // Killed, the node renews no more. A renewal already on the wire when it died may
    // still land, later on a loaded machine, but it carries a time from before the kill.
    let killed_at = jiff::Timestamp::now();
    worker.kill().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = get(&client, "leases", "kube-node-lease", "n1")
        .await
        .unwrap();
    let last_renewal: jiff::Timestamp = renew_time(&later).parse().expect("a MicroTime");
    assert!(
        last_renewal <= killed_at,
        "a dead node's lease moved: renewed at {last_renewal}, killed at {killed_at}"
    );

    // Restarted, it re-registers and renews the same lease (no new epoch).
    let mut worker = node(&servers, &args);
    let resumed = until(
        &client,
        "leases",
        "kube-node-lease",
        "n1",
        "renewals after restart",
        |l| renew_time(l) > renew_time(&later),
    )
    .await;
    assert_eq!(
        resumed["spec"]["leaseTransitions"],
        first["spec"]["leaseTransitions"]
    );
    until(&client, "nodes", "", "n1", "n1 Ready again", is_ready).await;
    worker.kill().await.unwrap();
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hollow_mode_runs_many_nodes_in_one_process() {
    let cluster = ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 1, &[]).unwrap();
    let servers = cluster.endpoints().join(",");
    let client = ApiClient::new(cluster.endpoints());
    let mut hollow = node(&servers, &["--name", "hollow", "--hollow", "--count", "20"]);
    for i in 0..20 {
        let name = format!("hollow-{i}");
        let node = until(&client, "nodes", "", &name, "a hollow node Ready", is_ready).await;
        assert_eq!(node["metadata"]["labels"]["rudder.dev/hollow"], "true");
        assert_eq!(
            node["status"]["nodeInfo"]["containerRuntimeVersion"],
            "fake://hollow"
        );
        until(
            &client,
            "leases",
            "kube-node-lease",
            &name,
            "its lease",
            |l| !renew_time(l).is_empty(),
        )
        .await;
    }
    hollow.kill().await.unwrap();
    drop(cluster);
}

async fn create_pod(client: &ApiClient, name: &str, node: Option<&str>) {
    let mut pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name },
        "spec": { "containers": [{ "name": "app", "image": "luksa/kubia" }] }
    });
    if let Some(node) = node {
        pod["spec"]["nodeName"] = node.into();
    }
    client
        .create_object("pods", "default", &pod)
        .await
        .expect("pod created");
}

fn is_running(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hollow_kubelet_runs_bound_pods_and_confirms_their_deletion() {
    // The test binds a pod itself, as a scheduler would: the masters' own scheduler is off,
    // or it could bind the pod first (elsewhere) and the test's bind would meet a Conflict.
    let no_scheduler = ["--scheduler=false".to_string()];
    let cluster =
        ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 3, &no_scheduler).unwrap();
    let servers = cluster.endpoints().join(",");
    let client = ApiClient::new(cluster.endpoints());
    let mut hollow = node(&servers, &["--name", "h", "--hollow", "--count", "2"]);
    until(&client, "nodes", "", "h-1", "h-1 Ready", is_ready).await;

    // A pod created with spec.nodeName runs without a scheduler, as in Kubernetes.
    create_pod(&client, "direct", Some("h-0")).await;
    let running = until(
        &client,
        "pods",
        "default",
        "direct",
        "direct Running",
        is_running,
    )
    .await;
    assert!(running["status"]["podIP"]
        .as_str()
        .unwrap()
        .starts_with("10.200.0."));
    assert_eq!(running["status"]["hostIP"], "127.0.0.1");
    assert_eq!(running["status"]["containerStatuses"][0]["ready"], true);

    // A pod bound later (as the scheduler does) runs on its node, with that node's range.
    create_pod(&client, "bound", None).await;
    let bind = pb::BindRequest {
        namespace: "default".into(),
        name: "bound".into(),
        node_name: "h-1".into(),
        ..Default::default()
    };
    client
        .call(|mut c| {
            let bind = bind.clone();
            async move { c.bind(bind).await }
        })
        .await
        .unwrap();
    let running = until(
        &client,
        "pods",
        "default",
        "bound",
        "bound Running",
        is_running,
    )
    .await;
    assert!(running["status"]["podIP"]
        .as_str()
        .unwrap()
        .starts_with("10.200.1."));

    // Deleting a running pod marks it; its kubelet stops it and confirms: then it is gone.
    let delete = pb::DeleteRequest {
        resource: "pods".into(),
        namespace: "default".into(),
        name: "direct".into(),
        ..Default::default()
    };
    let marked = client
        .call(|mut c| {
            let delete = delete.clone();
            async move { c.delete(delete).await }
        })
        .await
        .unwrap();
    assert!(!marked.deleted, "a bound pod waits for its kubelet");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while get(&client, "pods", "default", "direct").await.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the kubelet never confirmed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    hollow.kill().await.unwrap();
    drop(cluster);
}
