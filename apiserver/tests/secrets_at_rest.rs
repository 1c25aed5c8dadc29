//! Secrets encrypted at rest (`encryption.rs`), through the registry over a real store:
//! what the store holds is sealed and names its key, what the API answers (get, list,
//! watch: added, modified, deleted) is the Secret in clear; a Secret from before encryption reads and is
//! sealed by its next write; rotation rewrites a Secret sealed by an old key even when
//! nothing else changes; a master missing the key says which.

mod common;

use base64::Engine;
use common::Plane;
use rudder_apiserver::delete::DeleteOptions;
use rudder_apiserver::encryption::{Keyring, SharedKeyring};
use rudder_apiserver::list::ListOptions;
use rudder_apiserver::watch::WatchOptions;
use rudder_apiserver::{Part, Registry, Target, WriteOptions};
use rudder_raftstore::kv::{KeyRange, PutRequest, RangeRequest};
use rudder_raftstore::Store;
use serde_json::{json, Value};

const CANARY: &str = "canary-7f3a9c2e51d84b06";

fn secret(name: &str) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(CANARY);
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": name, "namespace": "default" },
        "data": { "password": encoded },
    })
    .to_string()
    .into_bytes()
}

fn target(name: &str) -> Target<'_> {
    Target {
        resource: "secrets",
        namespace: "default",
        name,
    }
}

async fn stored(store: &Store, name: &str) -> Vec<u8> {
    let (_, response) = store
        .range(RangeRequest {
            range: KeyRange::single(format!("/registry/secrets/default/{name}").into_bytes()),
            ..Default::default()
        })
        .await
        .unwrap();
    response
        .kvs
        .into_iter()
        .next()
        .expect("stored")
        .value
        .into()
}

fn holds_the_canary(bytes: &[u8]) -> bool {
    let encoded = base64::engine::general_purpose::STANDARD.encode(CANARY);
    [CANARY.as_bytes(), encoded.as_bytes()]
        .iter()
        .any(|needle| bytes.windows(needle.len()).any(|w| w == *needle))
}

fn password(secret: &Value) -> String {
    let encoded = secret["data"]["password"].as_str().expect("data.password");
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap(),
    )
    .unwrap()
}

fn keys(keyring: &Keyring) -> SharedKeyring {
    SharedKeyring::new(Keyring::parse(&keyring.to_text()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_holds_secrets_sealed_and_the_api_answers_them_in_clear() {
    let plane = Plane::start(1).await;
    let keyring = Keyring::generate("key1").unwrap();
    let registry = Registry::new(plane.cluster.store(0).clone(), keys(&keyring));
    let watch = registry
        .watch(
            "secrets",
            &WatchOptions {
                namespace: "default".into(),
                resource_version: plane.revision().await.to_string(),
                ..Default::default()
            },
        )
        .await;
    let mut watch = watch.expect("the watch opens");

    let created = registry
        .create(
            "secrets",
            "default",
            &secret("db"),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(password(&created), CANARY);

    let raw = stored(plane.cluster.store(0), "db").await;
    assert!(raw.starts_with(b"k8s:enc:aesgcm:v1:key1:"), "{raw:?}");
    assert!(!holds_the_canary(&raw));

    assert_eq!(
        password(&registry.get(&target("db")).await.unwrap()),
        CANARY
    );
    let listed = registry
        .list(
            "secrets",
            &ListOptions {
                namespace: "default".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(password(&listed.items[0]), CANARY);
    let event = watch.recv().await.expect("the creation is watched");
    assert_eq!(
        (event.kind, password(&event.object)),
        ("ADDED", CANARY.into())
    );

    // Replaced whole (PUT): sealed again, the change watched in clear.
    let mut replaced = registry.get(&target("db")).await.unwrap();
    replaced["metadata"]["labels"] = json!({ "tier": "db" });
    registry
        .update(
            &target("db"),
            replaced.to_string().as_bytes(),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert!(!holds_the_canary(
        &stored(plane.cluster.store(0), "db").await
    ));
    let event = watch.recv().await.expect("the update is watched");
    assert_eq!(
        (event.kind, password(&event.object)),
        ("MODIFIED", CANARY.into())
    );
    // The API of the plane's master (its keyring is this process's, another key by the
    // same name) cannot read it, and says so.
    let refused = plane
        .client
        .get_object("secrets", "default", "db")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains(
            "/registry/secrets/default/db cannot be read: it does not open with key \"key1\""
        ),
        "{refused}"
    );

    // Deleted: the DELETED event carries the last state, opened.
    let deleted = DeleteOptions {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    registry
        .delete(&target("db"), &deleted, None)
        .await
        .unwrap();
    let event = watch.recv().await.expect("the deletion is watched");
    assert_eq!(
        (event.kind, password(&event.object)),
        ("DELETED", CANARY.into())
    );

    // A ConfigMap is not sealed.
    registry
        .create(
            "configmaps",
            "default",
            json!({ "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": { "name": "plain" }, "data": { "k": CANARY } })
            .to_string()
            .as_bytes(),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let (_, plain) = plane
        .cluster
        .store(0)
        .range(RangeRequest {
            range: KeyRange::single(b"/registry/configmaps/default/plain".to_vec()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(holds_the_canary(&plain.kvs[0].value));
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_keys_and_secrets_in_clear_are_rewritten_by_an_update_that_changes_nothing() {
    let plane = Plane::start(1).await;
    let store = plane.cluster.store(0).clone();
    let mut keyring = Keyring::generate("key1").unwrap();
    let shared = keys(&keyring);
    let registry = Registry::new(store.clone(), shared.clone());

    // Written before encryption was on: read as it is.
    let mut before: Value = serde_json::from_slice(&secret("old")).unwrap();
    before["metadata"]["uid"] = json!("2b7c0f0e-1111-4c4c-8888-000000000001");
    before["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    store
        .put(PutRequest {
            key: b"/registry/secrets/default/old".to_vec(),
            value: before.to_string().into_bytes().into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        password(&registry.get(&target("old")).await.unwrap()),
        CANARY
    );
    registry
        .create(
            "secrets",
            "default",
            &secret("new"),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let sealed_before = stored(&store, "new").await;

    // An empty patch seals the one in clear, and leaves the one sealed by the first key.
    let patch = |name: &'static str| {
        let registry = registry.clone();
        async move {
            registry
                .patch(&target(name), b"{}", Part::Object, &WriteOptions::default())
                .await
                .unwrap()
        }
    };
    patch("old").await;
    assert!(stored(&store, "old")
        .await
        .starts_with(b"k8s:enc:aesgcm:v1:key1:"));
    patch("new").await;
    assert_eq!(
        stored(&store, "new").await,
        sealed_before,
        "not written again"
    );

    // Rotation: key2 first; what key1 sealed still reads, and is rewritten by key2.
    keyring.add("key2").unwrap();
    keyring.make_first("key2").unwrap();
    shared.replace(Keyring::parse(&keyring.to_text()).unwrap());
    assert_eq!(
        password(&registry.get(&target("new")).await.unwrap()),
        CANARY
    );
    patch("new").await;
    patch("old").await;
    for name in ["new", "old"] {
        let raw = stored(&store, name).await;
        assert!(raw.starts_with(b"k8s:enc:aesgcm:v1:key2:"), "{name}");
        assert!(!holds_the_canary(&raw), "{name}");
    }
    // key1 is no longer needed.
    keyring.remove("key1").unwrap();
    shared.replace(Keyring::parse(&keyring.to_text()).unwrap());
    for name in ["new", "old"] {
        assert_eq!(
            password(&registry.get(&target(name)).await.unwrap()),
            CANARY
        );
    }
    plane.shutdown().await;
}
