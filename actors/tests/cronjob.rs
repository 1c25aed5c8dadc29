//! The CronJob controller run by the controller manager against an in-process API server,
//! on the real clock: a CronJob on `*/1 * * * *` creates its Job within 65 s, named after
//! the scheduled minute, listed in `status.active` with `lastScheduleTime` set, and a
//! `SuccessfulCreate` event says so. (Every other case runs on an injected clock in
//! `cronjob/reconcile.rs`' tables.)

mod common;

use std::time::Duration;

use common::{Component, Plane};
use rudder_apiserver::test_support::eventually;
use rudder_proto::api::ListRequest;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_every_minute_cron_job_creates_its_job_within_65_seconds() {
    let plane = Plane::start(1).await;
    let client = plane.client.clone();
    let manager = Component::controller_manager(plane.new_client());
    let cron_job = json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": { "name": "tick", "namespace": "default" },
        "spec": { "schedule": "*/1 * * * *",
                  "jobTemplate": { "spec": { "template": { "spec": {
                      "restartPolicy": "Never",
                      "containers": [{ "name": "c", "image": "busybox" }] } } } } }
    });
    client
        .create_object("cronjobs", "default", &cron_job)
        .await
        .expect("creating the CronJob");
    let created = tokio::time::Instant::now();
    let deadline = created + Duration::from_secs(65);
    let job = loop {
        let listed = client
            .list(ListRequest {
                resource: "jobs".into(),
                namespace: "default".into(),
                ..Default::default()
            })
            .await
            .expect("listing jobs");
        if let Some(item) = listed.items.first() {
            break serde_json::from_slice::<Value>(item).expect("a job");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Job within 65 s of the CronJob"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let name = job["metadata"]["name"]
        .as_str()
        .expect("a name")
        .to_string();
    let minutes: i64 = name
        .strip_prefix("tick-")
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("{name} is not tick-<minutes since the epoch>"));
    let now_minutes = jiff::Timestamp::now().as_second() / 60;
    assert!(
        (now_minutes - 1..=now_minutes).contains(&minutes),
        "{name} is not the minute just scheduled ({now_minutes})"
    );
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    eventually("the CronJob's status lists the Job", || async {
        let current = client
            .get_object("cronjobs", "default", "tick")
            .await
            .expect("the CronJob");
        current["status"]["lastScheduleTime"].is_string()
            && current["status"]["active"]
                .as_array()
                .is_some_and(|a| a.iter().any(|r| r["name"] == name.as_str()))
    })
    .await;
    eventually("a SuccessfulCreate event", || async {
        let events = client
            .list(ListRequest {
                resource: "events".into(),
                namespace: "default".into(),
                ..Default::default()
            })
            .await
            .expect("listing events");
        events.items.iter().any(|item| {
            let event: Value = serde_json::from_slice(item).expect("an event");
            event["reason"] == "SuccessfulCreate"
                && event["involvedObject"]["name"] == "tick"
                && event["message"] == format!("Created job {name}").as_str()
        })
    })
    .await;
    manager.stop().await;
    plane.shutdown().await;
}
