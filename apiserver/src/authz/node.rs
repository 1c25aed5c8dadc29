//! What a node's credential may do (pure), as Kubernetes' Node authorizer and
//! NodeRestriction admission decide for `system:node:NAME` in `system:nodes`:
//!
//! - read what every node's kubelet, proxy and DNS read: Nodes, Pods, Services,
//!   Endpoints, EndpointSlices, PersistentVolumes, and the cluster's network settings
//!   (`kube-system/rudder-cluster`);
//! - write only its own Node (and its status) and its own Lease in `kube-node-lease`;
//! - write the status of, and delete, only pods bound to it, and create only mirror pods
//!   bound to it that use no Secret, ConfigMap, claim or service account and are owned by
//!   no other object (checked on the object, [`admit`]: else a node could name any Secret
//!   in a pod of its own and read it);
//! - set no taints after registering, and no labels of Kubernetes' own namespaces but those
//!   a kubelet sets (its host name, OS, architecture, topology);
//! - read only the Secrets, ConfigMaps and PersistentVolumeClaims that pods bound to it
//!   use ([`pod_uses`]);
//! - ask for the token of a ServiceAccount its pods run as, bound to one of them;
//! - record events.
//!
//! Anything else gets no opinion here, and RBAC decides (which grants nodes nothing
//! beyond what every authenticated user has).

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use super::rbac::{Action, ResourceAction, User};
use crate::cluster_config;

/// The group of every node's credential.
pub const NODES_GROUP: &str = "system:nodes";

/// The namespace of node Leases.
const NODE_LEASES: &str = "kube-node-lease";

/// The annotation that makes a pod a mirror of a node's static pod.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The node a user is the credential of, if it is one.
pub fn node_of(user: &User) -> Option<&str> {
    let name = user.name.strip_prefix("system:node:")?;
    (!name.is_empty() && user.groups.iter().any(|g| g == NODES_GROUP)).then_some(name)
}

/// What the node rules say of an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Not for these rules: RBAC decides.
    NoOpinion,
    /// Allowed if the pod (namespace, name) is bound to the node.
    IfPodBound {
        namespace: String,
        name: String,
    },
    /// Allowed if a pod bound to the node runs as this ServiceAccount (a token for it,
    /// which the registry then binds to such a pod only).
    IfAccountOfPod {
        namespace: String,
        account: String,
    },
    /// Allowed if a pod bound to the node uses this object of `resource`.
    IfUsedByPod {
        resource: String,
        namespace: String,
        name: String,
    },
}

const READ: [&str; 3] = ["get", "list", "watch"];

/// The node rules for `node` taking `action`.
pub fn verdict(node: &str, action: &Action) -> Verdict {
    let Action::Resource(action) = action else {
        return Verdict::NoOpinion;
    };
    let ResourceAction {
        verb,
        group,
        resource,
        subresource,
        namespace,
        name,
    } = action;
    let reads = READ.contains(&verb.as_str());
    let own = name == node;
    match (group.as_str(), resource.as_str(), subresource.as_str()) {
        ("", "nodes" | "pods" | "services" | "endpoints" | "persistentvolumes", "")
        | ("discovery.k8s.io", "endpointslices", "")
            if reads =>
        {
            Verdict::Allow
        }
        // A create names no object: admission checks the new Node's name.
        ("", "nodes", "") if verb == "create" => Verdict::Allow,
        ("", "nodes", "" | "status") if own && matches!(verb.as_str(), "update" | "patch") => {
            Verdict::Allow
        }
        ("coordination.k8s.io", "leases", "") if namespace == NODE_LEASES => match verb.as_str() {
            "create" => Verdict::Allow,
            "get" | "update" | "patch" | "delete" if own => Verdict::Allow,
            _ => Verdict::NoOpinion,
        },
        // Admission checks that it is a mirror pod bound to the node.
        ("", "pods", "") if verb == "create" => Verdict::Allow,
        ("", "pods", "status") if matches!(verb.as_str(), "update" | "patch") => {
            pod_bound(namespace, name)
        }
        ("", "pods", "") if verb == "delete" => pod_bound(namespace, name),
        ("", "serviceaccounts", "token") if verb == "create" => Verdict::IfAccountOfPod {
            namespace: namespace.clone(),
            account: name.clone(),
        },
        ("" | "events.k8s.io", "events", "")
            if matches!(verb.as_str(), "create" | "update" | "patch") =>
        {
            Verdict::Allow
        }
        ("", "configmaps", "")
            if verb == "get"
                && namespace == cluster_config::NAMESPACE
                && name == cluster_config::NAME =>
        {
            Verdict::Allow
        }
        ("", "secrets" | "configmaps" | "persistentvolumeclaims", "")
            if verb == "get" && !name.is_empty() =>
        {
            Verdict::IfUsedByPod {
                resource: resource.clone(),
                namespace: namespace.clone(),
                name: name.clone(),
            }
        }
        _ => Verdict::NoOpinion,
    }
}

fn pod_bound(namespace: &str, name: &str) -> Verdict {
    Verdict::IfPodBound {
        namespace: namespace.into(),
        name: name.into(),
    }
}

/// Whether `pod` uses the `resource` named `name`: as a volume (also projected), an
/// environment source, or (Secrets) an image pull secret.
pub fn pod_uses(pod: &Pod, resource: &str, name: &str) -> bool {
    let Some(spec) = &pod.spec else {
        return false;
    };
    let named = |given: Option<&str>| given == Some(name);
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let in_env = |container: &k8s_openapi::api::core::v1::Container| {
        let from_sources = container
            .env_from
            .iter()
            .flatten()
            .any(|source| match resource {
                "secrets" => named(source.secret_ref.as_ref().map(|r| r.name.as_str())),
                "configmaps" => named(source.config_map_ref.as_ref().map(|r| r.name.as_str())),
                _ => false,
            });
        let from_values = container.env.iter().flatten().any(|variable| {
            let from = variable.value_from.as_ref();
            match resource {
                "secrets" => named(
                    from.and_then(|f| f.secret_key_ref.as_ref())
                        .map(|r| r.name.as_str()),
                ),
                "configmaps" => named(
                    from.and_then(|f| f.config_map_key_ref.as_ref())
                        .map(|r| r.name.as_str()),
                ),
                _ => false,
            }
        });
        from_sources || from_values
    };
    let in_volumes = spec.volumes.iter().flatten().any(|volume| match resource {
        "secrets" => {
            named(
                volume
                    .secret
                    .as_ref()
                    .and_then(|s| s.secret_name.as_deref()),
            ) || projected(volume, |source| {
                named(source.secret.as_ref().map(|s| s.name.as_str()))
            })
        }
        "configmaps" => {
            named(volume.config_map.as_ref().map(|c| c.name.as_str()))
                || projected(volume, |source| {
                    named(source.config_map.as_ref().map(|c| c.name.as_str()))
                })
        }
        "persistentvolumeclaims" => {
            named(
                volume
                    .persistent_volume_claim
                    .as_ref()
                    .map(|c| c.claim_name.as_str()),
            ) || (volume.ephemeral.is_some()
                && pod
                    .metadata
                    .name
                    .as_ref()
                    .is_some_and(|pod| *name == format!("{pod}-{}", volume.name)))
        }
        _ => false,
    });
    let pulls = resource == "secrets"
        && spec
            .image_pull_secrets
            .iter()
            .flatten()
            .any(|secret| secret.name == name);
    in_volumes || pulls || containers.into_iter().any(in_env)
}

/// A mirror pod may name nothing a node could read through it, nor an owner.
fn mirror_pod_references(node: &str, object: &Value) -> Result<(), String> {
    let pod: Pod = serde_json::from_value(object.clone())
        .map_err(|error| format!("the pod does not decode: {error}"))?;
    let spec = pod.spec.clone().unwrap_or_default();
    let account = spec.service_account_name.as_deref().unwrap_or("");
    if !account.is_empty() {
        return Err(format!(
            "node {node:?} can not create pods that use service accounts"
        ));
    }
    if pod
        .metadata
        .owner_references
        .as_ref()
        .is_some_and(|owners| !owners.is_empty())
    {
        return Err(format!(
            "node {node:?} can not create pods with owner references"
        ));
    }
    let mut named: Vec<&str> = Vec::new();
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for container in containers {
        for source in container.env_from.iter().flatten() {
            named.extend(source.secret_ref.as_ref().map(|_| "secrets"));
            named.extend(source.config_map_ref.as_ref().map(|_| "configmaps"));
        }
        for variable in container.env.iter().flatten() {
            let from = variable.value_from.as_ref();
            named.extend(
                from.and_then(|f| f.secret_key_ref.as_ref())
                    .map(|_| "secrets"),
            );
            named.extend(
                from.and_then(|f| f.config_map_key_ref.as_ref())
                    .map(|_| "configmaps"),
            );
        }
    }
    for volume in spec.volumes.iter().flatten() {
        let sources = || {
            volume
                .projected
                .as_ref()
                .and_then(|projected| projected.sources.as_ref())
                .into_iter()
                .flatten()
        };
        if volume.secret.is_some() || sources().any(|source| source.secret.is_some()) {
            named.push("secrets");
        }
        if volume.config_map.is_some() || sources().any(|source| source.config_map.is_some()) {
            named.push("configmaps");
        }
        if volume.persistent_volume_claim.is_some() || volume.ephemeral.is_some() {
            named.push("persistentvolumeclaims");
        }
    }
    if !spec
        .image_pull_secrets
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        named.push("secrets");
    }
    match named.first() {
        Some(what) => Err(format!(
            "node {node:?} can not create pods that reference {what}"
        )),
        None => Ok(()),
    }
}

/// Labels a kubelet sets on its own Node in Kubernetes' namespaces; any other label there
/// (a role, `node-restriction.kubernetes.io/`) is the cluster's to set.
fn kubelet_may_label(key: &str) -> bool {
    const EXACT: [&str; 11] = [
        "kubernetes.io/hostname",
        "kubernetes.io/arch",
        "kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "failure-domain.beta.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
    ];
    let Some((domain, _)) = key.split_once('/') else {
        return true;
    };
    let within = |suffix: &str| domain == suffix || domain.ends_with(&format!(".{suffix}"));
    if domain == "node-restriction.kubernetes.io" {
        return false;
    }
    if !within("kubernetes.io") && !within("k8s.io") {
        return true;
    }
    EXACT.contains(&key) || domain == "kubelet.kubernetes.io" || domain == "node.kubernetes.io"
}

/// A node's writes of its own Node: no taints changed once registered, no labels the
/// cluster keeps for itself.
fn admit_own_node(node: &str, object: &Value, old: Option<&Value>) -> Result<(), String> {
    let labels = |value: &Value| {
        value["metadata"]["labels"]
            .as_object()
            .cloned()
            .unwrap_or_default()
    };
    let new_labels = labels(object);
    let old_labels = old.map(labels).unwrap_or_default();
    let mut changed: Vec<&String> = new_labels
        .keys()
        .chain(old_labels.keys())
        .filter(|key| new_labels.get(*key) != old_labels.get(*key))
        .filter(|key| !kubelet_may_label(key))
        .collect();
    changed.sort();
    changed.dedup();
    if !changed.is_empty() {
        let keys: Vec<&str> = changed.iter().map(|key| key.as_str()).collect();
        return Err(format!(
            "node {node:?} is not allowed to modify labels: {}",
            keys.join(", ")
        ));
    }
    if let Some(old) = old {
        if object["spec"]["taints"] != old["spec"]["taints"] {
            return Err(format!("node {node:?} is not allowed to modify taints"));
        }
    }
    Ok(())
}

fn projected(
    volume: &k8s_openapi::api::core::v1::Volume,
    uses: impl Fn(&k8s_openapi::api::core::v1::VolumeProjection) -> bool,
) -> bool {
    volume
        .projected
        .as_ref()
        .and_then(|projected| projected.sources.as_ref())
        .into_iter()
        .flatten()
        .any(uses)
}

/// NodeRestriction for an object `node` writes (`old`: what it replaces): its own Node,
/// its own Lease, mirror pods bound to it. `Err` says why not, in Kubernetes' words.
pub fn admit(
    node: &str,
    resource: &str,
    object: &Value,
    old: Option<&Value>,
) -> Result<(), String> {
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    match resource {
        "nodes" if name != node => Err(format!(
            "node {node:?} is not allowed to modify node {name:?}"
        )),
        "nodes" => admit_own_node(node, object, old),
        "leases" if name != node => {
            Err("can only access node lease with the same name as the requesting node".into())
        }
        "pods" => {
            let bound_to = object["spec"]["nodeName"].as_str().unwrap_or("");
            let mirror = object["metadata"]["annotations"][MIRROR_ANNOTATION].is_string();
            match old {
                None if !mirror => Err(format!(
                    "pod does not have {MIRROR_ANNOTATION:?} annotation, node {node:?} can only \
                     create mirror pods"
                )),
                None if bound_to != node => Err(format!(
                    "node {node:?} can only create pods with spec.nodeName set to itself"
                )),
                None => mirror_pod_references(node, object),
                Some(old) if old["spec"]["nodeName"].as_str() != Some(node) => {
                    Err(format!("node {node:?} can only update pods bound to it"))
                }
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn act(verb: &str, resource: &str, namespace: &str, name: &str) -> Action {
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        let group = match resource {
            "leases" => "coordination.k8s.io",
            "endpointslices" => "discovery.k8s.io",
            _ => "",
        };
        Action::Resource(ResourceAction {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: namespace.into(),
            name: name.into(),
        })
    }

    #[test]
    fn a_node_credential_is_a_name_in_the_nodes_group() {
        let node = |name: &str, groups: &[&str]| User {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        };
        assert_eq!(node_of(&node("system:node:n1", &[NODES_GROUP])), Some("n1"));
        assert_eq!(node_of(&node("system:node:n1", &[])), None);
        assert_eq!(node_of(&node("jane", &[NODES_GROUP])), None);
    }

    #[test]
    fn a_node_writes_its_own_objects_and_reads_what_its_services_need() {
        for allowed in [
            act("watch", "pods", "", ""),
            act("list", "endpointslices", "", ""),
            act("update", "nodes/status", "", "n1"),
            act("update", "leases", NODE_LEASES, "n1"),
            act("create", "events", "team", ""),
            act(
                "get",
                "configmaps",
                cluster_config::NAMESPACE,
                cluster_config::NAME,
            ),
        ] {
            assert_eq!(verdict("n1", &allowed), Verdict::Allow, "{allowed:?}");
        }
        for other in [
            act("update", "nodes/status", "", "n2"),
            act("delete", "nodes", "", "n2"),
            act("update", "leases", NODE_LEASES, "n2"),
            act("list", "secrets", "team", ""),
            act("create", "deployments", "team", ""),
            act("update", "pods", "team", "web"),
        ] {
            assert_eq!(verdict("n1", &other), Verdict::NoOpinion, "{other:?}");
        }
        assert_eq!(
            verdict("n1", &act("delete", "pods", "team", "web")),
            pod_bound("team", "web")
        );
        assert!(matches!(
            verdict("n1", &act("get", "secrets", "team", "db")),
            Verdict::IfUsedByPod { .. }
        ));
    }

    #[test]
    fn a_pod_uses_what_its_volumes_env_and_pull_secrets_name() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": "web" },
            "spec": {
                "containers": [{ "name": "c", "image": "i",
                    "envFrom": [{ "configMapRef": { "name": "settings" } }],
                    "env": [{ "name": "P", "valueFrom": { "secretKeyRef": { "name": "db", "key": "p" } } }] }],
                "imagePullSecrets": [{ "name": "registry" }],
                "volumes": [
                    { "name": "certs", "projected": { "sources": [{ "secret": { "name": "tls" } }] } },
                    { "name": "data", "persistentVolumeClaim": { "claimName": "data-0" } },
                    { "name": "scratch", "ephemeral": {} },
                ] } }))
        .unwrap();
        for (resource, name) in [
            ("configmaps", "settings"),
            ("secrets", "db"),
            ("secrets", "registry"),
            ("secrets", "tls"),
            ("persistentvolumeclaims", "data-0"),
            ("persistentvolumeclaims", "web-scratch"),
        ] {
            assert!(pod_uses(&pod, resource, name), "{resource} {name}");
        }
        assert!(!pod_uses(&pod, "secrets", "settings"));
        assert!(!pod_uses(&pod, "configmaps", "other"));
    }

    #[test]
    fn a_node_creates_only_mirror_pods_bound_to_itself_and_only_its_node_and_lease() {
        let pod = |annotated: bool, node: &str| {
            let annotations = if annotated {
                json!({ MIRROR_ANNOTATION: "x" })
            } else {
                json!({})
            };
            json!({ "metadata": { "name": "p", "annotations": annotations },
                    "spec": { "nodeName": node } })
        };
        assert!(admit("n1", "pods", &pod(true, "n1"), None).is_ok());
        let plain = admit("n1", "pods", &pod(false, "n1"), None).unwrap_err();
        assert!(plain.contains("can only create mirror pods"), "{plain}");
        assert!(admit("n1", "pods", &pod(true, "n2"), None).is_err());
        assert!(admit("n1", "pods", &pod(true, "n1"), Some(&pod(true, "n2"))).is_err());
        let node = json!({ "metadata": { "name": "n2" } });
        assert_eq!(
            admit("n1", "nodes", &node, None).unwrap_err(),
            r#"node "n1" is not allowed to modify node "n2""#
        );
        assert!(admit("n2", "nodes", &node, None).is_ok());
        assert!(admit("n1", "leases", &node, None).is_err());
    }

    #[test]
    fn a_mirror_pod_names_nothing_a_node_could_read_through_it() {
        let with = |spec: Value| {
            json!({ "metadata": { "name": "p", "annotations": { MIRROR_ANNOTATION: "x" } },
                    "spec": spec })
        };
        let secret_env = json!({ "nodeName": "n1", "containers": [{ "name": "c", "image": "i",
            "env": [{ "name": "S", "valueFrom": { "secretKeyRef": { "name": "db", "key": "k" } } }] }] });
        let said = admit("n1", "pods", &with(secret_env), None).unwrap_err();
        assert_eq!(
            said,
            r#"node "n1" can not create pods that reference secrets"#
        );
        let volume = json!({ "nodeName": "n1", "containers": [{ "name": "c", "image": "i" }],
            "volumes": [{ "name": "v", "configMap": { "name": "settings" } }] });
        assert!(admit("n1", "pods", &with(volume), None)
            .unwrap_err()
            .contains("configmaps"));
        let account = json!({ "nodeName": "n1", "serviceAccountName": "robot",
            "containers": [{ "name": "c", "image": "i" }] });
        assert!(admit("n1", "pods", &with(account), None)
            .unwrap_err()
            .contains("service accounts"));
        let plain = json!({ "nodeName": "n1", "containers": [{ "name": "c", "image": "i" }] });
        assert!(admit("n1", "pods", &with(plain), None).is_ok());
    }

    #[test]
    fn a_node_keeps_its_taints_and_the_clusters_labels() {
        let node = |labels: Value, taints: Value| json!({ "metadata": { "name": "n1", "labels": labels }, "spec": { "taints": taints } });
        let registered = node(json!({ "kubernetes.io/hostname": "n1" }), json!([]));
        let relabelled = node(
            json!({ "kubernetes.io/hostname": "n1", "topology.kubernetes.io/zone": "a",
                    "team": "x" }),
            json!([]),
        );
        assert!(admit("n1", "nodes", &relabelled, Some(&registered)).is_ok());
        let promoted = node(
            json!({ "kubernetes.io/hostname": "n1",
                    "node-role.kubernetes.io/control-plane": "",
                    "node-restriction.kubernetes.io/secure": "yes" }),
            json!([]),
        );
        assert_eq!(
            admit("n1", "nodes", &promoted, Some(&registered)).unwrap_err(),
            "node \"n1\" is not allowed to modify labels: \
             node-restriction.kubernetes.io/secure, node-role.kubernetes.io/control-plane"
        );
        let untainted = node(json!({ "kubernetes.io/hostname": "n1" }), json!(null));
        let tainted = node(
            json!({ "kubernetes.io/hostname": "n1" }),
            json!([{ "key": "k", "effect": "NoSchedule" }]),
        );
        let said = admit("n1", "nodes", &untainted, Some(&tainted)).unwrap_err();
        assert!(said.contains("taints"), "{said}");
        // Registering with taints is a kubelet's right.
        assert!(admit("n1", "nodes", &tainted, None).is_ok());
    }
}
