//! What stands behind a Service (kube-controller-manager's `endpoint` and `endpointslice`
//! controllers), pure: the Service and the pods of its namespace in; its backends, the
//! Endpoints object and the EndpointSlices that list them out.
//!
//! ```text
//!  pods ─ selected, with an IP, not finished ─► Backend { address, node, ready, serving,
//!                                                terminating, ports resolved by name }
//!  backends ─► Endpoints: ready → addresses, the rest → notReadyAddresses (terminating pods
//!              only with publishNotReadyAddresses), one subset per port set
//!  backends ─► EndpointSlices: one per port set and 100 endpoints, named by a stable hash;
//!              terminating pods kept with terminating=true
//! ```
//!
//! A Service without a selector is its user's to fill; the Endpoints a user writes for it
//! are mirrored into slices by [`super::mirror`].

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Service, ServicePort,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rudder_proto::objects::selector::LabelSelector;

use crate::pods::cached::Pod;
use crate::pods::{is_ready, is_terminal};

/// The label naming a slice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming who manages a slice; slices managed by others are left alone.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Set on the Endpoints and slices of headless Services.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Kubernetes' `maxEndpointsPerSlice` default.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// One port of a backend: the Service port's name and protocol, the pod's port number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BackendPort {
    pub name: String,
    pub port: i32,
    pub protocol: String,
    pub app_protocol: Option<String>,
}

/// A pod standing behind the Service.
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub ip: String,
    pub node: Option<String>,
    /// The pod's hostname when its `subdomain` is the Service (StatefulSet pods' DNS names).
    pub hostname: Option<String>,
    /// What the address stands for (a pod; a mirrored address may name nothing).
    pub pod: Option<ObjectReference>,
    /// Ready for traffic: serving and not terminating, or the Service publishes unready
    /// addresses.
    pub ready: bool,
    /// Passes its readiness probe.
    pub serving: bool,
    pub terminating: bool,
    /// The Service's ports resolved on this pod (a named target port the pod lacks is left
    /// out for it).
    pub ports: Vec<BackendPort>,
}

/// The selector of a Service that has one (an empty selector selects nothing here, as in
/// Kubernetes: a Service without a selector is user-managed).
pub fn selector_of(service: &Service) -> Option<LabelSelector> {
    let selector = service.spec.as_ref()?.selector.as_ref()?;
    (!selector.is_empty()).then(|| LabelSelector::from_set(selector))
}

fn publishes_not_ready(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

fn service_ports(service: &Service) -> &[ServicePort] {
    service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default()
}

/// The pods behind `service` among `pods` (its namespace's), sorted by address; `None` for a
/// Service without a selector.
pub fn backends(service: &Service, pods: &[Arc<Pod>]) -> Option<Vec<Backend>> {
    let selector = selector_of(service)?;
    let publish = publishes_not_ready(service);
    let name = service.metadata.name.as_deref().unwrap_or_default();
    let mut backends: Vec<Backend> = pods
        .iter()
        .filter(|pod| selector.matches_labels(pod.metadata.labels.as_ref()))
        .filter(|pod| !is_terminal(pod))
        .filter_map(|pod| {
            let ip = pod
                .status
                .as_ref()?
                .pod_ip
                .clone()
                .filter(|ip| !ip.is_empty())?;
            let spec = pod.spec.as_ref();
            let terminating = pod.metadata.deletion_timestamp.is_some();
            let serving = is_ready(pod);
            let hostname = spec
                .filter(|s| s.subdomain.as_deref() == Some(name))
                .and_then(|s| s.hostname.clone());
            Some(Backend {
                ip,
                node: spec.and_then(|s| s.node_name.clone()),
                hostname,
                pod: Some(ObjectReference {
                    kind: Some("Pod".into()),
                    namespace: pod.metadata.namespace.clone(),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                    ..Default::default()
                }),
                // Never ready while terminating, unless unready addresses are published.
                ready: publish || (serving && !terminating),
                serving,
                terminating,
                ports: service_ports(service)
                    .iter()
                    .filter_map(|port| resolve(port, pod))
                    .collect(),
            })
        })
        .collect();
    let pod_name = |b: &Backend| b.pod.as_ref().and_then(|p| p.name.clone());
    backends.sort_by(|a, b| (&a.ip, pod_name(a)).cmp(&(&b.ip, pod_name(b))));
    Some(backends)
}

/// The pod's port for a Service port: the target port's number, or the container port of
/// that name and protocol.
fn resolve(port: &ServicePort, pod: &Pod) -> Option<BackendPort> {
    let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".into());
    let number = match &port.target_port {
        None => port.port,
        Some(IntOrString::Int(number)) => *number,
        Some(IntOrString::String(name)) => {
            let containers = pod.spec.as_ref().map(|s| &s.containers[..]).unwrap_or(&[]);
            containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name)
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })?
                .container_port
        }
    };
    Some(BackendPort {
        name: port.name.clone().unwrap_or_default(),
        port: number,
        protocol,
        app_protocol: port.app_protocol.clone(),
    })
}

/// Labels the Service's Endpoints and slices carry: the Service's own, and the headless mark.
fn labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels
}

/// The Endpoints object of `service` with `backends` (Kubernetes' `syncService`).
pub fn endpoints(service: &Service, backends: &[Backend]) -> Endpoints {
    let publish = publishes_not_ready(service);
    let mut subsets: BTreeMap<Vec<BackendPort>, EndpointSubset> = BTreeMap::new();
    let has_ports = !service_ports(service).is_empty();
    for backend in backends {
        if backend.terminating && !publish {
            continue;
        }
        // A pod with none of the Service's ports stands behind none of them (only a
        // headless Service without ports lists bare addresses).
        if has_ports && backend.ports.is_empty() {
            continue;
        }
        let subset = subsets.entry(backend.ports.clone()).or_default();
        let address = EndpointAddress {
            ip: backend.ip.clone(),
            hostname: backend.hostname.clone(),
            node_name: backend.node.clone(),
            target_ref: backend.pod.clone(),
        };
        let list = if backend.ready {
            &mut subset.addresses
        } else {
            &mut subset.not_ready_addresses
        };
        list.get_or_insert_with(Vec::new).push(address);
    }
    let subsets: Vec<EndpointSubset> = subsets
        .into_iter()
        .map(|(ports, mut subset)| {
            subset.ports = (!ports.is_empty()).then(|| {
                ports
                    .into_iter()
                    .map(|p| EndpointPort {
                        name: Some(p.name).filter(|n| !n.is_empty()),
                        port: p.port,
                        protocol: Some(p.protocol),
                        app_protocol: p.app_protocol,
                    })
                    .collect()
            });
            subset
        })
        .collect();
    Endpoints {
        metadata: ObjectMeta {
            name: service.metadata.name.clone(),
            namespace: service.metadata.namespace.clone(),
            labels: Some(labels(service)),
            ..Default::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    }
}

/// Whether `current` already says what `desired` says (what the controller writes).
pub fn endpoints_agree(current: &Endpoints, desired: &Endpoints) -> bool {
    current.subsets.as_deref().unwrap_or_default() == desired.subsets.as_deref().unwrap_or_default()
        && current.metadata.labels.clone().unwrap_or_default()
            == desired.metadata.labels.clone().unwrap_or_default()
}

/// The slices of `service` with `backends`: one per port set and 100 endpoints, each named
/// by the Service, a stable hash of its port set and its place.
pub fn slices(service: &Service, backends: &[Backend]) -> Vec<EndpointSlice> {
    owned_slices(service, backends, &BY_SELECTOR)
}

/// Who makes a set of slices: the label that says so, and what their names carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceOwner {
    pub manager: &'static str,
    /// Between the Service's name and the port set's hash (`-` or `-mirror-`), so that two
    /// owners' slices never share a name.
    pub infix: &'static str,
}

/// The slices of a Service with a selector.
pub const BY_SELECTOR: SliceOwner = SliceOwner {
    manager: MANAGED_BY,
    infix: "-",
};

/// `backends`' slices, made by `owner`.
pub fn owned_slices(
    service: &Service,
    backends: &[Backend],
    owner: &SliceOwner,
) -> Vec<EndpointSlice> {
    let name = service.metadata.name.clone().unwrap_or_default();
    let mut by_ports: BTreeMap<Vec<BackendPort>, Vec<&Backend>> = BTreeMap::new();
    for backend in backends {
        by_ports
            .entry(backend.ports.clone())
            .or_default()
            .push(backend);
    }
    if by_ports.is_empty() {
        // A Service with no backend still has its (empty) slice, with its ports.
        let ports = service_ports(service)
            .iter()
            .map(|p| BackendPort {
                name: p.name.clone().unwrap_or_default(),
                port: 0,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        by_ports.insert(ports, Vec::new());
    }
    let mut slices = Vec::new();
    for (ports, members) in by_ports {
        let hash = port_set_hash(&ports);
        let chunks: Vec<&[&Backend]> = if members.is_empty() {
            vec![&[]]
        } else {
            members.chunks(MAX_ENDPOINTS_PER_SLICE).collect()
        };
        for (i, chunk) in chunks.into_iter().enumerate() {
            let slice_name = format!("{name}{}{hash}-{i}", owner.infix);
            slices.push(slice(service, &slice_name, &ports, chunk, owner));
        }
    }
    slices
}

fn slice(
    service: &Service,
    name: &str,
    ports: &[BackendPort],
    members: &[&Backend],
    owner: &SliceOwner,
) -> EndpointSlice {
    let mut labels = labels(service);
    labels.insert(
        SERVICE_NAME_LABEL.into(),
        service.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(MANAGED_BY_LABEL.into(), owner.manager.into());
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: service.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Service".into(),
                name: service.metadata.name.clone().unwrap_or_default(),
                uid: service.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: members
            .iter()
            .map(|b| Endpoint {
                addresses: vec![b.ip.clone()],
                conditions: Some(EndpointConditions {
                    ready: Some(b.ready),
                    serving: Some(b.serving),
                    terminating: Some(b.terminating),
                }),
                hostname: b.hostname.clone(),
                node_name: b.node.clone(),
                target_ref: b.pod.clone(),
                ..Default::default()
            })
            .collect(),
        ports: Some(
            ports
                .iter()
                .map(|p| SlicePort {
                    name: Some(p.name.clone()),
                    port: (p.port != 0).then_some(p.port),
                    protocol: Some(p.protocol.clone()),
                    app_protocol: p.app_protocol.clone(),
                })
                .collect(),
        ),
    }
}

/// FNV-1a over the port set, 8 hex digits: stable across builds (slice names outlive them).
fn port_set_hash(ports: &[BackendPort]) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for port in ports {
        let text = format!("{}/{}/{};", port.name, port.port, port.protocol);
        for byte in text.bytes() {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    }
    format!("{hash:08x}")
}

/// Whether an existing slice already says what a desired one says.
pub fn slice_agrees(current: &EndpointSlice, desired: &EndpointSlice) -> bool {
    current.endpoints == desired.endpoints
        && current.ports == desired.ports
        && current.metadata.labels == desired.metadata.labels
        && current.metadata.owner_references == desired.metadata.owner_references
}

/// What to do to a Service's slices.
#[derive(Debug, Default, PartialEq)]
pub struct SlicePlan {
    pub create: Vec<EndpointSlice>,
    /// Desired slices whose existing namesake says something else (written over it).
    pub update: Vec<EndpointSlice>,
    /// Names of this controller's slices for the Service that are no longer wanted.
    pub delete: Vec<String>,
}

/// Desired slices against the existing ones this controller manages for the Service.
pub fn plan_slices(desired: Vec<EndpointSlice>, existing: &[Arc<EndpointSlice>]) -> SlicePlan {
    let mut plan = SlicePlan::default();
    let by_name: BTreeMap<&str, &EndpointSlice> = existing
        .iter()
        .filter_map(|s| Some((s.metadata.name.as_deref()?, &**s)))
        .collect();
    let wanted: Vec<String> = desired
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    for slice in desired {
        match by_name.get(slice.metadata.name.as_deref().unwrap_or_default()) {
            None => plan.create.push(slice),
            Some(current) if !slice_agrees(current, &slice) => plan.update.push(slice),
            Some(_) => {}
        }
    }
    plan.delete = by_name
        .keys()
        .filter(|name| !wanted.iter().any(|w| w == *name))
        .map(|name| name.to_string())
        .collect();
    plan
}

/// Whether `slice` is one `owner` makes for the Service `name`.
pub fn is_owned_slice_of(slice: &EndpointSlice, name: &str, owner: &SliceOwner) -> bool {
    let labels = slice.metadata.labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
    label(SERVICE_NAME_LABEL) == Some(name) && label(MANAGED_BY_LABEL) == Some(owner.manager)
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
