//! The `serviceaccounts/token` subresource (Kubernetes' TokenRequest): a token signed for
//! a ServiceAccount that exists, optionally bound to a pod of that account (the token dies
//! with the pod), for the audiences asked (the API's by default), living as long as asked
//! (10 minutes at least, an hour by default). Nothing is stored.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;

use super::{Registry, Target};
use crate::error::ApiError;
use crate::service_account_tokens::{Grant, LONGEST, SHORTEST};
use crate::validation::FieldError;

/// What a kubelet asks for its pods' tokens (Kubernetes' marker for extending them).
pub const KUBELET_ASKS: i64 = 3607;

/// NodeRestriction: a node asks only for tokens bound to its own pods.
fn node_may_not(node: &str, why: &str) -> ApiError {
    ApiError::Forbidden {
        message: format!("node {node:?} may not ask for a token {why}"),
    }
}

fn invalid(name: &str, cause: FieldError) -> ApiError {
    ApiError::Invalid {
        kind: "TokenRequest.authentication.k8s.io".into(),
        name: name.to_string(),
        causes: vec![cause],
    }
}

/// How long the token asked for lives (pure).
fn lifetime(name: &str, asked: Option<i64>) -> Result<Duration, ApiError> {
    let Some(seconds) = asked else {
        return Ok(crate::service_account_tokens::DEFAULT_LIFE);
    };
    let shortest = SHORTEST.as_secs() as i64;
    let longest = LONGEST.as_secs() as i64;
    if seconds < shortest {
        return Err(invalid(
            name,
            FieldError::invalid(
                "spec.expirationSeconds",
                seconds,
                "may not specify a duration less than 10 minutes",
            ),
        ));
    }
    if seconds > longest {
        return Err(invalid(
            name,
            FieldError::invalid(
                "spec.expirationSeconds",
                seconds,
                format!("may not specify a duration longer than {longest} seconds (a year)"),
            ),
        ));
    }
    Ok(Duration::from_secs(seconds as u64))
}

impl Registry {
    /// A token for ServiceAccount `namespace/account`, as the TokenRequest `body` asks:
    /// the request back with its status.
    pub async fn request_token(
        &self,
        namespace: &str,
        account: &str,
        body: &[u8],
    ) -> Result<Value, ApiError> {
        let Some(key) = self.token_key() else {
            return Err(ApiError::Forbidden {
                message: "this cluster signs no ServiceAccount tokens: its masters run without \
                          TLS (start them with --pki)"
                    .into(),
            });
        };
        let namespace = if namespace.is_empty() {
            "default"
        } else {
            namespace
        };
        let not_a_request = |error: serde_json::Error| {
            ApiError::bad_request(format!("the body is not a TokenRequest: {error}"))
        };
        let mut body: Value = serde_json::from_slice(body).map_err(not_a_request)?;
        // The status is the answer's: whatever a client sent there (kubectl sends an empty
        // one) is dropped.
        if let Some(fields) = body.as_object_mut() {
            fields.remove("status");
        }
        let mut request: TokenRequest = serde_json::from_value(body).map_err(not_a_request)?;
        let mut lifetime = lifetime(account, request.spec.expiration_seconds)?;
        if let Some(node) = crate::authz::requesting_node() {
            if request.spec.bound_object_ref.is_none() {
                return Err(node_may_not(&node, "not bound to a pod"));
            }
            // A kubelet's token lives a year, as kube-apiserver extends the 3607 s it asks
            // for (its pods' clients need not reread it); it dies with its pod anyway.
            if request.spec.expiration_seconds == Some(KUBELET_ASKS) {
                lifetime = LONGEST;
            }
        }
        let service_account = self
            .get(&Target {
                resource: "serviceaccounts",
                namespace,
                name: account,
            })
            .await?;
        let account_uid = service_account["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let pod = match &request.spec.bound_object_ref {
            None => None,
            Some(bound) if bound.kind.as_deref() == Some("Pod") => {
                let name = bound.name.clone().unwrap_or_default();
                if name.is_empty() {
                    return Err(invalid(
                        account,
                        FieldError::required("spec.boundObjectRef.name", ""),
                    ));
                }
                if !matches!(bound.api_version.as_deref(), None | Some("" | "v1")) {
                    return Err(invalid(
                        account,
                        FieldError::not_supported(
                            "spec.boundObjectRef.apiVersion",
                            bound.api_version.as_deref().unwrap_or(""),
                            &["v1"],
                        ),
                    ));
                }
                let pod = self
                    .get(&Target {
                        resource: "pods",
                        namespace,
                        name: &name,
                    })
                    .await?;
                let uid = pod["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if bound.uid.as_deref().is_some_and(|asked| asked != uid) {
                    return Err(ApiError::Conflict {
                        object: crate::error::ObjectRef {
                            resource: "pods".into(),
                            name: name.clone(),
                        },
                        reason: "the UID in the bound object reference does not match the \
                                 UID in record; the pod may have been recreated"
                            .into(),
                    });
                }
                if let Some(node) = crate::authz::requesting_node() {
                    if pod["spec"]["nodeName"].as_str() != Some(node.as_str()) {
                        return Err(node_may_not(&node, "bound to a pod on another node"));
                    }
                    let mirror =
                        &pod["metadata"]["annotations"][crate::authz::node::MIRROR_ANNOTATION];
                    let named = pod["spec"]["serviceAccountName"].as_str();
                    if mirror.is_string() || named != Some(account) {
                        return Err(node_may_not(
                            &node,
                            "for an account its pod does not name (a mirror pod names none)",
                        ));
                    }
                }
                let runs_as = pod["spec"]["serviceAccountName"]
                    .as_str()
                    .unwrap_or("default");
                if runs_as != account {
                    return Err(ApiError::bad_request(format!(
                        "cannot bind token for serviceaccount {account:?} to pod running with \
                         different serviceaccount name"
                    )));
                }
                Some((name, uid))
            }
            Some(bound) => {
                return Err(invalid(
                    account,
                    FieldError::not_supported(
                        "spec.boundObjectRef.kind",
                        bound.kind.as_deref().unwrap_or(""),
                        &["Pod"],
                    ),
                ))
            }
        };
        let grant = Grant {
            namespace: namespace.to_string(),
            account: account.to_string(),
            account_uid,
            pod,
            audiences: request.spec.audiences.clone(),
            lifetime,
        };
        let now = jiff::Timestamp::now();
        let (token, expires) = key
            .issue(&grant, now.as_second())
            .map_err(ApiError::internal)?;
        let expires = jiff::Timestamp::from_second(expires)
            .map_err(|error| ApiError::internal(error.to_string()))?;
        request.metadata.name = Some(account.to_string());
        request.metadata.namespace = Some(namespace.to_string());
        request.metadata.creation_timestamp = Some(Time(now));
        request.spec.expiration_seconds = Some(lifetime.as_secs() as i64);
        // What the token says, as Kubernetes echoes it: its audiences, its pod's uid.
        if request.spec.audiences.is_empty() {
            request.spec.audiences = vec![crate::service_account_tokens::ISSUER.to_string()];
        }
        if let (Some(bound), Some((_, uid))) = (&mut request.spec.bound_object_ref, &grant.pod) {
            bound.uid = Some(uid.clone());
        }
        request.status = Some(TokenRequestStatus {
            token,
            expiration_timestamp: Time(expires),
        });
        let mut answer = serde_json::to_value(&request)
            .map_err(|error| ApiError::internal(format!("encoding a TokenRequest: {error}")))?;
        answer["apiVersion"] = "authentication.k8s.io/v1".into();
        answer["kind"] = "TokenRequest".into();
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_lives_an_hour_unless_asked_and_at_least_ten_minutes() {
        assert_eq!(lifetime("robot", None).unwrap(), Duration::from_secs(3600));
        assert_eq!(
            lifetime("robot", Some(600)).unwrap(),
            Duration::from_secs(600)
        );
        let short = lifetime("robot", Some(60)).unwrap_err().to_string();
        assert!(short.contains("less than 10 minutes"), "{short}");
        assert!(lifetime("robot", Some(i64::MAX)).is_err());
    }
}
