//! PodDisruptionBudget (`policy/v1`), as `pkg/apis/policy/validation` checks it: at most one
//! of `minAvailable` and `maxUnavailable`, each a count that is not negative or a percentage
//! up to 100%; a valid selector; a known unhealthy pod eviction policy. The spec may change
//! (policy/v1); the status that the disruption controller and evictions write holds no
//! negative count and only valid conditions (`ValidatePodDisruptionBudgetStatusUpdate`).
//! Kubernetes defaults nothing in policy/v1, and neither does this.

use std::collections::BTreeSet;

use k8s_openapi::api::policy::v1::{
    PodDisruptionBudget, PodDisruptionBudgetSpec, PodDisruptionBudgetStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use rudder_proto::objects::disruption::UNHEALTHY_POD_EVICTION_POLICIES;
use rudder_proto::objects::names::qualified_name;

use super::super::selector::validate_selector;
use super::super::{ApplyDefaults, FieldError, Validate};
use super::workloads::surge_or_unavailable;
use super::{each_invalid, json, non_negative};

/// apimachinery's `validConditionStatuses`, sorted as its error lists them.
const CONDITION_STATUSES: &[&str] = &["False", "True", "Unknown"];
/// apimachinery's limits on a condition's reason and message.
const MAX_REASON_LENGTH: usize = 1024;
const MAX_MESSAGE_LENGTH: usize = 32768;

fn spec(errs: &mut Vec<FieldError>, spec: &PodDisruptionBudgetSpec) {
    if spec.min_available.is_some() && spec.max_unavailable.is_some() {
        errs.push(FieldError::invalid(
            "spec",
            json(spec),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    if let Some(min_available) = &spec.min_available {
        surge_or_unavailable(errs, "spec.minAvailable", min_available);
    }
    if let Some(max_unavailable) = &spec.max_unavailable {
        surge_or_unavailable(errs, "spec.maxUnavailable", max_unavailable);
    }
    // A budget without a selector is valid: it guards no pod.
    if let Some(selector) = &spec.selector {
        if let Err(problems) = validate_selector(selector, "spec.selector") {
            errs.extend(problems);
        }
    }
    if let Some(policy) = &spec.unhealthy_pod_eviction_policy {
        if !UNHEALTHY_POD_EVICTION_POLICIES.contains(&policy.as_str()) {
            errs.push(FieldError::not_supported(
                "spec.unhealthyPodEvictionPolicy",
                policy,
                UNHEALTHY_POD_EVICTION_POLICIES,
            ));
        }
    }
}

fn status(errs: &mut Vec<FieldError>, status: &PodDisruptionBudgetStatus) {
    conditions(
        errs,
        status.conditions.as_deref().unwrap_or_default(),
        "status.conditions",
    );
    for (field, value) in [
        ("disruptionsAllowed", status.disruptions_allowed),
        ("currentHealthy", status.current_healthy),
        ("desiredHealthy", status.desired_healthy),
        ("expectedPods", status.expected_pods),
    ] {
        non_negative(errs, format!("status.{field}"), Some(i64::from(value)));
    }
}

/// apimachinery's `ValidateConditions`: each condition valid, no type twice.
fn conditions(errs: &mut Vec<FieldError>, conditions: &[Condition], path: &str) {
    let mut types = BTreeSet::new();
    for (i, condition) in conditions.iter().enumerate() {
        let at = format!("{path}[{i}]");
        if !types.insert(condition.type_.as_str()) {
            errs.push(FieldError::duplicate(
                format!("{at}.type"),
                &condition.type_,
            ));
        }
        each_invalid(
            errs,
            &format!("{at}.type"),
            &condition.type_,
            qualified_name(&condition.type_),
        );
        if !CONDITION_STATUSES.contains(&condition.status.as_str()) {
            errs.push(FieldError::not_supported(
                format!("{at}.status"),
                &condition.status,
                CONDITION_STATUSES,
            ));
        }
        if let Some(generation) = condition.observed_generation.filter(|g| *g < 0) {
            errs.push(FieldError::invalid(
                format!("{at}.observedGeneration"),
                generation,
                "must be greater than or equal to zero",
            ));
        }
        // Go's zero time: what a client that never set the field sends.
        let zero = jiff::Timestamp::from_second(-62_135_596_800);
        if zero.is_ok_and(|zero| condition.last_transition_time.0 == zero) {
            errs.push(FieldError::required(
                format!("{at}.lastTransitionTime"),
                "must be set",
            ));
        }
        reason(errs, &condition.reason, &format!("{at}.reason"));
        if condition.message.len() > MAX_MESSAGE_LENGTH {
            errs.push(FieldError::too_long(
                format!("{at}.message"),
                MAX_MESSAGE_LENGTH,
                "",
            ));
        }
    }
}

/// A condition's reason: set, `[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?`, at most 1024 bytes.
fn reason(errs: &mut Vec<FieldError>, reason: &str, path: &str) {
    if reason.is_empty() {
        errs.push(FieldError::required(path, "must be set"));
        return;
    }
    let bytes = reason.as_bytes();
    let first = bytes[0].is_ascii_alphabetic();
    let middle = bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b',' | b':'));
    let last = bytes[bytes.len() - 1].is_ascii_alphanumeric() || bytes[bytes.len() - 1] == b'_';
    if !(first && middle && last) {
        errs.push(FieldError::invalid(
            path,
            reason,
            "a condition reason must start with alphabetic character, optionally followed by a \
             string of alphanumeric characters or '_,:', and must end with an alphanumeric \
             character or '_' (e.g. 'my_name',  or 'MY_NAME',  or 'MyName',  or \
             'ReasonA,ReasonB',  or 'ReasonA:ReasonB', regex used for validation is \
             '[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?')",
        ));
    }
    if reason.len() > MAX_REASON_LENGTH {
        errs.push(FieldError::too_long(path, MAX_REASON_LENGTH, ""));
    }
}

impl Validate for PodDisruptionBudget {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        spec(&mut errs, &self.spec.clone().unwrap_or_default());
        errs
    }

    /// The spec may change in policy/v1; the status is checked as the status verb writes it
    /// (an update of the object carries the stored status, which passed these checks).
    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let _ = old;
        let mut errs = self.validate();
        if let Some(written) = &self.status {
            status(&mut errs, written);
        }
        errs
    }
}

impl ApplyDefaults for PodDisruptionBudget {
    /// Nothing: an unset `unhealthyPodEvictionPolicy` means `IfHealthyBudget` where it is
    /// read, as in Kubernetes, and stays unset.
    fn apply_defaults(&mut self) {}
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::super::FieldErrorKind;
    use super::super::test_util::{edit, only, paths};
    use super::*;

    /// The ZooKeeper budget of the Kubernetes docs.
    fn budget() -> serde_json::Value {
        json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "zk-pdb", "namespace": "default"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "zookeeper"}}}
        })
    }

    #[test]
    fn the_docs_budgets_are_valid() {
        let pdb: PodDisruptionBudget = edit(budget(), |_| {});
        assert_eq!(pdb.validate(), vec![]);
        let pdb: PodDisruptionBudget = edit(budget(), |b| {
            b["spec"] = json!({
                "maxUnavailable": "25%", "unhealthyPodEvictionPolicy": "AlwaysAllow",
                "selector": {"matchLabels": {"app": "zookeeper"}}
            })
        });
        assert_eq!(pdb.validate(), vec![]);
    }

    #[test]
    fn min_available_and_max_unavailable_are_not_both_set() {
        let pdb: PodDisruptionBudget = edit(budget(), |b| b["spec"]["maxUnavailable"] = json!(1));
        let errs = pdb.validate();
        let error = only(&errs, "spec");
        assert!(
            error
                .to_string()
                .ends_with("minAvailable and maxUnavailable cannot be both set"),
            "{error}"
        );
    }

    #[test]
    fn budgets_are_counts_or_percentages_up_to_all_of_them() {
        let pdb: PodDisruptionBudget = edit(budget(), |b| b["spec"]["minAvailable"] = json!(-1));
        let errs = pdb.validate();
        assert_eq!(
            only(&errs, "spec.minAvailable").to_string(),
            "spec.minAvailable: Invalid value: \"-1\": must be greater than or equal to 0"
        );
        let pdb: PodDisruptionBudget = edit(budget(), |b| {
            b["spec"]["minAvailable"] = serde_json::Value::Null;
            b["spec"]["maxUnavailable"] = json!("120%");
        });
        let errs = pdb.validate();
        assert!(only(&errs, "spec.maxUnavailable")
            .to_string()
            .ends_with("must not be greater than 100%"));
        let pdb: PodDisruptionBudget =
            edit(budget(), |b| b["spec"]["minAvailable"] = json!("half"));
        only(&pdb.validate(), "spec.minAvailable");
    }

    #[test]
    fn the_selector_and_the_eviction_policy_are_checked() {
        let pdb: PodDisruptionBudget = edit(budget(), |b| {
            b["spec"]["selector"] = json!({"matchLabels": {"app": "not valid"}});
        });
        only(&pdb.validate(), "spec.selector.matchLabels");
        let pdb: PodDisruptionBudget = edit(budget(), |b| {
            b["spec"]["unhealthyPodEvictionPolicy"] = json!("Sometimes");
        });
        let errs = pdb.validate();
        assert_eq!(
            only(&errs, "spec.unhealthyPodEvictionPolicy").to_string(),
            "spec.unhealthyPodEvictionPolicy: Unsupported value: \"Sometimes\": supported \
             values: \"AlwaysAllow\", \"IfHealthyBudget\""
        );
        // No selector at all is valid: the budget guards nothing.
        let pdb: PodDisruptionBudget = edit(budget(), |b| {
            b["spec"]["selector"] = serde_json::Value::Null
        });
        assert_eq!(pdb.validate(), vec![]);
    }

    #[test]
    fn a_written_status_has_no_negative_count_and_valid_conditions() {
        let old: PodDisruptionBudget = edit(budget(), |_| {});
        let new: PodDisruptionBudget = edit(budget(), |b| {
            b["status"] = json!({
                "disruptionsAllowed": -1, "currentHealthy": 3, "desiredHealthy": 2,
                "expectedPods": 3,
                "conditions": [
                    {"type": "DisruptionAllowed", "status": "Maybe", "reason": "SufficientPods",
                     "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                    {"type": "DisruptionAllowed", "status": "True", "reason": "bad reason",
                     "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}
                ]
            })
        });
        let errs = new.validate_update(&old);
        assert_eq!(
            paths(&errs),
            [
                "status.conditions[0].status",
                "status.conditions[1].type",
                "status.conditions[1].reason",
                "status.disruptionsAllowed",
            ],
            "{errs:#?}"
        );
        assert!(matches!(errs[1].kind, FieldErrorKind::Duplicate { .. }));
        let fine: PodDisruptionBudget = edit(budget(), |b| {
            b["status"] = json!({
                "disruptionsAllowed": 1, "currentHealthy": 3, "desiredHealthy": 2,
                "expectedPods": 3, "observedGeneration": 1,
                "disruptedPods": {"zk-0": "2026-01-01T00:00:00Z"},
                "conditions": [{"type": "DisruptionAllowed", "status": "True",
                                "reason": "SufficientPods", "message": "",
                                "lastTransitionTime": "2026-01-01T00:00:00Z"}]
            })
        });
        assert_eq!(fine.validate_update(&old), vec![]);
    }
}
