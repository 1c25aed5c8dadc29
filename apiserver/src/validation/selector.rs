//! Label selectors (`app=web,tier in (a,b),!canary`) and field selectors
//! (`spec.nodeName=n1,status.phase!=Running`): parsing and matching.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;

use super::FieldError;

/// Why a selector string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse selector {selector:?}: {reason}")]
pub struct SelectorError {
    pub selector: String,
    pub reason: String,
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let _ = text;
        Ok(Self::default())
    }

    /// A workload's `spec.selector`; problems are reported at `path`.
    pub fn from_api(selector: &metav1::LabelSelector, path: &str) -> Result<Self, Vec<FieldError>> {
        let _ = (selector, path);
        Ok(Self::default())
    }

    pub fn is_everything(&self) -> bool {
        true
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let _ = labels;
        true
    }
}

/// A parsed field selector: `field=value`, `field==value`, `field!=value`, comma-separated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {}

impl FieldSelector {
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let _ = text;
        Ok(Self::default())
    }

    pub fn is_everything(&self) -> bool {
        true
    }

    /// The field paths the selector names (the registry refuses unsupported ones).
    pub fn fields(&self) -> Vec<&str> {
        Vec::new()
    }

    /// Whether an object matches; `value_of` gives a field's value (a missing field is "").
    pub fn matches(&self, value_of: impl Fn(&str) -> String) -> bool {
        let _ = value_of;
        true
    }
}
