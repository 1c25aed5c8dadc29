//! Stale UDP flows. Conntrack remembers how a flow was translated, and for UDP nothing ends
//! a flow but silence: a client that keeps sending keeps reaching an endpoint that is gone,
//! or — if its first packet came while the Service had no endpoint — keeps being
//! untranslated, until it pauses past conntrack's timeout. After a sync, the flows the
//! change made wrong are deleted (kube-proxy does the same); the next packet is translated
//! anew. TCP needs none of this: a connection to a gone endpoint is reset.
//!
//! [`stale_flows`] is the pure decision; [`delete`] runs `conntrack -D` for each.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;

use super::model::{Protocol, ServicePort};

/// Flows to delete, all UDP. Each names the address and port the client sent to: a
/// Service address, or a node address with a node port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum StaleFlow {
    /// Translated to an endpoint (address and port) that is gone.
    ToGoneEndpoint {
        address: Ipv4Addr,
        port: u16,
        endpoint: Ipv4Addr,
        endpoint_port: u16,
    },
    /// Sent while the port had no endpoint, so never translated (its answers would come
    /// from the address itself); it has one now. Translated flows are left alone.
    Untranslated { address: Ipv4Addr, port: u16 },
}

impl StaleFlow {
    /// The `conntrack` arguments that delete the flow.
    pub fn args(&self) -> Vec<String> {
        let matching = match self {
            Self::ToGoneEndpoint {
                address,
                port,
                endpoint,
                endpoint_port,
            } => format!(
                "--orig-dst {address} --orig-port-dst {port} --dst-nat {endpoint} \
                 --reply-port-src {endpoint_port}"
            ),
            Self::Untranslated { address, port } => {
                format!("--orig-dst {address} --orig-port-dst {port} --reply-src {address}")
            }
        };
        ["-D", "-p", "udp"]
            .into_iter()
            .chain(matching.split_whitespace())
            .map(String::from)
            .collect()
    }
}

/// The flows a Service's change from `old` to `new` (its ports, any protocol) leaves wrong;
/// `node_ips`: where node ports answer.
pub fn stale_flows(
    old: &[ServicePort],
    new: &[ServicePort],
    node_ips: &[Ipv4Addr],
) -> BTreeSet<StaleFlow> {
    let mut stale = BTreeSet::new();
    let udp = |ports: &[ServicePort]| -> Vec<ServicePort> {
        ports
            .iter()
            .filter(|p| p.protocol == Protocol::Udp)
            .cloned()
            .collect()
    };
    let (old, new) = (udp(old), udp(new));
    for before in &old {
        let after = new.iter().find(|p| p.id == before.id);
        let still: BTreeSet<(Ipv4Addr, u16)> = after
            .map(|p| p.endpoints.iter().map(|b| (b.ip, b.port)).collect())
            .unwrap_or_default();
        for endpoint in &before.endpoints {
            if still.contains(&(endpoint.ip, endpoint.port)) {
                continue;
            }
            for (address, port) in destinations(before, node_ips) {
                stale.insert(StaleFlow::ToGoneEndpoint {
                    address,
                    port,
                    endpoint: endpoint.ip,
                    endpoint_port: endpoint.port,
                });
            }
        }
    }
    for after in new.iter().filter(|p| !p.endpoints.is_empty()) {
        let had_endpoints = old
            .iter()
            .any(|p| p.id == after.id && !p.endpoints.is_empty());
        if had_endpoints {
            continue;
        }
        for (address, port) in destinations(after, node_ips) {
            stale.insert(StaleFlow::Untranslated { address, port });
        }
    }
    stale
}

/// Where clients send to reach `port`: its cluster and external addresses on its port,
/// each node address on its node port.
fn destinations(port: &ServicePort, node_ips: &[Ipv4Addr]) -> Vec<(Ipv4Addr, u16)> {
    let mut destinations: Vec<(Ipv4Addr, u16)> =
        addresses(port).map(|ip| (ip, port.port)).collect();
    if let Some(node_port) = port.node_port {
        destinations.extend(node_ips.iter().map(|ip| (*ip, node_port)));
    }
    destinations
}

/// The addresses a port answers on besides node ports.
fn addresses(port: &ServicePort) -> impl Iterator<Item = Ipv4Addr> + '_ {
    port.cluster_ip
        .into_iter()
        .chain(port.external_ips.iter().copied())
}

#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error("running conntrack (install the conntrack package: scripts/dev.sh up): {0}")]
    Spawn(std::io::Error),
    #[error("conntrack {args} failed: {stderr}")]
    Failed { args: String, stderr: String },
}

/// Deletes `flow` in the calling thread's network namespace (none matching is fine).
pub fn delete(flow: &StaleFlow) -> Result<(), ConntrackError> {
    let args = flow.args();
    let output = Command::new("conntrack")
        .args(&args)
        .output()
        .map_err(ConntrackError::Spawn)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    // conntrack exits 1 when nothing matched, saying "0 flow entries have been deleted".
    if output.status.success() || stderr.contains("flow entries have been deleted") {
        return Ok(());
    }
    Err(ConntrackError::Failed {
        args: args.join(" "),
        stderr: stderr.trim().to_string(),
    })
}

#[cfg(test)]
#[path = "conntrack_tests.rs"]
mod tests;
