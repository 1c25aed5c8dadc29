//! Every namespace's `kube-root-ca.crt` ConfigMap: the cluster CA's certificate as `ca.crt`,
//! which pods' token volumes carry (kube-controller-manager's root CA publisher; here a
//! master's own duty, as masters hold the CA). Made when a namespace appears, made again
//! when deleted, put right when changed. Every master does it: a create another master
//! made first, or a namespace being emptied, leaves nothing to do.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::error::ApiError;
use crate::list::ListOptions;
use crate::registry::service_account::ROOT_CA_CONFIG_MAP;
use crate::registry::{Part, Registry, Target, WriteOptions};
use crate::watch::WatchOptions;

/// How long to wait before listing again after a failure or an ended watch.
const RETRY: Duration = Duration::from_secs(1);

/// The ConfigMap of `namespace` holding `ca_pem` (pure).
fn config_map(namespace: &str, ca_pem: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": ROOT_CA_CONFIG_MAP, "namespace": namespace },
        "data": { "ca.crt": ca_pem },
    })
}

/// Publishes `ca_pem` in every namespace until `stopped`.
pub async fn publish(registry: Registry, ca_pem: String, mut stopped: watch::Receiver<bool>) {
    loop {
        let followed = follow(&registry, &ca_pem, &mut stopped).await;
        if *stopped.borrow() {
            return;
        }
        if let Err(error) = followed {
            tracing::debug!(%error, "publishing the cluster CA in the namespaces");
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// Lists the namespaces, publishes in each, then follows namespaces and the ConfigMaps
/// until a watch ends.
async fn follow(
    registry: &Registry,
    ca_pem: &str,
    stopped: &mut watch::Receiver<bool>,
) -> Result<(), ApiError> {
    let namespaces = registry.list("namespaces", &ListOptions::default()).await?;
    for namespace in &namespaces.items {
        ensure_or_say(registry, namespace, ca_pem).await;
    }
    let from = WatchOptions {
        resource_version: namespaces.revision.to_string(),
        ..WatchOptions::default()
    };
    let mut namespace_events = registry.watch("namespaces", &from).await?;
    let published = WatchOptions {
        field_selector: format!("metadata.name={ROOT_CA_CONFIG_MAP}"),
        ..from
    };
    let mut config_map_events = registry.watch("configmaps", &published).await?;
    loop {
        tokio::select! {
            event = namespace_events.recv() => match event {
                Some(event) if matches!(event.kind, "ADDED" | "MODIFIED") => {
                    ensure_or_say(registry, &event.object, ca_pem).await;
                }
                Some(event) if event.kind == "ERROR" => return Ok(()),
                Some(_) => {}
                None => return Ok(()),
            },
            event = config_map_events.recv() => match event {
                Some(event) if matches!(event.kind, "DELETED" | "MODIFIED") => {
                    let name = event.object["metadata"]["namespace"].as_str().unwrap_or("");
                    let target = Target { resource: "namespaces", namespace: "", name };
                    match registry.get(&target).await {
                        Ok(namespace) => ensure_or_say(registry, &namespace, ca_pem).await,
                        Err(ApiError::NotFound { .. }) => {}
                        Err(error) => return Err(error),
                    }
                }
                Some(event) if event.kind == "ERROR" => return Ok(()),
                Some(_) => {}
                None => return Ok(()),
            },
            _ = stopped.changed() => return Ok(()),
        }
    }
}

/// [`ensure`], a failure in one namespace said and left for its next event (a user's own
/// `kube-root-ca.crt`, immutable and wrong, must not keep the CA from the others).
async fn ensure_or_say(registry: &Registry, namespace: &Value, ca_pem: &str) {
    if let Err(error) = ensure(registry, namespace, ca_pem).await {
        let name = namespace["metadata"]["name"].as_str().unwrap_or("");
        tracing::warn!(%error, namespace = name, "publishing the cluster CA");
    }
}

/// `namespace` (an object) holds the CA, if it is active.
async fn ensure(registry: &Registry, namespace: &Value, ca_pem: &str) -> Result<(), ApiError> {
    if namespace["status"]["phase"]
        .as_str()
        .is_some_and(|phase| phase != "Active")
    {
        return Ok(());
    }
    let name = namespace["metadata"]["name"].as_str().unwrap_or("");
    let target = Target {
        resource: "configmaps",
        namespace: name,
        name: ROOT_CA_CONFIG_MAP,
    };
    let wanted = config_map(name, ca_pem);
    let written = match registry.get(&target).await {
        // Only its `ca.crt` is ours (a merge patch leaves other keys as they are).
        Ok(found) if found["data"]["ca.crt"] == wanted["data"]["ca.crt"] => return Ok(()),
        Ok(_) => {
            let patch = json!({ "data": { "ca.crt": ca_pem } });
            registry
                .patch(
                    &target,
                    patch.to_string().as_bytes(),
                    Part::Object,
                    &WriteOptions::default(),
                )
                .await
                .map(drop)
        }
        Err(ApiError::NotFound { .. }) => registry
            .create(
                "configmaps",
                name,
                wanted.to_string().as_bytes(),
                &WriteOptions::default(),
            )
            .await
            .map(drop),
        Err(error) => Err(error),
    };
    match written {
        // Another master's write came first, or the namespace is being emptied.
        Ok(()) | Err(ApiError::AlreadyExists { .. }) | Err(ApiError::Conflict { .. }) => Ok(()),
        Err(ApiError::NamespaceTerminating { .. }) | Err(ApiError::NotFound { .. }) => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_map_holds_the_ca_as_ca_crt() {
        let map = config_map("team", "PEM");
        assert_eq!(map["metadata"]["name"], "kube-root-ca.crt");
        assert_eq!(map["metadata"]["namespace"], "team");
        assert_eq!(map["data"]["ca.crt"], "PEM");
    }
}
