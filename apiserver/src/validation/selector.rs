//! Label selectors (`app=web,tier in (a,b),!canary`) and field selectors
//! (`spec.nodeName=n1,status.phase!=Running`): parsing and matching.
//!
//! Both follow apimachinery (`pkg/labels/selector.go`, `pkg/fields/selector.go`), so a
//! selector kubectl sends is accepted, matches the same objects and prints the same here:
//!
//! ```text
//! "tier in (b,a), app = web"  --parse-->  [app = web, tier in {a,b}]  --Display-->
//! "app=web,tier in (a,b)"                 (requirements sorted by key, values sorted)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;

use super::FieldError;

/// Why a selector string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse selector {selector:?}: {reason}")]
pub struct SelectorError {
    /// The selector as given.
    pub selector: String,
    /// What is wrong and where: the offending token or key, and what was expected.
    pub reason: String,
}

/// A parsed label selector: requirements that must all hold. The empty selector matches
/// everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    /// Sorted by key, so equal selectors print (and compare) the same.
    requirements: Vec<Requirement>,
}

/// One `key <operator> values` clause.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    operator: Operator,
    /// Sorted and without repeats; one value for `=`, `==`, `!=`, `>`, `<`; none for
    /// `exists` and `!`.
    values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
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
    /// Parses the text form kubectl sends (`-l`, `labelSelector=`); blank text selects
    /// everything.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let fail = |reason| SelectorError {
            selector: text.to_string(),
            reason,
        };
        let mut parser = Parser::new(text);
        let mut requirements = Vec::new();
        loop {
            let next = parser.peek(Mode::Values);
            match next.token {
                Token::Identifier | Token::Not => {
                    requirements.push(parser.requirement().map_err(fail)?);
                    let after = parser.take(Mode::Values);
                    match after.token {
                        Token::End => break,
                        Token::Comma => {
                            let next = parser.peek(Mode::Values);
                            if !matches!(next.token, Token::Identifier | Token::Not) {
                                return Err(fail(next.found("identifier after ','")));
                            }
                        }
                        _ => return Err(fail(after.found("',' or end of string"))),
                    }
                }
                Token::End => break,
                _ => return Err(fail(next.found("'!', identifier or end of string"))),
            }
        }
        Ok(Self::sorted(requirements))
    }

    /// A workload's `spec.selector`; problems are reported at `path`.
    pub fn from_api(selector: &metav1::LabelSelector, path: &str) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut requirements = Vec::new();
        let labels_path = format!("{path}.matchLabels");
        for (key, value) in selector.match_labels.iter().flatten() {
            let key_problems = qualified_name_problems(key);
            if !key_problems.is_empty() {
                errors.push(FieldError::invalid(
                    &labels_path,
                    key,
                    key_problems.join("; "),
                ));
            }
            for problem in label_value_problems(value) {
                errors.push(FieldError::invalid(&labels_path, value, problem));
            }
            requirements.push(Requirement {
                key: key.clone(),
                operator: Operator::Equals,
                values: vec![value.clone()],
            });
        }
        for (index, expression) in selector.match_expressions.iter().flatten().enumerate() {
            let at = format!("{path}.matchExpressions[{index}]");
            let values = expression.values.as_deref().unwrap_or_default();
            let operator = match expression.operator.as_str() {
                "In" => Some(Operator::In),
                "NotIn" => Some(Operator::NotIn),
                "Exists" => Some(Operator::Exists),
                "DoesNotExist" => Some(Operator::DoesNotExist),
                other => {
                    errors.push(FieldError::invalid(
                        format!("{at}.operator"),
                        other,
                        "not a valid selector operator",
                    ));
                    None
                }
            };
            match operator {
                Some(Operator::In | Operator::NotIn) if values.is_empty() => {
                    errors.push(FieldError::required(
                        format!("{at}.values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
                Some(Operator::Exists | Operator::DoesNotExist) if !values.is_empty() => {
                    errors.push(FieldError::forbidden(
                        format!("{at}.values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
                _ => {}
            }
            let key_problems = qualified_name_problems(&expression.key);
            if !key_problems.is_empty() {
                errors.push(FieldError::invalid(
                    format!("{at}.key"),
                    &expression.key,
                    key_problems.join("; "),
                ));
            }
            for (value_index, value) in values.iter().enumerate() {
                for problem in label_value_problems(value) {
                    errors.push(FieldError::invalid(
                        format!("{at}.values[{value_index}]"),
                        value,
                        problem,
                    ));
                }
            }
            if let Some(operator) = operator {
                let values: BTreeSet<&String> = values.iter().collect();
                requirements.push(Requirement {
                    key: expression.key.clone(),
                    operator,
                    values: values.into_iter().cloned().collect(),
                });
            }
        }
        if errors.is_empty() {
            Ok(Self::sorted(requirements))
        } else {
            Err(errors)
        }
    }

    /// Whether the selector has no requirements, and so selects every object.
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether an object with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    fn sorted(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Self { requirements }
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
    fn new(key: String, operator: Operator, values: BTreeSet<String>) -> Result<Self, String> {
        let key_problems = qualified_name_problems(&key);
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
            let problems = label_value_problems(value);
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
    fn symbol(self) -> &'static str {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    End,
    OpenPar,
    ClosePar,
    Comma,
    Not,
    Equals,
    DoubleEquals,
    NotEquals,
    Greater,
    Less,
    In,
    NotIn,
    Identifier,
}

/// One token with its text and where it starts (1-based, in characters) for messages.
#[derive(Debug, Clone, Copy)]
struct Lexeme<'a> {
    token: Token,
    text: &'a str,
    column: usize,
}

impl Lexeme<'_> {
    /// "found X, expected: Y", naming the token and where it is.
    fn found(&self, expected: &str) -> String {
        match self.token {
            Token::End => format!("found end of string, expected: {expected}"),
            _ => format!(
                "found '{}', expected: {expected} (at column {})",
                self.text, self.column
            ),
        }
    }
}

/// Whether `in` and `notin` are operators (after a key) or plain words (a key or a value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    KeyAndOperator,
    Values,
}

/// `=`, `!`, `(`, `)`, `,`, `>`, `<` end an identifier even without whitespace.
fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn lex(text: &str) -> Vec<Lexeme<'_>> {
    let mut lexemes = Vec::new();
    let mut chars = text.char_indices().enumerate().peekable();
    while let Some((column, (start, c))) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        let (token, end) = if is_special(c) {
            let two = text.get(start..start + 2);
            match two {
                Some("==") | Some("!=") => {
                    chars.next();
                    let token = if two == Some("==") {
                        Token::DoubleEquals
                    } else {
                        Token::NotEquals
                    };
                    (token, start + 2)
                }
                _ => {
                    let token = match c {
                        '=' => Token::Equals,
                        '!' => Token::Not,
                        '(' => Token::OpenPar,
                        ')' => Token::ClosePar,
                        ',' => Token::Comma,
                        '>' => Token::Greater,
                        _ => Token::Less,
                    };
                    (token, start + c.len_utf8())
                }
            }
        } else {
            let mut end = start + c.len_utf8();
            while let Some((_, (at, next))) = chars.peek().copied() {
                if next.is_whitespace() || is_special(next) {
                    break;
                }
                end = at + next.len_utf8();
                chars.next();
            }
            let token = match &text[start..end] {
                "in" => Token::In,
                "notin" => Token::NotIn,
                _ => Token::Identifier,
            };
            (token, end)
        };
        lexemes.push(Lexeme {
            token,
            text: &text[start..end],
            column: column + 1,
        });
    }
    lexemes.push(Lexeme {
        token: Token::End,
        text: "",
        column: text.chars().count() + 1,
    });
    lexemes
}

/// A recursive-descent parser over the lexemes, after apimachinery's.
struct Parser<'a> {
    lexemes: Vec<Lexeme<'a>>,
    next: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            lexemes: lex(text),
            next: 0,
        }
    }

    fn peek(&self, mode: Mode) -> Lexeme<'a> {
        let last = self.lexemes.len().saturating_sub(1);
        let mut lexeme = self
            .lexemes
            .get(self.next.min(last))
            .copied()
            .unwrap_or(Lexeme {
                token: Token::End,
                text: "",
                column: 0,
            });
        // Keys and values may be spelled `in` or `notin`.
        if mode == Mode::Values && matches!(lexeme.token, Token::In | Token::NotIn) {
            lexeme.token = Token::Identifier;
        }
        lexeme
    }

    fn take(&mut self, mode: Mode) -> Lexeme<'a> {
        let lexeme = self.peek(mode);
        if lexeme.token != Token::End {
            self.next += 1;
        }
        lexeme
    }

    /// `key`, `!key`, `key op value` or `key in|notin (values)`.
    fn requirement(&mut self) -> Result<Requirement, String> {
        let mut key = self.take(Mode::Values);
        let negated = key.token == Token::Not;
        if negated {
            key = self.take(Mode::Values);
        }
        if key.token != Token::Identifier {
            return Err(key.found("identifier"));
        }
        let key_text = key.text.to_string();
        if negated {
            return Requirement::new(key_text, Operator::DoesNotExist, BTreeSet::new());
        }
        if matches!(self.peek(Mode::Values).token, Token::End | Token::Comma) {
            return Requirement::new(key_text, Operator::Exists, BTreeSet::new());
        }
        let op = self.take(Mode::KeyAndOperator);
        let operator = match op.token {
            Token::In => Operator::In,
            Token::NotIn => Operator::NotIn,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::NotEquals => Operator::NotEquals,
            Token::Greater => Operator::GreaterThan,
            Token::Less => Operator::LessThan,
            _ => return Err(op.found("'=', '==', '!=', 'in', 'notin', '>' or '<'")),
        };
        let values = match operator {
            Operator::In | Operator::NotIn => self.value_list(operator)?,
            _ => self.exact_value()?,
        };
        Requirement::new(key_text, operator, values)
    }

    /// `(a,b,c)`; commas with nothing between them stand for the empty value.
    fn value_list(&mut self, operator: Operator) -> Result<BTreeSet<String>, String> {
        let open = self.take(Mode::Values);
        if open.token != Token::OpenPar {
            return Err(open.found("'('"));
        }
        let mut values = BTreeSet::new();
        let first = self.peek(Mode::Values);
        match first.token {
            Token::ClosePar => {
                return Err(format!(
                    "values for '{}' must not be empty (at column {})",
                    operator.symbol(),
                    first.column
                ));
            }
            Token::Identifier | Token::Comma => {}
            _ => return Err(first.found("',', ')' or identifier")),
        }
        loop {
            let lexeme = self.take(Mode::Values);
            match lexeme.token {
                Token::Identifier => {
                    values.insert(lexeme.text.to_string());
                    let next = self.peek(Mode::Values);
                    match next.token {
                        Token::Comma => continue,
                        Token::ClosePar => break,
                        _ => return Err(next.found("',' or ')'")),
                    }
                }
                Token::Comma => {
                    if values.is_empty() {
                        values.insert(String::new());
                    }
                    match self.peek(Mode::Values).token {
                        Token::ClosePar => {
                            values.insert(String::new());
                            break;
                        }
                        Token::Comma => {
                            self.take(Mode::Values);
                            values.insert(String::new());
                        }
                        _ => {}
                    }
                }
                _ => return Err(lexeme.found("',' or identifier")),
            }
        }
        let close = self.take(Mode::Values);
        if close.token != Token::ClosePar {
            return Err(close.found("')'"));
        }
        Ok(values)
    }

    /// The single value after `=`, `==`, `!=`, `>` or `<`; nothing there means "".
    fn exact_value(&mut self) -> Result<BTreeSet<String>, String> {
        if matches!(self.peek(Mode::Values).token, Token::End | Token::Comma) {
            return Ok(BTreeSet::from([String::new()]));
        }
        let value = self.take(Mode::Values);
        if value.token != Token::Identifier {
            return Err(value.found("identifier"));
        }
        Ok(BTreeSet::from([value.text.to_string()]))
    }
}

const QUALIFIED_NAME_MAX: usize = 63;
const LABEL_VALUE_MAX: usize = 63;
const SUBDOMAIN_MAX: usize = 253;

const QUALIFIED_NAME_RULE: &str = "must consist of alphanumeric characters, '-', '_' or '.', \
     and must start and end with an alphanumeric character (e.g. 'MyName', or 'my.name', or \
     '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`: the name part of a key, and a non-empty value.
fn is_name_part(text: &str) -> bool {
    let bytes = text.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Lowercase RFC 1123 labels joined by dots.
fn is_dns1123_subdomain(text: &str) -> bool {
    text.split('.').all(|label| {
        let bytes = label.as_bytes();
        let end_ok =
            |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        end_ok(bytes.first())
            && end_ok(bytes.last())
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
    })
}

/// What is wrong with a label key (`[prefix/]name`), worded like apimachinery's
/// `IsQualifiedName`; empty when the key is valid.
fn qualified_name_problems(key: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let name = match key.split_once('/') {
        None => key,
        Some((_, name)) if name.contains('/') => {
            return vec![format!(
                "a qualified name {QUALIFIED_NAME_RULE} with an optional DNS subdomain prefix \
                 and '/' (e.g. 'example.com/MyName')"
            )];
        }
        Some((prefix, name)) => {
            if prefix.is_empty() {
                problems.push("prefix part must be non-empty".to_string());
            } else {
                if prefix.len() > SUBDOMAIN_MAX {
                    problems.push(format!(
                        "prefix part must be no more than {SUBDOMAIN_MAX} characters"
                    ));
                }
                if !is_dns1123_subdomain(prefix) {
                    problems.push(
                        "prefix part a lowercase RFC 1123 subdomain must consist of lower case \
                         alphanumeric characters, '-' or '.', and must start and end with an \
                         alphanumeric character (e.g. 'example.com')"
                            .to_string(),
                    );
                }
            }
            name
        }
    };
    if name.is_empty() {
        problems.push("name part must be non-empty".to_string());
    } else if name.len() > QUALIFIED_NAME_MAX {
        problems.push(format!(
            "name part must be no more than {QUALIFIED_NAME_MAX} characters"
        ));
    }
    if !is_name_part(name) {
        problems.push(format!("name part {QUALIFIED_NAME_RULE}"));
    }
    problems
}

/// What is wrong with a label value, worded like apimachinery's `IsValidLabelValue`.
fn label_value_problems(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > LABEL_VALUE_MAX {
        problems.push(format!("must be no more than {LABEL_VALUE_MAX} characters"));
    }
    if !value.is_empty() && !is_name_part(value) {
        problems.push(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', \
             '_' or '.', and must start and end with an alphanumeric character (e.g. \
             'MyValue', or 'my_value', or '12345')"
                .to_string(),
        );
    }
    problems
}

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

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parsed(text: &str) -> LabelSelector {
        match LabelSelector::parse(text) {
            Ok(selector) => selector,
            Err(error) => panic!("{text:?} should parse: {error}"),
        }
    }

    #[test]
    fn valid_label_selectors_print_in_canonical_form() {
        let cases = [
            ("", ""),
            ("   ", ""),
            ("app=kubia", "app=kubia"),
            ("app==kubia", "app==kubia"),
            (" app = kubia ", "app=kubia"),
            ("app!=kubia", "app!=kubia"),
            ("tier in (web, api)", "tier in (api,web)"),
            ("tier in(web)", "tier in (web)"),
            ("tier notin (web,web,api)", "tier notin (api,web)"),
            ("canary", "canary"),
            ("!canary", "!canary"),
            ("! canary", "!canary"),
            ("b=1,a=2", "a=2,b=1"),
            ("x=", "x="),
            ("x in (a,)", "x in (,a)"),
            ("x in (,a)", "x in (,a)"),
            ("x in (a,,b)", "x in (,a,b)"),
            ("example.com/app=web", "example.com/app=web"),
            ("in=notin", "in=notin"),
            ("x in (in, notin)", "x in (in,notin)"),
            ("gen>3", "gen>3"),
            ("gen<10", "gen<10"),
            ("a,!b,c=d", "a,!b,c=d"),
        ];
        for (text, canonical) in cases {
            assert_eq!(parsed(text).to_string(), canonical, "printing {text:?}");
        }
    }

    #[test]
    fn printed_selectors_parse_back_to_equal_selectors() {
        for text in [
            "app=kubia",
            "tier in (b,a),!canary,env!=prod,release",
            "x in (,a)",
            "k8s.io/x notin (1,2),y==z,gen>3",
        ] {
            let selector = parsed(text);
            assert_eq!(
                parsed(&selector.to_string()),
                selector,
                "round trip of {text:?}"
            );
        }
    }

    #[test]
    fn invalid_label_selectors_name_the_offending_token() {
        let cases = [
            (")", "')'"),
            ("app=)", "found ')', expected: identifier"),
            ("!)", "found ')', expected: identifier"),
            ("app kubia", "'kubia'"),
            ("app=kubia web", "'web'"),
            ("app=kubia,", "end of string"),
            ("app=kubia,,x", "','"),
            ("x in", "'('"),
            ("x in (a", "end of string"),
            ("x in (a b)", "'b'"),
            ("x in (a=b)", "'='"),
            ("x in ()", "values for 'in' must not be empty"),
            ("x notin ()", "values for 'notin' must not be empty"),
            ("x in (=)", "'='"),
            ("!x=y", "'='"),
            ("Bad_=x", "invalid label key \"Bad_\""),
            ("a/b/c", "invalid label key \"a/b/c\""),
            (
                "UPPER.com/x",
                "invalid label key \"UPPER.com/x\": prefix part",
            ),
            ("/x", "prefix part must be non-empty"),
            ("x/", "name part must be non-empty"),
            ("app=-web", "invalid label value \"-web\" for key \"app\""),
            ("app in (ok,bad-)", "invalid label value \"bad-\""),
            ("gen>three", "\"three\""),
            ("gen>-1", "invalid label value \"-1\""),
            ("a=b)", "found ')', expected: ',' or end of string"),
        ];
        for (text, needle) in cases {
            match LabelSelector::parse(text) {
                Ok(selector) => panic!("{text:?} should not parse, got {selector:?}"),
                Err(error) => {
                    assert_eq!(error.selector, text);
                    assert!(
                        error.reason.contains(needle),
                        "reason for {text:?} should mention {needle:?}: {}",
                        error.reason
                    );
                }
            }
        }
    }

    #[test]
    fn syntax_errors_say_which_column_the_token_is_at() {
        let error = LabelSelector::parse("app=kubia web").err();
        assert_eq!(
            error.map(|e| e.to_string()),
            Some(
                "unable to parse selector \"app=kubia web\": found 'web', expected: ',' or end \
                 of string (at column 11)"
                    .to_string()
            )
        );
    }

    #[test]
    fn overlong_keys_and_values_are_refused() {
        let long = "a".repeat(64);
        let key = LabelSelector::parse(&format!("{long}=x")).err();
        assert!(key.is_some_and(|e| e.reason.contains("no more than 63 characters")));
        let value = LabelSelector::parse(&format!("x={long}")).err();
        assert!(value.is_some_and(|e| e.reason.contains("no more than 63 characters")));
        let ok = "a".repeat(63);
        assert!(LabelSelector::parse(&format!("{ok}={ok}")).is_ok());
    }

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
    }

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
        let converted = LabelSelector::from_api(&selector, "spec.selector");
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
    fn an_empty_api_selector_matches_everything() {
        let converted = LabelSelector::from_api(&metav1::LabelSelector::default(), "spec.selector");
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
    fn api_selector_problems_are_reported_at_their_paths() {
        let selector = api_selector(serde_json::json!({
            "matchLabels": {"Bad Key": "ok", "app": "bad value"},
            "matchExpressions": [
                {"key": "tier", "operator": "In"},
                {"key": "canary", "operator": "Exists", "values": ["yes"]},
                {"key": "x", "operator": "Gt", "values": ["1"]},
                {"key": "-x", "operator": "NotIn", "values": ["ok", "not ok"]}
            ]
        }));
        let errors = LabelSelector::from_api(&selector, "spec.selector")
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
    fn requirement_lexer_keeps_multibyte_text_whole() {
        let error = LabelSelector::parse("ключ=x").err();
        assert!(error.is_some_and(|e| e.reason.contains("\"ключ\"")));
    }

    #[test]
    fn requirement_matching_uses_the_key_it_names() {
        let requirement = Requirement::new("a".into(), Operator::Exists, BTreeSet::new());
        assert!(requirement.is_ok_and(|r| r.matches(&labels(&[("a", "")]))));
    }
}
