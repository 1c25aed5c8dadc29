//! A node's service network: the proxy's nftables table, the cluster DNS server and the
//! relay to the masters (`default/kubernetes`), all fed by one [`ServiceView`]. `rudder
//! node` runs it beside its kubelet; `rudder proxy --node NAME` runs it alone (as kube-proxy
//! beside a kubelet started with `--proxy false`). [`NetworkFlags`] are the cluster ranges
//! both take, settled with what the masters publish (`kube-system/rudder-cluster`).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use actix::{Actor, Addr};
use anyhow::Context;
use clap::Args;
use hickory_proto::rr::Name;
use rudder_actors::manager::DEFAULT_CLUSTER_CIDR;
use rudder_apiserver::allocation;
use rudder_apiserver::cluster_config::{self, settle, ClusterConfig};
use rudder_node::api_relay::ApiRelay;
use rudder_node::dns::actor::ClusterDns;
use rudder_node::dns::{DnsServer, SharedNames};
use rudder_node::proxy::actor::Proxy;
use rudder_node::proxy::metrics::ProxyMetrics;
use rudder_node::proxy::model::LocalTarget;
use rudder_node::proxy::ruleset::ProxyConfig;
use rudder_node::runtime::linux::network::interface_name;
use rudder_node::service_view::ServiceView;
use rudder_proto::client::ApiClient;
use rudder_proto::objects::cidr::Ipv4Cidr;

/// The cluster's ranges and DNS settings as a node takes them.
#[derive(Args, Debug, Clone)]
pub struct NetworkFlags {
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
    /// Serve the cluster DNS for the node's pods (on its bridge address, reached through the
    /// kube-dns Service's address), and give pods that resolver; false: pods use the
    /// machine's resolver.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub dns: bool,
    /// The cluster DNS address pods are given, when this node serves DNS (default: the
    /// masters' (as published), else the tenth address of --service-cidr, kube-dns's).
    #[arg(long)]
    cluster_dns: Option<std::net::Ipv4Addr>,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Where the cluster DNS sends questions about names outside the cluster (IP or
    /// IP:PORT, port 53 by default); without it they are refused, as this machine may have
    /// no network.
    #[arg(long, value_parser = parse_upstream)]
    dns_upstream: Option<SocketAddr>,
}

/// `IP` or `IP:PORT` (port 53).
fn parse_upstream(value: &str) -> Result<SocketAddr, String> {
    value
        .parse::<SocketAddr>()
        .or_else(|_| {
            value
                .parse::<std::net::IpAddr>()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .map_err(|_| format!("{value:?} is not an address like 192.168.1.1 or 192.168.1.1:53"))
}

/// How long a node waits for its masters to publish the cluster's ranges.
const CLUSTER_CONFIG_WAIT: Duration = Duration::from_secs(10);

impl NetworkFlags {
    pub fn cluster_cidr(&self) -> &str {
        self.cluster_cidr.as_deref().unwrap_or(DEFAULT_CLUSTER_CIDR)
    }

    pub fn service_cidr(&self) -> &str {
        self.service_cidr
            .as_deref()
            .unwrap_or(allocation::DEFAULT_SERVICE_CIDR)
    }

    pub fn lb_pool(&self) -> &str {
        self.lb_pool
            .as_deref()
            .unwrap_or(allocation::DEFAULT_LB_POOL)
    }

    /// Takes the ranges the masters publish for every flag not given, and refuses a flag
    /// that disagrees with them. Masters of an earlier release publish nothing: after a
    /// while the flags and defaults stand, with a warning.
    pub async fn settle(&mut self, client: &ApiClient) -> anyhow::Result<()> {
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
        let tenth = self.service_address(10)?.to_string();
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

impl NetworkFlags {
    /// The cluster DNS address pods are given: --cluster-dns, else the kube-dns Service's.
    pub fn cluster_dns(&self) -> anyhow::Result<Ipv4Addr> {
        match self.cluster_dns {
            Some(address) => Ok(address),
            None => self.service_address(10),
        }
    }

    /// Address `n` of --service-cidr: the first is the API's Service, the tenth the DNS's.
    pub fn service_address(&self, n: u64) -> anyhow::Result<Ipv4Addr> {
        let range = Ipv4Cidr::parse(self.service_cidr())
            .with_context(|| format!("--service-cidr {:?}", self.service_cidr()))?;
        range
            .nth(n)
            .with_context(|| format!("--service-cidr {range} has no address number {n}"))
    }
}

/// A running service network; [`ServiceNetwork::stop`] ends it (the table stays, so pods
/// stay reachable while a node restarts).
pub struct ServiceNetwork {
    _proxy: Addr<Proxy>,
    _dns_feed: Option<Addr<ClusterDns>>,
    dns: Option<DnsServer>,
    _relay: ApiRelay,
}

impl ServiceNetwork {
    /// Starts the service network of node `node` whose pods use `pod_cidr` (its bridge's).
    pub async fn start(
        client: &std::sync::Arc<ApiClient>,
        node: &str,
        pod_cidr: &str,
        internal_ip: Option<Ipv4Addr>,
        flags: &NetworkFlags,
        metrics: ProxyMetrics,
    ) -> anyhow::Result<Self> {
        let mut proxy = proxy_config(flags, node, pod_cidr, internal_ip)?;
        let gateway = gateway(pod_cidr)?;
        let view = ServiceView::start(client.clone());
        let (mut dns, mut dns_feed) = (None, None);
        if flags.dns {
            let domain = Name::from_ascii(&flags.cluster_domain).with_context(|| {
                format!(
                    "--cluster-domain {:?} is not a domain name",
                    flags.cluster_domain
                )
            })?;
            let names = SharedNames::default();
            let address = SocketAddr::from((gateway, 53));
            dns = Some(
                DnsServer::start(address, names.clone(), flags.dns_upstream)
                    .await
                    .with_context(|| {
                        format!(
                            "serving the cluster DNS on {address} (is another DNS server bound to \
                     port 53 on every address? stop it, or run with --dns false)"
                        )
                    })?,
            );
            dns_feed = Some(ClusterDns::new(view.clone(), domain, names).start());
            proxy.local_targets.push(LocalTarget {
                service_ip: flags.cluster_dns()?,
                port: 53,
                target_ip: gateway,
                target_port: 53,
            });
        }
        // Pods reach the masters through `default/kubernetes`, relayed by the node.
        let relay = ApiRelay::start((gateway, 0).into(), client.endpoints().to_vec())
            .await
            .with_context(|| format!("starting the API relay on {gateway}"))?;
        proxy.local_targets.push(LocalTarget {
            service_ip: flags.service_address(1)?,
            port: 443,
            target_ip: gateway,
            target_port: relay.addr.port(),
        });
        Ok(Self {
            _proxy: Proxy::new(view, node.to_owned(), proxy)
                .with_metrics(metrics)
                .start(),
            _dns_feed: dns_feed,
            dns,
            _relay: relay,
        })
    }

    /// Stops serving; returns once the DNS server's sockets are closed.
    pub async fn stop(self) {
        if let Some(dns) = self.dns {
            dns.stop().await;
        }
    }
}

/// The pod range's first address: the node's own on its bridge.
pub fn gateway(pod_cidr: &str) -> anyhow::Result<Ipv4Addr> {
    Ipv4Cidr::parse(pod_cidr)
        .with_context(|| format!("the pod range {pod_cidr:?}"))?
        .nth(1)
        .context("the pod range has no gateway address")
}

/// The proxy's table for node `name`: named after its bridge (one per node), its pods on
/// that bridge, node ports on the bridge's address, 127.0.0.1 and the node's internal IP.
fn proxy_config(
    flags: &NetworkFlags,
    name: &str,
    pod_cidr: &str,
    internal_ip: Option<Ipv4Addr>,
) -> anyhow::Result<ProxyConfig> {
    let cidr =
        |flag: &str, text: &str| Ipv4Cidr::parse(text).with_context(|| format!("{flag} {text:?}"));
    let bridge = interface_name("rb", name);
    let mut node_ips = vec![gateway(pod_cidr)?];
    // 127.0.0.1 for connections from the machine's own shell (as kube-proxy's iptables
    // mode offered).
    node_ips.push(Ipv4Addr::LOCALHOST);
    node_ips.extend(internal_ip.filter(|ip| !ip.is_loopback()));
    Ok(ProxyConfig {
        table: format!("rudder-{bridge}"),
        bridge,
        bridge_prefix: "rb".into(),
        cluster_cidr: cidr("--cluster-cidr", flags.cluster_cidr())?,
        service_ranges: vec![
            cidr("--service-cidr", flags.service_cidr())?,
            cidr("--lb-pool", flags.lb_pool())?,
        ],
        node_ips,
        local_targets: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_is_an_address_with_port_53_unless_given() {
        assert_eq!(
            parse_upstream("192.168.1.1"),
            Ok("192.168.1.1:53".parse().unwrap())
        );
        assert_eq!(
            parse_upstream("127.0.0.1:5353"),
            Ok("127.0.0.1:5353".parse().unwrap())
        );
        let refused = parse_upstream("dns.example.com").unwrap_err();
        assert!(refused.contains("is not an address like"), "{refused}");
    }
}
