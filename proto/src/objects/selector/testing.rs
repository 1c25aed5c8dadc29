//! What the selector tests share.

use std::collections::BTreeMap;

use super::label::LabelSelector;

pub(super) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn parsed(text: &str) -> LabelSelector {
    match LabelSelector::parse(text) {
        Ok(selector) => selector,
        Err(error) => panic!("{text:?} should parse: {error}"),
    }
}
