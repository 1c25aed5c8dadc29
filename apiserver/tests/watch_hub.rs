//! The watch hub (`watch/hub.rs`): a master's watches on a kind share one store watch. These
//! tests hold it to what a watch promises whichever way it is served: every matching event
//! after the start revision, once, in order, and nothing else — for watches indexed by node,
//! a watch starting further back than the hub remembers, and one whose client stops reading;
//! and a streaming list (`sendInitialEvents`): the state, its end marked, then the changes.

mod common;

use std::time::Duration;

use common::Plane;
use rudder_apiserver::delete::DeleteOptions;
use rudder_apiserver::watch::{WatchEvent, WatchOptions};
use rudder_apiserver::{Registry, Target, WriteOptions};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// A registry of its own over member 0's store (so over a hub of its own).
fn registry(plane: &Plane) -> Registry {
    Registry::new(
        plane.cluster.store(0).clone(),
        rudder_apiserver::encryption::keys_of_this_process(),
    )
}

async fn config_map_watch(registry: &Registry, from: &str) -> mpsc::Receiver<WatchEvent> {
    registry
        .watch(
            "configmaps",
            &WatchOptions {
                namespace: "default".into(),
                resource_version: from.into(),
                ..Default::default()
            },
        )
        .await
        .expect("the watch opens")
}

async fn pod_watch(
    registry: &Registry,
    field_selector: &str,
    from: &str,
) -> mpsc::Receiver<WatchEvent> {
    registry
        .watch(
            "pods",
            &WatchOptions {
                namespace: "default".into(),
                field_selector: field_selector.into(),
                resource_version: from.into(),
                ..Default::default()
            },
        )
        .await
        .expect("the watch opens")
}

/// The next `count` events as (type, name, resourceVersion).
async fn take(events: &mut mpsc::Receiver<WatchEvent>, count: usize) -> Vec<(String, String, i64)> {
    let mut taken = Vec::new();
    while taken.len() < count {
        let event = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} events within 20 s", taken.len()))
            .expect("the watch stays open");
        let meta = &event.object["metadata"];
        taken.push((
            event.kind.to_string(),
            meta["name"].as_str().unwrap_or_default().to_string(),
            meta["resourceVersion"]
                .as_str()
                .and_then(|version| version.parse().ok())
                .unwrap_or_default(),
        ));
    }
    taken
}

/// Nothing more arrives for a while.
async fn quiet(events: &mut mpsc::Receiver<WatchEvent>) {
    if let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(300), events.recv()).await {
        panic!(
            "an event nobody should see: {} {}",
            event.kind, event.object
        );
    }
}

/// Creates `count` ConfigMaps `cm-0...` (sixteen at a time); their revisions, in order.
async fn create_config_maps(registry: &Registry, count: usize) -> Vec<i64> {
    let mut revisions = Vec::new();
    for chunk in (0..count).collect::<Vec<_>>().chunks(16) {
        let writes = chunk.iter().map(|i| {
            let body = json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": format!("cm-{i}") }, "data": { "i": i.to_string() },
            });
            let registry = registry.clone();
            async move { create_config_map(&registry, &body).await }
        });
        revisions.extend(futures::future::join_all(writes).await);
    }
    revisions.sort_unstable();
    revisions
}

fn resource_version(object: &Value) -> i64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|version| version.parse().ok())
        .expect("a resourceVersion")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watches_that_name_a_node_see_exactly_its_pods_once_in_order() {
    let plane = Plane::start(1).await;
    let registry = registry(&plane);
    let from = plane.revision().await.to_string();
    let mut by_node = Vec::new();
    for node in 0..5 {
        by_node.push(pod_watch(&registry, &format!("spec.nodeName=n{node}"), &from).await);
    }
    let mut unbound = pod_watch(&registry, "spec.nodeName=", &from).await;
    let mut everything = pod_watch(&registry, "", &from).await;
    for i in 0..20 {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": { "name": format!("p{i:02}") },
            "spec": { "nodeName": format!("n{}", i % 5), "containers": [{ "name": "c", "image": "kubia" }] },
        });
        registry
            .create(
                "pods",
                "default",
                &serde_json::to_vec(&pod).unwrap(),
                &WriteOptions::default(),
            )
            .await
            .expect("created");
    }
    for i in 0..20 {
        let target = Target {
            resource: "pods",
            namespace: "default",
            name: &format!("p{i:02}"),
        };
        let options = DeleteOptions {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        registry
            .delete(&target, &options, None)
            .await
            .expect("deleted");
    }
    for (node, events) in by_node.iter_mut().enumerate() {
        let seen = take(events, 8).await;
        let names: Vec<String> = (0..20)
            .filter(|i| i % 5 == node)
            .map(|i| format!("p{i:02}"))
            .collect();
        let expected: Vec<(String, String)> = names
            .iter()
            .map(|name| ("ADDED".to_string(), name.clone()))
            .chain(
                names
                    .iter()
                    .map(|name| ("DELETED".to_string(), name.clone())),
            )
            .collect();
        let got: Vec<(String, String)> = seen
            .iter()
            .map(|(kind, name, _)| (kind.clone(), name.clone()))
            .collect();
        assert_eq!(got, expected, "node n{node}");
        assert!(
            seen.windows(2).all(|pair| pair[0].2 < pair[1].2),
            "in revision order: {seen:?}"
        );
        quiet(events).await;
    }
    quiet(&mut unbound).await;
    let all = take(&mut everything, 40).await;
    assert!(
        all.windows(2).all(|pair| pair[0].2 < pair[1].2),
        "in revision order: {all:?}"
    );
    quiet(&mut everything).await;
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_from_further_back_than_the_hub_remembers_misses_nothing() {
    let plane = Plane::start(1).await;
    let registry = registry(&plane);
    let from = plane.revision().await.to_string();
    // The first watch starts the hub; then more writes than it keeps (256 batches).
    let mut first = config_map_watch(&registry, &from).await;
    let revisions = create_config_maps(&registry, 1100).await;
    let seen_first: Vec<i64> = take(&mut first, 1100).await.iter().map(|e| e.2).collect();
    assert_eq!(seen_first, revisions);
    let mut late = config_map_watch(&registry, &from).await;
    let seen_late: Vec<i64> = take(&mut late, 1100).await.iter().map(|e| e.2).collect();
    assert_eq!(
        seen_late, revisions,
        "from before the hub's memory: every event, once, in order"
    );
    quiet(&mut late).await;
    // And one starting within what the hub remembers gets exactly the rest.
    let mut recent = config_map_watch(&registry, &revisions[1089].to_string()).await;
    let seen_recent: Vec<i64> = take(&mut recent, 10).await.iter().map(|e| e.2).collect();
    assert_eq!(seen_recent, revisions[1090..]);
    quiet(&mut recent).await;
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_whose_client_stops_reading_is_let_go_by_the_hub_and_misses_nothing() {
    let plane = Plane::start(1).await;
    let registry = registry(&plane);
    let from = plane.revision().await.to_string();
    let mut reading = config_map_watch(&registry, &from).await;
    let mut stalled = config_map_watch(&registry, &from).await;
    // More than the stalled watch's buffers hold (256 sent + 512 queued at the hub): the
    // hub drops it and it goes on from the store by itself.
    let total = 2600;
    let revisions = tokio::join!(create_config_maps(&registry, total), async {
        take(&mut reading, total).await
    });
    let seen_reading: Vec<i64> = revisions.1.iter().map(|e| e.2).collect();
    assert_eq!(seen_reading, revisions.0);
    let seen_stalled: Vec<i64> = take(&mut stalled, total)
        .await
        .iter()
        .map(|e| e.2)
        .collect();
    assert_eq!(
        seen_stalled, revisions.0,
        "every event, once, in order, after the stall"
    );
    quiet(&mut stalled).await;
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_from_a_compacted_revision_is_told_so_even_while_the_hub_remembers_it() {
    let plane = Plane::start(1).await;
    let registry = registry(&plane);
    let from = plane.revision().await.to_string();
    let mut first = config_map_watch(&registry, &from).await;
    let revisions = create_config_maps(&registry, 5).await;
    assert_eq!(take(&mut first, 5).await.len(), 5);
    registry
        .store()
        .compact(revisions[4])
        .await
        .expect("compacted");
    let mut late = config_map_watch(&registry, &revisions[1].to_string()).await;
    let event = tokio::time::timeout(Duration::from_secs(10), late.recv())
        .await
        .expect("an answer within 10 s")
        .expect("an event");
    assert_eq!(event.kind, "ERROR", "{}", event.object);
    assert_eq!(event.object["code"], 410, "{}", event.object);
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_streaming_list_sends_the_state_then_marks_its_end_then_the_changes() {
    let plane = Plane::start(1).await;
    let registry = registry(&plane);
    let before = plane.revision().await.to_string();
    let revisions = create_config_maps(&registry, 3).await;
    let streaming = |from: &str| WatchOptions {
        namespace: "default".into(),
        resource_version: from.into(),
        allow_bookmarks: true,
        send_initial_events: Some(true),
        ..Default::default()
    };
    // From an older resourceVersion: the state is not older than it, so it is all there.
    let mut events = registry
        .watch("configmaps", &streaming(&before))
        .await
        .expect("the watch opens");
    let state = take(&mut events, 3).await;
    let names: Vec<&str> = state.iter().map(|(_, name, _)| name.as_str()).collect();
    assert_eq!(names, ["cm-0", "cm-1", "cm-2"]);
    assert!(state.iter().all(|(kind, ..)| kind == "ADDED"));
    let end = tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .expect("the end of the initial events")
        .expect("the watch stays open");
    assert_eq!(end.kind, "BOOKMARK");
    assert_eq!(
        end.object["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    let marked = resource_version(&end.object);
    assert!(marked >= *revisions.last().unwrap());
    // Then the changes, after the state.
    let body = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "later" } });
    let later = create_config_map(&registry, &body).await;
    let change = take(&mut events, 1).await;
    assert_eq!(change[0].0, "ADDED");
    assert_eq!(change[0].1, "later");
    assert_eq!(change[0].2, later);
    assert!(later > marked);
    quiet(&mut events).await;

    // No objects still end with the mark; a version the cluster never reached is refused.
    let empty = WatchOptions {
        namespace: "empty".into(),
        ..streaming("")
    };
    let mut events = registry.watch("configmaps", &empty).await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(end.kind, "BOOKMARK");
    let future = (later + 1_000_000).to_string();
    let refused = registry
        .watch("configmaps", &streaming(&future))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("newer than"), "{refused}");
}

/// Creates the ConfigMap `body` in `default`; its revision.
async fn create_config_map(registry: &Registry, body: &Value) -> i64 {
    let written = registry
        .create(
            "configmaps",
            "default",
            &serde_json::to_vec(body).unwrap(),
            &WriteOptions::default(),
        )
        .await
        .expect("created");
    resource_version(&written)
}
