//! The cluster's DNS names, pure: Services and their EndpointSlices in ([`ClusterNames`]),
//! the answer to one question out ([`ClusterNames::answer`]). The names are the Kubernetes
//! DNS specification's, as CoreDNS' `kubernetes` plugin serves them:
//!
//! ```text
//!  <svc>.<ns>.svc.<domain>                 A      the cluster IP; a headless Service's ready
//!                                                 endpoints; CNAME for an ExternalName
//!  <hostname>.<svc>.<ns>.svc.<domain>      A      a headless Service's endpoint that has a
//!                                                 hostname (StatefulSet pods)
//!  _<port>._<proto>.<svc>.<ns>.svc.<domain> SRV   each named port: the Service's name, or
//!                                                 each ready endpoint of a headless one
//!  <a-b-c-d>.<ns>.pod.<domain>             A      a.b.c.d ("pods insecure", kubeadm's default)
//!  <d>.<c>.<b>.<a>.in-addr.arpa            PTR    the name of the Service whose cluster IP
//!                                                 a.b.c.d is, or of the headless Service's
//!                                                 endpoint that has it
//! ```
//!
//! A reverse question about any other address is REFUSED, as names outside the domain:
//! the rest of in-addr.arpa is not this server's to answer.
//!
//! Other names in the domain are NXDOMAIN (names that exist but have no record of the type
//! asked: no error and no answer); names outside it are REFUSED (this resolver forwards
//! nowhere). Negative answers carry the zone's SOA, whose minimum is how long they may be
//! cached.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use hickory_proto::rr::rdata::{A, CNAME, PTR, SOA, SRV};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// How long answers may be cached, seconds (CoreDNS' default for cluster names).
pub const TTL: u32 = 5;

/// How many ExternalName Services in a row are followed inside the cluster domain.
const MAX_CNAME_CHAIN: usize = 8;

/// What a question gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The records (`additionals`: addresses of SRV targets).
    Records {
        answers: Vec<Record>,
        additionals: Vec<Record>,
    },
    /// The name exists, with no record of the type asked.
    NoData,
    /// No such name in the cluster's domain.
    NxDomain,
    /// Not a name this server answers for.
    Refused,
}

/// One port of a Service, as SRV records name it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NamedPort {
    name: String,
    /// `tcp`, `udp` or `sctp`.
    protocol: String,
    /// The Service's port (cluster IP).
    port: u16,
}

/// One ready endpoint of a headless Service.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    ip: Ipv4Addr,
    hostname: Option<String>,
    /// Port name → the endpoint's port.
    ports: BTreeMap<String, u16>,
}

impl Endpoint {
    /// Its name under the Service: its hostname, else its address with dashes (as the
    /// SRV records name it, so that the name looked up again answers).
    fn label(&self) -> String {
        self.hostname
            .clone()
            .unwrap_or_else(|| self.ip.to_string().replace('.', "-"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    ClusterIp(Ipv4Addr),
    Headless(Vec<Endpoint>),
    ExternalName(Name),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ServiceNames {
    target: Target,
    ports: Vec<NamedPort>,
}

/// Every name of the cluster's domain, as of one view of Services and EndpointSlices.
#[derive(Debug, Clone)]
pub struct ClusterNames {
    /// `cluster.local.`
    domain: Name,
    /// (namespace, name) → its names.
    services: BTreeMap<(String, String), ServiceNames>,
    /// Address → the names that have it (PTR).
    reverse: BTreeMap<Ipv4Addr, Vec<Name>>,
    soa: Record,
}

impl ClusterNames {
    /// The names of `services`, each with the slices labelled with its name; `serial`
    /// changes with every new view (the SOA's serial).
    pub fn new<'a>(
        domain: &Name,
        services: impl IntoIterator<Item = (&'a Service, Vec<&'a EndpointSlice>)>,
        serial: u32,
    ) -> Self {
        let mut domain = domain.to_lowercase();
        domain.set_fqdn(true);
        let services = services
            .into_iter()
            .filter_map(|(service, slices)| {
                let namespace = service.metadata.namespace.clone().unwrap_or_default();
                let name = service.metadata.name.clone()?;
                Some(((namespace, name), service_names(service, &slices)?))
            })
            .collect();
        let soa = soa_record(&domain, serial);
        let reverse = reverse_names(&domain, &services);
        Self {
            domain,
            services,
            reverse,
            soa,
        }
    }

    /// The zone's SOA record (for negative answers' authority section).
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    pub fn domain(&self) -> &Name {
        &self.domain
    }

    /// The answer to `name` (as asked), type `kind`.
    pub fn answer(&self, name: &LowerName, kind: RecordType) -> Answer {
        let asked: Name = name.into();
        if let Some(address) = reverse_address(&asked) {
            return match self.reverse.get(&address) {
                Some(names) => self.only(kind, RecordType::PTR, || {
                    names
                        .iter()
                        .map(|name| record(&asked, RData::PTR(PTR(name.clone()))))
                        .collect()
                }),
                None => Answer::Refused,
            };
        }
        self.answer_at(name, kind, 0)
    }

    /// [`ClusterNames::answer`], `depth` CNAMEs into a chain.
    fn answer_at(&self, name: &LowerName, kind: RecordType, depth: usize) -> Answer {
        let asked: Name = name.into();
        if !self.domain.zone_of(&asked) {
            return Answer::Refused;
        }
        let own_labels = asked.num_labels() as usize - self.domain.num_labels() as usize;
        let labels: Vec<String> = asked
            .iter()
            .take(own_labels)
            .map(|label| String::from_utf8_lossy(label).to_ascii_lowercase())
            .collect();
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        match labels.as_slice() {
            [] => self.only(kind, RecordType::SOA, || vec![self.soa.clone()]),
            ["svc"] | ["pod"] => Answer::NoData,
            [namespace, "svc"] => {
                if self.services.keys().any(|(ns, _)| ns == namespace) {
                    Answer::NoData
                } else {
                    Answer::NxDomain
                }
            }
            [service, namespace, "svc"] => self.service(&asked, namespace, service, kind, depth),
            [port, protocol, service, namespace, "svc"]
                if port.starts_with('_') && protocol.starts_with('_') =>
            {
                self.srv(&asked, namespace, service, &port[1..], &protocol[1..], kind)
            }
            [hostname, service, namespace, "svc"] => {
                self.endpoint(&asked, namespace, service, hostname, kind)
            }
            [address, _namespace, "pod"] => match pod_address(address) {
                Some(ip) => self.only(kind, RecordType::A, || vec![a(&asked, ip)]),
                None => Answer::NxDomain,
            },
            _ => Answer::NxDomain,
        }
    }

    /// `records()` when `kind` asks for `wanted` (or ANY), else no data.
    fn only(
        &self,
        kind: RecordType,
        wanted: RecordType,
        records: impl FnOnce() -> Vec<Record>,
    ) -> Answer {
        if kind == wanted || kind == RecordType::ANY {
            Answer::Records {
                answers: records(),
                additionals: Vec::new(),
            }
        } else {
            Answer::NoData
        }
    }

    fn lookup(&self, namespace: &str, service: &str) -> Option<&ServiceNames> {
        self.services
            .get(&(namespace.to_owned(), service.to_owned()))
    }

    fn service(
        &self,
        asked: &Name,
        namespace: &str,
        service: &str,
        kind: RecordType,
        depth: usize,
    ) -> Answer {
        let Some(names) = self.lookup(namespace, service) else {
            return Answer::NxDomain;
        };
        match &names.target {
            Target::ClusterIp(ip) => self.only(kind, RecordType::A, || vec![a(asked, *ip)]),
            // A headless Service with no ready endpoint still exists.
            // With no ready endpoint the name exists, without addresses.
            Target::Headless(endpoints) if endpoints.is_empty() => Answer::NoData,
            Target::Headless(endpoints) => self.only(kind, RecordType::A, || {
                endpoints.iter().map(|e| a(asked, e.ip)).collect()
            }),
            // A CNAME answers every type. One into the cluster's own names comes with their
            // records: resolvers do not chase a CNAME that arrives without them.
            Target::ExternalName(target) => {
                let mut answers = vec![record(asked, RData::CNAME(CNAME(target.clone())))];
                if depth < MAX_CNAME_CHAIN && self.domain.zone_of(target) {
                    let chased = self.answer_at(&LowerName::from(target), kind, depth + 1);
                    if let Answer::Records { answers: more, .. } = chased {
                        answers.extend(more);
                    }
                }
                Answer::Records {
                    answers,
                    additionals: Vec::new(),
                }
            }
        }
    }

    fn endpoint(
        &self,
        asked: &Name,
        namespace: &str,
        service: &str,
        hostname: &str,
        kind: RecordType,
    ) -> Answer {
        let Some(ServiceNames {
            target: Target::Headless(endpoints),
            ..
        }) = self.lookup(namespace, service)
        else {
            return Answer::NxDomain;
        };
        let named: Vec<&Endpoint> = endpoints.iter().filter(|e| e.label() == hostname).collect();
        if named.is_empty() {
            return Answer::NxDomain;
        }
        self.only(kind, RecordType::A, || {
            named.iter().map(|e| a(asked, e.ip)).collect()
        })
    }

    fn srv(
        &self,
        asked: &Name,
        namespace: &str,
        service: &str,
        port_name: &str,
        protocol: &str,
        kind: RecordType,
    ) -> Answer {
        let Some(names) = self.lookup(namespace, service) else {
            return Answer::NxDomain;
        };
        let Some(port) = names
            .ports
            .iter()
            .find(|p| p.name == port_name && p.protocol == protocol)
        else {
            return Answer::NxDomain;
        };
        if kind != RecordType::SRV && kind != RecordType::ANY {
            return Answer::NoData;
        }
        // The Service's own name: `_port._proto.` taken off the name asked.
        let service_name = asked.trim_to(asked.num_labels() as usize - 2);
        match &names.target {
            Target::ClusterIp(ip) => Answer::Records {
                answers: vec![srv(asked, port.port, &service_name)],
                additionals: vec![a(&service_name, *ip)],
            },
            Target::Headless(endpoints) => {
                let mut answers = Vec::new();
                let mut additionals = Vec::new();
                for endpoint in endpoints {
                    let Some(target_port) = endpoint.ports.get(&port.name) else {
                        continue;
                    };
                    let Ok(target) = service_name.prepend_label(endpoint.label().as_str()) else {
                        continue;
                    };
                    answers.push(srv(asked, *target_port, &target));
                    additionals.push(a(&target, endpoint.ip));
                }
                if answers.is_empty() {
                    return Answer::NoData;
                }
                Answer::Records {
                    answers,
                    additionals,
                }
            }
            Target::ExternalName(_) => Answer::NoData,
        }
    }
}

/// Each cluster IP's Service name, and each headless endpoint's name under its Service.
fn reverse_names(
    domain: &Name,
    services: &BTreeMap<(String, String), ServiceNames>,
) -> BTreeMap<Ipv4Addr, Vec<Name>> {
    let mut reverse: BTreeMap<Ipv4Addr, Vec<Name>> = BTreeMap::new();
    for ((namespace, service), names) in services {
        let Ok(service_name) = Name::from_ascii(format!("{service}.{namespace}.svc"))
            .and_then(|name| name.append_domain(domain))
        else {
            continue;
        };
        match &names.target {
            Target::ClusterIp(ip) => reverse.entry(*ip).or_default().push(service_name),
            Target::Headless(endpoints) => {
                for endpoint in endpoints {
                    if let Ok(name) = service_name.prepend_label(endpoint.label().as_str()) {
                        reverse.entry(endpoint.ip).or_default().push(name);
                    }
                }
            }
            Target::ExternalName(_) => {}
        }
    }
    reverse
}

/// The address a reverse name (`d.c.b.a.in-addr.arpa.`) asks about.
fn reverse_address(name: &Name) -> Option<Ipv4Addr> {
    let labels: Vec<String> = name
        .iter()
        .map(|label| String::from_utf8_lossy(label).to_ascii_lowercase())
        .collect();
    let [d, c, b, a, in_addr, arpa] = labels.as_slice() else {
        return None;
    };
    if in_addr != "in-addr" || arpa != "arpa" {
        return None;
    }
    format!("{a}.{b}.{c}.{d}").parse().ok()
}

/// The names of one Service, or none (a Service without a cluster IP yet, say).
fn service_names(service: &Service, slices: &[&EndpointSlice]) -> Option<ServiceNames> {
    let spec = service.spec.as_ref()?;
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            Some(NamedPort {
                name: p.name.clone().filter(|n| !n.is_empty())?,
                protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                port: u16::try_from(p.port).ok()?,
            })
        })
        .collect();
    let target = if spec.type_.as_deref() == Some("ExternalName") {
        let mut name = Name::from_ascii(spec.external_name.as_deref()?).ok()?;
        name.set_fqdn(true);
        Target::ExternalName(name)
    } else {
        match spec.cluster_ip.as_deref() {
            Some("None") => Target::Headless(ready_endpoints(slices)),
            Some(ip) => Target::ClusterIp(ip.parse().ok()?),
            None => return None,
        }
    };
    Some(ServiceNames { target, ports })
}

/// Every ready endpoint the slices list, once each, in address order.
fn ready_endpoints(slices: &[&EndpointSlice]) -> Vec<Endpoint> {
    let mut by_ip: BTreeMap<Ipv4Addr, Endpoint> = BTreeMap::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let ports: BTreeMap<String, u16> = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| Some((p.name.clone()?, u16::try_from(p.port?).ok()?)))
            .collect();
        for endpoint in &slice.endpoints {
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            if !ready {
                continue;
            }
            for address in &endpoint.addresses {
                let Ok(ip) = address.parse::<Ipv4Addr>() else {
                    continue;
                };
                let entry = by_ip.entry(ip).or_insert_with(|| Endpoint {
                    ip,
                    hostname: endpoint.hostname.clone(),
                    ports: BTreeMap::new(),
                });
                entry.ports.extend(ports.clone());
            }
        }
    }
    by_ip.into_values().collect()
}

/// `a-b-c-d` as an address.
fn pod_address(label: &str) -> Option<Ipv4Addr> {
    let dotted = label.replace('-', ".");
    (dotted.split('.').count() == 4)
        .then(|| dotted.parse().ok())
        .flatten()
}

fn record(name: &Name, data: RData) -> Record {
    Record::from_rdata(name.clone(), TTL, data)
}

fn a(name: &Name, ip: Ipv4Addr) -> Record {
    record(name, RData::A(A(ip)))
}

fn srv(name: &Name, port: u16, target: &Name) -> Record {
    // Equal priority and weight, as CoreDNS gives: clients pick any.
    record(name, RData::SRV(SRV::new(0, 100, port, target.clone())))
}

fn soa_record(domain: &Name, serial: u32) -> Record {
    let name = |label: &str| {
        Name::from_ascii(label)
            .ok()
            .and_then(|n| n.append_domain(domain).ok())
            .unwrap_or_else(|| domain.clone())
    };
    let soa = SOA::new(
        name("ns.dns"),
        name("hostmaster"),
        serial,
        7200,
        1800,
        86400,
        TTL,
    );
    record(domain, RData::SOA(soa))
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
