//! Deployment: a rollout of ReplicaSets.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::super::{FieldError, Validate};
use super::workloads::{controller_template, counts, surge_or_unavailable};
use super::{immutable, json, non_negative, required_selector};

fn deployment_spec(spec: &DeploymentSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    counts(
        &mut errs,
        spec.replicas,
        spec.min_ready_seconds,
        spec.revision_history_limit,
    );
    let selector = required_selector(&mut errs, &spec.selector, "spec.selector");
    controller_template(&mut errs, &spec.template, selector.as_ref(), "Deployment");

    if let Some(strategy) = &spec.strategy {
        match strategy.type_.as_deref() {
            // Unset is RollingUpdate once defaulted.
            None | Some("RollingUpdate") => {
                if let Some(rolling) = &strategy.rolling_update {
                    let at = "spec.strategy.rollingUpdate";
                    // The defaults for an unset value are 25% each.
                    let quarter = IntOrString::String("25%".into());
                    let unavailable = rolling.max_unavailable.as_ref().unwrap_or(&quarter);
                    let surge = rolling.max_surge.as_ref().unwrap_or(&quarter);
                    let u = surge_or_unavailable(
                        &mut errs,
                        &format!("{at}.maxUnavailable"),
                        unavailable,
                    );
                    let s = surge_or_unavailable(&mut errs, &format!("{at}.maxSurge"), surge);
                    // Neither surge nor unavailability would leave the rollout no way forward.
                    if u == 0 && s == 0 {
                        errs.push(FieldError::invalid(
                            format!("{at}.maxUnavailable"),
                            json(unavailable),
                            "may not be 0 when `maxSurge` is 0",
                        ));
                    }
                }
            }
            Some("Recreate") => {
                if strategy.rolling_update.is_some() {
                    errs.push(FieldError::forbidden(
                        "spec.strategy.rollingUpdate",
                        "may not be specified when strategy `type` is 'Recreate'",
                    ));
                }
            }
            Some(other) => errs.push(FieldError::not_supported(
                "spec.strategy.type",
                other,
                &["Recreate", "RollingUpdate"],
            )),
        }
    }
    if let Some(deadline) = spec.progress_deadline_seconds {
        non_negative(
            &mut errs,
            "spec.progressDeadlineSeconds",
            Some(i64::from(deadline)),
        );
        if deadline <= spec.min_ready_seconds.unwrap_or(0) {
            errs.push(FieldError::invalid(
                "spec.progressDeadlineSeconds",
                deadline,
                "must be greater than minReadySeconds",
            ));
        }
    }
    errs
}

impl Validate for Deployment {
    fn validate(&self) -> Vec<FieldError> {
        deployment_spec(&self.spec.clone().unwrap_or_default())
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = self.validate();
        let selector = |d: &Deployment| d.spec.as_ref().map(|s| s.selector.clone());
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

    /// The nginx Deployment of the Kubernetes docs.
    fn deployment() -> serde_json::Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "nginx-deployment", "labels": {"app": "nginx"}},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "nginx"}},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}
                },
                "template": nginx_template()
            }
        })
    }

    fn deploy(change: impl FnOnce(&mut serde_json::Value)) -> Deployment {
        edit(deployment(), change)
    }

    #[test]
    fn the_docs_deployment_is_valid() {
        assert_eq!(deploy(|_| {}).validate(), vec![]);
    }

    #[test]
    fn replicas_may_not_be_negative() {
        let errs = deploy(|d| d["spec"]["replicas"] = json!(-1)).validate();
        assert_eq!(
            only(&errs, "spec.replicas").to_string(),
            "spec.replicas: Invalid value: \"-1\": must be greater than or equal to 0"
        );
    }

    #[test]
    fn a_deployment_needs_a_selector() {
        let errs = deploy(|d| d["spec"]["selector"] = json!({})).validate();
        assert_eq!(only(&errs, "spec.selector").kind, FieldErrorKind::Required);
    }

    #[test]
    fn the_selector_must_match_the_template_labels() {
        let errs =
            deploy(|d| d["spec"]["selector"]["matchLabels"]["app"] = json!("web")).validate();
        let err = only(&errs, "spec.template.metadata.labels");
        assert_eq!(
            err.to_string(),
            "spec.template.metadata.labels: Invalid value: \"{\\\"app\\\":\\\"nginx\\\"}\": \
             `selector` does not match template `labels`"
        );
        let errs = deploy(|d| {
            d["spec"]["selector"] = json!({"matchExpressions": [
                {"key": "app", "operator": "In", "values": ["nginx", "web"]}
            ]});
        })
        .validate();
        assert_eq!(errs, vec![]);
    }

    #[test]
    fn an_invalid_selector_is_reported_inside_it() {
        let errs = deploy(|d| {
            d["spec"]["selector"] = json!({"matchExpressions": [{"key": "app", "operator": "Is"}]});
        })
        .validate();
        only(&errs, "spec.selector.matchExpressions[0].operator");
    }

    #[test]
    fn the_template_spec_is_validated_under_spec_template_spec() {
        let errs =
            deploy(|d| d["spec"]["template"]["spec"]["containers"][0]["name"] = json!("Nginx"))
                .validate();
        only(&errs, "spec.template.spec.containers[0].name");
    }

    #[test]
    fn a_deployment_template_must_restart_always() {
        let errs =
            deploy(|d| d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never")).validate();
        assert_eq!(
            only(&errs, "spec.template.spec.restartPolicy").kind,
            FieldErrorKind::NotSupported {
                value: "Never".into(),
                allowed: vec!["Always".into()]
            }
        );
        let errs = deploy(|d| d["spec"]["template"]["spec"]["activeDeadlineSeconds"] = json!(5))
            .validate();
        assert_eq!(
            only(&errs, "spec.template.spec.activeDeadlineSeconds").kind,
            FieldErrorKind::Forbidden
        );
    }

    #[test]
    fn the_strategy_type_must_be_known() {
        let errs = deploy(|d| d["spec"]["strategy"]["type"] = json!("BlueGreen")).validate();
        assert!(matches!(
            only(&errs, "spec.strategy.type").kind,
            FieldErrorKind::NotSupported { .. }
        ));
    }

    #[test]
    fn recreate_may_not_have_rolling_update_settings() {
        let errs = deploy(|d| d["spec"]["strategy"]["type"] = json!("Recreate")).validate();
        assert_eq!(
            only(&errs, "spec.strategy.rollingUpdate").to_string(),
            "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` \
             is 'Recreate'"
        );
    }

    #[test]
    fn surge_and_unavailable_may_not_both_be_zero() {
        let errs =
            deploy(|d| d["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = json!("0%")).validate();
        assert_eq!(
            only(&errs, "spec.strategy.rollingUpdate.maxUnavailable").detail,
            "may not be 0 when `maxSurge` is 0"
        );
    }

    #[test]
    fn percentages_must_be_well_formed_and_at_most_100() {
        let errs = deploy(|d| {
            d["spec"]["strategy"]["rollingUpdate"] =
                json!({"maxSurge": "ten%", "maxUnavailable": "150%"});
        })
        .validate();
        assert_eq!(
            paths(&errs),
            [
                "spec.strategy.rollingUpdate.maxUnavailable",
                "spec.strategy.rollingUpdate.maxSurge"
            ]
        );
        assert_eq!(errs[0].detail, "must not be greater than 100%");
        assert!(errs[1].detail.starts_with("a valid percent string"));
        let errs =
            deploy(|d| d["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = json!(-1)).validate();
        only(&errs, "spec.strategy.rollingUpdate.maxSurge");
    }

    #[test]
    fn a_deployment_selector_is_immutable() {
        let old = deploy(|_| {});
        let new = deploy(|d| {
            d["spec"]["selector"]["matchLabels"]["tier"] = json!("web");
            d["spec"]["template"]["metadata"]["labels"]["tier"] = json!("web");
        });
        let errs = new.validate_update(&old);
        assert_eq!(only(&errs, "spec.selector").detail, "field is immutable");
        let scaled = deploy(|d| d["spec"]["replicas"] = json!(10));
        assert_eq!(scaled.validate_update(&old), vec![]);
    }

    #[test]
    fn progress_deadline_exceeds_min_ready() {
        let errs = deploy(|d| {
            d["spec"]["minReadySeconds"] = json!(10);
            d["spec"]["progressDeadlineSeconds"] = json!(10);
        })
        .validate();
        only(&errs, "spec.progressDeadlineSeconds");
    }
}
