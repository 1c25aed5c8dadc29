//! Objects as stored: keys, the JSON body, and the metadata fields the server owns.
//! Pure helpers over `serde_json::Value`.

use rudder_raftstore::kv::{KeyValue, Revision};
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::kinds::KindInfo;

/// The store key of one object: `/registry/<resource>/<namespace>/<name>` (namespaced) or
/// `/registry/<resource>/<name>`.
pub fn key(info: &KindInfo, namespace: &str, name: &str) -> Vec<u8> {
    if info.namespaced {
        format!("/registry/{}/{namespace}/{name}", info.resource).into_bytes()
    } else {
        format!("/registry/{}/{name}", info.resource).into_bytes()
    }
}

/// The prefix under which every object of a kind (in `namespace`, or in all namespaces when
/// it is empty) lives.
pub fn prefix(info: &KindInfo, namespace: &str) -> Vec<u8> {
    if info.namespaced && !namespace.is_empty() {
        format!("/registry/{}/{namespace}/", info.resource).into_bytes()
    } else {
        format!("/registry/{}/", info.resource).into_bytes()
    }
}

/// The stored JSON of `kv` with `metadata.resourceVersion` set to its revision (the store
/// keeps no resourceVersion in the body: the revision is the version).
pub fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    decode_at(&kv.value, kv.mod_revision, &kv.key)
}

/// Like [`decode`], for a body and the revision to report (a deletion's revision).
pub fn decode_at(body: &[u8], revision: Revision, key: &[u8]) -> Result<Value, ApiError> {
    let mut object: Value = serde_json::from_slice(body).map_err(|error| {
        ApiError::internal(format!(
            "stored object {} is not JSON: {error}",
            String::from_utf8_lossy(key)
        ))
    })?;
    set_resource_version(&mut object, revision);
    Ok(object)
}

/// The body to store: the object without its resourceVersion.
pub fn encode(object: &Value) -> Vec<u8> {
    let mut stored = object.clone();
    if let Some(meta) = stored.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    stored.to_string().into_bytes()
}

pub fn set_resource_version(object: &mut Value, revision: Revision) {
    metadata_mut(object).insert("resourceVersion".into(), Value::from(revision.to_string()));
}

/// `metadata` as a mutable map, created when missing.
pub fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = json!({});
    }
    let map = object.as_object_mut().expect("made an object above");
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("made an object above")
}

/// A string field of `metadata` ("" when absent).
pub fn meta_str<'a>(object: &'a Value, field: &str) -> &'a str {
    object["metadata"][field].as_str().unwrap_or("")
}

pub fn name(object: &Value) -> &str {
    meta_str(object, "name")
}

pub fn namespace(object: &Value) -> &str {
    meta_str(object, "namespace")
}

pub fn uid(object: &Value) -> &str {
    meta_str(object, "uid")
}

pub fn is_being_deleted(object: &Value) -> bool {
    !object["metadata"]["deletionTimestamp"].is_null()
}

pub fn finalizers(object: &Value) -> Vec<String> {
    object["metadata"]["finalizers"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Selectable fields that are booleans (unset = false).
const BOOLEAN_FIELDS: [&str; 2] = ["spec.unschedulable", "spec.hostNetwork"];

/// The value of a field selector's field: a dotted path into the object, scalars as text,
/// a missing field as "".
pub fn field_value(object: &Value, path: &str) -> String {
    let mut current = object;
    for part in path.split('.') {
        current = &current[part];
    }
    match current {
        Value::String(text) => text.clone(),
        // Kubernetes selects an unset boolean as its default, false.
        Value::Null if BOOLEAN_FIELDS.contains(&path) => "false".into(),
        Value::Null => String::new(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        other => other.to_string(),
    }
}

/// The object's labels (empty when it has none).
pub fn labels(object: &Value) -> std::collections::BTreeMap<String, String> {
    object["metadata"]["labels"]
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `object` lists an owner with `owner_uid` in `metadata.ownerReferences`.
pub fn is_owned_by(object: &Value, owner_uid: &str) -> bool {
    object["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|owners| owners.iter().any(|o| o["uid"].as_str() == Some(owner_uid)))
}

/// The current time as Kubernetes writes timestamps (RFC 3339, whole seconds, UTC).
pub fn timestamp(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A Kubernetes timestamp back as an instant.
pub fn parse_timestamp(text: &str) -> Option<jiff::Timestamp> {
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_values_follow_dotted_paths_and_render_scalars_as_text() {
        let pod = json!({ "spec": { "nodeName": "n1", "hostNetwork": true }, "status": {} });
        assert_eq!(field_value(&pod, "spec.nodeName"), "n1");
        assert_eq!(field_value(&pod, "spec.hostNetwork"), "true");
        assert_eq!(field_value(&pod, "status.phase"), "");
        let node = json!({ "spec": {} });
        assert_eq!(field_value(&node, "spec.unschedulable"), "false");
    }

    #[test]
    fn stored_bodies_carry_no_resource_version_and_decoding_adds_it() {
        let object = json!({ "metadata": { "name": "a", "resourceVersion": "7" } });
        let body = encode(&object);
        assert!(!String::from_utf8_lossy(&body).contains("resourceVersion"));
        let back = decode_at(&body, 12, b"/registry/pods/default/a").unwrap();
        assert_eq!(back["metadata"]["resourceVersion"], "12");
    }

    #[test]
    fn timestamps_are_whole_seconds_in_utc() {
        let at: jiff::Timestamp = "2016-04-29T12:12:33.5Z".parse().unwrap();
        assert_eq!(timestamp(at), "2016-04-29T12:12:33Z");
        assert_eq!(
            parse_timestamp("2016-04-29T12:12:33Z").map(timestamp),
            Some(timestamp(at))
        );
    }
}
