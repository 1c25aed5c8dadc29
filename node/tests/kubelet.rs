//! The kubelet against an in-process master (`rudder_apiserver::test_support`), with the fake
//! runtime of hollow nodes: it follows the pods bound to its node through the shared informer,
//! runs them, and confirms their deletion.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::Actor;
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

#[actix::test]
async fn a_hollow_kubelet_runs_the_pods_bound_to_it_and_confirms_their_deletion() {
    let (cluster, client) = start(1).await;
    let client = Arc::new(client);
    let cidr = "10.244.7.0/24";
    let config = NodeConfig {
        name: "hollow-7".into(),
        internal_ip: "127.0.0.1".into(),
        pod_cidr: Some(cidr.into()),
        max_pods: 110,
        labels: BTreeMap::new(),
        kubelet_port: 10250,
        runtime_version: "fake://hollow".into(),
    };
    let runtime = Arc::new(FakeRuntime::new(cidr));
    let timers = KubeletTimers::default();
    let kubelet = Kubelet::new(
        client.clone(),
        config,
        Machine::read(),
        timers,
        Some(runtime),
    );
    let _kubelet = kubelet.start();
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
