//! The object form of a label selector, `metav1.LabelSelector` (`matchLabels`,
//! `matchExpressions`), as Deployments, ReplicaSets, DaemonSets, StatefulSets, Jobs and
//! claims carry it: checked and turned into a [`LabelSelector`], after apimachinery's
//! `LabelSelectorAsSelector`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;

use super::label::{LabelSelector, Operator, Requirement};
use crate::objects::names::{label_value, qualified_name};

/// One thing wrong with a `metav1.LabelSelector`: the field, below the selector, and what is
/// wrong with it. The API server reports each as a field error at the selector's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorProblem {
    /// The field below the selector: `matchLabels`, `matchExpressions[0].values`.
    pub field: String,
    pub kind: ProblemKind,
    /// What the field must be; empty when the kind says it all.
    pub detail: String,
}

/// What kind of problem a [`SelectorProblem`] is (the field error it becomes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// A field the operator needs is missing.
    Required,
    /// The value is malformed; carries it as shown to users.
    Invalid { value: String },
    /// The operator forbids the field.
    Forbidden,
}

impl SelectorProblem {
    fn invalid(field: impl Into<String>, value: &str, detail: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            kind: ProblemKind::Invalid {
                value: value.to_string(),
            },
            detail: detail.into(),
        }
    }
}

impl LabelSelector {
    /// A workload's optional `spec.selector`: a nil one selects nothing (apimachinery's
    /// `LabelSelectorAsSelector(nil)`), an empty one everything, any other as
    /// [`LabelSelector::from_api`].
    pub fn from_optional_api(
        selector: Option<&metav1::LabelSelector>,
    ) -> Result<Self, Vec<SelectorProblem>> {
        match selector {
            Some(selector) => Self::from_api(selector),
            None => Ok(Self::nothing()),
        }
    }

    /// A workload's `spec.selector`: `matchLabels` as `key=value` requirements, each of
    /// `matchExpressions` as `key in (..)`, `key notin (..)`, `key` or `!key`. Every problem is
    /// reported, in field order. An expression's repeated values are kept, as kubectl keeps
    /// (and prints) them.
    pub fn from_api(selector: &metav1::LabelSelector) -> Result<Self, Vec<SelectorProblem>> {
        let mut problems = Vec::new();
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            let key_problems = qualified_name(key);
            if !key_problems.is_empty() {
                problems.push(SelectorProblem::invalid(
                    "matchLabels",
                    key,
                    key_problems.join("; "),
                ));
            }
            for problem in label_value(value) {
                problems.push(SelectorProblem::invalid("matchLabels", value, problem));
            }
            requirements.push(Requirement {
                key: key.clone(),
                operator: Operator::Equals,
                values: vec![value.clone()],
            });
        }
        for (index, expression) in selector.match_expressions.iter().flatten().enumerate() {
            let at = format!("matchExpressions[{index}]");
            let values = expression.values.as_deref().unwrap_or_default();
            let operator = match expression.operator.as_str() {
                "In" => Some(Operator::In),
                "NotIn" => Some(Operator::NotIn),
                "Exists" => Some(Operator::Exists),
                "DoesNotExist" => Some(Operator::DoesNotExist),
                other => {
                    problems.push(SelectorProblem::invalid(
                        format!("{at}.operator"),
                        other,
                        "not a valid selector operator",
                    ));
                    None
                }
            };
            match operator {
                Some(Operator::In | Operator::NotIn) if values.is_empty() => {
                    problems.push(SelectorProblem {
                        field: format!("{at}.values"),
                        kind: ProblemKind::Required,
                        detail: "must be specified when `operator` is 'In' or 'NotIn'".into(),
                    });
                }
                Some(Operator::Exists | Operator::DoesNotExist) if !values.is_empty() => {
                    problems.push(SelectorProblem {
                        field: format!("{at}.values"),
                        kind: ProblemKind::Forbidden,
                        detail: "may not be specified when `operator` is 'Exists' or \
                                 'DoesNotExist'"
                            .into(),
                    });
                }
                _ => {}
            }
            let key_problems = qualified_name(&expression.key);
            if !key_problems.is_empty() {
                problems.push(SelectorProblem::invalid(
                    format!("{at}.key"),
                    &expression.key,
                    key_problems.join("; "),
                ));
            }
            for (value_index, value) in values.iter().enumerate() {
                for problem in label_value(value) {
                    problems.push(SelectorProblem::invalid(
                        format!("{at}.values[{value_index}]"),
                        value,
                        problem,
                    ));
                }
            }
            if let Some(operator) = operator {
                let mut values = values.to_vec();
                values.sort_unstable();
                requirements.push(Requirement {
                    key: expression.key.clone(),
                    operator,
                    values,
                });
            }
        }
        if problems.is_empty() {
            Ok(Self::sorted(requirements))
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::labels;
    use super::*;

    fn api_selector(value: serde_json::Value) -> metav1::LabelSelector {
        match serde_json::from_value(value) {
            Ok(selector) => selector,
            Err(error) => panic!("test selector does not decode: {error}"),
        }
    }

    #[test]
    fn api_selectors_convert_to_the_selector_kubectl_shows() {
        let selector = api_selector(serde_json::json!({
            "matchLabels": {"app": "kubia"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["web", "api"]},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "release", "operator": "Exists"}
            ]
        }));
        let converted = LabelSelector::from_api(&selector);
        assert_eq!(
            converted.as_ref().map(ToString::to_string),
            Ok("app=kubia,!canary,env notin (prod),release,tier in (api,web)".to_string())
        );
        let converted = converted.unwrap_or_default();
        let pod = labels(&[("app", "kubia"), ("tier", "web"), ("release", "1")]);
        assert!(converted.matches(&pod));
        assert!(!converted.matches(&labels(&[("app", "kubia")])));
    }

    #[test]
    fn repeated_values_and_keys_print_as_given_like_kubectl() {
        let selector = api_selector(serde_json::json!({
            "matchLabels": {"tier": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["b", "a", "b"]},
                {"key": "app", "operator": "Exists"}
            ]
        }));
        assert_eq!(
            LabelSelector::from_api(&selector).map(|s| s.to_string()),
            Ok("app,tier=web,tier in (a,b,b)".to_string())
        );
    }

    #[test]
    fn an_empty_api_selector_matches_everything() {
        let converted = LabelSelector::from_api(&metav1::LabelSelector::default());
        assert_eq!(
            converted.as_ref().map(LabelSelector::is_everything),
            Ok(true)
        );
        assert_eq!(
            converted.map(|s| s.matches(&labels(&[("a", "b")]))),
            Ok(true)
        );
    }

    #[test]
    fn a_nil_api_selector_matches_nothing_and_an_empty_one_everything() {
        let pod = labels(&[("app", "web")]);
        let nil = LabelSelector::from_optional_api(None).unwrap_or_default();
        assert!(!nil.matches(&pod));
        assert!(!nil.matches_labels(None));
        assert!(!nil.is_everything());
        let empty = metav1::LabelSelector::default();
        let empty = LabelSelector::from_optional_api(Some(&empty)).unwrap_or(nil);
        assert!(empty.matches(&pod));
        assert!(empty.matches_labels(None));
    }

    #[test]
    fn api_selector_problems_name_their_field_below_the_selector() {
        let selector = api_selector(serde_json::json!({
            "matchLabels": {"ok": "-bad"},
            "matchExpressions": [
                {"key": "a/b/c", "operator": "Exists"},
                {"key": "zone", "operator": "NotIn"},
                {"key": "gpu", "operator": "DoesNotExist", "values": ["x"]},
                {"key": "tier", "operator": "Lt", "values": ["2", "bad value"]}
            ]
        }));
        let problems = LabelSelector::from_api(&selector).err().unwrap_or_default();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "matchLabels",
                "matchExpressions[0].key",
                "matchExpressions[1].values",
                "matchExpressions[2].values",
                "matchExpressions[3].operator",
                "matchExpressions[3].values[1]",
            ],
            "{problems:#?}"
        );
        let invalid = |value: &str| ProblemKind::Invalid {
            value: value.to_string(),
        };
        assert_eq!(problems[0].kind, invalid("-bad"));
        assert_eq!(problems[1].kind, invalid("a/b/c"));
        assert!(problems[1]
            .detail
            .starts_with("a qualified name must consist of"));
        assert_eq!(problems[2].kind, ProblemKind::Required);
        assert_eq!(problems[3].kind, ProblemKind::Forbidden);
        assert_eq!(problems[4].kind, invalid("Lt"));
        assert_eq!(problems[4].detail, "not a valid selector operator");
        assert_eq!(problems[5].kind, invalid("bad value"));
    }
}
