//! [`ApplyDefaults`] for every kind the API serves: the values the Kubernetes API server fills
//! in when a field is left out (`pkg/apis/{core,apps,batch}/v1/defaults.go` and the
//! declarative `+default` markers), so objects read back the way kubectl users expect.
//!
//! - this file: the core kinds without pod templates (Service, Namespace, volumes, ...)
//!   PriorityClass and StorageClass;
//! - [`fields`]: the small "fill if unset" helpers everything shares;
//! - [`pod`]: pod specs, containers, probes and volumes, used by Pods and every template;
//! - [`workloads`]: ReplicationController and the apps and batch kinds.
//!
//! "Unset" means what it means in Go: a missing pointer, but also `""` or `0` for fields
//! that Go stores by value, because a Go client sends those when the user wrote nothing.
//! Every function only fills what is unset, so applying defaults twice equals applying once.

mod fields;
mod pod;
mod workloads;

use rudder_proto::objects::deletion::NAMESPACE_CONTENTS;
use rudder_proto::objects::priority::PREEMPT_LOWER_PRIORITY;
use rudder_proto::objects::storage::{BINDING_IMMEDIATE, RECLAIM_DELETE};
use rudder_proto::objects::taints::{add_default_toleration_seconds, DEFAULT_TOLERATION_SECONDS};
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod,
    Secret, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::ApplyDefaults;
use fields::{claim_spec, default_string, host_path};

/// The label every namespace carries with its own name, so selectors can pick namespaces.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// How long a ClientIP session affinity sticks: three hours.
const CLIENT_IP_AFFINITY_SECONDS: i32 = 10_800;

impl ApplyDefaults for Pod {
    fn apply_defaults(&mut self) {
        if let Some(spec) = &mut self.spec {
            pod::pod_spec(spec);
            pod::pod_only(spec);
        }
    }

    /// The DefaultTolerationSeconds admission: a new pod tolerates a not-ready or
    /// unreachable node for 300 s (unless it says otherwise), so a node lost for a moment
    /// does not evict it at once.
    fn admit_new(&mut self) {
        if let Some(spec) = &mut self.spec {
            add_default_toleration_seconds(
                spec,
                DEFAULT_TOLERATION_SECONDS,
                DEFAULT_TOLERATION_SECONDS,
            );
        }
    }
}

impl ApplyDefaults for Service {
    fn apply_defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        default_string(&mut spec.session_affinity, "None");
        match spec.session_affinity.as_deref() {
            Some("None") => spec.session_affinity_config = None,
            Some("ClientIP") => {
                let config = spec
                    .session_affinity_config
                    .get_or_insert_with(Default::default);
                let client_ip = config.client_ip.get_or_insert_with(Default::default);
                client_ip
                    .timeout_seconds
                    .get_or_insert(CLIENT_IP_AFFINITY_SECONDS);
            }
            _ => {}
        }
        default_string(&mut spec.type_, "ClusterIP");
        for port in spec.ports.iter_mut().flatten() {
            default_string(&mut port.protocol, "TCP");
            let unset = match &port.target_port {
                None | Some(IntOrString::Int(0)) => true,
                Some(IntOrString::String(name)) => name.is_empty(),
                Some(IntOrString::Int(_)) => false,
            };
            if unset {
                port.target_port = Some(IntOrString::Int(port.port));
            }
        }
        let type_ = spec.type_.as_deref().unwrap_or_default();
        let has_external_ips = spec
            .external_ips
            .as_ref()
            .is_some_and(|ips| !ips.is_empty());
        let externally_accessible = matches!(type_, "LoadBalancer" | "NodePort")
            || (type_ == "ClusterIP" && has_external_ips);
        if externally_accessible {
            default_string(&mut spec.external_traffic_policy, "Cluster");
        }
        if matches!(type_, "ClusterIP" | "NodePort" | "LoadBalancer") {
            spec.internal_traffic_policy
                .get_or_insert_with(|| "Cluster".to_string());
        }
        if type_ == "LoadBalancer" {
            spec.allocate_load_balancer_node_ports.get_or_insert(true);
            let ingresses = self
                .status
                .iter_mut()
                .filter_map(|status| status.load_balancer.as_mut())
                .filter_map(|load_balancer| load_balancer.ingress.as_mut())
                .flatten();
            for ingress in ingresses {
                if ingress.ip.as_ref().is_some_and(|ip| !ip.is_empty()) {
                    ingress.ip_mode.get_or_insert_with(|| "VIP".to_string());
                }
            }
        }
        // clusterIP(s), ipFamilies and ipFamilyPolicy are the registry's to allocate.
    }
}

impl ApplyDefaults for Endpoints {
    fn apply_defaults(&mut self) {
        let ports = self
            .subsets
            .iter_mut()
            .flatten()
            .flat_map(|s| s.ports.iter_mut().flatten());
        for port in ports {
            default_string(&mut port.protocol, "TCP");
        }
    }
}

impl ApplyDefaults for EndpointSlice {
    fn apply_defaults(&mut self) {
        for port in self.ports.iter_mut().flatten() {
            default_string(&mut port.protocol, "TCP");
        }
    }
}

impl ApplyDefaults for Namespace {
    fn apply_defaults(&mut self) {
        if let Some(name) = self.metadata.name.as_ref().filter(|name| !name.is_empty()) {
            let labels = self.metadata.labels.get_or_insert_with(BTreeMap::new);
            labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.clone());
        }
        let status = self.status.get_or_insert_with(Default::default);
        if status.phase.as_deref().is_none_or(str::is_empty) {
            status.phase = Some("Active".to_string());
        }
    }

    /// A new namespace holds the `kubernetes` finalizer, which the namespace controller
    /// removes once the namespace is empty (added once: never brought back after removal).
    fn admit_new(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        let finalizers = spec.finalizers.get_or_insert_with(Vec::new);
        if !finalizers.iter().any(|f| f == NAMESPACE_CONTENTS) {
            finalizers.push(NAMESPACE_CONTENTS.to_string());
        }
    }
}

impl ApplyDefaults for Node {
    fn apply_defaults(&mut self) {
        // A node that reports only its capacity can offer all of it.
        if let Some(status) = &mut self.status {
            if status.allocatable.is_none() {
                status.allocatable.clone_from(&status.capacity);
            }
        }
    }
}

impl ApplyDefaults for Secret {
    fn apply_defaults(&mut self) {
        default_string(&mut self.type_, "Opaque");
    }
}

impl ApplyDefaults for PersistentVolume {
    fn apply_defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        default_string(&mut spec.persistent_volume_reclaim_policy, "Retain");
        spec.volume_mode
            .get_or_insert_with(|| "Filesystem".to_string());
        if let Some(source) = &mut spec.host_path {
            host_path(source);
        }
        let status = self.status.get_or_insert_with(Default::default);
        default_string(&mut status.phase, "Pending");
    }
}

impl ApplyDefaults for PersistentVolumeClaim {
    fn apply_defaults(&mut self) {
        claim_spec(self.spec.get_or_insert_with(Default::default));
        let status = self.status.get_or_insert_with(Default::default);
        default_string(&mut status.phase, "Pending");
    }
}

impl ApplyDefaults for PriorityClass {
    /// A class that does not say lets its pods preempt lower-priority ones. Go keeps the
    /// policy behind a pointer, so `""` is a value (which validation refuses), not unset.
    fn apply_defaults(&mut self) {
        self.preemption_policy
            .get_or_insert_with(|| PREEMPT_LOWER_PRIORITY.to_string());
    }
}

impl ApplyDefaults for StorageClass {
    /// A class that does not say deletes its volumes with their claims and binds them at
    /// once (`SetDefaults_StorageClass`); `""` is a value, as in Go.
    fn apply_defaults(&mut self) {
        self.reclaim_policy
            .get_or_insert_with(|| RECLAIM_DELETE.to_string());
        self.volume_binding_mode
            .get_or_insert_with(|| BINDING_IMMEDIATE.to_string());
    }
}

/// Kinds the Kubernetes API server fills nothing in for.
macro_rules! nothing_to_default {
    ($($kind:ty),*) => {$(
        impl ApplyDefaults for $kind {
            fn apply_defaults(&mut self) {}
        }
    )*};
}

nothing_to_default!(
    ConfigMap,
    Event,
    ControllerRevision,
    Lease,
    ServiceAccount,
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding
);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::fields::defaulted;
    use super::*;

    #[test]
    fn a_new_pod_tolerates_a_lost_node_for_five_minutes_unless_it_says_otherwise() {
        let mut pod: Pod = serde_json::from_value(json!({
            "spec": { "containers": [{ "name": "c", "image": "i" }],
                      "tolerations": [{ "key": "node.kubernetes.io/unreachable",
                                        "operator": "Exists", "effect": "NoExecute",
                                        "tolerationSeconds": 5 }] } }))
        .unwrap();
        pod.admit_new();
        let tolerations = serde_json::to_value(&pod.spec.as_ref().unwrap().tolerations).unwrap();
        assert_eq!(
            tolerations,
            json!([
                { "key": "node.kubernetes.io/unreachable", "operator": "Exists",
                  "effect": "NoExecute", "tolerationSeconds": 5 },
                { "key": "node.kubernetes.io/not-ready", "operator": "Exists",
                  "effect": "NoExecute", "tolerationSeconds": 300 }
            ])
        );
        let mut again = pod.clone();
        again.admit_new();
        assert_eq!(again, pod, "once is enough");
    }

    #[test]
    fn a_minimal_service_gets_cluster_ip_defaults() {
        let service = defaulted::<Service>(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubia"},
            "spec": {
                "selector": {"app": "kubia"},
                "ports": [{"port": 80, "targetPort": 8080}, {"name": "metrics", "port": 9090}]
            }
        }));
        let spec = &service["spec"];
        assert_eq!(spec["type"], "ClusterIP");
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert_eq!(spec["ports"][0]["protocol"], "TCP");
        assert_eq!(spec["ports"][0]["targetPort"], 8080);
        assert_eq!(spec["ports"][1]["targetPort"], 9090);
        assert!(spec.get("externalTrafficPolicy").is_none());
        assert!(spec.get("ipFamilies").is_none());
        assert!(spec.get("clusterIP").is_none());
    }

    #[test]
    fn a_load_balancer_service_gets_external_defaults() {
        let service = defaulted::<Service>(json!({
            "metadata": {"name": "web"},
            "spec": {
                "type": "LoadBalancer",
                "sessionAffinity": "ClientIP",
                "ports": [{"port": 443, "targetPort": "https", "protocol": "UDP"}]
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.9"}, {"hostname": "lb"}]}}
        }));
        let spec = &service["spec"];
        assert_eq!(spec["externalTrafficPolicy"], "Cluster");
        assert_eq!(spec["allocateLoadBalancerNodePorts"], true);
        assert_eq!(
            spec["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
            10800
        );
        assert_eq!(spec["ports"][0]["protocol"], "UDP");
        assert_eq!(spec["ports"][0]["targetPort"], "https");
        let ingress = &service["status"]["loadBalancer"]["ingress"];
        assert_eq!(ingress[0]["ipMode"], "VIP");
        assert!(ingress[1].get("ipMode").is_none());
    }

    #[test]
    fn an_external_name_service_has_no_traffic_policies() {
        let service = defaulted::<Service>(json!({
            "metadata": {"name": "db"},
            "spec": {"type": "ExternalName", "externalName": "db.example.com"}
        }));
        assert!(service["spec"].get("internalTrafficPolicy").is_none());
        assert!(service["spec"].get("externalTrafficPolicy").is_none());
    }

    #[test]
    fn session_affinity_none_drops_its_config() {
        let service = defaulted::<Service>(json!({
            "metadata": {"name": "web"},
            "spec": {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}
        }));
        assert!(service["spec"].get("sessionAffinityConfig").is_none());
    }

    #[test]
    fn endpoint_ports_default_to_tcp() {
        let endpoints = defaulted::<Endpoints>(json!({
            "metadata": {"name": "kubia"},
            "subsets": [{
                "addresses": [{"ip": "10.1.0.4"}],
                "ports": [{"port": 8080}, {"port": 53, "protocol": "UDP"}]
            }]
        }));
        assert_eq!(endpoints["subsets"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(endpoints["subsets"][0]["ports"][1]["protocol"], "UDP");
    }

    #[test]
    fn a_new_namespace_is_active_with_the_kubernetes_finalizer() {
        let namespace = defaulted::<Namespace>(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "custom-namespace"}
        }));
        assert_eq!(namespace["status"]["phase"], "Active");
        assert_eq!(
            namespace["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "custom-namespace"
        );
        let mut created: Namespace = serde_json::from_value(namespace).unwrap();
        created.admit_new();
        created.admit_new();
        assert_eq!(
            created.spec.unwrap().finalizers.unwrap(),
            vec!["kubernetes".to_string()]
        );
    }

    #[test]
    fn defaults_never_bring_a_removed_namespace_finalizer_back() {
        let namespace = defaulted::<Namespace>(json!({
            "metadata": {"name": "going", "labels": {"team": "a"}},
            "spec": {"finalizers": []},
            "status": {"phase": "Terminating"}
        }));
        assert_eq!(namespace["spec"]["finalizers"], json!([]));
        assert_eq!(namespace["status"]["phase"], "Terminating");
        assert_eq!(namespace["metadata"]["labels"]["team"], "a");
    }

    #[test]
    fn node_allocatable_defaults_to_capacity() {
        let node = defaulted::<Node>(json!({
            "metadata": {"name": "n1"},
            "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}}
        }));
        assert_eq!(node["status"]["allocatable"], node["status"]["capacity"]);
        let bare = defaulted::<Node>(json!({"metadata": {"name": "n2"}, "spec": {}}));
        assert!(bare.get("status").is_none());
    }

    #[test]
    fn secrets_are_opaque_unless_typed() {
        let opaque = defaulted::<Secret>(json!({
            "metadata": {"name": "creds"}, "stringData": {"password": "hunter2"}
        }));
        assert_eq!(opaque["type"], "Opaque");
        let tls = defaulted::<Secret>(json!({
            "metadata": {"name": "cert"}, "type": "kubernetes.io/tls"
        }));
        assert_eq!(tls["type"], "kubernetes.io/tls");
    }

    #[test]
    fn persistent_volumes_are_retained_filesystems_pending_a_claim() {
        let volume = defaulted::<PersistentVolume>(json!({
            "metadata": {"name": "pv-a"},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "hostPath": {"path": "/tmp/pv-a"}
            }
        }));
        assert_eq!(volume["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(volume["spec"]["volumeMode"], "Filesystem");
        assert_eq!(volume["spec"]["hostPath"]["type"], "");
        assert_eq!(volume["status"]["phase"], "Pending");
    }

    #[test]
    fn claims_are_filesystems_pending_a_volume() {
        let claim = defaulted::<PersistentVolumeClaim>(json!({
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}
            }
        }));
        assert_eq!(claim["spec"]["volumeMode"], "Filesystem");
        assert_eq!(claim["status"]["phase"], "Pending");
        let block = defaulted::<PersistentVolumeClaim>(json!({
            "metadata": {"name": "raw"},
            "spec": {"volumeMode": "Block"},
            "status": {"phase": "Bound"}
        }));
        assert_eq!(block["spec"]["volumeMode"], "Block");
        assert_eq!(block["status"]["phase"], "Bound");
    }

    #[test]
    fn a_priority_class_preempts_lower_priority_unless_it_says_never() {
        let plain = defaulted::<PriorityClass>(json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": "high"}, "value": 1000
        }));
        assert_eq!(plain["preemptionPolicy"], "PreemptLowerPriority");
        assert_eq!(plain["value"], 1000);
        let polite = defaulted::<PriorityClass>(json!({
            "metadata": {"name": "batch"}, "value": 10, "preemptionPolicy": "Never"
        }));
        assert_eq!(polite["preemptionPolicy"], "Never");
    }

    #[test]
    fn kinds_without_defaults_are_left_as_written() {
        let config_map = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings"}, "data": {"a": "1"}
        });
        assert_eq!(defaulted::<ConfigMap>(config_map.clone()), config_map);
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "lock"}, "spec": {"holderIdentity": "n1"}
        });
        assert_eq!(defaulted::<Lease>(lease.clone()), lease);
    }

    #[test]
    fn every_core_kind_is_idempotent_from_an_empty_object() {
        // `defaulted` asserts that a second pass changes nothing.
        let empty = || json!({"metadata": {"name": "x"}});
        defaulted::<Pod>(empty());
        defaulted::<Node>(empty());
        defaulted::<Service>(empty());
        defaulted::<Endpoints>(empty());
        defaulted::<Namespace>(empty());
        defaulted::<Event>(json!({"metadata": {"name": "x"}, "involvedObject": {}}));
        defaulted::<ConfigMap>(empty());
        defaulted::<Secret>(empty());
        defaulted::<PersistentVolume>(empty());
        defaulted::<PersistentVolumeClaim>(empty());
        defaulted::<ControllerRevision>(json!({"metadata": {"name": "x"}, "revision": 1}));
        defaulted::<Lease>(empty());
        defaulted::<PriorityClass>(empty());
    }
}
