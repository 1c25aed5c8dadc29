//! Checks of `metadata`: name, namespace, labels, annotations, owner references, finalizers.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::FieldError;

/// Problems with a new object's metadata. `name_rule` is the kind's name syntax (e.g.
/// [`super::names::dns1123_subdomain`]); `namespaced` says whether `namespace` must be set
/// (the registry fills it in before validation) or must be empty.
pub fn validate_object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    name_rule: fn(&str) -> Vec<String>,
) -> Vec<FieldError> {
    let _ = (meta, namespaced, name_rule);
    Vec::new()
}

/// Problems with changing `old` metadata into `new` (name, namespace, uid, creation time
/// are immutable), plus everything [`validate_object_meta`] checks on `new`.
pub fn validate_object_meta_update(
    new: &ObjectMeta,
    old: &ObjectMeta,
    namespaced: bool,
    name_rule: fn(&str) -> Vec<String>,
) -> Vec<FieldError> {
    let _ = old;
    validate_object_meta(new, namespaced, name_rule)
}
