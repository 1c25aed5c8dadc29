//! PodDisruptionBudgets (`policy/v1`): what the API server's eviction subresource and the
//! disruption controller share about them — which budgets guard a pod, when a pod counts as
//! healthy (the one readiness check every side uses), the `DisruptionAllowed` condition and
//! how long an approved eviction is waited for (`component-helpers/apps/poddisruptionbudget`
//! and the disruption controller's constants) — and the `DisruptionTarget` condition a pod
//! about to be disrupted carries (set by the eviction subresource and by PodGC). Pure: the
//! time comes from the caller.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};

use super::selector::LabelSelector;

/// The condition the disruption controller (and an eviction that uses the last allowed
/// disruption) keeps on every budget.
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
/// `DisruptionAllowed` is True: more pods are healthy than the budget needs.
pub const SUFFICIENT_PODS: &str = "SufficientPods";
/// `DisruptionAllowed` is False: no more pods are healthy than the budget needs.
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
/// `DisruptionAllowed` is False: the controller could not compute the budget.
pub const SYNC_FAILED: &str = "SyncFailed";

/// `spec.unhealthyPodEvictionPolicy`: a pod that is not Ready may be evicted only while the
/// guarded application is not disrupted (the default).
pub const IF_HEALTHY_BUDGET: &str = "IfHealthyBudget";
/// `spec.unhealthyPodEvictionPolicy`: a pod that is not Ready may always be evicted.
pub const ALWAYS_ALLOW: &str = "AlwaysAllow";
/// The policies, in the order Kubernetes lists them in its error messages.
pub const UNHEALTHY_POD_EVICTION_POLICIES: &[&str] = &[ALWAYS_ALLOW, IF_HEALTHY_BUDGET];

/// How long after an eviction was approved (the pod entered `status.disruptedPods`) the
/// controller keeps counting the pod as going away (Kubernetes' `DeletionTimeout`). A pod
/// still not being deleted by then counts as healthy again.
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

/// The condition a pod carries once something has decided to disrupt it (Kubernetes'
/// `DisruptionTarget`): the eviction subresource, PodGC.
pub const DISRUPTION_TARGET: &str = "DisruptionTarget";
/// `DisruptionTarget`'s reason and message when the eviction subresource evicts the pod.
pub const EVICTION_BY_EVICTION_API: &str = "EvictionByEvictionAPI";
pub const EVICTION_API_MESSAGE: &str = "Eviction API: evicting";

/// Kubernetes' `podutil.IsPodReady`: the pod's (first) Ready condition is True. The
/// readiness check of the API server's eviction.
pub fn is_pod_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_deref());
    has_ready_condition(conditions.unwrap_or_default())
}

/// The first Ready condition of `conditions` is True: the one readiness check of the API
/// server's eviction and of every controller (whose pods are not k8s-openapi's).
pub fn has_ready_condition(conditions: &[PodCondition]) -> bool {
    conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .is_some_and(|ready| ready.status == "True")
}

/// Kubernetes' `UpdatePodCondition`: sets `condition` in `conditions` (replacing the one of
/// its type); it takes `now` as its transition time unless its status stays what it was
/// (then the old transition time is kept). Returns whether anything changed.
pub fn update_pod_condition(
    conditions: &mut Vec<PodCondition>,
    mut condition: PodCondition,
    now: jiff::Timestamp,
) -> bool {
    condition.last_transition_time = Some(Time(now));
    let Some(existing) = conditions.iter_mut().find(|c| c.type_ == condition.type_) else {
        conditions.push(condition);
        return true;
    };
    if existing.status == condition.status {
        condition
            .last_transition_time
            .clone_from(&existing.last_transition_time);
    }
    let changed = *existing != condition;
    *existing = condition;
    changed
}

/// The budget's selector; `None` when it cannot be parsed (such a budget guards no pod).
/// A missing selector selects nothing; an empty one every pod (policy/v1).
fn selector(pdb: &PodDisruptionBudget) -> Option<LabelSelector> {
    let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
    LabelSelector::from_optional_api(selector).ok()
}

fn same_namespace(pdb: &PodDisruptionBudget, meta: &ObjectMeta) -> bool {
    pdb.metadata.namespace.as_deref().unwrap_or_default()
        == meta.namespace.as_deref().unwrap_or_default()
}

fn labels(meta: &ObjectMeta) -> &BTreeMap<String, String> {
    static NONE: BTreeMap<String, String> = BTreeMap::new();
    meta.labels.as_ref().unwrap_or(&NONE)
}

/// Whether the disruption controller counts the pod of metadata `meta` under `pdb` (the PDB
/// lister's `GetPodPodDisruptionBudgets`): same namespace, and the selector matches — an
/// empty selector matches every pod of the namespace.
pub fn counts(pdb: &PodDisruptionBudget, meta: &ObjectMeta) -> bool {
    same_namespace(pdb, meta) && selector(pdb).is_some_and(|s| s.matches(labels(meta)))
}

/// Whether evicting the pod of metadata `meta` must ask `pdb` (the eviction subresource's
/// `getPodDisruptionBudgets`): as [`counts`], except that a budget with an empty selector
/// guards nothing ("it should match nothing, not everything").
pub fn guards_eviction(pdb: &PodDisruptionBudget, meta: &ObjectMeta) -> bool {
    same_namespace(pdb, meta)
        && selector(pdb).is_some_and(|s| !s.is_everything() && s.matches(labels(meta)))
}

/// Sets the condition of `type_` in `conditions` as apimachinery's `SetStatusCondition`
/// does: a new condition, or a changed status, takes `now` as its transition time; reason,
/// message and observed generation are replaced either way.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: jiff::Timestamp,
) {
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            if existing.status != status {
                existing.status = status.to_string();
                existing.last_transition_time = Time(now);
            }
            existing.reason = reason.to_string();
            existing.message = message.to_string();
            existing.observed_generation = observed_generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
            observed_generation,
            last_transition_time: Time(now),
        }),
    }
}

/// `UpdateDisruptionAllowedCondition`: True with `SufficientPods` while disruptions are
/// allowed, else False with `InsufficientPods`, at the status's observed generation.
pub fn update_disruption_allowed(status: &mut PodDisruptionBudgetStatus, now: jiff::Timestamp) {
    let (value, reason) = if status.disruptions_allowed > 0 {
        ("True", SUFFICIENT_PODS)
    } else {
        ("False", INSUFFICIENT_PODS)
    };
    let generation = status.observed_generation;
    set_condition(
        status.conditions.get_or_insert_with(Vec::new),
        DISRUPTION_ALLOWED,
        value,
        reason,
        "",
        generation,
        now,
    );
}

/// `ConditionsAreUpToDate`: the budget's `DisruptionAllowed` condition says what its status
/// does, at the budget's current generation.
pub fn conditions_up_to_date(pdb: &PodDisruptionBudget) -> bool {
    let Some(status) = &pdb.status else {
        return false;
    };
    let Some(condition) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == DISRUPTION_ALLOWED)
    else {
        return false;
    };
    // Go's int64 fields: an unset one is 0.
    if status.observed_generation.unwrap_or(0) != pdb.metadata.generation.unwrap_or(0) {
        return false;
    }
    if status.disruptions_allowed > 0 {
        condition.status == "True" && condition.reason == SUFFICIENT_PODS
    } else {
        condition.status == "False" && condition.reason == INSUFFICIENT_PODS
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().expect("a test time")
    }

    fn pdb(selector: serde_json::Value) -> PodDisruptionBudget {
        serde_json::from_value(json!({
            "metadata": { "name": "web", "namespace": "default", "generation": 2 },
            "spec": { "minAvailable": 1, "selector": selector }
        }))
        .expect("a test budget")
    }

    fn pod(namespace: &str, labels: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": "p", "namespace": namespace, "labels": labels }
        }))
        .expect("a test pod")
    }

    #[test]
    fn an_empty_selector_counts_every_pod_but_guards_no_eviction() {
        let everything = pdb(json!({}));
        let web = pod("default", json!({ "app": "web" }));
        assert!(counts(&everything, &web.metadata));
        assert!(!guards_eviction(&everything, &web.metadata));
        let nothing = pdb(serde_json::Value::Null);
        assert!(!counts(&nothing, &web.metadata) && !guards_eviction(&nothing, &web.metadata));
        let apps = pdb(json!({ "matchLabels": { "app": "web" } }));
        assert!(counts(&apps, &web.metadata) && guards_eviction(&apps, &web.metadata));
        assert!(!counts(
            &apps,
            &pod("other", json!({ "app": "web" })).metadata
        ));
        assert!(!guards_eviction(
            &apps,
            &pod("default", json!({ "app": "db" })).metadata
        ));
    }

    #[test]
    fn the_condition_changes_its_transition_time_only_with_its_status() {
        let mut status = PodDisruptionBudgetStatus {
            disruptions_allowed: 1,
            observed_generation: Some(2),
            ..Default::default()
        };
        update_disruption_allowed(&mut status, at("2026-01-01T00:00:00Z"));
        status.disruptions_allowed = 2;
        update_disruption_allowed(&mut status, at("2026-01-01T00:01:00Z"));
        let conditions = status.conditions.clone().unwrap_or_default();
        assert_eq!(conditions.len(), 1);
        assert_eq!(
            (conditions[0].status.as_str(), conditions[0].reason.as_str()),
            ("True", SUFFICIENT_PODS)
        );
        assert_eq!(
            conditions[0].last_transition_time.0,
            at("2026-01-01T00:00:00Z")
        );
        status.disruptions_allowed = 0;
        update_disruption_allowed(&mut status, at("2026-01-01T00:02:00Z"));
        let conditions = status.conditions.clone().unwrap_or_default();
        assert_eq!(conditions[0].reason, INSUFFICIENT_PODS);
        assert_eq!(
            conditions[0].last_transition_time.0,
            at("2026-01-01T00:02:00Z")
        );
    }

    #[test]
    fn conditions_are_up_to_date_only_at_the_current_generation() {
        let mut budget = pdb(json!({ "matchLabels": { "app": "web" } }));
        assert!(!conditions_up_to_date(&budget));
        let mut status = PodDisruptionBudgetStatus {
            disruptions_allowed: 1,
            observed_generation: Some(2),
            ..Default::default()
        };
        update_disruption_allowed(&mut status, at("2026-01-01T00:00:00Z"));
        budget.status = Some(status);
        assert!(conditions_up_to_date(&budget));
        budget.metadata.generation = Some(3);
        assert!(!conditions_up_to_date(&budget));
    }

    #[test]
    fn readiness_is_the_first_ready_condition() {
        let ready: Pod = serde_json::from_value(json!({
            "status": { "conditions": [{ "type": "Ready", "status": "True" }] }
        }))
        .expect("a test pod");
        assert!(is_pod_ready(&ready));
        assert!(!is_pod_ready(&pod("default", json!({}))));
        // As `GetPodCondition`: the first condition of the type decides.
        let first_false: Pod = serde_json::from_value(json!({
            "status": { "conditions": [{ "type": "Ready", "status": "False" },
                                       { "type": "Ready", "status": "True" }] }
        }))
        .expect("a test pod");
        assert!(!is_pod_ready(&first_false));
    }

    fn disruption_target(status: &str, reason: &str) -> PodCondition {
        PodCondition {
            type_: DISRUPTION_TARGET.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(EVICTION_API_MESSAGE.into()),
            ..PodCondition::default()
        }
    }

    #[test]
    fn a_pod_condition_keeps_its_transition_time_while_its_status_stays() {
        let mut conditions = vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            ..PodCondition::default()
        }];
        let target = disruption_target("True", EVICTION_BY_EVICTION_API);
        assert!(update_pod_condition(
            &mut conditions,
            target.clone(),
            at("2026-01-01T00:00:00Z")
        ));
        assert_eq!(conditions.len(), 2);
        assert_eq!(
            conditions[1].last_transition_time,
            Some(Time(at("2026-01-01T00:00:00Z")))
        );
        // The same again later: nothing changes, not even the time.
        assert!(!update_pod_condition(
            &mut conditions,
            target,
            at("2026-01-01T00:05:00Z")
        ));
        assert_eq!(
            conditions[1].last_transition_time,
            Some(Time(at("2026-01-01T00:00:00Z")))
        );
        // Another reason, same status: replaced, the time kept.
        assert!(update_pod_condition(
            &mut conditions,
            disruption_target("True", "DeletionByPodGC"),
            at("2026-01-01T00:06:00Z")
        ));
        assert_eq!(conditions[1].reason.as_deref(), Some("DeletionByPodGC"));
        assert_eq!(
            conditions[1].last_transition_time,
            Some(Time(at("2026-01-01T00:00:00Z")))
        );
        // Another status: a new transition.
        assert!(update_pod_condition(
            &mut conditions,
            disruption_target("False", "DeletionByPodGC"),
            at("2026-01-01T00:07:00Z")
        ));
        assert_eq!(
            conditions[1].last_transition_time,
            Some(Time(at("2026-01-01T00:07:00Z")))
        );
    }
}
