//! Checks of `metadata`: name, namespace, labels, annotations, owner references, finalizers.
//!
//! Kubernetes' `ValidateObjectMeta` and `ValidateObjectMetaUpdate`, minus what the registry owns
//! (resource versions, deletion timestamps, managed fields).

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rudder_proto::objects::deletion::{FOREGROUND_DELETION, ORPHAN};

use super::names::{dns1123_label, qualified_name, validate_annotations, validate_labels};
use super::FieldError;

/// Problems with a new object's metadata. `name_rule` is the kind's name syntax (e.g.
/// [`super::names::dns1123_subdomain`]); `namespaced` says whether `namespace` must be set
/// (the registry fills it in before validation) or must be empty.
pub fn validate_object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    name_rule: fn(&str) -> Vec<String>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();

    match meta.name.as_deref() {
        None | Some("") => errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        )),
        Some(name) => {
            for msg in name_rule(name) {
                errs.push(FieldError::invalid("metadata.name", name, msg));
            }
        }
    }

    match (namespaced, meta.namespace.as_deref().unwrap_or("")) {
        (true, "") => errs.push(FieldError::required("metadata.namespace", "")),
        (true, namespace) => {
            for msg in dns1123_label(namespace) {
                errs.push(FieldError::invalid("metadata.namespace", namespace, msg));
            }
        }
        (false, "") => {}
        (false, _) => errs.push(FieldError::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        )),
    }

    if let Some(generation) = meta.generation.filter(|g| *g < 0) {
        errs.push(negative("metadata.generation", generation));
    }
    if let Some(grace) = meta.deletion_grace_period_seconds.filter(|g| *g < 0) {
        errs.push(negative("metadata.deletionGracePeriodSeconds", grace));
    }
    if let Some(labels) = &meta.labels {
        errs.extend(validate_labels(labels, "metadata.labels"));
    }
    if let Some(annotations) = &meta.annotations {
        errs.extend(validate_annotations(annotations, "metadata.annotations"));
    }
    errs.extend(validate_owner_references(meta));
    errs.extend(validate_finalizers(
        meta.finalizers.as_deref().unwrap_or_default(),
    ));
    errs
}

/// Problems with changing `old` metadata into `new` (name, namespace, uid, creation time
/// are immutable), plus everything [`validate_object_meta`] checks on `new`.
pub fn validate_object_meta_update(
    new: &ObjectMeta,
    old: &ObjectMeta,
    namespaced: bool,
    name_rule: fn(&str) -> Vec<String>,
) -> Vec<FieldError> {
    let mut errs = validate_object_meta(new, namespaced, name_rule);
    if new.name != old.name {
        errs.push(FieldError::immutable("metadata.name"));
    }
    if new.namespace != old.namespace {
        errs.push(FieldError::immutable("metadata.namespace"));
    }
    if new.uid != old.uid {
        errs.push(FieldError::immutable("metadata.uid"));
    }
    if new.creation_timestamp != old.creation_timestamp {
        errs.push(FieldError::immutable("metadata.creationTimestamp"));
    }
    // Once deletion has started, finalizers may only be removed: adding one could keep the
    // object alive forever after its owner asked for it to go.
    if old.deletion_timestamp.is_some() {
        let before: BTreeSet<&String> = old.finalizers.iter().flatten().collect();
        let added: Vec<&str> = new
            .finalizers
            .iter()
            .flatten()
            .filter(|f| !before.contains(f))
            .map(String::as_str)
            .collect();
        if !added.is_empty() {
            errs.push(FieldError::forbidden(
                "metadata.finalizers",
                format!(
                    "no new finalizers can be added if the object is being deleted, found new \
                     finalizers {added:?}"
                ),
            ));
        }
    }
    errs
}

fn negative(path: &str, value: i64) -> FieldError {
    FieldError::invalid(path, value, "must be greater than or equal to 0")
}

fn validate_owner_references(meta: &ObjectMeta) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut controller: Option<String> = None;
    for (i, owner) in meta.owner_references.iter().flatten().enumerate() {
        let path = format!("metadata.ownerReferences[{i}]");
        for (field, value) in [
            ("apiVersion", &owner.api_version),
            ("kind", &owner.kind),
            ("name", &owner.name),
            ("uid", &owner.uid),
        ] {
            if value.is_empty() {
                errs.push(FieldError::required(format!("{path}.{field}"), ""));
            }
        }
        // Events are garbage collected on their own schedule; owning anything would tie
        // that object's lifetime to an event's.
        if owner.api_version == "v1" && owner.kind == "Event" {
            errs.push(FieldError::invalid(
                &path,
                format!("{}/{}", owner.kind, owner.name),
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if owner.controller == Some(true) {
            let this = format!("{}/{}", owner.kind, owner.name);
            match &controller {
                Some(first) => errs.push(FieldError::invalid(
                    format!("{path}.controller"),
                    true,
                    format!(
                        "Only one reference can have Controller set to true. Found \"true\" in \
                         references for {first} and {this}"
                    ),
                )),
                None => controller = Some(this),
            }
        }
    }
    errs
}

fn validate_finalizers(finalizers: &[String]) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, finalizer) in finalizers.iter().enumerate() {
        let path = format!("metadata.finalizers[{i}]");
        for msg in qualified_name(finalizer) {
            errs.push(FieldError::invalid(&path, finalizer, msg));
        }
        if !seen.insert(finalizer) {
            errs.push(FieldError::duplicate(&path, finalizer));
        }
    }
    if seen.contains(&ORPHAN.to_string()) && seen.contains(&FOREGROUND_DELETION.to_string()) {
        errs.push(FieldError::invalid(
            "metadata.finalizers",
            FOREGROUND_DELETION,
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
    use serde_json::json;

    use super::super::names::dns1123_subdomain;
    use super::super::FieldErrorKind;
    use super::*;

    fn meta(value: serde_json::Value) -> ObjectMeta {
        serde_json::from_value(value).expect("test metadata deserializes")
    }

    fn web() -> ObjectMeta {
        meta(json!({
            "name": "web-0",
            "namespace": "default",
            "uid": "0d9c1c4e-5b52-4b8c-9d1e-5c4d3b2a1f00",
            "creationTimestamp": "2024-05-01T10:00:00Z",
            "labels": {"app.kubernetes.io/name": "web", "tier": "frontend"},
            "annotations": {"kubernetes.io/description": "the web tier"},
            "finalizers": ["example.com/cleanup"],
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9",
                "uid": "a1b2c3d4-0000-0000-0000-000000000001", "controller": true
            }]
        }))
    }

    fn paths(errs: &[FieldError]) -> Vec<&str> {
        errs.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn realistic_namespaced_metadata_is_valid() {
        assert_eq!(
            validate_object_meta(&web(), true, dns1123_subdomain),
            vec![]
        );
    }

    #[test]
    fn a_missing_name_is_required_with_kubernetes_words() {
        let mut m = web();
        m.name = None;
        let errs = validate_object_meta(&m, true, dns1123_subdomain);
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].to_string(),
            "metadata.name: Required value: name or generateName is required"
        );
    }

    #[test]
    fn the_name_is_checked_by_the_kinds_rule() {
        let mut m = web();
        m.name = Some("Web_0".into());
        let errs = validate_object_meta(&m, true, dns1123_subdomain);
        assert_eq!(paths(&errs), ["metadata.name"]);
        assert_eq!(
            errs[0].kind,
            FieldErrorKind::Invalid {
                value: "Web_0".into()
            }
        );
        m.name = Some("web.0".into());
        assert_eq!(validate_object_meta(&m, true, dns1123_subdomain), vec![]);
        assert_eq!(
            paths(&validate_object_meta(&m, true, dns1123_label)),
            ["metadata.name"]
        );
    }

    #[test]
    fn a_namespaced_object_needs_a_valid_namespace() {
        let mut m = web();
        m.namespace = None;
        let errs = validate_object_meta(&m, true, dns1123_subdomain);
        assert_eq!(paths(&errs), ["metadata.namespace"]);
        assert_eq!(errs[0].kind, FieldErrorKind::Required);
        m.namespace = Some("Kube.System".into());
        let errs = validate_object_meta(&m, true, dns1123_subdomain);
        assert_eq!(paths(&errs), ["metadata.namespace"]);
        assert!(matches!(errs[0].kind, FieldErrorKind::Invalid { .. }));
    }

    #[test]
    fn a_cluster_scoped_object_may_not_have_a_namespace() {
        let errs = validate_object_meta(&web(), false, dns1123_subdomain);
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].to_string(),
            "metadata.namespace: Forbidden: not allowed on this type"
        );
        let mut m = web();
        m.namespace = None;
        assert_eq!(validate_object_meta(&m, false, dns1123_subdomain), vec![]);
    }

    #[test]
    fn labels_and_annotations_are_checked_at_their_paths() {
        let mut m = web();
        m.labels
            .get_or_insert_default()
            .insert("tier".into(), "front end".into());
        m.annotations
            .get_or_insert_default()
            .insert("a/b/c".into(), String::new());
        let errs = validate_object_meta(&m, true, dns1123_subdomain);
        assert_eq!(paths(&errs), ["metadata.labels", "metadata.annotations"]);
    }

    #[test]
    fn negative_generation_and_grace_period_are_invalid() {
        let mut m = web();
        m.generation = Some(-1);
        m.deletion_grace_period_seconds = Some(-5);
        let errs = validate_object_meta(&m, true, dns1123_subdomain);
        assert_eq!(
            paths(&errs),
            ["metadata.generation", "metadata.deletionGracePeriodSeconds"]
        );
        assert_eq!(
            errs[0].to_string(),
            "metadata.generation: Invalid value: \"-1\": must be greater than or equal to 0"
        );
    }

    #[test]
    fn owner_references_need_api_version_kind_name_and_uid() {
        let mut m = web();
        m.owner_references
            .get_or_insert_default()
            .push(OwnerReference::default());
        let errs = validate_object_meta(&m, true, dns1123_subdomain);
        assert_eq!(
            paths(&errs),
            [
                "metadata.ownerReferences[1].apiVersion",
                "metadata.ownerReferences[1].kind",
                "metadata.ownerReferences[1].name",
                "metadata.ownerReferences[1].uid",
            ]
        );
        assert!(errs.iter().all(|e| e.kind == FieldErrorKind::Required));
    }

    #[test]
    fn only_one_owner_reference_may_be_the_controller() {
        let mut m = web();
        let mut second = m.owner_references.as_ref().expect("has owners")[0].clone();
        second.name = "web-other".into();
        second.uid = "a1b2c3d4-0000-0000-0000-000000000002".into();
        m.owner_references.get_or_insert_default().push(second);
        let errs = validate_object_meta(&m, true, dns1123_subdomain);
        assert_eq!(paths(&errs), ["metadata.ownerReferences[1].controller"]);
        assert!(errs[0]
            .detail
            .contains("ReplicaSet/web-7d4b9 and ReplicaSet/web-other"));
    }

    #[test]
    fn an_event_may_not_own_anything() {
        let mut m = web();
        m.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Event".into(),
            name: "e".into(),
            uid: "u".into(),
            ..Default::default()
        }]);
        let errs = validate_object_meta(&m, true, dns1123_subdomain);
        assert_eq!(paths(&errs), ["metadata.ownerReferences[0]"]);
    }

    #[test]
    fn finalizers_must_be_qualified_names_and_unique() {
        let mut m = web();
        m.finalizers = Some(vec![
            "kubernetes".into(),
            "example.com/cleanup".into(),
            "bad finalizer".into(),
            "kubernetes".into(),
        ]);
        let errs = validate_object_meta(&m, true, dns1123_subdomain);
        assert_eq!(
            paths(&errs),
            ["metadata.finalizers[2]", "metadata.finalizers[3]"]
        );
        assert!(matches!(errs[0].kind, FieldErrorKind::Invalid { .. }));
        assert_eq!(
            errs[1].kind,
            FieldErrorKind::Duplicate {
                value: "kubernetes".into()
            }
        );
        m.finalizers = Some(vec!["orphan".into(), "foregroundDeletion".into()]);
        let errs = validate_object_meta(&m, true, dns1123_subdomain);
        assert_eq!(paths(&errs), ["metadata.finalizers"]);
        assert!(errs[0].detail.contains("cannot be both set"));
    }

    #[test]
    fn an_update_that_changes_only_labels_is_valid() {
        let old = web();
        let mut new = old.clone();
        new.labels
            .get_or_insert_default()
            .insert("track".into(), "canary".into());
        new.resource_version = Some("42".into());
        assert_eq!(
            validate_object_meta_update(&new, &old, true, dns1123_subdomain),
            vec![]
        );
    }

    #[test]
    fn an_update_may_not_change_name_namespace_uid_or_creation_time() {
        let old = web();
        let mut new = old.clone();
        new.name = Some("web-1".into());
        new.namespace = Some("prod".into());
        new.uid = Some("another".into());
        new.creation_timestamp = Some(Time("2025-01-01T00:00:00Z".parse().expect("timestamp")));
        let errs = validate_object_meta_update(&new, &old, true, dns1123_subdomain);
        assert_eq!(
            paths(&errs),
            [
                "metadata.name",
                "metadata.namespace",
                "metadata.uid",
                "metadata.creationTimestamp"
            ]
        );
        assert!(errs.iter().all(|e| e.kind == FieldErrorKind::Forbidden));
        assert_eq!(
            errs[0].to_string(),
            "metadata.name: Forbidden: field is immutable"
        );
    }

    #[test]
    fn an_update_also_checks_the_new_metadata() {
        let old = web();
        let mut new = old.clone();
        new.finalizers = Some(vec!["a/b/c".into()]);
        let errs = validate_object_meta_update(&new, &old, true, dns1123_subdomain);
        assert_eq!(paths(&errs), ["metadata.finalizers[0]"]);
    }

    #[test]
    fn no_finalizer_may_be_added_once_deletion_has_started() {
        let mut old = web();
        old.deletion_timestamp = Some(Time("2024-05-02T00:00:00Z".parse().expect("timestamp")));
        let mut new = old.clone();
        new.finalizers = Some(vec![]);
        assert_eq!(
            validate_object_meta_update(&new, &old, true, dns1123_subdomain),
            vec![]
        );
        new.finalizers = Some(vec![
            "example.com/cleanup".into(),
            "example.com/more".into(),
        ]);
        let errs = validate_object_meta_update(&new, &old, true, dns1123_subdomain);
        assert_eq!(paths(&errs), ["metadata.finalizers"]);
        assert_eq!(errs[0].kind, FieldErrorKind::Forbidden);
    }
}
