//! Tolerant reads from Kubernetes JSON, shared by the tables and `describe`.
//!
//! Objects are read as `serde_json::Value` rather than deserialized into `k8s-openapi` types:
//! one mistyped field would make the whole typed decode fail, while here it only turns that one
//! cell into `<none>`, `<unknown>` or the Go zero value kubectl would have printed.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use rudder_proto::objects::selector::LabelSelector;
use serde::Deserialize;
use serde_json::Value;

use super::age::human_age;

/// The object's `metadata.name`, `<unknown>` when it has none.
pub(crate) fn name_of(v: &Value) -> String {
    text_or(v, &["metadata", "name"], "<unknown>").to_owned()
}

/// Whether `metadata.deletionTimestamp` is set: the object is being deleted.
pub(crate) fn is_deleting(v: &Value) -> bool {
    at(v, &["metadata", "deletionTimestamp"]).is_some_and(|t| !t.is_null())
}

/// The value at `path` (a chain of object keys), if every step exists.
pub(crate) fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, key| v.get(key))
}

/// The string at `path`; `None` when missing or not a string.
pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

/// The string at `path`, or `""` as Go's zero value would print.
pub(crate) fn text_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    str_at(v, path).unwrap_or("")
}

/// The non-empty string at `path`, or `fallback`.
pub(crate) fn text_or<'a>(v: &'a Value, path: &[&str], fallback: &'a str) -> &'a str {
    str_at(v, path)
        .filter(|s| !s.is_empty())
        .unwrap_or(fallback)
}

/// The integer at `path`; `None` when missing or not an integer.
pub(crate) fn int_at(v: &Value, path: &[&str]) -> Option<i64> {
    at(v, path).and_then(Value::as_i64)
}

/// The integer at `path`, or 0 (the Go zero value kubectl prints for an unset count).
pub(crate) fn count_at(v: &Value, path: &[&str]) -> i64 {
    int_at(v, path).unwrap_or(0)
}

/// The boolean at `path`; `None` when missing or not a boolean.
pub(crate) fn bool_at(v: &Value, path: &[&str]) -> Option<bool> {
    at(v, path).and_then(Value::as_bool)
}

/// The array at `path`, or an empty slice.
pub(crate) fn array_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The number of entries of the object at `path` (0 when missing or not an object).
pub(crate) fn len_at(v: &Value, path: &[&str]) -> usize {
    at(v, path)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

/// The RFC 3339 time at `path`; `None` when missing, null or unparsable.
pub(crate) fn time_at(v: &Value, path: &[&str]) -> Option<jiff::Timestamp> {
    str_at(v, path).and_then(|s| s.parse().ok())
}

/// kubectl's `translateTimestampSince`: the AGE of `time`, `<unknown>` when there is none.
pub(crate) fn age_of(time: Option<jiff::Timestamp>, now: jiff::Timestamp) -> String {
    time.map_or_else(|| "<unknown>".into(), |t| human_age(t, now))
}

/// The AGE of the time at `path`.
pub(crate) fn age_at(v: &Value, path: &[&str], now: jiff::Timestamp) -> String {
    age_of(time_at(v, path), now)
}

/// Go's `time.RFC1123Z` in UTC, as `kubectl describe` prints times:
/// `Fri, 29 Apr 2016 14:12:33 +0000`.
pub(crate) fn rfc1123z(time: jiff::Timestamp) -> String {
    time.to_zoned(jiff::tz::TimeZone::UTC)
        .strftime("%a, %d %b %Y %H:%M:%S %z")
        .to_string()
}

/// The string map at `path` (labels, selectors, data), sorted by key. A non-string value is
/// kept as its JSON text rather than dropped, so a malformed label is still visible.
pub(crate) fn string_map(v: &Value, path: &[&str]) -> BTreeMap<String, String> {
    let Some(map) = at(v, path).and_then(Value::as_object) else {
        return BTreeMap::new();
    };
    map.iter()
        .map(|(k, v)| {
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            (k.clone(), text)
        })
        .collect()
}

/// apimachinery's `labels.FormatLabels`: `k1=v1,k2=v2` sorted by key, `<none>` when empty.
pub(crate) fn format_labels(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "<none>".into();
    }
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(",")
}

/// A `metav1.LabelSelector` that `LabelSelectorAsSelector` rejects (unknown operator, `In`
/// without values, `Exists` with values, an invalid key or value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidSelector;

/// `metav1.LabelSelectorAsSelector(..).String()`: requirements sorted by key and joined by
/// commas (`app=web,tier in (a,b)`); `""` for a missing or empty selector. The conversion is
/// the one the API server and the controllers use ([`LabelSelector::from_api`]); a selector
/// that does not even decode is as invalid as one it refuses.
pub(crate) fn label_selector(selector: Option<&Value>) -> Result<String, InvalidSelector> {
    let Some(selector) = selector.filter(|s| !s.is_null()) else {
        return Ok(String::new());
    };
    let selector = metav1::LabelSelector::deserialize(selector).map_err(|_| InvalidSelector)?;
    match LabelSelector::from_api(&selector) {
        Ok(selector) => Ok(selector.to_string()),
        Err(_) => Err(InvalidSelector),
    }
}

/// `metav1.FormatLabelSelector`: like [`label_selector`] but `<none>` when empty and
/// `<error>` when invalid.
pub(crate) fn format_label_selector(selector: Option<&Value>) -> String {
    match label_selector(selector) {
        Ok(text) if text.is_empty() => "<none>".into(),
        Ok(text) => text,
        Err(InvalidSelector) => "<error>".into(),
    }
}

/// kubectl's `layoutContainerCells`: the names and the images of `containers`, each joined by
/// commas.
pub(crate) fn container_cells(containers: &[Value]) -> (String, String) {
    let names: Vec<&str> = containers.iter().map(|c| text_at(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| text_at(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

/// Kinds that live outside namespaces: no NAMESPACE column, no `Namespace:` line.
pub(crate) fn is_cluster_scoped(kind: &str) -> bool {
    matches!(
        kind,
        "Node"
            | "Namespace"
            | "PersistentVolume"
            | "StorageClass"
            | "ClusterRole"
            | "ClusterRoleBinding"
            | "PriorityClass"
            | "CustomResourceDefinition"
            | "CSIDriver"
            | "CSINode"
            | "RuntimeClass"
            | "IngressClass"
            | "VolumeAttachment"
            | "CertificateSigningRequest"
            | "MutatingWebhookConfiguration"
            | "ValidatingWebhookConfiguration"
            | "APIService"
    )
}

/// `s` on one line: tabs and newlines would split a cell or break the alignment.
pub(crate) fn one_line(s: &str) -> String {
    s.trim().replace(['\t', '\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn missing_and_mistyped_fields_read_as_none() {
        let v = json!({"metadata": {"name": 7, "labels": "oops"}});
        assert_eq!(str_at(&v, &["metadata", "name"]), None);
        assert_eq!(text_at(&v, &["spec", "nodeName"]), "");
        assert_eq!(count_at(&v, &["status", "replicas"]), 0);
        assert!(array_at(&v, &["spec", "containers"]).is_empty());
        assert!(string_map(&v, &["metadata", "labels"]).is_empty());
        assert_eq!(time_at(&json!({"t": "yesterday"}), &["t"]), None);
    }

    #[test]
    fn non_string_label_values_stay_visible() {
        let v = json!({"labels": {"b": 1, "a": "x"}});
        assert_eq!(format_labels(&string_map(&v, &["labels"])), "a=x,b=1");
    }

    #[test]
    fn empty_labels_format_as_none() {
        assert_eq!(format_labels(&BTreeMap::new()), "<none>");
    }

    #[test]
    fn selectors_sort_requirements_by_key_like_apimachinery() {
        let selector = json!({
            "matchLabels": {"tier": "web", "app": "kubia"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                {"key": "zone", "operator": "NotIn", "values": ["b"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "owner", "operator": "Exists"}
            ]
        });
        assert_eq!(
            label_selector(Some(&selector)),
            Ok("app=kubia,!canary,env in (dev,prod),owner,tier=web,zone notin (b)".into())
        );
    }

    #[test]
    fn missing_or_empty_selectors_format_as_none() {
        assert_eq!(label_selector(None), Ok(String::new()));
        assert_eq!(format_label_selector(None), "<none>");
        assert_eq!(format_label_selector(Some(&json!({}))), "<none>");
    }

    #[test]
    fn invalid_selectors_format_as_error() {
        let selector = json!({"matchExpressions": [{"key": "a", "operator": "Near"}]});
        assert_eq!(label_selector(Some(&selector)), Err(InvalidSelector));
        assert_eq!(format_label_selector(Some(&selector)), "<error>");
        let no_values = json!({"matchExpressions": [{"key": "a", "operator": "In"}]});
        assert_eq!(label_selector(Some(&no_values)), Err(InvalidSelector));
        let bad_key = json!({"matchLabels": {"no spaces": "x"}});
        assert_eq!(format_label_selector(Some(&bad_key)), "<error>");
    }

    #[test]
    fn times_print_in_rfc1123z_utc() {
        let t: jiff::Timestamp = "2016-04-29T14:12:33Z".parse().unwrap();
        assert_eq!(rfc1123z(t), "Fri, 29 Apr 2016 14:12:33 +0000");
        let offset: jiff::Timestamp = "2016-04-29T16:12:33+02:00".parse().unwrap();
        assert_eq!(rfc1123z(offset), "Fri, 29 Apr 2016 14:12:33 +0000");
    }

    #[test]
    fn container_cells_join_names_and_images() {
        let containers = [
            json!({"name": "web", "image": "nginx"}),
            json!({"name": "log", "image": "fluentd"}),
        ];
        assert_eq!(
            container_cells(&containers),
            ("web,log".into(), "nginx,fluentd".into())
        );
    }

    #[test]
    fn one_line_flattens_tabs_and_newlines() {
        assert_eq!(one_line(" a\tb\nc \n"), "a b c");
    }
}
