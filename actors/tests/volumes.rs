//! Storage end to end against in-process API servers, with the controller manager and the
//! scheduler running and Node objects as kubelets would register them (nothing mounts: the
//! test plays the kubelet by marking bound pods Running and Ready). A StatefulSet of three
//! with a volumeClaimTemplate gets its pods in order, each claim given the default class
//! `local-path`, provisioned on its pod's node and bound; a deleted pod comes back under its
//! name with its claim, on the node its volume lives on. A claim of a class without a
//! provisioner is bound to the smallest static volume that fits; a pod whose claim does not
//! exist waits in kube-scheduler's words until it does; a provisioned volume goes with its
//! claim (reclaim policy Delete) and a static one is kept, Released (Retain).

mod common;

use common::{Component, Plane};
use rudder_apiserver::test_support::eventually;
use rudder_proto::api::{DeleteRequest, ListRequest};
use rudder_proto::client::ApiClient;
use rudder_proto::objects::storage::default_storage_class;
use serde_json::{json, Value};

async fn create_node(client: &ApiClient, name: &str) {
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": name, "labels": { "kubernetes.io/hostname": name } },
        "status": {
            "capacity": { "cpu": "4", "memory": "8Gi", "pods": "110" },
            "allocatable": { "cpu": "4", "memory": "8Gi", "pods": "110" },
            "conditions": [{ "type": "Ready", "status": "True" }]
        }
    });
    client
        .create_object("nodes", "", &node)
        .await
        .expect("creating a node");
}

/// The built-in class, as every master creates it at start (a master that already made it
/// answers AlreadyExists).
async fn ensure_default_class(client: &ApiClient) {
    let class = serde_json::to_value(default_storage_class()).expect("the class encodes");
    match client.create_object("storageclasses", "", &class).await {
        Ok(_) => {}
        Err(error) if error.reason() == "AlreadyExists" => {}
        Err(error) => panic!("creating the local-path StorageClass: {error}"),
    }
}

async fn get(client: &ApiClient, resource: &str, namespace: &str, name: &str) -> Option<Value> {
    match client.get_object(resource, namespace, name).await {
        Ok(object) => Some(object),
        Err(error) if error.is_not_found() => None,
        Err(error) => panic!("reading {resource} {name}: {error}"),
    }
}

async fn pod(client: &ApiClient, name: &str) -> Option<Value> {
    get(client, "pods", "default", name).await
}

fn node_of(pod: &Value) -> Option<&str> {
    pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty())
}

/// What a kubelet reports once the pod's containers run and pass their probes.
async fn mark_running_and_ready(client: &ApiClient, name: &str) {
    let now = jiff::Timestamp::now().to_string();
    let status = json!({ "status": { "phase": "Running", "conditions": [
        { "type": "Ready", "status": "True", "lastTransitionTime": now }] } });
    client
        .patch_object("pods", "default", name, &status, true)
        .await
        .expect("reporting the pod Running and Ready");
}

async fn delete(client: &ApiClient, resource: &str, name: &str) {
    client
        .delete_object(DeleteRequest {
            resource: resource.into(),
            namespace: if resource == "persistentvolumes" {
                String::new()
            } else {
                "default".into()
            },
            name: name.into(),
            // No kubelet confirms a pod's end here: it goes at once.
            grace_period_seconds: Some(0),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|error| panic!("deleting {resource} {name}: {error}"));
}

async fn events_about(client: &ApiClient, name: &str) -> Vec<Value> {
    let listed = client
        .list(ListRequest {
            resource: "events".into(),
            namespace: "default".into(),
            ..Default::default()
        })
        .await
        .expect("listing events");
    listed
        .items
        .iter()
        .map(|item| serde_json::from_slice::<Value>(item).expect("an event"))
        .filter(|event| event["involvedObject"]["name"] == name)
        .collect()
}

/// The claim once it is Bound, with its volume.
async fn bound_claim(client: &ApiClient, claim: &str) -> (Value, Value) {
    eventually(&format!("{claim} Bound"), || async {
        get(client, "persistentvolumeclaims", "default", claim)
            .await
            .is_some_and(|c| c["status"]["phase"] == "Bound")
    })
    .await;
    let claim = get(client, "persistentvolumeclaims", "default", claim)
        .await
        .expect("the claim");
    let name = claim["spec"]["volumeName"].as_str().expect("its volume");
    let volume = get(client, "persistentvolumes", "", name)
        .await
        .expect("the claim's volume");
    (claim, volume)
}

/// The one node a local volume is pinned to.
fn pinned_node(volume: &Value) -> &str {
    let term = &volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0];
    let requirement = &term["matchExpressions"][0];
    assert_eq!(requirement["key"], "kubernetes.io/hostname", "{volume}");
    assert_eq!(requirement["operator"], "In", "{volume}");
    requirement["values"][0].as_str().expect("a node")
}

fn claim_of(pod: &Value) -> Option<&str> {
    pod["spec"]["volumes"]
        .as_array()?
        .iter()
        .find_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stateful_set_gets_a_local_volume_per_pod_and_keeps_it_across_a_restart() {
    let plane = Plane::start(1).await;
    let client = plane.client.clone();
    ensure_default_class(&client).await;
    for name in ["node-1", "node-2", "node-3"] {
        create_node(&client, name).await;
    }
    // Not the node lifecycle controller: these nodes renew no lease and would be tainted.
    let manager = Component::controllers(plane.new_client(), "statefulset,persistentvolume-binder");
    let scheduler = Component::scheduler(plane.new_client());

    let set = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": { "name": "web", "namespace": "default" },
        "spec": { "replicas": 3, "serviceName": "web",
                  "selector": { "matchLabels": { "app": "web" } },
                  "template": { "metadata": { "labels": { "app": "web" } },
                                "spec": { "containers": [{ "name": "c", "image": "kubia",
                                    "volumeMounts": [{ "name": "data", "mountPath": "/data" }] }] } },
                  "volumeClaimTemplates": [{ "metadata": { "name": "data" },
                      "spec": { "accessModes": ["ReadWriteOnce"],
                                "resources": { "requests": { "storage": "1Gi" } } } }] }
    });
    client
        .create_object("statefulsets", "default", &set)
        .await
        .expect("creating the StatefulSet");

    let mut nodes = Vec::new();
    for i in 0..3 {
        let name = format!("web-{i}");
        eventually(&format!("{name} bound to a node"), || async {
            pod(&client, &name)
                .await
                .is_some_and(|p| node_of(&p).is_some())
        })
        .await;
        let placed = pod(&client, &name).await.expect("the pod");
        let node = node_of(&placed).expect("bound").to_string();
        // OrderedReady: the next ordinal waits for this one to be Running and Ready.
        assert!(
            pod(&client, &format!("web-{}", i + 1)).await.is_none(),
            "web-{} exists before {name} is Ready",
            i + 1
        );

        let claim_name = format!("data-web-{i}");
        let (claim, volume) = bound_claim(&client, &claim_name).await;
        assert_eq!(claim["spec"]["storageClassName"], "local-path");
        assert_eq!(
            claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"],
            node.as_str(),
            "the scheduler told the claim its pod's node"
        );
        let uid = claim["metadata"]["uid"].as_str().expect("a uid");
        assert_eq!(volume["metadata"]["name"], format!("pvc-{uid}"));
        assert_eq!(
            pinned_node(&volume),
            node,
            "the volume lives on its pod's node"
        );
        assert_eq!(
            volume["spec"]["hostPath"]["path"],
            format!("/var/lib/rudder/storage/pvc-{uid}_default_{claim_name}")
        );
        assert_eq!(volume["spec"]["hostPath"]["type"], "DirectoryOrCreate");
        assert_eq!(volume["spec"]["claimRef"]["uid"], uid);
        assert_eq!(volume["spec"]["capacity"]["storage"], "1Gi");
        assert_eq!(volume["spec"]["persistentVolumeReclaimPolicy"], "Delete");
        assert_eq!(
            volume["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"],
            "rudder.io/local-path"
        );
        eventually(&format!("{} Bound", volume["metadata"]["name"]), || async {
            let name = volume["metadata"]["name"].as_str().unwrap_or_default();
            get(&client, "persistentvolumes", "", name)
                .await
                .is_some_and(|v| v["status"]["phase"] == "Bound")
        })
        .await;
        assert_eq!(claim["status"]["capacity"]["storage"], "1Gi");
        assert_eq!(claim["status"]["accessModes"], json!(["ReadWriteOnce"]));
        nodes.push(node);
        mark_running_and_ready(&client, &name).await;
    }
    eventually("a ProvisioningSucceeded event for data-web-0", || async {
        events_about(&client, "data-web-0").await.iter().any(|e| {
            e["reason"] == "ProvisioningSucceeded"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("Successfully provisioned volume pvc-"))
        })
    })
    .await;

    // web-1 deleted: back under its name, with its claim and volume, on its volume's node,
    // although a heavy pod there now makes every other node score better.
    let ballast = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "ballast", "namespace": "default" },
        "spec": { "nodeName": nodes[1], "containers": [{ "name": "c", "image": "kubia",
                  "resources": { "requests": { "cpu": "3", "memory": "6Gi" } } }] }
    });
    client
        .create_object("pods", "default", &ballast)
        .await
        .expect("creating the heavy pod");
    let old = pod(&client, "web-1").await.expect("web-1");
    let old_uid = old["metadata"]["uid"].as_str().expect("a uid").to_string();
    let (_, old_volume) = bound_claim(&client, "data-web-1").await;
    delete(&client, "pods", "web-1").await;
    eventually("web-1 back and bound", || async {
        pod(&client, "web-1").await.is_some_and(|p| {
            p["metadata"]["uid"].as_str() != Some(old_uid.as_str()) && node_of(&p).is_some()
        })
    })
    .await;
    let back = pod(&client, "web-1").await.expect("web-1");
    assert_eq!(claim_of(&back), Some("data-web-1"));
    assert_eq!(node_of(&back), Some(nodes[1].as_str()));
    let (claim, volume) = bound_claim(&client, "data-web-1").await;
    assert_eq!(volume["metadata"]["name"], old_volume["metadata"]["name"]);
    assert_eq!(volume["metadata"]["uid"], old_volume["metadata"]["uid"]);
    assert_eq!(
        claim["spec"]["volumeName"], old_volume["metadata"]["name"],
        "the same claim, still on the same volume"
    );
    mark_running_and_ready(&client, "web-1").await;
    eventually("the StatefulSet reports 3 ready", || async {
        get(&client, "statefulsets", "default", "web")
            .await
            .is_some_and(|s| s["status"]["readyReplicas"] == 3)
    })
    .await;

    scheduler.stop().await;
    manager.stop().await;
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn static_volumes_are_matched_and_provisioned_ones_go_with_their_claims() {
    let plane = Plane::start(1).await;
    let client = plane.client.clone();
    ensure_default_class(&client).await;
    create_node(&client, "node-1").await;
    let manager = Component::controllers(plane.new_client(), "persistentvolume-binder");
    let scheduler = Component::scheduler(plane.new_client());

    // Static volumes of a class no StorageClass provisions: the smallest that fits is bound.
    for (name, size) in [("big", "5Gi"), ("small", "2Gi"), ("tiny", "500Mi")] {
        let volume = json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": { "name": name },
            "spec": { "storageClassName": "manual", "capacity": { "storage": size },
                      "accessModes": ["ReadWriteOnce"],
                      "hostPath": { "path": format!("/mnt/{name}") } }
        });
        client
            .create_object("persistentvolumes", "", &volume)
            .await
            .expect("creating a volume");
    }
    // Each made Available by the controller first (else the claim could take whichever is
    // Available at the moment it is looked at).
    for name in ["big", "small", "tiny"] {
        eventually(&format!("{name} Available"), || async {
            get(&client, "persistentvolumes", "", name)
                .await
                .is_some_and(|v| v["status"]["phase"] == "Available")
        })
        .await;
    }
    let claim = |name: &str, class: Option<&str>| {
        let mut claim = json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": { "name": name, "namespace": "default" },
            "spec": { "accessModes": ["ReadWriteOnce"],
                      "resources": { "requests": { "storage": "1Gi" } } }
        });
        if let Some(class) = class {
            claim["spec"]["storageClassName"] = json!(class);
        }
        claim
    };
    client
        .create_object(
            "persistentvolumeclaims",
            "default",
            &claim("logs", Some("manual")),
        )
        .await
        .expect("creating a claim");
    let (logs, small) = bound_claim(&client, "logs").await;
    assert_eq!(small["metadata"]["name"], "small");
    assert_eq!(logs["status"]["capacity"]["storage"], "2Gi");
    assert_eq!(
        small["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"],
        "yes"
    );
    for other in ["big", "tiny"] {
        let volume = get(&client, "persistentvolumes", "", other)
            .await
            .expect("the volume");
        assert_eq!(volume["status"]["phase"], "Available", "{other} stays free");
    }

    // A pod whose claim does not exist yet waits, in kube-scheduler's words.
    let web = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "web", "namespace": "default" },
        "spec": { "containers": [{ "name": "c", "image": "kubia",
                                   "volumeMounts": [{ "name": "data", "mountPath": "/data" }] }],
                  "volumes": [{ "name": "data",
                                "persistentVolumeClaim": { "claimName": "data" } }] }
    });
    client
        .create_object("pods", "default", &web)
        .await
        .expect("creating the pod");
    let expected = "0/1 nodes are available: persistentvolumeclaim \"data\" not found.";
    eventually("web reported unschedulable", || async {
        pod(&client, "web").await.is_some_and(|p| {
            p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "PodScheduled" && c["message"] == expected)
        })
    })
    .await;
    assert_eq!(node_of(&pod(&client, "web").await.expect("web")), None);

    // Its claim made (the default class fills its class in): provisioned there, bound.
    client
        .create_object("persistentvolumeclaims", "default", &claim("data", None))
        .await
        .expect("creating the claim");
    eventually("web bound", || async {
        pod(&client, "web")
            .await
            .is_some_and(|p| node_of(&p) == Some("node-1"))
    })
    .await;
    let (data, provisioned) = bound_claim(&client, "data").await;
    assert_eq!(data["spec"]["storageClassName"], "local-path");
    assert_eq!(pinned_node(&provisioned), "node-1");
    let provisioned_name = provisioned["metadata"]["name"]
        .as_str()
        .expect("a name")
        .to_string();

    // The pod and its claim deleted: the provisioned volume goes (Delete), the static one
    // whose claim goes is kept, Released (Retain, the default of a volume made by hand).
    delete(&client, "pods", "web").await;
    delete(&client, "persistentvolumeclaims", "data").await;
    delete(&client, "persistentvolumeclaims", "logs").await;
    eventually("the provisioned volume deleted", || async {
        get(&client, "persistentvolumes", "", &provisioned_name)
            .await
            .is_none()
    })
    .await;
    eventually("the static volume Released", || async {
        get(&client, "persistentvolumes", "", "small")
            .await
            .is_some_and(|v| v["status"]["phase"] == "Released")
    })
    .await;

    scheduler.stop().await;
    manager.stop().await;
    plane.shutdown().await;
}
