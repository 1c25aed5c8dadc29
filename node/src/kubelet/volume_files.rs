//! The files of a pod's configMap, secret and projected volumes, read from the API before
//! the pod starts: a ConfigMap's or Secret's keys (or its `items`, key → path); a projected
//! volume's sources side by side — ConfigMaps, Secrets, the pod's own fields (downward
//! API) and its ServiceAccount's token, asked for bound to this pod (it dies with it).

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::{KeyToPath, VolumeProjection};
use rudder_proto::client::{ApiClient, ClientError};
use serde_json::{json, Value};

use crate::runtime::PodPlan;

/// Files by path.
type Files = BTreeMap<String, Vec<u8>>;

/// Every file volume of `plan`: volume name → files.
pub async fn volume_files(
    client: &ApiClient,
    plan: &PodPlan,
) -> Result<BTreeMap<String, Files>, ClientError> {
    let mut volumes = BTreeMap::new();
    for volume in plan.spec.volumes.iter().flatten() {
        let files = match (&volume.config_map, &volume.secret, &volume.projected) {
            (Some(map), _, _) => {
                let wanted = Wanted::configmap(&map.name, map.items.as_deref(), map.optional);
                object_files(client, plan, &wanted).await?
            }
            (None, Some(secret), _) => {
                let name = secret.secret_name.as_deref().unwrap_or_default();
                let wanted = Wanted::secret(name, secret.items.as_deref(), secret.optional);
                object_files(client, plan, &wanted).await?
            }
            (None, None, Some(projected)) => {
                let mut files = Files::new();
                for source in projected.sources.iter().flatten() {
                    files.extend(projected_files(client, plan, source).await?);
                }
                files
            }
            _ => continue,
        };
        volumes.insert(volume.name.clone(), files);
    }
    Ok(volumes)
}

/// One ConfigMap's or Secret's files.
struct Wanted<'a> {
    resource: &'static str,
    name: &'a str,
    items: Option<&'a [KeyToPath]>,
    optional: bool,
}

impl<'a> Wanted<'a> {
    fn configmap(name: &'a str, items: Option<&'a [KeyToPath]>, optional: Option<bool>) -> Self {
        Self {
            resource: "configmaps",
            name,
            items,
            optional: optional == Some(true),
        }
    }

    fn secret(name: &'a str, items: Option<&'a [KeyToPath]>, optional: Option<bool>) -> Self {
        Self {
            resource: "secrets",
            name,
            items,
            optional: optional == Some(true),
        }
    }
}

/// The keys of the object `wanted` names (its `items` only, at their paths, if given);
/// nothing for an optional one that does not exist.
async fn object_files(
    client: &ApiClient,
    plan: &PodPlan,
    wanted: &Wanted<'_>,
) -> Result<Files, ClientError> {
    let object = match client
        .get_object(wanted.resource, &plan.namespace, wanted.name)
        .await
    {
        Ok(object) => object,
        Err(error) if error.is_not_found() && wanted.optional => return Ok(Files::new()),
        Err(error) => return Err(error),
    };
    Ok(keys_as_files(
        &object,
        wanted.resource == "secrets",
        wanted.items,
    ))
}

/// An object's `data` (base64 in a Secret) and `binaryData` as files (pure).
fn keys_as_files(object: &Value, secret: bool, items: Option<&[KeyToPath]>) -> Files {
    let decode = |text: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap_or_default()
    };
    let mut data = Files::new();
    for (key, value) in object["data"].as_object().into_iter().flatten() {
        let value = value.as_str().unwrap_or_default();
        let bytes = if secret {
            decode(value)
        } else {
            value.as_bytes().to_vec()
        };
        data.insert(key.clone(), bytes);
    }
    for (key, value) in object["binaryData"].as_object().into_iter().flatten() {
        data.insert(key.clone(), decode(value.as_str().unwrap_or_default()));
    }
    match items {
        Some(items) => items
            .iter()
            .filter_map(|item| Some((item.path.clone(), data.get(&item.key)?.clone())))
            .collect(),
        None => data,
    }
}

/// One source of a projected volume.
async fn projected_files(
    client: &ApiClient,
    plan: &PodPlan,
    source: &VolumeProjection,
) -> Result<Files, ClientError> {
    if let Some(map) = &source.config_map {
        let wanted = Wanted::configmap(&map.name, map.items.as_deref(), map.optional);
        return object_files(client, plan, &wanted).await;
    }
    if let Some(secret) = &source.secret {
        let wanted = Wanted::secret(&secret.name, secret.items.as_deref(), secret.optional);
        return object_files(client, plan, &wanted).await;
    }
    if let Some(downward) = &source.downward_api {
        return Ok(downward
            .items
            .iter()
            .flatten()
            .filter_map(|item| {
                let field = item.field_ref.as_ref()?.field_path.as_str();
                Some((item.path.clone(), pod_field(plan, field)?.into_bytes()))
            })
            .collect());
    }
    if let Some(token) = &source.service_account_token {
        let account = plan
            .spec
            .service_account_name
            .as_deref()
            .filter(|name| !name.is_empty())
            .unwrap_or("default");
        let request = token_request(plan, token.audience.as_deref(), token.expiration_seconds);
        let answer = client
            .create_token(&plan.namespace, account, &request)
            .await?;
        let token_text = answer["status"]["token"].as_str().unwrap_or_default();
        return Ok(Files::from([(
            token.path.clone(),
            token_text.as_bytes().to_vec(),
        )]));
    }
    Ok(Files::new())
}

/// The pod's own field a downward-API file holds (pure).
fn pod_field(plan: &PodPlan, field: &str) -> Option<String> {
    match field {
        "metadata.namespace" => Some(plan.namespace.clone()),
        "metadata.name" => Some(plan.name.clone()),
        "metadata.uid" => Some(plan.uid.clone()),
        "spec.serviceAccountName" => plan.spec.service_account_name.clone(),
        "spec.nodeName" => plan.spec.node_name.clone(),
        _ => None,
    }
}

/// The TokenRequest for the pod's token: bound to the pod, for `audience` (the API's if
/// none), living as the volume asks (the kubelet's 3607 s by default, which the masters
/// extend, as Kubernetes').
fn token_request(plan: &PodPlan, audience: Option<&str>, seconds: Option<i64>) -> Value {
    let audiences: Vec<&str> = audience.into_iter().filter(|a| !a.is_empty()).collect();
    json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": audiences,
            "expirationSeconds": seconds.unwrap_or(3607),
            "boundObjectRef": { "apiVersion": "v1", "kind": "Pod", "name": plan.name, "uid": plan.uid },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> PodPlan {
        PodPlan {
            uid: "uid-1".into(),
            namespace: "team".into(),
            name: "web".into(),
            spec: Default::default(),
            volume_files: Default::default(),
        }
    }

    #[test]
    fn a_secrets_keys_are_decoded_and_items_choose_paths() {
        let secret = json!({ "data": { "user": "YWRh", "pass": "cHc=" } });
        let all = keys_as_files(&secret, true, None);
        assert_eq!(all["user"], b"ada");
        let items = [KeyToPath {
            key: "pass".into(),
            path: "db/password".into(),
            mode: None,
        }];
        let chosen = keys_as_files(&secret, true, Some(&items));
        assert_eq!(chosen.keys().collect::<Vec<_>>(), ["db/password"]);
        let map = json!({ "data": { "ca.crt": "PEM" } });
        assert_eq!(keys_as_files(&map, false, None)["ca.crt"], b"PEM");
    }

    #[test]
    fn the_token_is_asked_for_bound_to_the_pod() {
        let request = token_request(&plan(), None, None);
        assert_eq!(request["spec"]["expirationSeconds"], 3607);
        assert_eq!(
            request["spec"]["boundObjectRef"],
            json!({ "apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "uid-1" })
        );
        assert_eq!(request["spec"]["audiences"], json!([]));
        let vault = token_request(&plan(), Some("vault"), Some(600));
        assert_eq!(vault["spec"]["audiences"], json!(["vault"]));
        assert_eq!(
            pod_field(&plan(), "metadata.namespace").as_deref(),
            Some("team")
        );
        assert_eq!(pod_field(&plan(), "status.podIP"), None);
    }
}
