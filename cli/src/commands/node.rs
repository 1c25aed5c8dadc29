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
use rudder_node::image::pull::{install_tls_provider, PullConfig};
use rudder_node::image::store::ImageStore;
use rudder_node::kubelet::metrics::KubeletMetrics;
use rudder_node::kubelet::{Kubelet, KubeletTimers};
use rudder_node::machine::Machine;
use rudder_node::pod_range::await_pod_range;
use rudder_node::proxy::metrics::ProxyMetrics;
use rudder_node::runtime::fake::FakeRuntime;
use rudder_node::runtime::lifecycle::Backoff;
use rudder_node::runtime::linux::network::NodeNetwork;
use rudder_node::runtime::linux::resolv::{host_resolver, NodeDns};
use rudder_node::runtime::linux::{LinuxConfig, LinuxRuntime};
use rudder_node::runtime::Runtime;
use rudder_node::status::NodeConfig;
use rudder_proto::client::ApiClient;
use rudder_proto::metrics::Metrics;
use rudder_proto::tls::{ClientTls, ServingCertificate};

use super::node_reset;
use super::service_network::{NetworkFlags, ServiceNetwork};
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
    /// The node's state (pods, containers, network namespaces, and after a join with
    /// --token its certificate); default /var/lib/rudder/node/NAME.
    #[arg(long)]
    root: Option<std::path::PathBuf>,
    /// The image store (as `rudder image import --root`).
    #[arg(long, default_value = "/var/lib/rudder/images")]
    images: std::path::PathBuf,
    /// Run the service network (the proxy's nftables rules, cluster DNS, the API relay)
    /// beside the kubelet of a real node; without it, run `rudder proxy --node NAME`.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    proxy: bool,
    #[command(flatten)]
    network: NetworkFlags,
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

#[derive(clap::Subcommand, Debug)]
enum NodeAction {
    /// Remove everything a stopped node made on this machine (as `kubeadm reset`): its pods'
    /// processes, mounts, cgroups and network, its bridge, its nftables table and its state.
    Reset(node_reset::ResetArgs),
}

/// Runs the node(s) until Ctrl-C or SIGTERM. Actix needs its own runtime, so this is called
/// outside the CLI's tokio runtime.
pub fn run(args: NodeArgs) -> anyhow::Result<()> {
    if let Some(NodeAction::Reset(reset_args)) = &args.action {
        return node_reset::run(reset_args);
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
    let (tls, joined) = node_credential(&args, &name, &servers)?;
    let (kubelet_tls, serving) = match (&tls, args.hollow) {
        (Some(tls), false) => {
            let (config, serving) = kubelet_tls(tls, &name)?;
            (Some(config), Some(serving))
        }
        _ => (None, None),
    };
    let timers = KubeletTimers {
        lease_renew: Duration::from_millis(args.lease_renew_ms),
        lease_duration: Duration::from_secs(args.lease_duration_seconds),
        status_update: Duration::from_millis(args.status_update_ms),
        ..KubeletTimers::default()
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
    let system = crate::allocator::actix_system();
    let mut args = args;
    system.block_on(async move {
        let client = Arc::new(ApiClient::with_tls(servers, tls));
        if joined {
            // A certificate from a join is the node's to renew (one given by flags is the
            // operator's).
            let root = node_root(&args, &name);
            tokio::spawn(super::join::renew_node_certificate(
                root,
                name.clone(),
                client.clone(),
                serving.clone(),
            ));
        }
        args.network.settle(&client).await?;
        let names: Vec<String> = if args.hollow {
            (0..args.count).map(|i| format!("{name}-{i}")).collect()
        } else {
            vec![name.clone()]
        };
        let mut kubelets = Vec::new();
        let mut networks = Vec::new();
        // A real node serves its process' metrics on its endpoint; hollow nodes (many in a
        // process, no endpoint) count theirs unserved.
        let metrics = Metrics::for_process();
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
                let bound = rudder_node::server::serve(
                    runtime.clone(),
                    name,
                    address,
                    metrics.clone(),
                    kubelet_tls.clone(),
                )
                .await
                .with_context(|| format!("binding the node endpoint {address}"))?;
                config.kubelet_port = i32::from(bound.port());
            }
            if let (Some(cidr), false, true) = (&config.pod_cidr, args.hollow, args.proxy) {
                let internal_ip = args.internal_ip.parse().ok();
                let network = ServiceNetwork::start(
                    &client,
                    name,
                    cidr,
                    internal_ip,
                    &args.network,
                    ProxyMetrics::registered(&metrics),
                )
                .await?;
                networks.push(network);
            }
            let kubelet_metrics = match (&runtime, args.hollow) {
                (Some(runtime), false) => KubeletMetrics::registered(&metrics, runtime.clone()),
                _ => KubeletMetrics::default(),
            };
            let mut kubelet =
                Kubelet::new(client.clone(), config, machine.clone(), timers, runtime)
                    .with_metrics(kubelet_metrics);
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
        super::leader_elected::until_interrupted().await?;
        println!("rudder node: stopping");
        drop(kubelets);
        for network in networks {
            network.stop().await;
        }
        actix::System::current().stop();
        anyhow::Ok(())
    })
}

/// The real runtime, re-adopting the pods a previous `rudder node` left running.
fn linux_runtime(args: &NodeArgs, name: &str, pod_cidr: &str) -> anyhow::Result<LinuxRuntime> {
    let root = node_root(args, name);
    let network = NodeNetwork::new(
        name,
        pod_cidr,
        root.join("netns"),
        &[args.network.cluster_cidr()],
        &[args.network.service_cidr(), args.network.lb_pool()],
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
            // Pods ask the cluster DNS through the node's service network (its own, or
            // `rudder proxy`'s with --proxy false).
            cluster_dns: match args.network.dns {
                true => Some(args.network.cluster_dns()?),
                false => None,
            },
            cluster_domain: args.network.cluster_domain.clone(),
            host_resolv_conf: host_resolver(
                &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
                std::fs::read_to_string("/run/systemd/resolve/resolv.conf")
                    .ok()
                    .as_deref(),
            ),
        },
    };
    install_tls_provider();
    LinuxRuntime::open(config, images).context("starting the container runtime")
}

/// How the node calls the masters, and whether with a join's certificate (which it renews):
/// the certificate --client-certificate gives; else the one a join left in its state
/// directory (joined for again with --token when it expired or is another cluster's);
/// else one it joins for with --token (a join token: a node never calls with a bearer
/// token); else the CLI config's.
fn node_credential(
    args: &NodeArgs,
    name: &str,
    servers: &[String],
) -> anyhow::Result<(Option<ClientTls>, bool)> {
    // A token that is not a join token is a bearer token, which no_token refuses.
    let join_token = match args.target.token.as_deref() {
        Some(token) => match super::join::parse(token, "rudder node --token") {
            Ok(join_token) => Some(join_token),
            Err(_) => {
                crate::session::no_token(&args.target, "rudder node")?;
                None
            }
        },
        None => None,
    };
    if args.hollow || args.target.client_certificate.is_some() {
        if join_token.is_some() {
            bail!(
                "--token joins one real node for a certificate of its own: hollow nodes, or a \
                 node given --client-certificate, take no join token"
            );
        }
        return Ok((crate::session::client_tls(&args.target)?, false));
    }
    let root = node_root(args, name);
    let pki = root.join("pki");
    if let Some(joined) = super::join::joined_node(&root)? {
        match super::join::stale(&joined, join_token.as_ref()) {
            None => return Ok((Some(joined), true)),
            Some(why) if join_token.is_some() => println!(
                "rudder node {name}: the certificate in {} will not do ({why}): joining again \
                 with the token (a master refuses while Node {name} exists: delete it first, \
                 `rudder delete node {name}`)",
                pki.display()
            ),
            Some(why) => bail!(
                "the certificate in {} will not do: {why}. Join again: delete the Node \
                 (`rudder delete node {name}`), then start with --token (`rudder token create \
                 --role node`)",
                pki.display()
            ),
        }
    }
    let Some(join_token) = join_token else {
        return Ok((crate::session::client_tls(&args.target)?, false));
    };
    let joined = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(super::join::node_tls(&root, servers, &join_token, name))?;
    Ok((Some(joined), true))
}

/// The node's state directory: --root, else /var/lib/rudder/node/NAME.
fn node_root(args: &NodeArgs, name: &str) -> std::path::PathBuf {
    args.root
        .clone()
        .unwrap_or_else(|| std::path::Path::new("/var/lib/rudder/node").join(name))
}

/// Hollow node i's pod range: 10.<200 + i / 256>.<i % 256>.0/24.
fn hollow_cidr(index: usize) -> String {
    format!("10.{}.{}.0/24", 200 + index / 256, index % 256)
}

/// A node must be told its masters: it never guesses a default.
/// The kubelet port's TLS: the node's own certificate (which must name it, and serve:
/// `rudder ca issue` makes one for `system:node:NAME`), masters only as callers.
fn kubelet_tls(
    tls: &ClientTls,
    node: &str,
) -> anyhow::Result<(Arc<rustls::ServerConfig>, ServingCertificate)> {
    let issue_one = format!(
        "issue one with `rudder ca issue PKI_DIR system:node:{node} --group system:nodes \
         --cert FILE --key FILE` and give it as --client-certificate and --client-key"
    );
    let Some(identity) = &tls.identity else {
        bail!("a node in a cluster with TLS needs its certificate: {issue_one}");
    };
    if let Some(problem) = rudder_proto::tls::node_certificate_problem(&identity.cert_pem, node) {
        bail!("the node's certificate will not do: {problem}; {issue_one}");
    }
    let serving = ServingCertificate::new(identity)
        .context("the node's certificate and key do not go together")?;
    let config = rudder_proto::tls::kubelet_server_config(&tls.ca_pem, &serving)?;
    Ok((config, serving))
}

pub(crate) fn servers(target: &Target) -> anyhow::Result<Vec<String>> {
    configured_servers(target)?.with_context(|| {
        format!(
            "no --server given and no CLI config at {:?}: name the masters",
            config_path(target.config.as_ref())
        )
    })
}
