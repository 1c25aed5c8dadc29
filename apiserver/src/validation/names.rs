//! Syntax of names, label keys and values, annotation sizes (Kubernetes' `validation` package).

use std::collections::BTreeMap;

use super::FieldError;

/// Problems with `value` as an RFC 1123 label (`my-name`): empty when valid.
pub fn dns1123_label(value: &str) -> Vec<String> {
    let _ = value;
    Vec::new()
}

/// Problems with `value` as an RFC 1123 subdomain (`my.name`): empty when valid.
pub fn dns1123_subdomain(value: &str) -> Vec<String> {
    let _ = value;
    Vec::new()
}

/// Problems with `value` as an RFC 1035 label (Service names: must start with a letter).
pub fn dns1035_label(value: &str) -> Vec<String> {
    let _ = value;
    Vec::new()
}

/// Problems with `value` as a qualified name (`prefix/name`: label keys, finalizers).
pub fn qualified_name(value: &str) -> Vec<String> {
    let _ = value;
    Vec::new()
}

/// Problems with `value` as a label value: empty when valid.
pub fn label_value(value: &str) -> Vec<String> {
    let _ = value;
    Vec::new()
}

/// Every invalid key or value of `labels`, at `path` (`metadata.labels`).
pub fn validate_labels(labels: &BTreeMap<String, String>, path: &str) -> Vec<FieldError> {
    let _ = (labels, path);
    Vec::new()
}

/// Invalid annotation keys, and a total size over 256 KiB, at `path`.
pub fn validate_annotations(annotations: &BTreeMap<String, String>, path: &str) -> Vec<FieldError> {
    let _ = (annotations, path);
    Vec::new()
}
