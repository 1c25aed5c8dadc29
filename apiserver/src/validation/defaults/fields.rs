//! The small "fill if unset" helpers every kind's defaults share (and their tests' `defaulted`).

use k8s_openapi::api::core::v1::{HostPathVolumeSource, PersistentVolumeClaimSpec};

#[cfg(test)]
use super::super::ApplyDefaults;

/// Fills a string field Go stores by value, where `""` and missing both mean unset.
pub(super) fn default_string(field: &mut Option<String>, value: &str) {
    if field.as_deref().is_none_or(str::is_empty) {
        *field = Some(value.to_string());
    }
}

/// Fills a number Go stores by value, where `0` and missing both mean unset.
pub(super) fn default_nonzero(field: &mut Option<i32>, value: i32) {
    if matches!(field, None | Some(0)) {
        *field = Some(value);
    }
}

/// A hostPath volume's type, whose default `""` means "no check before mounting".
pub(super) fn host_path(source: &mut HostPathVolumeSource) {
    source.type_.get_or_insert_with(String::new);
}

/// A claim's spec, wherever it appears: a PVC, a StatefulSet's claim templates, an
/// ephemeral volume.
pub(super) fn claim_spec(spec: &mut PersistentVolumeClaimSpec) {
    spec.volume_mode
        .get_or_insert_with(|| "Filesystem".to_string());
}

/// Decodes a manifest, applies defaults, checks that a second pass changes nothing, and
/// returns the result as JSON for assertions on paths.
#[cfg(test)]
pub(super) fn defaulted<K>(manifest: serde_json::Value) -> serde_json::Value
where
    K: ApplyDefaults
        + serde::de::DeserializeOwned
        + serde::Serialize
        + Clone
        + PartialEq
        + std::fmt::Debug,
{
    let mut object: K = match serde_json::from_value(manifest) {
        Ok(object) => object,
        Err(error) => panic!("test manifest does not decode: {error}"),
    };
    object.apply_defaults();
    let once = object.clone();
    object.apply_defaults();
    assert_eq!(object, once, "a second pass of defaults changed the object");
    match serde_json::to_value(&object) {
        Ok(value) => value,
        Err(error) => panic!("defaulted object does not encode: {error}"),
    }
}
