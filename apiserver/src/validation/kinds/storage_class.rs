//! StorageClass (`storage.k8s.io/v1`), as `pkg/apis/storage/validation` checks it: a
//! provisioner named, bounded parameters, a known reclaim policy and binding mode, topology
//! terms with values; what provisions a class's volumes never changes.

use k8s_openapi::api::storage::v1::StorageClass;
use rudder_proto::objects::storage::{
    BINDING_IMMEDIATE, BINDING_WAIT_FOR_FIRST_CONSUMER, RECLAIM_DELETE, RECLAIM_RETAIN,
};

use super::super::names::qualified_name;
use super::super::{FieldError, Validate};
use super::{each_invalid, immutable};

/// The reclaim policies a class may give its volumes (Recycle is for volumes only).
const CLASS_RECLAIM_POLICIES: &[&str] = &[RECLAIM_DELETE, RECLAIM_RETAIN];
/// The binding modes, in the order Kubernetes lists them.
const BINDING_MODES: &[&str] = &[BINDING_IMMEDIATE, BINDING_WAIT_FOR_FIRST_CONSUMER];
/// At most this many provisioner parameters (`maxProvisionerParameterLen`)...
const MAX_PARAMETERS: usize = 512;
/// ...of at most this many bytes of keys and values together (`maxProvisionerParameterSize`).
const MAX_PARAMETER_BYTES: usize = 256 * 1024;

impl Validate for StorageClass {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if self.provisioner.is_empty() {
            errs.push(FieldError::required("provisioner", ""));
        } else {
            let lower = self.provisioner.to_lowercase();
            each_invalid(
                &mut errs,
                "provisioner",
                &self.provisioner,
                qualified_name(&lower),
            );
        }
        let parameters = self.parameters.clone().unwrap_or_default();
        if parameters.len() > MAX_PARAMETERS {
            errs.push(FieldError::too_long(
                "parameters",
                MAX_PARAMETERS,
                "Provisioner Parameters exceeded max allowed",
            ));
        } else {
            if parameters.contains_key("") {
                errs.push(FieldError::invalid(
                    "parameters",
                    "",
                    "field can not be empty.",
                ));
            }
            let bytes: usize = parameters.iter().map(|(k, v)| k.len() + v.len()).sum();
            if bytes > MAX_PARAMETER_BYTES {
                errs.push(FieldError::too_long("parameters", MAX_PARAMETER_BYTES, ""));
            }
        }
        // Go keeps both behind pointers: "" is a value here, not "unset".
        if let Some(policy) = self.reclaim_policy.as_deref().filter(|p| !p.is_empty()) {
            if !CLASS_RECLAIM_POLICIES.contains(&policy) {
                errs.push(FieldError::not_supported(
                    "reclaimPolicy",
                    policy,
                    CLASS_RECLAIM_POLICIES,
                ));
            }
        }
        match self.volume_binding_mode.as_deref() {
            None => errs.push(FieldError::required("volumeBindingMode", "")),
            Some(mode) if BINDING_MODES.contains(&mode) => {}
            Some(mode) => errs.push(FieldError::not_supported(
                "volumeBindingMode",
                mode,
                BINDING_MODES,
            )),
        }
        for (i, term) in self.allowed_topologies.iter().flatten().enumerate() {
            let at = format!("allowedTopologies[{i}].matchLabelExpressions");
            for (j, requirement) in term.match_label_expressions.iter().flatten().enumerate() {
                let key = format!("{at}[{j}].key");
                each_invalid(
                    &mut errs,
                    &key,
                    &requirement.key,
                    qualified_name(&requirement.key),
                );
                if requirement.values.is_empty() {
                    errs.push(FieldError::required(
                        format!("{at}[{j}].values"),
                        "must specify as least one value",
                    ));
                }
            }
        }
        errs
    }

    /// What provisions a class's volumes and how they are kept is fixed once made: volumes
    /// already made follow it (`ValidateStorageClassUpdate`).
    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = self.validate();
        if self.parameters != old.parameters {
            errs.push(FieldError::forbidden(
                "parameters",
                "updates to parameters are forbidden.",
            ));
        }
        if self.provisioner != old.provisioner {
            errs.push(FieldError::forbidden(
                "provisioner",
                "updates to provisioner are forbidden.",
            ));
        }
        if self.reclaim_policy != old.reclaim_policy {
            errs.push(FieldError::forbidden(
                "reclaimPolicy",
                "updates to reclaimPolicy are forbidden.",
            ));
        }
        immutable(
            &mut errs,
            "volumeBindingMode",
            &self.volume_binding_mode,
            &old.volume_binding_mode,
        );
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{from_json, paths};
    use super::*;
    use serde_json::json;

    fn storage_class(change: impl FnOnce(&mut serde_json::Value)) -> StorageClass {
        let mut value = json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "local-path"},
            "provisioner": "rudder.io/local-path",
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer"
        });
        change(&mut value);
        from_json(value)
    }

    #[test]
    fn storage_classes_are_checked_as_kubernetes_does() {
        let table: Vec<(&str, StorageClass, Vec<&str>)> = vec![
            ("the built-in class", storage_class(|_| {}), vec![]),
            (
                "no provisioner",
                storage_class(|c| c["provisioner"] = json!("")),
                vec!["provisioner: Required value"],
            ),
            (
                "a provisioner that is not a qualified name",
                storage_class(|c| c["provisioner"] = json!("local path/x/y")),
                vec!["provisioner"],
            ),
            (
                "an unknown reclaim policy",
                storage_class(|c| c["reclaimPolicy"] = json!("Recycle")),
                vec![
                    "reclaimPolicy: Unsupported value: \"Recycle\": supported values: \
                     \"Delete\", \"Retain\"",
                ],
            ),
            (
                "an unknown binding mode",
                storage_class(|c| c["volumeBindingMode"] = json!("Later")),
                vec![
                    "volumeBindingMode: Unsupported value: \"Later\": supported values: \
                     \"Immediate\", \"WaitForFirstConsumer\"",
                ],
            ),
            (
                "an empty parameter name",
                storage_class(|c| c["parameters"] = json!({ "": "x" })),
                vec!["parameters: Invalid value: \"\": field can not be empty."],
            ),
            (
                "a topology without values",
                storage_class(|c| {
                    c["allowedTopologies"] = json!([{ "matchLabelExpressions": [
                        { "key": "topology.kubernetes.io/zone", "values": [] }] }])
                }),
                vec!["allowedTopologies[0].matchLabelExpressions[0].values: Required value"],
            ),
        ];
        for (why, class, expected) in table {
            let errs: Vec<String> = class.validate().iter().map(ToString::to_string).collect();
            assert_eq!(errs.len(), expected.len(), "{why}: {errs:?}");
            for (err, wanted) in errs.iter().zip(expected) {
                assert!(err.starts_with(wanted), "{why}: {err} is not {wanted}");
            }
        }
    }

    #[test]
    fn a_class_may_change_its_annotations_but_not_how_it_provisions() {
        let old = storage_class(|_| {});
        let undefaulted = storage_class(|c| {
            c["metadata"]["annotations"] =
                json!({ "storageclass.kubernetes.io/is-default-class": "false" })
        });
        assert_eq!(undefaulted.validate_update(&old), vec![]);
        let changed = storage_class(|c| {
            c["provisioner"] = json!("example.com/nfs");
            c["reclaimPolicy"] = json!("Retain");
            c["volumeBindingMode"] = json!("Immediate");
            c["parameters"] = json!({ "server": "nfs.local" });
        });
        assert_eq!(
            paths(&changed.validate_update(&old)),
            [
                "parameters",
                "provisioner",
                "reclaimPolicy",
                "volumeBindingMode"
            ]
        );
    }
}
