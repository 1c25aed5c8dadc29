//! The `scale` subresource (pure): an object's replicas as an `autoscaling/v1` Scale, and
//! the replicas a Scale written by a client asks for (`kubectl scale`, autoscalers).

use serde_json::{json, Value};

use crate::error::ApiError;

/// `object`'s Scale: its name and version, `spec.replicas`, and in `status` the observed
/// replicas and the selector as label-selector text.
pub fn scale_of(object: &Value) -> Value {
    let metadata = &object["metadata"];
    let mut scale_metadata = json!({});
    for field in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if !metadata[field].is_null() {
            scale_metadata[field] = metadata[field].clone();
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_metadata,
        "spec": { "replicas": object["spec"]["replicas"].as_i64().unwrap_or(1) },
        "status": {
            "replicas": object["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector_text(&object["spec"]["selector"]),
        },
    })
}

/// The replicas a Scale asks for, refused when missing or negative.
pub fn wanted_replicas(scale: &Value) -> Result<i64, ApiError> {
    match scale["spec"]["replicas"].as_i64() {
        Some(replicas) if replicas >= 0 => Ok(replicas),
        Some(_) => Err(ApiError::bad_field(
            "spec.replicas",
            "must be greater than or equal to 0",
        )),
        None => Err(ApiError::bad_field(
            "spec.replicas",
            "a Scale needs spec.replicas, a whole number",
        )),
    }
}

/// A selector as `kubectl get -l` text: a ReplicationController's map, or a label
/// selector's `matchLabels` and `matchExpressions`.
fn selector_text(selector: &Value) -> String {
    let Some(selector) = selector.as_object() else {
        return String::new();
    };
    let labels = match selector.get("matchLabels") {
        Some(Value::Object(labels)) => Some(labels),
        Some(_) => None,
        None if !selector.contains_key("matchExpressions") => Some(selector),
        None => None,
    };
    let mut terms: Vec<String> = labels
        .into_iter()
        .flatten()
        .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or_default()))
        .collect();
    for expression in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = expression["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = expression["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        terms.push(match expression["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_owned(),
            "DoesNotExist" => format!("!{key}"),
            _ => continue,
        });
    }
    terms.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_s_scale_carries_its_replicas_and_selector() {
        let deployment = json!({
            "metadata": { "name": "web", "namespace": "ns", "resourceVersion": "9", "labels": {} },
            "spec": { "replicas": 3, "selector": {
                "matchLabels": { "app": "web" },
                "matchExpressions": [{ "key": "tier", "operator": "In", "values": ["a", "b"] }],
            } },
            "status": { "replicas": 2 },
        });
        let scale = scale_of(&deployment);
        assert_eq!(scale["metadata"]["resourceVersion"], "9");
        assert!(scale["metadata"].get("labels").is_none());
        assert_eq!(scale["spec"]["replicas"], 3);
        assert_eq!(scale["status"]["replicas"], 2);
        assert_eq!(scale["status"]["selector"], "app=web,tier in (a,b)");
    }

    #[test]
    fn a_replication_controller_s_selector_is_its_map() {
        let rc = json!({ "metadata": { "name": "rc" },
                         "spec": { "replicas": 1, "selector": { "app": "kubia" } } });
        assert_eq!(scale_of(&rc)["status"]["selector"], "app=kubia");
    }

    #[test]
    fn a_scale_must_ask_for_a_whole_non_negative_number() {
        assert_eq!(
            wanted_replicas(&json!({ "spec": { "replicas": 4 } })).unwrap(),
            4
        );
        assert!(wanted_replicas(&json!({ "spec": { "replicas": -1 } })).is_err());
        assert!(wanted_replicas(&json!({ "spec": {} })).is_err());
    }
}
