//! The Job controller run by the controller manager against an in-process API server. There
//! is no kubelet here: the test plays it, writing each pod's end into its status as a
//! kubelet would. A Job of 3 completions at parallelism 2 never runs more than 2 pods at
//! once, makes exactly 3, and completes; a Job whose pod fails with backoffLimit 0 fails with
//! reason BackoffLimitExceeded.

mod common;

use std::time::Duration;

use common::{Component, Plane};
use rudder_apiserver::test_support::eventually;
use rudder_proto::api::ListRequest;
use rudder_proto::client::ApiClient;
use serde_json::{json, Value};

fn job(name: &str, completions: i32, parallelism: i32, backoff_limit: i32) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": name, "namespace": "default" },
        "spec": { "completions": completions, "parallelism": parallelism, "backoffLimit": backoff_limit,
                  "template": { "spec": { "restartPolicy": "Never",
                                          "containers": [{ "name": "c", "image": "busybox" }] } } }
    })
}

async fn pods_of(client: &ApiClient, job: &str) -> Vec<Value> {
    let listed = client
        .list(ListRequest {
            resource: "pods".into(),
            namespace: "default".into(),
            label_selector: format!("job-name={job}"),
            ..Default::default()
        })
        .await
        .expect("listing pods");
    listed
        .items
        .iter()
        .map(|item| serde_json::from_slice(item).expect("a pod"))
        .collect()
}

/// Ends every running pod of `job` with `phase`, as its kubelet would; returns how many
/// were running.
async fn end_running(client: &ApiClient, job: &str, phase: &str) -> usize {
    let running: Vec<String> = pods_of(client, job)
        .await
        .iter()
        .filter(|p| p["status"]["phase"] != "Succeeded" && p["status"]["phase"] != "Failed")
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    for name in &running {
        let status = json!({ "status": { "phase": phase } });
        client
            .patch_object("pods", "default", name, &status, true)
            .await
            .expect("ending a pod");
    }
    running.len()
}

fn condition(job: &Value, kind: &str) -> Option<Value> {
    job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind && c["status"] == "True")
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_complete_at_their_parallelism_and_fail_past_their_backoff_limit() {
    let plane = Plane::start(1).await;
    let client = plane.client.clone();
    let manager = Component::controller_manager(plane.new_client());

    client
        .create_object("jobs", "default", &job("count", 3, 2, 6))
        .await
        .expect("creating the job");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let current = client
            .get_object("jobs", "default", "count")
            .await
            .expect("the job");
        if condition(&current, "Complete").is_some() {
            assert_eq!(current["status"]["succeeded"], 3, "{current}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not complete within 30 s: {current}"
        );
        let running = pods_of(&client, "count")
            .await
            .iter()
            .filter(|p| p["status"]["phase"] != "Succeeded")
            .count();
        assert!(
            running <= 2,
            "{running} pods running at once for parallelism 2"
        );
        if running > 0 {
            end_running(&client, "count", "Succeeded").await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        pods_of(&client, "count").await.len(),
        3,
        "exactly the completions"
    );

    client
        .create_object("jobs", "default", &job("fail", 1, 1, 0))
        .await
        .expect("creating the job");
    eventually("the failing job's pod", || async {
        !pods_of(&client, "fail").await.is_empty()
    })
    .await;
    end_running(&client, "fail", "Failed").await;
    eventually("BackoffLimitExceeded", || async {
        let current = client
            .get_object("jobs", "default", "fail")
            .await
            .expect("the job");
        condition(&current, "Failed").is_some_and(|c| c["reason"] == "BackoffLimitExceeded")
    })
    .await;

    manager.stop().await;
    plane.shutdown().await;
}
