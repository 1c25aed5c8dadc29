//! A workload's `metav1.LabelSelector`, checked: [`rudder_proto::objects::selector`] parses
//! and matches selectors (for lists, controllers and the CLI alike); here its problems become
//! field errors at the selector's path.

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use rudder_proto::objects::selector::{LabelSelector, ProblemKind, SelectorProblem};

use super::FieldError;

/// A workload's `spec.selector`, checked and parsed; problems are reported at `path`.
pub fn validate_selector(
    selector: &metav1::LabelSelector,
    path: &str,
) -> Result<LabelSelector, Vec<FieldError>> {
    LabelSelector::from_api(selector)
        .map_err(|problems| problems.into_iter().map(|p| field_error(path, p)).collect())
}

/// A selector's problem as the field error at `path` and the problem's field below it.
fn field_error(path: &str, problem: SelectorProblem) -> FieldError {
    let at = format!("{path}.{}", problem.field);
    match problem.kind {
        ProblemKind::Required => FieldError::required(at, problem.detail),
        ProblemKind::Invalid { value } => FieldError::invalid(at, value, problem.detail),
        ProblemKind::Forbidden => FieldError::forbidden(at, problem.detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_selector_problems_are_reported_at_their_paths() {
        let selector: metav1::LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"Bad Key": "ok", "app": "bad value"},
            "matchExpressions": [
                {"key": "tier", "operator": "In"},
                {"key": "canary", "operator": "Exists", "values": ["yes"]},
                {"key": "x", "operator": "Gt", "values": ["1"]},
                {"key": "-x", "operator": "NotIn", "values": ["ok", "not ok"]}
            ]
        }))
        .unwrap_or_default();
        let errors = validate_selector(&selector, "spec.selector")
            .err()
            .unwrap_or_default();
        let described: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.selector.matchLabels",
                "spec.selector.matchLabels",
                "spec.selector.matchExpressions[0].values",
                "spec.selector.matchExpressions[1].values",
                "spec.selector.matchExpressions[2].operator",
                "spec.selector.matchExpressions[3].key",
                "spec.selector.matchExpressions[3].values[1]",
            ],
            "{described:#?}"
        );
        assert!(described[0].starts_with("spec.selector.matchLabels: Invalid value: \"Bad Key\""));
        assert!(described[1].contains("\"bad value\""));
        assert_eq!(
            described[2],
            "spec.selector.matchExpressions[0].values: Required value: must be specified when \
             `operator` is 'In' or 'NotIn'"
        );
        assert_eq!(errors[3].reason(), "FieldValueForbidden");
        assert!(described[4].contains("\"Gt\": not a valid selector operator"));
    }
}
