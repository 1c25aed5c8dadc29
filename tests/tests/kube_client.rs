//! A Rust client nobody here wrote: kube-rs (on the same k8s-openapi) against a 3-master
//! `rudder up`, through the kubeconfig and endpoint it writes. It creates, lists, patches
//! (strategic, merge and server-side apply, with a conflict and a forced apply), deletes,
//! and follows the ConfigMaps with its `watcher` and `reflector` (listing, and streaming its
//! list), which must see every change made while each master in turn is killed (whichever
//! one its watch was on).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Client, Config};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rudder_tests::up::{stop, up};
use rudder_tests::wait_for;
use serde_json::json;

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("k".to_string(), "v".to_string())])),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_lists_watches_writes_and_its_watcher_survives_each_master_s_death() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = rudder_tests::up::args(dir.path(), &["--nodes", "0"]);
    let running = up(&args).await;
    let kubeconfig = Kubeconfig::read_from(data.join("kubeconfig")).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    // Create (once the masters have made the default namespace, a moment after they are
    // ready), read back, patch both ways.
    let created = wait_for(
        "first created in the default namespace",
        Duration::from_secs(20),
        async || {
            maps.create(&PostParams::default(), &config_map("first"))
                .await
                .map_err(|error| error.to_string())
        },
    )
    .await;
    assert!(created.metadata.uid.is_some());
    let listed = maps.list(&ListParams::default()).await.unwrap();
    assert!(listed
        .items
        .iter()
        .any(|m| m.metadata.name.as_deref() == Some("first")));
    assert!(listed.metadata.resource_version.is_some());
    let strategic = Patch::Strategic(json!({ "data": { "size": "L" } }));
    maps.patch("first", &PatchParams::default(), &strategic)
        .await
        .unwrap();
    let merge = Patch::Merge(json!({ "metadata": { "labels": { "tier": "front" } } }));
    let patched = maps
        .patch("first", &PatchParams::default(), &merge)
        .await
        .unwrap();
    assert_eq!(patched.data.as_ref().unwrap()["size"], "L");
    assert_eq!(patched.data.as_ref().unwrap()["k"], "v");
    assert_eq!(patched.metadata.labels.as_ref().unwrap()["tier"], "front");
    // A conflict reads as kube-apiserver's.
    let mut stale = created.clone();
    stale.data = Some(BTreeMap::from([("k".to_string(), "w".to_string())]));
    let conflict = maps
        .replace("first", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    match conflict {
        kube::Error::Api(status) => assert_eq!(status.code, 409, "{status:?}"),
        other => panic!("expected a 409, got {other}"),
    }

    // Server-side apply: creates, owns its fields, conflicts with another manager's, and
    // takes them when forced.
    let config = json!({ "apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": { "name": "applied" },
                         "data": { "mode": "a", "size": "s" } });
    let mine = PatchParams::apply("kube-rs-test");
    let applied = maps
        .patch("applied", &mine, &Patch::Apply(&config))
        .await
        .unwrap();
    let managers = applied.metadata.managed_fields.clone().unwrap_or_default();
    assert_eq!(managers.len(), 1, "{managers:?}");
    assert_eq!(managers[0].manager.as_deref(), Some("kube-rs-test"));
    assert_eq!(managers[0].operation.as_deref(), Some("Apply"));
    let theirs = json!({ "apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": { "name": "applied" }, "data": { "mode": "b" } });
    let conflict = maps
        .patch(
            "applied",
            &PatchParams::apply("other"),
            &Patch::Apply(&theirs),
        )
        .await
        .unwrap_err();
    match conflict {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 409, "{status:?}");
            assert!(status.message.contains(".data.mode"), "{status:?}");
        }
        other => panic!("expected a 409, got {other}"),
    }
    let forced = maps
        .patch(
            "applied",
            &PatchParams::apply("other").force(),
            &Patch::Apply(&theirs),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["mode"], "b");
    assert_eq!(forced.data.as_ref().unwrap()["size"], "s");

    // Two reflectors follow every change: one lists then watches, one streams its list
    // (sendInitialEvents, the initial events ended by a bookmark).
    let mut readers = Vec::new();
    let mut followers = Vec::new();
    for config in [
        watcher::Config::default(),
        watcher::Config::default().streaming_lists(),
    ] {
        let (reader, writer) = reflector::store::<ConfigMap>();
        let follow = reflector(writer, watcher(maps.clone(), config).default_backoff())
            .applied_objects()
            .for_each(|_| async {});
        followers.push(tokio::spawn(follow));
        readers.push(reader);
    }
    let has = |name: &str| {
        let readers = readers.clone();
        let name = name.to_owned();
        move || {
            readers.iter().all(|reader| {
                reader
                    .state()
                    .iter()
                    .any(|m| m.metadata.name.as_deref() == Some(name.as_str()))
            })
        }
    };
    wait_for(
        "the reflector holds first",
        Duration::from_secs(20),
        async || {
            if has("first")() {
                Ok(())
            } else {
                Err("missing".to_string())
            }
        },
    )
    .await;

    // Each master in turn is killed (and restarted by rudder up): whichever one the watch
    // was on, a change made meanwhile reaches the reflector.
    for (i, pid) in running.pids.iter().take(3).enumerate() {
        kill(Pid::from_raw(*pid), Signal::SIGKILL).unwrap();
        let name = format!("during-{i}");
        wait_for(
            &format!("{name} created through the endpoint"),
            Duration::from_secs(30),
            async || match maps
                .create(&PostParams::default(), &config_map(&name))
                .await
            {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
                Err(error) => Err(error.to_string()),
            },
        )
        .await;
        wait_for(
            &format!("the reflector holds {name}"),
            Duration::from_secs(30),
            async || {
                if has(&name)() {
                    Ok(())
                } else {
                    Err("missing".to_string())
                }
            },
        )
        .await;
    }

    maps.delete("first", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        "the reflector drops first",
        Duration::from_secs(20),
        async || {
            if readers.iter().any(|reader| {
                reader
                    .state()
                    .iter()
                    .any(|m| m.metadata.name.as_deref() == Some("first"))
            }) {
                Err("still there".to_string())
            } else {
                Ok(())
            }
        },
    )
    .await;
    for follower in followers {
        follower.abort();
    }
    stop(running).await;
}
