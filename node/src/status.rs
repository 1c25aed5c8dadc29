//! The Node object a kubelet registers and keeps current, and its Lease heartbeat. Pure:
//! machine facts and the time in, Kubernetes objects out.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};

use crate::machine::Machine;

/// The namespace node heartbeats live in, as in Kubernetes.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// The version this kubelet reports (`kubectl get nodes` VERSION).
pub const KUBELET_VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"), "-rudder");

/// What a node is configured as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    pub name: String,
    /// The address pods and the control plane reach this node at.
    pub internal_ip: String,
    pub pod_cidr: Option<String>,
    pub max_pods: u32,
    pub labels: BTreeMap<String, String>,
    /// The node's streaming (logs/exec) port.
    pub kubelet_port: i32,
    /// What runs the containers (`libcontainer://0.7`, or `fake://` for hollow nodes).
    pub runtime_version: String,
}

/// The Node to register.
pub fn node_object(config: &NodeConfig, machine: &Machine, now: jiff::Timestamp) -> Node {
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), config.name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        (
            "kubernetes.io/arch".to_string(),
            machine.architecture.clone(),
        ),
    ]);
    labels.extend(config.labels.clone());
    Node {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: config.pod_cidr.clone(),
            pod_cidrs: config.pod_cidr.clone().map(|cidr| vec![cidr]),
            ..Default::default()
        }),
        status: Some(node_status(config, machine, None, now)),
    }
}

/// The node's status now. Conditions keep their `lastTransitionTime` while their status is
/// unchanged since `previous`; heartbeat times move to `now`.
pub fn node_status(
    config: &NodeConfig,
    machine: &Machine,
    previous: Option<&NodeStatus>,
    now: jiff::Timestamp,
) -> NodeStatus {
    let resources = BTreeMap::from([
        ("cpu".to_string(), Quantity(machine.cpus.to_string())),
        (
            "memory".to_string(),
            Quantity(format!("{}Ki", machine.memory_bytes / 1024)),
        ),
        ("pods".to_string(), Quantity(config.max_pods.to_string())),
    ]);
    let conditions = [
        (
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
        ),
        (
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        (
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        (
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
    ]
    .into_iter()
    .map(|(kind, status, reason, message)| {
        let transition = previous
            .and_then(|p| p.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == kind))
            .filter(|c| c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        NodeCondition {
            type_: kind.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time: Some(transition),
        }
    })
    .collect();
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        conditions: Some(conditions),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: config.internal_ip.clone(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: config.name.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(k8s_openapi::api::core::v1::DaemonEndpoint {
                port: config.kubelet_port,
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: machine.architecture.clone(),
            boot_id: machine.boot_id.clone(),
            container_runtime_version: config.runtime_version.clone(),
            kernel_version: machine.kernel_version.clone(),
            kube_proxy_version: KUBELET_VERSION.into(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: machine.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: machine.os_image.clone(),
            system_uuid: machine.machine_id.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The node's Lease after a renewal at `now`: created if missing, taken over (a new epoch)
/// if someone else held it, else only `renewTime` moves.
pub fn renewed_lease(
    current: Option<&Lease>,
    holder: &str,
    duration_seconds: i32,
    now: jiff::Timestamp,
) -> Lease {
    let mut lease = current.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(holder.into()),
            namespace: Some(NODE_LEASE_NAMESPACE.into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec::default()),
    });
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(holder) {
        spec.holder_identity = Some(holder.into());
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.map_or(0, |t| t + 1));
    }
    spec.lease_duration_seconds = Some(duration_seconds);
    spec.renew_time = Some(MicroTime(now));
    lease
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            cpus: 2,
            memory_bytes: 24 * 1024 * 1024 * 1024,
            kernel_version: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            architecture: "amd64".into(),
            hostname: "vm".into(),
            machine_id: "m".into(),
            boot_id: "b".into(),
        }
    }

    fn config() -> NodeConfig {
        NodeConfig {
            name: "n1".into(),
            internal_ip: "127.0.0.1".into(),
            pod_cidr: Some("10.244.1.0/24".into()),
            max_pods: 110,
            labels: BTreeMap::new(),
            kubelet_port: 10250,
            runtime_version: "libcontainer://0.7".into(),
        }
    }

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    #[test]
    fn a_registered_node_is_ready_with_its_machines_capacity() {
        let node = node_object(&config(), &machine(), at(0));
        let status = node.status.unwrap();
        assert_eq!(
            status.capacity.as_ref().unwrap()["cpu"],
            Quantity("2".into())
        );
        assert_eq!(
            status.capacity.as_ref().unwrap()["memory"],
            Quantity("25165824Ki".into())
        );
        assert_eq!(
            status.allocatable.as_ref().unwrap()["pods"],
            Quantity("110".into())
        );
        let ready = &status.conditions.unwrap()[0];
        assert_eq!(
            (ready.type_.as_str(), ready.status.as_str()),
            ("Ready", "True")
        );
        assert_eq!(
            node.spec.unwrap().pod_cidr.as_deref(),
            Some("10.244.1.0/24")
        );
        assert_eq!(
            node.metadata.labels.unwrap()["kubernetes.io/hostname"],
            "n1"
        );
    }

    #[test]
    fn heartbeats_move_but_transitions_stay_while_nothing_changes() {
        let first = node_status(&config(), &machine(), None, at(0));
        let later = node_status(&config(), &machine(), Some(&first), at(10));
        let ready = &later.conditions.unwrap()[0];
        assert_eq!(ready.last_heartbeat_time, Some(Time(at(10))));
        assert_eq!(ready.last_transition_time, Some(Time(at(0))));
    }

    #[test]
    fn a_lease_renewal_moves_only_the_renew_time_for_its_holder() {
        let created = renewed_lease(None, "n1", 40, at(0));
        let spec = created.spec.as_ref().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("n1"));
        assert_eq!(spec.lease_transitions, Some(0));
        let renewed = renewed_lease(Some(&created), "n1", 40, at(10));
        let spec = renewed.spec.as_ref().unwrap();
        assert_eq!(spec.renew_time, Some(MicroTime(at(10))));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(0))));
        assert_eq!(spec.lease_transitions, Some(0));
        let taken = renewed_lease(Some(&renewed), "other", 40, at(20));
        assert_eq!(taken.spec.unwrap().lease_transitions, Some(1));
    }
}
