//! Pod affinity and anti-affinity terms, parsed once per pod (kube-scheduler's
//! `framework.AffinityTerm`): in which namespaces a term looks, which pods it selects there,
//! and over which node label it counts them. Pure.
//!
//! A term looks in its `namespaces`, or in those its `namespaceSelector` picks (`{}`: all), or,
//! both unset, in its own pod's namespace. `matchLabelKeys` and `mismatchLabelKeys` become
//! `key in (v)` and `key notin (v)` with the owning pod's value, as the API server merges them
//! at creation (merging again is harmless). A selector that does not parse, or a term without
//! one, selects nothing; validation keeps such terms out.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodAffinityTerm, WeightedPodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use rudder_proto::objects::selector::LabelSelector;

use crate::pods::cached::{Pod, PodSpec};

/// One parsed `PodAffinityTerm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffinityTerm {
    /// Namespaces named outright (or the owner's, when neither these nor a selector is set).
    pub namespaces: Vec<String>,
    /// Namespaces picked by their labels; nothing when unset.
    pub namespace_selector: LabelSelector,
    pub selector: LabelSelector,
    pub topology_key: String,
}

/// A preferred term and its weight (1..=100).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedTerm {
    pub weight: i64,
    pub term: AffinityTerm,
}

/// A pod's four lists of inter-pod terms (`PodInfo`'s `Required*`/`Preferred*` terms).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodTerms {
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<WeightedTerm>,
    pub preferred_anti_affinity: Vec<WeightedTerm>,
}

impl PodTerms {
    pub fn of(pod: &Pod) -> Self {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        let labels = pod.metadata.labels.as_ref();
        let Some(affinity) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else {
            return Self::default();
        };
        let required = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms
                .into_iter()
                .flatten()
                .map(|term| AffinityTerm::new(term, namespace, labels))
                .collect()
        };
        let preferred = |terms: Option<&Vec<WeightedPodAffinityTerm>>| -> Vec<WeightedTerm> {
            terms
                .into_iter()
                .flatten()
                .map(|weighted| WeightedTerm {
                    weight: i64::from(weighted.weight),
                    term: AffinityTerm::new(&weighted.pod_affinity_term, namespace, labels),
                })
                .collect()
        };
        let together = affinity.pod_affinity.as_ref();
        let apart = affinity.pod_anti_affinity.as_ref();
        Self {
            required_affinity: required(together.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            required_anti_affinity: required(apart.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_affinity: preferred(together.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_anti_affinity: preferred(apart.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.required_affinity.is_empty()
            && self.required_anti_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty()
    }
}

impl AffinityTerm {
    /// The term as its owner, a pod in `namespace` with `labels`, states it.
    pub fn new(
        term: &PodAffinityTerm,
        namespace: &str,
        labels: Option<&BTreeMap<String, String>>,
    ) -> Self {
        let listed = term.namespaces.as_deref().unwrap_or_default();
        let namespaces = if listed.is_empty() && term.namespace_selector.is_none() {
            vec![namespace.to_string()]
        } else {
            listed.to_vec()
        };
        let namespace_selector = LabelSelector::from_optional_api(term.namespace_selector.as_ref())
            .unwrap_or_else(|_| LabelSelector::nothing());
        let selector = match &term.label_selector {
            None => LabelSelector::nothing(),
            Some(base) => {
                let value_of = |key: &String| labels.and_then(|l| l.get(key));
                let mut extra = Vec::new();
                for key in term.match_label_keys.iter().flatten() {
                    if let Some(value) = value_of(key) {
                        extra.push(requirement(key, "In", value));
                    }
                }
                for key in term.mismatch_label_keys.iter().flatten() {
                    if let Some(value) = value_of(key) {
                        extra.push(requirement(key, "NotIn", value));
                    }
                }
                with_requirements(base, extra)
            }
        };
        Self {
            namespaces,
            namespace_selector,
            selector,
            topology_key: term.topology_key.clone(),
        }
    }

    /// Whether the term selects a pod in `namespace` with `labels`, where `namespace_labels`
    /// are that namespace's labels (none for a namespace the snapshot does not know).
    pub fn matches(
        &self,
        namespace: &str,
        labels: Option<&BTreeMap<String, String>>,
        namespace_labels: &BTreeMap<String, String>,
    ) -> bool {
        let in_scope = self.namespaces.iter().any(|n| n.as_str() == namespace)
            || self.namespace_selector.matches(namespace_labels);
        in_scope && self.selector.matches_labels(labels)
    }
}

/// `key <operator> (value)` as a `metav1` requirement.
pub fn requirement(key: &str, operator: &str, value: &str) -> metav1::LabelSelectorRequirement {
    metav1::LabelSelectorRequirement {
        key: key.to_string(),
        operator: operator.to_string(),
        values: Some(vec![value.to_string()]),
    }
}

/// `base` with `extra` requirements ANDed in; nothing when it does not parse.
pub fn with_requirements(
    base: &metav1::LabelSelector,
    extra: Vec<metav1::LabelSelectorRequirement>,
) -> LabelSelector {
    let parsed = if extra.is_empty() {
        LabelSelector::from_api(base)
    } else {
        let mut merged = base.clone();
        merged
            .match_expressions
            .get_or_insert_with(Vec::new)
            .extend(extra);
        LabelSelector::from_api(&merged)
    };
    parsed.unwrap_or_else(|_| LabelSelector::nothing())
}

/// Whether the pod constrains its node by `nodeSelector` or required node affinity; without
/// either, NodeAffinity has nothing to check (its PreFilter says Skip).
pub fn has_required_node_affinity(spec: &PodSpec) -> bool {
    let selector = spec.node_selector.as_ref().is_some_and(|s| !s.is_empty());
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .is_some_and(|n| {
            n.required_during_scheduling_ignored_during_execution
                .is_some()
        });
    selector || required
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn pod_with_affinity(affinity: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": "p", "namespace": "shop",
                          "labels": { "app": "web", "rev": "7" } },
            "spec": { "containers": [], "affinity": affinity } }))
        .expect("a test pod decodes")
    }

    fn one_required(term: Value) -> AffinityTerm {
        let pod = pod_with_affinity(json!({ "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [term] } }));
        PodTerms::of(&pod).required_affinity.remove(0)
    }

    fn labels(json: Value) -> BTreeMap<String, String> {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_term_looks_in_its_own_namespace_unless_told_otherwise() {
        let web = labels(json!({ "app": "web" }));
        let none = BTreeMap::new();
        let team = labels(json!({ "team": "a" }));
        let own = one_required(json!({ "topologyKey": "zone",
            "labelSelector": { "matchLabels": { "app": "web" } } }));
        assert_eq!(own.namespaces, ["shop"]);
        assert!(own.matches("shop", Some(&web), &none));
        assert!(!own.matches("other", Some(&web), &none));

        let listed = one_required(json!({ "topologyKey": "zone", "namespaces": ["a", "b"],
            "labelSelector": { "matchLabels": { "app": "web" } } }));
        assert!(listed.matches("b", Some(&web), &none));
        assert!(!listed.matches("shop", Some(&web), &none));

        let picked = one_required(json!({ "topologyKey": "zone",
            "namespaceSelector": { "matchLabels": { "team": "a" } },
            "labelSelector": { "matchLabels": { "app": "web" } } }));
        assert!(
            picked.namespaces.is_empty(),
            "a selector replaces the own namespace"
        );
        assert!(picked.matches("x", Some(&web), &team));
        assert!(!picked.matches("shop", Some(&web), &none));

        let everywhere = one_required(json!({ "topologyKey": "zone", "namespaceSelector": {},
            "labelSelector": { "matchLabels": { "app": "web" } } }));
        assert!(everywhere.matches("anything", Some(&web), &none));
    }

    #[test]
    fn selectors_select_by_labels_and_a_missing_one_selects_nothing() {
        let none = BTreeMap::new();
        let no_selector = one_required(json!({ "topologyKey": "zone" }));
        assert!(!no_selector.matches("shop", Some(&labels(json!({ "app": "web" }))), &none));
        let empty = one_required(json!({ "topologyKey": "zone", "labelSelector": {} }));
        assert!(empty.matches("shop", None, &none), "{{}} selects every pod");
        let broken = one_required(json!({ "topologyKey": "zone", "labelSelector": {
            "matchExpressions": [{ "key": "app", "operator": "In" }] } }));
        assert!(!broken.matches("shop", Some(&labels(json!({ "app": "web" }))), &none));
    }

    #[test]
    fn match_and_mismatch_label_keys_take_the_owners_values() {
        let none = BTreeMap::new();
        let term = one_required(json!({ "topologyKey": "zone",
            "labelSelector": { "matchLabels": { "app": "web" } },
            "matchLabelKeys": ["rev", "absent"], "mismatchLabelKeys": ["tier"] }));
        assert!(term.matches(
            "shop",
            Some(&labels(json!({ "app": "web", "rev": "7" }))),
            &none
        ));
        assert!(!term.matches(
            "shop",
            Some(&labels(json!({ "app": "web", "rev": "8" }))),
            &none
        ));

        let pod = pod_with_affinity(json!({ "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [{ "topologyKey": "zone",
                "labelSelector": {}, "mismatchLabelKeys": ["app"] }] } }));
        let apart = &PodTerms::of(&pod).required_anti_affinity[0];
        assert!(!apart.matches("shop", Some(&labels(json!({ "app": "web" }))), &none));
        assert!(apart.matches("shop", Some(&labels(json!({ "app": "db" }))), &none));
    }

    #[test]
    fn the_four_lists_are_read_with_their_weights() {
        let term = json!({ "topologyKey": "zone", "labelSelector": {} });
        let pod = pod_with_affinity(json!({
            "podAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [
                { "weight": 5, "podAffinityTerm": term.clone() }] },
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [term.clone()],
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    { "weight": 7, "podAffinityTerm": term }] } }));
        let terms = PodTerms::of(&pod);
        assert!(terms.required_affinity.is_empty());
        assert_eq!(terms.required_anti_affinity.len(), 1);
        assert_eq!(terms.preferred_affinity[0].weight, 5);
        assert_eq!(terms.preferred_anti_affinity[0].weight, 7);
        assert!(PodTerms::of(&Pod::default()).is_empty());
    }
}
