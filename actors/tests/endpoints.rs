//! The endpoints controller run by the controller manager against an in-process API server:
//! a Service's Endpoints and EndpointSlice follow its pods' addresses and readiness, a
//! Service without a selector keeps the Endpoints its user wrote (mirrored into a slice of
//! their own), and a deleted Service's
//! Endpoints and slices go with it. The finer cases (named ports, terminating pods, headless
//! Services, slice sizes) are in `endpoints/reconcile_tests.rs`' tables.

mod common;

use std::sync::Arc;

use common::{Component, Plane};
use rudder_apiserver::test_support::eventually;
use rudder_proto::api::{DeleteRequest, ListRequest};
use rudder_proto::client::ApiClient;
use serde_json::{json, Value};

async fn create_pod(client: &ApiClient, name: &str, ip: &str, ready: bool) {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "default", "labels": { "app": "kubia" } },
        "spec": { "nodeName": "node-1", "containers": [{ "name": "kubia", "image": "kubia",
                  "ports": [{ "name": "http", "containerPort": 8080 }] }] }
    });
    let created = client.create_object("pods", "default", &pod).await.unwrap();
    set_ready(client, created, ip, ready).await;
}

async fn set_ready(client: &ApiClient, mut pod: Value, ip: &str, ready: bool) {
    let status = if ready { "True" } else { "False" };
    pod["status"] = json!({ "phase": "Running", "podIP": ip, "podIPs": [{ "ip": ip }],
                            "conditions": [{ "type": "Ready", "status": status }] });
    let name = pod["metadata"]["name"].as_str().unwrap().to_string();
    client
        .update_object("pods", "default", &name, &pod, true)
        .await
        .unwrap();
}

/// (ready, not ready) addresses of the Endpoints `name`, if it exists.
async fn addresses(client: &ApiClient, name: &str) -> Option<(Vec<String>, Vec<String>)> {
    let endpoints = client.get_object("endpoints", "default", name).await.ok()?;
    let list = |field: &str| -> Vec<String> {
        let mut ips: Vec<String> = endpoints["subsets"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s[field].as_array().cloned().unwrap_or_default())
            .map(|a| a["ip"].as_str().unwrap().to_string())
            .collect();
        ips.sort();
        ips
    };
    Some((list("addresses"), list("notReadyAddresses")))
}

/// The slices labelled for Service `name`.
async fn slices(client: &ApiClient, name: &str) -> Vec<Value> {
    let list = client
        .list(ListRequest {
            resource: "endpointslices".into(),
            namespace: "default".into(),
            label_selector: format!("kubernetes.io/service-name={name}"),
            ..Default::default()
        })
        .await
        .unwrap();
    list.items
        .iter()
        .map(|item| serde_json::from_slice(item).unwrap())
        .collect()
}

fn ready_in_slices(slices: &[Value]) -> Vec<(String, bool)> {
    let mut endpoints: Vec<(String, bool)> = slices
        .iter()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            let ip = e["addresses"][0].as_str().unwrap().to_string();
            (ip, e["conditions"]["ready"] == true)
        })
        .collect();
    endpoints.sort();
    endpoints
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn endpoints_and_slices_follow_the_pods_readiness_and_go_with_the_service() {
    let plane = Plane::start(1).await;
    let client: Arc<ApiClient> = plane.new_client();
    let manager = Component::controllers(plane.new_client(), "endpoints");
    create_pod(&client, "kubia-a", "10.244.1.2", true).await;
    create_pod(&client, "kubia-b", "10.244.1.3", false).await;
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "kubia-http", "namespace": "default" },
        "spec": { "selector": { "app": "kubia" },
                  "ports": [{ "name": "http", "port": 8080, "targetPort": "http" }] }
    });
    client
        .create_object("services", "default", &service)
        .await
        .unwrap();

    let expected = (
        vec!["10.244.1.2".to_string()],
        vec!["10.244.1.3".to_string()],
    );
    eventually(
        "the Endpoints list the ready and the unready pod",
        || async { addresses(&client, "kubia-http").await.as_ref() == Some(&expected) },
    )
    .await;
    eventually("the slice lists both pods with their readiness", || async {
        ready_in_slices(&slices(&client, "kubia-http").await)
            == [("10.244.1.2".into(), true), ("10.244.1.3".into(), false)]
    })
    .await;
    let slice = &slices(&client, "kubia-http").await[0];
    assert_eq!(slice["ports"][0]["port"], 8080, "{slice}");
    assert_eq!(
        slice["metadata"]["ownerReferences"][0]["name"],
        "kubia-http"
    );

    // b becomes ready, a stops being ready.
    let b = client
        .get_object("pods", "default", "kubia-b")
        .await
        .unwrap();
    set_ready(&client, b, "10.244.1.3", true).await;
    let a = client
        .get_object("pods", "default", "kubia-a")
        .await
        .unwrap();
    set_ready(&client, a, "10.244.1.2", false).await;
    let expected = (
        vec!["10.244.1.3".to_string()],
        vec!["10.244.1.2".to_string()],
    );
    eventually("the Endpoints follow the readiness", || async {
        addresses(&client, "kubia-http").await.as_ref() == Some(&expected)
    })
    .await;
    eventually("the slice follows the readiness", || async {
        ready_in_slices(&slices(&client, "kubia-http").await)
            == [("10.244.1.2".into(), false), ("10.244.1.3".into(), true)]
    })
    .await;

    // A Service without a selector keeps what its user wrote, even when the Endpoints come
    // first (a controller that took them for a deleted Service's would delete them).
    let written = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": { "name": "external", "namespace": "default" },
        "subsets": [{ "addresses": [{ "ip": "10.244.9.9" }], "ports": [{ "port": 5432 }] }]
    });
    client
        .create_object("endpoints", "default", &written)
        .await
        .unwrap();
    let manual = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "external", "namespace": "default" },
        "spec": { "ports": [{ "port": 5432 }] }
    });
    client
        .create_object("services", "default", &manual)
        .await
        .unwrap();

    client
        .delete_object(DeleteRequest {
            resource: "services".into(),
            namespace: "default".into(),
            name: "kubia-http".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    eventually("the deleted Service's Endpoints and slices go", || async {
        addresses(&client, "kubia-http").await.is_none()
            && slices(&client, "kubia-http").await.is_empty()
    })
    .await;
    assert_eq!(
        addresses(&client, "external").await,
        Some((vec!["10.244.9.9".to_string()], vec![])),
        "the user's Endpoints are left alone"
    );
    // ... and mirrored into a slice of their own, which follows the user's changes.
    eventually("the user's Endpoints are mirrored into a slice", || async {
        ready_in_slices(&slices(&client, "external").await) == [("10.244.9.9".into(), true)]
    })
    .await;
    let mirrored = &slices(&client, "external").await[0];
    assert_eq!(
        mirrored["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslicemirroring-controller.k8s.io",
        "{mirrored}"
    );
    let mut changed = client
        .get_object("endpoints", "default", "external")
        .await
        .unwrap();
    changed["subsets"][0]["notReadyAddresses"] = json!([{ "ip": "10.244.9.10" }]);
    client
        .update_object("endpoints", "default", "external", &changed, false)
        .await
        .unwrap();
    eventually("the mirrored slice follows the user's change", || async {
        ready_in_slices(&slices(&client, "external").await)
            == [("10.244.9.10".into(), false), ("10.244.9.9".into(), true)]
    })
    .await;

    manager.stop().await;
    plane.shutdown().await;
}
