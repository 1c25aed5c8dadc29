//! ServiceAccount admission (Kubernetes' plugin), in a cluster that signs tokens: a pod
//! runs as a ServiceAccount (`default` unless it names one) and, unless the pod or its
//! account says `automountServiceAccountToken: false`, finds its token, the cluster's CA
//! and its namespace in `/var/run/secrets/kubernetes.io/serviceaccount`: a projected volume
//! `kube-api-access-XXXXX` (token, `kube-root-ca.crt`'s `ca.crt`, the namespace), mounted
//! read-only in each container. The kubelet fills it in. Mirror pods get nothing: a node
//! may not use an account through them.

use rand::distr::{Alphanumeric, SampleString};
use serde_json::{json, Value};

use super::{Registry, Target};
use crate::error::ApiError;
use crate::registry::token_request::KUBELET_ASKS;

/// Where a pod finds its account's token.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The ConfigMap of every namespace that holds the cluster CA's certificate.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
/// The volume's name before its random suffix.
const VOLUME_PREFIX: &str = "kube-api-access-";

/// The account `pod` runs as, `default` filled in (pure).
fn account_of(pod: &mut Value) -> String {
    let spec = &mut pod["spec"];
    let named = spec["serviceAccountName"]
        .as_str()
        .unwrap_or("")
        .to_string();
    if !named.is_empty() {
        return named;
    }
    // The deprecated field, when only it is given.
    let old = spec["serviceAccount"].as_str().unwrap_or("").to_string();
    let account = if old.is_empty() {
        "default".to_string()
    } else {
        old
    };
    if spec.is_object() {
        spec["serviceAccountName"] = json!(account);
    }
    account
}

/// Mounts the account's token into every container of `pod`, with the volume named
/// `kube-api-access-<suffix>`, unless it is there already (pure).
fn mount_token(pod: &mut Value, suffix: &str) {
    let spec = &mut pod["spec"];
    let already = spec["volumes"].as_array().is_some_and(|volumes| {
        volumes.iter().any(|volume| {
            volume["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(VOLUME_PREFIX))
        })
    });
    if already || !spec.is_object() {
        return;
    }
    let name = format!("{VOLUME_PREFIX}{suffix}");
    let volume = json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                { "serviceAccountToken": { "expirationSeconds": KUBELET_ASKS, "path": "token" } },
                { "configMap": { "name": ROOT_CA_CONFIG_MAP,
                                 "items": [{ "key": "ca.crt", "path": "ca.crt" }] } },
                { "downwardAPI": { "items": [{ "path": "namespace",
                    "fieldRef": { "apiVersion": "v1", "fieldPath": "metadata.namespace" } }] } },
            ],
        },
    });
    match spec["volumes"].as_array_mut() {
        Some(volumes) => volumes.push(volume),
        None => spec["volumes"] = json!([volume]),
    }
    for list in ["containers", "initContainers"] {
        for container in spec[list].as_array_mut().into_iter().flatten() {
            let mounted = container["volumeMounts"]
                .as_array()
                .is_some_and(|mounts| mounts.iter().any(|mount| mount["mountPath"] == MOUNT_PATH));
            if mounted || !container.is_object() {
                continue;
            }
            let mount = json!({ "name": name, "mountPath": MOUNT_PATH, "readOnly": true });
            match container["volumeMounts"].as_array_mut() {
                Some(mounts) => mounts.push(mount),
                None => container["volumeMounts"] = json!([mount]),
            }
        }
    }
}

fn is_mirror(pod: &Value) -> bool {
    pod["metadata"]["annotations"][crate::authz::node::MIRROR_ANNOTATION].is_string()
}

impl Registry {
    /// ServiceAccount admission of a new pod in `namespace` (a cluster without tokens
    /// changes nothing).
    pub(crate) async fn admit_service_account(
        &self,
        namespace: &str,
        pod: &mut Value,
    ) -> Result<(), ApiError> {
        if self.token_key().is_none() || is_mirror(pod) {
            return Ok(());
        }
        let account = account_of(pod);
        // The pod's own say wins; else its account's.
        let declines = match pod["spec"]["automountServiceAccountToken"].as_bool() {
            Some(mounts) => !mounts,
            None => {
                let target = Target {
                    resource: "serviceaccounts",
                    namespace,
                    name: &account,
                };
                match self.get(&target).await {
                    Ok(found) => found["automountServiceAccountToken"] == false,
                    // The account may come later (the ServiceAccount controller makes
                    // `default`); the kubelet's token request waits for it.
                    Err(ApiError::NotFound { .. }) => false,
                    Err(error) => return Err(error),
                }
            }
        };
        if !declines {
            let suffix = Alphanumeric
                .sample_string(&mut rand::rng(), 5)
                .to_ascii_lowercase();
            mount_token(pod, &suffix);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_runs_as_default_and_every_container_finds_the_token() {
        let mut pod = json!({ "spec": {
            "containers": [{ "name": "a", "image": "i" },
                           { "name": "b", "image": "i",
                             "volumeMounts": [{ "name": "own", "mountPath": MOUNT_PATH }] }],
            "initContainers": [{ "name": "init", "image": "i" }],
            "volumes": [{ "name": "own", "emptyDir": {} }] } });
        assert_eq!(account_of(&mut pod), "default");
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
        mount_token(&mut pod, "x1y2z");
        let volumes = pod["spec"]["volumes"].as_array().unwrap();
        assert_eq!(volumes[1]["name"], "kube-api-access-x1y2z");
        let sources = &volumes[1]["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"]["path"], "token");
        assert_eq!(sources[1]["configMap"]["name"], ROOT_CA_CONFIG_MAP);
        assert_eq!(
            pod["spec"]["containers"][0]["volumeMounts"][0],
            json!({ "name": "kube-api-access-x1y2z", "mountPath": MOUNT_PATH, "readOnly": true })
        );
        // A container that mounts something there keeps its own.
        assert_eq!(
            pod["spec"]["containers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            pod["spec"]["initContainers"][0]["volumeMounts"][0]["name"],
            "kube-api-access-x1y2z"
        );
        // Admitted again (an apply's create of what it read): nothing more.
        let before = pod.clone();
        mount_token(&mut pod, "other");
        assert_eq!(pod, before);
    }

    #[test]
    fn a_named_account_is_kept() {
        let mut pod = json!({ "spec": { "serviceAccountName": "robot", "containers": [] } });
        assert_eq!(account_of(&mut pod), "robot");
        let mut old = json!({ "spec": { "serviceAccount": "legacy", "containers": [] } });
        assert_eq!(account_of(&mut old), "legacy");
    }
}
