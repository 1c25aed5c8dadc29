//! Field selectors (`spec.nodeName=n1,status.phase!=Running`), after apimachinery's
//! `pkg/fields/selector.go`: terms of `field=value`, `field==value` or `field!=value`.

use std::fmt;

use super::error::SelectorError;

/// A parsed field selector: `field=value`, `field==value`, `field!=value`, comma-separated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldTerm {
    field: String,
    /// `!=` rather than `=`/`==`.
    negated: bool,
    /// Unescaped.
    value: String,
}

impl FieldSelector {
    /// Parses the text form kubectl sends (`--field-selector`, `fieldSelector=`). In values,
    /// `\,`, `\=` and `\\` stand for `,`, `=` and `\`; blank text selects everything.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let fail = |reason| SelectorError {
            selector: text.to_string(),
            reason,
        };
        let mut terms = Vec::new();
        for part in split_terms(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let Some((field, operator, raw_value)) = split_term(part) else {
                return Err(fail(format!(
                    "can't understand '{part}': expected field=value, field==value or \
                     field!=value"
                )));
            };
            let field = field.trim();
            if field.is_empty() {
                return Err(fail(format!(
                    "missing field name before '{operator}' in '{part}'"
                )));
            }
            let value = unescape_value(raw_value.trim())
                .map_err(|problem| fail(format!("{problem} in the value of '{part}'")))?;
            terms.push(FieldTerm {
                field: field.to_string(),
                negated: operator == "!=",
                value,
            });
        }
        // apimachinery sorts the terms, which makes the printed form canonical.
        terms.sort_by_cached_key(ToString::to_string);
        Ok(Self { terms })
    }

    /// Whether the selector has no terms, and so selects every object.
    pub fn is_everything(&self) -> bool {
        self.terms.is_empty()
    }

    /// The field paths the selector names (the registry refuses unsupported ones).
    pub fn fields(&self) -> Vec<&str> {
        let mut fields: Vec<&str> = Vec::new();
        for term in &self.terms {
            if !fields.contains(&term.field.as_str()) {
                fields.push(&term.field);
            }
        }
        fields
    }

    /// The value `field` must equal for an object to match (a `field=value` term), if any:
    /// what a watch cache indexes its watchers by (apimachinery's `RequiresExactMatch`).
    pub fn required(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|term| term.field == field && !term.negated)
            .map(|term| term.value.as_str())
    }

    /// Whether an object matches; `value_of` gives a field's value (a missing field is "").
    pub fn matches(&self, value_of: impl Fn(&str) -> String) -> bool {
        self.terms
            .iter()
            .all(|term| (value_of(&term.field) == term.value) != term.negated)
    }
}

impl fmt::Display for FieldSelector {
    /// The canonical text form (`spec.nodeName=n1,status.phase!=Running`), values escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, term) in self.terms.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{term}")?;
        }
        Ok(())
    }
}

impl fmt::Display for FieldTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let operator = if self.negated { "!=" } else { "=" };
        write!(f, "{}{operator}", self.field)?;
        for c in self.value.chars() {
            if matches!(c, '\\' | ',' | '=') {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// Splits at commas, except escaped ones (`\,`), which stay in the term with their backslash.
fn split_terms(text: &str) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&text[start..at]);
            start = at + 1;
        }
    }
    terms.push(&text[start..]);
    terms
}

/// Splits at the first operator; field names have no escapes, so the first one is it.
fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    for (at, _) in term.char_indices() {
        let rest = &term[at..];
        // `==` before `=` so that `a==b` does not leave `=b` as the value.
        for operator in ["!=", "==", "="] {
            if let Some(value) = rest.strip_prefix(operator) {
                return Some((&term[..at], operator, value));
            }
        }
    }
    None
}

/// Undoes `\\`, `\,` and `\=`; any other escape, a bare `=` or a trailing `\` is refused.
fn unescape_value(raw: &str) -> Result<String, String> {
    let mut value = String::with_capacity(raw.len());
    let mut escaped = false;
    for c in raw.chars() {
        if escaped {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(format!("invalid escape sequence '\\{c}'"));
            }
            value.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if matches!(c, ',' | '=') {
            return Err(format!("unescaped '{c}' (write '\\{c}')"));
        } else {
            value.push(c);
        }
    }
    if escaped {
        return Err("invalid escape sequence '\\' at the end".to_string());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_selectors_parse_match_and_print() {
        let selector = FieldSelector::parse("status.phase!=Running,spec.nodeName=n1");
        let selector = selector.unwrap_or_default();
        assert_eq!(
            selector.to_string(),
            "spec.nodeName=n1,status.phase!=Running"
        );
        assert_eq!(selector.fields(), ["spec.nodeName", "status.phase"]);
        let object = |node: &'static str, phase: &'static str| {
            move |path: &str| match path {
                "spec.nodeName" => node.to_string(),
                "status.phase" => phase.to_string(),
                _ => String::new(),
            }
        };
        assert!(selector.matches(object("n1", "Pending")));
        assert!(!selector.matches(object("n1", "Running")));
        assert!(!selector.matches(object("n2", "Pending")));
        // A missing field reads as "", so `=` with an empty value selects it.
        let unscheduled = FieldSelector::parse("spec.nodeName==").unwrap_or_default();
        assert!(unscheduled.matches(object("", "Pending")));
        assert!(!unscheduled.matches(object("n1", "Pending")));
        assert_eq!(unscheduled.to_string(), "spec.nodeName=");
    }

    #[test]
    fn field_selector_values_unescape_and_print_escaped() {
        let selector = FieldSelector::parse(r"metadata.name=a\,b\=c\\d,x=y");
        let selector = selector.unwrap_or_default();
        assert_eq!(selector.fields(), ["metadata.name", "x"]);
        assert!(selector.matches(|path| match path {
            "metadata.name" => r"a,b=c\d".to_string(),
            _ => "y".to_string(),
        }));
        assert_eq!(selector.to_string(), r"metadata.name=a\,b\=c\\d,x=y");
        assert_eq!(FieldSelector::parse(&selector.to_string()), Ok(selector));
    }

    #[test]
    fn blank_field_selectors_select_everything() {
        for text in ["", ",", " "] {
            let selector = FieldSelector::parse(text);
            assert_eq!(selector.map(|s| s.is_everything()), Ok(true), "{text:?}");
        }
        assert_eq!(
            FieldSelector::parse(" a = b ").map(|s| s.to_string()),
            Ok("a=b".into())
        );
    }

    #[test]
    fn invalid_field_selectors_name_the_offending_term() {
        let cases = [
            ("spec.nodeName", "can't understand 'spec.nodeName'"),
            ("a=b,c", "can't understand 'c'"),
            ("=x", "missing field name"),
            ("a=b=c", "unescaped '='"),
            ("a===b", "unescaped '='"),
            (r"a=b\x", r"invalid escape sequence '\x'"),
            (r"a=b\", "at the end"),
        ];
        for (text, needle) in cases {
            match FieldSelector::parse(text) {
                Ok(selector) => panic!("{text:?} should not parse, got {selector:?}"),
                Err(error) => assert!(
                    error.reason.contains(needle),
                    "reason for {text:?} should mention {needle:?}: {}",
                    error.reason
                ),
            }
        }
    }

    #[test]
    fn field_selectors_name_each_field_once() {
        let selector = FieldSelector::parse("a=1,a!=2,b=3").unwrap_or_default();
        assert_eq!(selector.fields(), ["a", "b"]);
        assert!(FieldSelector::default().matches(|_| String::new()));
    }

    #[test]
    fn only_an_equality_term_requires_a_value() {
        let selector = FieldSelector::parse("spec.nodeName==n1,status.phase!=Failed").unwrap();
        assert_eq!(selector.required("spec.nodeName"), Some("n1"));
        assert_eq!(selector.required("status.phase"), None);
        assert_eq!(selector.required("metadata.name"), None);
    }
}
