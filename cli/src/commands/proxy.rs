//! `rudder proxy --node NAME`: a node's service network on its own — the proxy's nftables
//! table, cluster DNS and the API relay — as kube-proxy runs beside a kubelet; for a node
//! started with `rudder node --proxy false`. The node's pod range (its bridge's) comes from
//! its Node object unless `--pod-cidr` says it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use rudder_node::proxy::metrics::ProxyMetrics;
use rudder_proto::client::ApiClient;
use rudder_proto::metrics::Metrics;

use super::metrics_endpoint;
use super::node::servers;
use super::service_network::{NetworkFlags, ServiceNetwork};
use crate::session::Target;

/// How long the proxy waits for its node to have a pod range.
const POD_RANGE_WAIT: Duration = Duration::from_secs(60);

#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// The node whose pods and addresses to serve (started with `rudder node --proxy false`).
    #[arg(long)]
    node: String,
    /// The node's pod range (default: the Node's spec.podCIDR).
    #[arg(long)]
    pod_cidr: Option<String>,
    /// The node's address: node ports answer there too.
    #[arg(long, default_value = "127.0.0.1")]
    internal_ip: String,
    #[command(flatten)]
    network: NetworkFlags,
    /// Where to serve `GET /metrics` (`0`: nowhere).
    #[arg(long, default_value = metrics_endpoint::PROXY)]
    metrics_bind_address: String,
    #[command(flatten)]
    target: Target,
}

/// Runs until Ctrl-C or SIGTERM. Actix needs its own runtime, so this is called outside the
/// CLI's tokio runtime.
pub fn run(args: ProxyArgs) -> anyhow::Result<()> {
    let servers = servers(&args.target)?;
    crate::session::no_token(&args.target, "rudder proxy")?;
    let tls = crate::session::client_tls(&args.target)?;
    let internal_ip = args.internal_ip.parse().with_context(|| {
        format!(
            "--internal-ip {:?} is not an IPv4 address",
            args.internal_ip
        )
    })?;
    let mut args = args;
    crate::allocator::actix_system().block_on(async move {
        let client = Arc::new(ApiClient::with_tls(servers, tls));
        args.network.settle(&client).await?;
        let pod_cidr = match args.pod_cidr.clone() {
            Some(cidr) => cidr,
            None => node_pod_range(&client, &args.node).await?,
        };
        let metrics = Metrics::for_process();
        let proxy_metrics = ProxyMetrics::registered(&metrics);
        if let Some(bound) = metrics_endpoint::serve(&args.metrics_bind_address, metrics).await? {
            println!("rudder proxy: metrics at http://{bound}/metrics");
        }
        let network = ServiceNetwork::start(
            &client,
            &args.node,
            &pod_cidr,
            Some(internal_ip),
            &args.network,
            proxy_metrics,
        )
        .await?;
        println!(
            "rudder proxy: serving the Services for node {} (pods in {pod_cidr}) against {}",
            args.node,
            client.endpoints().join(",")
        );
        super::leader_elected::until_interrupted().await?;
        println!("rudder proxy: stopping (the rules stay, so pods stay reachable)");
        network.stop().await;
        actix::System::current().stop();
        anyhow::Ok(())
    })
}

/// The node's pod range, once it has one.
async fn node_pod_range(client: &ApiClient, node: &str) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + POD_RANGE_WAIT;
    loop {
        match client.get_object("nodes", "", node).await {
            Ok(object) => {
                if let Some(cidr) = object["spec"]["podCIDR"].as_str() {
                    return Ok(cidr.to_owned());
                }
            }
            Err(error) if !error.is_not_found() => {
                tracing::debug!(%error, node, "reading the node");
            }
            Err(_) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "node {node} has no pod range after {POD_RANGE_WAIT:?}: is `rudder node --name \
                 {node}` running against these masters? (or give --pod-cidr)"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
