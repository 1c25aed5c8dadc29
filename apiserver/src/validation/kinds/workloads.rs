//! What the controllers of pods share (a template that matches the selector and keeps its
//! pods running; rollout budgets), ReplicationController and ReplicaSet.

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rudder_proto::objects::selector::LabelSelector;

use super::super::names::validate_labels;
use super::super::{FieldError, Validate};
use super::pod_spec::{no_active_deadline, template_restart_policy, validate_template};
use super::NOT_NEGATIVE;
use super::{immutable, json, non_negative, required_selector, selector_matches_template};

/// Checks a controller's template at `spec.template` against its selector: the template must
/// be valid, make pods the selector selects, and keep them running.
pub(super) fn controller_template(
    errs: &mut Vec<FieldError>,
    template: &PodTemplateSpec,
    selector: Option<&LabelSelector>,
    kind: &str,
) {
    let path = "spec.template";
    if let Some(selector) = selector {
        let labels = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
        selector_matches_template(errs, selector, labels, path);
    }
    errs.extend(validate_template(template, path));
    template_restart_policy(errs, template, path, &["Always"]);
    no_active_deadline(errs, template, path, kind);
}

/// Replicas, readiness delay and history limit: counts that may not be negative.
pub(super) fn counts(
    errs: &mut Vec<FieldError>,
    replicas: Option<i32>,
    min_ready: Option<i32>,
    history: Option<i32>,
) {
    non_negative(errs, "spec.replicas", replicas.map(i64::from));
    non_negative(errs, "spec.minReadySeconds", min_ready.map(i64::from));
    non_negative(errs, "spec.revisionHistoryLimit", history.map(i64::from));
}

/// An int-or-percent value as a number (`25%` is 25) and whether it is a percentage;
/// `None` when a string is not a percentage.
fn int_or_percent(value: &IntOrString) -> Option<(i64, bool)> {
    match value {
        IntOrString::Int(n) => Some((i64::from(*n), false)),
        IntOrString::String(s) => {
            let digits = s.strip_suffix('%')?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok().map(|n| (n, true))
        }
    }
}

/// Kubernetes' `ValidatePositiveIntOrPercent` and `IsNotMoreThan100Percent`; returns the
/// number for the zero checks that follow.
pub(super) fn surge_or_unavailable(
    errs: &mut Vec<FieldError>,
    path: &str,
    value: &IntOrString,
) -> i64 {
    match int_or_percent(value) {
        None => {
            errs.push(FieldError::invalid(
                path,
                json(value),
                "a valid percent string must be a numeric string followed by an ending '%' \
                 (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
            ));
            // Not zero, so that no second error piles on the first.
            1
        }
        Some((n, _)) if n < 0 => {
            errs.push(FieldError::invalid(path, n, NOT_NEGATIVE));
            n
        }
        Some((n, true)) if n > 100 => {
            errs.push(FieldError::invalid(
                path,
                json(value),
                "must not be greater than 100%",
            ));
            n
        }
        Some((n, _)) => n,
    }
}

fn rc_spec_template(rc: &ReplicationController) -> Option<&PodTemplateSpec> {
    rc.spec.as_ref().and_then(|s| s.template.as_ref())
}

impl Validate for ReplicationController {
    /// A ReplicationController's selector is a plain map; when left out the defaults copy
    /// the template's labels into it.
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = self.spec.clone().unwrap_or_default();
        counts(&mut errs, spec.replicas, spec.min_ready_seconds, None);
        let selector = spec.selector.clone().unwrap_or_default();
        errs.extend(validate_labels(&selector, "spec.selector"));
        // An empty selector would select every pod of the namespace (ValidateNonEmptySelector).
        if selector.is_empty() {
            errs.push(FieldError::required("spec.selector", ""));
        }
        let Some(template) = rc_spec_template(self) else {
            errs.push(FieldError::required("spec.template", ""));
            return errs;
        };
        let labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            errs.push(FieldError::invalid(
                "spec.template.metadata.labels",
                json(&labels),
                "`selector` does not match template `labels`",
            ));
        }
        errs.extend(validate_template(template, "spec.template"));
        template_restart_policy(&mut errs, template, "spec.template", &["Always"]);
        no_active_deadline(
            &mut errs,
            template,
            "spec.template",
            "ReplicationController",
        );
        errs
    }
}

fn replica_set_spec(spec: &ReplicaSetSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    counts(&mut errs, spec.replicas, spec.min_ready_seconds, None);
    let selector = required_selector(&mut errs, &spec.selector, "spec.selector");
    match &spec.template {
        Some(template) => controller_template(&mut errs, template, selector.as_ref(), "ReplicaSet"),
        None => errs.push(FieldError::required("spec.template", "")),
    }
    errs
}

impl Validate for ReplicaSet {
    fn validate(&self) -> Vec<FieldError> {
        replica_set_spec(&self.spec.clone().unwrap_or_default())
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = self.validate();
        let selector = |rs: &ReplicaSet| rs.spec.as_ref().map(|s| s.selector.clone());
        immutable(&mut errs, "spec.selector", &selector(self), &selector(old));
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::FieldErrorKind;
    use super::super::test_util::{edit, nginx_template, only, paths};
    use super::*;
    use serde_json::json;

    fn replica_set() -> serde_json::Value {
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "frontend"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": nginx_template()
            }
        })
    }

    #[test]
    fn a_replica_set_is_checked_like_a_deployment() {
        let rs: ReplicaSet = edit(replica_set(), |_| {});
        assert_eq!(rs.validate(), vec![]);
        let bad: ReplicaSet = edit(replica_set(), |r| {
            r["spec"]["replicas"] = json!(-2);
            r["spec"]["selector"] = json!({"matchLabels": {"app": "other"}});
        });
        assert_eq!(
            paths(&bad.validate()),
            ["spec.replicas", "spec.template.metadata.labels"]
        );
        let no_template: ReplicaSet = edit(replica_set(), |r| {
            r["spec"]
                .as_object_mut()
                .expect("object")
                .remove("template");
        });
        assert_eq!(
            only(&no_template.validate(), "spec.template").kind,
            FieldErrorKind::Required
        );
    }

    #[test]
    fn a_replica_set_selector_is_immutable() {
        let old: ReplicaSet = edit(replica_set(), |_| {});
        let new: ReplicaSet = edit(replica_set(), |r| {
            r["spec"]["selector"] =
                json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]});
        });
        only(&new.validate_update(&old), "spec.selector");
    }

    fn controller() -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": "nginx"},
            "spec": {"replicas": 3, "selector": {"app": "nginx"}, "template": nginx_template()}
        })
    }

    #[test]
    fn a_replication_controller_selector_may_be_left_to_the_defaults() {
        let rc: ReplicationController = edit(controller(), |_| {});
        assert_eq!(rc.validate(), vec![]);
        // As the API server admits it: defaults (which copy the template's labels into the
        // selector), then validation.
        let mut rc: ReplicationController = edit(controller(), |r| {
            r["spec"]
                .as_object_mut()
                .expect("object")
                .remove("selector");
        });
        super::super::super::ApplyDefaults::apply_defaults(&mut rc);
        assert_eq!(rc.validate(), vec![]);
    }

    #[test]
    fn a_replication_controller_without_any_selector_is_refused() {
        // Nothing to select by: it would select every pod of its namespace.
        let mut rc: ReplicationController = edit(controller(), |r| {
            r["spec"]
                .as_object_mut()
                .expect("object")
                .remove("selector");
            r["spec"]["template"]["metadata"]
                .as_object_mut()
                .expect("object")
                .remove("labels");
        });
        super::super::super::ApplyDefaults::apply_defaults(&mut rc);
        assert!(
            rc.validate().iter().any(|e| e.path == "spec.selector"),
            "{:?}",
            rc.validate()
        );
    }

    #[test]
    fn a_replication_controller_selector_must_match_its_template() {
        let rc: ReplicationController = edit(controller(), |r| {
            r["spec"]["selector"] = json!({"app": "web"})
        });
        only(&rc.validate(), "spec.template.metadata.labels");
        let rc: ReplicationController = edit(controller(), |r| {
            r["spec"]["template"]["spec"]["restartPolicy"] = json!("OnFailure");
        });
        only(&rc.validate(), "spec.template.spec.restartPolicy");
        let rc: ReplicationController = edit(controller(), |r| {
            r["spec"]["selector"] = json!({"a b": "x"})
        });
        assert_eq!(
            paths(&rc.validate()),
            ["spec.selector", "spec.template.metadata.labels"]
        );
    }
}
