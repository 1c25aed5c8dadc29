//! Every master serves its Prometheus metrics on its client port, in a form promtool
//! accepts, with the store's, the API's, the controllers' and the scheduler's figures and
//! the process' own; and the figures follow what happens: the leader-change counter rises
//! on the survivors when the leader is killed, and a request shows up under its verb,
//! resource and code. A controller manager and a scheduler run on their own serve theirs
//! at `--metrics-bind-address`.

use std::process::Stdio;
use std::time::Duration;

use rudder_proto::metrics::sample;
use rudder_tests::{
    announced_metrics, promtool_accepts, rudder_binary_beside_tests, scrape, wait_for,
    ProcessCluster,
};

/// A sample every master's metrics must hold, by name.
const EVERY_MASTER_HAS: [&str; 10] = [
    "rudder_raft_term",
    "rudder_raft_is_leader",
    "rudder_raft_leader_changes_seen_total",
    "rudder_raft_log_fsync_duration_seconds_count",
    "rudder_store_db_total_size_bytes",
    "rudder_store_watchers",
    "rudder_apiserver_requests_in_flight",
    "rudder_controller_manager_is_leader",
    "rudder_scheduler_is_leader",
    "process_resident_memory_bytes",
];

fn leader_changes(text: &str) -> f64 {
    sample(text, "rudder_raft_leader_changes_seen_total", &[]).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masters_serve_metrics_promtool_accepts_and_a_leader_kill_raises_the_leader_change_count() {
    let mut cluster = ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 3, &[])
        .expect("three members start");
    for member in &cluster.members {
        let endpoint = member.client_addr.clone();
        let text = wait_for(
            "metrics promtool accepts",
            Duration::from_secs(30),
            async || {
                let text = promtool_accepts(&endpoint).await?;
                match EVERY_MASTER_HAS
                    .iter()
                    .find(|name| !text.lines().any(|line| line.starts_with(*name)))
                {
                    // The controllers and the scheduler register as they start.
                    Some(missing) => Err(format!("no {missing} yet")),
                    None => Ok(text),
                }
            },
        )
        .await;
        assert!(
            leader_changes(&text) >= 1.0,
            "each member saw the first leader"
        );
    }
    // One master runs the controllers and one the scheduler; each shows their series.
    let endpoints = cluster.endpoints();
    for (is_leader, series) in [
        (
            "rudder_controller_manager_is_leader",
            "rudder_controller_queue_depth",
        ),
        (
            "rudder_scheduler_is_leader",
            "rudder_scheduler_pending_pods",
        ),
    ] {
        wait_for(
            "one master leads and shows the series",
            Duration::from_secs(30),
            async || {
                let mut leaders = Vec::new();
                for endpoint in &endpoints {
                    let text = scrape(endpoint).await?;
                    if sample(&text, is_leader, &[]) == Some(1.0) {
                        leaders.push((endpoint.clone(), text.contains(series)));
                    }
                }
                match leaders.as_slice() {
                    [(_, true)] => Ok(()),
                    other => Err(format!("{is_leader} = 1 at {other:?} (with {series}?)")),
                }
            },
        )
        .await;
    }
    let leading = |text: &str| sample(text, "rudder_raft_is_leader", &[]);
    let leader = cluster.leader().await.expect("a leader");
    let leader_text = scrape(&cluster.members[leader].client_addr).await.unwrap();
    assert_eq!(leading(&leader_text), Some(1.0));

    // The count each survivor shows just before the kill (any earlier takeover is in it).
    let mut before = Vec::new();
    for member in &cluster.members {
        before.push(leader_changes(&scrape(&member.client_addr).await.unwrap()));
    }
    cluster.members[leader].kill();
    for (i, member) in cluster.members.iter().enumerate() {
        if i == leader {
            continue;
        }
        let endpoint = member.client_addr.clone();
        let seen = wait_for(
            "the survivor counts the new leader",
            Duration::from_secs(10),
            async || {
                let text = scrape(&endpoint).await?;
                let now = leader_changes(&text);
                if now > before[i] {
                    Ok(now)
                } else {
                    Err(format!("still {now}"))
                }
            },
        )
        .await;
        assert!(
            seen <= before[i] + 3.0,
            "a handful of takeovers, not a storm: {seen}"
        );
    }
    let new_leader = cluster.leader().await.expect("a new leader");
    assert_ne!(new_leader, leader);
    let text = scrape(&cluster.members[new_leader].client_addr)
        .await
        .unwrap();
    assert_eq!(leading(&text), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_request_is_counted_under_its_verb_resource_and_code() {
    let cluster = ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 1, &[])
        .expect("one member starts");
    let endpoint = cluster.members[0].client_addr.clone();
    let labels = [
        ("verb", "get"),
        ("resource", "configmaps"),
        ("subresource", ""),
        ("code", "404"),
    ];
    let count = |text: &str| {
        sample(
            text,
            "rudder_apiserver_request_duration_seconds_count",
            &labels,
        )
        .unwrap_or(0.0)
    };
    let before = count(&scrape(&endpoint).await.unwrap());
    let client = rudder_proto::client::ApiClient::new(vec![endpoint.clone()]);
    let answer = client
        .get_object("configmaps", "default", "no-such-map")
        .await;
    assert!(answer.is_err(), "{answer:?}");
    let after = count(&scrape(&endpoint).await.unwrap());
    assert_eq!(after, before + 1.0, "one 404 get, counted once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_manager_and_a_scheduler_on_their_own_serve_their_metrics() {
    // A master running neither: the standalone ones take the leases.
    let cluster = ProcessCluster::start_rudder(
        &rudder_binary_beside_tests(),
        1,
        &[
            "--controllers".into(),
            "none".into(),
            "--scheduler=false".into(),
        ],
    )
    .expect("one member starts");
    let server = cluster.members[0].client_addr.clone();
    for (component, is_leader) in [
        ("controller-manager", "rudder_controller_manager_is_leader"),
        ("scheduler", "rudder_scheduler_is_leader"),
    ] {
        let mut child = tokio::process::Command::new(rudder_binary_beside_tests())
            .args([component, "--server", &server])
            .args(["--metrics-bind-address", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the component starts");
        let endpoint = announced_metrics(child.stdout.take().unwrap()).await;
        wait_for(
            &format!("{component} leads"),
            Duration::from_secs(30),
            async || {
                let text = promtool_accepts(&endpoint).await?;
                match sample(&text, is_leader, &[]) {
                    Some(1.0) if text.contains("process_resident_memory_bytes") => Ok(()),
                    seen => Err(format!("{is_leader} = {seen:?}")),
                }
            },
        )
        .await;
        child.kill().await.unwrap();
    }
}
