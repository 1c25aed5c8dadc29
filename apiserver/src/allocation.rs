//! What a Service takes from the cluster's pools, decided when it is written (as
//! kube-apiserver's allocators do): a cluster IP from `--service-cidr`, node ports from
//! `--service-node-port-range`, and for `type: LoadBalancer` an address from `--lb-pool` (as
//! MetalLB or k3s' ServiceLB give one). Pure: the registry reads what is taken, calls
//! [`assign`], and writes the Service with one reservation key per value it holds, all in one
//! transaction whose compares make two concurrent creates never hold the same value.
//!
//! ```text
//!  update: carry_forward(next, current)   allocated values the client left out come back;
//!                                         values the new type has no use for are dropped
//!  admit (defaults, validation)
//!  assign(service, taken, ranges)         asked-for values checked (in range, free),
//!                                         missing ones picked at random (dynamic band first)
//!  held(service) ─► reservations ─► /registry/serviceallocations/<pool>/<value>
//! ```

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use k8s_openapi::api::core::v1::{LoadBalancerIngress, Service, ServicePort};
use rudder_proto::objects::cidr::Ipv4Cidr;

use crate::validation::FieldError;

/// Kubernetes' default `--service-cluster-ip-range`.
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";
/// Kubernetes' default `--service-node-port-range`.
pub const DEFAULT_NODE_PORTS: &str = "30000-32767";
/// Load-balancer addresses: right after the default service range, private, and routed only
/// on this machine by the nodes (never announced anywhere).
pub const DEFAULT_LB_POOL: &str = "10.112.0.0/24";

/// Where the allocator keeps one key per value taken.
pub const RESERVATIONS_PREFIX: &str = "/registry/serviceallocations/";

/// The cluster's pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRanges {
    pub cluster_ips: Ipv4Cidr,
    pub node_ports: RangeInclusive<u16>,
    pub load_balancer_ips: Ipv4Cidr,
}

impl Default for ServiceRanges {
    fn default() -> Self {
        Self::parse(DEFAULT_SERVICE_CIDR, DEFAULT_NODE_PORTS, DEFAULT_LB_POOL)
            .expect("the default ranges are valid")
    }
}

impl ServiceRanges {
    /// The three flags, checked: each parses, the service range has room for the well-known
    /// addresses, and the load-balancer pool is apart from the service range.
    pub fn parse(service_cidr: &str, node_ports: &str, lb_pool: &str) -> Result<Self, String> {
        let cluster_ips =
            Ipv4Cidr::parse(service_cidr).map_err(|e| format!("--service-cidr: {e}"))?;
        if cluster_ips.prefix > 28 {
            return Err(format!(
                "--service-cidr: {cluster_ips} is too small; the cluster needs at least a /28 \
                 (the API's Service takes the first address, DNS the tenth)"
            ));
        }
        let node_ports = parse_port_range(node_ports)
            .map_err(|reason| format!("--service-node-port-range: {node_ports:?} {reason}"))?;
        let load_balancer_ips = Ipv4Cidr::parse(lb_pool).map_err(|e| format!("--lb-pool: {e}"))?;
        if load_balancer_ips.overlaps(cluster_ips) {
            return Err(format!(
                "--lb-pool {load_balancer_ips} overlaps --service-cidr {cluster_ips}; give \
                 load balancers a range of their own"
            ));
        }
        Ok(Self {
            cluster_ips,
            node_ports,
            load_balancer_ips,
        })
    }

    /// The `default/kubernetes` Service's address: the range's first.
    pub fn kubernetes_ip(&self) -> Ipv4Addr {
        self.cluster_ips.nth(1).expect("a /28 at least")
    }

    /// The cluster DNS (`kube-system/kube-dns`): the range's tenth address.
    pub fn dns_ip(&self) -> Ipv4Addr {
        self.cluster_ips.nth(10).expect("a /28 at least")
    }
}

fn parse_port_range(text: &str) -> Result<RangeInclusive<u16>, &'static str> {
    let (first, last) = text
        .split_once('-')
        .ok_or("is not a range like 30000-32767")?;
    let port = |p: &str| p.trim().parse::<u16>().ok().filter(|p| *p > 0);
    match (port(first), port(last)) {
        (Some(first), Some(last)) if first <= last => Ok(first..=last),
        (Some(_), Some(_)) => Err("ends before it starts"),
        _ => Err("needs two ports between 1 and 65535"),
    }
}

/// A pool of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pool {
    ClusterIp,
    NodePort,
    LoadBalancerIp,
}

impl Pool {
    const ALL: [Self; 3] = [Self::ClusterIp, Self::NodePort, Self::LoadBalancerIp];

    fn segment(self) -> &'static str {
        match self {
            Self::ClusterIp => "clusterips",
            Self::NodePort => "nodeports",
            Self::LoadBalancerIp => "loadbalancerips",
        }
    }
}

/// One value of one pool, held by one Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reservation {
    pub pool: Pool,
    /// An address as its number, or a port.
    pub value: u32,
}

impl Reservation {
    /// `/registry/serviceallocations/clusterips/10.96.0.1`.
    pub fn key(&self) -> Vec<u8> {
        format!(
            "{RESERVATIONS_PREFIX}{}/{}",
            self.pool.segment(),
            self.text()
        )
        .into_bytes()
    }

    /// The reservation a key names (`None` for a key that is not one).
    pub fn from_key(key: &[u8]) -> Option<Self> {
        let rest = std::str::from_utf8(key)
            .ok()?
            .strip_prefix(RESERVATIONS_PREFIX)?;
        let (segment, value) = rest.split_once('/')?;
        let pool = Pool::ALL.into_iter().find(|p| p.segment() == segment)?;
        let value = match pool {
            Pool::NodePort => u32::from(value.parse::<u16>().ok()?),
            Pool::ClusterIp | Pool::LoadBalancerIp => u32::from(value.parse::<Ipv4Addr>().ok()?),
        };
        Some(Self { pool, value })
    }

    fn text(&self) -> String {
        match self.pool {
            Pool::NodePort => self.value.to_string(),
            Pool::ClusterIp | Pool::LoadBalancerIp => Ipv4Addr::from(self.value).to_string(),
        }
    }
}

fn service_type(service: &Service) -> &str {
    let spec = service.spec.as_ref();
    spec.and_then(|s| s.type_.as_deref())
        .filter(|t| !t.is_empty())
        .unwrap_or("ClusterIP")
}

/// Whether the Service has a virtual IP (not an ExternalName, not headless).
fn needs_cluster_ip(service: &Service) -> bool {
    let spec = service.spec.as_ref();
    let ip = spec.and_then(|s| s.cluster_ip.as_deref()).unwrap_or("");
    service_type(service) != "ExternalName" && ip != "None"
}

fn needs_node_ports(service: &Service) -> bool {
    let spec = service.spec.as_ref();
    match service_type(service) {
        "NodePort" => true,
        "LoadBalancer" => spec.and_then(|s| s.allocate_load_balancer_node_ports) != Some(false),
        _ => false,
    }
}

/// A LoadBalancer whose external traffic stays on the node it arrives at has a port for
/// load balancers' health checks.
fn needs_health_check_port(service: &Service) -> bool {
    let spec = service.spec.as_ref();
    service_type(service) == "LoadBalancer"
        && spec.and_then(|s| s.external_traffic_policy.as_deref()) == Some("Local")
}

/// A LoadBalancer that no other implementation (`spec.loadBalancerClass`) claims.
fn needs_load_balancer_ip(service: &Service) -> bool {
    let spec = service.spec.as_ref();
    service_type(service) == "LoadBalancer"
        && spec
            .and_then(|s| s.load_balancer_class.as_deref())
            .is_none()
}

fn ports(service: &Service) -> &[ServicePort] {
    service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default()
}

fn node_ports_of(service: &Service) -> Vec<i32> {
    ports(service).iter().filter_map(|p| p.node_port).collect()
}

/// Before admission of an update: values allocated earlier that the client left out come
/// back (a `replace` of a manifest without `clusterIP` or `nodePort` keeps them, as
/// Kubernetes' `patchAllocatedValues`), and values the new type has no use for go if the
/// client did not change them (Kubernetes' `dropTypeDependentFields`).
pub fn carry_forward(next: &mut Service, current: &Service) {
    let (Some(spec), Some(old)) = (next.spec.as_mut(), current.spec.as_ref()) else {
        return;
    };
    let unset = |ip: &Option<String>| ip.as_deref().is_none_or(str::is_empty);
    let mut probe = Service {
        spec: Some(spec.clone()),
        ..Default::default()
    };
    if needs_cluster_ip(current) && needs_cluster_ip(&probe) && unset(&spec.cluster_ip) {
        spec.cluster_ip = old.cluster_ip.clone();
        if spec.cluster_ips.as_ref().is_none_or(Vec::is_empty) {
            spec.cluster_ips = old.cluster_ips.clone();
        }
    }
    if needs_node_ports(current) && needs_node_ports(&probe) {
        for port in spec.ports.iter_mut().flatten() {
            if port.node_port.unwrap_or(0) != 0 {
                continue;
            }
            let same = old.ports.iter().flatten().find(|o| {
                o.port == port.port && o.protocol.as_deref().unwrap_or("TCP") == protocol(port)
            });
            port.node_port = same.and_then(|o| o.node_port);
        }
    }
    if needs_health_check_port(current)
        && needs_health_check_port(&probe)
        && spec.health_check_node_port.unwrap_or(0) == 0
    {
        spec.health_check_node_port = old.health_check_node_port;
    }
    probe.spec = Some(spec.clone());
    if service_type(current) != "ExternalName"
        && service_type(&probe) == "ExternalName"
        && spec.cluster_ip == old.cluster_ip
    {
        spec.cluster_ip = None;
        spec.cluster_ips = None;
    }
    if needs_node_ports(current)
        && !needs_node_ports(&probe)
        && node_ports_of(&probe) == node_ports_of(current)
    {
        for port in spec.ports.iter_mut().flatten() {
            port.node_port = None;
        }
    }
    if needs_health_check_port(current)
        && !needs_health_check_port(&probe)
        && spec.health_check_node_port == old.health_check_node_port
    {
        spec.health_check_node_port = None;
    }
}

fn protocol(port: &ServicePort) -> &str {
    port.protocol.as_deref().unwrap_or("TCP")
}

/// Every value the Service claims, in or out of the cluster's ranges: its cluster IPs, the
/// node ports of a NodePort or LoadBalancer (asked for or allocated), its health-check port,
/// and the load-balancer addresses in its status (unless another implementation serves it).
pub fn claimed(service: &Service) -> BTreeSet<Reservation> {
    let mut claimed = BTreeSet::new();
    let spec = service.spec.clone().unwrap_or_default();
    let mut add = |pool, value| {
        claimed.insert(Reservation { pool, value });
    };
    if needs_cluster_ip(service) {
        let ips = spec
            .cluster_ip
            .iter()
            .chain(spec.cluster_ips.iter().flatten());
        for ip in ips.filter_map(|ip| ip.parse::<Ipv4Addr>().ok()) {
            add(Pool::ClusterIp, u32::from(ip));
        }
    }
    let exposes_node_ports = matches!(service_type(service), "NodePort" | "LoadBalancer");
    let health = spec
        .health_check_node_port
        .filter(|_| needs_health_check_port(service));
    let node_ports = node_ports_of(service)
        .into_iter()
        .filter(|_| exposes_node_ports)
        .chain(health);
    for port in node_ports
        .filter_map(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
    {
        add(Pool::NodePort, u32::from(port));
    }
    if needs_load_balancer_ip(service) {
        for ip in ingress_ips(service) {
            add(Pool::LoadBalancerIp, u32::from(ip));
        }
    }
    claimed
}

/// What the Service holds in the cluster's pools: what it claims within the ranges (a value
/// outside them, kept from before the ranges changed, holds nothing).
pub fn held(service: &Service, ranges: &ServiceRanges) -> BTreeSet<Reservation> {
    claimed(service)
        .into_iter()
        .filter(|r| match r.pool {
            Pool::ClusterIp => ranges.cluster_ips.contains(Ipv4Addr::from(r.value)),
            Pool::LoadBalancerIp => ranges.load_balancer_ips.contains(Ipv4Addr::from(r.value)),
            Pool::NodePort => u16::try_from(r.value).is_ok_and(|p| ranges.node_ports.contains(&p)),
        })
        .collect()
}

fn ingress_ips(service: &Service) -> Vec<Ipv4Addr> {
    let status = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref());
    status
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|ingress| ingress.ip.as_deref()?.parse().ok())
        .collect()
}

/// Gives the Service what it needs and has not: a cluster IP, node ports, a health-check
/// port, a load-balancer address. Values it asks for must lie in the cluster's range and be
/// free, unless the Service had them already; `taken` is every reservation in the store,
/// `own` what the Service claimed before this write ([`claimed`] of the stored object).
/// `random(n)` is a number below `n`.
pub fn assign(
    service: &mut Service,
    own: &BTreeSet<Reservation>,
    taken: &BTreeSet<Reservation>,
    ranges: &ServiceRanges,
    random: &mut dyn FnMut(u64) -> u64,
) -> Result<(), Vec<FieldError>> {
    let mut errs = Vec::new();
    let mut picker = Picker {
        own,
        taken,
        chosen: BTreeSet::new(),
        port_users: Default::default(),
        random,
    };
    let needs_ip = needs_cluster_ip(service);
    let exposes_node_ports = matches!(service_type(service), "NodePort" | "LoadBalancer");
    let needs_ports = needs_node_ports(service);
    let needs_health = needs_health_check_port(service);
    let needs_lb = needs_load_balancer_ip(service);
    let spec = service.spec.get_or_insert_with(Default::default);
    if needs_ip {
        let given = spec.cluster_ip.clone().filter(|ip| !ip.is_empty());
        match given {
            Some(ip) => {
                if let Err(reason) = picker.ask_for_ip(Pool::ClusterIp, ranges.cluster_ips, &ip) {
                    errs.push(FieldError::invalid(
                        "spec.clusterIP",
                        &ip,
                        format!("failed to allocate IP {ip}: {reason}"),
                    ));
                }
                match spec.cluster_ips.as_deref() {
                    None | Some([]) => spec.cluster_ips = Some(vec![ip]),
                    Some([one]) if *one == ip => {}
                    Some(_) => errs.push(FieldError::invalid(
                        "spec.clusterIPs",
                        format!("{:?}", spec.cluster_ips.as_deref().unwrap_or_default()),
                        "this cluster serves single-stack IPv4: clusterIPs holds clusterIP alone",
                    )),
                }
            }
            None => match picker.pick(Pool::ClusterIp, cluster_ip_band(ranges.cluster_ips)) {
                Some(value) => {
                    let ip = Ipv4Addr::from(value).to_string();
                    spec.cluster_ip = Some(ip.clone());
                    spec.cluster_ips = Some(vec![ip]);
                }
                None => errs.push(FieldError::invalid(
                    "spec.clusterIP",
                    "",
                    format!(
                        "failed to allocate a service IP: the range {} is full; widen \
                         --service-cidr or delete Services",
                        ranges.cluster_ips
                    ),
                )),
            },
        }
        spec.ip_families.get_or_insert_with(|| vec!["IPv4".into()]);
        spec.ip_family_policy
            .get_or_insert_with(|| "SingleStack".into());
    }
    // Node ports asked for are checked first, so a pick never takes one a later port asks
    // for. `None` for the protocol: the health-check port, which shares with nothing.
    let mut wanted_ports: Vec<(String, Option<String>, &mut Option<i32>)> = Vec::new();
    if exposes_node_ports {
        for (i, port) in spec.ports.iter_mut().flatten().enumerate() {
            let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".into());
            let path = format!("spec.ports[{i}].nodePort");
            wanted_ports.push((path, Some(protocol), &mut port.node_port));
        }
    }
    if needs_health {
        let path = "spec.healthCheckNodePort".to_string();
        wanted_ports.push((path, None, &mut spec.health_check_node_port));
    }
    let (asked, unset): (Vec<_>, Vec<_>) = wanted_ports
        .into_iter()
        .partition(|(_, _, port)| port.is_some_and(|p| p != 0));
    for (path, protocol, port) in asked {
        let given = port.unwrap_or_default();
        if let Err(reason) = picker.ask_for_port(&ranges.node_ports, given, protocol.as_deref()) {
            errs.push(FieldError::invalid(path, given, reason));
        }
    }
    for (path, protocol, port) in unset {
        // allocateLoadBalancerNodePorts: false leaves unset ports unset.
        if protocol.is_some() && !needs_ports {
            continue;
        }
        match picker.pick(Pool::NodePort, node_port_band(&ranges.node_ports)) {
            Some(value) => *port = Some(value as i32),
            None => errs.push(FieldError::invalid(
                path,
                0,
                format!(
                    "failed to allocate a node port: the range {}-{} is full; widen \
                     --service-node-port-range or delete Services",
                    ranges.node_ports.start(),
                    ranges.node_ports.end()
                ),
            )),
        }
    }
    // Load-balancer addresses in the status (kept, or written by a client) must be this
    // Service's already, or free.
    if needs_lb {
        for ip in ingress_ips(service) {
            let text = ip.to_string();
            let pool = ranges.load_balancer_ips;
            if pool.contains(ip) {
                if let Err(reason) = picker.ask_for_ip(Pool::LoadBalancerIp, pool, &text) {
                    errs.push(FieldError::invalid(
                        "status.loadBalancer.ingress",
                        &text,
                        format!("failed to allocate a load-balancer IP: {reason}"),
                    ));
                }
            }
        }
    }
    if needs_lb && ingress_ips(service).is_empty() {
        let asked = service
            .spec
            .as_ref()
            .and_then(|s| s.load_balancer_ip.clone())
            .filter(|ip| !ip.is_empty());
        let pool = ranges.load_balancer_ips;
        let ip = match asked {
            Some(ip) => match picker.ask_for_ip(Pool::LoadBalancerIp, pool, &ip) {
                Ok(()) => Some(ip),
                Err(reason) => {
                    errs.push(FieldError::invalid(
                        "spec.loadBalancerIP",
                        &ip,
                        format!("failed to allocate a load-balancer IP: {reason}"),
                    ));
                    None
                }
            },
            // A status rewritten without the address keeps the one the Service had.
            None if own.iter().any(|r| r.pool == Pool::LoadBalancerIp) => own
                .iter()
                .find(|r| r.pool == Pool::LoadBalancerIp)
                .map(|r| Ipv4Addr::from(r.value).to_string()),
            None => match picker.pick(Pool::LoadBalancerIp, host_band(pool)) {
                Some(value) => Some(Ipv4Addr::from(value).to_string()),
                None => {
                    errs.push(FieldError::invalid(
                        "status.loadBalancer.ingress",
                        "",
                        format!(
                            "failed to allocate a load-balancer IP: the pool {pool} is full; \
                             widen --lb-pool or delete LoadBalancer Services"
                        ),
                    ));
                    None
                }
            },
        };
        if let Some(ip) = ip {
            let status = service.status.get_or_insert_with(Default::default);
            let load_balancer = status.load_balancer.get_or_insert_with(Default::default);
            load_balancer.ingress = Some(vec![LoadBalancerIngress {
                ip: Some(ip),
                ip_mode: Some("VIP".into()),
                ..Default::default()
            }]);
        }
    }
    if !needs_lb && service_type(service) != "LoadBalancer" {
        // A Service that stopped being a LoadBalancer gives its address back.
        if let Some(status) = service.status.as_mut() {
            status.load_balancer = None;
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

/// Where free values are looked for: the dynamic band first, then the rest.
struct Bands {
    first: u64,
    /// Values at or above this are tried first (Kubernetes leaves the low values to users
    /// who choose their own: KEP-3070 and KEP-3668).
    dynamic_from: u64,
    last: u64,
}

/// A subnet's host addresses (not its network or broadcast address).
fn host_band(cidr: Ipv4Cidr) -> Bands {
    let (first, last) = if cidr.prefix >= 31 {
        (u64::from(cidr.base), u64::from(cidr.last()))
    } else {
        (u64::from(cidr.base) + 1, u64::from(cidr.last()) - 1)
    };
    Bands {
        first,
        dynamic_from: first,
        last,
    }
}

/// KEP-3070: the lowest min(max(16, size/16), 256) addresses are for Services that ask.
fn cluster_ip_band(cidr: Ipv4Cidr) -> Bands {
    let hosts = host_band(cidr);
    let reserved = (cidr.size() / 16).clamp(16, 256);
    Bands {
        dynamic_from: (u64::from(cidr.base) + reserved).min(hosts.last),
        ..hosts
    }
}

/// KEP-3668: the lowest min(max(16, size/32), 128) ports are for Services that ask.
fn node_port_band(range: &RangeInclusive<u16>) -> Bands {
    let (first, last) = (u64::from(*range.start()), u64::from(*range.end()));
    let reserved = ((last - first + 1) / 32).clamp(16, 128);
    Bands {
        first,
        dynamic_from: (first + reserved).min(last),
        last,
    }
}

struct Picker<'a> {
    own: &'a BTreeSet<Reservation>,
    taken: &'a BTreeSet<Reservation>,
    /// Values this assignment took already (a Service's two ports never get one node port).
    chosen: BTreeSet<Reservation>,
    /// The protocols each node port asked for serves in this Service.
    port_users: std::collections::BTreeMap<u32, Vec<Option<String>>>,
    random: &'a mut dyn FnMut(u64) -> u64,
}

impl Picker<'_> {
    /// Whether a value asked for may be held: this Service's own, or nobody's.
    fn free(&self, reservation: &Reservation) -> bool {
        self.own.contains(reservation)
            || !(self.taken.contains(reservation) || self.chosen.contains(reservation))
    }

    /// Whether a value may be picked: nobody's, not even this Service's for another field.
    fn unused(&self, reservation: &Reservation) -> bool {
        !(self.taken.contains(reservation)
            || self.chosen.contains(reservation)
            || self.own.contains(reservation))
    }

    /// An address asked for: the Service's own already (kept even if the ranges changed
    /// since), or an IPv4 host address of `range` that nobody holds.
    fn ask_for_ip(&mut self, pool: Pool, range: Ipv4Cidr, ip: &str) -> Result<(), String> {
        let out_of_range = || {
            format!(
                "the provided IP ({ip}) is not in the valid range. The range of valid IPs is \
                 {range}"
            )
        };
        let address = ip.parse::<Ipv4Addr>().map_err(|_| out_of_range())?;
        let reservation = Reservation {
            pool,
            value: u32::from(address),
        };
        if self.own.contains(&reservation) {
            self.chosen.insert(reservation);
            return Ok(());
        }
        let hosts = host_band(range);
        if !(hosts.first..=hosts.last).contains(&u64::from(u32::from(address))) {
            return Err(out_of_range());
        }
        if !self.free(&reservation) {
            return Err("provided IP is already allocated".into());
        }
        self.chosen.insert(reservation);
        Ok(())
    }

    /// A node port asked for: the Service's own already, or one of `range` nobody holds.
    /// Two ports of the Service may share one only with different protocols (`None`: the
    /// health-check port, which shares with nothing).
    fn ask_for_port(
        &mut self,
        range: &RangeInclusive<u16>,
        port: i32,
        protocol: Option<&str>,
    ) -> Result<(), String> {
        let reservation = Reservation {
            pool: Pool::NodePort,
            value: port as u32,
        };
        let users = self.port_users.entry(reservation.value).or_default();
        let shared = !users.is_empty();
        if shared
            && (protocol.is_none()
                || users
                    .iter()
                    .any(|p| p.as_deref() == protocol || p.is_none()))
        {
            return Err("provided port is already allocated".into());
        }
        users.push(protocol.map(str::to_string));
        if shared || self.own.contains(&reservation) {
            self.chosen.insert(reservation);
            return Ok(());
        }
        if !u16::try_from(port).is_ok_and(|p| range.contains(&p)) {
            return Err(format!(
                "provided port is not in the valid range. The range of valid ports is {}-{}",
                range.start(),
                range.end()
            ));
        }
        if !self.free(&reservation) {
            return Err("provided port is already allocated".into());
        }
        self.chosen.insert(reservation);
        Ok(())
    }

    /// A free value: random tries in the dynamic band, then a scan of it, then of the rest.
    fn pick(&mut self, pool: Pool, bands: Bands) -> Option<u32> {
        let reservation = |value: u64| Reservation {
            pool,
            value: value as u32,
        };
        let dynamic = bands.last - bands.dynamic_from + 1;
        for _ in 0..32 {
            let value = bands.dynamic_from + (self.random)(dynamic);
            if self.unused(&reservation(value)) {
                self.chosen.insert(reservation(value));
                return Some(value as u32);
            }
        }
        let start = bands.dynamic_from + (self.random)(dynamic);
        let scan = (start..=bands.last)
            .chain(bands.dynamic_from..start)
            .chain(bands.first..bands.dynamic_from);
        for value in scan {
            if self.unused(&reservation(value)) {
                self.chosen.insert(reservation(value));
                return Some(value as u32);
            }
        }
        None
    }
}

#[cfg(test)]
#[path = "allocation_tests.rs"]
mod tests;
