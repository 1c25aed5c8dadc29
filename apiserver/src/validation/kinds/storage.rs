//! PersistentVolume and PersistentVolumeClaim, as `pkg/apis/core/validation` checks them
//! (StorageClass is `storage_class`'s).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeSpec,
};
use rudder_proto::objects::storage::BETA_STORAGE_CLASS_ANNOTATION;

use super::super::names::dns1123_subdomain;
use super::super::quantity::Quantity;
use super::super::selector::validate_selector;
use super::super::{FieldError, Validate};
use super::{each_invalid, immutable, one_of, quantity};

/// Access modes, in the order Kubernetes lists them.
const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];
const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];

/// Access modes: at least one, each known, and `ReadWriteOncePod` alone (it promises a
/// single pod, which no other mode can keep).
fn access_modes(errs: &mut Vec<FieldError>, modes: Option<&[String]>, path: &str, detail: &str) {
    let modes = modes.unwrap_or_default();
    if modes.is_empty() {
        errs.push(FieldError::required(path, detail));
    }
    for mode in modes {
        if !ACCESS_MODES.contains(&mode.as_str()) {
            errs.push(FieldError::not_supported(path, mode, ACCESS_MODES));
        }
    }
    let once_pod = modes.iter().any(|m| m == "ReadWriteOncePod");
    if once_pod && modes.len() > 1 {
        errs.push(FieldError::forbidden(
            path,
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

fn storage_class(errs: &mut Vec<FieldError>, name: Option<&str>, path: &str) {
    if let Some(name) = name.filter(|n| !n.is_empty()) {
        each_invalid(errs, path, name, dns1123_subdomain(name));
    }
}

/// The volume sources a PersistentVolume may name, by their JSON field names.
fn sources(spec: &PersistentVolumeSpec) -> Vec<&'static str> {
    let present = [
        (
            "awsElasticBlockStore",
            spec.aws_elastic_block_store.is_some(),
        ),
        ("azureDisk", spec.azure_disk.is_some()),
        ("azureFile", spec.azure_file.is_some()),
        ("cephfs", spec.cephfs.is_some()),
        ("cinder", spec.cinder.is_some()),
        ("csi", spec.csi.is_some()),
        ("fc", spec.fc.is_some()),
        ("flexVolume", spec.flex_volume.is_some()),
        ("flocker", spec.flocker.is_some()),
        ("gcePersistentDisk", spec.gce_persistent_disk.is_some()),
        ("glusterfs", spec.glusterfs.is_some()),
        ("hostPath", spec.host_path.is_some()),
        ("iscsi", spec.iscsi.is_some()),
        ("local", spec.local.is_some()),
        ("nfs", spec.nfs.is_some()),
        (
            "photonPersistentDisk",
            spec.photon_persistent_disk.is_some(),
        ),
        ("portworxVolume", spec.portworx_volume.is_some()),
        ("quobyte", spec.quobyte.is_some()),
        ("rbd", spec.rbd.is_some()),
        ("scaleIO", spec.scale_io.is_some()),
        ("storageos", spec.storageos.is_some()),
        ("vsphereVolume", spec.vsphere_volume.is_some()),
    ];
    present
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| name)
        .collect()
}

impl Validate for PersistentVolume {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = self.spec.clone().unwrap_or_default();
        access_modes(
            &mut errs,
            spec.access_modes.as_deref(),
            "spec.accessModes",
            "",
        );

        let empty = BTreeMap::new();
        let capacity = spec.capacity.as_ref().unwrap_or(&empty);
        match capacity.get("storage") {
            None => errs.push(FieldError::required("spec.capacity.storage", "")),
            Some(size) => {
                let at = "spec.capacity.storage";
                if quantity(&mut errs, at, &size.0).is_some_and(|q| q <= Quantity::ZERO) {
                    errs.push(FieldError::invalid(
                        at,
                        &size.0,
                        "must be greater than zero",
                    ));
                }
            }
        }
        // A volume offers storage and nothing else; other resources could never be claimed.
        for name in capacity.keys().filter(|k| *k != "storage") {
            errs.push(FieldError::not_supported(
                "spec.capacity",
                name,
                &["storage"],
            ));
        }

        match sources(&spec).as_slice() {
            [] => errs.push(FieldError::required("spec", "must specify a volume type")),
            [_] => {}
            [_, extra @ ..] => {
                for source in extra {
                    errs.push(FieldError::forbidden(
                        format!("spec.{source}"),
                        "may not specify more than 1 volume type",
                    ));
                }
            }
        }
        if let Some(host) = &spec.host_path {
            if host.path.is_empty() {
                errs.push(FieldError::required("spec.hostPath.path", ""));
            }
        }
        if let Some(nfs) = &spec.nfs {
            if nfs.server.is_empty() {
                errs.push(FieldError::required("spec.nfs.server", ""));
            }
            if !nfs.path.starts_with('/') {
                errs.push(FieldError::invalid(
                    "spec.nfs.path",
                    &nfs.path,
                    "must be an absolute path",
                ));
            }
        }
        let policies = ["Delete", "Recycle", "Retain"];
        let policy = spec.persistent_volume_reclaim_policy.as_deref();
        one_of(
            &mut errs,
            "spec.persistentVolumeReclaimPolicy",
            policy,
            &policies,
        );
        one_of(
            &mut errs,
            "spec.volumeMode",
            spec.volume_mode.as_deref(),
            VOLUME_MODES,
        );
        storage_class(
            &mut errs,
            spec.storage_class_name.as_deref(),
            "spec.storageClassName",
        );
        errs
    }

    /// The volume behind a PersistentVolume is fixed; capacity, access modes, reclaim
    /// policy and the claim binding may change.
    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = self.validate();
        let new_spec = self.spec.clone().unwrap_or_default();
        let old_spec = old.spec.clone().unwrap_or_default();
        let source = |spec: &PersistentVolumeSpec| {
            let mut source = spec.clone();
            source.access_modes = None;
            source.capacity = None;
            source.claim_ref = None;
            source.mount_options = None;
            source.node_affinity = None;
            source.persistent_volume_reclaim_policy = None;
            source.storage_class_name = None;
            source.volume_attributes_class_name = None;
            source.volume_mode = None;
            source
        };
        if source(&new_spec) != source(&old_spec) {
            errs.push(FieldError::forbidden(
                "spec.persistentvolumesource",
                "spec.persistentvolumesource is immutable after creation",
            ));
        }
        immutable(
            &mut errs,
            "spec.volumeMode",
            &new_spec.volume_mode,
            &old_spec.volume_mode,
        );
        errs
    }
}

/// A claim's spec at `path` (`spec`, or a StatefulSet's `spec.volumeClaimTemplates[i].spec`).
pub(super) fn claim_spec(spec: &PersistentVolumeClaimSpec, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let at = format!("{path}.accessModes");
    access_modes(
        &mut errs,
        spec.access_modes.as_deref(),
        &at,
        "at least 1 access mode is required",
    );
    if let Some(selector) = &spec.selector {
        if let Err(problems) = validate_selector(selector, &format!("{path}.selector")) {
            errs.extend(problems);
        }
    }
    let requests = spec.resources.as_ref().and_then(|r| r.requests.as_ref());
    let at = format!("{path}.resources.requests.storage");
    match requests.and_then(|r| r.get("storage")) {
        None => errs.push(FieldError::required(at, "")),
        Some(size) => {
            if quantity(&mut errs, &at, &size.0).is_some_and(|q| q <= Quantity::ZERO) {
                errs.push(FieldError::invalid(
                    at,
                    &size.0,
                    "must be greater than zero",
                ));
            }
        }
    }
    one_of(
        &mut errs,
        format!("{path}.volumeMode"),
        spec.volume_mode.as_deref(),
        VOLUME_MODES,
    );
    storage_class(
        &mut errs,
        spec.storage_class_name.as_deref(),
        &format!("{path}.storageClassName"),
    );
    errs
}

fn requested_storage(spec: &PersistentVolumeClaimSpec) -> Option<Quantity> {
    let requests = spec.resources.as_ref()?.requests.as_ref()?;
    Quantity::parse(&requests.get("storage")?.0).ok()
}

impl Validate for PersistentVolumeClaim {
    fn validate(&self) -> Vec<FieldError> {
        claim_spec(&self.spec.clone().unwrap_or_default(), "spec")
    }

    /// A claim is fixed once made, so quotas and limits cannot be gamed; it may only grow
    /// (volume expansion), and be bound to a volume once.
    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = self.validate();
        let new_spec = self.spec.clone().unwrap_or_default();
        let old_spec = old.spec.clone().unwrap_or_default();

        let mut unchanged = new_spec.clone();
        if old_spec.volume_name.as_deref().is_none_or(str::is_empty) {
            unchanged.volume_name.clone_from(&old_spec.volume_name);
        }
        // A claim made without a class may be given one later (Kubernetes' retroactive
        // default StorageClass assignment); one that has a class keeps it.
        let old_annotated = old
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(BETA_STORAGE_CLASS_ANNOTATION));
        if old_spec.storage_class_name.is_none() && !old_annotated {
            unchanged.storage_class_name = None;
        }
        unchanged
            .volume_attributes_class_name
            .clone_from(&old_spec.volume_attributes_class_name);
        let old_storage = old_spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref());
        let old_storage = old_storage.and_then(|r| r.get("storage")).cloned();
        if let Some(requests) = unchanged
            .resources
            .as_mut()
            .and_then(|r| r.requests.as_mut())
        {
            match &old_storage {
                Some(size) => requests.insert("storage".into(), size.clone()),
                None => requests.remove("storage"),
            };
        }
        if unchanged != old_spec {
            errs.push(FieldError::forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and \
                 volumeAttributesClassName for bound claims",
            ));
        }
        if let (Some(new), Some(old)) = (requested_storage(&new_spec), requested_storage(&old_spec))
        {
            if new < old {
                errs.push(FieldError::forbidden(
                    "spec.resources.requests.storage",
                    "field can not be less than previous value",
                ));
            }
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::FieldErrorKind;
    use super::super::test_util::{from_json, only, paths};
    use super::*;
    use serde_json::json;

    fn pv(change: impl FnOnce(&mut serde_json::Value)) -> PersistentVolume {
        let mut value = json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": "task-pv-volume", "labels": {"type": "local"}},
            "spec": {
                "storageClassName": "manual",
                "capacity": {"storage": "10Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": "/mnt/data"}
            }
        });
        change(&mut value);
        from_json(value)
    }

    fn pvc(change: impl FnOnce(&mut serde_json::Value)) -> PersistentVolumeClaim {
        let mut value = json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "task-pv-claim"},
            "spec": {
                "storageClassName": "manual",
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "3Gi"}}
            }
        });
        change(&mut value);
        from_json(value)
    }

    #[test]
    fn the_docs_volume_is_valid() {
        assert_eq!(pv(|_| {}).validate(), vec![]);
    }

    #[test]
    fn a_volume_needs_a_storage_capacity() {
        let errs = pv(|v| v["spec"]["capacity"] = json!({})).validate();
        assert_eq!(
            only(&errs, "spec.capacity.storage").kind,
            FieldErrorKind::Required
        );
        let errs = pv(|v| v["spec"]["capacity"]["storage"] = json!("0")).validate();
        assert_eq!(
            only(&errs, "spec.capacity.storage").detail,
            "must be greater than zero"
        );
        let errs = pv(|v| v["spec"]["capacity"]["cpu"] = json!("1")).validate();
        assert!(matches!(
            only(&errs, "spec.capacity").kind,
            FieldErrorKind::NotSupported { .. }
        ));
    }

    #[test]
    fn a_volume_needs_known_access_modes() {
        let errs = pv(|v| v["spec"]["accessModes"] = json!([])).validate();
        assert_eq!(
            only(&errs, "spec.accessModes").kind,
            FieldErrorKind::Required
        );
        let errs = pv(|v| v["spec"]["accessModes"] = json!(["ReadWriteAlways"])).validate();
        assert_eq!(
            only(&errs, "spec.accessModes").to_string(),
            "spec.accessModes: Unsupported value: \"ReadWriteAlways\": supported values: \
             \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\""
        );
        let errs = pv(|v| v["spec"]["accessModes"] = json!(["ReadWriteOncePod", "ReadOnlyMany"]))
            .validate();
        assert_eq!(
            only(&errs, "spec.accessModes").kind,
            FieldErrorKind::Forbidden
        );
    }

    #[test]
    fn a_volume_has_exactly_one_source() {
        let errs = pv(|v| {
            v["spec"]
                .as_object_mut()
                .expect("object")
                .remove("hostPath");
        })
        .validate();
        assert_eq!(only(&errs, "spec").detail, "must specify a volume type");
        let errs = pv(|v| v["spec"]["nfs"] = json!({"server": "nfs.local", "path": "/exports"}))
            .validate();
        assert_eq!(only(&errs, "spec.nfs").kind, FieldErrorKind::Forbidden);
    }

    #[test]
    fn a_volume_reclaim_policy_is_known() {
        let errs = pv(|v| v["spec"]["persistentVolumeReclaimPolicy"] = json!("Keep")).validate();
        only(&errs, "spec.persistentVolumeReclaimPolicy");
    }

    #[test]
    fn a_volume_source_is_immutable_but_capacity_is_not() {
        let old = pv(|_| {});
        let grown = pv(|v| v["spec"]["capacity"]["storage"] = json!("20Gi"));
        assert_eq!(grown.validate_update(&old), vec![]);
        let moved = pv(|v| v["spec"]["hostPath"]["path"] = json!("/mnt/other"));
        assert_eq!(
            only(&moved.validate_update(&old), "spec.persistentvolumesource").kind,
            FieldErrorKind::Forbidden
        );
    }

    #[test]
    fn the_docs_claim_is_valid() {
        assert_eq!(pvc(|_| {}).validate(), vec![]);
    }

    #[test]
    fn a_claim_needs_access_modes() {
        let errs = pvc(|c| c["spec"]["accessModes"] = json!([])).validate();
        assert_eq!(
            only(&errs, "spec.accessModes").to_string(),
            "spec.accessModes: Required value: at least 1 access mode is required"
        );
    }

    #[test]
    fn a_claim_requests_a_positive_storage_size() {
        let errs = pvc(|c| c["spec"]["resources"] = json!({})).validate();
        assert_eq!(
            only(&errs, "spec.resources.requests.storage").kind,
            FieldErrorKind::Required
        );
        let errs = pvc(|c| c["spec"]["resources"]["requests"]["storage"] = json!("0")).validate();
        assert_eq!(
            only(&errs, "spec.resources.requests.storage").detail,
            "must be greater than zero"
        );
        let errs =
            pvc(|c| c["spec"]["resources"]["requests"]["storage"] = json!("3 GB")).validate();
        only(&errs, "spec.resources.requests.storage");
    }

    #[test]
    fn a_claim_may_grow_and_be_bound_once() {
        let old = pvc(|_| {});
        let grown = pvc(|c| {
            c["spec"]["resources"]["requests"]["storage"] = json!("5Gi");
            c["spec"]["volumeName"] = json!("task-pv-volume");
        });
        assert_eq!(grown.validate_update(&old), vec![]);
        let rebound = pvc(|c| {
            c["spec"]["resources"]["requests"]["storage"] = json!("5Gi");
            c["spec"]["volumeName"] = json!("other");
        });
        only(&rebound.validate_update(&grown), "spec");
    }

    #[test]
    fn a_claim_may_not_shrink_or_change_otherwise() {
        let old = pvc(|_| {});
        let shrunk = pvc(|c| c["spec"]["resources"]["requests"]["storage"] = json!("1Gi"));
        assert_eq!(
            only(
                &shrunk.validate_update(&old),
                "spec.resources.requests.storage"
            )
            .detail,
            "field can not be less than previous value"
        );
        let changed = pvc(|c| c["spec"]["accessModes"] = json!(["ReadWriteMany"]));
        let errs = changed.validate_update(&old);
        assert_eq!(paths(&errs), ["spec"]);
        assert!(errs[0]
            .detail
            .starts_with("spec is immutable after creation"));
    }

    #[test]
    fn a_claim_without_a_class_may_be_given_one_once() {
        let classless = pvc(|c| {
            c["spec"]
                .as_object_mut()
                .expect("object")
                .remove("storageClassName");
        });
        let assigned = pvc(|c| c["spec"]["storageClassName"] = json!("local-path"));
        assert_eq!(assigned.validate_update(&classless), vec![]);
        let moved = pvc(|c| c["spec"]["storageClassName"] = json!("other"));
        assert_eq!(paths(&moved.validate_update(&assigned)), ["spec"]);
        let emptied = pvc(|c| c["spec"]["storageClassName"] = json!(""));
        assert_eq!(
            paths(&assigned.validate_update(&emptied)),
            ["spec"],
            "\"\" is a choice of no class, kept"
        );
    }
}
