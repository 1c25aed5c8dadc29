//! What the selector tests share, and the tests of matching (label.rs), which are written
//! with selectors parsed from text: this file stands above both label.rs and parse.rs, so
//! neither needs to import the other for its tests.

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

/// Matching (label.rs).
mod matching {
    use super::super::label::*;
    use super::*;

    #[test]
    fn label_selectors_match_with_kubernetes_semantics() {
        let web = labels(&[("app", "web"), ("tier", "front"), ("gen", "5")]);
        let bare = labels(&[]);
        let cases = [
            ("", true, true),
            ("app=web", true, false),
            ("app==web", true, false),
            ("app=db", false, false),
            // `!=` and `notin` hold when the label is missing.
            ("app!=db", true, true),
            ("app!=web", false, true),
            ("tier in (front,back)", true, false),
            ("tier notin (front)", false, true),
            ("tier notin (back)", true, true),
            ("app", true, false),
            ("!app", false, true),
            ("app=web,!canary", true, false),
            ("app=web,tier=back", false, false),
            ("gen>4", true, false),
            ("gen>5", false, false),
            ("gen<6", true, false),
            ("app=", false, false),
        ];
        for (text, on_web, on_bare) in cases {
            let selector = parsed(text);
            assert_eq!(selector.matches(&web), on_web, "{text:?} on web");
            assert_eq!(selector.matches(&bare), on_bare, "{text:?} on no labels");
        }
        assert!(parsed("x=").matches(&labels(&[("x", "")])));
        assert!(!parsed("gen>1").matches(&labels(&[("gen", "many")])));
    }

    #[test]
    fn only_the_empty_selector_is_everything() {
        assert!(parsed("").is_everything());
        assert!(LabelSelector::default().is_everything());
        assert!(!parsed("a").is_everything());
        assert!(!LabelSelector::nothing().is_everything());
    }

    #[test]
    fn nothing_matches_no_labels_at_all() {
        let nothing = LabelSelector::nothing();
        assert!(!nothing.matches(&labels(&[])));
        assert!(!nothing.matches(&labels(&[("app", "web")])));
        assert!(!nothing.matches_labels(None));
        assert_eq!(nothing.to_string(), "");
    }

    #[test]
    fn a_label_map_selects_objects_carrying_every_pair() {
        let set = labels(&[("tier", "front"), ("app", "web")]);
        let selector = LabelSelector::from_set(&set);
        assert_eq!(selector, parsed("app=web,tier=front"));
        assert!(selector.matches(&labels(&[("app", "web"), ("tier", "front"), ("x", "y")])));
        assert!(!selector.matches(&labels(&[("app", "web")])));
        assert!(!selector.matches_labels(None));
        assert!(LabelSelector::from_set(&labels(&[])).matches_labels(None));
    }

    #[test]
    fn missing_labels_are_no_labels() {
        assert!(parsed("!canary").matches_labels(None));
        assert!(parsed("").matches_labels(None));
        assert!(!parsed("app").matches_labels(None));
    }
}
