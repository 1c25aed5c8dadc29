//! PodGC run by the controller manager against an in-process API server, with a 500 ms
//! period: a pod bound to a node that never existed is marked Failed (DisruptionTarget,
//! DeletionByPodGC) and force-deleted once the node has been missing for the quarantine (1 s
//! here) and a live read confirms it, while a pod on a node that exists stays; a pod whose
//! node is deleted goes without waiting out the quarantine (an hour here), while one on a
//! node that never existed still waits. The other cases (the threshold, terminating pods, a
//! node cache that lags) are in `podgc/reconcile_tests.rs`' tables.

mod common;

use std::time::Duration;

use common::{Component, Plane};
use rudder_actors::manager::ManagerConfig;
use rudder_actors::selection::Selection;
use rudder_apiserver::test_support::eventually;
use rudder_proto::api::{DeleteRequest, WatchRequest};
use rudder_proto::client::ApiClient;
use serde_json::{json, Value};

const QUARANTINE: Duration = Duration::from_secs(1);

/// The controller manager running PodGC alone, with `quarantine` and a 500 ms period.
fn pod_gc(plane: &Plane, quarantine: Duration) -> Component {
    let mut config = ManagerConfig {
        controllers: Selection::parse("podgc").expect("a valid selection"),
        ..ManagerConfig::new("test-master")
    };
    config.pod_gc.settings.quarantine = quarantine;
    config.pod_gc.period = Duration::from_millis(500);
    Component::controller_manager_with(plane.new_client(), config)
}

async fn create_node(client: &ApiClient, name: &str) {
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": name },
        "status": { "conditions": [{ "type": "Ready", "status": "True" }] }
    });
    client
        .create_object("nodes", "", &node)
        .await
        .expect("creating a node");
}

async fn create_pod(client: &ApiClient, name: &str, node: &str) {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "default" },
        "spec": { "nodeName": node, "containers": [{ "name": "c", "image": "busybox" }] }
    });
    client
        .create_object("pods", "default", &pod)
        .await
        .expect("creating a pod");
}

async fn pod(client: &ApiClient, name: &str) -> Option<Value> {
    client.get_object("pods", "default", name).await.ok()
}

/// Whether `pod` was marked Failed the way PodGC marks an orphan.
fn marked_as_orphan(pod: &Value) -> bool {
    pod["status"]["phase"] == "Failed"
        && pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| {
                c["type"] == "DisruptionTarget"
                    && c["status"] == "True"
                    && c["reason"] == "DeletionByPodGC"
                    && c["message"] == "PodGC: node no longer exists"
            })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pod_on_a_node_that_never_existed_is_deleted_after_the_quarantine() {
    let plane = Plane::start(1).await;
    let client = plane.client.clone();
    create_node(&client, "real").await;
    let manager = pod_gc(&plane, QUARANTINE);

    // Followed from before it exists, to see the state it was deleted in.
    let mut orphan_events = client
        .watch(WatchRequest {
            resource: "pods".into(),
            namespace: "default".into(),
            field_selector: "metadata.name=orphan".into(),
            ..Default::default()
        })
        .await
        .expect("a watch on the orphan");
    // Created first: any pass that sees the orphan sees this pod too.
    create_pod(&client, "kept", "real").await;
    let created = tokio::time::Instant::now();
    create_pod(&client, "orphan", "ghost").await;

    let mut marked = false;
    let deleted = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(event) = orphan_events.message().await.expect("the watch") {
            let pod: Value = serde_json::from_slice(&event.object).expect("a pod");
            marked |= marked_as_orphan(&pod);
            if event.r#type == "DELETED" {
                return;
            }
        }
        panic!("the watch ended before the orphan was deleted");
    })
    .await;
    assert!(deleted.is_ok(), "the orphan was not deleted within 30 s");
    assert!(
        created.elapsed() >= QUARANTINE,
        "the orphan went after {:?}, before its node's quarantine ended",
        created.elapsed()
    );
    assert!(marked, "the orphan was deleted without being marked Failed");
    assert!(
        client
            .get_object("pods", "default", "orphan")
            .await
            .is_err(),
        "the orphan is gone for good (grace period 0)"
    );

    let kept = client
        .get_object("pods", "default", "kept")
        .await
        .expect("the pod on an existing node stays");
    assert!(kept["metadata"]["deletionTimestamp"].is_null(), "{kept}");
    assert_ne!(kept["status"]["phase"], "Failed", "{kept}");

    manager.stop().await;
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pod_whose_node_is_deleted_goes_without_waiting_out_the_quarantine() {
    let plane = Plane::start(1).await;
    let client = plane.client.clone();
    let manager = pod_gc(&plane, Duration::from_secs(3600));
    create_node(&client, "doomed").await;
    create_pod(&client, "moving", "doomed").await;
    create_pod(&client, "waiting", "never-registered").await;

    // A pod terminating without a node, held by a finalizer: once PodGC has marked it
    // Failed, its caches have synced, so the node's deletion below reaches it as an event.
    let witness = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "witness", "namespace": "default",
                      "finalizers": ["example.com/hold"] },
        "spec": { "containers": [{ "name": "c", "image": "busybox" }] }
    });
    client
        .create_object("pods", "default", &witness)
        .await
        .expect("creating the witness");
    let delete = |name: &str, resource: &str, namespace: &str| DeleteRequest {
        resource: resource.into(),
        namespace: namespace.into(),
        name: name.into(),
        ..Default::default()
    };
    client
        .delete_object(delete("witness", "pods", "default"))
        .await
        .expect("deleting the witness");
    eventually(
        "PodGC marks the unscheduled terminating pod Failed",
        || async {
            pod(&client, "witness")
                .await
                .is_some_and(|p| p["status"]["phase"] == "Failed")
        },
    )
    .await;

    client
        .delete_object(delete("doomed", "nodes", ""))
        .await
        .expect("deleting the node");
    eventually("the pod of the deleted node is deleted", || async {
        pod(&client, "moving").await.is_none()
    })
    .await;
    let waiting = pod(&client, "waiting")
        .await
        .expect("a pod on a node never seen waits out its hour of quarantine");
    assert!(
        waiting["metadata"]["deletionTimestamp"].is_null(),
        "{waiting}"
    );

    manager.stop().await;
    plane.shutdown().await;
}
