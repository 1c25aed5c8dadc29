//! Who is calling a master: [`Caller`], as its connection and request tell — a plaintext
//! connection (a master on loopback trusts every caller), a client certificate's subject
//! (`tls.rs` reads it), a bearer token from the master's token file, or no one. Pure.
//!
//! A bearer token is judged by each of a master's [`Authenticate`]s in turn: its token
//! file's, its ServiceAccount tokens' (signed, `rudder-apiserver`'s).
//!
//! The token file is kube-apiserver's `--token-auth-file` format: one
//! `token,user,uid[,"group1,group2"]` per line. Tokens are kept as SHA-256 digests, so the
//! table in memory holds none in clear.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// Who a certificate or token names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subject {
    pub user: String,
    /// The token file's uid, a ServiceAccount's (empty for a certificate).
    pub uid: String,
    pub groups: Vec<String>,
    /// What else the credential says (Kubernetes' `extra`: the pod a ServiceAccount
    /// token is bound to, the token's id).
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The SHA-256 (hex) of a certificate's DER, as [`Subject::presenting`] records it.
pub fn certificate_sha256(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The key of [`Subject::extra`] that holds the SHA-256 (hex) of the client certificate a
/// caller presented: set by the front door only, so it says the caller is a certificate's.
pub const CERTIFICATE_SHA256: &str = "rudder.dev/certificate-sha256";

impl Subject {
    /// This subject, as the holder of the certificate `der` (its SHA-256 in `extra`).
    pub fn presenting(mut self, der: &[u8]) -> Self {
        self.extra.insert(
            CERTIFICATE_SHA256.to_string(),
            vec![certificate_sha256(der)],
        );
        self
    }

    /// The SHA-256 (hex) of the certificate this subject presented, if it presented one.
    pub fn certificate_sha256(&self) -> Option<&str> {
        self.extra
            .get(CERTIFICATE_SHA256)
            .and_then(|values| values.first())
            .map(String::as_str)
    }
}

/// Who a bearer token names, if this authenticator knows it.
pub trait Authenticate: Send + Sync {
    fn authenticate(&self, token: &str) -> Option<Subject>;
}

/// A master's authenticators, asked in turn (its token file's, its ServiceAccount
/// tokens').
#[derive(Clone, Default)]
pub struct Authenticators {
    each: Vec<Arc<dyn Authenticate + Send + Sync + 'static>>,
}

impl Authenticators {
    pub fn new(each: Vec<Arc<dyn Authenticate + Send + Sync + 'static>>) -> Self {
        Self { each }
    }

    /// Who `token` names, by the first authenticator that knows it.
    pub fn subject(&self, token: &str) -> Option<Subject> {
        self.each.iter().find_map(|each| each.authenticate(token))
    }
}

/// Who is calling (a request extension the front door sets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A plaintext connection: a member without TLS serves only loopback, where every
    /// caller is trusted, as before security.
    Plaintext,
    /// A client certificate the cluster CA signed, or a bearer token the master knows.
    Authenticated(Subject),
    /// Neither: it may ask for health, nothing else.
    Anonymous,
}

/// The bearer tokens a master accepts, by digest.
#[derive(Default)]
pub struct BearerTokens {
    by_digest: HashMap<[u8; 32], Subject>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("token file line {line}: {why}")]
pub struct TokenFileError {
    pub line: usize,
    pub why: String,
}

impl BearerTokens {
    /// The tokens of a token file's text.
    pub fn parse(text: &str) -> Result<Self, TokenFileError> {
        let mut by_digest = HashMap::new();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (index, line) in text.lines().enumerate() {
            let error = |why: &str| TokenFileError {
                line: index + 1,
                why: why.to_string(),
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields = csv_fields(line).ok_or_else(|| error("an unclosed quote"))?;
            let [token, user, uid, rest @ ..] = fields.as_slice() else {
                return Err(error("expected token,user,uid[,\"group1,group2\"]"));
            };
            if token.is_empty() || user.is_empty() || uid.is_empty() {
                return Err(error("expected token,user,uid[,\"group1,group2\"]"));
            }
            // The fourth field only, as kube-apiserver reads it.
            let groups = rest
                .first()
                .map(|groups| {
                    groups
                        .split(',')
                        .map(str::trim)
                        .filter(|group| !group.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let subject = Subject {
                user: user.clone(),
                uid: uid.clone(),
                groups,
                ..Subject::default()
            };
            if by_digest.insert(digest(token), subject).is_some() {
                return Err(error("the token is listed twice"));
            }
        }
        Ok(Self { by_digest })
    }

    /// Who `token` names, if it is known.
    pub fn subject(&self, token: &str) -> Option<&Subject> {
        self.by_digest.get(&digest(token))
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

impl Authenticate for BearerTokens {
    fn authenticate(&self, token: &str) -> Option<Subject> {
        self.subject(token).cloned()
    }
}

/// A CSV line's fields: commas separate, double quotes enclose (a doubled quote inside is
/// one quote); `None` for an unclosed quote.
fn csv_fields(line: &str) -> Option<Vec<String>> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut characters = line.chars().peekable();
    while let Some(c) = characters.next() {
        let field = fields.last_mut().expect("one field at least");
        match (c, quoted) {
            ('"', true) if characters.peek() == Some(&'"') => {
                characters.next();
                field.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => field.push(c),
        }
    }
    (!quoted).then(|| fields.into_iter().map(|f| f.trim().to_string()).collect())
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The token of an `Authorization: Bearer TOKEN` header's value.
pub fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_names_users_and_their_groups() {
        let tokens = BearerTokens::parse(
            "# operators\nt0ken-a,alice,1001,\"developers,viewers\"\nt0ken-b,bob,1002\n",
        )
        .unwrap();
        assert_eq!(tokens.len(), 2);
        assert_eq!(
            tokens.subject("t0ken-a"),
            Some(&Subject {
                user: "alice".into(),
                uid: "1001".into(),
                groups: vec!["developers".into(), "viewers".into()],
                ..Subject::default()
            })
        );
        assert_eq!(
            tokens.subject("t0ken-b").unwrap().groups,
            Vec::<String>::new()
        );
        assert_eq!(tokens.subject("wrong"), None);

        // As kube-apiserver reads them: quoted fields, only the fourth field's groups, a
        // byte-order mark.
        let tokens = BearerTokens::parse("\u{feff}\"t1\",\"carol\",3,a,b\r\n").unwrap();
        let carol = tokens.subject("t1").unwrap();
        assert_eq!(
            (carol.user.as_str(), carol.groups.clone()),
            ("carol", vec!["a".into()])
        );
        assert!(BearerTokens::parse("t,\"u,1").is_err());
    }

    #[test]
    fn bad_lines_are_named() {
        let missing = BearerTokens::parse("t,alice").err().unwrap();
        assert_eq!(missing.line, 1);
        let twice = BearerTokens::parse("t,a,1\nt,b,2").err().unwrap();
        assert_eq!(
            twice.to_string(),
            "token file line 2: the token is listed twice"
        );
    }

    #[test]
    fn only_bearer_authorizations_carry_a_token() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic dXNlcg=="), None);
        assert_eq!(bearer("Bearer "), None);
    }
}
