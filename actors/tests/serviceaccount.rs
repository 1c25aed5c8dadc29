//! The ServiceAccount controller run by the controller manager against an in-process API
//! server: the namespaces the masters create and a new one each get the ServiceAccount
//! `default`, and a deleted `default` comes back (as a new object). The cases a cluster
//! cannot show deterministically (a terminating namespace, a lagging cache) are in
//! `serviceaccount/reconcile.rs`' tables.

mod common;

use common::{Component, Plane};
use rudder_actors::manager::ManagerConfig;
use rudder_actors::selection::Selection;
use rudder_apiserver::test_support::eventually;
use rudder_proto::api::DeleteRequest;
use rudder_proto::client::ApiClient;
use serde_json::{json, Value};

/// The namespace's `default` ServiceAccount, if it exists.
async fn default_account(client: &ApiClient, namespace: &str) -> Option<Value> {
    client
        .get_object("serviceaccounts", namespace, "default")
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_namespace_has_a_default_service_account_that_comes_back_when_deleted() {
    let plane = Plane::start(1).await;
    let client = plane.client.clone();
    let config = ManagerConfig {
        controllers: Selection::parse("serviceaccount").expect("a valid selection"),
        ..ManagerConfig::new("test-master")
    };
    let manager = Component::controller_manager_with(plane.new_client(), config);

    for namespace in ["default", "kube-system"] {
        eventually(
            &format!("{namespace} has its default ServiceAccount"),
            || async { default_account(&client, namespace).await.is_some() },
        )
        .await;
    }

    let team = json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "team" }
    });
    client
        .create_object("namespaces", "", &team)
        .await
        .expect("creating the namespace");
    eventually(
        "the new namespace has its default ServiceAccount",
        || async { default_account(&client, "team").await.is_some() },
    )
    .await;
    let first = default_account(&client, "team").await.expect("the account");
    assert_eq!(first["kind"], "ServiceAccount");
    let first_uid = first["metadata"]["uid"]
        .as_str()
        .expect("a uid")
        .to_string();

    client
        .delete_object(DeleteRequest {
            resource: "serviceaccounts".into(),
            namespace: "team".into(),
            name: "default".into(),
            ..Default::default()
        })
        .await
        .expect("deleting the account");
    eventually(
        "the deleted default ServiceAccount is created again",
        || async {
            default_account(&client, "team")
                .await
                .is_some_and(|account| account["metadata"]["uid"] != first_uid.as_str())
        },
    )
    .await;

    manager.stop().await;
    plane.shutdown().await;
}
