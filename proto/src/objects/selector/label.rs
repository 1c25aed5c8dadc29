//! A parsed label selector: requirements on an object's labels, all of which must hold.
//! Built from the text form by `parse.rs` and from a `metav1.LabelSelector` by `object.rs`;
//! here it matches labels and prints its canonical text.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::objects::names::{label_value, qualified_name};

/// A parsed label selector: requirements that must all hold. The empty selector matches
/// everything; [`LabelSelector::nothing`] (a nil `metav1.LabelSelector`) matches nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    /// Sorted by key, so equal selectors print (and compare) the same.
    requirements: Vec<Requirement>,
    /// Selects no object whatever the requirements: apimachinery's `labels.Nothing()`.
    nothing: bool,
}

/// One `key <operator> values` clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Requirement {
    pub(super) key: String,
    pub(super) operator: Operator,
    /// Sorted; one value for `=`, `==`, `!=`, `>`, `<`; none for `exists` and `!`. The text
    /// form has no repeats; a `metav1.LabelSelector` keeps its own (kubectl prints them).
    pub(super) values: Vec<String>,
}

/// How a requirement compares the label's value with its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operator {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

impl LabelSelector {
    /// The selector that selects no object, as apimachinery's `LabelSelectorAsSelector` makes
    /// of a nil `metav1.LabelSelector` (a workload without a selector owns nothing). It prints
    /// as the empty string, as `labels.Nothing()` does.
    pub fn nothing() -> Self {
        Self {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// The selector of a plain label map, as a ReplicationController's or a Service's
    /// `selector: {app: web}` (apimachinery's `SelectorFromSet`): `key=value` for each pair.
    /// An empty map selects everything; the pairs are not checked (the API server did).
    pub fn from_set(set: &BTreeMap<String, String>) -> Self {
        let requirements = set
            .iter()
            .map(|(key, value)| Requirement {
                key: key.clone(),
                operator: Operator::Equals,
                values: vec![value.clone()],
            })
            .collect();
        Self::sorted(requirements)
    }

    /// Whether the selector has no requirements, and so selects every object.
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty() && !self.nothing
    }

    /// Whether an object with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether an object with these labels is selected, where `None` (an object's
    /// `metadata.labels` left out) is no labels at all.
    pub fn matches_labels(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        match labels {
            Some(labels) => self.matches(labels),
            None => self.matches(&BTreeMap::new()),
        }
    }

    /// The selector of these requirements, sorted by key (stably: equal keys keep their
    /// order, as in apimachinery).
    pub(super) fn sorted(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Self {
            requirements,
            nothing: false,
        }
    }
}

impl fmt::Display for LabelSelector {
    /// The canonical text form (`app=web,tier in (a,b)`), which parses back to an equal
    /// selector; the empty selector prints as the empty string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, requirement) in self.requirements.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

impl Requirement {
    /// Checks the key, the number of values the operator needs, and each value.
    pub(super) fn new(
        key: String,
        operator: Operator,
        values: BTreeSet<String>,
    ) -> Result<Self, String> {
        let key_problems = qualified_name(&key);
        if !key_problems.is_empty() {
            return Err(format!(
                "invalid label key {key:?}: {}",
                key_problems.join("; ")
            ));
        }
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                return Err(format!(
                    "values for '{}' must not be empty",
                    operator.symbol()
                ));
            }
            Operator::GreaterThan | Operator::LessThan => {
                for value in &values {
                    if value.parse::<i64>().is_err() {
                        return Err(format!(
                            "the value for '{}' must be an integer, found {value:?} for key \
                             {key:?}",
                            operator.symbol()
                        ));
                    }
                }
            }
            _ => {}
        }
        for value in &values {
            let problems = label_value(value);
            if !problems.is_empty() {
                return Err(format!(
                    "invalid label value {value:?} for key {key:?}: {}",
                    problems.join("; ")
                ));
            }
        }
        Ok(Self {
            key,
            operator,
            values: values.into_iter().collect(),
        })
    }

    /// Whether labels meet this clause.
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        let listed = |v: &String| self.values.contains(v);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => value.is_some_and(listed),
            // Kubernetes: an object without the label is "not equal" to any value.
            Operator::NotEquals | Operator::NotIn => !value.is_some_and(listed),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let bound = self.values.first().and_then(|b| b.parse::<i64>().ok());
                let actual = value.and_then(|v| v.parse::<i64>().ok());
                match (actual, bound) {
                    (Some(actual), Some(bound)) if self.operator == Operator::GreaterThan => {
                        actual > bound
                    }
                    (Some(actual), Some(bound)) => actual < bound,
                    _ => false,
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.operator {
            Operator::Exists => f.write_str(&self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::In | Operator::NotIn => write!(
                f,
                "{} {} ({})",
                self.key,
                self.operator.symbol(),
                self.values.join(",")
            ),
            _ => write!(
                f,
                "{}{}{}",
                self.key,
                self.operator.symbol(),
                self.values.join(",")
            ),
        }
    }
}

impl Operator {
    /// How the text form spells the operator.
    pub(super) fn symbol(self) -> &'static str {
        match self {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirement_matching_uses_the_key_it_names() {
        let requirement = Requirement::new("a".into(), Operator::Exists, BTreeSet::new());
        let labels = BTreeMap::from([("a".to_string(), String::new())]);
        assert!(requirement.is_ok_and(|r| r.matches(&labels)));
    }
}
