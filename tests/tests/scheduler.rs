//! The scheduler inside real masters (`rudder server` processes) over 100 hollow nodes: a
//! burst of 2,000 pods is created and, as the first binds land, the master holding the
//! scheduler lease is killed (one test) or paused past its lease and resumed after another
//! took over (the other). A watch opened before the burst checks, at every event, that no
//! pod is ever bound twice or moved, and that no node holds more cpu requests than it has;
//! at the end every pod is bound, and binds never stopped for longer than the lease and a
//! takeover take.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rudder_proto::api::{ListRequest, WatchRequest};
use rudder_proto::client::ApiClient;
use rudder_tests::{
    hollow_nodes, late_step_down_flags, lease_holder, member_log, rudder_binary_beside_tests,
    short_lease_flags, until, wait_for_default_namespace, wait_for_nodes, ProcessCluster,
    SCHEDULER_LEASE,
};
use serde_json::{json, Value};

const NODES: usize = 100;
const PODS: usize = 2_000;
/// Each pod's cpu request: a 2-cpu hollow node holds 22, so 100 nodes hold 2,200.
const POD_MILLICPU: i64 = 90;
const LEASE: Duration = Duration::from_secs(3);

/// Short lease timers, so the failover happens within the test. The Raft timers are the
/// defaults (50 ms heartbeats, 250 ms elections): this test found the store unavailable for
/// over a minute after the paused master resumed, with them (1 run in 3) and with etcd's
/// 100 ms / 1 s (once in CI), until batches of entries outlived openraft's one-heartbeat
/// timeout (raftstore's `append_sender.rs`; 10 of 10 runs since, beside two CPU burners).
fn flags() -> Vec<String> {
    short_lease_flags()
}

/// What a watch opened before the burst saw.
#[derive(Default)]
struct Seen {
    /// Each pod's node, once bound.
    bound: HashMap<String, String>,
    /// Cpu requests of live pods on each node, now.
    requested: HashMap<String, i64>,
    /// The most each node ever held.
    most: HashMap<String, i64>,
    /// A pod bound again, moved or unbound: what happened.
    violations: Vec<String>,
    /// When each bind was seen.
    bind_times: Vec<Instant>,
}

async fn follow(client: ApiClient, from_revision: String, seen: Arc<Mutex<Seen>>) {
    let request = WatchRequest {
        resource: "pods".into(),
        namespace: "default".into(),
        label_selector: "app=burst".into(),
        resource_version: from_revision,
        ..Default::default()
    };
    let mut stream = client.watch(request).await.expect("a watch");
    while let Ok(Some(event)) = stream.message().await {
        let pod: Value = serde_json::from_slice(&event.object).expect("a pod");
        let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
        let node = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
        let mut seen = seen.lock().unwrap();
        match (seen.bound.get(&name).cloned(), node.is_empty()) {
            (None, false) => {
                seen.bound.insert(name.clone(), node.clone());
                *seen.requested.entry(node.clone()).or_insert(0) += POD_MILLICPU;
                let now_held = seen.requested[&node];
                let most = seen.most.entry(node.clone()).or_insert(0);
                *most = (*most).max(now_held);
                seen.bind_times.push(Instant::now());
            }
            (Some(before), _) if before != node => seen
                .violations
                .push(format!("{name} was on {before}, now on {node:?}")),
            _ => {}
        }
        if event.r#type == "DELETED" {
            seen.violations.push(format!("{name} was deleted"));
        }
    }
}

/// Creates the pod, trying again while the outcome is unknown (a master paused mid-request
/// answers nothing; the write may or may not have landed): the name is unique, so a retry
/// can only land once, and AlreadyExists says the first one did.
async fn create_once(client: &ApiClient, pod: &Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match client.create_object("pods", "default", pod).await {
            Ok(_) => return,
            Err(error) if error.reason() == "AlreadyExists" => return,
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "creating {}: {error}",
                    pod["metadata"]["name"]
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The scheduler lease's holder identity ("" while none).
async fn scheduler_holder(client: &ApiClient) -> String {
    lease_holder(client, SCHEDULER_LEASE)
        .await
        .map(|holder| holder.identity)
        .unwrap_or_default()
}

enum Fault {
    Kill,
    /// SIGSTOP until another master leads and binds, then SIGCONT.
    Pause,
}

async fn burst_while_the_scheduler_leader(fault: Fault) {
    let mut flags = flags();
    if let Fault::Pause = fault {
        flags.extend(late_step_down_flags());
    }
    let mut cluster =
        ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 3, &flags).unwrap();
    let client = ApiClient::new(cluster.endpoints());
    wait_for_default_namespace(&client).await;
    let mut hollow = hollow_nodes(&cluster.endpoints().join(","), "h", NODES);
    wait_for_nodes(&client, NODES, Duration::from_secs(60)).await;
    let allocatable = client
        .get_object("nodes", "", "h-0")
        .await
        .expect("a hollow node");
    let node_millicpu = allocatable["status"]["allocatable"]["cpu"]
        .as_str()
        .and_then(|cpu| cpu.parse::<i64>().ok())
        .expect("whole cpus")
        * 1_000;
    assert!(
        node_millicpu / POD_MILLICPU * NODES as i64 >= PODS as i64,
        "the hollow nodes cannot hold the burst"
    );

    let mut holder = String::new();
    until(
        "a scheduler lease holder",
        Duration::from_secs(30),
        async || {
            holder = scheduler_holder(&client).await;
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
    let survivor_endpoints: Vec<String> = cluster
        .members
        .iter()
        .filter(|m| m.name != leader_name)
        .map(|m| m.client_addr.clone())
        .collect();
    let survivors = ApiClient::new(survivor_endpoints.clone());

    let revision = survivors
        .list(ListRequest {
            resource: "pods".into(),
            namespace: "default".into(),
            ..Default::default()
        })
        .await
        .expect("listing pods")
        .resource_version;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let watcher = ApiClient::new(vec![survivor_endpoints[0].clone()]);
    let following = tokio::spawn(follow(watcher, revision, seen.clone()));

    // The burst, through the masters that stay up, 16 creates at a time.
    let creating: Vec<_> = (0..16)
        .map(|worker| {
            let client = ApiClient::new(survivor_endpoints.clone());
            tokio::spawn(async move {
                for i in (worker..PODS).step_by(16) {
                    let pod = json!({
                        "apiVersion": "v1", "kind": "Pod",
                        "metadata": { "name": format!("burst-{i}"), "labels": { "app": "burst" } },
                        "spec": { "containers": [{ "name": "c", "image": "kubia",
                            "resources": { "requests": { "cpu": format!("{POD_MILLICPU}m") } } }] }
                    });
                    create_once(&client, &pod).await;
                }
            })
        })
        .collect();
    until("the first 200 binds", Duration::from_secs(60), async || {
        seen.lock().unwrap().bound.len() >= 200
    })
    .await;
    let faulted = Instant::now();
    let mut resumed = faulted;
    match fault {
        Fault::Kill => cluster.members[leader].kill(),
        Fault::Pause => {
            cluster.members[leader].pause();
            until(
                "another master leads the scheduler",
                LEASE * 4,
                async || {
                    let now = scheduler_holder(&survivors).await;
                    !now.is_empty() && now != holder
                },
            )
            .await;
            let at_takeover = seen.lock().unwrap().bound.len();
            until(
                "the new leader binds",
                Duration::from_secs(30),
                async || seen.lock().unwrap().bound.len() > at_takeover + 50,
            )
            .await;
            cluster.members[leader].resume();
            resumed = Instant::now();
        }
    }
    let at_fault = seen.lock().unwrap().bound.len();
    assert!(
        at_fault < PODS,
        "every pod was bound before the fault: nothing was tested"
    );
    for task in creating {
        task.await.expect("a creating task");
    }
    until("every pod bound", Duration::from_secs(180), async || {
        seen.lock().unwrap().bound.len() == PODS
    })
    .await;
    // A little longer: a late bind by the deposed leader would show here.
    tokio::time::sleep(LEASE).await;
    following.abort();
    hollow.kill().await.expect("stopping the hollow nodes");

    let seen = seen.lock().unwrap();
    assert_eq!(seen.violations, Vec::<String>::new());
    let over: BTreeMap<&String, &i64> = seen
        .most
        .iter()
        .filter(|(_, most)| **most > node_millicpu)
        .collect();
    assert!(
        over.is_empty(),
        "nodes over their {node_millicpu}m: {over:?}"
    );
    let longest_pause = seen
        .bind_times
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .max()
        .unwrap_or_default();
    let resumed_after = seen
        .bind_times
        .iter()
        .find(|t| **t > faulted + Duration::from_millis(200))
        .map(|t| *t - faulted);
    println!(
        "binds: {at_fault} before the fault; the longest gap between binds {longest_pause:?}; \
         first bind {resumed_after:?} after the fault"
    );
    if let Fault::Kill = fault {
        // The lease runs out at most 3 s after the kill, the next master tries within its
        // 500 ms retry (its takeover write waits for a Raft election of up to 0.5 s when the
        // killed master also led the store), then lists the nodes and pods before its first
        // decision. Measured alone: 2.9-3.7 s.
        assert!(
            longest_pause < LEASE + Duration::from_secs(5),
            "binds stopped for {longest_pause:?}"
        );
    }
    if let Fault::Pause = fault {
        let after_resume = seen.bind_times.iter().filter(|t| **t > resumed).count();
        println!("binds seen after the resume (the new leader's): {after_resume}");
        // One line per refusal (its message and its reason both say "fenced write refused").
        let refused = member_log(&cluster.members[leader])
            .lines()
            .filter(|line| {
                line.contains("fenced write refused")
                    && line.contains(&format!("lease kube-system/{SCHEDULER_LEASE}"))
            })
            .count();
        println!("writes of the resumed master refused by the fence: {refused}");
        // With the failpoint it goes on acting for LATE_STEP_DOWN after the resume; whether
        // it still finds pods to bind then is timing (12-1,195 refusals in five local runs,
        // 0 in one CI run where the new leader had bound them first), so the count is
        // printed. What issue 13 requires, that none of its binds lands, is checked above
        // from the watch; the controller test (workloads.rs) requires refusals.
    }
    drop(seen);
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_bound_once_each_within_capacity_when_the_scheduler_leader_is_killed() {
    burst_while_the_scheduler_leader(Fault::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_scheduler_leader_resumed_after_a_takeover_binds_nothing() {
    burst_while_the_scheduler_leader(Fault::Pause).await;
}
