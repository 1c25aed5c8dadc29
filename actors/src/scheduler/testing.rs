//! Fixtures for the scheduler's tables: nodes, pods and snapshots from JSON.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use serde_json::{json, Value};

use super::snapshot::Snapshot;
use crate::pods::cached::Pod;

/// A node from JSON.
pub fn node(json: Value) -> Arc<Node> {
    Arc::new(serde_json::from_value(json).expect("a test node decodes"))
}

/// A node with `cpu`, `memory` and 110 pods allocatable, and `labels` plus
/// `kubernetes.io/hostname: <name>`.
pub fn sized(name: &str, cpu: &str, memory: &str, labels: Value) -> Arc<Node> {
    let mut labels = labels;
    if let Value::Object(map) = &mut labels {
        map.insert("kubernetes.io/hostname".to_string(), json!(name));
    }
    node(json!({ "metadata": { "name": name, "labels": labels },
                 "status": { "allocatable": { "cpu": cpu, "memory": memory, "pods": "110" } } }))
}

/// `node` with `spec` (taints, unschedulable) set.
pub fn with_node_spec(node: &Node, spec: Value) -> Arc<Node> {
    let mut node = node.clone();
    node.spec = Some(serde_json::from_value(spec).expect("a test node spec decodes"));
    Arc::new(node)
}

/// A pod from JSON.
pub fn pod(json: Value) -> Pod {
    crate::pods::fixtures::pod(json)
}

/// A pending pod in `default` with `labels` and one container (image `app:1`) requesting
/// `cpu` and `memory`.
pub fn pending(name: &str, labels: Value, cpu: &str, memory: &str) -> Pod {
    pod(json!({
        "metadata": { "name": name, "namespace": "default", "labels": labels },
        "spec": { "containers": [{ "name": "c", "image": "app:1",
                  "resources": { "requests": { "cpu": cpu, "memory": memory } } }] } }))
}

/// `pod` with its spec's `field` set to `value`.
pub fn with_spec(pod: Pod, field: &str, value: Value) -> Pod {
    let mut json = serde_json::to_value(&pod).expect("a test pod encodes");
    json["spec"][field] = value;
    serde_json::from_value(json).expect("a test pod decodes")
}

/// A copy of `pod` bound to `node`.
pub fn bound(pod: &Pod, node: &str) -> Arc<Pod> {
    let mut pod = pod.clone();
    pod.spec.get_or_insert_with(Default::default).node_name = Some(node.to_string());
    Arc::new(pod)
}

/// A snapshot of `nodes` and `pods`.
pub fn snapshot_of(nodes: &[Arc<Node>], pods: &[Arc<Pod>]) -> Snapshot {
    let mut snapshot = Snapshot::new();
    for node in nodes {
        snapshot.upsert_node(Arc::clone(node));
    }
    for pod in pods {
        snapshot.add_pod(Arc::clone(pod));
    }
    snapshot
}
