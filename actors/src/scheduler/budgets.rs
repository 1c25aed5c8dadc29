//! Which victims of a preemption would break a PodDisruptionBudget, as kube-scheduler's
//! `filterPodsWithPDBViolation` decides it: each pod a budget of its namespace selects, and
//! that the budget does not already count as disrupted (`status.disruptedPods`), spends one of
//! the budget's `status.disruptionsAllowed`; a pod that finds one of its budgets spent breaks
//! it. Pure; preemption (`preemption.rs`) puts such pods back first and prefers nodes where
//! fewer break.

use std::sync::Arc;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use rudder_proto::objects::selector::LabelSelector;

use crate::pods::cached::Pod;

/// For `pods` evicted together in the order given, whether each breaks a budget of `budgets`.
pub fn breaking(budgets: &[Arc<PodDisruptionBudget>], pods: &[Arc<Pod>]) -> Vec<bool> {
    let mut allowed: Vec<i32> = budgets
        .iter()
        .map(|budget| {
            budget
                .status
                .as_ref()
                .map_or(0, |status| status.disruptions_allowed)
        })
        .collect();
    let selectors: Vec<LabelSelector> = budgets
        .iter()
        .map(|budget| {
            let selector = budget.spec.as_ref().and_then(|spec| spec.selector.as_ref());
            // An empty or missing selector selects nothing here (kube-scheduler's words: "a
            // PDB with a nil or empty selector matches nothing"), and so does one that does
            // not parse (the disruption controller reports it).
            LabelSelector::from_optional_api(selector)
                .ok()
                .filter(|selector| !selector.is_everything())
                .unwrap_or_else(LabelSelector::nothing)
        })
        .collect();
    pods.iter()
        .map(|pod| {
            let mut breaks = false;
            for (at, budget) in budgets.iter().enumerate() {
                if budget.metadata.namespace != pod.metadata.namespace
                    || !selectors[at].matches_labels(pod.metadata.labels.as_ref())
                    || already_disrupted(budget, pod)
                {
                    continue;
                }
                allowed[at] -= 1;
                if allowed[at] < 0 {
                    breaks = true;
                }
            }
            breaks
        })
        .collect()
}

/// Whether the budget counts the pod as disrupted already (an eviction it approved).
fn already_disrupted(budget: &PodDisruptionBudget, pod: &Pod) -> bool {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    budget
        .status
        .as_ref()
        .and_then(|status| status.disrupted_pods.as_ref())
        .is_some_and(|disrupted| disrupted.contains_key(name))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn budget(
        namespace: &str,
        app: &str,
        allowed: i32,
        disrupted: &[&str],
    ) -> Arc<PodDisruptionBudget> {
        let disrupted: serde_json::Map<String, serde_json::Value> = disrupted
            .iter()
            .map(|name| (name.to_string(), json!("2026-01-01T00:00:00Z")))
            .collect();
        Arc::new(
            serde_json::from_value(json!({
                "metadata": { "name": app, "namespace": namespace },
                "spec": { "selector": { "matchLabels": { "app": app } } },
                "status": { "disruptionsAllowed": allowed, "disruptedPods": disrupted,
                            "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0 },
            }))
            .unwrap(),
        )
    }

    fn pod(namespace: &str, name: &str, app: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": { "name": name, "namespace": namespace, "labels": { "app": app } },
            }))
            .unwrap(),
        )
    }

    #[test]
    fn pods_past_a_budgets_allowed_disruptions_break_it_in_the_order_given() {
        let budgets = [budget("default", "web", 1, &[])];
        let pods = [
            pod("default", "web-1", "web"),
            pod("default", "web-2", "web"),
            pod("default", "db-1", "db"),
            pod("other", "web-3", "web"),
        ];
        assert_eq!(breaking(&budgets, &pods), [false, true, false, false]);
    }

    #[test]
    fn a_pod_the_budget_already_counts_as_disrupted_spends_nothing() {
        let budgets = [budget("default", "web", 0, &["web-1"])];
        let pods = [
            pod("default", "web-1", "web"),
            pod("default", "web-2", "web"),
        ];
        assert_eq!(breaking(&budgets, &pods), [false, true]);
    }

    #[test]
    fn a_pod_under_two_budgets_breaks_if_either_is_spent_and_an_empty_selector_selects_none() {
        let mut spent = (*budget("default", "web", 0, &[])).clone();
        spent.metadata.name = Some("web-strict".into());
        let budgets = [budget("default", "web", 5, &[]), Arc::new(spent)];
        assert_eq!(
            breaking(&budgets, &[pod("default", "web-1", "web")]),
            [true]
        );
        assert_eq!(breaking(&[], &[pod("default", "web-1", "web")]), [false]);
        let mut everything = (*budget("default", "web", 0, &[])).clone();
        everything.spec.as_mut().unwrap().selector =
            Some(serde_json::from_value(json!({})).unwrap());
        let pods = [pod("default", "web-1", "web")];
        assert_eq!(breaking(&[Arc::new(everything)], &pods), [false]);
    }
}
