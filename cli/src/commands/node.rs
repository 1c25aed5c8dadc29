//! `rudder node`: turns this machine into a worker: registers its Node, heartbeats through
//! its Lease, keeps its status current, and runs the pods bound to it as libcontainer
//! containers on a pod network of its own (`--pod-cidr`). `--hollow --count N` runs N simulated
//! nodes in one process with the same kubelet logic, for scale tests (like kubemark).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use anyhow::{bail, Context};
use clap::Args;
use hickory_proto::rr::Name;
use rudder_actors::manager::DEFAULT_CLUSTER_CIDR;
use rudder_apiserver::allocation;
use rudder_apiserver::cluster_config::{self, settle, ClusterConfig};
use rudder_node::api_relay::ApiRelay;
use rudder_node::dns::actor::ClusterDns;
use rudder_node::dns::{DnsServer, SharedNames};
use rudder_node::image::pull::{install_tls_provider, PullConfig};
use rudder_node::image::store::ImageStore;
use rudder_node::kubelet::{Kubelet, KubeletTimers};
use rudder_node::machine::Machine;
use rudder_node::pod_range::await_pod_range;
use rudder_node::proxy::actor::Proxy;
use rudder_node::proxy::model::LocalTarget;
use rudder_node::proxy::ruleset::ProxyConfig;
use rudder_node::runtime::fake::FakeRuntime;
use rudder_node::runtime::lifecycle::Backoff;
use rudder_node::runtime::linux::network::interface_name;
use rudder_node::runtime::linux::network::NodeNetwork;
use rudder_node::runtime::linux::resolv::NodeDns;
use rudder_node::runtime::linux::{LinuxConfig, LinuxRuntime};
use rudder_node::runtime::Runtime;
use rudder_node::service_view::ServiceView;
use rudder_node::status::NodeConfig;
use rudder_proto::client::ApiClient;
use rudder_proto::objects::cidr::Ipv4Cidr;

use crate::session::{config_path, configured_servers, Target};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct NodeArgs {
    #[command(subcommand)]
    action: Option<NodeAction>,
    /// The node's name (a DNS subdomain); hollow nodes are NAME-0 ... NAME-(N-1).
    /// Required to run a node.
    #[arg(long)]
    name: Option<String>,
    /// The address pods and masters reach this node at.
    #[arg(long, default_value = "127.0.0.1")]
    internal_ip: String,
    /// The node's pod address range (e.g. 10.244.1.0/24); without it the node waits for
    /// the controller manager to give it a block of the cluster's --cluster-cidr.
    #[arg(long)]
    pod_cidr: Option<String>,
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// Extra node labels: key=value,...
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    /// Lease renewal interval (the heartbeat), milliseconds.
    #[arg(long, default_value_t = 10_000)]
    lease_renew_ms: u64,
    /// How long the lease holds without renewal, seconds.
    #[arg(long, default_value_t = 40)]
    lease_duration_seconds: u64,
    /// NodeStatus update interval, milliseconds.
    #[arg(long, default_value_t = 10_000)]
    status_update_ms: u64,
    /// Simulate nodes instead of running containers.
    #[arg(long)]
    hollow: bool,
    /// With --hollow: how many nodes.
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// With --hollow: the CPUs each node reports (default: this machine's), as Kubemark's
    /// hollow nodes take their capacity.
    #[arg(long, requires = "hollow")]
    hollow_cpus: Option<u32>,
    /// With --hollow: the memory each node reports, in MiB (default: this machine's).
    #[arg(long, requires = "hollow")]
    hollow_memory_mib: Option<u64>,
    /// The node's state (pods, containers, network namespaces); default
    /// /var/lib/rudder/node/NAME.
    #[arg(long)]
    root: Option<std::path::PathBuf>,
    /// The image store (as `rudder image import --root`).
    #[arg(long, default_value = "/var/lib/rudder/images")]
    images: std::path::PathBuf,
    /// The whole cluster's pod range: routed `unreachable` here, so nothing leaks.
    /// Default: what the masters publish (kube-system/rudder-cluster), else 10.244.0.0/16;
    /// given, it must agree with the masters'.
    #[arg(long)]
    cluster_cidr: Option<String>,
    /// The service range: reached through this node's proxy, and dying on this machine
    /// where nothing answers. Default: the masters' --service-cidr (as published), else
    /// 10.96.0.0/12; given, it must agree with the masters'.
    #[arg(long)]
    service_cidr: Option<String>,
    /// The load-balancer pool, routed like the service range. Default: the masters'
    /// --lb-pool (as published), else 10.112.0.0/24; given, it must agree.
    #[arg(long)]
    lb_pool: Option<String>,
    /// Run the proxy (Services through nftables) beside the kubelet of a real node.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    proxy: bool,
    /// Serve the cluster DNS for this node's pods (on the node's bridge address, reached
    /// through the kube-dns Service's address); needs --proxy.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    dns: bool,
    /// The cluster DNS address pods are given, when this node serves DNS (default: the
    /// masters' (as published), else the tenth address of --service-cidr, kube-dns's).
    #[arg(long)]
    cluster_dns: Option<std::net::Ipv4Addr>,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Static pods: pod manifests in this directory run here without the API (checked every
    /// 5 s), each shown in the API as a mirror pod named NAME-<node>.
    #[arg(long)]
    manifests: Option<std::path::PathBuf>,
    /// The node's streaming endpoint (logs, exec) on --internal-ip; 0: any free port.
    #[arg(long, default_value_t = 10250)]
    port: u16,
    /// Registries this node pulls images from (host[:port], docker.io for Docker Hub, * for
    /// any) besides those on loopback (localhost, 127.0.0.0/8, [::1]: always, over plain
    /// HTTP); otherwise images come from `rudder image import`.
    #[arg(long, value_delimiter = ',')]
    registries: Vec<String>,
    /// Those of --registries reached over plain HTTP.
    #[arg(long, value_delimiter = ',')]
    insecure_registries: Vec<String>,
    /// Crash-loop backoff: the first delay (doubling up to 5 minutes), milliseconds.
    #[arg(long, default_value_t = 10_000)]
    crash_backoff_ms: u64,
    #[command(flatten)]
    target: Target,
}

/// How long a node waits for its masters to publish the cluster's ranges.
const CLUSTER_CONFIG_WAIT: Duration = Duration::from_secs(10);

impl NodeArgs {
    fn cluster_cidr(&self) -> &str {
        self.cluster_cidr.as_deref().unwrap_or(DEFAULT_CLUSTER_CIDR)
    }

    fn service_cidr(&self) -> &str {
        self.service_cidr
            .as_deref()
            .unwrap_or(allocation::DEFAULT_SERVICE_CIDR)
    }

    fn lb_pool(&self) -> &str {
        self.lb_pool
            .as_deref()
            .unwrap_or(allocation::DEFAULT_LB_POOL)
    }

    /// Takes the ranges the masters publish for every flag not given, and refuses a flag
    /// that disagrees with them. Masters of an earlier release publish nothing: after a
    /// while the flags and defaults stand, with a warning.
    async fn settle_ranges(&mut self, client: &ApiClient) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + CLUSTER_CONFIG_WAIT;
        let published = loop {
            match client
                .get_object(
                    "configmaps",
                    cluster_config::NAMESPACE,
                    cluster_config::NAME,
                )
                .await
            {
                Ok(map) => {
                    break Some(ClusterConfig::from_config_map(&map).map_err(anyhow::Error::msg)?)
                }
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => {
                    tracing::warn!(%error, "the masters publish no network settings ({}/{}); using this node's flags", cluster_config::NAMESPACE, cluster_config::NAME);
                    break None;
                }
            }
        };
        let cluster = |pick: fn(&ClusterConfig) -> Option<&str>| published.as_ref().and_then(pick);
        let settled = |flag, given: &Option<String>, theirs, default: &str| {
            settle(flag, given.as_deref(), theirs, default).map_err(anyhow::Error::msg)
        };
        self.cluster_cidr = Some(settled(
            "--cluster-cidr",
            &self.cluster_cidr,
            cluster(|c| c.cluster_cidr.as_deref()),
            DEFAULT_CLUSTER_CIDR,
        )?);
        self.service_cidr = Some(settled(
            "--service-cidr",
            &self.service_cidr,
            cluster(|c| Some(c.service_cidr.as_str())),
            allocation::DEFAULT_SERVICE_CIDR,
        )?);
        self.lb_pool = Some(settled(
            "--lb-pool",
            &self.lb_pool,
            cluster(|c| Some(c.lb_pool.as_str())),
            allocation::DEFAULT_LB_POOL,
        )?);
        let tenth = service_address(self, 10)?.to_string();
        let dns = settled(
            "--cluster-dns",
            &self.cluster_dns.map(|ip| ip.to_string()),
            cluster(|c| Some(c.cluster_dns.as_str())),
            &tenth,
        )?;
        self.cluster_dns = Some(
            dns.parse()
                .with_context(|| format!("the cluster DNS address {dns:?}"))?,
        );
        Ok(())
    }
}

#[derive(clap::Subcommand, Debug)]
enum NodeAction {
    /// Remove everything a stopped node made on this machine (as `kubeadm reset`): its pods'
    /// processes, mounts, cgroups and network, its bridge, its nftables table and its state.
    Reset(ResetArgs),
}

#[derive(Args, Debug)]
struct ResetArgs {
    /// The node's name (as given to `rudder node --name`).
    #[arg(long)]
    name: String,
    /// The node's state directory (as given to `rudder node --root`); default
    /// /var/lib/rudder/node/NAME.
    #[arg(long)]
    root: Option<std::path::PathBuf>,
}

/// `rudder node reset`: refuses while the node runs, then removes what it made.
fn reset(args: &ResetArgs) -> anyhow::Result<()> {
    let root = args
        .root
        .clone()
        .unwrap_or_else(|| std::path::Path::new("/var/lib/rudder/node").join(&args.name));
    if let Some(pid) = running_node(&args.name) {
        bail!(
            "node {} is running (pid {pid}): stop it first, or its kubelet starts the pods again",
            args.name
        );
    }
    let removed = rudder_node::runtime::linux::reset::reset(&args.name, &root)
        .with_context(|| format!("resetting node {}", args.name))?;
    for line in &removed {
        println!("removed {line}");
    }
    println!("node {} reset", args.name);
    Ok(())
}

/// A `rudder node --name NAME` process running on this machine.
fn running_node(name: &str) -> Option<i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid = entry.file_name().to_string_lossy().parse::<i32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let words: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_node = words.get(1) == Some(&b"node".as_slice())
                && words
                    .windows(2)
                    .any(|w| w[0] == b"--name" && w[1] == name.as_bytes())
                && !words.contains(&b"reset".as_slice());
            (is_node && pid != me).then_some(pid)
        })
}

/// Runs the node(s) until Ctrl-C or SIGTERM. Actix needs its own runtime, so this is called
/// outside the CLI's tokio runtime.
pub fn run(args: NodeArgs) -> anyhow::Result<()> {
    if let Some(NodeAction::Reset(reset_args)) = &args.action {
        return reset(reset_args);
    }
    let Some(name) = args.name.clone() else {
        bail!("rudder node needs --name NAME (or a command: rudder node reset --name NAME)");
    };
    if args.count == 0 || (!args.hollow && args.count != 1) {
        bail!("--count needs --hollow and must be at least 1");
    }
    let mut labels = BTreeMap::new();
    for pair in &args.labels {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("--labels entry {pair:?} is not key=value"))?;
        labels.insert(key.to_string(), value.to_string());
    }
    if args.hollow {
        labels.insert("rudder.dev/hollow".into(), "true".into());
    }
    let servers = servers(&args.target)?;
    let timers = KubeletTimers {
        lease_renew: Duration::from_millis(args.lease_renew_ms),
        lease_duration: Duration::from_secs(args.lease_duration_seconds),
        status_update: Duration::from_millis(args.status_update_ms),
    };
    let mut machine = Machine::read();
    if let Some(cpus) = args.hollow_cpus {
        machine.cpus = cpus;
    }
    if let Some(mib) = args.hollow_memory_mib {
        machine.memory_bytes = mib.checked_mul(1024 * 1024).with_context(|| {
            format!("--hollow-memory-mib {mib} is more bytes than a node can report")
        })?;
    }
    let system = actix::System::new();
    let mut args = args;
    system.block_on(async move {
        let client = Arc::new(ApiClient::new(servers));
        args.settle_ranges(&client).await?;
        let names: Vec<String> = if args.hollow {
            (0..args.count)
                .map(|i| format!("{name}-{i}"))
                .collect()
        } else {
            vec![name.clone()]
        };
        let mut kubelets = Vec::new();
        let mut proxies = Vec::new();
        let mut dns_servers = Vec::new();
        let mut dns_feeds = Vec::new();
        let mut relays = Vec::new();
        for name in &names {
            let mut config = NodeConfig {
                name: name.clone(),
                internal_ip: args.internal_ip.clone(),
                pod_cidr: match (&args.pod_cidr, args.hollow) {
                    (Some(cidr), _) => Some(cidr.clone()),
                    (None, true) => Some(hollow_cidr(kubelets.len())),
                    (None, false) => None,
                },
                max_pods: args.max_pods,
                labels: labels.clone(),
                kubelet_port: 10250,
                runtime_version: if args.hollow {
                    "fake://hollow".into()
                } else {
                    "libcontainer://0.7".into()
                },
            };
            // A real node without --pod-cidr gets a block of the cluster's range.
            if config.pod_cidr.is_none() && !args.hollow {
                println!("rudder node: {name}: waiting for a pod range from the cluster");
                let range = await_pod_range(&client, &config, &machine)
                    .await
                    .with_context(|| format!("registering node {name} for a pod range"))?;
                println!("rudder node: {name}: pod range {range}");
                config.pod_cidr = Some(range);
            }
            // Hollow nodes run pods in the fake runtime; a real node in libcontainer.
            let runtime: Option<Arc<dyn Runtime>> = match (&config.pod_cidr, args.hollow) {
                (Some(cidr), true) => Some(Arc::new(FakeRuntime::new(cidr))),
                (Some(cidr), false) => Some(Arc::new(linux_runtime(&args, name, cidr)?)),
                (None, _) => None,
            };
            // A real node serves logs and exec; its Node status says where.
            if let (Some(runtime), false) = (&runtime, args.hollow) {
                let address: std::net::SocketAddr = format!("{}:{}", args.internal_ip, args.port)
                    .parse()
                    .with_context(|| {
                        format!("--internal-ip {:?} is not an IP address", args.internal_ip)
                    })?;
                let bound = rudder_node::server::serve(runtime.clone(), address)
                    .await
                    .with_context(|| format!("binding the node endpoint {address}"))?;
                config.kubelet_port = i32::from(bound.port());
            }
            if let (Some(cidr), false, true) = (&config.pod_cidr, args.hollow, args.proxy) {
                let mut proxy = proxy_config(&args, name, cidr)?;
                let view = ServiceView::start(client.clone());
                if args.dns {
                    let server = gateway(cidr)?;
                    let domain = Name::from_ascii(&args.cluster_domain).with_context(|| {
                        format!(
                            "--cluster-domain {:?} is not a domain name",
                            args.cluster_domain
                        )
                    })?;
                    let names = SharedNames::default();
                    let address = std::net::SocketAddr::from((server, 53));
                    let dns = DnsServer::start(address, names.clone())
                        .await
                        .with_context(|| {
                            format!(
                                "serving the cluster DNS on {address} (is another DNS server \
                                 bound to port 53 on every address? stop it, or run with --dns false)"
                            )
                        })?;
                    dns_servers.push(dns);
                    dns_feeds.push(ClusterDns::new(view.clone(), domain, names).start());
                    proxy.local_targets.push(LocalTarget {
                        service_ip: cluster_dns(&args)?,
                        port: 53,
                        target_ip: server,
                        target_port: 53,
                    });
                }
                // Pods reach the masters through `default/kubernetes`, relayed by the node.
                let gateway_ip = gateway(cidr)?;
                let relay = ApiRelay::start((gateway_ip, 0).into(), client.endpoints().to_vec())
                    .await
                    .with_context(|| format!("starting the API relay on {gateway_ip}"))?;
                proxy.local_targets.push(LocalTarget {
                    service_ip: service_address(&args, 1)?,
                    port: 443,
                    target_ip: gateway_ip,
                    target_port: relay.addr.port(),
                });
                relays.push(relay);
                proxies.push(Proxy::new(view, name.clone(), proxy).start());
            }
            let mut kubelet =
                Kubelet::new(client.clone(), config, machine.clone(), timers, runtime);
            if let (Some(dir), false) = (&args.manifests, args.hollow) {
                kubelet = kubelet.with_manifests(dir.clone());
            }
            kubelets.push(kubelet.start());
        }
        println!(
            "rudder node: {} {} running against {}",
            names.len(),
            if args.hollow {
                "hollow node(s)"
            } else {
                "node"
            },
            client.endpoints().join(",")
        );
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        println!("rudder node: stopping");
        drop(kubelets);
        drop(proxies);
        drop(dns_feeds);
        drop(relays);
        for dns in dns_servers {
            dns.stop().await;
        }
        actix::System::current().stop();
        anyhow::Ok(())
    })
}

/// The real runtime, re-adopting the pods a previous `rudder node` left running.
fn linux_runtime(args: &NodeArgs, name: &str, pod_cidr: &str) -> anyhow::Result<LinuxRuntime> {
    let root = args
        .root
        .clone()
        .unwrap_or_else(|| std::path::Path::new("/var/lib/rudder/node").join(name));
    let network = NodeNetwork::new(
        name,
        pod_cidr,
        root.join("netns"),
        &[args.cluster_cidr()],
        &[args.service_cidr(), args.lb_pool()],
    )?;
    let images = ImageStore::open(&args.images)
        .with_context(|| format!("opening the image store {:?}", args.images))?;
    let config = LinuxConfig {
        root,
        shim_binary: std::env::current_exe().context("finding the rudder binary for its shim")?,
        network,
        backoff: Backoff {
            base: Duration::from_millis(args.crash_backoff_ms),
            ..Backoff::default()
        },
        pull: PullConfig {
            registries: args.registries.clone(),
            insecure_registries: args.insecure_registries.clone(),
        },
        dns: NodeDns {
            // Pods ask the cluster DNS through this node's own server (and proxy).
            cluster_dns: match args.dns && args.proxy {
                true => Some(cluster_dns(args)?),
                false => None,
            },
            cluster_domain: args.cluster_domain.clone(),
            host_resolv_conf: std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        },
    };
    install_tls_provider();
    LinuxRuntime::open(config, images).context("starting the container runtime")
}

/// The cluster DNS address pods are given: --cluster-dns, else the kube-dns Service's.
fn cluster_dns(args: &NodeArgs) -> anyhow::Result<std::net::Ipv4Addr> {
    match args.cluster_dns {
        Some(address) => Ok(address),
        None => service_address(args, 10),
    }
}

/// Address `n` of --service-cidr: the first is the API's Service, the tenth the DNS's.
fn service_address(args: &NodeArgs, n: u64) -> anyhow::Result<std::net::Ipv4Addr> {
    let range = Ipv4Cidr::parse(args.service_cidr())
        .with_context(|| format!("--service-cidr {:?}", args.service_cidr()))?;
    range
        .nth(n)
        .with_context(|| format!("--service-cidr {range} has no address number {n}"))
}

/// The pod range's first address: the node's own on its bridge.
fn gateway(pod_cidr: &str) -> anyhow::Result<std::net::Ipv4Addr> {
    Ipv4Cidr::parse(pod_cidr)
        .with_context(|| format!("the pod range {pod_cidr:?}"))?
        .nth(1)
        .context("the pod range has no gateway address")
}

/// The proxy's table for node `name`: named after its bridge (one per node), its pods on
/// that bridge, node ports on the bridge's address, 127.0.0.1 and --internal-ip.
fn proxy_config(args: &NodeArgs, name: &str, pod_cidr: &str) -> anyhow::Result<ProxyConfig> {
    let cidr =
        |flag: &str, text: &str| Ipv4Cidr::parse(text).with_context(|| format!("{flag} {text:?}"));
    let bridge = interface_name("rb", name);
    let mut node_ips = vec![gateway(pod_cidr)?];
    // 127.0.0.1 for connections from the machine's own shell (as kube-proxy's iptables
    // mode offered).
    node_ips.push(std::net::Ipv4Addr::LOCALHOST);
    if let Ok(ip) = args.internal_ip.parse::<std::net::Ipv4Addr>() {
        if !ip.is_loopback() {
            node_ips.push(ip);
        }
    }
    Ok(ProxyConfig {
        table: format!("rudder-{bridge}"),
        bridge,
        bridge_prefix: "rb".into(),
        cluster_cidr: cidr("--cluster-cidr", args.cluster_cidr())?,
        service_ranges: vec![
            cidr("--service-cidr", args.service_cidr())?,
            cidr("--lb-pool", args.lb_pool())?,
        ],
        node_ips,
        local_targets: Vec::new(),
    })
}

/// Hollow node i's pod range: 10.<200 + i / 256>.<i % 256>.0/24.
fn hollow_cidr(index: usize) -> String {
    format!("10.{}.{}.0/24", 200 + index / 256, index % 256)
}

/// A node must be told its masters: it never guesses a default.
fn servers(target: &Target) -> anyhow::Result<Vec<String>> {
    configured_servers(target)?.with_context(|| {
        format!(
            "no --server given and no CLI config at {:?}: name the masters",
            config_path(target.config.as_ref())
        )
    })
}
