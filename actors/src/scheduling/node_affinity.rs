//! `nodeSelector` and required node affinity against a node, as Kubernetes'
//! `component-helpers/scheduling/corev1/nodeaffinity` matches them (`GetRequiredNodeAffinity(pod)
//! .Match(node)`). Pure.
//!
//! ```text
//!  nodeSelector (every key=value)  AND  requiredDuringScheduling...:
//!      term₁ OR term₂ OR …   (no terms, or only empty or invalid ones: no node)
//!      term = matchExpressions on labels (ANDed: In NotIn Exists DoesNotExist Gt Lt)
//!         AND matchFields (ANDed: metadata.name In/NotIn one value)
//! ```
//!
//! As in Kubernetes, a term that does not parse (In without values, Gt with a value that is not
//! an integer, an unknown operator or field) is skipped rather than failing the pod: validation
//! at the API keeps such terms out in the first place.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
};

use crate::pods::cached::PodSpec;

/// The only field `matchFields` may name.
pub const NODE_NAME_FIELD: &str = "metadata.name";

/// Whether a pod's `nodeSelector` and required node affinity both admit `node` (asked of a
/// pod's spec, or of a template's: give `spec.node_selector.as_ref()` and the affinity).
pub fn matches_required(
    node_selector: Option<&BTreeMap<String, String>>,
    affinity: Option<&Affinity>,
    node: &Node,
) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let selector_fits = node_selector
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = affinity
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    selector_fits && required.is_none_or(|selector| selector_matches(selector, node))
}

/// Whether any of the selector's valid, non-empty terms matches `node`.
pub fn selector_matches(selector: &NodeSelector, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let name = node.metadata.name.as_deref().unwrap_or("");
    selector
        .node_selector_terms
        .iter()
        .any(|term| term_matches(term, &labels, name) == Some(true))
}

/// `None`: the term is empty or does not parse, and so matches nothing.
fn term_matches(
    term: &NodeSelectorTerm,
    labels: &BTreeMap<String, String>,
    node_name: &str,
) -> Option<bool> {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return None;
    }
    // Parse all before deciding, as Kubernetes does: an invalid requirement anywhere voids the
    // term even when an earlier one already failed to match.
    let label_results: Option<Vec<bool>> = expressions
        .iter()
        .map(|r| label_requirement_matches(r, labels))
        .collect();
    let field_results: Option<Vec<bool>> = fields
        .iter()
        .map(|r| field_requirement_matches(r, node_name))
        .collect();
    Some(label_results?.into_iter().chain(field_results?).all(|m| m))
}

/// `None`: the requirement is invalid.
fn label_requirement_matches(
    requirement: &NodeSelectorRequirement,
    labels: &BTreeMap<String, String>,
) -> Option<bool> {
    let values = requirement.values.as_deref().unwrap_or_default();
    let label = labels.get(&requirement.key);
    let one_integer = || match values {
        [only] => only.parse::<i64>().ok(),
        _ => None,
    };
    match requirement.operator.as_str() {
        "In" if !values.is_empty() => Some(label.is_some_and(|v| values.contains(v))),
        "NotIn" if !values.is_empty() => Some(label.is_none_or(|v| !values.contains(v))),
        "Exists" if values.is_empty() => Some(label.is_some()),
        "DoesNotExist" if values.is_empty() => Some(label.is_none()),
        "Gt" => {
            let bound = one_integer()?;
            Some(
                label
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v > bound),
            )
        }
        "Lt" => {
            let bound = one_integer()?;
            Some(
                label
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v < bound),
            )
        }
        _ => None,
    }
}

/// `None`: the requirement is invalid (another field, another operator, not one value).
fn field_requirement_matches(
    requirement: &NodeSelectorRequirement,
    node_name: &str,
) -> Option<bool> {
    let [value] = requirement.values.as_deref().unwrap_or_default() else {
        return None;
    };
    if requirement.key != NODE_NAME_FIELD {
        return None;
    }
    match requirement.operator.as_str() {
        "In" => Some(node_name == value),
        "NotIn" => Some(node_name != value),
        _ => None,
    }
}

/// The one-term selector `matchFields: metadata.name In [node]` that pins a pod to a node
/// while leaving the binding to the scheduler (how DaemonSet pods are placed).
pub fn pinned_to(node: &str) -> NodeSelector {
    NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: NODE_NAME_FIELD.to_string(),
                operator: "In".to_string(),
                values: Some(vec![node.to_string()]),
            }]),
        }],
    }
}

/// The node a pod is for: `spec.nodeName` once bound, else the single `metadata.name In` value
/// of its required node affinity (Kubernetes' `GetTargetNodeName`); `None` when neither.
pub fn target_node(spec: &PodSpec) -> Option<&str> {
    if let Some(name) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(name);
    }
    let required = spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?;
    let requirement = required
        .node_selector_terms
        .iter()
        .flat_map(|term| term.match_fields.iter().flatten())
        .find(|r| r.key == NODE_NAME_FIELD && r.operator == "In")?;
    match requirement.values.as_deref()? {
        [only] => Some(only),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn admits(spec: &PodSpec, node: &Node) -> bool {
        matches_required(spec.node_selector.as_ref(), spec.affinity.as_deref(), node)
    }

    fn node(name: &str, labels: serde_json::Value) -> Node {
        serde_json::from_value(json!({ "metadata": { "name": name, "labels": labels } }))
            .expect("a test node decodes")
    }

    fn spec(json: serde_json::Value) -> PodSpec {
        serde_json::from_value(json).expect("a test pod spec decodes")
    }

    fn requiring(terms: serde_json::Value) -> PodSpec {
        spec(json!({ "containers": [], "affinity": { "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": terms } } } }))
    }

    fn expr(key: &str, operator: &str, values: &[&str]) -> serde_json::Value {
        json!({ "matchExpressions": [{ "key": key, "operator": operator, "values": values }] })
    }

    #[test]
    fn a_node_selector_needs_every_label() {
        let n = node("n1", json!({ "disk": "ssd", "zone": "a" }));
        let table = [
            (json!({}), true),
            (json!({ "disk": "ssd" }), true),
            (json!({ "disk": "ssd", "zone": "b" }), false),
            (json!({ "gpu": "true" }), false),
        ];
        for (selector, expected) in table {
            let s = spec(json!({ "containers": [], "nodeSelector": selector }));
            assert_eq!(admits(&s, &n), expected, "{selector}");
        }
    }

    #[test]
    fn match_expressions_follow_each_operator() {
        let n = node("n1", json!({ "disk": "ssd", "cores": "8", "odd": "x" }));
        let table = [
            (expr("disk", "In", &["ssd", "nvme"]), true),
            (expr("disk", "In", &["hdd"]), false),
            (expr("gpu", "In", &["a"]), false),
            (expr("disk", "NotIn", &["hdd"]), true),
            (expr("gpu", "NotIn", &["a"]), true),
            (expr("disk", "NotIn", &["ssd"]), false),
            (expr("disk", "Exists", &[]), true),
            (expr("gpu", "Exists", &[]), false),
            (expr("gpu", "DoesNotExist", &[]), true),
            (expr("disk", "DoesNotExist", &[]), false),
            (expr("cores", "Gt", &["4"]), true),
            (expr("cores", "Gt", &["8"]), false),
            (expr("cores", "Lt", &["16"]), true),
            (expr("odd", "Gt", &["1"]), false),
            (expr("gpu", "Lt", &["1"]), false),
            // Invalid terms match nothing.
            (expr("cores", "Gt", &["four"]), false),
            (expr("cores", "Gt", &["1", "2"]), false),
            (expr("disk", "In", &[]), false),
            (expr("disk", "Exists", &["ssd"]), false),
            (expr("disk", "Like", &["ssd"]), false),
        ];
        for (term, expected) in table {
            assert_eq!(admits(&requiring(json!([term])), &n), expected, "{term}");
        }
    }

    #[test]
    fn terms_are_ored_and_requirements_in_a_term_anded() {
        let n = node("n1", json!({ "disk": "ssd", "zone": "a" }));
        let both = json!({ "matchExpressions": [
            { "key": "disk", "operator": "In", "values": ["ssd"] },
            { "key": "zone", "operator": "In", "values": ["b"] } ] });
        assert!(!admits(&requiring(json!([both.clone()])), &n));
        let either = json!([both, expr("zone", "In", &["a"])]);
        assert!(admits(&requiring(either), &n));
        assert!(!admits(&requiring(json!([])), &n), "no terms: no node");
        assert!(
            !admits(&requiring(json!([{}])), &n),
            "an empty term: no node"
        );
        let invalid_then_valid = json!([expr("disk", "In", &[]), expr("disk", "Exists", &[])]);
        assert!(
            admits(&requiring(invalid_then_valid), &n),
            "an invalid term is skipped, the others still count"
        );
    }

    #[test]
    fn match_fields_name_the_node() {
        let n = node("n1", json!({}));
        let field = |op: &str, values: &[&str]| json!([{ "matchFields": [{ "key": "metadata.name", "operator": op, "values": values }] }]);
        assert!(admits(&requiring(field("In", &["n1"])), &n));
        assert!(!admits(&requiring(field("In", &["n2"])), &n));
        assert!(admits(&requiring(field("NotIn", &["n2"])), &n));
        assert!(
            !admits(&requiring(field("In", &["n1", "n2"])), &n),
            "one value"
        );
        assert!(!admits(&requiring(field("Exists", &[])), &n));
        let other_field = json!([{ "matchFields": [
            { "key": "metadata.uid", "operator": "In", "values": ["n1"] } ] }]);
        assert!(!admits(&requiring(other_field), &n));
    }

    #[test]
    fn node_selector_and_affinity_must_both_hold() {
        let n = node("n1", json!({ "disk": "ssd" }));
        let mut s = requiring(json!([expr("disk", "Exists", &[])]));
        assert!(admits(&s, &n));
        s.node_selector = Some([("disk".to_string(), "hdd".to_string())].into());
        assert!(!admits(&s, &n));
    }

    #[test]
    fn the_target_node_is_the_binding_or_the_pinning_affinity() {
        let mut pinned = spec(json!({ "containers": [] }));
        assert_eq!(target_node(&pinned), None);
        pinned.affinity = Some(Box::new(k8s_openapi::api::core::v1::Affinity {
            node_affinity: Some(k8s_openapi::api::core::v1::NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(pinned_to("n7")),
                preferred_during_scheduling_ignored_during_execution: None,
            }),
            ..Default::default()
        }));
        assert_eq!(target_node(&pinned), Some("n7"));
        assert!(admits(&pinned, &node("n7", json!({}))));
        assert!(!admits(&pinned, &node("n8", json!({}))));
        pinned.node_name = Some("n9".into());
        assert_eq!(target_node(&pinned), Some("n9"), "the binding wins");
    }
}
