//! The garbage collector and the namespace controller, run by the controller manager
//! against in-process masters (only those two controllers, so nothing else creates or
//! deletes): Background, Foreground and Orphan deletion of owners with dependents, an owner
//! named by a dependent that never existed, a dependent with a second owner that stays, and
//! a namespace emptied and removed.

mod common;

use std::sync::Arc;

use common::{Component, Plane};
use rudder_apiserver::test_support::eventually;
use rudder_proto::api::{DeleteRequest, ListRequest};
use rudder_proto::client::ApiClient;
use serde_json::{json, Value};

fn replica_set(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": { "name": name },
        "spec": { "replicas": 0, "selector": { "matchLabels": { "app": name } },
                  "template": { "metadata": { "labels": { "app": name } },
                                "spec": { "containers": [{ "name": "c", "image": "i" }] } } }
    })
}

fn owned_by(kind: &str, api_version: &str, owner: &Value, block: bool) -> Value {
    json!({ "apiVersion": api_version, "kind": kind, "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": true, "blockOwnerDeletion": block })
}

fn pod(name: &str, owners: Vec<Value>) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "ownerReferences": owners },
        "spec": { "containers": [{ "name": "c", "image": "i" }] }
    })
}

async fn create(client: &ApiClient, resource: &str, object: &Value) -> Value {
    client
        .create_object(resource, "default", object)
        .await
        .unwrap_or_else(|error| panic!("creating {resource}: {error}"))
}

async fn delete(client: &ApiClient, resource: &str, name: &str, propagation: &str) -> bool {
    client
        .delete_object(DeleteRequest {
            resource: resource.into(),
            namespace: "default".into(),
            name: name.into(),
            propagation_policy: propagation.into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|error| panic!("deleting {resource} {name}: {error}"))
        .deleted
}

async fn exists(client: &ApiClient, resource: &str, name: &str) -> bool {
    match client.get_object(resource, "default", name).await {
        Ok(_) => true,
        Err(error) if error.is_not_found() => false,
        Err(error) => panic!("reading {resource} {name}: {error}"),
    }
}

async fn gone(client: &Arc<ApiClient>, resource: &str, name: &str) {
    eventually(&format!("{resource} {name} deleted"), || async {
        !exists(client, resource, name).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn owners_deleted_in_the_background_take_their_dependents_and_orphans_keep_theirs() {
    let plane = Plane::start(1).await;
    let client = plane.client.clone();
    let collector = Component::controllers(plane.new_client(), "garbagecollector");

    // Background: the owner goes at once, its pods after it.
    let rs = create(&client, "rs", &replica_set("web")).await;
    let owner = owned_by("ReplicaSet", "apps/v1", &rs, true);
    for name in ["web-a", "web-b"] {
        create(&client, "pods", &pod(name, vec![owner.clone()])).await;
    }
    assert!(delete(&client, "rs", "web", "Background").await);
    gone(&client, "pods", "web-a").await;
    gone(&client, "pods", "web-b").await;

    // Orphan: the owner waits until its pods no longer name it; they stay.
    let rs = create(&client, "rs", &replica_set("web")).await;
    let owner = owned_by("ReplicaSet", "apps/v1", &rs, true);
    create(&client, "pods", &pod("web-c", vec![owner])).await;
    assert!(!delete(&client, "rs", "web", "Orphan").await);
    gone(&client, "rs", "web").await;
    let orphan = client.get_object("pods", "default", "web-c").await.unwrap();
    assert!(
        orphan["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{orphan}"
    );

    // A pod with a second owner that stays loses only the gone owner's reference.
    let first = create(&client, "rs", &replica_set("first")).await;
    let second = create(
        &client,
        "cm",
        &json!({ "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "second" } }),
    )
    .await;
    let both = vec![
        owned_by("ReplicaSet", "apps/v1", &first, true),
        json!({ "apiVersion": "v1", "kind": "ConfigMap", "name": "second",
                "uid": second["metadata"]["uid"] }),
    ];
    create(&client, "pods", &pod("shared", both)).await;
    assert!(delete(&client, "rs", "first", "").await);
    eventually("the gone owner's reference dropped", || async {
        let shared = client
            .get_object("pods", "default", "shared")
            .await
            .unwrap();
        shared["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|owners| owners.len() == 1 && owners[0]["kind"] == "ConfigMap")
    })
    .await;

    // A dependent naming an owner that never existed goes; one naming an owner of a kind
    // the API does not serve stays.
    let ghost = json!({ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "ghost",
                        "uid": "00000000-0000-0000-0000-000000000000" });
    create(&client, "pods", &pod("haunted", vec![ghost])).await;
    let alien = json!({ "apiVersion": "example.com/v1", "kind": "Gizmo", "name": "g",
                        "uid": "11111111-1111-1111-1111-111111111111" });
    create(&client, "pods", &pod("foreign", vec![alien])).await;
    gone(&client, "pods", "haunted").await;
    assert!(exists(&client, "pods", "foreign").await);
    collector.stop().await;
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_foreground_deletion_removes_the_dependents_before_the_owner() {
    let plane = Plane::start(1).await;
    let client = plane.client.clone();
    let collector = Component::controllers(plane.new_client(), "garbagecollector");
    let deployment = create(
        &client,
        "deployments",
        &json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "web" },
            "spec": { "replicas": 0, "selector": { "matchLabels": { "app": "web" } },
                      "template": { "metadata": { "labels": { "app": "web" } },
                                    "spec": { "containers": [{ "name": "c", "image": "i" }] } } }
        }),
    )
    .await;
    let mut rs = replica_set("web-1");
    rs["metadata"]["ownerReferences"] =
        json!([owned_by("Deployment", "apps/v1", &deployment, true)]);
    let rs = create(&client, "rs", &rs).await;
    for name in ["web-1-a", "web-1-b"] {
        let owner = owned_by("ReplicaSet", "apps/v1", &rs, true);
        create(&client, "pods", &pod(name, vec![owner])).await;
    }
    // Held by a finalizer of its own, one pod keeps the whole chain waiting.
    let mut held = pod(
        "web-1-held",
        vec![owned_by("ReplicaSet", "apps/v1", &rs, true)],
    );
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    create(&client, "pods", &held).await;

    assert!(!delete(&client, "deployments", "web", "Foreground").await);
    gone(&client, "pods", "web-1-a").await;
    gone(&client, "pods", "web-1-b").await;
    let waiting = client
        .get_object("deployments", "default", "web")
        .await
        .expect("the owner waits for its blocking dependents");
    assert_eq!(
        waiting["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    assert!(
        exists(&client, "rs", "web-1").await,
        "the ReplicaSet waits too"
    );
    client
        .patch_object(
            "pods",
            "default",
            "web-1-held",
            &json!({ "metadata": { "finalizers": null } }),
            false,
        )
        .await
        .unwrap();
    gone(&client, "deployments", "web").await;
    // Foreground: by the time the owner is gone, so is everything it owned.
    assert!(!exists(&client, "rs", "web-1").await);
    let pods = client
        .list(ListRequest {
            resource: "pods".into(),
            namespace: "default".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(pods.items.is_empty());
    collector.stop().await;
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_namespace_is_emptied_then_removed() {
    let plane = Plane::start(1).await;
    let client = plane.client.clone();
    let manager = Component::controllers(plane.new_client(), "namespace,garbagecollector");
    client
        .create_object(
            "ns",
            "",
            &json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "team" } }),
        )
        .await
        .unwrap();
    for (resource, object) in [
        (
            "cm",
            json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "c" } }),
        ),
        (
            "secrets",
            json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "s" },
                            "stringData": { "a": "b" } }),
        ),
        ("pods", pod("worker", vec![])),
        ("rs", replica_set("web")),
    ] {
        client
            .create_object(resource, "team", &object)
            .await
            .unwrap_or_else(|error| panic!("creating {resource}: {error}"));
    }
    let deleted = client
        .delete_object(DeleteRequest {
            resource: "namespaces".into(),
            name: "team".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!deleted.deleted);
    eventually("the namespace removed once empty", || async {
        client
            .get_object("namespaces", "", "team")
            .await
            .is_err_and(|error| error.is_not_found())
    })
    .await;
    for resource in ["configmaps", "secrets", "pods", "replicasets"] {
        let left = client
            .list(ListRequest {
                resource: resource.into(),
                namespace: "team".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(left.items.is_empty(), "{resource} left in the namespace");
    }
    manager.stop().await;
    plane.shutdown().await;
}
