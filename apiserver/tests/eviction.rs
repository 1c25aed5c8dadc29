//! The eviction subresource against an in-process master: a pod goes only while the
//! PodDisruptionBudget guarding it has a disruption to spare (the budget's status is written
//! here as its controller would), each eviction takes one and records the pod in the same
//! transaction as the pod's deletion, and the next is refused with Kubernetes' 429 until the
//! budget allows again; concurrent evictions take exactly what is allowed; a bound pod stays
//! marked as a `DisruptionTarget`; the caller's preconditions are checked before a
//! disruption is taken; pods the budgets do not count go without asking; two budgets over
//! one pod are refused; a numbered eviction sent again is answered as the first, also after
//! an earlier attempt lost a race, and never takes a second disruption.

mod common;

use common::Plane;
use rudder_apiserver::{kinds, object};
use rudder_proto::api as pb;
use rudder_proto::api::resources_client::ResourcesClient;
use rudder_proto::client::{ApiClient, ClientError};
use rudder_proto::request_ids::{RequestNumber, REQUEST_ID_HEADER};
use rudder_raftstore::kv::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, KeyRange, PutRequest, RequestOp,
    TxnRequest,
};
use rudder_raftstore::sessions::RequestTag;
use serde_json::{json, Value};

/// A pod of `app`, with its status set to `phase` and Ready as given (as a kubelet would).
async fn pod(client: &ApiClient, name: &str, app: &str, phase: &str, ready: bool) {
    pod_on(client, name, app, phase, ready, None).await;
}

/// [`pod`], bound to `node` if given (its deletion then waits for the node's kubelet).
async fn pod_on(
    client: &ApiClient,
    name: &str,
    app: &str,
    phase: &str,
    ready: bool,
    node: Option<&str>,
) {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "labels": { "app": app } },
        "spec": { "containers": [{ "name": "c", "image": "kubia" }] }
    });
    if let Some(node) = node {
        pod["spec"]["nodeName"] = json!(node);
    }
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
    // A bare 500 that names no reason, which kubectl prints without one.
    assert_eq!(refused.reason(), "");
    assert_eq!(
        refused.to_string(),
        "Error from server: This pod has more than one PodDisruptionBudget, which the \
         eviction subresource does not support."
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

async fn object_of(client: &ApiClient, resource: &str, name: &str) -> Value {
    client
        .get_object(resource, "default", name)
        .await
        .unwrap_or_else(|error| panic!("reading {resource}/{name}: {error}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_evictions_take_exactly_the_disruptions_allowed_and_the_rest_are_refused() {
    let plane = Plane::start(1).await;
    let client = &plane.client;
    let names: Vec<String> = (0..10).map(|i| format!("web-{i}")).collect();
    for name in &names {
        pod(client, name, "web", "Running", true).await;
    }
    // 10 healthy, 7 must stay: 3 disruptions allowed.
    computed_budget(
        client,
        budget("web", "web", json!({ "minAvailable": 7 })),
        10,
        7,
    )
    .await;

    // All at once: each read-decide-write that loses to another's is read again.
    let outcomes =
        futures::future::join_all(names.iter().map(|name| client.evict(eviction(name)))).await;
    let evicted: Vec<&str> = names
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| outcome.is_ok())
        .map(|(name, _)| name.as_str())
        .collect();
    let refused = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Err(error) if error.is_too_many_requests()))
        .count();
    assert_eq!((evicted.len(), refused), (3, 7), "{outcomes:?}");
    let pdb = object_of(client, "poddisruptionbudgets", "web").await;
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0, "{pdb}");
    let mut recorded: Vec<&str> = pdb["status"]["disruptedPods"]
        .as_object()
        .expect("the evicted pods are recorded")
        .keys()
        .map(String::as_str)
        .collect();
    recorded.sort_unstable();
    let mut expected = evicted.clone();
    expected.sort_unstable();
    assert_eq!(recorded, expected);
    for name in &names {
        let gone = evicted.contains(&name.as_str());
        assert_eq!(!exists(client, name).await, gone, "{name}");
    }
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bound_pod_stays_marked_as_a_disruption_target_and_preconditions_come_first() {
    let plane = Plane::start(1).await;
    let client = &plane.client;
    for name in ["web-0", "web-1", "web-2"] {
        pod_on(client, name, "web", "Running", true, Some("n1")).await;
    }
    computed_budget(
        client,
        budget("web", "web", json!({ "minAvailable": 2 })),
        3,
        2,
    )
    .await;

    // Not the pod the caller meant: refused before the budget is asked.
    let wrong = pb::EvictRequest {
        precondition_uid: "not-its-uid".into(),
        ..eviction("web-0")
    };
    let refused = client.evict(wrong).await.unwrap_err();
    assert!(refused.is_conflict(), "{refused}");
    let expected = "the UID in the precondition (not-its-uid) does not match the UID in record";
    assert!(refused.to_string().contains(expected), "{refused}");
    let pdb = object_of(client, "poddisruptionbudgets", "web").await;
    assert_eq!(pdb["status"]["disruptionsAllowed"], 1, "{pdb}");
    assert!(pdb["status"]["disruptedPods"].is_null(), "{pdb}");

    // Its own uid: the pod is marked (its kubelet stops it) as a disruption target, and the
    // budget records it, in one transaction: both carry the same resourceVersion.
    let before = object_of(client, "pods", "web-0").await;
    let evicted = client
        .evict(pb::EvictRequest {
            precondition_uid: before["metadata"]["uid"].as_str().unwrap().into(),
            ..eviction("web-0")
        })
        .await
        .expect("evicting web-0 as it is");
    assert!(!evicted.deleted);
    let marked = object_of(client, "pods", "web-0").await;
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "{marked}"
    );
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
    let target = marked["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "DisruptionTarget"))
        .cloned()
        .unwrap_or_else(|| panic!("a DisruptionTarget condition in {marked}"));
    assert_eq!(
        (&target["status"], &target["reason"], &target["message"]),
        (
            &json!("True"),
            &json!("EvictionByEvictionAPI"),
            &json!("Eviction API: evicting")
        )
    );
    let pdb = object_of(client, "poddisruptionbudgets", "web").await;
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0);
    assert!(pdb["status"]["disruptedPods"]["web-0"].is_string(), "{pdb}");
    assert_eq!(
        pdb["metadata"]["resourceVersion"], marked["metadata"]["resourceVersion"],
        "one transaction wrote both"
    );

    // Evicted again while it terminates: no budget is asked, nothing is written.
    let again = client
        .evict(eviction("web-0"))
        .await
        .expect("a terminating pod's eviction goes through");
    assert!(!again.deleted);
    let still = object_of(client, "pods", "web-0").await;
    assert_eq!(
        still["metadata"]["resourceVersion"],
        marked["metadata"]["resourceVersion"]
    );
    plane.shutdown().await;
}

/// A compare that holds while `key` was last written at `revision`.
fn written_at(key: &[u8], revision: i64) -> Compare {
    Compare {
        range: KeyRange::single(key.to_vec()),
        result: CompareResult::Equal,
        target: CompareTarget::Mod(revision),
    }
}

fn put(key: &[u8], object: &Value) -> RequestOp {
    RequestOp::Put(PutRequest {
        key: key.to_vec(),
        value: object::encode(object).into(),
        ..Default::default()
    })
}

fn revision_of(object: &Value) -> i64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("a resourceVersion")
}

fn numbered_eviction(name: &str, number: RequestNumber) -> tonic::Request<pb::EvictRequest> {
    let mut request = tonic::Request::new(eviction(name));
    let header = number.to_header().parse().expect("a header value");
    request.metadata_mut().insert(REQUEST_ID_HEADER, header);
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_eviction_after_a_lost_and_a_successful_part_takes_no_second_disruption() {
    let plane = Plane::start(1).await;
    let client = &plane.client;
    for name in ["db-0", "db-1", "db-2", "db-3"] {
        pod_on(client, name, "db", "Running", true, Some("n1")).await;
    }
    computed_budget(
        client,
        budget("db", "db", json!({ "minAvailable": 2 })),
        4,
        2,
    )
    .await;
    let store = plane.cluster.store(0);
    let pods = kinds::resolve("pods").unwrap();
    let budgets = kinds::resolve("poddisruptionbudgets").unwrap();
    let budget_key = object::key(budgets, "default", "db");
    let address = &client.endpoints()[0];
    let mut api = ResourcesClient::connect(format!("http://{address}"))
        .await
        .expect("connecting to the master");

    // An eviction of db-0 whose first attempt wrote twice before its answer was lost: part 0
    // lost to a change of the budget (its compare failed), part 1 took a disruption and
    // marked the pod in one transaction.
    let first = RequestNumber {
        client: 0x5eed,
        seq: 21,
        acked_below: 21,
    };
    let pod_key = object::key(pods, "default", "db-0");
    let pod = object_of(client, "pods", "db-0").await;
    let pdb = object_of(client, "poddisruptionbudgets", "db").await;
    let lost = TxnRequest {
        compare: vec![
            written_at(&budget_key, revision_of(&pdb) - 1),
            written_at(&pod_key, revision_of(&pod)),
        ],
        success: vec![put(&budget_key, &pdb), put(&pod_key, &pod)],
        failure: Vec::new(),
    };
    let (_, response, _) = store
        .txn_as(lost, Some(RequestTag::new(first, 0)))
        .await
        .expect("part 0");
    assert!(!response.succeeded);
    let mut taken = pdb.clone();
    taken["status"]["disruptionsAllowed"] = json!(1);
    taken["status"]["disruptedPods"] = json!({ "db-0": "2026-01-01T00:00:00Z" });
    let mut marked = pod.clone();
    marked["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:30Z");
    marked["metadata"]["deletionGracePeriodSeconds"] = json!(30);
    let applied = TxnRequest {
        compare: vec![
            written_at(&budget_key, revision_of(&pdb)),
            written_at(&pod_key, revision_of(&pod)),
        ],
        success: vec![put(&budget_key, &taken), put(&pod_key, &marked)],
        failure: Vec::new(),
    };
    let (header, response, _) = store
        .txn_as(applied, Some(RequestTag::new(first, 1)))
        .await
        .expect("part 1");
    assert!(response.succeeded);

    // The client sends it again: answered as that attempt left the pod, no 504, and the
    // budget keeps the one disruption that attempt took.
    let again = api
        .evict(numbered_eviction("db-0", first))
        .await
        .expect("the retried eviction is answered")
        .into_inner();
    assert!(!again.deleted);
    let answered: Value = serde_json::from_slice(&again.json).expect("a pod");
    assert_eq!(
        answered["metadata"]["deletionTimestamp"],
        "2026-01-01T00:00:30Z"
    );
    assert_eq!(
        answered["metadata"]["resourceVersion"],
        header.revision.to_string()
    );
    let pdb = object_of(client, "poddisruptionbudgets", "db").await;
    assert_eq!(pdb["status"]["disruptionsAllowed"], 1, "{pdb}");

    // An eviction of db-1 whose only earlier write was lost, and was of another shape (the
    // pod's deletion alone): the retry writes under fresh parts, takes the disruption left
    // and marks the pod.
    let second = RequestNumber {
        client: 0x5eed,
        seq: 22,
        acked_below: 22,
    };
    let pod_key = object::key(pods, "default", "db-1");
    let pod = object_of(client, "pods", "db-1").await;
    let lost = TxnRequest {
        compare: vec![written_at(&pod_key, revision_of(&pod) - 1)],
        success: vec![RequestOp::DeleteRange(DeleteRangeRequest {
            range: KeyRange::single(pod_key.clone()),
            prev_kv: false,
        })],
        failure: Vec::new(),
    };
    let (_, response, _) = store
        .txn_as(lost, Some(RequestTag::new(second, 0)))
        .await
        .expect("part 0");
    assert!(!response.succeeded);
    let evicted = api
        .evict(numbered_eviction("db-1", second))
        .await
        .expect("the retried eviction goes through")
        .into_inner();
    assert!(!evicted.deleted);
    let pdb = object_of(client, "poddisruptionbudgets", "db").await;
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0, "{pdb}");
    assert!(pdb["status"]["disruptedPods"]["db-1"].is_string(), "{pdb}");
    let marked = object_of(client, "pods", "db-1").await;
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "{marked}"
    );
    plane.shutdown().await;
}
