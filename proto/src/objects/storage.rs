//! Storage classes and the names that bind claims, volumes and nodes together, as Kubernetes'
//! `storage/util` and `volume/util` helpers define them. Pure: the API server's
//! DefaultStorageClass admission, the scheduler's VolumeBinding plugin, the PersistentVolume
//! controller and its built-in local-path provisioner all read them.
//!
//! ```text
//!  claim without storageClassName ─► the default class (newest of those marked default)
//!  claim's class ─ volumeBindingMode WaitForFirstConsumer ─► the scheduler picks a node,
//!                                   reserves a static volume there for the claim, or
//!                                   annotates volume.kubernetes.io/selected-node
//!                └ Immediate ─────────────────────────────► bound (or provisioned) at once
//!  class provisioner rudder.io/local-path ─► a hostPath volume on the selected node
//! ```
//!
//! Every cluster has [`default_storage_class`] (`local-path`), as k3s ships one.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Marks the default class (`"true"`).
pub const IS_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
/// The beta spelling of [`IS_DEFAULT_CLASS_ANNOTATION`], still honoured by Kubernetes.
pub const BETA_IS_DEFAULT_CLASS_ANNOTATION: &str =
    "storageclass.beta.kubernetes.io/is-default-class";
/// The class of a claim or volume from before `storageClassName` existed; it wins over the
/// field, as in Kubernetes.
pub const BETA_STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";
/// The node the scheduler chose for a claim's first consumer (`AnnSelectedNode`).
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";
/// Who provisioned a volume (`AnnDynamicallyProvisioned`).
pub const PROVISIONED_BY_ANNOTATION: &str = "pv.kubernetes.io/provisioned-by";
/// Set on a claim once its binding is complete (`AnnBindCompleted`, value `yes`).
pub const BIND_COMPLETED_ANNOTATION: &str = "pv.kubernetes.io/bind-completed";
/// Set on a claim or volume the controller bound, rather than a user (`AnnBoundByController`).
pub const BOUND_BY_CONTROLLER_ANNOTATION: &str = "pv.kubernetes.io/bound-by-controller";

/// The class every cluster starts with.
pub const LOCAL_PATH_CLASS: &str = "local-path";
/// The built-in provisioner: a directory on the node of the claim's first pod.
pub const LOCAL_PATH_PROVISIONER: &str = "rudder.io/local-path";
/// Where the local-path provisioner puts its volumes on a node.
pub const LOCAL_PATH_ROOT: &str = "/var/lib/rudder/storage";
/// The provisioner of classes whose volumes an administrator makes by hand (local volumes).
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

pub const BINDING_IMMEDIATE: &str = "Immediate";
pub const BINDING_WAIT_FOR_FIRST_CONSUMER: &str = "WaitForFirstConsumer";
pub const RECLAIM_DELETE: &str = "Delete";
pub const RECLAIM_RETAIN: &str = "Retain";
pub const RECLAIM_RECYCLE: &str = "Recycle";

/// The label a node carries with its host name; local volumes are pinned to it.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// The class created at start: `local-path`, the default, provisioned by
/// [`LOCAL_PATH_PROVISIONER`] once a pod is scheduled, deleted with its claim.
pub fn default_storage_class() -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(LOCAL_PATH_CLASS.to_string()),
            annotations: Some(BTreeMap::from([(
                IS_DEFAULT_CLASS_ANNOTATION.to_string(),
                "true".to_string(),
            )])),
            ..ObjectMeta::default()
        },
        provisioner: LOCAL_PATH_PROVISIONER.to_string(),
        reclaim_policy: Some(RECLAIM_DELETE.to_string()),
        volume_binding_mode: Some(BINDING_WAIT_FOR_FIRST_CONSUMER.to_string()),
        ..StorageClass::default()
    }
}

/// Whether `class` is marked default (`IsDefaultAnnotation`: either spelling, `"true"`).
pub fn is_default_class(class: &StorageClass) -> bool {
    let annotations = class.metadata.annotations.as_ref();
    [
        IS_DEFAULT_CLASS_ANNOTATION,
        BETA_IS_DEFAULT_CLASS_ANNOTATION,
    ]
    .iter()
    .any(|key| annotations.and_then(|a| a.get(*key)).map(String::as_str) == Some("true"))
}

/// The default class (`GetDefaultClass`): of those marked default, the newest, and of equally
/// new ones the first by name; `None` when no class is marked.
pub fn default_class<'c, C>(classes: impl IntoIterator<Item = &'c C>) -> Option<&'c StorageClass>
where
    C: Borrow<StorageClass> + 'c,
{
    classes
        .into_iter()
        .map(|class: &'c C| <C as Borrow<StorageClass>>::borrow(class))
        .filter(|c| is_default_class(c))
        .min_by(|a, b| {
            let created = |c: &StorageClass| c.metadata.creation_timestamp.as_ref().map(|t| t.0);
            created(b)
                .cmp(&created(a))
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        })
}

/// Whether a claim says which class it wants, even `""` (`PersistentVolumeClaimHasClass`):
/// the DefaultStorageClass admission leaves such a claim alone.
pub fn claim_has_class(claim: &PersistentVolumeClaim) -> bool {
    let annotated = claim
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(BETA_STORAGE_CLASS_ANNOTATION));
    annotated
        || claim
            .spec
            .as_ref()
            .is_some_and(|s| s.storage_class_name.is_some())
}

/// A claim's class (`GetPersistentVolumeClaimClass`): the beta annotation, else
/// `storageClassName`, else `""` (no class).
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    annotated_class(&claim.metadata)
        .or_else(|| claim.spec.as_ref()?.storage_class_name.as_deref())
        .unwrap_or("")
}

/// A volume's class (`GetPersistentVolumeClass`), read as [`claim_class`] reads a claim's.
pub fn volume_class(volume: &PersistentVolume) -> &str {
    annotated_class(&volume.metadata)
        .or_else(|| volume.spec.as_ref()?.storage_class_name.as_deref())
        .unwrap_or("")
}

fn annotated_class(meta: &ObjectMeta) -> Option<&str> {
    meta.annotations
        .as_ref()?
        .get(BETA_STORAGE_CLASS_ANNOTATION)
        .map(String::as_str)
}

/// Whether claims of `class` wait for their first pod to be scheduled before they are bound
/// or provisioned; an unset mode is Immediate.
pub fn waits_for_first_consumer(class: &StorageClass) -> bool {
    class.volume_binding_mode.as_deref() == Some(BINDING_WAIT_FOR_FIRST_CONSUMER)
}

/// The node the scheduler selected for the claim's first pod, if any.
pub fn selected_node(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim
        .metadata
        .annotations
        .as_ref()?
        .get(SELECTED_NODE_ANNOTATION)
        .map(String::as_str)
        .filter(|n| !n.is_empty())
}

/// Whether the claim's binding is complete: it names its volume and carries
/// [`BIND_COMPLETED_ANNOTATION`] (`isPVCFullyBound`).
pub fn is_claim_bound(claim: &PersistentVolumeClaim) -> bool {
    let named = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let completed = claim
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(BIND_COMPLETED_ANNOTATION));
    named && completed
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    fn class(name: &str, default: Option<&str>, created_second: i64) -> StorageClass {
        let mut class: StorageClass = serde_json::from_value(json!({
            "metadata": { "name": name }, "provisioner": "example.com/disk"
        }))
        .expect("a test class decodes");
        if let Some(value) = default {
            class.metadata.annotations = Some(BTreeMap::from([(
                IS_DEFAULT_CLASS_ANNOTATION.to_string(),
                value.to_string(),
            )]));
        }
        class.metadata.creation_timestamp = Some(Time(
            jiff::Timestamp::from_second(created_second).expect("a test time"),
        ));
        class
    }

    fn name(class: Option<&StorageClass>) -> Option<&str> {
        class.and_then(|c| c.metadata.name.as_deref())
    }

    #[test]
    fn the_default_class_is_the_newest_marked_one_then_the_first_by_name() {
        let table: Vec<(&str, Vec<StorageClass>, Option<&str>)> = vec![
            ("none", vec![], None),
            (
                "none marked",
                vec![class("a", None, 1), class("b", Some("false"), 2)],
                None,
            ),
            (
                "one marked",
                vec![class("a", None, 1), class("b", Some("true"), 2)],
                Some("b"),
            ),
            (
                "the newest of two",
                vec![class("old", Some("true"), 1), class("new", Some("true"), 5)],
                Some("new"),
            ),
            (
                "equally new: by name",
                vec![
                    class("zeta", Some("true"), 5),
                    class("alpha", Some("true"), 5),
                ],
                Some("alpha"),
            ),
        ];
        for (why, classes, expected) in table {
            assert_eq!(name(default_class(&classes)), expected, "{why}");
        }
        let mut beta = class("beta", None, 1);
        beta.metadata.annotations = Some(BTreeMap::from([(
            BETA_IS_DEFAULT_CLASS_ANNOTATION.to_string(),
            "true".to_string(),
        )]));
        assert!(is_default_class(&beta), "the beta annotation counts too");
    }

    #[test]
    fn the_built_in_class_is_the_default_and_waits_for_a_pod() {
        let class = default_storage_class();
        assert!(is_default_class(&class));
        assert!(waits_for_first_consumer(&class));
        assert_eq!(class.provisioner, LOCAL_PATH_PROVISIONER);
        assert_eq!(class.reclaim_policy.as_deref(), Some(RECLAIM_DELETE));
        assert_eq!(
            name(default_class(std::slice::from_ref(&class))),
            Some(LOCAL_PATH_CLASS)
        );
    }

    #[test]
    fn a_class_is_read_from_the_beta_annotation_first_and_empty_is_a_choice() {
        let claim = |value: serde_json::Value| -> PersistentVolumeClaim {
            serde_json::from_value(value).expect("a test claim decodes")
        };
        let plain = claim(json!({ "spec": {} }));
        assert!(!claim_has_class(&plain));
        assert_eq!(claim_class(&plain), "");
        let empty = claim(json!({ "spec": { "storageClassName": "" } }));
        assert!(claim_has_class(&empty), "\"\" asks for no class");
        let both = claim(json!({
            "metadata": { "annotations": { BETA_STORAGE_CLASS_ANNOTATION: "old" } },
            "spec": { "storageClassName": "new" } }));
        assert_eq!(claim_class(&both), "old");
        let bound = claim(json!({
            "metadata": { "annotations": { BIND_COMPLETED_ANNOTATION: "yes",
                                           SELECTED_NODE_ANNOTATION: "n1" } },
            "spec": { "volumeName": "pv-1" } }));
        assert!(is_claim_bound(&bound));
        assert_eq!(selected_node(&bound), Some("n1"));
        assert!(!is_claim_bound(&claim(
            json!({ "spec": { "volumeName": "pv-1" } })
        )));
    }
}
