//! The node's nftables table, pure: [`ServicePort`]s in, an `nft -f` script out that
//! replaces this node's table — and nothing else — in one transaction. The layout follows
//! kube-proxy's nftables mode:
//!
//! ```text
//!  nat prerouting (this node's bridge, and anything not from a node bridge) ┐
//!  nat output (the machine's own connections) ───────────────────────────────┴► services:
//!     daddr . proto . dport  vmap @service-ips        cluster IP ─► service-ID
//!                                                     LB / external IP ─► external-ID
//!     daddr @nodeport-ips: proto . dport vmap @service-nodeports ─► external-ID
//!  service-ID:  masquerade what does not come from a pod; sticky clients (affinity sets);
//!               numgen random mod N ─► endpoint-ID__IP/PORT ─► dnat to IP:PORT
//!  external-ID: masquerade (Cluster policy), or this node's endpoints only (Local policy;
//!               the machine's own connections still go anywhere)
//!  filter: a new connection still aimed at a service address after DNAT is rejected (no
//!          endpoint, unknown port, unallocated address); 127.0.0.0/8 reached from
//!          elsewhere is dropped (CVE-2020-8558)
//!  nat postrouting: marked connections are masqueraded
//! ```
//!
//! Several nodes on one machine each have a table of their own; every packet meets all of
//! them, and the first that translates a connection wins. Pods are served by their own
//! node's table (prerouting is scoped to its bridge), so Local policies hold for them.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use rudder_proto::objects::cidr::Ipv4Cidr;

use super::model::{Backend, LocalTarget, ServicePort};

/// The packet mark that asks for masquerading (kube-proxy's bit, shared by every node's
/// table so that any of them may masquerade what another marked).
const MASQUERADE_MARK: &str = "0x4000";

/// What the table is made for.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The table's name: `rudder-<node>`, one per node.
    pub table: String,
    /// This node's pod bridge: traffic from its pods is this table's.
    pub bridge: String,
    /// The prefix every node's bridge name starts with.
    pub bridge_prefix: String,
    /// The pod network of the whole cluster: traffic from elsewhere is masqueraded.
    pub cluster_cidr: Ipv4Cidr,
    /// Ranges whose unmatched addresses are refused (service range, load-balancer pool).
    pub service_ranges: Vec<Ipv4Cidr>,
    /// Where node ports answer: this node's addresses and 127.0.0.1.
    pub node_ips: Vec<Ipv4Addr>,
    /// Service ports this node answers itself (cluster DNS, the API relay).
    pub local_targets: Vec<LocalTarget>,
}

/// The script that replaces the table with one forwarding `ports`.
pub fn full_sync(config: &ProxyConfig, ports: &[ServicePort]) -> String {
    let table = &config.table;
    let mut out = String::new();
    // `add` first so that `delete` never fails on a first sync; then the whole table anew.
    let _ = writeln!(out, "add table ip {table}");
    let _ = writeln!(out, "delete table ip {table}");
    let _ = writeln!(out, "table ip {table} {{");
    out.push_str(&base(config));
    for port in ports {
        out.push_str(&service_chains(config, port));
    }
    out.push_str("}\n");
    out.push_str(&elements(config, ports));
    out
}

/// The script that removes the table (a node reset, or the proxy stopping for good).
pub fn remove(table: &str) -> String {
    format!("add table ip {table}\ndelete table ip {table}\n")
}

fn base(config: &ProxyConfig) -> String {
    let bridge = &config.bridge;
    let prefix = &config.bridge_prefix;
    let ranges: Vec<String> = config
        .service_ranges
        .iter()
        .map(|r| r.to_string())
        .collect();
    let range_rejects: String = ranges
        .iter()
        .map(|r| format!("    ip daddr {r} reject\n"))
        .collect();
    format!(
        r#"  set cluster-ips {{ type ipv4_addr; }}
  set nodeport-ips {{ type ipv4_addr; }}
  map service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict; }}
  map service-nodeports {{ type inet_proto . inet_service : verdict; }}
  chain mark-for-masquerade {{ meta mark set meta mark | {MASQUERADE_MARK}; }}
  chain masquerading {{
    meta mark & {MASQUERADE_MARK} == 0 return
    meta mark set meta mark ^ {MASQUERADE_MARK}
    masquerade fully-random
  }}
  chain services {{
    ip daddr . meta l4proto . th dport vmap @service-ips
    ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
  }}
  chain cluster-ips-check {{
    ip daddr @cluster-ips reject
{range_rejects}  }}
  chain localnet-guard {{
    ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8 ct state & (established | related) == 0 ct status & dnat == 0 drop
  }}
  chain filter-input {{ type filter hook input priority -110; jump localnet-guard; }}
  chain filter-output-post-dnat {{ type filter hook output priority -90; ct state new jump cluster-ips-check; }}
  chain filter-forward-post-dnat {{ type filter hook forward priority -90; ct state new jump cluster-ips-check; }}
  chain nat-prerouting {{
    type nat hook prerouting priority -100;
    iifname "{bridge}" jump services
    iifname != "{prefix}*" jump services
  }}
  chain nat-output {{ type nat hook output priority -100; jump services; }}
  chain nat-postrouting {{ type nat hook postrouting priority 100; jump masquerading; }}
"#
    )
}

fn endpoint_chain(port: &ServicePort, backend: &Backend) -> String {
    format!("endpoint-{}__{}/{}", port.id, backend.ip, backend.port)
}

fn affinity_set(port: &ServicePort, backend: &Backend) -> String {
    format!("affinity-{}__{}/{}", port.id, backend.ip, backend.port)
}

/// `numgen` over `backends` (sticky clients first), or nothing when there are none (the
/// connection is then refused by `cluster-ips-check`, or dropped for a Local policy).
fn balance(out: &mut String, port: &ServicePort, backends: &[&Backend]) {
    if backends.is_empty() {
        return;
    }
    if port.affinity_seconds.is_some() {
        for backend in backends {
            let _ = writeln!(
                out,
                "    ip saddr @{} goto {}",
                affinity_set(port, backend),
                endpoint_chain(port, backend)
            );
        }
    }
    let targets: Vec<String> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| format!("{i} : goto {}", endpoint_chain(port, b)))
        .collect();
    let _ = writeln!(
        out,
        "    numgen random mod {} vmap {{ {} }}",
        backends.len(),
        targets.join(", ")
    );
}

fn service_chains(config: &ProxyConfig, port: &ServicePort) -> String {
    let id = &port.id;
    let proto = port.protocol.nft();
    let all: Vec<&Backend> = port.endpoints.iter().collect();
    let local: Vec<&Backend> = port.endpoints.iter().filter(|b| b.local).collect();
    let mut out = String::new();
    for backend in &all {
        if let Some(seconds) = port.affinity_seconds {
            let _ = writeln!(
                out,
                "  set {} {{ type ipv4_addr; flags dynamic,timeout; timeout {seconds}s; }}",
                affinity_set(port, backend)
            );
        }
        let _ = writeln!(out, "  chain {} {{", endpoint_chain(port, backend));
        // A pod reaching itself through the Service: its reply must come back translated.
        let _ = writeln!(out, "    ip saddr {} jump mark-for-masquerade", backend.ip);
        if port.affinity_seconds.is_some() {
            let _ = writeln!(
                out,
                "    update @{} {{ ip saddr }}",
                affinity_set(port, backend)
            );
        }
        let _ = writeln!(
            out,
            "    meta l4proto {proto} dnat to {}:{}",
            backend.ip, backend.port
        );
        out.push_str("  }\n");
    }
    // The cluster IP's chain: every endpoint, or this node's for internalTrafficPolicy Local.
    let _ = writeln!(out, "  chain service-{id} {{");
    if let Some(ip) = port.cluster_ip {
        let _ = writeln!(
            out,
            "    ip daddr {ip} {proto} dport {} ip saddr != {} jump mark-for-masquerade",
            port.port, config.cluster_cidr
        );
    }
    balance(
        &mut out,
        port,
        if port.internal_local { &local } else { &all },
    );
    out.push_str("  }\n");
    // Node ports and external addresses.
    let _ = writeln!(out, "  chain external-{id} {{");
    if port.external_local {
        // The machine's own connections are not external: they may go anywhere (masqueraded
        // so the reply comes back); everything else stays on this node.
        out.push_str("    fib saddr type local jump mark-for-masquerade\n");
        let _ = writeln!(out, "    fib saddr type local goto cluster-{id}");
        balance(&mut out, port, &local);
        // No local endpoint: the connection goes nowhere rather than off the node.
        out.push_str("    drop\n");
    } else {
        out.push_str("    jump mark-for-masquerade\n");
        let _ = writeln!(out, "    goto cluster-{id}");
    }
    out.push_str("  }\n");
    // Every endpoint, for external traffic under the Cluster policy.
    let _ = writeln!(out, "  chain cluster-{id} {{");
    balance(&mut out, port, &all);
    out.push_str("  }\n");
    out
}

fn elements(config: &ProxyConfig, ports: &[ServicePort]) -> String {
    let table = &config.table;
    let mut cluster_ips = Vec::new();
    let mut service_ips = Vec::new();
    let mut node_ports = Vec::new();
    for port in ports {
        let (id, proto) = (&port.id, port.protocol.nft());
        let has_endpoints = !port.endpoints.is_empty();
        if let Some(ip) = port.cluster_ip {
            cluster_ips.push(ip.to_string());
            let reachable = if port.internal_local {
                port.endpoints.iter().any(|b| b.local)
            } else {
                has_endpoints
            };
            if reachable {
                service_ips.push(format!(
                    "{ip} . {proto} . {} : goto service-{id}",
                    port.port
                ));
            }
        }
        if has_endpoints {
            for ip in &port.external_ips {
                service_ips.push(format!(
                    "{ip} . {proto} . {} : goto external-{id}",
                    port.port
                ));
            }
            if let Some(node_port) = port.node_port {
                node_ports.push(format!("{proto} . {node_port} : goto external-{id}"));
            }
        }
    }
    cluster_ips.sort();
    cluster_ips.dedup();
    let node_ips: Vec<String> = config.node_ips.iter().map(|ip| ip.to_string()).collect();
    let mut out = String::new();
    for (set, items) in [
        ("cluster-ips", cluster_ips),
        ("nodeport-ips", node_ips),
        ("service-ips", service_ips),
        ("service-nodeports", node_ports),
    ] {
        if !items.is_empty() {
            let _ = writeln!(
                out,
                "add element ip {table} {set} {{ {} }}",
                items.join(", ")
            );
        }
    }
    out
}

#[cfg(test)]
#[path = "ruleset_tests.rs"]
mod tests;
