//! The controller manager inside real masters (`rudder server` processes): the master holding
//! the controller lease is killed in the middle of a ReplicaSet's scale from 0 to 200 (as its
//! first pods appear; the test checks it had not finished); the
//! next one takes over, the set converges to exactly 200 pods, and a watch opened before the
//! scale never saw more than 200 live pods at once (pods being deleted not counted). A
//! deployment and a namespace deleted through the master that leads the controllers, killed
//! right after: the garbage collector and the namespace controller of the next leader finish
//! the cascade.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rudder_proto::api::{DeleteRequest, ListRequest, WatchRequest};
use rudder_proto::client::ApiClient;
use rudder_tests::{
    hollow_nodes, rudder_binary_beside_tests, short_lease_flags, until, wait_for_default_namespace,
    ProcessCluster,
};
use serde_json::{json, Value};

/// Live pods as a watch shows them, and the most ever live at once.
#[derive(Default)]
struct Seen {
    live: BTreeMap<String, bool>,
    most: usize,
}

impl Seen {
    fn count(&self) -> usize {
        self.live.values().filter(|live| **live).count()
    }
}

/// Follows the pods labelled `app=big` through `client` (one master that stays up).
async fn follow(client: ApiClient, seen: Arc<Mutex<Seen>>) {
    let request = WatchRequest {
        resource: "pods".into(),
        namespace: "default".into(),
        label_selector: "app=big".into(),
        ..Default::default()
    };
    let mut stream = client.watch(request).await.expect("a watch");
    while let Ok(Some(event)) = stream.message().await {
        let pod: Value = serde_json::from_slice(&event.object).expect("a pod");
        let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
        let live = event.r#type != "DELETED" && pod["metadata"]["deletionTimestamp"].is_null();
        let mut seen = seen.lock().unwrap();
        seen.live.insert(name, live);
        seen.most = seen.most.max(seen.count());
    }
}

async fn live_pods(client: &ApiClient) -> usize {
    let listed = client
        .list(ListRequest {
            resource: "pods".into(),
            namespace: "default".into(),
            label_selector: "app=big".into(),
            ..Default::default()
        })
        .await;
    let Ok(listed) = listed else { return 0 };
    listed
        .items
        .iter()
        .filter_map(|item| serde_json::from_slice::<Value>(item).ok())
        .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_to_200_converges_exactly_when_the_controller_leader_is_killed_midway() {
    let mut cluster =
        ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 3, &short_lease_flags())
            .unwrap();
    let client = ApiClient::new(cluster.endpoints());
    wait_for_default_namespace(&client).await;
    let set = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": { "name": "big", "namespace": "default" },
        "spec": { "replicas": 0, "selector": { "matchLabels": { "app": "big" } },
                  "template": { "metadata": { "labels": { "app": "big" } },
                                "spec": { "containers": [{ "name": "c", "image": "kubia" }] } } }
    });
    client
        .create_object("replicasets", "default", &set)
        .await
        .expect("creating the set");

    // Who leads the controllers: the lease holder is `<master name>_<suffix>`.
    let mut holder = String::new();
    until(
        "a controller lease holder",
        Duration::from_secs(30),
        async || {
            let lease = client
                .get_object("leases", "kube-system", "rudder-controller-manager")
                .await;
            holder = lease
                .ok()
                .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
                .unwrap_or_default();
            !holder.is_empty()
        },
    )
    .await;
    let leader_name = holder.split('_').next().unwrap().to_string();
    let leader = cluster
        .members
        .iter()
        .position(|m| m.name == leader_name)
        .expect("the holder is a master");
    let survivor = cluster
        .members
        .iter()
        .position(|m| m.name != leader_name)
        .unwrap();

    let seen = Arc::new(Mutex::new(Seen::default()));
    let watcher = ApiClient::new(vec![cluster.members[survivor].client_addr.clone()]);
    let following = tokio::spawn(follow(watcher, seen.clone()));

    client
        .patch_object(
            "replicasets",
            "default",
            "big",
            &json!({ "spec": { "replicas": 200 } }),
            false,
        )
        .await
        .expect("scaling to 200");
    until(
        "the first pods (the leader is still creating the rest)",
        Duration::from_secs(60),
        async || seen.lock().unwrap().count() >= 1,
    )
    .await;
    cluster.members[leader].kill();

    let survivors = ApiClient::new(
        cluster
            .members
            .iter()
            .filter(|m| m.is_running())
            .map(|m| m.client_addr.clone())
            .collect(),
    );
    let at_kill = live_pods(&survivors).await;
    assert!(
        at_kill < 200,
        "the leader finished before it was killed ({at_kill} pods): nothing was tested"
    );
    until(
        "200 pods after the failover",
        Duration::from_secs(90),
        async || live_pods(&survivors).await == 200,
    )
    .await;
    until(
        "the set's status says 200",
        Duration::from_secs(30),
        async || {
            let set = survivors.get_object("replicasets", "default", "big").await;
            set.is_ok_and(|s| s["status"]["replicas"] == 200)
        },
    )
    .await;
    until(
        "the watch has seen them all",
        Duration::from_secs(30),
        async || seen.lock().unwrap().count() == 200,
    )
    .await;
    let lease = survivors
        .get_object("leases", "kube-system", "rudder-controller-manager")
        .await
        .expect("the lease");
    assert_ne!(
        lease["spec"]["holderIdentity"].as_str(),
        Some(holder.as_str()),
        "another master took over"
    );
    assert!(
        lease["spec"]["leaseTransitions"].as_i64() >= Some(2),
        "{lease}"
    );
    assert_eq!(live_pods(&survivors).await, 200);
    let most = seen.lock().unwrap().most;
    assert!(most <= 200, "a watch saw {most} live pods at once");
    following.abort();
    drop(cluster);
}

/// The DaemonSet's live pods: node name (empty while unbound) → how many.
async fn daemon_pods(client: &ApiClient) -> BTreeMap<String, usize> {
    let listed = client
        .list(ListRequest {
            resource: "pods".into(),
            namespace: "default".into(),
            label_selector: "app=daemon".into(),
            ..Default::default()
        })
        .await;
    let mut by_node = BTreeMap::new();
    for item in listed.map(|l| l.items).unwrap_or_default() {
        let pod: Value = serde_json::from_slice(&item).expect("a pod");
        if pod["metadata"]["deletionTimestamp"].is_null() {
            let node = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
            *by_node.entry(node).or_insert(0) += 1;
        }
    }
    by_node
}

/// A DaemonSet over 10 hollow nodes, one tainted: a pod on each of the 9 others, bound by
/// the scheduler; once its template tolerates the taint, one on all 10 (the rolling update
/// replaces the 9 as they become ready on their hollow kubelets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_set_runs_on_every_node_it_tolerates() {
    let cluster =
        ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 1, &short_lease_flags())
            .unwrap();
    let client = ApiClient::new(cluster.endpoints());
    wait_for_default_namespace(&client).await;
    let mut hollow = hollow_nodes(&cluster.endpoints().join(","), "d", 10);
    until("10 hollow nodes", Duration::from_secs(60), async || {
        client
            .list(ListRequest {
                resource: "nodes".into(),
                ..Default::default()
            })
            .await
            .is_ok_and(|l| l.items.len() == 10)
    })
    .await;
    client
        .patch_object(
            "nodes",
            "",
            "d-3",
            &json!({ "spec": { "taints": [
                { "key": "dedicated", "value": "infra", "effect": "NoSchedule" }] } }),
            false,
        )
        .await
        .expect("tainting d-3");
    let daemon_set = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": { "name": "daemon", "namespace": "default" },
        "spec": { "selector": { "matchLabels": { "app": "daemon" } },
                  "template": { "metadata": { "labels": { "app": "daemon" } },
                                "spec": { "containers": [{ "name": "c", "image": "kubia" }] } } }
    });
    client
        .create_object("daemonsets", "default", &daemon_set)
        .await
        .expect("creating the DaemonSet");
    let untainted: BTreeMap<String, usize> = (0..10)
        .filter(|i| *i != 3)
        .map(|i| (format!("d-{i}"), 1))
        .collect();
    let mut last = BTreeMap::new();
    until(
        "one bound pod on each of the 9 untainted nodes",
        Duration::from_secs(60),
        async || {
            last = daemon_pods(&client).await;
            last == untainted
        },
    )
    .await;

    client
        .patch_object(
            "daemonsets",
            "default",
            "daemon",
            &json!({ "spec": { "template": { "spec": { "tolerations": [
                { "key": "dedicated", "operator": "Exists", "effect": "NoSchedule" }] } } } }),
            false,
        )
        .await
        .expect("adding the toleration");
    let everywhere: BTreeMap<String, usize> = (0..10).map(|i| (format!("d-{i}"), 1)).collect();
    until(
        "one bound pod on each of the 10 nodes",
        Duration::from_secs(90),
        async || {
            last = daemon_pods(&client).await;
            last == everywhere
        },
    )
    .await;
    until(
        "the status counts 10 scheduled and up to date",
        Duration::from_secs(60),
        async || {
            let set = client.get_object("daemonsets", "default", "daemon").await;
            set.is_ok_and(|s| {
                s["status"]["desiredNumberScheduled"] == 10
                    && s["status"]["currentNumberScheduled"] == 10
                    && s["status"]["updatedNumberScheduled"] == 10
            })
        },
    )
    .await;
    hollow.kill().await.expect("stopping the hollow nodes");
    drop(cluster);
}

/// The live pods of `app=<app>`, by node.
async fn live_by_node(client: &ApiClient, app: &str) -> BTreeMap<String, usize> {
    let listed = client
        .list(ListRequest {
            resource: "pods".into(),
            namespace: "default".into(),
            label_selector: format!("app={app}"),
            ..Default::default()
        })
        .await;
    let mut by_node = BTreeMap::new();
    for item in listed.map(|l| l.items).unwrap_or_default() {
        let pod: Value = serde_json::from_slice(&item).expect("a pod");
        if pod["metadata"]["deletionTimestamp"].is_null() {
            let node = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
            *by_node.entry(node).or_insert(0) += 1;
        }
    }
    by_node
}

fn condition<'a>(node: &'a Value, kind: &str) -> Option<&'a Value> {
    node["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// Three hollow nodes' process is killed: with the default 40 s grace, their nodes turn
/// Unknown within 50 s and are tainted unreachable (NoExecute); the pods on them, tolerating
/// that for 5 s, are evicted and their ReplicaSet replaces them on the three nodes left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_on_nodes_that_went_silent_are_evicted_and_replaced_elsewhere() {
    let cluster =
        ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 1, &short_lease_flags())
            .unwrap();
    let client = ApiClient::new(cluster.endpoints());
    wait_for_default_namespace(&client).await;
    let servers = cluster.endpoints().join(",");
    let mut doomed = hollow_nodes(&servers, "gone", 3);
    let mut kept = hollow_nodes(&servers, "kept", 3);
    until("6 hollow nodes", Duration::from_secs(60), async || {
        client
            .list(ListRequest {
                resource: "nodes".into(),
                ..Default::default()
            })
            .await
            .is_ok_and(|l| l.items.len() == 6)
    })
    .await;
    let tolerations = json!([
        { "key": "node.kubernetes.io/unreachable", "operator": "Exists",
          "effect": "NoExecute", "tolerationSeconds": 5 },
        { "key": "node.kubernetes.io/not-ready", "operator": "Exists",
          "effect": "NoExecute", "tolerationSeconds": 5 }]);
    let set = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": { "name": "spread", "namespace": "default" },
        "spec": { "replicas": 6, "selector": { "matchLabels": { "app": "spread" } },
                  "template": { "metadata": { "labels": { "app": "spread" } },
                                "spec": { "tolerations": tolerations,
                                          "containers": [{ "name": "c", "image": "kubia" }] } } }
    });
    client
        .create_object("replicasets", "default", &set)
        .await
        .expect("creating the set");
    let mut placed = BTreeMap::new();
    until("6 pods bound", Duration::from_secs(60), async || {
        placed = live_by_node(&client, "spread").await;
        placed.values().sum::<usize>() == 6 && !placed.contains_key("")
    })
    .await;
    assert!(
        placed.keys().any(|n| n.starts_with("gone-")),
        "no pod landed on the nodes to be killed: {placed:?}"
    );

    doomed.kill().await.expect("killing the hollow nodes");
    let killed = tokio::time::Instant::now();
    until(
        "the killed nodes are Unknown and tainted",
        Duration::from_secs(50),
        async || {
            let mut all = true;
            for i in 0..3 {
                let node = client.get_object("nodes", "", &format!("gone-{i}")).await;
                let Ok(node) = node else { return false };
                let unknown = condition(&node, "Ready").is_some_and(|c| c["status"] == "Unknown");
                let tainted = node["spec"]["taints"].as_array().is_some_and(|taints| {
                    taints.iter().any(|t| {
                        t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoSchedule"
                    })
                });
                all &= unknown && tainted;
            }
            all
        },
    )
    .await;
    println!("the killed nodes were Unknown after {:?}", killed.elapsed());
    let mut last = BTreeMap::new();
    until(
        "6 live pods, all on the nodes left",
        Duration::from_secs(90),
        async || {
            last = live_by_node(&client, "spread").await;
            last.values().sum::<usize>() == 6 && last.keys().all(|n| n.starts_with("kept-"))
        },
    )
    .await;
    for i in 0..3 {
        let node = client
            .get_object("nodes", "", &format!("gone-{i}"))
            .await
            .expect("a node");
        let taints = node["spec"]["taints"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            taints
                .iter()
                .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute"),
            "gone-{i} lacks the NoExecute taint: {taints:?}"
        );
    }
    println!("replaced after {:?}", killed.elapsed());
    kept.kill().await.expect("stopping the hollow nodes");
    drop(cluster);
}

/// What a watch saw of the StatefulSet's pods: each event as (type, name, uid, node,
/// being deleted, ready).
type PodEvents = Arc<Mutex<Vec<(String, String, String, String, bool, bool)>>>;

async fn follow_pods(client: ApiClient, selector: &str, events: PodEvents) {
    let request = WatchRequest {
        resource: "pods".into(),
        namespace: "default".into(),
        label_selector: selector.into(),
        ..Default::default()
    };
    let mut stream = client.watch(request).await.expect("a watch");
    while let Ok(Some(event)) = stream.message().await {
        let pod: Value = serde_json::from_slice(&event.object).expect("a pod");
        let text = |v: &Value| v.as_str().unwrap_or("").to_string();
        let ready = pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        events.lock().unwrap().push((
            event.r#type.clone(),
            text(&pod["metadata"]["name"]),
            text(&pod["metadata"]["uid"]),
            text(&pod["spec"]["nodeName"]),
            !pod["metadata"]["deletionTimestamp"].is_null(),
            ready,
        ));
    }
}

/// A StatefulSet of 3 with a claim template over four single-node hollow processes: pods
/// 0, 1, 2 are made in order (each once the one before is Ready) with their claims, each
/// bound to one of three static `shared` volumes made up front (no node affinity, as network
/// storage would be, so that a pod may move); a deleted web-1 comes back under its name with
/// its claim; when web-1's node goes silent its pod is evicted but never replaced while it
/// still exists, and comes back elsewhere once it is force-deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_set_keeps_one_pod_per_ordinal_through_deletion_and_a_lost_node() {
    let mut master_flags = short_lease_flags();
    master_flags.extend(["--node-monitor-grace-period", "8s"].map(String::from));
    let cluster =
        ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 1, &master_flags).unwrap();
    let client = ApiClient::new(cluster.endpoints());
    wait_for_default_namespace(&client).await;
    let servers = cluster.endpoints().join(",");
    let mut hollow: BTreeMap<String, tokio::process::Child> = (0..4)
        .map(|i| {
            (
                format!("s{i}-0"),
                hollow_nodes(&servers, &format!("s{i}"), 1),
            )
        })
        .collect();
    until("4 hollow nodes", Duration::from_secs(60), async || {
        client
            .list(ListRequest {
                resource: "nodes".into(),
                ..Default::default()
            })
            .await
            .is_ok_and(|l| l.items.len() == 4)
    })
    .await;
    // Volumes that any node can reach (as network storage would be): a local-path volume
    // would pin web-1 to the node that is lost below (actors/tests/volumes.rs covers those).
    for i in 0..3 {
        let volume = json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": { "name": format!("shared-{i}") },
            "spec": { "storageClassName": "shared", "accessModes": ["ReadWriteOnce"],
                      "capacity": { "storage": "1Gi" },
                      "hostPath": { "path": format!("/tmp/rudder-shared-{i}") } }
        });
        client
            .create_object("persistentvolumes", "", &volume)
            .await
            .expect("creating a volume");
    }
    let events: PodEvents = Arc::default();
    let watcher = ApiClient::new(cluster.endpoints());
    let following = tokio::spawn(follow_pods(watcher, "app=web", events.clone()));
    let set = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": { "name": "web", "namespace": "default" },
        "spec": { "replicas": 3, "serviceName": "web",
                  "selector": { "matchLabels": { "app": "web" } },
                  "template": { "metadata": { "labels": { "app": "web" } },
                                "spec": { "tolerations": [
                                    { "key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                      "effect": "NoExecute", "tolerationSeconds": 2 }],
                                    "containers": [{ "name": "c", "image": "kubia",
                                    "volumeMounts": [{ "name": "data", "mountPath": "/data" }] }] } },
                  "volumeClaimTemplates": [{ "metadata": { "name": "data" },
                      "spec": { "accessModes": ["ReadWriteOnce"], "storageClassName": "shared",
                                "resources": { "requests": { "storage": "1Gi" } } } }] }
    });
    client
        .create_object("statefulsets", "default", &set)
        .await
        .expect("creating the StatefulSet");
    let pod = async |name: &str| client.get_object("pods", "default", name).await.ok();
    until(
        "web-0, web-1, web-2 Ready",
        Duration::from_secs(60),
        async || {
            let mut ready = 0;
            for i in 0..3 {
                let ready_now = pod(&format!("web-{i}")).await.is_some_and(|p| {
                    p["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
                ready += usize::from(ready_now);
            }
            ready == 3
        },
    )
    .await;
    {
        // In order: each ADDED only once every lower ordinal had been seen Ready.
        let seen = events.lock().unwrap();
        let mut ready = std::collections::BTreeSet::new();
        let mut added = Vec::new();
        for (kind, name, _, _, _, is_ready) in seen.iter() {
            if kind == "ADDED" {
                let ordinal: usize = name.trim_start_matches("web-").parse().unwrap();
                assert!(
                    (0..ordinal).all(|lower| ready.contains(&format!("web-{lower}"))),
                    "{name} was created before the ordinals below it were Ready"
                );
                added.push(name.clone());
            }
            if *is_ready {
                ready.insert(name.clone());
            }
        }
        assert_eq!(added, ["web-0", "web-1", "web-2"]);
    }
    for i in 0..3 {
        let claim = client
            .get_object(
                "persistentvolumeclaims",
                "default",
                &format!("data-web-{i}"),
            )
            .await
            .expect("the claim of each pod");
        assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "1Gi");
        assert_eq!(claim["status"]["phase"], "Bound", "{claim}");
    }

    // A deleted web-1 comes back under its name, with its claim.
    let old = pod("web-1").await.expect("web-1");
    let old_uid = old["metadata"]["uid"].as_str().unwrap().to_string();
    client
        .delete_object(DeleteRequest {
            resource: "pods".into(),
            namespace: "default".into(),
            name: "web-1".into(),
            ..Default::default()
        })
        .await
        .expect("deleting web-1");
    let mut replaced = Value::Null;
    until(
        "web-1 back and Ready",
        Duration::from_secs(30),
        async || {
            replaced = pod("web-1").await.unwrap_or_default();
            replaced["metadata"]["uid"]
                .as_str()
                .is_some_and(|u| u != old_uid)
                && replaced["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
        },
    )
    .await;
    let claim_of = |pod: &Value| {
        pod["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|v| {
                v["persistentVolumeClaim"]["claimName"]
                    .as_str()
                    .map(str::to_string)
            })
    };
    assert_eq!(claim_of(&replaced).as_deref(), Some("data-web-1"));

    // Its node goes silent: evicted (marked), never replaced while it exists.
    let lost_uid = replaced["metadata"]["uid"].as_str().unwrap().to_string();
    let lost_node = replaced["spec"]["nodeName"].as_str().unwrap().to_string();
    let mut process = hollow.remove(&lost_node).expect("a process per node");
    process.kill().await.expect("killing web-1's node");
    until(
        "web-1 evicted from its silent node",
        Duration::from_secs(60),
        async || {
            pod("web-1")
                .await
                .is_some_and(|p| !p["metadata"]["deletionTimestamp"].is_null())
        },
    )
    .await;
    let still = pod("web-1")
        .await
        .expect("web-1 stays until confirmed gone");
    assert_eq!(still["metadata"]["uid"], lost_uid.as_str());
    client
        .delete_object(DeleteRequest {
            resource: "pods".into(),
            namespace: "default".into(),
            name: "web-1".into(),
            grace_period_seconds: Some(0),
            ..Default::default()
        })
        .await
        .expect("force-deleting web-1");
    let forced = tokio::time::Instant::now();
    until(
        "web-1 back on another node",
        Duration::from_secs(30),
        async || {
            pod("web-1").await.is_some_and(|p| {
                p["metadata"]["uid"].as_str().is_some_and(|u| u != lost_uid)
                    && p["spec"]["nodeName"]
                        .as_str()
                        .is_some_and(|n| !n.is_empty() && n != lost_node)
            })
        },
    )
    .await;
    println!("web-1 back {:?} after the force delete", forced.elapsed());
    following.abort();
    // Never two web-1 at once: a new uid appears only after the previous one was DELETED.
    let seen = events.lock().unwrap().clone();
    let mut live: Option<String> = None;
    for (kind, name, uid, _, _, _) in seen.iter().filter(|e| e.1 == "web-1") {
        match kind.as_str() {
            "DELETED" => {
                if live.as_deref() == Some(uid.as_str()) {
                    live = None;
                }
            }
            _ => match &live {
                Some(current) if current != uid => {
                    panic!("{name} {uid} appeared while {current} still existed")
                }
                _ => live = Some(uid.clone()),
            },
        }
    }
    for (_, mut process) in hollow {
        process.kill().await.expect("stopping a hollow node");
    }
    drop(cluster);
}

/// How many objects of `resource` are in `namespace` (selected by `labels`); a failed list
/// counts as "some" so the caller keeps waiting.
async fn count(client: &ApiClient, resource: &str, namespace: &str, labels: &str) -> usize {
    client
        .list(ListRequest {
            resource: resource.into(),
            namespace: namespace.into(),
            label_selector: labels.into(),
            ..Default::default()
        })
        .await
        .map_or(usize::MAX, |listed| listed.items.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cascade_completes_when_the_master_taking_the_deletes_is_killed() {
    let mut cluster =
        ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 3, &short_lease_flags())
            .unwrap();
    let client = ApiClient::new(cluster.endpoints());
    wait_for_default_namespace(&client).await;
    client
        .create_object(
            "namespaces",
            "",
            &json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "shop" } }),
        )
        .await
        .expect("creating the namespace");
    let deployment = |namespace: &str| {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web", "namespace": namespace },
            "spec": { "replicas": 20, "selector": { "matchLabels": { "app": "web" } },
                      "template": { "metadata": { "labels": { "app": "web" } },
                                    "spec": { "containers": [{ "name": "c", "image": "kubia" }] } } }
        })
    };
    for namespace in ["default", "shop"] {
        client
            .create_object("deployments", namespace, &deployment(namespace))
            .await
            .expect("creating a deployment");
    }
    client
        .create_object(
            "configmaps",
            "shop",
            &json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "prices" } }),
        )
        .await
        .expect("creating a config map");
    until(
        "20 pods in each namespace",
        Duration::from_secs(60),
        async || {
            count(&client, "pods", "default", "app=web").await == 20
                && count(&client, "pods", "shop", "app=web").await == 20
        },
    )
    .await;

    // The deletes go to the master leading the controllers (its garbage collector and
    // namespace controller are the ones that would carry the cascade on), killed at once.
    let lease = client
        .get_object("leases", "kube-system", "rudder-controller-manager")
        .await
        .expect("the controller lease");
    let holder = lease["spec"]["holderIdentity"].as_str().unwrap_or("");
    let leader_name = holder.split('_').next().unwrap().to_string();
    let leader = cluster
        .members
        .iter()
        .position(|m| m.name == leader_name)
        .expect("the holder is a master");
    let on_leader = ApiClient::new(vec![cluster.members[leader].client_addr.clone()]);
    let gone = on_leader
        .delete_object(DeleteRequest {
            resource: "deployments".into(),
            namespace: "default".into(),
            name: "web".into(),
            ..Default::default()
        })
        .await
        .expect("deleting the deployment");
    assert!(gone.deleted);
    on_leader
        .delete_object(DeleteRequest {
            resource: "namespaces".into(),
            name: "shop".into(),
            ..Default::default()
        })
        .await
        .expect("deleting the namespace");
    cluster.members[leader].kill();

    let survivors = ApiClient::new(cluster.endpoints());
    // The namespace controller counts what it deletes and looks again a second later before
    // it finalizes: the kill came first, so the next leader has to finish.
    assert!(
        survivors.get_object("namespaces", "", "shop").await.is_ok(),
        "the namespace was gone before its leader was killed: nothing was tested"
    );
    until(
        "the deployment's ReplicaSet and pods, and the namespace, gone",
        Duration::from_secs(30),
        async || {
            count(&survivors, "replicasets", "default", "app=web").await == 0
                && count(&survivors, "pods", "default", "app=web").await == 0
                && survivors
                    .get_object("namespaces", "", "shop")
                    .await
                    .is_err_and(|e| e.is_not_found())
        },
    )
    .await;
    for resource in ["deployments", "replicasets", "pods", "configmaps"] {
        assert_eq!(
            count(&survivors, resource, "shop", "").await,
            0,
            "{resource} left in the deleted namespace"
        );
    }
    drop(cluster);
}
