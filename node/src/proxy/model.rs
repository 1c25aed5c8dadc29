//! What the proxy programs, pure: a Service and its EndpointSlices become one
//! [`ServicePort`] per port — the addresses it answers on (cluster IP, node port,
//! load-balancer and external IPs), its policies, and the ready endpoints behind it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Service, ServicePort as ApiServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The protocols the proxy forwards (SCTP is not served).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    fn parse(text: Option<&str>) -> Option<Self> {
        match text.unwrap_or("TCP") {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            _ => None,
        }
    }

    /// As nftables writes it.
    pub fn nft(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// One endpoint: a ready pod's address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Backend {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// On this node (for the `Local` traffic policies).
    pub local: bool,
}

/// One port of one Service, as the proxy forwards it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// `namespace/name/protocol/port-name` (the port number when unnamed): unique, and what
    /// the rules are named after, so `nft list ruleset` names the Service.
    pub id: String,
    pub protocol: Protocol,
    pub cluster_ip: Option<Ipv4Addr>,
    pub port: u16,
    pub node_port: Option<u16>,
    /// Load-balancer ingress addresses and `spec.externalIPs`.
    pub external_ips: Vec<Ipv4Addr>,
    /// `sessionAffinity: ClientIP`: how long a client sticks to its endpoint.
    pub affinity_seconds: Option<u32>,
    /// `externalTrafficPolicy: Local`: node ports and external IPs use this node's endpoints.
    pub external_local: bool,
    /// `internalTrafficPolicy: Local`: the cluster IP uses this node's endpoints.
    pub internal_local: bool,
    /// Ready endpoints, sorted.
    pub endpoints: Vec<Backend>,
}

/// The ports `service` forwards, with the ready endpoints its `slices` list (`node`: this
/// node's name). ExternalName and headless Services forward nothing.
pub fn service_ports(service: &Service, slices: &[&EndpointSlice], node: &str) -> Vec<ServicePort> {
    let Some(spec) = service.spec.as_ref() else {
        return Vec::new();
    };
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    let cluster_ip = spec
        .cluster_ip
        .as_deref()
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
    if kind == "ExternalName" || cluster_ip.is_none() {
        return Vec::new();
    }
    let namespace = service.metadata.namespace.as_deref().unwrap_or("default");
    let name = service.metadata.name.as_deref().unwrap_or_default();
    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    let mut external_ips: Vec<Ipv4Addr> = ingress
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .chain(
            spec.external_ips
                .iter()
                .flatten()
                .filter_map(|ip| ip.parse().ok()),
        )
        .collect();
    external_ips.sort();
    external_ips.dedup();
    let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|s| u32::try_from(s).ok())
            .unwrap_or(10_800)
    });
    spec.ports
        .iter()
        .flatten()
        .filter_map(|port| {
            let protocol = Protocol::parse(port.protocol.as_deref())?;
            let label = match port.name.as_deref().filter(|n| !n.is_empty()) {
                Some(name) => name.to_string(),
                None => port.port.to_string(),
            };
            Some(ServicePort {
                id: format!("{namespace}/{name}/{}/{label}", protocol.nft()),
                protocol,
                cluster_ip,
                port: u16::try_from(port.port).ok()?,
                node_port: port.node_port.and_then(|p| u16::try_from(p).ok()),
                external_ips: external_ips.clone(),
                affinity_seconds,
                external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
                internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
                endpoints: ready_endpoints(port, protocol, slices, node),
            })
        })
        .collect()
}

/// The ready endpoints the slices list for `port` (matched by port name and protocol).
fn ready_endpoints(
    port: &ApiServicePort,
    protocol: Protocol,
    slices: &[&EndpointSlice],
    node: &str,
) -> Vec<Backend> {
    let wanted = port.name.as_deref().unwrap_or("");
    // By address and port: one listed twice (two slices, say, while it moves) is one
    // endpoint, local if either says so.
    let mut backends: BTreeMap<(Ipv4Addr, u16), bool> = BTreeMap::new();
    for slice in slices.iter().filter(|s| s.address_type == "IPv4") {
        let matching = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == wanted
                && Protocol::parse(p.protocol.as_deref()) == Some(protocol)
        });
        let Some(number) = matching
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let ready = endpoint.conditions.as_ref().and_then(|c| c.ready);
            // A missing condition means ready (as the API documents).
            if ready == Some(false) {
                continue;
            }
            let local = endpoint.node_name.as_deref() == Some(node);
            for address in endpoint.addresses.iter().filter_map(|a| a.parse().ok()) {
                *backends.entry((address, number)).or_default() |= local;
            }
        }
    }
    backends
        .into_iter()
        .map(|((ip, port), local)| Backend { ip, port, local })
        .collect()
}

/// A Service port answered on each node by the node itself: the cluster DNS (the node's
/// DNS server, as NodeLocal DNSCache) and the API (the node's relay to the masters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTarget {
    /// The Service's cluster IP and port.
    pub service_ip: Ipv4Addr,
    pub port: u16,
    /// Where this node answers it.
    pub target_ip: Ipv4Addr,
    pub target_port: u16,
}

/// Points each local target's Service port (every protocol) at this node.
pub fn answer_locally(ports: &mut [ServicePort], targets: &[LocalTarget]) {
    for port in ports.iter_mut() {
        let local = targets
            .iter()
            .find(|t| port.cluster_ip == Some(t.service_ip) && port.port == t.port);
        if let Some(target) = local {
            port.endpoints = vec![Backend {
                ip: target.target_ip,
                port: target.target_port,
                local: true,
            }];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(spec: serde_json::Value, status: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": { "name": "kubia-http", "namespace": "default" },
            "spec": spec, "status": status
        }))
        .unwrap()
    }

    fn slice(endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": { "name": "kubia-http-1", "namespace": "default" },
            "addressType": "IPv4",
            "ports": [{ "name": "http", "port": 8080, "protocol": "TCP" }],
            "endpoints": endpoints
        }))
        .unwrap()
    }

    #[test]
    fn a_load_balancer_forwards_its_addresses_to_the_ready_endpoints() {
        let svc = service(
            json!({ "type": "LoadBalancer", "clusterIP": "10.96.1.1",
                    "sessionAffinity": "ClientIP",
                    "sessionAffinityConfig": { "clientIP": { "timeoutSeconds": 60 } },
                    "ports": [{ "name": "http", "port": 8080, "nodePort": 30080, "protocol": "TCP" },
                              { "name": "sctp", "port": 9, "protocol": "SCTP" }] }),
            json!({ "loadBalancer": { "ingress": [{ "ip": "10.112.0.1" }] } }),
        );
        let slices = [slice(json!([
            { "addresses": ["10.244.1.2"], "conditions": { "ready": true }, "nodeName": "n1" },
            { "addresses": ["10.244.2.2"], "conditions": { "ready": false }, "nodeName": "n2" },
            { "addresses": ["10.244.2.3"], "nodeName": "n2" }
        ]))];
        let ports = service_ports(&svc, &slices.iter().collect::<Vec<_>>(), "n1");
        assert_eq!(ports.len(), 1, "SCTP is not forwarded");
        let port = &ports[0];
        assert_eq!(port.id, "default/kubia-http/tcp/http");
        assert_eq!(port.cluster_ip, Some(Ipv4Addr::new(10, 96, 1, 1)));
        assert_eq!((port.port, port.node_port), (8080, Some(30080)));
        assert_eq!(port.external_ips, [Ipv4Addr::new(10, 112, 0, 1)]);
        assert_eq!(port.affinity_seconds, Some(60));
        let endpoints: Vec<_> = port
            .endpoints
            .iter()
            .map(|b| (b.ip.to_string(), b.port, b.local))
            .collect();
        assert_eq!(
            endpoints,
            [
                ("10.244.1.2".into(), 8080, true),
                ("10.244.2.3".into(), 8080, false)
            ]
        );
    }

    #[test]
    fn an_endpoint_two_slices_list_is_one_backend() {
        let svc = service(
            json!({ "clusterIP": "10.96.1.1", "ports": [{ "name": "http", "port": 80 }] }),
            json!({}),
        );
        let slices = [
            slice(json!([{ "addresses": ["10.244.1.2"], "nodeName": "n2" }])),
            slice(json!([{ "addresses": ["10.244.1.2"], "nodeName": "n1" }])),
        ];
        let ports = service_ports(&svc, &slices.iter().collect::<Vec<_>>(), "n1");
        assert_eq!(
            ports[0].endpoints,
            [Backend {
                ip: Ipv4Addr::new(10, 244, 1, 2),
                port: 8080,
                local: true
            }]
        );
    }

    #[test]
    fn headless_and_external_name_services_forward_nothing() {
        for spec in [
            json!({ "clusterIP": "None", "ports": [{ "port": 80 }] }),
            json!({ "type": "ExternalName", "externalName": "db.example.com" }),
        ] {
            assert!(service_ports(&service(spec, json!({})), &[], "n1").is_empty());
        }
    }
}
