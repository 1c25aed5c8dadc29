//! The Deployment controller and the ReplicaSet controller beneath it, run by the controller
//! manager against an in-process API server: a new Deployment gets its ReplicaSet at
//! revision one and that set its pods; a template change starts a rollout: a second
//! ReplicaSet at revision two that grows only within maxSurge while no pod is available
//! (there is no kubelet here), the old one kept whole by maxUnavailable 0; the status and
//! the Deployment's revision annotation follow.

mod common;

use common::{Component, Plane};
use rudder_apiserver::test_support::eventually;
use rudder_proto::api::ListRequest;
use rudder_proto::client::ApiClient;
use serde_json::{json, Value};

async fn list(client: &ApiClient, resource: &str) -> Vec<Value> {
    let listed = client
        .list(ListRequest {
            resource: resource.into(),
            namespace: "default".into(),
            label_selector: "app=web".into(),
            ..Default::default()
        })
        .await
        .expect("listing");
    listed
        .items
        .iter()
        .map(|item| serde_json::from_slice(item).expect("an object"))
        .collect()
}

fn revision(object: &Value) -> Option<&str> {
    object["metadata"]["annotations"]["deployment.kubernetes.io/revision"].as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deployment_gets_its_replica_set_and_pods_and_rolls_out_within_its_surge() {
    let plane = Plane::start(1).await;
    let client = plane.client.clone();
    let manager = Component::controller_manager(plane.new_client());

    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "web", "namespace": "default" },
        "spec": { "replicas": 4,
                  "strategy": { "rollingUpdate": { "maxSurge": 1, "maxUnavailable": 0 } },
                  "selector": { "matchLabels": { "app": "web" } },
                  "template": { "metadata": { "labels": { "app": "web" } },
                                "spec": { "containers": [{ "name": "c", "image": "web:v1" }] } } }
    });
    client
        .create_object("deployments", "default", &deployment)
        .await
        .expect("creating");
    eventually("revision 1 with 4 pods", || async {
        let sets = list(&client, "replicasets").await;
        let pods = list(&client, "pods").await;
        sets.len() == 1
            && revision(&sets[0]) == Some("1")
            && sets[0]["spec"]["replicas"] == 4
            && pods.len() == 4
    })
    .await;
    eventually("the Deployment's status and revision", || async {
        let d = client
            .get_object("deployments", "default", "web")
            .await
            .expect("the deployment");
        revision(&d) == Some("1")
            && d["status"]["replicas"] == 4
            && d["status"]["observedGeneration"] == d["metadata"]["generation"]
    })
    .await;

    let change = json!({ "spec": { "template": { "spec": { "containers": [{ "name": "c", "image": "web:v2" }] } } } });
    client
        .patch_object("deployments", "default", "web", &change, false)
        .await
        .expect("changing the image");
    eventually("revision 2 grown by the surge only", || async {
        let sets = list(&client, "replicasets").await;
        let new = sets.iter().find(|s| revision(s) == Some("2"));
        let old = sets.iter().find(|s| revision(s) == Some("1"));
        new.is_some_and(|s| s["spec"]["replicas"] == 1)
            && old.is_some_and(|s| s["spec"]["replicas"] == 4)
    })
    .await;
    eventually("5 pods: 4 old and the surge", || async {
        list(&client, "pods").await.len() == 5
    })
    .await;
    let d = client
        .get_object("deployments", "default", "web")
        .await
        .expect("the deployment");
    assert_eq!(revision(&d), Some("2"), "{d}");
    let progressing = d["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Progressing")
        .cloned();
    assert!(progressing.is_some_and(|c| c["status"] == "True"), "{d}");

    manager.stop().await;
    plane.shutdown().await;
}
