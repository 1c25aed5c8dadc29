//! `rudder bench proxy`: the node proxy, in a private network namespace of its own (needs
//! root; nothing of the machine's is touched).
//!
//! - Rule sync: for each count of Services, the table is planned and written whole
//!   (`script::full`) as a new table; then one Service's endpoints change and the partial
//!   sync is timed as the proxy makes it (that Service planned, `script::changes`, nft);
//!   then the whole table is written again over the existing one (what a restarted proxy
//!   does).
//! - Forwarding: a "pod" in a namespace of its own behind a bridge and a veth, as a node's
//!   pods are; clients on the "node" open a connection per request, straight to the pod's
//!   address and through a cluster IP (DNAT in the kernel), alternating four times, with
//!   the whole table of the largest count loaded; then the same on kept connections.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use rudder_node::proxy::model::{Backend, Protocol, ServicePort};
use rudder_node::proxy::nft;
use rudder_node::proxy::ruleset::{plan, plan_service, service_key, Edits, ProxyConfig};
use rudder_node::proxy::script;
use rudder_proto::objects::cidr::Ipv4Cidr;

#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// Counts of Services to sync, each a run of its own.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    services: Vec<usize>,
    /// Ready endpoints per Service.
    #[arg(long, default_value_t = 3)]
    endpoints: usize,
    /// Syncs per measurement (the median is shown).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Requests per forwarding run (each on a new connection); 0 skips forwarding.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Concurrent clients in the forwarding runs.
    #[arg(long, default_value_t = 4)]
    clients: usize,
}

/// One count's medians.
struct SyncRow {
    services: usize,
    script_bytes: usize,
    plan: Duration,
    full_new: Duration,
    one_changed: Duration,
    /// Of `one_changed`: planning every Service, and the difference.
    one_changed_plan: Duration,
    one_changed_diff: Duration,
    full_again: Duration,
}

/// One forwarding run.
struct ForwardRow {
    path: &'static str,
    requests_per_second: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// The bench's "node": its bridge, the pod behind it, and the Service that leads there.
const BRIDGE: &str = "rbbench";
const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 2);
const SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);

pub async fn run(args: ProxyArgs) -> anyhow::Result<()> {
    if args.services.contains(&0) || args.endpoints == 0 {
        bail!("--services counts and --endpoints must be at least 1");
    }
    if args.requests != 0 && args.requests < 4 * args.clients.max(1) {
        bail!(
            "--requests {} is too few for --clients {}: each of the four runs per path needs \
             a request per client (or 0 to skip forwarding)",
            args.requests,
            args.clients
        );
    }
    // A thread of its own enters the private namespace, so that no runtime thread does.
    let (sync, forwarding) = tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || measure(&args))
            .join()
            .map_err(|_| anyhow::anyhow!("the measuring thread panicked"))?
    })
    .await??;
    println!(
        "| Services | script KiB | plan + script ms | full sync, new table ms | one changed (partial) ms | of which plan / diff ms | full sync over the table ms |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for row in sync {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} / {:.1} | {:.1} |",
            row.services,
            row.script_bytes / 1024,
            ms(row.plan),
            ms(row.full_new),
            ms(row.one_changed),
            ms(row.one_changed_plan),
            ms(row.one_changed_diff),
            ms(row.full_again)
        );
    }
    if !forwarding.is_empty() {
        println!();
        println!("| path | requests/s | p50 ms | p99 ms | max ms | requests/s vs direct |");
        println!("|---|---:|---:|---:|---:|---:|");
    }
    for pair in forwarding.chunks(2) {
        let direct = &pair[0];
        for row in pair {
            println!(
                "| {} | {:.0} | {:.3} | {:.3} | {:.1} | {:.2} |",
                row.path,
                row.requests_per_second,
                ms(row.p50),
                ms(row.p99),
                ms(row.max),
                row.requests_per_second / direct.requests_per_second
            );
        }
    }
    Ok(())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn measure(args: &ProxyArgs) -> anyhow::Result<(Vec<SyncRow>, Vec<ForwardRow>)> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .context("entering a private network namespace (run as root)")?;
    let config = ProxyConfig {
        table: "rudder-bench".into(),
        bridge: BRIDGE.into(),
        bridge_prefix: "rb".into(),
        cluster_cidr: Ipv4Cidr::parse("10.244.0.0/16").map_err(anyhow::Error::msg)?,
        service_ranges: vec![Ipv4Cidr::parse("10.96.0.0/12").map_err(anyhow::Error::msg)?],
        node_ips: vec![NODE_IP, Ipv4Addr::LOCALHOST],
        local_targets: Vec::new(),
    };
    let mut rows = Vec::new();
    for &count in &args.services {
        rows.push(measure_sync(&config, count, args)?);
    }
    let forwarding = if args.requests == 0 {
        Vec::new()
    } else {
        let count = args.services.iter().copied().max().unwrap_or(1).max(1);
        measure_forwarding(&config, count, args)?
    };
    nft::apply(&script::remove(&config.table))?;
    Ok((rows, forwarding))
}

fn measure_sync(config: &ProxyConfig, count: usize, args: &ProxyArgs) -> anyhow::Result<SyncRow> {
    let mut ports = services(count, args.endpoints);
    let (mut plans, mut fulls, mut changes, mut agains) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut change_plans, mut change_diffs) = (Vec::new(), Vec::new());
    let mut script_bytes = 0;
    for round in 0..args.rounds.max(1) {
        nft::apply(&script::remove(&config.table))?;
        let started = Instant::now();
        let mut applied = plan(config, &ports);
        let full = script::full(config, &applied);
        plans.push(started.elapsed());
        script_bytes = full.len();
        let started = Instant::now();
        nft::apply(&full).with_context(|| format!("applying {count} Services"))?;
        fulls.push(started.elapsed());
        // One Service's endpoints change: the next sync as the proxy makes it — that
        // Service planned, the difference written — from plan to kernel.
        let changed = &mut ports[round % count.max(1)];
        if let Some(first) = changed.endpoints.first_mut() {
            first.port = first.port.wrapping_add(1);
        }
        let started = Instant::now();
        let edits = Edits::from([(
            service_key(&changed.id).to_string(),
            Some(plan_service([&*changed])),
        )]);
        let planned = started.elapsed();
        let partial = script::changes(&config.table, &applied, &edits)
            .context("one Service changed, yet the partial sync found nothing to do")?;
        let diffed = started.elapsed();
        nft::apply(&partial).context("the partial sync")?;
        changes.push(started.elapsed());
        change_plans.push(planned);
        change_diffs.push(diffed - planned);
        applied.apply(edits);
        let started = Instant::now();
        nft::apply(&script::full(config, &applied)).context("the full sync again")?;
        agains.push(started.elapsed());
    }
    Ok(SyncRow {
        services: count,
        script_bytes,
        plan: median(plans),
        full_new: median(fulls),
        one_changed: median(changes),
        one_changed_plan: median(change_plans),
        one_changed_diff: median(change_diffs),
        full_again: median(agains),
    })
}

/// `count` ClusterIP Services with `endpoints` ready endpoints each (addresses nothing
/// answers on).
fn services(count: usize, endpoints: usize) -> Vec<ServicePort> {
    (0..count)
        .map(|i| {
            let octets =
                |base: u8, n: usize| Ipv4Addr::new(10, base, (n / 250) as u8, (n % 250) as u8 + 1);
            ServicePort {
                id: format!("bench/svc-{i}/TCP/http"),
                protocol: Protocol::Tcp,
                cluster_ip: Some(octets(96, i + 1)),
                port: 80,
                node_port: None,
                external_ips: Vec::new(),
                affinity_seconds: None,
                external_local: false,
                internal_local: false,
                endpoints: (0..endpoints)
                    .map(|e| Backend {
                        ip: octets(245, (i * endpoints + e) % 60_000),
                        port: 8080,
                        local: false,
                    })
                    .collect(),
            }
        })
        .collect()
}

fn ip(args: &str) -> anyhow::Result<()> {
    let status = Command::new("ip")
        .args(args.split_whitespace())
        .status()
        .context("running ip (iproute2)")?;
    if !status.success() {
        bail!("ip {args} failed");
    }
    Ok(())
}

fn measure_forwarding(
    config: &ProxyConfig,
    count: usize,
    args: &ProxyArgs,
) -> anyhow::Result<Vec<ForwardRow>> {
    // The pod listens on two ports, one per path: connections by the two paths then never
    // share a conntrack reply tuple (which would make NAT pick other ports and blur the
    // comparison).
    let pod = SocketAddr::from((POD_IP, 8080));
    let pod_behind_service = SocketAddr::from((POD_IP, 8081));
    let service = SocketAddr::from((SERVICE_IP, 80));
    // The pod: a thread in a network namespace of its own, serving until the bench ends
    // (the namespace goes with the process). It says its thread id (which names its
    // namespace for `ip`), waits for its eth0, configures it and listens.
    let (to_bench, from_pod) = mpsc::channel::<anyhow::Result<i32>>();
    let (to_pod, from_bench) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let listening = (|| -> anyhow::Result<[TcpListener; 2]> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .context("the pod's network namespace")?;
            let _ = to_bench.send(Ok(nix::unistd::gettid().as_raw()));
            from_bench.recv().context("the bench stopped")?;
            ip(&format!("addr add {POD_IP}/24 dev eth0"))?;
            ip("link set eth0 up")?;
            ip("link set lo up")?;
            ip(&format!("route add default via {NODE_IP}"))?;
            Ok([
                TcpListener::bind(pod)?,
                TcpListener::bind(pod_behind_service)?,
            ])
        })();
        match listening {
            Ok(listeners) => {
                let _ = to_bench.send(Ok(0));
                for listener in listeners {
                    std::thread::spawn(move || serve(listener));
                }
            }
            Err(error) => {
                let _ = to_bench.send(Err(error));
            }
        }
    });
    let tid = from_pod.recv()??;
    ip(&format!("link add {BRIDGE} type bridge"))?;
    ip(&format!("addr add {NODE_IP}/24 dev {BRIDGE}"))?;
    ip(&format!("link set {BRIDGE} up"))?;
    ip(&format!(
        "link add vethbench type veth peer name eth0 netns {tid}"
    ))?;
    ip(&format!("link set vethbench master {BRIDGE} up"))?;
    // Service addresses route to a bridge with no ports: nothing leaves.
    ip("link add rudder-svc type bridge")?;
    ip("link set rudder-svc up")?;
    ip("route add 10.96.0.0/12 dev rudder-svc")?;
    to_pod.send(()).context("the pod's thread ended")?;
    from_pod.recv()??;
    let mut ports = services(count, 1);
    ports[0].endpoints[0].ip = POD_IP;
    ports[0].endpoints[0].port = pod_behind_service.port();
    ports[0].cluster_ip = Some(SERVICE_IP);
    nft::apply(&script::full(config, &plan(config, &ports)))?;
    // Warm both paths, then alternate: direct, Service, direct, Service.
    let mut rows = Vec::new();
    for (connections, direct_path, service_path) in [
        (
            Connections::PerRequest,
            "straight to the pod IP, a connection per request",
            "through the cluster IP, a connection per request",
        ),
        (
            Connections::Kept,
            "straight to the pod IP, kept connections",
            "through the cluster IP, kept connections",
        ),
    ] {
        load(pod, 200, args.clients, connections)?;
        load(service, 200, args.clients, connections)?;
        let (mut direct, mut through) = (Vec::new(), Vec::new());
        for _ in 0..4 {
            direct.push(load(pod, args.requests / 4, args.clients, connections)?);
            through.push(load(service, args.requests / 4, args.clients, connections)?);
        }
        rows.push(summarize(direct_path, direct));
        rows.push(summarize(service_path, through));
    }
    Ok(rows)
}

/// Answers each 64-byte request with 64 bytes, on a few threads.
fn serve(listener: TcpListener) {
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let listener = listener.try_clone().expect("cloning the listener");
            std::thread::spawn(move || {
                for mut stream in listener.incoming().flatten() {
                    // A request's first byte says whether more follow on this connection.
                    let mut request = [0u8; 64];
                    while stream.read_exact(&mut request).is_ok() {
                        if stream.write_all(&request).is_err() || request[0] == LAST {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
}

/// The first byte of a request: the last on its connection (the server closes), or not.
const LAST: u8 = 1;
const MORE: u8 = 0;

/// How clients connect.
#[derive(Debug, Clone, Copy)]
enum Connections {
    /// A new connection per request: the NAT rules decide each one.
    PerRequest,
    /// One connection per client for all its requests: conntrack's translation only.
    Kept,
}

/// `requests` request/response exchanges with `to` over `clients` threads: (elapsed,
/// every latency).
fn load(
    to: SocketAddr,
    requests: usize,
    clients: usize,
    connections: Connections,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let clients = clients.max(1);
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|client| {
            let share = requests / clients + usize::from(client < requests % clients);
            std::thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
                let mut latencies = Vec::with_capacity(share);
                let connect = || -> anyhow::Result<TcpStream> {
                    let stream = TcpStream::connect_timeout(&to, Duration::from_secs(5))
                        .with_context(|| format!("connecting to {to}"))?;
                    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                    stream.set_nodelay(true)?;
                    Ok(stream)
                };
                let mut kept = match connections {
                    Connections::Kept => Some(connect()?),
                    Connections::PerRequest => None,
                };
                for _ in 0..share {
                    let began = Instant::now();
                    let mut fresh = None;
                    let stream = match kept.as_mut() {
                        Some(stream) => stream,
                        None => fresh.insert(connect()?),
                    };
                    let mut request = [0u8; 64];
                    request[0] = match connections {
                        Connections::Kept => MORE,
                        Connections::PerRequest => LAST,
                    };
                    stream.write_all(&request)?;
                    let mut answer = [0u8; 64];
                    stream
                        .read_exact(&mut answer)
                        .with_context(|| format!("reading {to}'s answer"))?;
                    latencies.push(began.elapsed());
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(requests);
    for worker in workers {
        latencies.extend(
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("a client panicked"))??,
        );
    }
    Ok((started.elapsed(), latencies))
}

fn summarize(path: &'static str, runs: Vec<(Duration, Vec<Duration>)>) -> ForwardRow {
    let requests: usize = runs.iter().map(|(_, l)| l.len()).sum();
    let elapsed: Duration = runs.iter().map(|(e, _)| *e).sum();
    let mut latencies: Vec<Duration> = runs.into_iter().flat_map(|(_, l)| l).collect();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    ForwardRow {
        path,
        requests_per_second: requests as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        max: latencies[latencies.len() - 1],
    }
}
