//! Storage end to end against in-process API servers, with the controller manager and the
//! scheduler running and Node objects as kubelets would register them (nothing mounts: the
//! test plays the kubelet by marking bound pods Running and Ready). A StatefulSet of three
//! with a volumeClaimTemplate gets its pods in order, each claim given the default class
//! `local-path`, provisioned on its pod's node and bound; a deleted pod comes back under its
//! name with its claim, on the node its volume lives on. A claim of a class without a
//! provisioner is bound to the smallest static volume that fits; a pod whose claim does not
//! exist waits in kube-scheduler's words until it does; a provisioned volume goes with its
//! claim (reclaim policy Delete) and a static one is kept, Released (Retain). Two pods whose
//! claims can use only one static volume: one gets it (reserved by the scheduler, then bound
//! by the controller, before the pod is bound), the other stays Pending rather than be bound
//! to a node where its claim can never be bound. A local-path claim asking ReadWriteMany
//! keeps its pod Pending, saying why. The scheduler's PreBind writes are compare-and-swap: a
//! claim or volume changed since the decision read it refuses them.

mod common;

use common::{Component, Plane};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use rudder_actors::informer::ObjectKey;
use rudder_actors::scheduler::claims::{pre_bind, PreBindError};
use rudder_actors::scheduler::volumes::{ClaimWait, PreBind};
use rudder_actors::scheduling::volumes::volume_bound;
use rudder_apiserver::test_support::eventually;
use rudder_proto::api::{DeleteRequest, Fence, ListRequest};
use rudder_proto::client::{ApiClient, ClientError};
use rudder_proto::objects::storage::{default_storage_class, SELECTED_NODE_ANNOTATION};
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

/// A class whose volumes an administrator makes by hand (local disks), bound once a pod is
/// scheduled, as Kubernetes documents local volumes.
async fn create_local_class(client: &ApiClient) {
    let class = json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": { "name": "local" },
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer"
    });
    client
        .create_object("storageclasses", "", &class)
        .await
        .expect("creating the local StorageClass");
}

/// A local disk of 1Gi on `node`, of class `local`.
async fn create_local_volume(client: &ApiClient, name: &str, node: &str) {
    let volume = json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": { "name": name },
        "spec": { "storageClassName": "local", "capacity": { "storage": "1Gi" },
                  "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain",
                  "local": { "path": format!("/mnt/{name}") },
                  "nodeAffinity": { "required": { "nodeSelectorTerms": [{ "matchExpressions": [
                      { "key": "kubernetes.io/hostname", "operator": "In",
                        "values": [node] }] }] } } }
    });
    client
        .create_object("persistentvolumes", "", &volume)
        .await
        .expect("creating a local volume");
}

async fn create_claim(client: &ApiClient, name: &str, class: &str, mode: &str) {
    let claim = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": { "name": name, "namespace": "default" },
        "spec": { "storageClassName": class, "accessModes": [mode],
                  "resources": { "requests": { "storage": "1Gi" } } }
    });
    client
        .create_object("persistentvolumeclaims", "default", &claim)
        .await
        .expect("creating a claim");
}

async fn create_pod_using(client: &ApiClient, name: &str, claim: &str) {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "default" },
        "spec": { "containers": [{ "name": "c", "image": "kubia",
                                   "volumeMounts": [{ "name": "data", "mountPath": "/data" }] }],
                  "volumes": [{ "name": "data",
                                "persistentVolumeClaim": { "claimName": claim } }] }
    });
    client
        .create_object("pods", "default", &pod)
        .await
        .expect("creating a pod");
}

/// The message of the pod's PodScheduled condition, once it is False.
fn unschedulable_message(pod: &Value) -> Option<&str> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")?["message"]
        .as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pods_racing_for_the_last_static_volume_one_gets_it_the_other_waits_unbound() {
    let plane = Plane::start(1).await;
    let client = plane.client.clone();
    create_local_class(&client).await;
    for name in ["node-1", "node-2"] {
        create_node(&client, name).await;
    }
    create_local_volume(&client, "disk-1", "node-1").await;
    for (pod, claim) in [("a", "data-a"), ("b", "data-b")] {
        create_claim(&client, claim, "local", "ReadWriteOnce").await;
        create_pod_using(&client, pod, claim).await;
    }
    // Both pods wait when the scheduler starts: it places them one after the other, in one
    // pass, before any write it makes for the first is watched.
    let manager = Component::controllers(plane.new_client(), "persistentvolume-binder");
    let scheduler = Component::scheduler(plane.new_client());

    eventually("one of the pods bound", || async {
        let a = pod(&client, "a").await.expect("a");
        let b = pod(&client, "b").await.expect("b");
        node_of(&a).is_some() || node_of(&b).is_some()
    })
    .await;
    let a = pod(&client, "a").await.expect("a");
    let (winner, loser) = if node_of(&a).is_some() {
        ("a", "b")
    } else {
        ("b", "a")
    };
    let placed = pod(&client, winner).await.expect("the pod bound");
    assert_eq!(node_of(&placed), Some("node-1"), "where its volume is");
    let (claim, volume) = bound_claim(&client, &format!("data-{winner}")).await;
    assert_eq!(claim["spec"]["volumeName"], "disk-1");
    assert_eq!(volume["spec"]["claimRef"]["name"], format!("data-{winner}"));
    assert!(
        claim["metadata"]["annotations"][SELECTED_NODE_ANNOTATION].is_null(),
        "a static volume is reserved by the scheduler, not provisioned on a selected node: \
         {claim}"
    );

    let expected = "0/2 nodes are available: 2 node(s) didn't find available persistent \
                    volumes to bind.";
    eventually(&format!("{loser} reported unschedulable"), || async {
        pod(&client, loser)
            .await
            .is_some_and(|p| unschedulable_message(&p) == Some(expected))
    })
    .await;
    let waiting = pod(&client, loser).await.expect("the other pod");
    assert_eq!(
        node_of(&waiting),
        None,
        "{loser} is not bound to node-1, where its claim can never be bound"
    );
    let claim = get(
        &client,
        "persistentvolumeclaims",
        "default",
        &format!("data-{loser}"),
    )
    .await
    .expect("its claim");
    assert_eq!(claim["status"]["phase"], "Pending", "{claim}");
    assert!(claim["spec"]["volumeName"].is_null(), "{claim}");
    assert!(
        claim["metadata"]["annotations"][SELECTED_NODE_ANNOTATION].is_null(),
        "no node is selected for a claim that only static volumes serve: {claim}"
    );
    let still = get(&client, "persistentvolumes", "", "disk-1")
        .await
        .expect("the volume");
    assert_eq!(still["spec"]["claimRef"]["name"], format!("data-{winner}"));

    scheduler.stop().await;
    manager.stop().await;
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_local_path_claim_asking_to_share_its_volume_keeps_its_pod_pending_and_says_why() {
    let plane = Plane::start(1).await;
    let client = plane.client.clone();
    ensure_default_class(&client).await;
    create_node(&client, "node-1").await;
    let manager = Component::controllers(plane.new_client(), "persistentvolume-binder");
    let scheduler = Component::scheduler(plane.new_client());
    create_claim(&client, "shared", "local-path", "ReadWriteMany").await;
    create_pod_using(&client, "reader", "shared").await;

    let expected = "0/1 nodes are available: 1 node(s) didn't find available persistent \
                    volumes to bind (persistentvolumeclaim \"shared\" cannot be provisioned: \
                    rudder.io/local-path volumes live on one node and support only the \
                    ReadWriteOnce and ReadWriteOncePod access modes, not ReadWriteMany).";
    eventually("reader reported unschedulable", || async {
        pod(&client, "reader")
            .await
            .is_some_and(|p| unschedulable_message(&p) == Some(expected))
    })
    .await;
    eventually("a FailedScheduling event saying why", || async {
        events_about(&client, "reader")
            .await
            .iter()
            .any(|e| e["reason"] == "FailedScheduling" && e["message"] == expected)
    })
    .await;
    eventually("the claim Pending", || async {
        get(&client, "persistentvolumeclaims", "default", "shared")
            .await
            .is_some_and(|c| c["status"]["phase"] == "Pending")
    })
    .await;
    assert_eq!(
        node_of(&pod(&client, "reader").await.expect("the pod")),
        None
    );
    let claim = get(&client, "persistentvolumeclaims", "default", "shared")
        .await
        .expect("the claim");
    assert!(
        claim["metadata"]["annotations"][SELECTED_NODE_ANNOTATION].is_null(),
        "no node is selected for a claim no node can provision: {claim}"
    );
    let volumes = client
        .list(ListRequest {
            resource: "persistentvolumes".into(),
            ..Default::default()
        })
        .await
        .expect("listing volumes");
    assert!(volumes.items.is_empty(), "nothing provisioned");

    scheduler.stop().await;
    manager.stop().await;
    plane.shutdown().await;
}

/// A lease held by "volume-test" at epoch 1 for an hour, and the fence that proves it.
async fn test_fence(client: &ApiClient) -> Fence {
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        .to_string();
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": { "name": "volume-test", "namespace": "kube-system" },
        "spec": { "holderIdentity": "volume-test", "leaseDurationSeconds": 3600,
                  "leaseTransitions": 1, "acquireTime": now, "renewTime": now }
    });
    client
        .create_object("leases", "kube-system", &lease)
        .await
        .expect("creating the lease");
    Fence {
        lease_namespace: "kube-system".into(),
        lease_name: "volume-test".into(),
        holder: "volume-test".into(),
        epoch: 1,
    }
}

async fn read<T: serde::de::DeserializeOwned>(
    client: &ApiClient,
    resource: &str,
    namespace: &str,
    name: &str,
) -> T {
    let object = get(client, resource, namespace, name)
        .await
        .unwrap_or_else(|| panic!("{resource} {name} exists"));
    serde_json::from_value(object).expect("it decodes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pre_bind_on_a_claim_or_volume_changed_since_it_was_read_is_refused() {
    let plane = Plane::start(1).await;
    let client = plane.client.clone();
    create_local_class(&client).await;
    create_local_volume(&client, "disk-1", "node-1").await;
    create_claim(&client, "data", "local", "ReadWriteOnce").await;
    let fence = test_fence(&client).await;
    let api = client.fenced(&fence);
    let key = ObjectKey::new("default", "data");
    let static_wait = ClaimWait {
        claim: key.clone(),
        volume: Some("disk-1".into()),
        written: 0,
    };
    let provision_wait = ClaimWait {
        claim: key.clone(),
        volume: None,
        written: 0,
    };
    let annotated = |claim: &PersistentVolumeClaim| {
        let mut selected = claim.clone();
        selected
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(SELECTED_NODE_ANNOTATION.to_string(), "node-1".to_string());
        selected
    };

    // What the scheduler read; then both change before its writes.
    let stale_claim: PersistentVolumeClaim =
        read(&client, "persistentvolumeclaims", "default", "data").await;
    let stale_volume: PersistentVolume = read(&client, "persistentvolumes", "", "disk-1").await;
    let relabel = json!({ "metadata": { "labels": { "changed": "yes" } } });
    client
        .patch_object("persistentvolumeclaims", "default", "data", &relabel, false)
        .await
        .expect("changing the claim");
    client
        .patch_object("persistentvolumes", "", "disk-1", &relabel, false)
        .await
        .expect("changing the volume");

    let reserve = PreBind {
        reserve: vec![volume_bound(&stale_volume, &stale_claim).expect("a claimRef to write")],
        select: vec![],
        waits: vec![static_wait.clone()],
    };
    let refused = pre_bind(&api, &reserve)
        .await
        .expect_err("a volume changed since it was read");
    assert!(matches!(refused, PreBindError::Reserve { .. }), "{refused}");
    assert_eq!(
        refused.api_error().map(ClientError::reason),
        Some("Conflict"),
        "{refused}"
    );
    let volume = get(&client, "persistentvolumes", "", "disk-1")
        .await
        .expect("the volume");
    assert!(
        volume["spec"]["claimRef"].is_null(),
        "not reserved: {volume}"
    );

    let select = PreBind {
        reserve: vec![],
        select: vec![annotated(&stale_claim)],
        waits: vec![provision_wait.clone()],
    };
    let refused = pre_bind(&api, &select)
        .await
        .expect_err("a claim changed since it was read");
    assert!(matches!(refused, PreBindError::Select { .. }), "{refused}");
    assert_eq!(
        refused.api_error().map(ClientError::reason),
        Some("Conflict"),
        "{refused}"
    );
    let claim = get(&client, "persistentvolumeclaims", "default", "data")
        .await
        .expect("the claim");
    assert!(
        claim["metadata"]["annotations"][SELECTED_NODE_ANNOTATION].is_null(),
        "not annotated: {claim}"
    );

    // Read afresh, both are written, and the waits carry the versions written.
    let claim: PersistentVolumeClaim =
        read(&client, "persistentvolumeclaims", "default", "data").await;
    let volume: PersistentVolume = read(&client, "persistentvolumes", "", "disk-1").await;
    let both = PreBind {
        reserve: vec![volume_bound(&volume, &claim).expect("a claimRef to write")],
        select: vec![annotated(&claim)],
        waits: vec![static_wait, provision_wait],
    };
    let waits = pre_bind(&api, &both).await.expect("written");
    let volume = get(&client, "persistentvolumes", "", "disk-1")
        .await
        .expect("the volume");
    let claim = get(&client, "persistentvolumeclaims", "default", "data")
        .await
        .expect("the claim");
    assert_eq!(volume["spec"]["claimRef"]["uid"], claim["metadata"]["uid"]);
    assert_eq!(
        claim["metadata"]["annotations"][SELECTED_NODE_ANNOTATION],
        "node-1"
    );
    let version = |object: &Value| {
        object["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
            .expect("a resourceVersion")
    };
    assert_eq!(
        waits.iter().map(|w| w.written).collect::<Vec<_>>(),
        [version(&volume), version(&claim)]
    );

    plane.shutdown().await;
}
