//! `rudder bench schedule`: how fast pods are bound. Three figures, so the bottleneck shows:
//!
//! - the pure decision (`--decision-only`): `place` over an in-memory snapshot of N nodes,
//!   each decision assumed before the next, no API at all;
//! - end to end: pods created by 64 clients while the scheduler runs; create → bound per pod
//!   (from the watch) and binds/s from the first create to the last bind;
//! - with a backlog (`--backlog`): the masters run without their scheduler, every pod is
//!   created first, then `rudder scheduler` starts: binds/s from its first bind to its last.
//!
//! Both API runs check the result from a watch opened before the first create: every pod
//! bound once and never moved, and no node holding more cpu requests than it has.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use k8s_openapi::api::core::v1::Node;
use rudder_actors::pods::cached::Pod;
use rudder_actors::scheduler::decide::place;
use rudder_actors::scheduler::snapshot::Snapshot;
use rudder_chaos::bench::stats::summarize;
use rudder_proto::api::{ListRequest, WatchRequest};
use rudder_proto::client::ApiClient;
use serde_json::{json, Value};

use super::bench_cluster::SpawnArgs;

/// Each benchmark pod's cpu request: a 2-cpu hollow node holds 20.
const POD_MILLICPU: i64 = 100;

#[derive(Args, Debug)]
pub struct ScheduleArgs {
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Time the pure decision alone over an in-memory snapshot (no cluster).
    #[arg(long)]
    decision_only: bool,
    /// Create every pod first, then start the scheduler (scheduling throughput with a
    /// backlog, as scheduler_perf measures it).
    #[arg(long)]
    backlog: bool,
    #[command(flatten)]
    cluster: SpawnArgs,
}

pub async fn run(args: ScheduleArgs) -> anyhow::Result<()> {
    if args.decision_only {
        decision_cost(args.nodes, args.pods);
        return Ok(());
    }
    end_to_end(&args).await
}

/// The pure decision: `pods` placements over `nodes` nodes of 2 cpu, each assumed.
fn decision_cost(nodes: usize, pods: usize) {
    let mut snapshot = Snapshot::new();
    for i in 0..nodes {
        let node: Node = serde_json::from_value(json!({
            "metadata": { "name": format!("n-{i}"), "labels": {
                "kubernetes.io/hostname": format!("n-{i}"),
                "topology.kubernetes.io/zone": format!("zone-{}", i % 3) } },
            "status": { "allocatable": { "cpu": "2", "memory": "8Gi", "pods": "110" } }
        }))
        .expect("a node");
        snapshot.upsert_node(Arc::new(node));
    }
    let mut start = 0;
    let mut latencies = Vec::with_capacity(pods);
    let began = Instant::now();
    let mut unplaced = 0;
    for i in 0..pods {
        let pod = bench_pod(&format!("p-{i}"));
        let pod: Pod = serde_json::from_value(pod).expect("a pod");
        let one = Instant::now();
        match place(&pod, &snapshot, start, i as u64) {
            Ok(placement) => {
                start = placement.next_start;
                snapshot.assume(&pod, &placement.node);
            }
            Err(unschedulable) => {
                start = unschedulable.next_start;
                unplaced += 1;
            }
        }
        latencies.push(one.elapsed());
    }
    let summary = summarize(
        &format!("pure decision, {nodes} nodes"),
        latencies,
        unplaced,
        began.elapsed(),
    );
    println!("{summary}");
}

fn bench_pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "default", "labels": { "app": "bench-schedule" } },
        "spec": { "containers": [{ "name": "c", "image": "kubia",
            "resources": { "requests": { "cpu": format!("{POD_MILLICPU}m"), "memory": "64Mi" } } }] }
    })
}

/// What the watch saw: when each pod was bound and where.
#[derive(Default)]
struct Seen {
    bound: HashMap<String, (String, Instant)>,
    moved: Vec<String>,
}

async fn end_to_end(args: &ScheduleArgs) -> anyhow::Result<()> {
    let mut spawn = args.cluster.clone();
    if args.backlog {
        spawn.rudder_flags.push("--scheduler=false".into());
    }
    let (_cluster, endpoints) = spawn.rudder_unless_given(&[]).await?;
    let binary = std::env::current_exe().context("locating the rudder binary")?;
    let servers = endpoints.join(",");
    let _hollow = tokio::process::Command::new(&binary)
        .args(["node", "--name", "bench", "--hollow", "--count"])
        .arg(args.nodes.to_string())
        .args(["--server", &servers])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting the hollow nodes")?;
    let client = Arc::new(ApiClient::new(endpoints.clone()));
    let registering = Instant::now();
    loop {
        let listed = client
            .list(ListRequest {
                resource: "nodes".into(),
                ..Default::default()
            })
            .await;
        if listed.is_ok_and(|l| l.items.len() >= args.nodes) {
            break;
        }
        anyhow::ensure!(
            registering.elapsed() < Duration::from_secs(300),
            "{} hollow nodes did not register within 300 s",
            args.nodes
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let allocatable_millicpu = {
        let node = client.get_object("nodes", "", "bench-0").await?;
        node["status"]["allocatable"]["cpu"]
            .as_str()
            .and_then(|cpu| cpu.parse::<i64>().ok())
            .context("a hollow node's allocatable cpu")?
            * 1000
    };
    println!(
        "bench schedule: {} pods over {} hollow nodes{}",
        args.pods,
        args.nodes,
        if args.backlog { ", backlog first" } else { "" }
    );
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut stream = client
        .watch(WatchRequest {
            resource: "pods".into(),
            namespace: "default".into(),
            label_selector: "app=bench-schedule".into(),
            ..Default::default()
        })
        .await?;
    let following = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Ok(Some(event)) = stream.message().await {
                let pod: Value = serde_json::from_slice(&event.object).unwrap_or_default();
                let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
                let node = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
                if node.is_empty() {
                    continue;
                }
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                match seen.bound.get(&name) {
                    Some((before, _)) if *before != node => seen.moved.push(name),
                    Some(_) => {}
                    None => {
                        seen.bound.insert(name, (node, Instant::now()));
                    }
                }
            }
        })
    };
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let began = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let creators: Vec<_> = (0..64)
        .map(|_| {
            let (client, sent, next, pods) =
                (client.clone(), sent.clone(), next.clone(), args.pods);
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= pods {
                        return Ok::<(), rudder_proto::client::ClientError>(());
                    }
                    let name = format!("bench-{i:05}");
                    sent.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(name.clone(), Instant::now());
                    client
                        .create_object("pods", "default", &bench_pod(&name))
                        .await?;
                }
            })
        })
        .collect();
    for creator in creators {
        creator.await??;
    }
    let created = began.elapsed();
    println!(
        "created {} pods in {:.2} s",
        args.pods,
        created.as_secs_f64()
    );
    let _scheduler = if args.backlog {
        Some(
            tokio::process::Command::new(&binary)
                .args(["scheduler", "--server", &servers])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .context("starting the scheduler")?,
        )
    } else {
        None
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let bound = seen.lock().unwrap_or_else(|p| p.into_inner()).bound.len();
        if bound >= args.pods {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {bound} of {} pods bound within 600 s",
            args.pods
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    following.abort();
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    let sent = sent.lock().unwrap_or_else(|p| p.into_inner());
    let mut per_node: HashMap<&str, i64> = HashMap::new();
    for (node, _) in seen.bound.values() {
        *per_node.entry(node).or_default() += POD_MILLICPU;
    }
    let over = per_node
        .values()
        .filter(|held| **held > allocatable_millicpu)
        .count();
    let first_bind = seen.bound.values().map(|(_, at)| *at).min();
    let last_bind = seen.bound.values().map(|(_, at)| *at).max();
    if let (true, Some(first), Some(last)) = (args.backlog, first_bind, last_bind) {
        let seconds = (last - first).as_secs_f64();
        println!(
            "backlog: {} binds in {seconds:.2} s = {:.0} binds/s (first bind to last)",
            seen.bound.len(),
            seen.bound.len() as f64 / seconds.max(f64::EPSILON)
        );
    } else if let Some(last) = last_bind {
        let latencies: Vec<Duration> = seen
            .bound
            .iter()
            .filter_map(|(name, (_, at))| Some(at.saturating_duration_since(*sent.get(name)?)))
            .collect();
        let summary = summarize(
            "create → bound",
            latencies,
            0,
            last.saturating_duration_since(began),
        );
        println!("{summary}");
    }
    println!(
        "check: {} pods bound once, {} moved, {} of {} nodes over their {}m cpu",
        seen.bound.len(),
        seen.moved.len(),
        over,
        per_node.len(),
        allocatable_millicpu
    );
    anyhow::ensure!(
        seen.moved.is_empty() && over == 0,
        "the result is wrong: pods moved or nodes over capacity"
    );
    Ok(())
}
