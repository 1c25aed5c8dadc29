//! The node's nftables table as a value, pure: [`plan_service`] turns one Service's
//! [`ServicePort`]s into its [`ServiceRules`] — its chains, its client-affinity sets and its
//! elements of the table's maps — and a [`Ruleset`] holds every Service's, changed by
//! [`Edits`] one Service at a time; [`base`] is the fixed rest. [`super::script`] writes a ruleset out,
//! whole or as the difference from the last one. The layout follows kube-proxy's nftables
//! mode, flattened where that makes the kernel's work smaller:
//!
//! ```text
//!  nat prerouting (this node's bridge, and anything not from a node bridge) ┐
//!  nat output (the machine's own connections) ───────────────────────────────┴► services:
//!     to a cluster IP, not from a pod: mark for masquerade
//!     daddr . proto . dport  vmap @service-ips        cluster IP ─► service-ID
//!                                                     LB / external IP ─► external-ID
//!     daddr @nodeport-ips: proto . dport vmap @service-nodeports ─► external-ID
//!  service-ID:  sticky clients (affinity sets) ─► dnat to IP:PORT;
//!               one rule per endpoint: numgen random mod K == 0 ─► dnat to IP:PORT
//!  external-ID: masquerade, then service-ID (Cluster policy), or this node's endpoints only
//!               (Local policy; the machine's own connections still go anywhere)
//!  cluster-ID:  every endpoint, when service-ID holds only this node's (internal Local)
//!  filter: a new connection still aimed at a service address after DNAT is rejected (no
//!          endpoint, unknown port, unallocated address); 127.0.0.0/8 reached from
//!          elsewhere is dropped (CVE-2020-8558)
//!  nat postrouting: marked connections, and a pod reaching itself (@hairpin), masqueraded
//! ```
//!
//! Two choices differ from kube-proxy, both measured (BENCHMARKS.md, proxy rule sync):
//! endpoints are picked by a cascade of `numgen random mod K` rules (1/3, then 1/2, then the
//! rest: uniform, as iptables' `statistic` cascade) instead of an anonymous verdict map per
//! Service — the kernel walks the whole transaction for every anonymous set, which made a
//! full sync grow as N² — and a pod reaching itself is found by one `@hairpin` set of
//! `ip . ip` pairs in postrouting instead of a chain per endpoint. A Service is then one
//! chain and a few map elements.
//!
//! Several nodes on one machine each have a table of their own; every packet meets all of
//! them, and the first that translates a connection wins. Pods are served by their own
//! node's table (prerouting is scoped to its bridge), so Local policies hold for them.

use std::collections::{BTreeMap, BTreeSet};
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

/// The table's sets and maps that [`plan`] fills (declared by [`base`]).
pub const CLUSTER_IPS: &str = "cluster-ips";
pub const NODEPORT_IPS: &str = "nodeport-ips";
pub const SERVICE_IPS: &str = "service-ips";
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
pub const HAIRPIN: &str = "hairpin";

/// A set or map element: the set's name and the element (a map's is `key : verdict`).
pub type Element = (&'static str, String);

/// What one Service adds to the table: its chains (named after it, so no two Services
/// share one), its client-affinity sets, and its elements of the fixed sets and maps
/// (which two Services may share: an endpoint's @hairpin pair, say).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceRules {
    /// Chains by name, each with its rules in order.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Client-affinity sets by name, each with its declaration.
    pub sets: BTreeMap<String, String>,
    pub elements: BTreeSet<Element>,
}

/// The part of a node's table that follows the Services: what one sync writes and what
/// the next compares against, kept Service by Service so that a change to one is planned
/// and written without looking at the others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Each Service's part, by `namespace/name`.
    services: BTreeMap<String, ServiceRules>,
    /// Every element wanted, with how many want it (the Services, and the node for its
    /// node-port addresses): an element goes when the last one stops wanting it.
    users: BTreeMap<Element, usize>,
    /// Chains the last edits emptied, to be deleted by the next: kernels before 6.2 do not
    /// yet see a chain as unreferenced in the transaction that deletes the map element
    /// pointing at it (kube-proxy defers the same way).
    stale_chains: BTreeSet<String>,
}

/// Changes to a ruleset: each named Service's new part, or `None` for one that is gone.
pub type Edits = BTreeMap<String, Option<ServiceRules>>;

/// How the table's elements change: those to delete and those to add.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ElementChanges {
    pub gone: Vec<Element>,
    pub added: Vec<Element>,
}

impl Ruleset {
    /// The node's table without Services.
    pub fn new(config: &ProxyConfig) -> Self {
        let mut rules = Self::default();
        for ip in &config.node_ips {
            *rules
                .users
                .entry((NODEPORT_IPS, ip.to_string()))
                .or_default() += 1;
        }
        rules
    }

    pub fn services(&self) -> &BTreeMap<String, ServiceRules> {
        &self.services
    }

    /// The rules in the Services' chains.
    pub fn rule_count(&self) -> usize {
        self.services
            .values()
            .flat_map(|service| service.chains.values())
            .map(Vec::len)
            .sum()
    }

    pub fn stale_chains(&self) -> &BTreeSet<String> {
        &self.stale_chains
    }

    /// The elements in the table. Where several are wanted under one map key (two
    /// Services claiming one address, protocol and port, say one's external IP being the
    /// other's cluster IP), one wins — a cluster IP's, else the first by name — since the
    /// kernel takes one: the others wait for it to go.
    pub fn elements(&self) -> impl Iterator<Item = &Element> + '_ {
        let mut winners: Vec<&Element> = Vec::new();
        for element in self.users.keys() {
            match winners.last_mut() {
                Some(last) if last.0 == element.0 && key(&last.1) == key(&element.1) => {
                    if preference(element) < preference(last) {
                        *last = element;
                    }
                }
                _ => winners.push(element),
            }
        }
        winners.into_iter()
    }

    /// How many want `element` (0: it is not wanted).
    pub fn users_of(&self, element: &Element) -> usize {
        self.users.get(element).copied().unwrap_or(0)
    }

    /// How the elements in the table change with `edits`: only the keys the edits touch
    /// are looked at.
    pub fn element_changes(&self, edits: &Edits) -> ElementChanges {
        let none = ServiceRules::default();
        let mut delta: BTreeMap<&Element, isize> = BTreeMap::new();
        for (service, rules) in edits {
            let old = self.services.get(service).unwrap_or(&none);
            let new = rules.as_ref().unwrap_or(&none);
            for element in old.elements.difference(&new.elements) {
                *delta.entry(element).or_default() -= 1;
            }
            for element in new.elements.difference(&old.elements) {
                *delta.entry(element).or_default() += 1;
            }
        }
        let touched: BTreeSet<(&'static str, &str)> = delta
            .iter()
            .filter(|(_, change)| **change != 0)
            .map(|((set, element), _)| (*set, key(element)))
            .collect();
        let mut changes = ElementChanges::default();
        for (set, wanted_key) in touched {
            // Every element under this key, with its users before and after.
            let mut counts: BTreeMap<&Element, (usize, isize)> = BTreeMap::new();
            let from = (set, wanted_key.to_string());
            for (element, users) in self.users.range(from..) {
                if element.0 != set || key(&element.1) != wanted_key {
                    break;
                }
                counts.insert(element, (*users, *users as isize));
            }
            for (element, change) in &delta {
                if element.0 == set && key(&element.1) == wanted_key {
                    counts.entry(element).or_insert((0, 0)).1 += change;
                }
            }
            let winner = |wanted: &dyn Fn(&(usize, isize)) -> bool| {
                counts
                    .iter()
                    .filter(|(_, users)| wanted(users))
                    .map(|(element, _)| *element)
                    .min_by_key(|element| preference(element))
            };
            let before = winner(&|(users, _)| *users > 0);
            let after = winner(&|(_, users)| *users > 0);
            if before != after {
                changes.gone.extend(before.cloned());
                changes.added.extend(after.cloned());
            }
        }
        changes
    }

    /// Makes `edits`: the chains they leave behind become stale, the stale ones before are
    /// gone (the script that made these edits deleted them).
    pub fn apply(&mut self, edits: Edits) {
        self.stale_chains.clear();
        for (service, rules) in edits {
            let rules = rules.filter(|rules| *rules != ServiceRules::default());
            if let Some(old) = self.services.remove(&service) {
                for chain in old.chains.keys() {
                    if !rules
                        .as_ref()
                        .is_some_and(|new| new.chains.contains_key(chain))
                    {
                        self.stale_chains.insert(chain.clone());
                    }
                }
                for element in old.elements {
                    if let Some(count) = self.users.get_mut(&element) {
                        *count -= 1;
                        if *count == 0 {
                            self.users.remove(&element);
                        }
                    }
                }
            }
            if let Some(rules) = rules {
                for element in &rules.elements {
                    *self.users.entry(element.clone()).or_default() += 1;
                }
                self.services.insert(service, rules);
            }
        }
    }
}

/// A set or map element's key (what `delete element` names): a map's element is
/// `key : verdict`.
pub fn key(element: &str) -> &str {
    element.split(" : ").next().unwrap_or(element)
}

/// Which of the elements under one key wins: a cluster IP's chain first, then by name.
fn preference(element: &Element) -> (bool, &str) {
    (!element.1.contains(" : goto service-"), element.1.as_str())
}

/// The ruleset forwarding `ports` (of any number of Services) on the node `config`
/// describes.
pub fn plan(config: &ProxyConfig, ports: &[ServicePort]) -> Ruleset {
    let mut by_service: BTreeMap<&str, Vec<&ServicePort>> = BTreeMap::new();
    for port in ports {
        by_service
            .entry(service_key(&port.id))
            .or_default()
            .push(port);
    }
    let mut rules = Ruleset::new(config);
    rules.apply(
        by_service
            .into_iter()
            .map(|(service, ports)| (service.to_string(), Some(plan_service(ports))))
            .collect(),
    );
    rules
}

/// `namespace/name` of a port id (`namespace/name/protocol/port`).
pub fn service_key(port_id: &str) -> &str {
    let mut slashes = port_id.match_indices('/').map(|(at, _)| at);
    let second = slashes.nth(1).unwrap_or(port_id.len());
    &port_id[..second]
}

/// What the `ports` of one Service add to the table.
pub fn plan_service<'a>(ports: impl IntoIterator<Item = &'a ServicePort>) -> ServiceRules {
    let mut rules = ServiceRules::default();
    for port in ports {
        rules.add_port(port);
    }
    rules
}

impl ServiceRules {
    fn element(&mut self, set: &'static str, element: String) {
        self.elements.insert((set, element));
    }

    fn add_port(&mut self, port: &ServicePort) {
        let (id, proto) = (&port.id, port.protocol.nft());
        if let Some(ip) = port.cluster_ip {
            self.element(CLUSTER_IPS, ip.to_string());
        }
        if port.endpoints.is_empty() {
            // Only the address, so that connections to it are refused.
            return;
        }
        for backend in &port.endpoints {
            self.element(HAIRPIN, format!("{0} . {0}", backend.ip));
            if let Some(seconds) = port.affinity_seconds {
                self.sets.insert(
                    affinity_set(port, backend),
                    format!("type ipv4_addr; flags dynamic,timeout; timeout {seconds}s;"),
                );
            }
        }
        let all: Vec<&Backend> = port.endpoints.iter().collect();
        let local: Vec<&Backend> = port.endpoints.iter().filter(|b| b.local).collect();
        let service_chain = format!("service-{id}");
        // The cluster IP: every endpoint, or this node's for internalTrafficPolicy Local.
        let internal = if port.internal_local { &local } else { &all };
        let mut balances_all = None;
        if let (Some(ip), false) = (port.cluster_ip, internal.is_empty()) {
            self.chains
                .insert(service_chain.clone(), balance(port, internal));
            self.element(
                SERVICE_IPS,
                format!("{ip} . {proto} . {} : goto {service_chain}", port.port),
            );
            if !port.internal_local {
                balances_all = Some(service_chain);
            }
        }
        if port.node_port.is_none() && port.external_ips.is_empty() {
            return;
        }
        // Node ports and external addresses; external traffic under the Cluster policy
        // goes to every endpoint.
        let everyone = balances_all.unwrap_or_else(|| {
            let chain = format!("cluster-{id}");
            self.chains.insert(chain.clone(), balance(port, &all));
            chain
        });
        let external_chain = format!("external-{id}");
        let external = if port.external_local {
            // The machine's own connections are not external: they may go anywhere
            // (masqueraded so the reply comes back); everything else stays on this node,
            // and with no local endpoint goes nowhere rather than off the node.
            let mut rules = vec![
                "fib saddr type local jump mark-for-masquerade".to_string(),
                format!("fib saddr type local goto {everyone}"),
            ];
            rules.extend(balance(port, &local));
            rules.push("drop".into());
            rules
        } else {
            vec![
                "jump mark-for-masquerade".into(),
                format!("goto {everyone}"),
            ]
        };
        self.chains.insert(external_chain.clone(), external);
        for ip in &port.external_ips {
            self.element(
                SERVICE_IPS,
                format!("{ip} . {proto} . {} : goto {external_chain}", port.port),
            );
        }
        if let Some(node_port) = port.node_port {
            self.element(
                SERVICE_NODEPORTS,
                format!("{proto} . {node_port} : goto {external_chain}"),
            );
        }
    }
}

fn affinity_set(port: &ServicePort, backend: &Backend) -> String {
    format!("affinity-{}__{}/{}", port.id, backend.ip, backend.port)
}

/// The rules that send a connection to one of `backends`: sticky clients to theirs, then
/// a cascade that picks each with equal chance (the first with 1/K, the next with 1/(K-1)
/// of what is left, ..., the last takes the rest).
fn balance(port: &ServicePort, backends: &[&Backend]) -> Vec<String> {
    let proto = port.protocol.nft();
    let sticky = port.affinity_seconds.is_some();
    let mut rules = Vec::new();
    if sticky {
        for backend in backends {
            let set = affinity_set(port, backend);
            rules.push(format!(
                "ip saddr @{set} meta l4proto {proto} update @{set} {{ ip saddr }} dnat to {}:{}",
                backend.ip, backend.port
            ));
        }
    }
    for (index, backend) in backends.iter().enumerate() {
        let left = backends.len() - index;
        let pick = if left > 1 {
            format!(" numgen random mod {left} 0")
        } else {
            String::new()
        };
        let remember = if sticky {
            format!(" update @{} {{ ip saddr }}", affinity_set(port, backend))
        } else {
            String::new()
        };
        rules.push(format!(
            "meta l4proto {proto}{pick}{remember} dnat to {}:{}",
            backend.ip, backend.port
        ));
    }
    rules
}

/// The fixed part of the table: its hooks, the sets and maps [`plan`] fills, and the
/// guards. Written by a full sync only.
pub fn base(config: &ProxyConfig) -> String {
    let bridge = &config.bridge;
    let prefix = &config.bridge_prefix;
    let cluster_cidr = &config.cluster_cidr;
    let range_rejects: String = config
        .service_ranges
        .iter()
        .map(|range| format!("    ip daddr {range} reject\n"))
        .collect();
    format!(
        r#"  set {CLUSTER_IPS} {{ type ipv4_addr; }}
  set {NODEPORT_IPS} {{ type ipv4_addr; }}
  set {HAIRPIN} {{ type ipv4_addr . ipv4_addr; }}
  map {SERVICE_IPS} {{ type ipv4_addr . inet_proto . inet_service : verdict; }}
  map {SERVICE_NODEPORTS} {{ type inet_proto . inet_service : verdict; }}
  chain mark-for-masquerade {{ meta mark set meta mark | {MASQUERADE_MARK}; }}
  chain masquerading {{
    meta mark & {MASQUERADE_MARK} == 0 return
    meta mark set meta mark ^ {MASQUERADE_MARK}
    masquerade fully-random
  }}
  chain services {{
    ip daddr @{CLUSTER_IPS} ip saddr != {cluster_cidr} jump mark-for-masquerade
    ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}
    ip daddr @{NODEPORT_IPS} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}
  }}
  chain cluster-ips-check {{
    ip daddr @{CLUSTER_IPS} reject
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
  chain nat-postrouting {{
    type nat hook postrouting priority 100;
    jump masquerading
    ct status dnat ip saddr . ip daddr @{HAIRPIN} masquerade fully-random
  }}
"#
    )
}

#[cfg(test)]
#[path = "ruleset_tests.rs"]
pub(crate) mod tests;
