//! The disruption controller run by the controller manager (alone) against an in-process API
//! server, with the eviction subresource: a budget of minAvailable 2 over 3 ready pods allows
//! 1 disruption; one eviction takes it, the next is refused with 429 until the controller
//! sees a new ready pod and allows one again; a percentage counts the replicas of the pods'
//! ReplicaSet, and scaling the set changes the budget. Pods are made Ready by writing their
//! status, as a kubelet would; every count is read from the API.

mod common;

use common::{Component, Plane};
use rudder_apiserver::test_support::eventually;
use rudder_proto::api::EvictRequest;
use rudder_proto::client::ApiClient;
use serde_json::{json, Value};

/// A Running, Ready pod of `app`, controlled by `owner` (a ReplicaSet's name and uid) if given.
async fn ready_pod(client: &ApiClient, name: &str, app: &str, owner: Option<(&str, &str)>) {
    let owners: Vec<Value> = owner
        .into_iter()
        .map(|(name, uid)| {
            json!({ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": uid,
                    "controller": true })
        })
        .collect();
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "labels": { "app": app }, "ownerReferences": owners },
        "spec": { "containers": [{ "name": "c", "image": "kubia" }] }
    });
    let mut created = client
        .create_object("pods", "default", &pod)
        .await
        .expect("creating a pod");
    created["status"] = json!({
        "phase": "Running",
        "conditions": [{ "type": "Ready", "status": "True",
                         "lastTransitionTime": "2026-01-01T00:00:00Z" }]
    });
    client
        .update_object("pods", "default", name, &created, true)
        .await
        .expect("making the pod ready");
}

async fn create_budget(client: &ApiClient, name: &str, app: &str, spec: Value) {
    let mut spec = spec;
    spec["selector"] = json!({ "matchLabels": { "app": app } });
    let budget = json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": { "name": name, "namespace": "default" },
        "spec": spec
    });
    client
        .create_object("poddisruptionbudgets", "default", &budget)
        .await
        .expect("creating the budget");
}

async fn status(client: &ApiClient, name: &str) -> Value {
    client
        .get_object("poddisruptionbudgets", "default", name)
        .await
        .expect("reading the budget")["status"]
        .clone()
}

/// Waits until the budget's status, computed for its generation, shows these counts.
async fn wait_for_counts(client: &ApiClient, name: &str, counts: (i64, i64, i64, i64)) {
    let (expected, desired, healthy, allowed) = counts;
    eventually(
        &format!(
            "{name}: expected {expected}, desired {desired}, healthy {healthy}, allowed {allowed}"
        ),
        || async {
            let status = status(client, name).await;
            status["observedGeneration"] == 1
                && status["expectedPods"] == expected
                && status["desiredHealthy"] == desired
                && status["currentHealthy"] == healthy
                && status["disruptionsAllowed"] == allowed
        },
    )
    .await;
}

fn eviction(name: &str) -> EvictRequest {
    EvictRequest {
        namespace: "default".into(),
        name: name.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn evictions_follow_the_budget_the_controller_computes() {
    let plane = Plane::start(1).await;
    let client = plane.client.clone();
    let manager = Component::controllers(plane.new_client(), "disruption");

    for name in ["web-0", "web-1", "web-2"] {
        ready_pod(&client, name, "web", None).await;
    }
    create_budget(&client, "web", "web", json!({ "minAvailable": 2 })).await;
    wait_for_counts(&client, "web", (3, 2, 3, 1)).await;
    let computed = status(&client, "web").await;
    assert_eq!(computed["conditions"][0]["type"], "DisruptionAllowed");
    assert_eq!(computed["conditions"][0]["reason"], "SufficientPods");

    // One eviction takes the one disruption allowed.
    client
        .evict(eviction("web-0"))
        .await
        .expect("evicting web-0");
    assert!(client
        .get_object("pods", "default", "web-0")
        .await
        .unwrap_err()
        .is_not_found());
    // The next is refused while the budget has none to spare, also once the controller
    // has seen web-0 gone (2 healthy of 2 desired).
    let refused = client.evict(eviction("web-1")).await.unwrap_err();
    assert!(refused.is_too_many_requests(), "{refused}");
    wait_for_counts(&client, "web", (2, 2, 2, 0)).await;
    assert!(status(&client, "web").await["disruptedPods"].is_null());
    let refused = client.evict(eviction("web-1")).await.unwrap_err();
    assert!(refused.is_too_many_requests(), "{refused}");
    assert!(client.get_object("pods", "default", "web-1").await.is_ok());

    // A replacement becomes ready: the controller allows one disruption again.
    ready_pod(&client, "web-3", "web", None).await;
    wait_for_counts(&client, "web", (3, 2, 3, 1)).await;
    client
        .evict(eviction("web-1"))
        .await
        .expect("evicting web-1");

    manager.stop().await;
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_percentage_counts_the_replicas_of_the_pods_replica_set() {
    let plane = Plane::start(1).await;
    let client = plane.client.clone();
    let manager = Component::controllers(plane.new_client(), "disruption");

    // A ReplicaSet of 4 replicas (no ReplicaSet controller runs here) with 3 ready pods.
    let set = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": { "name": "db", "namespace": "default" },
        "spec": { "replicas": 4, "selector": { "matchLabels": { "app": "db" } },
                  "template": { "metadata": { "labels": { "app": "db" } },
                                "spec": { "containers": [{ "name": "c", "image": "kubia" }] } } }
    });
    let set = client
        .create_object("replicasets", "default", &set)
        .await
        .expect("creating the set");
    let uid = set["metadata"]["uid"].as_str().unwrap().to_string();
    for name in ["db-0", "db-1", "db-2"] {
        ready_pod(&client, name, "db", Some(("db", &uid))).await;
    }
    // 25% of 4 may be unavailable: 3 must stay healthy, and 3 are: nothing to spare.
    create_budget(&client, "db", "db", json!({ "maxUnavailable": "25%" })).await;
    wait_for_counts(&client, "db", (4, 3, 3, 0)).await;

    // Scaled to 3: 25% of 3 rounds up to 1 unavailable, so 2 must stay and 1 may go.
    client
        .patch_object(
            "replicasets",
            "default",
            "db",
            &json!({ "spec": { "replicas": 3 } }),
            false,
        )
        .await
        .expect("scaling the set");
    wait_for_counts(&client, "db", (3, 2, 3, 1)).await;
    client.evict(eviction("db-2")).await.expect("evicting db-2");

    manager.stop().await;
    plane.shutdown().await;
}
