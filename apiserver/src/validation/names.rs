//! Labels and annotations of an object, checked: every problem a [`FieldError`] at its path.
//!
//! The name rules themselves (`IsDNS1123Label`, `IsQualifiedName`, ...) are pure and shared
//! with selectors and the other crates: they live in [`rudder_proto::objects::names`] and are
//! re-exported here for the kinds' checks.

use std::collections::BTreeMap;

pub use rudder_proto::objects::names::{
    cidr, config_map_key, dns1035_label, dns1123_label, dns1123_subdomain, env_var_name,
    ip_address, label_value, path_segment_name, port_name, qualified_name,
};

use super::FieldError;

/// Largest total size, in bytes, of an object's annotation keys and values.
pub const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

/// Every invalid key or value of `labels`, at `path` (`metadata.labels`).
pub fn validate_labels(labels: &BTreeMap<String, String>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (key, value) in labels {
        for msg in qualified_name(key) {
            errs.push(FieldError::invalid(path, key, msg));
        }
        for msg in label_value(value) {
            errs.push(FieldError::invalid(path, value, msg));
        }
    }
    errs
}

/// Invalid annotation keys, and a total size over 256 KiB, at `path`.
pub fn validate_annotations(annotations: &BTreeMap<String, String>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (key, value) in annotations {
        // Annotation keys are qualified names in which case does not matter.
        for msg in qualified_name(&key.to_ascii_lowercase()) {
            errs.push(FieldError::invalid(path, key, msg));
        }
        total = total.saturating_add(key.len()).saturating_add(value.len());
    }
    if total > ANNOTATIONS_MAX_BYTES {
        errs.push(FieldError::too_long(
            path,
            ANNOTATIONS_MAX_BYTES,
            format!("the annotations' keys and values take {total} bytes"),
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::super::FieldErrorKind;
    use super::*;

    #[test]
    fn validate_labels_reports_the_bad_key_and_the_bad_value_at_the_path() {
        let labels = BTreeMap::from([
            ("app".to_string(), "web".to_string()),
            ("bad key".to_string(), "ok".to_string()),
            ("tier".to_string(), "-front".to_string()),
        ]);
        let errs = validate_labels(&labels, "metadata.labels");
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].path, "metadata.labels");
        assert_eq!(
            errs[0].kind,
            FieldErrorKind::Invalid {
                value: "bad key".to_string()
            }
        );
        assert_eq!(
            errs[1].kind,
            FieldErrorKind::Invalid {
                value: "-front".to_string()
            }
        );
    }

    #[test]
    fn validate_annotations_ignores_key_case_and_allows_any_value() {
        let annotations = BTreeMap::from([
            (
                "Example.COM/Note".to_string(),
                "any text at all: {}".to_string(),
            ),
            (
                "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                "{}".to_string(),
            ),
        ]);
        assert!(validate_annotations(&annotations, "metadata.annotations").is_empty());
    }

    #[test]
    fn validate_annotations_rejects_an_invalid_key() {
        let annotations = BTreeMap::from([("no spaces".to_string(), String::new())]);
        let errs = validate_annotations(&annotations, "metadata.annotations");
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path, "metadata.annotations");
        assert_eq!(
            errs[0].kind,
            FieldErrorKind::Invalid {
                value: "no spaces".to_string()
            }
        );
    }

    #[test]
    fn validate_annotations_over_256_kib_in_total_is_too_long() {
        let half = "x".repeat(ANNOTATIONS_MAX_BYTES / 2);
        let at_limit = BTreeMap::from([("a".to_string(), half[1..].to_string() + &half)]);
        assert!(validate_annotations(&at_limit, "metadata.annotations").is_empty());
        let over = BTreeMap::from([("a".to_string(), half.clone()), ("b".to_string(), half)]);
        let errs = validate_annotations(&over, "metadata.annotations");
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path, "metadata.annotations");
        assert_eq!(errs[0].kind, FieldErrorKind::TooLong { max: 262144 });
    }
}
