//! `rudder top nodes` and `rudder top pods`: CPU and memory in use, as `kubectl top` shows
//! them, from each node's `Stats` (its cgroups and /proc, reached through the masters).
//! CPU counters are cumulative: two readings a second apart give the rate (so `top` takes a
//! second). Memory is the working set. A node that answers no `Stats` (a hollow one, one
//! that is down) shows `<unknown>`.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::{Args, Subcommand};
use rudder_printers::table::render;
use rudder_proto::api::ListRequest;
use rudder_proto::node::kubelet_client::KubeletClient;
use rudder_proto::node::{StatsRequest, StatsResponse};
use rudder_proto::objects::quantity::Quantity;
use serde_json::Value;

use crate::session::{Session, Target};
use rudder_node::usage::millicores;

/// Between the two readings of the CPU counters.
const WINDOW: Duration = Duration::from_secs(1);
/// How long one node's stats may take (a stuck node must not hold `top`).
const READ_WITHIN: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
pub struct TopArgs {
    #[command(subcommand)]
    what: TopWhat,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand, Debug)]
pub enum TopWhat {
    /// CPU and memory of each node, and their share of what it can allocate.
    Nodes,
    /// CPU and memory of each running pod (its containers' sum).
    Pods(TopPodsArgs),
}

#[derive(Args, Debug)]
pub struct TopPodsArgs {
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Pods of every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// One line per container.
    #[arg(long)]
    containers: bool,
}

pub async fn run(args: TopArgs) -> anyhow::Result<()> {
    let session = Session::connect(&args.target).await?;
    match args.what {
        TopWhat::Nodes => top_nodes(&session).await,
        TopWhat::Pods(pods) => top_pods(&session, pods).await,
    }
}

/// Readings of each node's stats `WINDOW` apart (`None`: the node did not answer; why is
/// said on stderr, once). A node that failed the first reading is not asked again.
async fn read_twice(
    session: &Session,
    nodes: &[String],
) -> BTreeMap<String, Option<(StatsResponse, StatsResponse)>> {
    let first = read_all(session, nodes).await;
    tokio::time::sleep(WINDOW).await;
    let answered: Vec<String> = nodes
        .iter()
        .zip(&first)
        .filter(|(_, read)| read.is_some())
        .map(|(node, _)| node.clone())
        .collect();
    let mut second: BTreeMap<String, StatsResponse> = answered
        .iter()
        .cloned()
        .zip(read_all(session, &answered).await)
        .filter_map(|(node, read)| Some((node, read?)))
        .collect();
    nodes
        .iter()
        .cloned()
        .zip(first)
        .map(|(node, before)| {
            let after = second.remove(&node);
            let pair = before.zip(after);
            (node, pair)
        })
        .collect()
}

async fn read_all(session: &Session, nodes: &[String]) -> Vec<Option<StatsResponse>> {
    let reads = nodes.iter().map(|node| {
        let request = StatsRequest { node: node.clone() };
        async move {
            let call = session.client.open_on(|channel| {
                let request = request.clone();
                async move { KubeletClient::new(channel).stats(request).await }
            });
            match tokio::time::timeout(READ_WITHIN, call).await {
                Ok(Ok(stats)) => Some(stats),
                Ok(Err(error)) => {
                    eprintln!("node {node}: no stats: {error}");
                    None
                }
                Err(_) => {
                    eprintln!("node {node}: no stats within {} s", READ_WITHIN.as_secs());
                    None
                }
            }
        }
    });
    futures::future::join_all(reads).await
}

async fn list(session: &Session, resource: &str, namespace: &str) -> anyhow::Result<Vec<Value>> {
    let listed = session
        .client
        .list(ListRequest {
            resource: resource.into(),
            namespace: namespace.into(),
            ..ListRequest::default()
        })
        .await?;
    Ok(listed
        .items
        .iter()
        .filter_map(|item| serde_json::from_slice(item).ok())
        .collect())
}

/// `250m`, as kubectl top shows cores.
fn cores(millis: u64) -> String {
    format!("{millis}m")
}

/// `12Mi`, as kubectl top shows memory.
fn mebibytes(bytes: u64) -> String {
    format!("{}Mi", bytes / (1024 * 1024))
}

fn percent(part: u64, whole: i128) -> String {
    if whole <= 0 {
        return "<unknown>".into();
    }
    format!("{}%", (i128::from(part) * 100 / whole))
}

/// A node's allocatable CPU (millicores) and memory (bytes).
fn allocatable(node: &Value) -> (i128, i128) {
    let quantity = |name: &str| {
        node["status"]["allocatable"][name]
            .as_str()
            .and_then(|text| Quantity::parse(text).ok())
    };
    (
        quantity("cpu").map_or(0, Quantity::millis),
        quantity("memory").map_or(0, Quantity::units),
    )
}

/// The rows of `rudder top nodes` (pure).
fn node_rows(
    nodes: &[Value],
    stats: &BTreeMap<String, Option<(StatsResponse, StatsResponse)>>,
) -> Vec<Vec<String>> {
    let mut rows = vec![
        ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
            .map(String::from)
            .to_vec(),
    ];
    for node in nodes {
        let name = node["metadata"]["name"].as_str().unwrap_or_default();
        let unknown = || "<unknown>".to_string();
        let (cpu_allocatable, memory_allocatable) = allocatable(node);
        let row = match stats.get(name).and_then(Option::as_ref) {
            Some((before, after)) => {
                let elapsed = after.timestamp_nanos.saturating_sub(before.timestamp_nanos);
                let used = millicores(before.node_cpu_nanos, after.node_cpu_nanos, elapsed);
                vec![
                    name.to_owned(),
                    used.map_or_else(unknown, cores),
                    used.map_or_else(unknown, |m| percent(m, cpu_allocatable)),
                    mebibytes(after.node_memory_bytes),
                    percent(after.node_memory_bytes, memory_allocatable),
                ]
            }
            None => vec![name.to_owned(), unknown(), unknown(), unknown(), unknown()],
        };
        rows.push(row);
    }
    rows
}

/// One pod's (or container's) use between two readings: (namespace, pod, container,
/// millicores, bytes).
type Usage = (String, String, String, u64, u64);

/// Every running container's use between `before` and `after` (pure), of the pods that
/// `listed` (uids) says run on this node; a container attempt not in `before` (started
/// or restarted meanwhile) counts its CPU from zero over the window.
fn container_usage(
    before: &StatsResponse,
    after: &StatsResponse,
    listed: &std::collections::BTreeSet<String>,
) -> Vec<Usage> {
    let elapsed = after.timestamp_nanos.saturating_sub(before.timestamp_nanos);
    let earlier: BTreeMap<&str, u64> = before
        .pods
        .iter()
        .flat_map(|pod| pod.containers.iter())
        .map(|c| (c.id.as_str(), c.cpu_nanos))
        .collect();
    let mut usage = Vec::new();
    for pod in after.pods.iter().filter(|pod| listed.contains(&pod.uid)) {
        for container in &pod.containers {
            let was = earlier.get(container.id.as_str()).copied().unwrap_or(0);
            let cpu = millicores(was, container.cpu_nanos, elapsed).unwrap_or(0);
            usage.push((
                pod.namespace.clone(),
                pod.name.clone(),
                container.name.clone(),
                cpu,
                container.memory_bytes,
            ));
        }
    }
    usage
}

/// The rows of `rudder top pods` (pure): pods (or containers) in `namespace` (`None`: all,
/// with a NAMESPACE column), by namespace and name.
fn pod_rows(usage: &[Usage], namespace: Option<&str>, containers: bool) -> Vec<Vec<String>> {
    let mut summed: BTreeMap<(String, String, String), (u64, u64)> = BTreeMap::new();
    for (ns, pod, container, cpu, memory) in usage {
        if namespace.is_some_and(|wanted| wanted != ns) {
            continue;
        }
        let container = if containers {
            container.clone()
        } else {
            String::new()
        };
        let entry = summed
            .entry((ns.clone(), pod.clone(), container))
            .or_default();
        entry.0 += cpu;
        entry.1 += memory;
    }
    let mut header = Vec::new();
    if namespace.is_none() {
        header.push("NAMESPACE");
    }
    header.extend(if containers {
        vec!["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
    } else {
        vec!["NAME", "CPU(cores)", "MEMORY(bytes)"]
    });
    let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
    for ((ns, pod, container), (cpu, memory)) in summed {
        let mut row = Vec::new();
        if namespace.is_none() {
            row.push(ns);
        }
        row.push(pod);
        if containers {
            row.push(container);
        }
        row.push(cores(cpu));
        row.push(mebibytes(memory));
        rows.push(row);
    }
    rows
}

async fn top_nodes(session: &Session) -> anyhow::Result<()> {
    let nodes = list(session, "nodes", "").await?;
    anyhow::ensure!(!nodes.is_empty(), "no nodes: start one with `rudder node`");
    let names: Vec<String> = nodes
        .iter()
        .filter_map(|node| node["metadata"]["name"].as_str().map(String::from))
        .collect();
    let stats = read_twice(session, &names).await;
    print!("{}", render(&node_rows(&nodes, &stats)));
    Ok(())
}

async fn top_pods(session: &Session, args: TopPodsArgs) -> anyhow::Result<()> {
    let namespace = match (args.all_namespaces, args.namespace) {
        (true, _) => None,
        (false, namespace) => Some(namespace.unwrap_or_else(|| "default".into())),
    };
    // The nodes that run the pods asked about.
    let pods = list(session, "pods", namespace.as_deref().unwrap_or("")).await?;
    let mut nodes: Vec<String> = pods
        .iter()
        .filter_map(|pod| pod["spec"]["nodeName"].as_str())
        .filter(|node| !node.is_empty())
        .map(String::from)
        .collect();
    nodes.sort();
    nodes.dedup();
    let stats = read_twice(session, &nodes).await;
    // Only pods the API lists on the node that answered (another node's endpoint at the
    // same address, or a pod already deleted, counts nothing).
    let usage: Vec<Usage> = stats
        .iter()
        .filter_map(|(node, read)| Some((node, read.as_ref()?)))
        .flat_map(|(node, (before, after))| {
            let listed = pods
                .iter()
                .filter(|pod| pod["spec"]["nodeName"] == node.as_str())
                .filter_map(|pod| pod["metadata"]["uid"].as_str().map(String::from))
                .collect();
            container_usage(before, after, &listed)
        })
        .collect();
    let rows = pod_rows(&usage, namespace.as_deref(), args.containers);
    if rows.len() == 1 {
        let place = namespace.map_or("any namespace".to_string(), |ns| format!("namespace {ns}"));
        anyhow::bail!("no metrics of running pods in {place} (pods on hollow nodes have none)");
    }
    print!("{}", render(&rows));
    Ok(())
}

#[cfg(test)]
mod tests {
    use rudder_proto::node::{ContainerStats, PodStats};
    use serde_json::json;

    use super::*;

    fn reading(at_seconds: u64, node_cpu_seconds: u64, app_cpu_millis: u64) -> StatsResponse {
        StatsResponse {
            timestamp_nanos: at_seconds * 1_000_000_000,
            node_cpu_nanos: node_cpu_seconds * 1_000_000_000,
            node_memory_bytes: 2048 * 1024 * 1024,
            pods: vec![PodStats {
                namespace: "default".into(),
                name: "kubia".into(),
                uid: "u1".into(),
                containers: vec![ContainerStats {
                    name: "app".into(),
                    id: format!("rudder://u1-app-{}", app_cpu_millis / 5000),
                    cpu_nanos: app_cpu_millis * 1_000_000,
                    memory_bytes: 12 * 1024 * 1024,
                }],
            }],
        }
    }

    #[test]
    fn nodes_show_the_rate_and_their_share_of_allocatable() {
        let node = json!({
            "metadata": {"name": "n1"},
            "status": {"allocatable": {"cpu": "2", "memory": "8Gi"}},
        });
        let hollow = json!({"metadata": {"name": "h1"}, "status": {}});
        let stats = BTreeMap::from([
            (
                "n1".to_string(),
                Some((reading(10, 100, 0), reading(11, 101, 0))),
            ),
            ("h1".to_string(), None),
        ]);
        let rows = node_rows(&[node, hollow], &stats);
        assert_eq!(rows[1], ["n1", "1000m", "50%", "2048Mi", "25%"]);
        assert_eq!(rows[2][1], "<unknown>");
    }

    #[test]
    fn pods_sum_their_containers_and_a_restart_counts_from_zero() {
        let listed = std::collections::BTreeSet::from(["u1".to_string()]);
        let usage = container_usage(&reading(10, 0, 1000), &reading(11, 0, 1250), &listed);
        assert_eq!(
            pod_rows(&usage, Some("default"), false)[1],
            ["kubia", "250m", "12Mi"]
        );
        // Another attempt (its id changed): its counter starts again.
        let restarted = container_usage(&reading(10, 0, 4000), &reading(11, 0, 5100), &listed);
        assert_eq!(restarted[0].3, 5100, "from zero: 5.1 s of CPU in a second");
        let elsewhere = container_usage(
            &reading(10, 0, 1000),
            &reading(11, 0, 1250),
            &Default::default(),
        );
        assert!(
            elsewhere.is_empty(),
            "a pod not listed on this node counts nothing"
        );
        let all = pod_rows(&usage, None, true);
        assert_eq!(
            all[0],
            ["NAMESPACE", "POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
        );
        assert_eq!(all[1], ["default", "kubia", "app", "250m", "12Mi"]);
    }
}
