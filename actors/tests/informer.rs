//! The informer against in-process masters (`rudder_apiserver::test_support`): changes reach
//! the cache and its subscribers in order, a broken stream resumes on another master without
//! missing or repeating an event, and a compacted revision leads to a relist that announces
//! what changed meanwhile.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use rudder_actors::informer::{Event, Informer, ObjectKey, Query, Subscription};
use rudder_apiserver::test_support::{eventually, revision, start};
use rudder_proto::api as pb;
use rudder_proto::client::ApiClient;
use serde_json::{json, Value};

fn config_map(name: &str, value: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": name },
        "data": { "k": value }
    })
}

fn query() -> Query {
    Query::all::<ConfigMap>().in_namespace("default")
}

/// An event as `added a@7`, `updated a@7->9`, `deleted a@10`, `synced`.
fn described(event: &Event<ConfigMap>) -> String {
    let at = |map: &ConfigMap| {
        format!(
            "{}@{}",
            map.metadata.name.as_deref().unwrap_or(""),
            map.metadata.resource_version.as_deref().unwrap_or("")
        )
    };
    match event {
        Event::Added(map) => format!("added {}", at(map)),
        Event::Updated { old, new } => format!(
            "updated {}->{}",
            at(old),
            new.metadata.resource_version.as_deref().unwrap_or("")
        ),
        Event::Deleted(map) => format!("deleted {}", at(map)),
        Event::Synced => "synced".into(),
    }
}

/// The next `count` events, failing the test if they take more than 20 s.
async fn next(subscription: &mut Subscription<ConfigMap>, count: usize) -> Vec<String> {
    let mut events = Vec::new();
    while events.len() < count {
        let event = tokio::time::timeout(Duration::from_secs(20), subscription.recv())
            .await
            .unwrap_or_else(|_| panic!("an event within 20 s; got only {events:?}"))
            .unwrap_or_else(|| panic!("the cache is gone; got only {events:?}"));
        events.push(described(&event));
    }
    events
}

/// No event arrives for a while (what a test checks after the last expected one).
async fn quiet(subscription: &mut Subscription<ConfigMap>) {
    let extra = tokio::time::timeout(Duration::from_millis(500), subscription.recv()).await;
    if let Ok(Some(event)) = extra {
        panic!("an unexpected event: {}", described(&event));
    }
}

fn version(object: &Value) -> String {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

async fn delete(client: &ApiClient, name: &str) -> String {
    let request = pb::DeleteRequest {
        resource: "configmaps".into(),
        namespace: "default".into(),
        name: name.into(),
        ..Default::default()
    };
    let deleted = client.delete_object(request).await.expect("delete");
    let object: Value = serde_json::from_slice(&deleted.json).expect("deleted object JSON");
    version(&object)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn created_updated_and_deleted_objects_reach_the_cache_in_order_until_the_informer_goes() {
    let (cluster, client) = start(1).await;
    let informer = Informer::<ConfigMap>::start(Arc::new(client), query(), Vec::new());
    let mut events = informer.subscribe();
    assert_eq!(next(&mut events, 1).await, ["synced"]);
    assert!(informer.cache().has_synced());
    let writer = ApiClient::new(cluster.client_endpoints());
    let a = writer
        .create_object("configmaps", "default", &config_map("a", "1"))
        .await;
    let b = writer
        .create_object("configmaps", "default", &config_map("b", "1"))
        .await;
    let (a, b) = (version(&a.expect("a")), version(&b.expect("b")));
    let updated = writer
        .patch_object(
            "configmaps",
            "default",
            "a",
            &json!({"data": {"k": "2"}}),
            false,
        )
        .await
        .expect("patch a");
    let a2 = version(&updated);
    let b_gone = delete(&writer, "b").await;
    assert_eq!(
        next(&mut events, 4).await,
        [
            format!("added a@{a}"),
            format!("added b@{b}"),
            format!("updated a@{a}->{a2}"),
            format!("deleted b@{b_gone}"),
        ]
    );
    let cached = informer.cache().get(&ObjectKey::new("default", "a"));
    let data = cached.and_then(|map| map.data.clone()).unwrap_or_default();
    assert_eq!(data.get("k").map(String::as_str), Some("2"));
    assert_eq!(informer.cache().len(), 1);
    assert_eq!(informer.cache().revision(), b_gone.parse().ok());
    // Its consumer gone, the reflector stops and lets the cache go: the subscription ends.
    drop(informer);
    let ended = tokio::time::timeout(Duration::from_secs(10), events.recv()).await;
    assert!(
        matches!(ended, Ok(None)),
        "the subscription ends with the informer"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broken_stream_resumes_on_another_master_without_missing_or_repeating_an_event() {
    let (mut cluster, client) = start(3).await;
    let client = Arc::new(client);
    let informer = Informer::<ConfigMap>::start(client.clone(), query(), Vec::new());
    let mut events = informer.subscribe();
    assert_eq!(next(&mut events, 1).await, ["synced"]);
    let writer = ApiClient::new(cluster.client_endpoints());
    let mut expected = Vec::new();
    for i in 0..3 {
        let created = writer
            .create_object(
                "configmaps",
                "default",
                &config_map(&format!("before-{i}"), "1"),
            )
            .await
            .expect("create");
        expected.push(format!("added before-{i}@{}", version(&created)));
    }
    assert_eq!(next(&mut events, 3).await, expected);
    // Stop the master the watch streams from: the informer resumes on another one.
    let watched = client.current_endpoint().to_string();
    let endpoints = cluster.client_endpoints();
    let index = endpoints
        .iter()
        .position(|e| *e == watched)
        .expect("a known master");
    cluster.stop(index).await;
    let mut expected = Vec::new();
    for i in 0..5 {
        let created = writer
            .create_object(
                "configmaps",
                "default",
                &config_map(&format!("after-{i}"), "1"),
            )
            .await
            .expect("create");
        expected.push(format!("added after-{i}@{}", version(&created)));
    }
    let gone = delete(&writer, "before-1").await;
    expected.push(format!("deleted before-1@{gone}"));
    // Every change exactly once, in order, and no relist (that would say `synced`).
    assert_eq!(next(&mut events, expected.len()).await, expected);
    quiet(&mut events).await;
    assert_ne!(client.current_endpoint(), watched, "the watch moved");
    assert_eq!(informer.cache().len(), 7);
    informer.stop();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_compacted_revision_leads_to_a_relist_that_announces_what_changed() {
    let (cluster, client) = start(3).await;
    let client = Arc::new(client);
    let writer = ApiClient::new(cluster.client_endpoints());
    let mut versions = Vec::new();
    for name in ["a", "b", "c"] {
        let created = writer
            .create_object("configmaps", "default", &config_map(name, "1"))
            .await
            .expect("create");
        versions.push(version(&created));
    }
    let first = Informer::<ConfigMap>::start(client.clone(), query(), Vec::new());
    let mut events = first.subscribe();
    let listed = next(&mut events, 4).await;
    assert_eq!(listed.last().map(String::as_str), Some("synced"));
    first.stop();
    eventually("the first reflector stops", || async { first.is_stopped() }).await;
    // While nobody watches: b deleted, c changed, d created; then history is compacted.
    delete(&writer, "b").await;
    let c = writer
        .patch_object(
            "configmaps",
            "default",
            "c",
            &json!({"data": {"k": "2"}}),
            false,
        )
        .await
        .expect("patch c");
    let d = writer
        .create_object("configmaps", "default", &config_map("d", "1"))
        .await
        .expect("create d");
    let now = revision(cluster.store(0)).await;
    cluster.store(0).compact(now).await.expect("compact");
    // Watches read a master's local state: let every master apply the compaction first.
    for i in 0..3 {
        revision(cluster.store(i)).await;
    }
    let cached_revision = first.cache().revision();
    assert!(cached_revision < Some(now as u64));
    // A second informer resumes on the same cache: its revision is gone, so it lists.
    let second = Informer::start_on(first.cache().clone(), client.clone(), query());
    assert_eq!(
        next(&mut events, 4).await,
        [
            format!("deleted b@{}", versions[1]),
            format!("updated c@{}->{}", versions[2], version(&c)),
            format!("added d@{}", version(&d)),
            "synced".to_string(),
        ]
    );
    let names: Vec<String> = second
        .cache()
        .list()
        .iter()
        .filter_map(|map| map.metadata.name.clone())
        .collect();
    assert_eq!(names, ["a", "c", "d"]);
    assert!(second.cache().revision() >= Some(now as u64));
    second.stop();
    cluster.shutdown().await;
}
