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

/// Flows to delete, all UDP.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum StaleFlow {
    /// Sent to a Service address and translated to an endpoint that is gone.
    ToGoneEndpoint {
        service_ip: Ipv4Addr,
        endpoint: Ipv4Addr,
    },
    /// Sent to a node port and translated to an endpoint that is gone.
    NodePortToGoneEndpoint { node_port: u16, endpoint: Ipv4Addr },
    /// Sent to a port that had no endpoint (so not translated) and has one now; `ip`
    /// `None` for a node port (any node address).
    Untranslated { ip: Option<Ipv4Addr>, port: u16 },
}

impl StaleFlow {
    /// The `conntrack` arguments that delete the flow.
    pub fn args(&self) -> Vec<String> {
        let matching = match self {
            Self::ToGoneEndpoint {
                service_ip,
                endpoint,
            } => format!("--orig-dst {service_ip} --dst-nat {endpoint}"),
            Self::NodePortToGoneEndpoint {
                node_port,
                endpoint,
            } => format!("--orig-port-dst {node_port} --dst-nat {endpoint}"),
            Self::Untranslated { ip: Some(ip), port } => {
                format!("--orig-dst {ip} --orig-port-dst {port}")
            }
            Self::Untranslated { ip: None, port } => format!("--orig-port-dst {port}"),
        };
        ["-D", "-p", "udp"]
            .into_iter()
            .chain(matching.split(' '))
            .map(String::from)
            .collect()
    }
}

/// The flows a Service's change from `old` to `new` (its ports, any protocol) leaves wrong.
pub fn stale_flows(old: &[ServicePort], new: &[ServicePort]) -> BTreeSet<StaleFlow> {
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
        let still: BTreeSet<Ipv4Addr> = after
            .map(|p| p.endpoints.iter().map(|b| b.ip).collect())
            .unwrap_or_default();
        for endpoint in before.endpoints.iter().map(|b| b.ip) {
            if still.contains(&endpoint) {
                continue;
            }
            for service_ip in addresses(before) {
                stale.insert(StaleFlow::ToGoneEndpoint {
                    service_ip,
                    endpoint,
                });
            }
            if let Some(node_port) = before.node_port {
                stale.insert(StaleFlow::NodePortToGoneEndpoint {
                    node_port,
                    endpoint,
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
        for ip in addresses(after) {
            stale.insert(StaleFlow::Untranslated {
                ip: Some(ip),
                port: after.port,
            });
        }
        if let Some(node_port) = after.node_port {
            stale.insert(StaleFlow::Untranslated {
                ip: None,
                port: node_port,
            });
        }
    }
    stale
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
