//! The ReplicaSet controller run by the controller manager against in-process API servers:
//! a ReplicaSet is scaled up, down and up again, a deleted pod is replaced, an orphan it
//! selects is adopted (and counted), a pod relabelled out of it is released and replaced, a
//! ReplicationController is served by the same controller, and the status reports the
//! count. The counts are read from the API, never from the controller's cache.

mod common;

use common::{Component, Plane};
use rudder_apiserver::test_support::eventually;
use rudder_proto::api::ListRequest;
use rudder_proto::client::ApiClient;
use serde_json::{json, Value};

fn replica_set(name: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": { "name": name, "namespace": "default" },
        "spec": { "replicas": replicas,
                  "selector": { "matchLabels": { "app": name } },
                  "template": { "metadata": { "labels": { "app": name } },
                                "spec": { "containers": [{ "name": "c", "image": "kubia" }] } } }
    })
}

/// The pods of `default` that are not being deleted and carry `app=<app>`.
async fn pods(client: &ApiClient, app: &str) -> Vec<Value> {
    let listed = client
        .list(ListRequest {
            resource: "pods".into(),
            namespace: "default".into(),
            label_selector: format!("app={app}"),
            ..Default::default()
        })
        .await
        .expect("listing pods");
    listed
        .items
        .iter()
        .map(|item| serde_json::from_slice::<Value>(item).expect("a pod"))
        .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

fn owner_kind(pod: &Value) -> Option<&str> {
    pod["metadata"]["ownerReferences"][0]["kind"].as_str()
}

async fn wait_for_pods(client: &ApiClient, app: &str, count: usize) {
    eventually(&format!("{count} pods of {app}"), || async {
        let pods = pods(client, app).await;
        pods.len() == count && pods.iter().all(|p| owner_kind(p).is_some())
    })
    .await;
}

async fn scale(client: &ApiClient, resource: &str, name: &str, replicas: i64) {
    client
        .patch_object(
            resource,
            "default",
            name,
            &json!({ "spec": { "replicas": replicas } }),
            false,
        )
        .await
        .expect("scaling");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replica_sets_scale_replace_adopt_release_and_report_their_status() {
    let plane = Plane::start(1).await;
    let client = plane.client.clone();
    let manager = Component::controller_manager(plane.new_client());

    client
        .create_object("replicasets", "default", &replica_set("web", 3))
        .await
        .expect("creating the set");
    wait_for_pods(&client, "web", 3).await;
    scale(&client, "replicasets", "web", 5).await;
    wait_for_pods(&client, "web", 5).await;
    scale(&client, "replicasets", "web", 1).await;
    wait_for_pods(&client, "web", 1).await;

    // The set's events say what it did, in Kubernetes' words.
    let kept = pods(&client, "web").await[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    eventually(
        "SuccessfulCreate and SuccessfulDelete events on the set",
        || async {
            let listed = client
                .list(ListRequest {
                    resource: "events".into(),
                    namespace: "default".into(),
                    ..Default::default()
                })
                .await
                .expect("listing events");
            let events: Vec<Value> = listed
                .items
                .iter()
                .map(|item| serde_json::from_slice(item).expect("an event"))
                .filter(|e: &Value| e["involvedObject"]["kind"] == "ReplicaSet")
                .collect();
            let created = events.iter().any(|e| {
                e["reason"] == "SuccessfulCreate"
                    && e["message"] == format!("Created pod: {kept}").as_str()
                    && e["source"]["component"] == "replicaset-controller"
            });
            let deleted = events
                .iter()
                .filter(|e| e["reason"] == "SuccessfulDelete")
                .count();
            created && deleted == 4
        },
    )
    .await;

    // A deleted pod is replaced.
    let name = pods(&client, "web").await[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    client
        .delete_object(rudder_proto::api::DeleteRequest {
            resource: "pods".into(),
            namespace: "default".into(),
            name: name.clone(),
            ..Default::default()
        })
        .await
        .expect("deleting a pod");
    eventually("the deleted pod is replaced", || async {
        let pods = pods(&client, "web").await;
        pods.len() == 1 && pods[0]["metadata"]["name"] != name.as_str()
    })
    .await;

    // An orphan with its labels is adopted and counted: the set stays at one pod.
    let orphan = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "orphan", "namespace": "default", "labels": { "app": "web" } },
        "spec": { "containers": [{ "name": "c", "image": "kubia" }] }
    });
    scale(&client, "replicasets", "web", 2).await;
    wait_for_pods(&client, "web", 2).await;
    client
        .create_object("pods", "default", &orphan)
        .await
        .expect("creating the orphan");
    eventually("the orphan is adopted and one pod goes", || async {
        let pods = pods(&client, "web").await;
        pods.len() == 2 && pods.iter().all(|p| owner_kind(p) == Some("ReplicaSet"))
    })
    .await;

    // A pod relabelled out of the set is released, and replaced.
    let kept = pods(&client, "web").await[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    client
        .patch_object(
            "pods",
            "default",
            &kept,
            &json!({ "metadata": { "labels": { "app": "debug" } } }),
            false,
        )
        .await
        .expect("relabelling");
    wait_for_pods(&client, "web", 2).await;
    eventually("the relabelled pod is released", || async {
        let debug = pods(&client, "debug").await;
        debug.len() == 1
            && debug[0]["metadata"]["ownerReferences"]
                .as_array()
                .is_none_or(Vec::is_empty)
    })
    .await;

    eventually("the status counts the pods", || async {
        let set = client
            .get_object("replicasets", "default", "web")
            .await
            .expect("the set");
        set["status"]["replicas"] == 2
            && set["status"]["observedGeneration"] == set["metadata"]["generation"]
    })
    .await;

    // A ReplicationController: the same controller, a plain selector.
    let rc = json!({
        "apiVersion": "v1", "kind": "ReplicationController",
        "metadata": { "name": "kubia", "namespace": "default" },
        "spec": { "replicas": 3, "selector": { "app": "kubia" },
                  "template": { "metadata": { "labels": { "app": "kubia" } },
                                "spec": { "containers": [{ "name": "c", "image": "kubia" }] } } }
    });
    client
        .create_object("replicationcontrollers", "default", &rc)
        .await
        .expect("creating the rc");
    wait_for_pods(&client, "kubia", 3).await;
    assert!(pods(&client, "kubia")
        .await
        .iter()
        .all(|p| owner_kind(p) == Some("ReplicationController")));

    manager.stop().await;
    plane.shutdown().await;
}
