//! The eviction subresource against an in-process master: a pod goes only while the
//! PodDisruptionBudget guarding it has a disruption to spare (the budget's status is written
//! here as its controller would), each eviction takes one and records the pod, and the next
//! is refused with Kubernetes' 429 until the budget allows again; pods the budgets do not
//! count go without asking; two budgets over one pod are refused; a numbered eviction sent
//! again is answered as the first.

mod common;

use common::Plane;
use rudder_proto::api as pb;
use rudder_proto::api::resources_client::ResourcesClient;
use rudder_proto::client::{ApiClient, ClientError};
use rudder_proto::request_ids::REQUEST_ID_HEADER;
use serde_json::{json, Value};

/// A pod of `app`, with its status set to `phase` and Ready as given (as a kubelet would).
async fn pod(client: &ApiClient, name: &str, app: &str, phase: &str, ready: bool) {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "labels": { "app": app } },
        "spec": { "containers": [{ "name": "c", "image": "kubia" }] }
    });
    let mut created = client
        .create_object("pods", "default", &pod)
        .await
        .expect("creating a pod");
    if phase == "Pending" {
        return;
    }
    created["status"] = json!({
        "phase": phase,
        "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" },
                         "lastTransitionTime": "2026-01-01T00:00:00Z" }]
    });
    client
        .update_object("pods", "default", name, &created, true)
        .await
        .expect("writing the pod's status");
}

fn budget(name: &str, app: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["selector"] = json!({ "matchLabels": { "app": app } });
    json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": { "name": name, "namespace": "default" },
        "spec": spec
    })
}

/// Creates the budget and writes its status as the disruption controller would have
/// computed it for `healthy` healthy pods of which `desired` must stay.
async fn computed_budget(client: &ApiClient, budget: Value, healthy: i32, desired: i32) {
    let mut created = client
        .create_object("poddisruptionbudgets", "default", &budget)
        .await
        .expect("creating the budget");
    let generation = created["metadata"]["generation"].clone();
    let (condition, reason) = if healthy > desired {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    created["status"] = json!({
        "observedGeneration": generation,
        "currentHealthy": healthy, "desiredHealthy": desired, "expectedPods": healthy,
        "disruptionsAllowed": (healthy - desired).max(0),
        "conditions": [{ "type": "DisruptionAllowed", "status": condition, "reason": reason,
                         "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z" }]
    });
    let name = created["metadata"]["name"].as_str().unwrap().to_string();
    client
        .update_object("poddisruptionbudgets", "default", &name, &created, true)
        .await
        .expect("writing the budget's status");
}

fn eviction(name: &str) -> pb::EvictRequest {
    pb::EvictRequest {
        namespace: "default".into(),
        name: name.into(),
        ..Default::default()
    }
}

async fn exists(client: &ApiClient, name: &str) -> bool {
    match client.get_object("pods", "default", name).await {
        Ok(_) => true,
        Err(error) if error.is_not_found() => false,
        Err(error) => panic!("reading pod {name}: {error}"),
    }
}

fn causes(error: &ClientError) -> Value {
    let ClientError::Api { status, .. } = error else {
        panic!("an API error: {error}");
    };
    let status: Value = serde_json::from_str(status).expect("a Status object");
    status["details"]["causes"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn evictions_take_the_budgets_disruptions_and_are_refused_with_429_when_none_is_left() {
    let plane = Plane::start(1).await;
    let client = &plane.client;
    for name in ["web-0", "web-1", "web-2"] {
        pod(client, name, "web", "Running", true).await;
    }
    computed_budget(
        client,
        budget("web", "web", json!({ "minAvailable": 2 })),
        3,
        2,
    )
    .await;

    // The first eviction takes the one disruption allowed: the pod goes (unbound: at once)
    // and the budget records it.
    let evicted = client
        .evict(eviction("web-0"))
        .await
        .expect("evicting web-0");
    assert!(evicted.deleted);
    assert!(!exists(client, "web-0").await);
    let pdb = client
        .get_object("poddisruptionbudgets", "default", "web")
        .await
        .unwrap();
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0);
    assert!(pdb["status"]["disruptedPods"]["web-0"].is_string(), "{pdb}");
    assert_eq!(pdb["status"]["conditions"][0]["reason"], "InsufficientPods");

    // The second is refused, in Kubernetes' words, and the pod stays.
    let refused = client.evict(eviction("web-1")).await.unwrap_err();
    assert!(refused.is_too_many_requests(), "{refused}");
    assert!(matches!(
        &refused,
        ClientError::Api {
            code: tonic::Code::ResourceExhausted,
            ..
        }
    ));
    assert_eq!(
        refused.to_string(),
        "Error from server (TooManyRequests): Cannot evict pod as it would violate the pod's \
         disruption budget."
    );
    assert_eq!(
        causes(&refused)[0]["message"],
        "The disruption budget web needs 2 healthy pods and has 3 currently"
    );
    assert!(exists(client, "web-1").await);

    // Once the controller allows again (here: written by hand), the eviction goes through.
    computed_budget_status(client, "web", 3, 2).await;
    client
        .evict(eviction("web-1"))
        .await
        .expect("evicting web-1");
    assert!(!exists(client, "web-1").await);

    // No such pod: NotFound.
    let missing = client.evict(eviction("web-9")).await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    plane.shutdown().await;
}

/// Writes the status of budget `name` again, as a fresh computation.
async fn computed_budget_status(client: &ApiClient, name: &str, healthy: i32, desired: i32) {
    let mut current = client
        .get_object("poddisruptionbudgets", "default", name)
        .await
        .unwrap();
    current["status"]["currentHealthy"] = json!(healthy);
    current["status"]["desiredHealthy"] = json!(desired);
    current["status"]["disruptionsAllowed"] = json!((healthy - desired).max(0));
    current["status"]["disruptedPods"] = Value::Null;
    client
        .update_object("poddisruptionbudgets", "default", name, &current, true)
        .await
        .expect("writing the budget's status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pods_the_budgets_do_not_count_go_and_two_budgets_are_not_supported() {
    let plane = Plane::start(1).await;
    let client = &plane.client;

    // A budget just created has not been computed for its generation: refused for now.
    pod(client, "fresh-0", "fresh", "Running", true).await;
    client
        .create_object(
            "poddisruptionbudgets",
            "default",
            &budget("fresh", "fresh", json!({ "maxUnavailable": 1 })),
        )
        .await
        .unwrap();
    let refused = client.evict(eviction("fresh-0")).await.unwrap_err();
    assert!(refused.is_too_many_requests(), "{refused}");
    assert_eq!(
        causes(&refused)[0]["message"],
        "The disruption budget fresh is still being processed by the server."
    );

    // A Pending pod disrupts nothing: it goes whatever its budget says.
    pod(client, "fresh-1", "fresh", "Pending", false).await;
    client
        .evict(eviction("fresh-1"))
        .await
        .expect("evicting a pending pod");
    assert!(!exists(client, "fresh-1").await);

    // An unready pod under an AlwaysAllow budget with nothing to spare goes, and the budget
    // keeps its count.
    pod(client, "sick-0", "sick", "Running", false).await;
    pod(client, "sick-1", "sick", "Running", true).await;
    computed_budget(
        client,
        budget(
            "sick",
            "sick",
            json!({ "minAvailable": 1, "unhealthyPodEvictionPolicy": "AlwaysAllow" }),
        ),
        1,
        1,
    )
    .await;
    client
        .evict(eviction("sick-0"))
        .await
        .expect("evicting an unready pod");
    assert!(!exists(client, "sick-0").await);
    let refused = client.evict(eviction("sick-1")).await.unwrap_err();
    assert!(refused.is_too_many_requests(), "{refused}");

    // A pod two budgets guard: Kubernetes' 500.
    pod(client, "both-0", "both", "Running", true).await;
    computed_budget(
        client,
        budget("both-a", "both", json!({ "minAvailable": 0 })),
        1,
        0,
    )
    .await;
    computed_budget(
        client,
        budget("both-b", "both", json!({ "minAvailable": 0 })),
        1,
        0,
    )
    .await;
    let refused = client.evict(eviction("both-0")).await.unwrap_err();
    assert_eq!(refused.reason(), "InternalError");
    assert!(
        refused.to_string().ends_with(
            "This pod has more than one PodDisruptionBudget, which the eviction subresource \
             does not support."
        ),
        "{refused}"
    );
    assert!(exists(client, "both-0").await);

    // No budget: a plain deletion.
    pod(client, "lone", "lone", "Running", true).await;
    client.evict(eviction("lone")).await.expect("evicting");
    assert!(!exists(client, "lone").await);
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_numbered_eviction_sent_again_is_answered_as_the_first_and_takes_one_disruption() {
    let plane = Plane::start(1).await;
    let client = &plane.client;
    for name in ["db-0", "db-1", "db-2", "db-3"] {
        pod(client, name, "db", "Running", true).await;
    }
    computed_budget(
        client,
        budget("db", "db", json!({ "minAvailable": 2 })),
        4,
        2,
    )
    .await;
    let address = &client.endpoints()[0];
    let mut api = ResourcesClient::connect(format!("http://{address}"))
        .await
        .expect("connecting to the master");
    let numbered = || {
        let mut request = tonic::Request::new(eviction("db-0"));
        let value = "5eed-7-7".parse().unwrap();
        request.metadata_mut().insert(REQUEST_ID_HEADER, value);
        request
    };
    let first = api
        .evict(numbered())
        .await
        .expect("the eviction")
        .into_inner();
    let again = api
        .evict(numbered())
        .await
        .expect("the same eviction")
        .into_inner();
    assert!(first.deleted && again.deleted);
    let pod = |response: &pb::DeleteResponse| -> Value {
        serde_json::from_slice(&response.json).expect("a pod")
    };
    assert_eq!(
        pod(&first)["metadata"]["uid"],
        pod(&again)["metadata"]["uid"]
    );
    let pdb = client
        .get_object("poddisruptionbudgets", "default", "db")
        .await
        .unwrap();
    assert_eq!(pdb["status"]["disruptionsAllowed"], 1, "{pdb}");
    plane.shutdown().await;
}
