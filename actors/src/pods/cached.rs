//! A pod as the controllers and the scheduler keep it in their shared cache: the fields
//! something in this crate reads, under the names and types k8s-openapi gives them, so code
//! reads `pod.spec.as_ref()?.node_name` on either. Decoded straight from the API's JSON;
//! what is not kept is skipped. Pure.
//!
//! k8s-openapi's `Pod` is 2.2 KB before anything is in it and each `Container` 2.1 KB: a
//! Running pod of one container (`rudder bench controllers`' pods, as admission and a
//! hollow kubelet leave them) decodes to 17.5 KB of heap, and took 8 KB in the cache with
//! what only the kubelet reads cleared. This one takes 3.4 KB (a counting allocator's
//! figure for that pod; the masters' memory is in BENCHMARKS.md).
//!
//! Kept: all of `metadata` but its managed fields; of `spec`, what placement, readiness and
//! the controllers' identity checks read (requests, not limits; claim volumes only); of
//! `status`, the phase, reason, message, conditions, pod IP, nominated node, start time and
//! each container's readiness, restarts and state. Whatever a controller patches back
//! (owner references, finalizers, labels, conditions) is kept whole, every subfield.
//!
//! A cached pod is never written back (nor encoded, but by tests that edit one as JSON):
//! controllers change pods by patch, create them from their own templates (k8s-openapi's
//! `Pod`), and bind them with a Binding. Tests and tools that hold a k8s-openapi `Pod`
//! convert it with `Pod::from`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1;
use k8s_openapi::api::core::v1::{
    Affinity, ContainerPort, ContainerState, EphemeralVolumeSource,
    PersistentVolumeClaimVolumeSource, PodCondition, PodSchedulingGate, ResourceRequirements,
    Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Deserializer};

/// A pod, as kept by the shared cache.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct Pod {
    #[serde(default, deserialize_with = "metadata")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Option<PodSpec>,
    #[serde(default)]
    pub status: Option<PodStatus>,
}

/// What is kept of `spec`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// Boxed: most pods have none, and an empty one is 144 bytes.
    #[serde(default)]
    pub affinity: Option<Box<Affinity>>,
    #[serde(default, deserialize_with = "shrunk_list")]
    pub containers: Vec<Container>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default, deserialize_with = "shrunk")]
    pub init_containers: Option<Vec<Container>>,
    #[serde(default)]
    pub node_name: Option<String>,
    #[serde(default)]
    pub node_selector: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub overhead: Option<BTreeMap<String, Quantity>>,
    #[serde(default)]
    pub preemption_policy: Option<String>,
    #[serde(default)]
    pub priority: Option<i32>,
    #[serde(default)]
    pub resources: Option<Requests>,
    #[serde(default)]
    pub restart_policy: Option<String>,
    #[serde(default)]
    pub scheduler_name: Option<String>,
    #[serde(default, deserialize_with = "shrunk")]
    pub scheduling_gates: Option<Vec<PodSchedulingGate>>,
    #[serde(default)]
    pub subdomain: Option<String>,
    #[serde(default, deserialize_with = "shrunk")]
    pub tolerations: Option<Vec<Toleration>>,
    #[serde(default, deserialize_with = "shrunk")]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// Claim volumes only (`persistentVolumeClaim`, `ephemeral`); a pod with none has `None`.
    #[serde(default, deserialize_with = "claim_volumes")]
    pub volumes: Option<Vec<Volume>>,
}

/// What is kept of a container (or an init container).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default, deserialize_with = "shrunk")]
    pub ports: Option<Vec<ContainerPort>>,
    #[serde(default)]
    pub resources: Option<Requests>,
    /// `Always` on an init container: a sidecar.
    #[serde(default)]
    pub restart_policy: Option<String>,
}

/// What is kept of a `ResourceRequirements`: its requests (limits are the kubelet's).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct Requests {
    #[serde(default)]
    pub requests: Option<BTreeMap<String, Quantity>>,
}

/// A claim volume: the only kinds placement and the StatefulSet and claim controllers read.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default)]
    pub persistent_volume_claim: Option<PersistentVolumeClaimVolumeSource>,
    #[serde(default)]
    pub ephemeral: Option<Box<EphemeralVolumeSource>>,
}

/// What is kept of `status`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(default, deserialize_with = "shrunk")]
    pub conditions: Option<Vec<PodCondition>>,
    #[serde(default, deserialize_with = "shrunk")]
    pub container_statuses: Option<Vec<ContainerStatus>>,
    #[serde(default, deserialize_with = "shrunk")]
    pub init_container_statuses: Option<Vec<ContainerStatus>>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub nominated_node_name: Option<String>,
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default, rename = "podIP")]
    pub pod_ip: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub start_time: Option<Time>,
}

/// What is kept of a container's status.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub ready: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub restart_count: i32,
    #[serde(default)]
    pub state: Option<ContainerState>,
}

impl k8s_openapi::Resource for Pod {
    const API_VERSION: &'static str = <v1::Pod as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <v1::Pod as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <v1::Pod as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <v1::Pod as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str = <v1::Pod as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = <v1::Pod as k8s_openapi::Resource>::Scope;
}

impl k8s_openapi::Metadata for Pod {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Metadata without its managed fields (nothing here reads who manages which field), its
/// owner references without the room decoding left in their list.
fn metadata<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectMeta, D::Error> {
    let mut metadata: ObjectMeta = null_as_default(deserializer)?;
    metadata.managed_fields = None;
    shrink(&mut metadata.owner_references);
    Ok(metadata)
}

/// A required field given as `null` is its default, as k8s-openapi decodes it.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A list as long as it is: decoding grows lists by doubling, and a cache keeps them.
fn shrunk<'de, D, T>(deserializer: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let mut list = Option::<Vec<T>>::deserialize(deserializer)?;
    shrink(&mut list);
    Ok(list)
}

fn shrunk_list<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(shrunk(deserializer)?.unwrap_or_default())
}

fn claim_volumes<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<Volume>>, D::Error> {
    let volumes = Option::<Vec<Volume>>::deserialize(deserializer)?;
    Ok(only_claims(volumes.into_iter().flatten()))
}

fn only_claims(volumes: impl Iterator<Item = Volume>) -> Option<Vec<Volume>> {
    let mut claims: Vec<Volume> = volumes
        .filter(|v| v.persistent_volume_claim.is_some() || v.ephemeral.is_some())
        .collect();
    claims.shrink_to_fit();
    (!claims.is_empty()).then_some(claims)
}

fn shrink<T>(list: &mut Option<Vec<T>>) {
    if let Some(list) = list.as_mut() {
        list.shrink_to_fit();
    }
}

impl From<&v1::Pod> for Pod {
    fn from(pod: &v1::Pod) -> Self {
        let mut metadata = pod.metadata.clone();
        metadata.managed_fields = None;
        Self {
            metadata,
            spec: pod.spec.as_ref().map(PodSpec::from),
            status: pod.status.as_ref().map(PodStatus::from),
        }
    }
}

impl From<v1::Pod> for Pod {
    fn from(pod: v1::Pod) -> Self {
        Self::from(&pod)
    }
}

impl From<&v1::PodSpec> for PodSpec {
    fn from(spec: &v1::PodSpec) -> Self {
        let containers = |list: &[v1::Container]| list.iter().map(Container::from).collect();
        Self {
            affinity: spec.affinity.clone().map(Box::new),
            containers: containers(&spec.containers),
            hostname: spec.hostname.clone(),
            init_containers: spec.init_containers.as_deref().map(containers),
            node_name: spec.node_name.clone(),
            node_selector: spec.node_selector.clone(),
            overhead: spec.overhead.clone(),
            preemption_policy: spec.preemption_policy.clone(),
            priority: spec.priority,
            resources: spec.resources.as_ref().map(Requests::from),
            restart_policy: spec.restart_policy.clone(),
            scheduler_name: spec.scheduler_name.clone(),
            scheduling_gates: spec.scheduling_gates.clone(),
            subdomain: spec.subdomain.clone(),
            tolerations: spec.tolerations.clone(),
            topology_spread_constraints: spec.topology_spread_constraints.clone(),
            volumes: only_claims(spec.volumes.iter().flatten().map(Volume::from)),
        }
    }
}

impl From<&v1::Container> for Container {
    fn from(container: &v1::Container) -> Self {
        Self {
            image: container.image.clone(),
            name: container.name.clone(),
            ports: container.ports.clone(),
            resources: container.resources.as_ref().map(Requests::from),
            restart_policy: container.restart_policy.clone(),
        }
    }
}

impl From<&ResourceRequirements> for Requests {
    fn from(resources: &ResourceRequirements) -> Self {
        Self {
            requests: resources.requests.clone(),
        }
    }
}

impl From<&v1::Volume> for Volume {
    fn from(volume: &v1::Volume) -> Self {
        Self {
            name: volume.name.clone(),
            persistent_volume_claim: volume.persistent_volume_claim.clone(),
            ephemeral: volume.ephemeral.clone().map(Box::new),
        }
    }
}

impl From<&v1::PodStatus> for PodStatus {
    fn from(status: &v1::PodStatus) -> Self {
        let statuses =
            |list: &[v1::ContainerStatus]| list.iter().map(ContainerStatus::from).collect();
        Self {
            conditions: status.conditions.clone(),
            container_statuses: status.container_statuses.as_deref().map(statuses),
            init_container_statuses: status.init_container_statuses.as_deref().map(statuses),
            message: status.message.clone(),
            nominated_node_name: status.nominated_node_name.clone(),
            phase: status.phase.clone(),
            pod_ip: status.pod_ip.clone(),
            reason: status.reason.clone(),
            start_time: status.start_time.clone(),
        }
    }
}

impl From<&v1::ContainerStatus> for ContainerStatus {
    fn from(status: &v1::ContainerStatus) -> Self {
        Self {
            name: status.name.clone(),
            ready: status.ready,
            restart_count: status.restart_count,
            state: status.state.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::Resource;
    use serde_json::{json, Value};

    use super::*;

    /// A pod as admission and a kubelet leave it: a claim, an ephemeral volume, the
    /// service-account token, what only the kubelet reads, and a full status.
    fn admitted() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "web-1", "namespace": "a", "labels": { "app": "web" },
                          "uid": "u1", "resourceVersion": "7", "finalizers": ["f"],
                          "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                "name": "web", "uid": "rs1", "controller": true }],
                          "managedFields": [{ "manager": "kubectl", "operation": "Apply",
                                              "fieldsType": "FieldsV1",
                                              "fieldsV1": { "f:spec": {} } }] },
            "spec": {
                "nodeName": "n1", "schedulerName": "default-scheduler", "priority": 5,
                "preemptionPolicy": "Never", "hostname": "web-1", "subdomain": "web",
                "restartPolicy": "Always", "hostNetwork": false,
                "nodeSelector": { "disk": "ssd" },
                "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{ "matchFields": [
                        { "key": "metadata.name", "operator": "In", "values": ["n1"] }] }] } } },
                "tolerations": [{ "key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                  "effect": "NoExecute", "tolerationSeconds": 300 }],
                "topologySpreadConstraints": [{ "maxSkew": 1, "topologyKey": "zone",
                                                "whenUnsatisfiable": "DoNotSchedule" }],
                "schedulingGates": [{ "name": "wait" }],
                "overhead": { "cpu": "10m" },
                "resources": { "requests": { "memory": "1Gi" }, "limits": { "memory": "2Gi" } },
                "containers": [{
                    "name": "app", "image": "web:1", "command": ["serve"], "args": ["--port=80"],
                    "env": [{ "name": "MODE", "value": "prod" }],
                    "ports": [{ "name": "http", "containerPort": 80, "hostPort": 8080 }],
                    "resources": { "requests": { "cpu": "100m" }, "limits": { "cpu": "1" } },
                    "readinessProbe": { "httpGet": { "port": 80 } },
                    "terminationMessagePath": "/dev/termination-log",
                    "volumeMounts": [{ "name": "data", "mountPath": "/data" }] }],
                "initContainers": [{ "name": "proxy", "image": "envoy", "restartPolicy": "Always",
                                     "command": ["envoy"] }],
                "volumes": [
                    { "name": "data", "persistentVolumeClaim": { "claimName": "data-web-1" } },
                    { "name": "scratch", "ephemeral": { "volumeClaimTemplate": { "spec": {} } } },
                    { "name": "kube-api-access-x1y2z", "projected": { "sources": [
                        { "serviceAccountToken": { "path": "token" } }] } },
                    { "name": "cache", "emptyDir": {} }] },
            "status": {
                "phase": "Running", "reason": "Evicted", "message": "low on memory",
                "podIP": "10.0.0.5", "podIPs": [{ "ip": "10.0.0.5" }], "hostIP": "192.168.0.1",
                "nominatedNodeName": "n2", "startTime": "2026-01-01T00:00:00Z",
                "qosClass": "Burstable",
                "conditions": [{ "type": "Ready", "status": "True",
                                 "lastTransitionTime": "2026-01-01T00:00:05Z" }],
                "containerStatuses": [{ "name": "app", "ready": true, "restartCount": 2,
                                        "image": "web:1", "imageID": "sha256:1",
                                        "containerID": "rudder://c1",
                                        "state": { "running": {
                                            "startedAt": "2026-01-01T00:00:01Z" } },
                                        "lastState": { "terminated": { "exitCode": 1 } } }],
                "initContainerStatuses": [{ "name": "proxy", "ready": true, "restartCount": 0,
                                            "image": "envoy", "imageID": "" }] }
        })
    }

    #[test]
    fn a_pod_keeps_what_controllers_and_the_scheduler_read() {
        let pod: Pod = serde_json::from_value(admitted()).unwrap();
        let meta = &pod.metadata;
        assert_eq!(meta.name.as_deref(), Some("web-1"));
        assert_eq!(meta.finalizers.as_deref(), Some(&["f".to_string()][..]));
        assert_eq!(meta.owner_references.as_ref().unwrap()[0].uid, "rs1");
        assert_eq!(meta.managed_fields, None);

        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        assert_eq!(spec.priority, Some(5));
        assert_eq!(
            spec.tolerations.as_ref().unwrap()[0].toleration_seconds,
            Some(300)
        );
        assert!(spec.affinity.as_ref().unwrap().node_affinity.is_some());
        assert_eq!(spec.scheduling_gates.as_ref().unwrap()[0].name, "wait");
        let requests = |r: &Option<Requests>| r.as_ref().unwrap().requests.clone().unwrap();
        assert_eq!(requests(&spec.resources)["memory"].0, "1Gi");
        let app = &spec.containers[0];
        assert_eq!(
            (app.name.as_str(), app.image.as_deref()),
            ("app", Some("web:1"))
        );
        assert_eq!(requests(&app.resources)["cpu"].0, "100m");
        assert_eq!(app.ports.as_ref().unwrap()[0].host_port, Some(8080));
        let sidecar = &spec.init_containers.as_ref().unwrap()[0];
        assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
        let volumes: Vec<&str> = spec
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(volumes, ["data", "scratch"], "claims only");

        let status = pod.status.as_ref().unwrap();
        assert_eq!(status.pod_ip.as_deref(), Some("10.0.0.5"));
        assert_eq!(status.nominated_node_name.as_deref(), Some("n2"));
        assert!(status.start_time.is_some());
        assert!(status.conditions.as_ref().unwrap()[0]
            .last_transition_time
            .is_some());
        let app = &status.container_statuses.as_ref().unwrap()[0];
        assert_eq!((app.ready, app.restart_count), (true, 2));
        assert!(app.state.as_ref().unwrap().running.is_some());
    }

    #[test]
    fn decoding_and_converting_a_k8s_openapi_pod_agree() {
        let full: v1::Pod = serde_json::from_value(admitted()).unwrap();
        let decoded: Pod = serde_json::from_value(admitted()).unwrap();
        assert_eq!(Pod::from(&full), decoded);
    }

    /// k8s-openapi reads `null` in a required field as its default; so does the cache, or
    /// the pod would be dropped from it with a warning.
    #[test]
    fn nulls_in_required_fields_decode_as_k8s_openapi_decodes_them() {
        let json = json!({
            "metadata": null,
            "spec": { "containers": [{ "name": null }], "volumes": [
                { "name": null, "persistentVolumeClaim": { "claimName": "c" } }] },
            "status": { "containerStatuses": [
                { "name": null, "ready": null, "restartCount": null, "image": "", "imageID": "" }] }
        });
        let full: v1::Pod = serde_json::from_value(json.clone()).unwrap();
        let decoded: Pod = serde_json::from_value(json).unwrap();
        assert_eq!(decoded, Pod::from(&full));
        assert_eq!(decoded.spec.unwrap().containers[0].name, "");

        let json = json!({ "spec": { "containers": null, "volumes": null } });
        let full: v1::Pod = serde_json::from_value(json.clone()).unwrap();
        let decoded: Pod = serde_json::from_value(json).unwrap();
        assert_eq!(decoded, Pod::from(&full));
        assert_eq!(decoded.spec.unwrap().containers, []);
    }

    #[test]
    fn a_pod_without_claims_keeps_no_volumes() {
        let mut json = admitted();
        json["spec"]["volumes"] = json!([{ "name": "cache", "emptyDir": {} }]);
        let pod: Pod = serde_json::from_value(json).unwrap();
        assert_eq!(pod.spec.unwrap().volumes, None);
    }

    #[test]
    fn kept_lists_are_no_longer_than_they_are() {
        let mut json = admitted();
        let conditions: Vec<Value> = (0..5)
            .map(|i| json!({ "type": format!("C{i}"), "status": "True" }))
            .collect();
        json["status"]["conditions"] = Value::from(conditions);
        // From text, as the informer decodes: a list's length is not known ahead there, and
        // decoding grows it by doubling (5 conditions would take room for 8).
        let pod: Pod = serde_json::from_str(&json.to_string()).unwrap();
        let conditions = pod.status.unwrap().conditions.unwrap();
        assert_eq!(conditions.capacity(), conditions.len());
        let owners = pod.metadata.owner_references.unwrap();
        assert_eq!(owners.capacity(), owners.len());
    }

    #[test]
    fn it_is_followed_as_the_pods_it_reads() {
        assert_eq!(
            (Pod::KIND, Pod::API_VERSION, Pod::URL_PATH_SEGMENT),
            ("Pod", "v1", "pods")
        );
    }

    /// What makes it worth keeping: k8s-openapi's pod is 2.2 KB and each container 2.1 KB
    /// before anything is in them. A field added here costs 10,000 times over.
    #[test]
    fn it_stays_small() {
        use std::mem::size_of;
        assert!(size_of::<Pod>() <= 1100, "{} bytes", size_of::<Pod>());
        assert!(
            size_of::<Container>() <= 160,
            "{} bytes",
            size_of::<Container>()
        );
        let status = size_of::<ContainerStatus>();
        assert!(status <= 256, "{status} bytes");
    }
}
