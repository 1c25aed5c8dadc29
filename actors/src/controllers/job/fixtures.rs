//! Jobs and Job pods for the tests of this module.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use serde_json::json;

use super::template::{COMPLETION_INDEX, TRACKING_FINALIZER};
use crate::pods::cached::Pod;
use crate::pods::fixtures::pod;

pub const T0: &str = "2024-01-01T00:00:00Z";

pub fn at(text: &str) -> jiff::Timestamp {
    text.parse().unwrap()
}

pub fn now() -> jiff::Timestamp {
    at("2024-01-01T01:00:00Z")
}

/// A Job with `spec` merged over completions 3, parallelism 2, restartPolicy Never.
pub fn job(spec: serde_json::Value, status: serde_json::Value) -> Job {
    let mut base = json!({ "completions": 3, "parallelism": 2, "template": {
        "metadata": { "labels": { "app": "pi" } },
        "spec": { "restartPolicy": "Never",
                  "containers": [{ "name": "c", "image": "busybox" }] } } });
    for (k, v) in spec.as_object().unwrap() {
        base[k] = v.clone();
    }
    serde_json::from_value(json!({
        "metadata": { "name": "pi", "namespace": "default", "uid": "job-uid" },
        "spec": base, "status": status
    }))
    .unwrap()
}

/// A pod of the Job in `phase`, holding the tracking finalizer; `finished` is when its
/// container ended.
pub fn job_pod(name: &str, phase: &str, finished: &str) -> Arc<Pod> {
    let terminated = (phase == "Succeeded" || phase == "Failed").then(|| {
        json!({
        "terminated": { "exitCode": 0, "finishedAt": finished } })
    });
    Arc::new(pod(json!({
        "metadata": { "name": name, "uid": format!("uid-{name}"), "namespace": "default",
                      "creationTimestamp": T0, "finalizers": [TRACKING_FINALIZER],
                      "ownerReferences": [{ "apiVersion": "batch/v1", "kind": "Job",
                          "name": "pi", "uid": "job-uid", "controller": true }] },
        "spec": { "nodeName": "n1", "containers": [] },
        "status": { "phase": phase, "containerStatuses": [{ "name": "c", "image": "busybox",
            "imageID": "", "ready": false, "restartCount": 0, "state": terminated }] }
    })))
}

pub fn indexed(pod: Arc<Pod>, index: u32) -> Arc<Pod> {
    let mut pod = (*pod).clone();
    pod.metadata.annotations = Some([(COMPLETION_INDEX.to_string(), index.to_string())].into());
    Arc::new(pod)
}

pub fn released(pod: Arc<Pod>) -> Arc<Pod> {
    let mut pod = (*pod).clone();
    pod.metadata.finalizers = None;
    Arc::new(pod)
}

pub fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
    pods.iter()
        .map(|p| p.metadata.name.as_deref().unwrap())
        .collect()
}

/// A running Job pod whose container restarted `count` times.
pub fn restarting(name: &str, count: i32) -> Arc<Pod> {
    let mut pod = (*job_pod(name, "Running", T0)).clone();
    let statuses = pod
        .status
        .as_mut()
        .and_then(|s| s.container_statuses.as_mut());
    statuses.expect("a job pod has container statuses")[0].restart_count = count;
    Arc::new(pod)
}
