//! Requests and allocatable as kube-scheduler counts them: a pod's requests
//! (`component-helpers/resource.PodRequests`), the "non-zero" requests its scores use for
//! containers that ask for nothing, a node's allocatable (`framework.NewResource`), and what a
//! node lacks for a pod (`noderesources.Fit`). Pure.
//!
//! ```text
//!  requests = max( Σ containers + Σ sidecars,
//!                  max over init containers i of (init_i + Σ sidecars started before i) )
//!             with pod-level `resources.requests` (cpu, memory, hugepages-*) replacing that,
//!             + overhead
//!  sidecar = init container with restartPolicy: Always (it keeps running beside the others)
//! ```
//!
//! Quantities are summed exactly (in nano-units) and rounded up once at the end, as Kubernetes
//! sums `resource.Quantity`s before `MilliValue()` (cpu) or `Value()` (the rest). A quantity
//! that does not parse counts as zero: validation keeps such pods out.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use rudder_proto::objects::quantity::Quantity;

use crate::pods::cached::{Container, PodSpec};

pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
pub const PODS: &str = "pods";

/// The CPU scores assume for a container that requests none (`DefaultMilliCPURequest`, 100m).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// The memory scores assume for a container that requests none (`DefaultMemoryRequest`, 200Mi).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

const NANOS_PER_MILLI: i128 = 1_000_000;
const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// Quantities by resource name in nano-units, so sums are exact until the final rounding.
type Nanos = BTreeMap<String, i128>;

/// Amounts of the resources the scheduler counts (kube-scheduler's `framework.Resource`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    /// Bytes.
    pub memory: i64,
    /// Bytes.
    pub ephemeral_storage: i64,
    /// Pod slots: a pod's requests hold 1, a node's allocatable its `pods`.
    pub pods: i64,
    /// Extended resources (`example.com/gpu`), `hugepages-*`, `attachable-volumes-*` and
    /// `kubernetes.io/`-prefixed ones, in whole units.
    pub scalar: BTreeMap<String, i64>,
}

/// One resource a node lacks for a pod; several can be lacking at once.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Insufficient {
    Pods,
    Cpu,
    Memory,
    EphemeralStorage,
    Scalar(String),
}

impl Insufficient {
    /// kube-scheduler's reason text ("Insufficient cpu", "Too many pods").
    pub fn reason(&self) -> String {
        match self {
            Insufficient::Pods => "Too many pods".to_string(),
            Insufficient::Cpu => "Insufficient cpu".to_string(),
            Insufficient::Memory => "Insufficient memory".to_string(),
            Insufficient::EphemeralStorage => "Insufficient ephemeral-storage".to_string(),
            Insufficient::Scalar(name) => format!("Insufficient {name}"),
        }
    }
}

impl Resources {
    /// A resource list (`status.allocatable`, `spec.overhead`) as the scheduler counts it:
    /// names it does not count (`foo`, `requests.cpu`) are dropped.
    pub fn from_list(list: &BTreeMap<String, ApiQuantity>) -> Self {
        Self::from_nanos(&to_nanos(Some(list)))
    }

    fn from_nanos(list: &Nanos) -> Self {
        let mut resources = Self::default();
        for (name, &nanos) in list {
            let quantity = Quantity::from_nanos(nanos);
            match name.as_str() {
                CPU => resources.milli_cpu = clamp(quantity.millis()),
                MEMORY => resources.memory = clamp(quantity.units()),
                EPHEMERAL_STORAGE => resources.ephemeral_storage = clamp(quantity.units()),
                PODS => resources.pods = clamp(quantity.units()),
                other if is_scalar_resource(other) => {
                    resources
                        .scalar
                        .insert(other.to_string(), clamp(quantity.units()));
                }
                _ => {}
            }
        }
        resources
    }

    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        self.pods = self.pods.saturating_add(other.pods);
        for (name, value) in &other.scalar {
            let entry = self.scalar.entry(name.clone()).or_insert(0);
            *entry = entry.saturating_add(*value);
        }
    }

    /// Takes `other` away; a scalar that comes down to zero is dropped, so a node's sums hold
    /// only what its pods still request.
    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_sub(other.ephemeral_storage);
        self.pods = self.pods.saturating_sub(other.pods);
        for (name, value) in &other.scalar {
            let left = {
                let entry = self.scalar.entry(name.clone()).or_insert(0);
                *entry = entry.saturating_sub(*value);
                *entry
            };
            if left == 0 {
                self.scalar.remove(name);
            }
        }
    }

    /// What a node with `allocatable`, of which its pods request `used`, lacks for a pod that
    /// requests `self`, in kube-scheduler's order: pods, cpu, memory, ephemeral-storage, then
    /// scalars by name (`fitsRequest`). A request of zero never lacks anything, and a node
    /// takes one more pod only below its `pods`.
    pub fn shortfalls(&self, used: &Resources, allocatable: &Resources) -> Vec<Insufficient> {
        let mut lacking = Vec::new();
        // A bug plantable by chaos runs (off unless planted; looked up only for a full node):
        // the node's pod limit forgotten.
        if used.pods.saturating_add(1) > allocatable.pods
            && rudder_proto::failpoints::eval("scheduler-ignores-pod-limit", |_| ()).is_none()
        {
            lacking.push(Insufficient::Pods);
        }
        let short = |request: i64, used: i64, allocatable: i64| {
            request > 0 && request > allocatable.saturating_sub(used)
        };
        if short(self.milli_cpu, used.milli_cpu, allocatable.milli_cpu) {
            lacking.push(Insufficient::Cpu);
        }
        if short(self.memory, used.memory, allocatable.memory) {
            lacking.push(Insufficient::Memory);
        }
        if short(
            self.ephemeral_storage,
            used.ephemeral_storage,
            allocatable.ephemeral_storage,
        ) {
            lacking.push(Insufficient::EphemeralStorage);
        }
        for (name, &request) in &self.scalar {
            let used = used.scalar.get(name).copied().unwrap_or(0);
            let allocatable = allocatable.scalar.get(name).copied().unwrap_or(0);
            if request != 0 && request > allocatable.saturating_sub(used) {
                lacking.push(Insufficient::Scalar(name.clone()));
            }
        }
        lacking
    }

    /// Whether a pod requesting `self` fits beside `used` within `allocatable`.
    pub fn fits(&self, used: &Resources, allocatable: &Resources) -> bool {
        self.shortfalls(used, allocatable).is_empty()
    }
}

/// Whether the scheduler counts `name` as a scalar resource (`IsScalarResourceName`): an
/// extended resource (a domain-prefixed name outside `kubernetes.io/`), a `kubernetes.io/`
/// prefixed native one, `hugepages-*` or `attachable-volumes-*`.
pub fn is_scalar_resource(name: &str) -> bool {
    let prefixed_native = name.contains("kubernetes.io/");
    let extended = name.contains('/') && !prefixed_native && !name.starts_with("requests.");
    extended
        || prefixed_native
        || name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
}

/// An init container that keeps running beside the app containers (`restartPolicy: Always`).
pub fn is_sidecar(container: &Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
}

/// What the pod requests (`PodRequests` with pod-level resources and overhead), holding one
/// pod slot.
pub fn pod_requests(spec: &PodSpec) -> Resources {
    Resources {
        pods: 1,
        ..Resources::from_nanos(&aggregate(spec, &[]))
    }
}

/// The pod's CPU and memory requests with 100m and 200Mi for each container that leaves one
/// out (an explicit zero stays zero): what LeastAllocated scores and a node's
/// `non_zero_requested` sums. Only `milli_cpu` and `memory` are set.
pub fn non_zero_requests(spec: &PodSpec) -> Resources {
    let defaults = [
        (CPU, i128::from(DEFAULT_MILLI_CPU_REQUEST) * NANOS_PER_MILLI),
        (MEMORY, i128::from(DEFAULT_MEMORY_REQUEST) * NANOS_PER_UNIT),
    ];
    let all = Resources::from_nanos(&aggregate(spec, &defaults));
    Resources {
        milli_cpu: all.milli_cpu,
        memory: all.memory,
        ..Resources::default()
    }
}

/// The node's `status.allocatable`. A resource it leaves out is zero, `pods` included: a node
/// that reports no `pods` takes no pod ("Too many pods"), as in kube-scheduler.
pub fn allocatable(node: &Node) -> Resources {
    node.status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .map(Resources::from_list)
        .unwrap_or_default()
}

/// `AggregateContainerRequests`, then pod-level requests and overhead; `defaults` fill in what
/// a container leaves out (`NonMissingContainerRequests`).
fn aggregate(spec: &PodSpec, defaults: &[(&str, i128)]) -> Nanos {
    let mut total = Nanos::new();
    for container in &spec.containers {
        add_into(&mut total, &container_requests(container, defaults));
    }
    // An init container runs beside the sidecars started before it; sidecars run on beside
    // the app containers too.
    let mut sidecars = Nanos::new();
    let mut init_peak = Nanos::new();
    for container in spec.init_containers.iter().flatten() {
        let requests = container_requests(container, defaults);
        let during = if is_sidecar(container) {
            add_into(&mut total, &requests);
            add_into(&mut sidecars, &requests);
            sidecars.clone()
        } else {
            let mut during = requests;
            add_into(&mut during, &sidecars);
            during
        };
        max_into(&mut init_peak, &during);
    }
    max_into(&mut total, &init_peak);

    let pod_level = spec.resources.as_ref().and_then(|r| r.requests.as_ref());
    for (name, quantity) in pod_level.into_iter().flatten() {
        if name == CPU || name == MEMORY || name.starts_with("hugepages-") {
            total.insert(name.clone(), nanos_of(quantity));
        }
    }
    add_into(&mut total, &to_nanos(spec.overhead.as_ref()));
    total
}

fn container_requests(container: &Container, defaults: &[(&str, i128)]) -> Nanos {
    let mut requests = to_nanos(
        container
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref()),
    );
    for (name, value) in defaults {
        requests.entry((*name).to_string()).or_insert(*value);
    }
    requests
}

fn to_nanos(list: Option<&BTreeMap<String, ApiQuantity>>) -> Nanos {
    list.into_iter()
        .flatten()
        .map(|(name, quantity)| (name.clone(), nanos_of(quantity)))
        .collect()
}

fn nanos_of(quantity: &ApiQuantity) -> i128 {
    Quantity::parse(&quantity.0)
        .map(Quantity::nanos)
        .unwrap_or(0)
}

fn add_into(into: &mut Nanos, from: &Nanos) {
    for (name, value) in from {
        let entry = into.entry(name.clone()).or_insert(0);
        *entry = entry.saturating_add(*value);
    }
}

fn max_into(into: &mut Nanos, from: &Nanos) {
    for (name, value) in from {
        let entry = into.entry(name.clone()).or_insert(*value);
        if *value > *entry {
            *entry = *value;
        }
    }
}

fn clamp(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn spec(json: Value) -> PodSpec {
        serde_json::from_value(json).expect("a test pod spec decodes")
    }

    fn container(name: &str, requests: Value) -> Value {
        json!({ "name": name, "resources": { "requests": requests } })
    }

    fn sidecar(name: &str, requests: Value) -> Value {
        json!({ "name": name, "restartPolicy": "Always", "resources": { "requests": requests } })
    }

    fn cpu_and_memory(r: &Resources) -> (i64, i64) {
        (r.milli_cpu, r.memory)
    }

    #[test]
    fn requests_sum_containers_and_take_the_largest_init_container() {
        let table = [
            (
                // kube-scheduler's own example in computePodResourceRequest.
                json!({
                    "initContainers": [container("ic1", json!({ "cpu": "2", "memory": "1G" })),
                                       container("ic2", json!({ "cpu": "2", "memory": "3G" }))],
                    "containers": [container("c1", json!({ "cpu": "2", "memory": "1G" })),
                                   container("c2", json!({ "cpu": "1", "memory": "1G" }))] }),
                (3000, 3_000_000_000),
                "containers sum, init containers max",
            ),
            (
                json!({
                    "initContainers": [sidecar("s1", json!({ "cpu": "1" })),
                                       container("i1", json!({ "cpu": "2" })),
                                       sidecar("s2", json!({ "cpu": "500m" }))],
                    "containers": [container("c", json!({ "cpu": "1" }))] }),
                (3000, 0),
                "i1 runs beside s1 (3) which beats c + s1 + s2 (2.5)",
            ),
            (
                json!({
                    "initContainers": [sidecar("s1", json!({ "cpu": "1" })),
                                       container("i1", json!({ "cpu": "500m" }))],
                    "containers": [container("c", json!({ "cpu": "2" }))] }),
                (3000, 0),
                "sidecars add to the containers",
            ),
            (
                json!({ "containers": [container("c", json!({ "cpu": "1", "memory": "1Gi" }))],
                        "overhead": { "cpu": "250m", "memory": "100Mi" } }),
                (1250, (1024 + 100) * 1024 * 1024),
                "overhead is added",
            ),
            (
                json!({ "containers": [container("c", json!({ "cpu": "1", "memory": "1Gi" }))],
                        "resources": { "requests": { "cpu": "2" } },
                        "overhead": { "cpu": "100m" } }),
                (2100, 1024 * 1024 * 1024),
                "pod-level cpu replaces the containers', then overhead",
            ),
            (
                json!({ "containers": [container("a", json!({ "cpu": "500u" })),
                                       container("b", json!({ "cpu": "500u" }))] }),
                (1, 0),
                "summed exactly, rounded once",
            ),
            (
                json!({ "containers": [container("a", json!({ "cpu": "lots" })),
                                       container("b", json!({ "cpu": "1" }))] }),
                (1000, 0),
                "an unparsable quantity is zero",
            ),
        ];
        for (json, expected, why) in table {
            let requests = pod_requests(&spec(json));
            assert_eq!(cpu_and_memory(&requests), expected, "{why}");
            assert_eq!(requests.pods, 1, "{why}");
        }
    }

    #[test]
    fn scalar_and_storage_requests_are_counted_and_unknown_names_dropped() {
        let requests = pod_requests(&spec(json!({ "containers": [container("c", json!({
            "ephemeral-storage": "1Gi", "example.com/gpu": "2", "hugepages-2Mi": "4Mi",
            "foo": "1", "requests.example.com/x": "1" }))] })));
        assert_eq!(requests.ephemeral_storage, 1024 * 1024 * 1024);
        let expected: BTreeMap<String, i64> = [
            ("example.com/gpu".to_string(), 2),
            ("hugepages-2Mi".to_string(), 4 * 1024 * 1024),
        ]
        .into();
        assert_eq!(requests.scalar, expected);
    }

    #[test]
    fn non_zero_requests_fill_in_what_each_container_leaves_out() {
        let table = [
            (
                json!({ "containers": [{ "name": "c" }] }),
                (100, DEFAULT_MEMORY_REQUEST),
            ),
            (
                json!({ "containers": [{ "name": "a" }, container("b", json!({ "cpu": "1" }))] }),
                (1100, 2 * DEFAULT_MEMORY_REQUEST),
            ),
            (
                json!({ "containers": [container("c", json!({ "cpu": "0" }))] }),
                (0, DEFAULT_MEMORY_REQUEST),
            ),
            (
                json!({ "containers": [container("c", json!({ "cpu": "1" }))],
                        "initContainers": [{ "name": "i" }] }),
                (1000, DEFAULT_MEMORY_REQUEST),
            ),
        ];
        for (json, expected) in table {
            let requests = non_zero_requests(&spec(json.clone()));
            assert_eq!(cpu_and_memory(&requests), expected, "{json}");
            assert_eq!(requests.pods, 0);
        }
    }

    #[test]
    fn allocatable_comes_from_status_and_missing_pods_means_none() {
        let node: Node = serde_json::from_value(json!({ "metadata": { "name": "n1" },
            "status": { "allocatable": { "cpu": "3900m", "memory": "8Gi",
                        "example.com/gpu": "2", "foo": "1" } } }))
        .unwrap();
        let a = allocatable(&node);
        assert_eq!(
            (a.milli_cpu, a.memory, a.pods),
            (3900, 8 * 1024 * 1024 * 1024, 0)
        );
        assert_eq!(a.scalar.get("example.com/gpu"), Some(&2));
        assert!(!a.scalar.contains_key("foo"));
        assert_eq!(
            allocatable(&Node::default()),
            Resources::default(),
            "no status"
        );
    }

    #[test]
    fn shortfalls_list_every_lacking_resource_in_kubernetes_order() {
        let allocatable = Resources {
            milli_cpu: 1000,
            memory: 1000,
            ephemeral_storage: 1000,
            pods: 2,
            scalar: [("example.com/gpu".to_string(), 1)].into(),
        };
        let used = Resources {
            milli_cpu: 600,
            memory: 600,
            pods: 2,
            ..Resources::default()
        };
        let request = Resources {
            milli_cpu: 500,
            memory: 400,
            ephemeral_storage: 2000,
            pods: 1,
            scalar: [
                ("example.com/gpu".to_string(), 2),
                ("example.com/fpga".to_string(), 1),
            ]
            .into(),
        };
        let lacking = request.shortfalls(&used, &allocatable);
        let reasons: Vec<String> = lacking.iter().map(Insufficient::reason).collect();
        assert_eq!(
            reasons,
            [
                "Too many pods",
                "Insufficient cpu",
                "Insufficient ephemeral-storage",
                "Insufficient example.com/fpga",
                "Insufficient example.com/gpu",
            ]
        );
        let small = Resources {
            milli_cpu: 400,
            pods: 1,
            ..Resources::default()
        };
        let one_slot_used = Resources {
            pods: 1,
            ..used.clone()
        };
        assert!(small.fits(&one_slot_used, &allocatable));
        assert!(!small.fits(&used, &allocatable), "no pod slot left");
    }

    #[test]
    fn add_then_sub_returns_to_where_it_was() {
        let mut sum = Resources::default();
        let a = pod_requests(&spec(json!({ "containers": [container("c", json!({
            "cpu": "1", "memory": "1Gi", "example.com/gpu": "1" }))] })));
        sum.add(&a);
        sum.add(&a);
        assert_eq!(sum.milli_cpu, 2000);
        assert_eq!(sum.pods, 2);
        sum.sub(&a);
        sum.sub(&a);
        assert_eq!(sum, Resources::default(), "zeroed scalars are dropped");
    }
}
