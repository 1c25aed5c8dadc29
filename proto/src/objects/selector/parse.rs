//! The label selector's text form (`app=web,tier in (a,b),!canary`), parsed by recursive
//! descent over `lexer.rs`'s tokens, after apimachinery's `pkg/labels/selector.go`.

use std::collections::BTreeSet;

use super::error::SelectorError;
use super::label::{LabelSelector, Operator, Requirement};
use super::lexer::{lex, Lexeme, Mode, Token};

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

#[cfg(test)]
mod tests {
    use super::super::testing::parsed;
    use super::*;

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
    fn requirement_lexer_keeps_multibyte_text_whole() {
        let error = LabelSelector::parse("ключ=x").err();
        assert!(error.is_some_and(|e| e.reason.contains("\"ключ\"")));
    }
}
