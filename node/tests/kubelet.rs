//! The kubelet against an in-process master (`rudder_apiserver::test_support`), with the fake
//! runtime of hollow nodes: it follows the pods bound to its node through the shared informer,
//! runs them, and confirms their deletion.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::{Actor, Addr};
use rudder_apiserver::test_support::{eventually, start};
use rudder_node::kubelet::{Kubelet, KubeletTimers};
use rudder_node::machine::Machine;
use rudder_node::runtime::fake::FakeRuntime;
use rudder_node::status::NodeConfig;
use rudder_proto::api as pb;
use rudder_proto::client::ApiClient;
use serde_json::json;

async fn phase(client: &ApiClient, name: &str) -> Option<String> {
    let pod = client.get_object("pods", "default", name).await.ok()?;
    pod["status"]["phase"].as_str().map(str::to_string)
}

/// A kubelet of node `hollow-<n>` (pods in `10.244.<n>.0/24`) on the fake runtime.
fn hollow_kubelet(client: &Arc<ApiClient>, n: u8, timers: KubeletTimers) -> Addr<Kubelet> {
    let cidr = format!("10.244.{n}.0/24");
    let config = NodeConfig {
        name: format!("hollow-{n}"),
        internal_ip: "127.0.0.1".into(),
        pod_cidr: Some(cidr.clone()),
        max_pods: 110,
        labels: BTreeMap::new(),
        kubelet_port: 10250,
        runtime_version: "fake://hollow".into(),
    };
    let runtime = Arc::new(FakeRuntime::new(&cidr));
    Kubelet::new(
        client.clone(),
        config,
        Machine::read(),
        timers,
        Some(runtime),
    )
    .start()
}

#[actix::test]
async fn a_hollow_kubelet_runs_the_pods_bound_to_it_and_confirms_their_deletion() {
    let (cluster, client) = start(1).await;
    let client = Arc::new(client);
    let _kubelet = hollow_kubelet(&client, 7, KubeletTimers::default());
    for (name, node) in [("here", "hollow-7"), ("elsewhere", "other")] {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
        });
        client
            .create_object("pods", "default", &pod)
            .await
            .expect("create pod");
    }
    eventually("the pod bound here runs", || async {
        phase(&client, "here").await.as_deref() == Some("Running")
    })
    .await;
    assert_eq!(
        phase(&client, "elsewhere").await.as_deref(),
        Some("Pending")
    );
    let delete = pb::DeleteRequest {
        resource: "pods".into(),
        namespace: "default".into(),
        name: "here".into(),
        ..Default::default()
    };
    client.delete_object(delete).await.expect("delete pod");
    eventually("the kubelet confirms the deletion", || async {
        client
            .get_object("pods", "default", "here")
            .await
            .is_err_and(|error| error.is_not_found())
    })
    .await;
    cluster.shutdown().await;
}

/// A kubelet sends a few status reports at a time; those that wait are sent as earlier ones
/// end, not at the next periodic sync (set out of this test's reach).
#[actix::test]
async fn forty_pods_started_together_all_report_running_without_waiting_for_a_resync() {
    let (cluster, client) = start(1).await;
    let client = Arc::new(client);
    let timers = KubeletTimers {
        resync: std::time::Duration::from_secs(3600),
        ..KubeletTimers::default()
    };
    let _kubelet = hollow_kubelet(&client, 8, timers);
    let names: Vec<String> = (0..40).map(|n| format!("burst-{n}")).collect();
    futures::future::join_all(names.iter().map(|name| {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"nodeName": "hollow-8", "containers": [{"name": "c", "image": "busybox"}]}
        });
        let client = client.clone();
        async move { client.create_object("pods", "default", &pod).await }
    }))
    .await
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .expect("create pods");
    eventually("every pod reports Running", || async {
        let listed = client
            .list(pb::ListRequest {
                resource: "pods".into(),
                namespace: "default".into(),
                ..Default::default()
            })
            .await
            .expect("list pods");
        let running = listed
            .items
            .iter()
            .filter_map(|item| serde_json::from_slice::<serde_json::Value>(item).ok())
            .filter(|pod| pod["status"]["phase"] == "Running")
            .count();
        running == names.len()
    })
    .await;
    cluster.shutdown().await;
}
