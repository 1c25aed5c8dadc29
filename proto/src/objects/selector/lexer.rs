//! The label selector's tokens: what `lex` cuts the text into, with each token's column for
//! error messages. Whether `in` and `notin` are operators is the parser's call ([`Mode`]).

/// What a lexeme is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Token {
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
pub(super) struct Lexeme<'a> {
    pub(super) token: Token,
    pub(super) text: &'a str,
    pub(super) column: usize,
}

impl Lexeme<'_> {
    /// "found X, expected: Y", naming the token and where it is.
    pub(super) fn found(&self, expected: &str) -> String {
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
pub(super) enum Mode {
    KeyAndOperator,
    Values,
}

/// `=`, `!`, `(`, `)`, `,`, `>`, `<` end an identifier even without whitespace.
fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

/// The lexemes of `text`, ending with one [`Token::End`].
pub(super) fn lex(text: &str) -> Vec<Lexeme<'_>> {
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
