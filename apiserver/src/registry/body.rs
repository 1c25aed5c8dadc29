//! Request bodies: JSON or YAML in, a JSON object out, within the size the store can take,
//! and the kind they are (from the body, the request, or both in agreement). Pure.

use serde_json::Value;

use crate::error::ApiError;
use crate::kinds::{self, KindInfo};
use crate::object;

/// The object in a request body of at most `limit` bytes.
/// A JSON patch (RFC 6902): a JSON list of operations, at most `limit` bytes.
pub(crate) fn parse_json_patch(body: &[u8], limit: usize) -> Result<Value, ApiError> {
    if body.len() > limit {
        return Err(ApiError::TooLarge {
            size: body.len(),
            limit,
        });
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("the body is not valid JSON: {error}")))?;
    if !value.is_array() {
        return Err(ApiError::bad_request(
            "a JSON patch must be a list of operations ([{\"op\": ..., \"path\": ...}])",
        ));
    }
    Ok(value)
}

pub(crate) fn parse(body: &[u8], limit: usize) -> Result<Value, ApiError> {
    if body.len() > limit {
        return Err(ApiError::TooLarge {
            size: body.len(),
            limit,
        });
    }
    let text = std::str::from_utf8(body)
        .map_err(|error| ApiError::bad_request(format!("the body is not UTF-8: {error}")))?;
    let value: Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|error| {
            ApiError::bad_request(format!("the body is not valid JSON: {error}"))
        })?
    } else {
        serde_yaml::from_str(text).map_err(|error| {
            ApiError::bad_request(format!("the body is neither JSON nor valid YAML: {error}"))
        })?
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the body must be a JSON object (a Kubernetes object with apiVersion, kind, \
             metadata)",
        ));
    }
    Ok(value)
}

/// `object` as stored, if it fits in `limit` bytes.
pub(crate) fn encode(object: &Value, limit: usize) -> Result<Vec<u8>, ApiError> {
    let body = object::encode(object);
    if body.len() > limit {
        return Err(ApiError::TooLarge {
            size: body.len(),
            limit,
        });
    }
    Ok(body)
}

/// The kind of a body: from its apiVersion/kind, checked against the request's resource
/// (either may be missing, not both). Fills in apiVersion/kind when the body lacks them.
pub(crate) fn kind_of(resource: &str, object: &mut Value) -> Result<&'static KindInfo, ApiError> {
    let api_version = object["apiVersion"].as_str().unwrap_or("").to_string();
    let kind = object["kind"].as_str().unwrap_or("").to_string();
    let from_body = match (api_version.as_str(), kind.as_str()) {
        ("", "") => None,
        ("", _) => {
            return Err(ApiError::bad_field(
                "apiVersion",
                format!("Object 'apiVersion' is missing in the {kind} object"),
            ))
        }
        (_, "") => {
            return Err(ApiError::bad_field(
                "kind",
                "Object 'Kind' is missing: set kind (e.g. Pod, Deployment)",
            ))
        }
        (api_version, kind) => Some(kinds::by_api_version(api_version, kind).ok_or_else(|| {
            ApiError::bad_field(
                "kind",
                match kinds::KINDS.iter().find(|k| k.kind == kind) {
                    Some(known) => format!(
                        "no kind {kind:?} is registered for version {api_version:?}: use \
                         apiVersion {:?}",
                        known.api_version
                    ),
                    None => format!("no kind {kind:?} is registered for version {api_version:?}"),
                },
            )
        })?),
    };
    let info = match (from_body, resource) {
        (None, "") => {
            return Err(ApiError::bad_field(
                "kind",
                "Object 'Kind' is missing: set apiVersion and kind",
            ))
        }
        (Some(info), "") => info,
        (None, resource) => super::kind(resource)?,
        (Some(info), resource) => {
            let requested = super::kind(resource)?;
            if !std::ptr::eq(info, requested) {
                return Err(ApiError::bad_field(
                    "kind",
                    format!(
                        "the body is a {} but the request is for {}",
                        info.kind,
                        requested.qualified_resource()
                    ),
                ));
            }
            info
        }
    };
    object["apiVersion"] = Value::from(info.api_version);
    object["kind"] = Value::from(info.kind);
    Ok(info)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn bodies_are_json_or_yaml_objects_within_the_limit() {
        let json = parse(br#"{"kind": "Pod"}"#, 100).unwrap();
        let yaml = parse(b"kind: Pod\n", 100).unwrap();
        assert_eq!(json, yaml);
        assert!(matches!(
            parse(br#"{"kind": "Pod"}"#, 10),
            Err(ApiError::TooLarge {
                size: 15,
                limit: 10
            })
        ));
        let error = parse(b"[1, 2]", 100).unwrap_err();
        assert!(
            error.to_string().contains("must be a JSON object"),
            "{error}"
        );
        let error = parse(b"{not json", 100).unwrap_err();
        assert!(error.to_string().contains("not valid JSON"), "{error}");
    }

    #[test]
    fn the_kind_comes_from_the_body_or_the_request_and_they_must_agree() {
        let mut bare = json!({ "metadata": { "name": "p" } });
        assert_eq!(kind_of("pods", &mut bare).unwrap().kind, "Pod");
        assert_eq!(bare["apiVersion"], "v1");
        assert_eq!(bare["kind"], "Pod");

        let mut deployment = json!({ "apiVersion": "apps/v1", "kind": "Deployment" });
        assert_eq!(kind_of("", &mut deployment).unwrap().kind, "Deployment");
        let error = kind_of("pods", &mut deployment).unwrap_err();
        assert!(
            error.to_string().contains("the body is a Deployment"),
            "{error}"
        );

        let mut old_version = json!({ "apiVersion": "v1", "kind": "Deployment" });
        let error = kind_of("", &mut old_version).unwrap_err();
        assert!(
            error.to_string().contains("use apiVersion \"apps/v1\""),
            "{error}"
        );
        assert!(kind_of("", &mut json!({})).is_err());
    }
}
