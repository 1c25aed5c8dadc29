//! What a master's components keep of the objects they share ([`trim_for::<K>`]): pods lose
//! what no controller and not the scheduler reads, as client-go's informers take a transform
//! (kube-controller-manager's drops managed fields). Pure.
//!
//! A typed pod costs about 18 KB in memory: the service-account volume every admitted pod
//! gets is a third of it (k8s-openapi's `Volume` alone is 3 KB before its projections), and
//! the room serde leaves in decoded lists a sixth. Trimmed, a Running pod of one container
//! takes 8 KB (`rudder bench controllers`' pods): 100 MB less on a leading master at 10,000.
//!
//! Kept, because something reads it: all of `metadata` but its managed fields, all of
//! `status`, and of `spec` everything but
//! - volumes that are not claims (`persistentVolumeClaim`, `ephemeral`: the scheduler's
//!   volume binding and limits, the StatefulSet and claim controllers read those);
//! - what only the kubelet reads of each container: its mounts and devices, command,
//!   arguments, environment, probes, lifecycle hooks, working directory and termination
//!   message settings.
//!
//! A trimmed pod is never written back: controllers change pods by patch, create them from
//! their own templates, and bind them with a Binding.

use std::any::Any;

use k8s_openapi::api::core::v1::Pod;

/// Clears what only the kubelet reads of a container (a `Container` or an
/// `EphemeralContainer`: two types in k8s-openapi with these fields alike).
macro_rules! trim_container {
    ($container:expr) => {{
        let container = $container;
        container.volume_mounts = None;
        container.volume_devices = None;
        container.command = None;
        container.args = None;
        container.env = None;
        container.env_from = None;
        container.liveness_probe = None;
        container.readiness_probe = None;
        container.startup_probe = None;
        container.lifecycle = None;
        container.working_dir = None;
        container.termination_message_path = None;
        container.termination_message_policy = None;
    }};
}

/// How the shared caches of kind `K` trim each object, if they do.
pub fn trim_for<K: 'static>() -> Option<fn(&mut K)> {
    let pods: &dyn Any = &(trim_pod as fn(&mut Pod));
    pods.downcast_ref::<fn(&mut K)>().copied()
}

/// A pod as the controllers and the scheduler need it, its lists no longer than they are.
pub fn trim_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    shrink(&mut pod.metadata.owner_references);
    if let Some(spec) = pod.spec.as_mut() {
        if let Some(volumes) = spec.volumes.as_mut() {
            volumes.retain(|v| v.persistent_volume_claim.is_some() || v.ephemeral.is_some());
        }
        spec.volumes = spec.volumes.take().filter(|volumes| !volumes.is_empty());
        shrink(&mut spec.volumes);
        for container in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            shrink(&mut container.ports);
            trim_container!(container);
        }
        for container in spec.ephemeral_containers.iter_mut().flatten() {
            trim_container!(container);
        }
        spec.containers.shrink_to_fit();
        shrink(&mut spec.init_containers);
        shrink(&mut spec.tolerations);
    }
    if let Some(status) = pod.status.as_mut() {
        shrink(&mut status.conditions);
        shrink(&mut status.container_statuses);
        shrink(&mut status.init_container_statuses);
        shrink(&mut status.pod_ips);
        shrink(&mut status.host_ips);
    }
}

/// Gives back the room a decoded list was left with: serde grows a list by doubling its
/// room, so a pod's five conditions take eight and its one container status four (together
/// with the other lists about 3 KB of each pod).
fn shrink<T>(list: &mut Option<Vec<T>>) {
    if let Some(list) = list {
        list.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use serde_json::{json, Value};

    use super::*;

    /// A pod as admission leaves it, with a claim, an ephemeral volume and the
    /// service-account token.
    fn admitted() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "web-1", "namespace": "a", "labels": { "app": "web" },
                          "managedFields": [{ "manager": "kubectl", "operation": "Apply",
                                              "fieldsType": "FieldsV1",
                                              "fieldsV1": { "f:spec": {} } }] },
            "spec": {
                "nodeName": "n1",
                "tolerations": [{ "key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                  "effect": "NoExecute", "tolerationSeconds": 300 }],
                "containers": [{
                    "name": "app", "image": "web:1", "command": ["serve"], "args": ["--port=80"],
                    "env": [{ "name": "MODE", "value": "prod" }],
                    "ports": [{ "name": "http", "containerPort": 80 }],
                    "resources": { "requests": { "cpu": "100m" } },
                    "readinessProbe": { "httpGet": { "port": 80 } },
                    "terminationMessagePath": "/dev/termination-log",
                    "volumeMounts": [{ "name": "data", "mountPath": "/data" },
                                     { "name": "kube-api-access-x1y2z",
                                       "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount" }] }],
                "initContainers": [{ "name": "init", "image": "busybox", "command": ["true"] }],
                "volumes": [
                    { "name": "data", "persistentVolumeClaim": { "claimName": "data-web-1" } },
                    { "name": "scratch", "ephemeral": { "volumeClaimTemplate": { "spec": {} } } },
                    { "name": "kube-api-access-x1y2z", "projected": { "sources": [
                        { "serviceAccountToken": { "path": "token" } }] } },
                    { "name": "cache", "emptyDir": {} }] },
            "status": { "phase": "Running", "podIP": "10.0.0.5",
                        "conditions": [{ "type": "Ready", "status": "True" }] }
        })
    }

    #[test]
    fn a_pod_keeps_what_controllers_and_the_scheduler_read() {
        let mut pod: Pod = serde_json::from_value(admitted()).unwrap();
        trim_pod(&mut pod);
        let mut expected = admitted();
        expected["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        let spec = &mut expected["spec"];
        spec["volumes"] = json!([spec["volumes"][0], spec["volumes"][1]]);
        spec["containers"][0] = json!({
            "name": "app", "image": "web:1",
            "ports": [{ "name": "http", "containerPort": 80 }],
            "resources": { "requests": { "cpu": "100m" } } });
        spec["initContainers"][0] = json!({ "name": "init", "image": "busybox" });
        assert_eq!(serde_json::to_value(&pod).unwrap(), expected);
    }

    #[test]
    fn a_pod_without_claims_keeps_no_volumes() {
        let mut pod: Pod = serde_json::from_value(admitted()).unwrap();
        let spec = pod.spec.as_mut().unwrap();
        spec.volumes.as_mut().unwrap().drain(..2);
        trim_pod(&mut pod);
        assert_eq!(pod.spec.unwrap().volumes, None);
        // A pod without a spec is left as it is.
        let mut bare = Pod::default();
        trim_pod(&mut bare);
        assert_eq!(bare, Pod::default());
    }

    #[test]
    fn only_pods_are_trimmed() {
        assert!(trim_for::<Pod>().is_some());
        assert!(trim_for::<ReplicaSet>().is_none());
    }
}
