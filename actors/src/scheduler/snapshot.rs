//! The scheduler's view of the cluster: every node, the pods that count on it and what they add
//! up to, kept up to date one event at a time so that deciding for a pod never rebuilds it
//! (kube-scheduler's cache, `NodeInfo` and `PodInfo`). Pure.
//!
//! ```text
//!  node events ─► upsert_node / remove_node     nodes: Vec<NodeInfo> in a stable order
//!  pod events  ─► add_pod / remove_pod     ─►   + name → index
//!  decisions   ─► assume / remove_pod           per node: pods, label groups, sums, ports
//!  namespaces  ─► upsert_namespace              pods waiting for a node not seen (yet/again)
//!                                               image name → nodes holding it
//!  claims, volumes, classes ─► storage_mut      what VolumeBinding reads (volumes.rs)
//! ```
//!
//! A pod counts on its `spec.nodeName`'s node until it is removed or ends (phase Succeeded or
//! Failed: kube-scheduler's informer filters those out). A pod for a node the snapshot does not
//! have waits and counts once the node appears; a removed node's pods wait likewise, as
//! kube-scheduler keeps a deleted node's pods until they go. Adding a pod that is already there
//! replaces it (an update, keyed by namespace/name), so `assume` is `add_pod` with the chosen
//! node, and the informer's later update of the bound pod simply replaces the assumed copy.
//!
//! Each pod is parsed once, when added ([`PodInfo`]): requests, host ports, affinity terms.
//! Pods on a node with the same namespace and labels are also counted as a [`LabelGroup`], so
//! topology spreading and inter-pod affinity match a selector once per group (the replicas of
//! a workload share their labels) rather than once per pod.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, LazyLock};

use k8s_openapi::api::core::v1::{Node, Taint};

use super::resources::{self, Resources};
use super::terms::PodTerms;
use super::volumes::Storage;
use crate::pods;
use crate::pods::cached::{Pod, PodSpec};

/// The address of every interface: a host port on it collides with that port on any address.
pub const BIND_ALL: &str = "0.0.0.0";

static EMPTY_SPEC: LazyLock<PodSpec> = LazyLock::new(PodSpec::default);
static EMPTY_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// A pod's spec, or an empty one for a pod without.
pub fn spec_of(pod: &Pod) -> &PodSpec {
    pod.spec.as_ref().unwrap_or(&*EMPTY_SPEC)
}

/// Labels, or none for an object that leaves them out.
pub fn labels_or_empty(labels: Option<&BTreeMap<String, String>>) -> &BTreeMap<String, String> {
    labels.unwrap_or(&EMPTY_LABELS)
}

/// A pod's identity in the snapshot: namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodKey {
    pub namespace: String,
    pub name: String,
}

impl PodKey {
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    pub fn of(pod: &Pod) -> Self {
        Self::new(
            pod.metadata.namespace.as_deref().unwrap_or(""),
            pod.metadata.name.as_deref().unwrap_or(""),
        )
    }
}

impl fmt::Display for PodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A host port a pod holds: address (default 0.0.0.0), protocol (default TCP) and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Whether this port collides with one in use (`HostPortInfo.CheckConflict`): the same
    /// protocol and port on the same address, or on 0.0.0.0 on either side.
    pub fn conflicts_with(&self, used: &BTreeMap<HostPort, usize>) -> bool {
        used.keys().any(|u| {
            u.protocol == self.protocol
                && u.port == self.port
                && (self.ip == BIND_ALL || u.ip == BIND_ALL || u.ip == self.ip)
        })
    }
}

/// The host ports of the pod's containers and sidecars (`GetHostPorts`): those with a
/// `hostPort` above zero.
pub fn host_ports(spec: &PodSpec) -> Vec<HostPort> {
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| resources::is_sidecar(c));
    sidecars
        .chain(spec.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|&port| port > 0)?;
            let or = |value: Option<&str>, default: &str| match value {
                Some(v) if !v.is_empty() => v.to_string(),
                _ => default.to_string(),
            };
            Some(HostPort {
                ip: or(p.host_ip.as_deref(), BIND_ALL),
                protocol: or(p.protocol.as_deref(), "TCP"),
                port,
            })
        })
        .collect()
}

/// A pod as the scheduler counts it, parsed once.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub key: PodKey,
    pub requests: Resources,
    pub non_zero_requests: Resources,
    pub host_ports: Vec<HostPort>,
    pub terms: PodTerms,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> Self {
        let spec = spec_of(&pod);
        let requests = resources::pod_requests(spec);
        let non_zero_requests = resources::non_zero_requests(spec);
        let host_ports = host_ports(spec);
        let terms = PodTerms::of(&pod);
        let key = PodKey::of(&pod);
        Self {
            pod,
            key,
            requests,
            non_zero_requests,
            host_ports,
            terms,
        }
    }

    pub fn namespace(&self) -> &str {
        &self.key.namespace
    }

    /// `spec.priority` (0 when unset).
    pub fn priority(&self) -> i32 {
        spec_of(&self.pod).priority.unwrap_or(0)
    }

    pub fn labels(&self) -> Option<&BTreeMap<String, String>> {
        self.pod.metadata.labels.as_ref()
    }

    /// Being deleted: spreading no longer counts it (kubernetes#87621); affinity still does.
    pub fn is_terminating(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }

    /// Has pod affinity or anti-affinity of any kind (`PodsWithAffinity`).
    pub fn has_affinity(&self) -> bool {
        spec_of(&self.pod)
            .affinity
            .as_ref()
            .is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some())
    }
}

/// The pods on one node that share namespace, labels and whether they are terminating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelGroup {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub terminating: bool,
    pub count: usize,
}

/// One node and the pods that count on it (`framework.NodeInfo`).
#[derive(Debug, Clone)]
pub struct NodeInfo {
    node: Arc<Node>,
    pods: Vec<Arc<PodInfo>>,
    groups: Vec<LabelGroup>,
    with_affinity: Vec<Arc<PodInfo>>,
    with_required_anti_affinity: Vec<Arc<PodInfo>>,
    requested: Resources,
    non_zero_requested: Resources,
    allocatable: Resources,
    used_ports: BTreeMap<HostPort, usize>,
    /// `status.images`: each name a node reports, with its image's size in bytes.
    images: HashMap<String, i64>,
}

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> Self {
        let allocatable = resources::allocatable(&node);
        let images = images_of(&node);
        Self {
            node,
            pods: Vec::new(),
            groups: Vec::new(),
            with_affinity: Vec::new(),
            with_required_anti_affinity: Vec::new(),
            requested: Resources::default(),
            non_zero_requested: Resources::default(),
            allocatable,
            used_ports: BTreeMap::new(),
            images,
        }
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    pub fn node_arc(&self) -> &Arc<Node> {
        &self.node
    }

    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or("")
    }

    pub fn labels(&self) -> Option<&BTreeMap<String, String>> {
        self.node.metadata.labels.as_ref()
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels()?.get(key).map(String::as_str)
    }

    pub fn taints(&self) -> &[Taint] {
        self.node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or_default()
    }

    /// Cordoned: `spec.unschedulable`.
    pub fn is_unschedulable(&self) -> bool {
        self.node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false)
    }

    pub fn pods(&self) -> &[Arc<PodInfo>] {
        &self.pods
    }

    pub fn groups(&self) -> &[LabelGroup] {
        &self.groups
    }

    pub fn pods_with_affinity(&self) -> &[Arc<PodInfo>] {
        &self.with_affinity
    }

    pub fn pods_with_required_anti_affinity(&self) -> &[Arc<PodInfo>] {
        &self.with_required_anti_affinity
    }

    /// The sum of its pods' requests; `pods` is how many there are.
    pub fn requested(&self) -> &Resources {
        &self.requested
    }

    /// The sum of its pods' non-zero CPU and memory requests (for LeastAllocated).
    pub fn non_zero_requested(&self) -> &Resources {
        &self.non_zero_requested
    }

    pub fn allocatable(&self) -> &Resources {
        &self.allocatable
    }

    /// Host ports in use, with how many pods hold each.
    pub fn used_ports(&self) -> &BTreeMap<HostPort, usize> {
        &self.used_ports
    }

    /// The size of the image the node reports under `name`, if it has it.
    pub fn image_size(&self, name: &str) -> Option<i64> {
        self.images.get(name).copied()
    }

    /// Counts a pod on this node: for a copy of a node, where preemption's dry run takes pods
    /// off and puts them back (the snapshot's own nodes change only through the snapshot).
    pub fn add_pod(&mut self, info: Arc<PodInfo>) {
        self.add(info);
    }

    /// Takes a pod off this node, keeping what was parsed of it; see [`NodeInfo::add_pod`].
    pub fn remove_pod(&mut self, key: &PodKey) -> Option<Arc<PodInfo>> {
        self.remove(key)
    }

    fn add(&mut self, info: Arc<PodInfo>) {
        self.requested.add(&info.requests);
        self.non_zero_requested.add(&info.non_zero_requests);
        for port in &info.host_ports {
            *self.used_ports.entry(port.clone()).or_insert(0) += 1;
        }
        let labels = labels_or_empty(info.labels());
        let terminating = info.is_terminating();
        let namespace = info.namespace();
        match self.groups.iter_mut().find(|g| {
            g.terminating == terminating && g.namespace == namespace && g.labels == *labels
        }) {
            Some(group) => group.count += 1,
            None => self.groups.push(LabelGroup {
                namespace: namespace.to_string(),
                labels: labels.clone(),
                terminating,
                count: 1,
            }),
        }
        if info.has_affinity() {
            self.with_affinity.push(Arc::clone(&info));
        }
        if !info.terms.required_anti_affinity.is_empty() {
            self.with_required_anti_affinity.push(Arc::clone(&info));
        }
        self.pods.push(info);
    }

    fn remove(&mut self, key: &PodKey) -> Option<Arc<PodInfo>> {
        let at = self.pods.iter().position(|p| p.key == *key)?;
        let info = self.pods.remove(at);
        self.requested.sub(&info.requests);
        self.non_zero_requested.sub(&info.non_zero_requests);
        for port in &info.host_ports {
            let left = match self.used_ports.get_mut(port) {
                Some(count) => {
                    *count = count.saturating_sub(1);
                    *count
                }
                None => continue,
            };
            if left == 0 {
                self.used_ports.remove(port);
            }
        }
        let labels = labels_or_empty(info.labels());
        let terminating = info.is_terminating();
        let namespace = info.namespace();
        if let Some(at) = self.groups.iter().position(|g| {
            g.terminating == terminating && g.namespace == namespace && g.labels == *labels
        }) {
            self.groups[at].count -= 1;
            if self.groups[at].count == 0 {
                self.groups.remove(at);
            }
        }
        self.with_affinity.retain(|p| p.key != *key);
        self.with_required_anti_affinity.retain(|p| p.key != *key);
        Some(info)
    }
}

fn images_of(node: &Node) -> HashMap<String, i64> {
    let mut images = HashMap::new();
    for image in node.status.iter().flat_map(|s| s.images.iter().flatten()) {
        for name in image.names.iter().flatten() {
            images
                .entry(name.clone())
                .or_insert(image.size_bytes.unwrap_or(0));
        }
    }
    images
}

/// Every node and the pods that count on them; see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// Where each pod counts (or waits): its node's name.
    placed: HashMap<PodKey, String>,
    /// Pods for nodes the snapshot does not have, by node name.
    waiting: HashMap<String, Vec<Arc<PodInfo>>>,
    /// How many nodes report each image name (ImageLocality's spread).
    image_nodes: HashMap<String, usize>,
    namespaces: HashMap<String, BTreeMap<String, String>>,
    /// Claims, volumes and storage classes (VolumeBinding); shared with working copies until
    /// changed.
    storage: Arc<Storage>,
    /// Pending pods a preemption nominated to a node (`status.nominatedNodeName`), by node.
    nominated: HashMap<String, BTreeMap<PodKey, Arc<PodInfo>>>,
    /// Each nominated pod's node.
    nominated_to: HashMap<PodKey, String>,
}

impl Snapshot {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The nodes in a stable order: as added, a removed one closing its gap.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&at| &self.nodes[at])
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Records the node a pending pod was nominated to (`status.nominatedNodeName`), or, for
    /// `None` or a pod naming none, that it no longer waits for one (it was bound, or went).
    pub fn nominate(&mut self, key: &PodKey, pending: Option<Arc<Pod>>) {
        if let Some(node) = self.nominated_to.remove(key) {
            if let Some(on) = self.nominated.get_mut(&node) {
                on.remove(key);
                if on.is_empty() {
                    self.nominated.remove(&node);
                }
            }
        }
        let Some(pod) = pending else {
            return;
        };
        let node = pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.clone());
        let Some(node) = node.filter(|n| !n.is_empty()) else {
            return;
        };
        let info = Arc::new(PodInfo::new(pod));
        self.nominated
            .entry(node.clone())
            .or_default()
            .insert(key.clone(), info);
        self.nominated_to.insert(key.clone(), node);
    }

    /// The pods nominated to `node` that `pod` must leave room for: those of its priority or
    /// higher (kube-scheduler's `addNominatedPods`), itself excepted.
    pub fn nominated_before<'a>(
        &'a self,
        node: &str,
        pod: &'a PodKey,
        priority: i32,
    ) -> impl Iterator<Item = &'a Arc<PodInfo>> + 'a {
        self.nominated
            .get(node)
            .into_iter()
            .flat_map(BTreeMap::values)
            .filter(move |nominated| nominated.key != *pod && nominated.priority() >= priority)
    }

    /// Adds a node, or replaces it keeping its pods; pods waiting for it now count on it.
    pub fn upsert_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        if let Some(&at) = self.index.get(&name) {
            forget_images(&mut self.image_nodes, &self.nodes[at].images);
            let info = &mut self.nodes[at];
            info.allocatable = resources::allocatable(&node);
            info.images = images_of(&node);
            info.node = node;
            count_images(&mut self.image_nodes, &self.nodes[at].images);
            return;
        }
        let mut info = NodeInfo::new(node);
        for pod in self.waiting.remove(&name).unwrap_or_default() {
            info.add(pod);
        }
        count_images(&mut self.image_nodes, &info.images);
        self.index.insert(name, self.nodes.len());
        self.nodes.push(info);
    }

    /// Removes a node; its pods wait for it to come back, until they are removed themselves.
    pub fn remove_node(&mut self, name: &str) -> Option<Arc<Node>> {
        let at = self.index.remove(name)?;
        let info = self.nodes.remove(at);
        for (i, moved) in self.nodes.iter().enumerate().skip(at) {
            self.index.insert(moved.name().to_string(), i);
        }
        forget_images(&mut self.image_nodes, &info.images);
        if !info.pods.is_empty() {
            self.waiting
                .entry(name.to_string())
                .or_default()
                .extend(info.pods.iter().cloned());
        }
        Some(info.node)
    }

    /// Adds or replaces a pod. Whether it now counts on a node or waits for one: an
    /// unscheduled or ended pod only leaves.
    pub fn add_pod(&mut self, pod: Arc<Pod>) -> bool {
        let key = PodKey::of(&pod);
        self.take(&key);
        let Some(node_name) = spec_of(&pod).node_name.clone().filter(|n| !n.is_empty()) else {
            return false;
        };
        if pods::is_terminal(&pod) {
            return false;
        }
        let info = Arc::new(PodInfo::new(pod));
        self.placed.insert(key, node_name.clone());
        match self.index.get(&node_name) {
            Some(&at) => self.nodes[at].add(info),
            None => self.waiting.entry(node_name).or_default().push(info),
        }
        true
    }

    /// Removes a pod wherever it counts or waits.
    pub fn remove_pod(&mut self, namespace: &str, name: &str) -> Option<Arc<Pod>> {
        self.take(&PodKey::new(namespace, name))
            .map(|info| Arc::clone(&info.pod))
    }

    /// Takes a pod out wherever it counts or waits, keeping what was parsed of it, for a what-if
    /// on a working copy (preemption's dry run); [`Snapshot::restore_pod`] puts it back
    /// without parsing it again.
    pub fn take_pod(&mut self, key: &PodKey) -> Option<Arc<PodInfo>> {
        self.take(key)
    }

    /// Puts back a pod [`Snapshot::take_pod`] took out, on its `spec.nodeName`'s node (or
    /// waiting for it), replacing any pod with its key.
    pub fn restore_pod(&mut self, info: Arc<PodInfo>) {
        self.take(&info.key);
        let Some(node_name) = spec_of(&info.pod)
            .node_name
            .clone()
            .filter(|n| !n.is_empty())
        else {
            return;
        };
        self.placed.insert(info.key.clone(), node_name.clone());
        match self.index.get(&node_name) {
            Some(&at) => self.nodes[at].add(info),
            None => self.waiting.entry(node_name).or_default().push(info),
        }
    }

    /// Counts `pod` on `node` ahead of its binding (the assume cache): `add_pod` of a copy with
    /// `spec.nodeName` set. Undo with `remove_pod` when the binding fails.
    pub fn assume(&mut self, pod: &Pod, node: &str) -> PodKey {
        let mut assumed = pod.clone();
        assumed.spec.get_or_insert_with(PodSpec::default).node_name = Some(node.to_string());
        let key = PodKey::of(&assumed);
        self.add_pod(Arc::new(assumed));
        key
    }

    /// The node a pod counts on (or waits for).
    pub fn pod_node(&self, namespace: &str, name: &str) -> Option<&str> {
        self.placed
            .get(&PodKey::new(namespace, name))
            .map(String::as_str)
    }

    /// How many pods count on a node or wait for one.
    pub fn pod_count(&self) -> usize {
        self.placed.len()
    }

    /// How many nodes report an image under `name`.
    pub fn image_nodes(&self, name: &str) -> usize {
        self.image_nodes.get(name).copied().unwrap_or(0)
    }

    /// Records a namespace's labels, for terms with a `namespaceSelector`.
    pub fn upsert_namespace(&mut self, name: &str, labels: BTreeMap<String, String>) {
        self.namespaces.insert(name.to_string(), labels);
    }

    pub fn remove_namespace(&mut self, name: &str) {
        self.namespaces.remove(name);
    }

    /// The claims, volumes and storage classes, for VolumeBinding.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The claims, volumes and storage classes, to change (copied first if a working copy
    /// of the snapshot shares them).
    pub fn storage_mut(&mut self) -> &mut Storage {
        Arc::make_mut(&mut self.storage)
    }

    /// A namespace's labels; none for one the snapshot does not know.
    pub fn namespace_labels(&self, name: &str) -> &BTreeMap<String, String> {
        self.namespaces.get(name).unwrap_or(&EMPTY_LABELS)
    }

    fn take(&mut self, key: &PodKey) -> Option<Arc<PodInfo>> {
        let node = self.placed.remove(key)?;
        if let Some(&at) = self.index.get(&node) {
            return self.nodes[at].remove(key);
        }
        let waiting = self.waiting.get_mut(&node)?;
        let at = waiting.iter().position(|p| p.key == *key)?;
        let info = waiting.remove(at);
        if waiting.is_empty() {
            self.waiting.remove(&node);
        }
        Some(info)
    }
}

fn count_images(counts: &mut HashMap<String, usize>, images: &HashMap<String, i64>) {
    for name in images.keys() {
        *counts.entry(name.clone()).or_insert(0) += 1;
    }
}

fn forget_images(counts: &mut HashMap<String, usize>, images: &HashMap<String, i64>) {
    for name in images.keys() {
        let left = match counts.get_mut(name) {
            Some(count) => {
                *count = count.saturating_sub(1);
                *count
            }
            None => continue,
        };
        if left == 0 {
            counts.remove(name);
        }
    }
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
