//! DaemonSet: one pod per node, replaced node by node.

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::super::{FieldError, Validate};
use super::workloads::{controller_template, counts, surge_or_unavailable};
use super::{immutable, json, required_selector};

fn daemon_set_spec(spec: &DaemonSetSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    counts(
        &mut errs,
        None,
        spec.min_ready_seconds,
        spec.revision_history_limit,
    );
    let selector = required_selector(&mut errs, &spec.selector, "spec.selector");
    controller_template(&mut errs, &spec.template, selector.as_ref(), "DaemonSet");

    let Some(strategy) = &spec.update_strategy else {
        return errs;
    };
    match strategy.type_.as_deref() {
        None | Some("RollingUpdate") => {
            if let Some(rolling) = &strategy.rolling_update {
                let at = "spec.updateStrategy.rollingUpdate";
                // A DaemonSet replaces one node's pod at a time unless told otherwise.
                let one = IntOrString::Int(1);
                let zero = IntOrString::Int(0);
                let unavailable = rolling.max_unavailable.as_ref().unwrap_or(&one);
                let surge = rolling.max_surge.as_ref().unwrap_or(&zero);
                let u =
                    surge_or_unavailable(&mut errs, &format!("{at}.maxUnavailable"), unavailable);
                let s = surge_or_unavailable(&mut errs, &format!("{at}.maxSurge"), surge);
                // A node runs at most one surge pod, so the rollout either surges or leaves
                // nodes without a pod, never both.
                match (u != 0, s != 0) {
                    (true, true) => errs.push(FieldError::invalid(
                        format!("{at}.maxSurge"),
                        json(surge),
                        "may not be set when maxUnavailable is non-zero",
                    )),
                    (false, false) => errs.push(FieldError::required(
                        format!("{at}.maxUnavailable"),
                        "cannot be 0 when maxSurge is 0",
                    )),
                    _ => {}
                }
            }
        }
        Some("OnDelete") => {}
        Some(other) => errs.push(FieldError::not_supported(
            "spec.updateStrategy.type",
            other,
            &["RollingUpdate", "OnDelete"],
        )),
    }
    errs
}

impl Validate for DaemonSet {
    fn validate(&self) -> Vec<FieldError> {
        daemon_set_spec(&self.spec.clone().unwrap_or_default())
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = self.validate();
        let selector = |d: &DaemonSet| d.spec.as_ref().map(|s| s.selector.clone());
        immutable(&mut errs, "spec.selector", &selector(self), &selector(old));
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::FieldErrorKind;
    use super::super::test_util::{edit, only};
    use super::*;
    use serde_json::json;

    fn daemon_set() -> serde_json::Value {
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "fluentd-elasticsearch", "namespace": "kube-system"},
            "spec": {
                "selector": {"matchLabels": {"name": "fluentd-elasticsearch"}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "template": {
                    "metadata": {"labels": {"name": "fluentd-elasticsearch"}},
                    "spec": {
                        "tolerations": [{
                            "key": "node-role.kubernetes.io/control-plane",
                            "operator": "Exists", "effect": "NoSchedule"
                        }],
                        "containers": [{
                            "name": "fluentd-elasticsearch",
                            "image": "quay.io/fluentd_elasticsearch/fluentd:v2.5.2",
                            "resources": {
                                "limits": {"memory": "200Mi"},
                                "requests": {"cpu": "100m", "memory": "200Mi"}
                            },
                            "volumeMounts": [{"name": "varlog", "mountPath": "/var/log"}]
                        }],
                        "terminationGracePeriodSeconds": 30,
                        "volumes": [{"name": "varlog", "hostPath": {"path": "/var/log"}}]
                    }
                }
            }
        })
    }

    #[test]
    fn the_docs_daemon_set_is_valid() {
        let ds: DaemonSet = edit(daemon_set(), |_| {});
        assert_eq!(ds.validate(), vec![]);
    }

    #[test]
    fn a_daemon_set_update_strategy_is_checked() {
        let ds: DaemonSet = edit(daemon_set(), |d| {
            d["spec"]["updateStrategy"]["type"] = json!("Sometimes")
        });
        only(&ds.validate(), "spec.updateStrategy.type");
        let ds: DaemonSet = edit(daemon_set(), |d| {
            d["spec"]["updateStrategy"]["rollingUpdate"] = json!({"maxUnavailable": 0});
        });
        let errs = ds.validate();
        assert_eq!(
            only(&errs, "spec.updateStrategy.rollingUpdate.maxUnavailable").kind,
            FieldErrorKind::Required
        );
        let ds: DaemonSet = edit(daemon_set(), |d| {
            d["spec"]["updateStrategy"]["rollingUpdate"] =
                json!({"maxUnavailable": 1, "maxSurge": 1});
        });
        only(&ds.validate(), "spec.updateStrategy.rollingUpdate.maxSurge");
        let ds: DaemonSet = edit(daemon_set(), |d| {
            d["spec"]["updateStrategy"] = json!({"type": "OnDelete"})
        });
        assert_eq!(ds.validate(), vec![]);
    }

    #[test]
    fn a_daemon_set_selector_is_required_and_immutable() {
        let ds: DaemonSet = edit(daemon_set(), |d| d["spec"]["selector"] = json!({}));
        only(&ds.validate(), "spec.selector");
        let old: DaemonSet = edit(daemon_set(), |_| {});
        let new: DaemonSet = edit(daemon_set(), |d| {
            d["spec"]["selector"]["matchLabels"]["extra"] = json!("x");
            d["spec"]["template"]["metadata"]["labels"]["extra"] = json!("x");
        });
        only(&new.validate_update(&old), "spec.selector");
    }
}
