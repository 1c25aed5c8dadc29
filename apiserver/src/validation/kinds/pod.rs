//! The Pod kind: what a new pod may hold, and the little an update may change.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Pod, PodSpec, Toleration};

use super::super::{FieldError, Validate};
use super::pod_spec::validate_pod_spec;

/// What a pod update may change, in Kubernetes' words.
const POD_UPDATE_MESSAGE: &str = "pod updates may not change fields other than \
    `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,\
    `spec.tolerations` (only additions to existing tolerations),\
    `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Pod checks shared by create and update; `creating` adds the create-only rules.
fn validate_pod(pod: &Pod, creating: bool) -> Vec<FieldError> {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut errs = validate_pod_spec(&spec, "spec");
    // Ephemeral containers join a running pod through their own subresource.
    if creating
        && spec
            .ephemeral_containers
            .as_ref()
            .is_some_and(|e| !e.is_empty())
    {
        errs.push(FieldError::forbidden(
            "spec.ephemeralContainers",
            "cannot be set on create",
        ));
    }
    errs
}

impl Validate for Pod {
    fn validate(&self) -> Vec<FieldError> {
        validate_pod(self, true)
    }

    /// A pod is mostly immutable: only images, a shorter deadline and more tolerations may
    /// change (Kubernetes' `ValidatePodUpdate`). The node is set once, by binding.
    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = validate_pod(self, false);
        let new_spec = self.spec.clone().unwrap_or_default();
        let old_spec = old.spec.clone().unwrap_or_default();

        if let Some(before) = old_spec.active_deadline_seconds {
            match new_spec.active_deadline_seconds {
                None => errs.push(FieldError::invalid(
                    "spec.activeDeadlineSeconds",
                    "null",
                    "must not update from a positive integer to nil value",
                )),
                Some(after) if after > before => errs.push(FieldError::invalid(
                    "spec.activeDeadlineSeconds",
                    after,
                    "must be less than or equal to previous value",
                )),
                Some(_) => {}
            }
        }
        if new_spec.node_name != old_spec.node_name {
            errs.push(FieldError::forbidden(
                "spec.nodeName",
                "may not be changed by an update; a pod is bound to a node by the binding \
                 subresource",
            ));
        }
        let old_tolerations = old_spec.tolerations.as_deref().unwrap_or_default();
        let new_tolerations = new_spec.tolerations.as_deref().unwrap_or_default();
        if !keeps_tolerations(old_tolerations, new_tolerations) {
            errs.push(FieldError::forbidden(
                "spec.tolerations",
                "existing toleration can not be modified except its tolerationSeconds",
            ));
        }

        // Put back everything an update may change; what still differs may not change.
        let mut unchanged = new_spec.clone();
        for (new, old) in unchanged.containers.iter_mut().zip(&old_spec.containers) {
            new.image.clone_from(&old.image);
        }
        let old_init = old_spec.init_containers.as_deref().unwrap_or_default();
        for (new, old) in unchanged.init_containers.iter_mut().flatten().zip(old_init) {
            new.image.clone_from(&old.image);
        }
        unchanged.active_deadline_seconds = old_spec.active_deadline_seconds;
        unchanged.tolerations.clone_from(&old_spec.tolerations);
        unchanged.node_name.clone_from(&old_spec.node_name);
        let was_negative = old_spec
            .termination_grace_period_seconds
            .is_some_and(|g| g < 0);
        if was_negative && new_spec.termination_grace_period_seconds == Some(1) {
            unchanged.termination_grace_period_seconds = old_spec.termination_grace_period_seconds;
        }
        if unchanged != old_spec {
            let changed = changed_fields(&unchanged, &old_spec);
            errs.push(FieldError::forbidden(
                "spec",
                format!("{POD_UPDATE_MESSAGE}; changed: {}", changed.join(", ")),
            ));
        }
        errs
    }
}

/// Whether every old toleration is still there, allowing only its `tolerationSeconds` to
/// change.
fn keeps_tolerations(old: &[Toleration], new: &[Toleration]) -> bool {
    old.iter().all(|before| {
        new.iter().any(|after| {
            let mut before = before.clone();
            before.toleration_seconds = after.toleration_seconds;
            before == *after
        })
    })
}

/// The top-level spec fields (`spec.volumes`, ...) that differ, to say what an update
/// changed without a full diff.
fn changed_fields(new: &PodSpec, old: &PodSpec) -> Vec<String> {
    let (Ok(serde_json::Value::Object(new)), Ok(serde_json::Value::Object(old))) =
        (serde_json::to_value(new), serde_json::to_value(old))
    else {
        return Vec::new();
    };
    let keys: BTreeSet<&String> = new.keys().chain(old.keys()).collect();
    keys.into_iter()
        .filter(|k| new.get(*k) != old.get(*k))
        .map(|k| format!("`spec.{k}`"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::super::FieldErrorKind;
    use super::super::test_util::{from_json, only, web_pod};
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        from_json(web_pod())
    }

    fn with(edit: impl FnOnce(&mut serde_json::Value)) -> Pod {
        let mut value = serde_json::to_value(pod()).expect("pod serializes");
        edit(&mut value);
        from_json(value)
    }

    #[test]
    fn a_realistic_pod_is_valid() {
        assert_eq!(pod().validate(), vec![]);
    }

    #[test]
    fn a_pod_without_a_spec_needs_containers() {
        let errs = Pod::default().validate();
        assert_eq!(
            only(&errs, "spec.containers").kind,
            FieldErrorKind::Required
        );
    }

    #[test]
    fn ephemeral_containers_are_not_set_on_create() {
        let errs = with(|p| {
            p["spec"]["ephemeralContainers"] = json!([{"name": "debug", "image": "busybox"}]);
        })
        .validate();
        assert_eq!(
            only(&errs, "spec.ephemeralContainers").kind,
            FieldErrorKind::Forbidden
        );
    }

    #[test]
    fn an_update_may_change_images_deadline_and_add_tolerations() {
        let old = with(|p| p["spec"]["activeDeadlineSeconds"] = json!(600));
        let new = with(|p| {
            p["metadata"]["labels"]["track"] = json!("stable");
            p["spec"]["containers"][0]["image"] = json!("nginx:1.25");
            p["spec"]["initContainers"][0]["image"] = json!("busybox:1.37");
            p["spec"]["activeDeadlineSeconds"] = json!(300);
            p["spec"]["tolerations"][0]["tolerationSeconds"] = json!(60);
            let added = json!({"key": "gpu", "operator": "Exists"});
            p["spec"]["tolerations"]
                .as_array_mut()
                .expect("array")
                .push(added);
        });
        assert_eq!(new.validate_update(&old), vec![]);
    }

    #[test]
    fn an_update_of_other_spec_fields_is_forbidden() {
        let old = pod();
        let new = with(|p| p["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(8080));
        let errs = new.validate_update(&old);
        let err = only(&errs, "spec");
        assert_eq!(err.kind, FieldErrorKind::Forbidden);
        assert!(err.detail.starts_with(
            "pod updates may not change fields other than `spec.containers[*].image`"
        ));
        assert!(err.detail.ends_with("changed: `spec.containers`"));
    }

    #[test]
    fn an_update_may_not_move_the_pod_to_another_node() {
        let old = with(|p| p["spec"]["nodeName"] = json!("node-1"));
        let new = with(|p| p["spec"]["nodeName"] = json!("node-2"));
        let errs = new.validate_update(&old);
        assert_eq!(only(&errs, "spec.nodeName").kind, FieldErrorKind::Forbidden);
        let errs = old.validate_update(&pod());
        assert_eq!(only(&errs, "spec.nodeName").kind, FieldErrorKind::Forbidden);
    }

    #[test]
    fn an_update_may_only_shorten_the_deadline() {
        let old = with(|p| p["spec"]["activeDeadlineSeconds"] = json!(60));
        let new = with(|p| p["spec"]["activeDeadlineSeconds"] = json!(120));
        let errs = new.validate_update(&old);
        assert_eq!(
            only(&errs, "spec.activeDeadlineSeconds").detail,
            "must be less than or equal to previous value"
        );
        let errs = pod().validate_update(&old);
        only(&errs, "spec.activeDeadlineSeconds");
    }

    #[test]
    fn an_update_may_not_remove_a_toleration() {
        let new = with(|p| p["spec"]["tolerations"] = json!([]));
        let errs = new.validate_update(&pod());
        assert_eq!(
            only(&errs, "spec.tolerations").kind,
            FieldErrorKind::Forbidden
        );
    }

    #[test]
    fn an_update_also_validates_the_new_pod() {
        let new = with(|p| p["spec"]["containers"][0]["image"] = json!(""));
        let errs = new.validate_update(&pod());
        only(&errs, "spec.containers[0].image");
    }
}
