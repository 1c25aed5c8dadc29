//! `rudder bench ...`: benchmarks (never tests). Each prints its figures and can write JSON.

use std::path::PathBuf;
use std::sync::Arc;

use super::bench_cluster::{SpawnArgs, Store};
use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use rudder_chaos::bench::kv::{self, KvLoad, Workload};
use rudder_chaos::bench::{api, api_http, failover, pod_startup, restart, sealing, stats::Summary};
use rudder_chaos::cluster::ProcessCluster;
use rudder_proto::tls::{CertificateRequest, ClientTls};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Load a store through the etcd v3 API (works against Rudder and etcd alike).
    Kv(KvArgs),
    /// kill -9 the leader of a fresh local cluster and time the first write after, N times.
    Failover(FailoverArgs),
    /// Load a fresh local cluster with many clients' puts, then kill -9 a follower and time
    /// until it serves a linearizable read again, N times.
    Restart(RestartArgs),
    /// Create, list and watch N pods through the API server.
    Api(ApiArgs),
    /// What sealing Secrets costs: Secrets and ConfigMaps of the same size created and
    /// listed through the API, alternating, on one cluster.
    Secrets(SecretsArgs),
    /// Create→Running latency of N pods bound to one node (default: a spawned cluster with
    /// one hollow node, which measures the control path alone).
    PodStartup(PodStartupArgs),
    /// Pods bound per second over N hollow nodes (end to end, or with a backlog), and the
    /// pure decision's cost per pod (--decision-only).
    Schedule(super::bench_schedule::ScheduleArgs),
    /// Controllers end to end over hollow nodes: a ReplicaSet's create → Running and delete →
    /// gone, a Deployment's rolling update, and the masters' RSS with many pods.
    Controllers(super::bench_controllers::ControllersArgs),
    /// The node proxy's rule sync for N Services and forwarding through a cluster IP, in a
    /// private network namespace (root).
    Proxy(super::bench_proxy::ProxyArgs),
    /// Network programming latency: an EndpointSlice change → the rule in a running node's
    /// nftables table (a running cluster with a node on this machine; root).
    Programming(super::bench_programming::ProgrammingArgs),
}

#[derive(Args, Debug)]
pub struct SecretsArgs {
    /// API servers of a running cluster: host:port,... (default: spawn 3 masters).
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    #[command(flatten)]
    cluster: SpawnArgs,
    /// Objects of each kind per round.
    #[arg(long, default_value_t = 2_500)]
    per_round: usize,
    /// Rounds (ConfigMaps then Secrets in each).
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// Concurrent creating clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Bytes of data in each object.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Namespace for the objects (created, and deleted afterwards).
    #[arg(long, default_value = "bench-secrets")]
    namespace: String,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct PodStartupArgs {
    /// API servers of a running cluster (default: spawn 3 masters and a hollow node).
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    /// The node the pods are bound to (with --endpoints).
    #[arg(long, default_value = "bench-0")]
    node: String,
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Pods created at once.
    #[arg(long, default_value_t = 1)]
    parallel: usize,
    #[arg(long, default_value = "luksa/kubia")]
    image: String,
    /// With a spawned cluster: a real node (containers; needs root and the image in
    /// --images) instead of a hollow one.
    #[arg(long)]
    real: bool,
    /// The real node's image store.
    #[arg(long, default_value = "/var/lib/rudder/images")]
    images: PathBuf,
    #[command(flatten)]
    cluster: SpawnArgs,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ApiArgs {
    /// API servers of a running cluster: host:port,... (default: spawn 3 masters).
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    #[command(flatten)]
    cluster: SpawnArgs,
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Concurrent creating clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Namespace for the pods (created, and deleted afterwards).
    #[arg(long, default_value = "bench-api")]
    namespace: String,
    /// Also run the same load over the Kubernetes HTTP API (into NAMESPACE-http), and print
    /// both side by side with HTTP's ratio to gRPC.
    #[arg(long)]
    http: bool,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Run the gRPC load twice on spawned clusters, plaintext then with TLS and client
    /// certificates (`--pki`), and print TLS's ratio to plaintext: the cost of security.
    #[arg(long, conflicts_with_all = ["endpoints", "http"])]
    tls: bool,
}

#[derive(Args, Debug)]
pub struct Target {
    /// Client endpoints of a running cluster: host:port,...
    #[arg(long, value_delimiter = ',', conflicts_with = "spawn")]
    endpoints: Vec<String>,
    /// Start a fresh local cluster for this run instead (torn down afterwards).
    #[arg(long)]
    spawn: Option<Store>,
    #[command(flatten)]
    cluster: SpawnArgs,
}

#[derive(Args, Debug)]
pub struct KvArgs {
    #[arg(value_enum)]
    workload: KvWorkload,
    /// range: serve reads from the local member (serializable) instead of linearizably.
    #[arg(long)]
    serializable: bool,
    /// watch: number of watchers.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// watch: puts per second.
    #[arg(long, default_value_t = 100)]
    put_rate: u64,
    #[command(flatten)]
    target: Target,
    /// Concurrent clients.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// HTTP/2 connections the clients share.
    #[arg(long, default_value_t = 1)]
    conns: usize,
    /// Operations in all (puts for watch).
    #[arg(long, default_value_t = 10_000)]
    total: u64,
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    #[arg(long, default_value_t = 256)]
    val_size: usize,
    /// Keys are drawn from 0..key-space.
    #[arg(long, default_value_t = 100_000)]
    key_space: u64,
    /// Sequential keys instead of random ones.
    #[arg(long)]
    sequential_keys: bool,
    /// Send every request to the leader only (default: spread over all members).
    #[arg(long)]
    target_leader: bool,
    /// With --spawn rudder: run the load twice, on a plaintext cluster then on one secured
    /// as `rudder up` secures one (`--pki`: TLS with client certificates on the client and
    /// peer ports), and print TLS's ratio to plaintext: the cost of security.
    #[arg(long)]
    tls: bool,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
enum KvWorkload {
    /// Writes of --val-size bytes to keys drawn from --key-space.
    Put,
    /// Reads of one key (linearizable unless --serializable).
    Range,
    /// Compare-and-swap transactions, each client on its own key.
    Txn,
    /// --watchers watch one key while --put-rate puts per second arrive.
    Watch,
}

#[derive(Args, Debug)]
pub struct FailoverArgs {
    #[arg(long, value_enum, default_value = "rudder")]
    store: Store,
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Stop the leader with SIGTERM (it hands over) instead of kill -9, and report the
    /// longest time without a successful write.
    #[arg(long)]
    graceful: bool,
    #[command(flatten)]
    cluster: SpawnArgs,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RestartArgs {
    #[arg(long, value_enum, default_value = "rudder")]
    store: Store,
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Puts made before the restarts.
    #[arg(long, default_value_t = 200_000)]
    writes: u64,
    /// Clients making them (each a session the store keeps records of).
    #[arg(long, default_value_t = 1_000)]
    clients: usize,
    #[arg(long, default_value_t = 100)]
    conns: usize,
    #[arg(long, default_value_t = 256)]
    val_size: usize,
    /// Keys drawn from this many.
    #[arg(long, default_value_t = 100_000)]
    key_space: u64,
    #[command(flatten)]
    cluster: SpawnArgs,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn write_json(path: &Option<PathBuf>, value: &impl serde::Serialize) -> anyhow::Result<()> {
    if let Some(path) = path {
        let text = serde_json::to_string_pretty(value)?;
        std::fs::write(path, text).with_context(|| format!("writing {path:?}"))?;
    }
    Ok(())
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Kv(args) => run_kv(args).await,
        BenchCommand::Failover(args) => run_failover(args).await,
        BenchCommand::Restart(args) => run_restart(args).await,
        BenchCommand::Api(args) => run_api(args).await,
        BenchCommand::Secrets(args) => run_secrets(args).await,
        BenchCommand::PodStartup(args) => run_pod_startup(args).await,
        BenchCommand::Schedule(args) => super::bench_schedule::run(args).await,
        BenchCommand::Controllers(args) => super::bench_controllers::run(args).await,
        BenchCommand::Proxy(args) => super::bench_proxy::run(args).await,
        BenchCommand::Programming(args) => super::bench_programming::run(args).await,
    }
}

async fn run_pod_startup(args: PodStartupArgs) -> anyhow::Result<()> {
    let (spawned, endpoints) = args.cluster.rudder_unless_given(&args.endpoints).await?;
    // A spawned cluster gets one node, hollow or real, ended with the run (kill_on_drop).
    let scratch = tempfile::tempdir()?;
    let node = if spawned.is_some() {
        "bench-0".to_string()
    } else {
        args.node.clone()
    };
    let _node_process = match &spawned {
        Some(_) => {
            let mut command = tokio::process::Command::new(std::env::current_exe()?);
            if args.real {
                let store = rudder_node::image::store::ImageStore::open(&args.images)?;
                store.resolve(&args.image).with_context(|| {
                    format!(
                        "a real node needs {} in {:?}: scripts/build-kubia-image.sh && \
                         rudder image import target/images/kubia --name luksa/kubia --root {:?}",
                        args.image, args.images, args.images
                    )
                })?;
                command
                    .args(["node", "--name", &node, "--pod-cidr", "10.244.250.0/24"])
                    .args(["--port", "0", "--root"])
                    .arg(scratch.path().join("state"))
                    .arg("--images")
                    .arg(&args.images);
            } else {
                command.args(["node", "--name", "bench", "--hollow", "--count", "1"]);
            }
            Some(
                command
                    .arg("--server")
                    .arg(endpoints.join(","))
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .context("starting the node")?,
            )
        }
        None => None,
    };
    wait_for_ready_node(&endpoints, &node).await?;
    println!(
        "bench pod-startup: {} pods on node {node}, {} at a time{}",
        args.pods,
        args.parallel,
        match (&spawned, args.real) {
            (Some(_), false) => " (hollow node: control path only)",
            (Some(_), true) => " (real node: containers, cached image)",
            (None, _) => "",
        }
    );
    let load = pod_startup::PodStartupLoad {
        endpoints,
        node,
        pods: args.pods,
        parallel: args.parallel,
        image: args.image.clone(),
        namespace: "bench-pod-startup".into(),
    };
    let summary = pod_startup::run(&load).await?;
    println!("{summary}");
    write_json(&args.json, &summary)
}

/// Waits up to 30 s for `node` to be registered and Ready.
async fn wait_for_ready_node(endpoints: &[String], node: &str) -> anyhow::Result<()> {
    use rudder_proto::api as pb;
    let client = rudder_proto::client::ApiClient::new(endpoints.to_vec());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let request = pb::GetRequest {
            resource: "nodes".into(),
            name: node.into(),
            ..Default::default()
        };
        let ready = client
            .call(|mut c| {
                let request = request.clone();
                async move { c.get(request).await }
            })
            .await
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.json).ok())
            .is_some_and(|n| {
                n["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            });
        if ready {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "node {node} was not Ready within 30 s: is `rudder node` running against these masters?"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn run_api(args: ApiArgs) -> anyhow::Result<()> {
    let (_spawned, endpoints) = args.cluster.rudder_unless_given(&args.endpoints).await?;
    println!(
        "bench api: {} pods, {} clients, {} masters{}",
        args.pods,
        args.clients,
        endpoints.len(),
        if args.http { ", gRPC then HTTP" } else { "" }
    );
    let load = api::ApiLoad {
        pods: args.pods,
        clients: args.clients,
        namespace: args.namespace.clone(),
        progress: true,
    };
    let grpc = api::run(Arc::new(api::Grpc::new(endpoints.clone())), &load).await?;
    print_api_report("gRPC", &grpc);
    if args.tls {
        drop(_spawned);
        let secured = run_api_over_tls(&args, &load).await?;
        print_api_report("gRPC with TLS", &secured);
        println!(
            "TLS / plaintext: creates/s {:.2}x, full list p50 {:.2}x (time), watch delivery p50 \
             {:.2}x (time)",
            secured.create.throughput / grpc.create.throughput.max(f64::MIN_POSITIVE),
            secured.list_full.p50_ms / grpc.list_full.p50_ms.max(f64::MIN_POSITIVE),
            secured.watch_delivery.p50_ms / grpc.watch_delivery.p50_ms.max(f64::MIN_POSITIVE),
        );
        return write_json(
            &args.json,
            &serde_json::json!({ "plaintext": grpc, "tls": secured }),
        );
    }
    if !args.http {
        return write_json(&args.json, &grpc);
    }
    let http_load = api::ApiLoad {
        namespace: format!("{}-http", args.namespace),
        ..load
    };
    let http = api::run(Arc::new(api_http::Http::new(&endpoints[0])), &http_load).await?;
    print_api_report("HTTP", &http);
    println!(
        "HTTP / gRPC: creates/s {:.2}x, full list p50 {:.2}x (time), watch delivery p50 {:.2}x (time)",
        http.create.throughput / grpc.create.throughput.max(f64::MIN_POSITIVE),
        http.list_full.p50_ms / grpc.list_full.p50_ms.max(f64::MIN_POSITIVE),
        http.watch_delivery.p50_ms / grpc.watch_delivery.p50_ms.max(f64::MIN_POSITIVE),
    );
    write_json(
        &args.json,
        &serde_json::json!({ "grpc": grpc, "http": http }),
    )
}

/// The same load on a fresh cluster secured as `rudder up` secures one: a PKI directory,
/// masters with `--pki`, a client with an admin certificate.
async fn run_api_over_tls(args: &ApiArgs, load: &api::ApiLoad) -> anyhow::Result<api::ApiReport> {
    let pki = tempfile::tempdir().context("a scratch PKI directory")?;
    let ca = super::ca::init(pki.path())?;
    let admin = ca.issue(&CertificateRequest::client("bench", Some("system:masters")))?;
    let mut flags = args.cluster.rudder_flags.clone();
    flags.extend(["--pki".to_string(), pki.path().display().to_string()]);
    let binary = std::env::current_exe().context("locating the rudder binary")?;
    let cluster = ProcessCluster::start_rudder(&binary, args.cluster.members, &flags)?;
    let tls = ClientTls {
        ca_pem: ca.cert_pem().to_string(),
        identity: Some(admin),
    };
    let grpc = api::Grpc::with_tls(cluster.endpoints(), Some(tls));
    let report = api::run(Arc::new(grpc), load).await?;
    drop(cluster);
    Ok(report)
}

async fn run_secrets(args: SecretsArgs) -> anyhow::Result<()> {
    let (_spawned, endpoints) = args.cluster.rudder_unless_given(&args.endpoints).await?;
    println!(
        "bench secrets: {} rounds of {} ConfigMaps then {} Secrets of {} bytes, {} clients, {} \
         masters",
        args.rounds,
        args.per_round,
        args.per_round,
        args.size,
        args.clients,
        endpoints.len()
    );
    let load = sealing::SealingLoad {
        per_round: args.per_round,
        rounds: args.rounds,
        clients: args.clients,
        value_bytes: args.size,
        namespace: args.namespace.clone(),
        progress: true,
    };
    let client = Arc::new(rudder_proto::client::ApiClient::new(endpoints));
    let report = sealing::run(&client, &load)
        .await
        .map_err(anyhow::Error::msg)?;
    for summary in [
        &report.create_config_maps,
        &report.create_secrets,
        &report.list_config_maps,
        &report.list_secrets,
    ] {
        println!("{summary}");
    }
    println!(
        "Secrets / ConfigMaps: creates/s {:.2}x, full list p50 {:.2}x (time)",
        report.create_ratio(),
        report.list_ratio()
    );
    write_json(&args.json, &report)
}

fn print_api_report(wire: &str, report: &api::ApiReport) {
    println!("over {wire}:");
    println!("{}", report.create);
    println!("{}", report.watch_delivery);
    println!("{}", report.list_paged);
    println!("{}", report.list_full);
    println!(
        "watch delivered {} of {} pods",
        report.watch_delivered, report.create.ops
    );
}

async fn run_kv(args: KvArgs) -> anyhow::Result<()> {
    let spawned = match args.target.spawn {
        Some(store) => Some(args.target.cluster.spawn(store).await?),
        None => None,
    };
    let mut endpoints = match &spawned {
        Some(cluster) => cluster.endpoints(),
        None => args.target.endpoints.clone(),
    };
    if args.target_leader {
        endpoints = vec![leader_endpoint(&endpoints).await?];
    }
    let workload = match args.workload {
        KvWorkload::Put => Workload::Put,
        KvWorkload::Range => Workload::Range {
            serializable: args.serializable,
        },
        KvWorkload::Txn => Workload::Txn,
        KvWorkload::Watch => Workload::Watch {
            watchers: args.watchers,
            rate: args.put_rate,
        },
    };
    let load = KvLoad {
        endpoints,
        clients: args.clients,
        connections: args.conns,
        total: args.total,
        key_size: args.key_size,
        value_size: args.val_size,
        key_space: args.key_space,
        sequential_keys: args.sequential_keys,
        progress: true,
        tls: None,
    };
    let summary: Summary = kv::run(&load, workload).await?;
    println!("{summary}");
    if !args.tls {
        return write_json(&args.json, &summary);
    }
    if !matches!(args.target.spawn, Some(Store::Rudder)) {
        anyhow::bail!("--tls compares two spawned Rudder clusters: give --spawn rudder");
    }
    drop(spawned);
    let secured = run_kv_over_tls(&args, load, workload).await?;
    println!("over TLS: {secured}");
    println!(
        "TLS / plaintext: ops/s {:.2}x, p50 {:.2}x, p99 {:.2}x (time)",
        secured.throughput / summary.throughput.max(f64::MIN_POSITIVE),
        secured.p50_ms / summary.p50_ms.max(f64::MIN_POSITIVE),
        secured.p99_ms / summary.p99_ms.max(f64::MIN_POSITIVE),
    );
    write_json(
        &args.json,
        &serde_json::json!({ "plaintext": summary, "tls": secured }),
    )
}

/// The same load on a fresh cluster secured as `rudder up` secures one: a PKI directory,
/// members with `--pki`, clients with an administrator's certificate (the etcd API takes
/// only `system:masters`).
async fn run_kv_over_tls(
    args: &KvArgs,
    load: KvLoad,
    workload: Workload,
) -> anyhow::Result<Summary> {
    let pki = tempfile::tempdir().context("a scratch PKI directory")?;
    let ca = super::ca::init(pki.path())?;
    let admin = ca.issue(&CertificateRequest::client("bench", Some("system:masters")))?;
    let mut flags = args.target.cluster.rudder_flags.clone();
    flags.extend(["--pki".to_string(), pki.path().display().to_string()]);
    let binary = std::env::current_exe().context("locating the rudder binary")?;
    let members = args.target.cluster.members;
    let cluster = ProcessCluster::start_rudder(&binary, members, &flags)?;
    let tls = ClientTls {
        ca_pem: ca.cert_pem().to_string(),
        identity: Some(admin),
    };
    let mut endpoints = cluster.endpoints();
    if args.target_leader {
        endpoints = vec![leader_endpoint_over(&endpoints, Some(&tls)).await?];
    }
    let load = KvLoad {
        endpoints,
        tls: Some(tls),
        ..load
    };
    let summary = kv::run(&load, workload).await?;
    drop(cluster);
    Ok(summary)
}

async fn leader_endpoint(endpoints: &[String]) -> anyhow::Result<String> {
    leader_endpoint_over(endpoints, None).await
}

async fn leader_endpoint_over(
    endpoints: &[String],
    tls: Option<&ClientTls>,
) -> anyhow::Result<String> {
    use rudder_proto::etcdserverpb::StatusRequest;
    for endpoint in endpoints {
        let Ok(mut client) = rudder_chaos::client::maintenance_with(endpoint, tls).await else {
            continue;
        };
        let Ok(status) = client.status(StatusRequest {}).await else {
            continue;
        };
        let status = status.into_inner();
        if status.header.is_some_and(|h| h.member_id == status.leader) {
            return Ok(endpoint.clone());
        }
    }
    anyhow::bail!("none of {endpoints:?} says it is the leader: is the cluster up?")
}

async fn run_restart(args: RestartArgs) -> anyhow::Result<()> {
    let mut cluster = args.cluster.spawn(args.store).await?;
    let load = KvLoad {
        endpoints: cluster.endpoints(),
        clients: args.clients,
        connections: args.conns,
        total: args.writes,
        key_size: 8,
        value_size: args.val_size,
        key_space: args.key_space,
        sequential_keys: false,
        progress: true,
        tls: None,
    };
    let report = restart::measure(&mut cluster, &load, args.runs).await?;
    println!("load: {}", report.load);
    println!(
        "restart after {} puts from {} clients ({:?}, {} members, {} runs): serving again after \
         min {:.0} ms, median {:.0} ms, max {:.0} ms",
        args.writes,
        args.clients,
        args.store,
        args.cluster.members,
        args.runs,
        report.min_ms,
        report.median_ms,
        report.max_ms
    );
    write_json(&args.json, &report)
}

async fn run_failover(args: FailoverArgs) -> anyhow::Result<()> {
    let mut cluster = args.cluster.spawn(args.store).await?;
    let report = failover::measure(&mut cluster, args.runs, args.graceful).await?;
    let what = match args.graceful {
        true => "graceful leader stop: longest write gap",
        false => "failover",
    };
    println!(
        "{what} ({:?}, {} members, {} runs): min {:.0} ms, median {:.0} ms, max {:.0} ms",
        args.store, args.cluster.members, args.runs, report.min_ms, report.median_ms, report.max_ms
    );
    write_json(&args.json, &report)
}
