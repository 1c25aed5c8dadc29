//! Join tokens: what `rudder token create` prints and a new master or node presents once
//! to join a secured cluster. A token is `R1::<CA fingerprint>::<id>.<secret>`: the SHA-256
//! of the cluster CA's certificate (so the joiner can tell the real cluster from any server
//! it dials, before it trusts anything), then a credential in kubeadm's bootstrap-token
//! shape (`[a-z0-9]{6}.[a-z0-9]{16}`). The cluster keeps each token as Kubernetes keeps a
//! bootstrap token: a Secret `kube-system/bootstrap-token-<id>` of type
//! `bootstrap.kubernetes.io/token`, saying what it may join as and until when — but only
//! the SHA-256 of its secret (`token-secret-sha256`), never the secret: a master token
//! yields the CA's key, so whoever may read Secrets there must not be able to use one.
//! Pure: the masters' side is `rudder-apiserver`'s `join`, the joiner's the CLI's.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// What every token starts with: the format's version.
const VERSION: &str = "R1";
/// The namespace tokens are kept in.
pub const TOKEN_NAMESPACE: &str = "kube-system";
/// The type of a token's Secret (Kubernetes' bootstrap tokens').
pub const TOKEN_SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// The prefix of a token's Secret's name; the token's id follows.
const SECRET_PREFIX: &str = "bootstrap-token-";
const ID_LENGTH: usize = 6;
const SECRET_LENGTH: usize = 16;
/// The characters of an id and a secret.
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// What a token lets its holder join as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Master,
    Node,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Node => "node",
        }
    }

    /// The key of its Secret that says a token is for this role.
    fn usage_key(self) -> &'static str {
        match self {
            Role::Master => "usage-join-master",
            Role::Node => "usage-join-node",
        }
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "master" => Ok(Role::Master),
            "node" => Ok(Role::Node),
            other => Err(format!(
                "{other:?} is not a role to join as: master or node"
            )),
        }
    }
}

/// A join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the cluster CA's certificate (DER).
    pub ca_fingerprint: [u8; 32],
    pub id: String,
    pub secret: String,
}

impl JoinToken {
    /// A new token for the cluster whose CA certificate is `ca_pem`.
    pub fn generate(ca_pem: &str) -> Result<Self, String> {
        Ok(Self {
            ca_fingerprint: ca_fingerprint(ca_pem)?,
            id: random_text(ID_LENGTH),
            secret: random_text(SECRET_LENGTH),
        })
    }

    /// The name of the Secret this token is kept in.
    pub fn secret_name(&self) -> String {
        secret_name_of(&self.id)
    }
}

/// The name of the Secret the token with id `id` is kept in.
pub fn secret_name_of(id: &str) -> String {
    format!("{SECRET_PREFIX}{id}")
}

/// Never the secret.
impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The token as printed and presented.
impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{VERSION}::{}::{}.{}",
            hex(&self.ca_fingerprint),
            self.id,
            self.secret
        )
    }
}

impl FromStr for JoinToken {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        const SHAPE: &str =
            "a join token is R1::<64 hex digits>::<6 of a-z0-9>.<16 of a-z0-9>, as `rudder \
             token create` prints it";
        let parts: Vec<&str> = text.trim().split("::").collect();
        let [version, fingerprint, credential] = parts[..] else {
            return Err(format!("not a join token: {SHAPE}"));
        };
        if version != VERSION {
            return Err(format!(
                "a join token of version {version:?}, which this rudder does not read: {SHAPE}"
            ));
        }
        let ca_fingerprint = unhex(fingerprint)
            .ok_or_else(|| format!("the CA fingerprint of the join token is not right: {SHAPE}"))?;
        let Some((id, secret)) = credential.split_once('.') else {
            return Err(format!("the join token has no <id>.<secret>: {SHAPE}"));
        };
        let fits = |text: &str, length: usize| {
            text.len() == length && text.bytes().all(|b| ALPHABET.contains(&b))
        };
        if !fits(id, ID_LENGTH) || !fits(secret, SECRET_LENGTH) {
            return Err(format!(
                "the join token's <id>.<secret> is not right: {SHAPE}"
            ));
        }
        Ok(Self {
            ca_fingerprint,
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }
}

/// SHA-256 of the first certificate in `ca_pem` (its DER), as a token names it.
pub fn ca_fingerprint(ca_pem: &str) -> Result<[u8; 32], String> {
    let der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|error| format!("the CA certificate is not PEM: {error}"))?;
    Ok(fingerprint_of(der.as_ref()))
}

/// SHA-256 of a certificate's DER.
pub fn fingerprint_of(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// The Secret that keeps `token`, for joining as `role`, valid until `expires` (RFC 3339
/// in the Secret, as Kubernetes writes a bootstrap token's expiration).
pub fn token_secret(
    token: &JoinToken,
    role: Role,
    expires: SystemTime,
    description: &str,
) -> Result<Value, String> {
    let expiration = jiff::Timestamp::try_from(expires)
        .map_err(|error| format!("the token's expiry: {error}"))?
        .round(jiff::Unit::Second)
        .map_err(|error| format!("the token's expiry: {error}"))?;
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let mut data = json!({
        "token-id": encode(&token.id),
        SECRET_DIGEST: encode(&hex(&Sha256::digest(token.secret.as_bytes()))),
        "expiration": encode(&expiration.to_string()),
        role.usage_key(): encode("true"),
    });
    if !description.is_empty() {
        data["description"] = json!(encode(description));
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": token.secret_name(), "namespace": TOKEN_NAMESPACE },
        "type": TOKEN_SECRET_TYPE,
        "data": data,
    }))
}

/// The key of a token's Secret holding the SHA-256 of its secret (hex).
const SECRET_DIGEST: &str = "token-secret-sha256";

/// Whether `object` is a token Secret for joining masters (in `data` or `stringData`):
/// what only the cluster's administrators (`system:masters`) may make or change.
pub fn joins_masters(object: &Value) -> bool {
    let key = Role::Master.usage_key();
    object["type"].as_str() == Some(TOKEN_SECRET_TYPE)
        && (object["data"].get(key).is_some() || object["stringData"].get(key).is_some())
}

/// Why a token was not taken. A joiner is told only that it was not (never which of these),
/// so a guesser learns nothing; the master logs which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No such token (never made, used already, or deleted).
    Unknown,
    /// Its Secret says something else: a wrong secret, or not a token Secret at all.
    Mismatch,
    Expired,
    /// It is for joining as the other role.
    NotFor(Role),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unknown => f.write_str("no such token (never made, or used already)"),
            Refusal::Mismatch => f.write_str("the secret is not the token's"),
            Refusal::Expired => f.write_str("the token has expired"),
            Refusal::NotFor(role) => {
                write!(f, "the token is not for joining as a {}", role.as_str())
            }
        }
    }
}

/// What a token Secret says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptToken {
    pub id: String,
    pub roles: Vec<Role>,
    /// None: it never expires (a Secret made by hand without `expiration`).
    pub expires: Option<jiff::Timestamp>,
    pub description: String,
}

/// Reads a token Secret (its `data` base64, as the API returns it); None when it is not
/// one.
pub fn kept_token(secret: &Value) -> Option<KeptToken> {
    if secret["type"].as_str() != Some(TOKEN_SECRET_TYPE) {
        return None;
    }
    let field = |key: &str| -> Option<String> {
        let encoded = secret["data"][key].as_str()?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        String::from_utf8(bytes).ok()
    };
    let expires = match field("expiration") {
        Some(text) => Some(text.parse::<jiff::Timestamp>().ok()?),
        None => None,
    };
    Some(KeptToken {
        id: field("token-id")?,
        roles: [Role::Master, Role::Node]
            .into_iter()
            .filter(|role| field(role.usage_key()).as_deref() == Some("true"))
            .collect(),
        expires,
        description: field("description").unwrap_or_default(),
    })
}

/// Whether the Secret `secret` lets `presented` join as `role` at `now`.
pub fn admits(
    secret: &Value,
    presented: &JoinToken,
    role: Role,
    now: SystemTime,
) -> Result<(), Refusal> {
    let kept = kept_token(secret).ok_or(Refusal::Mismatch)?;
    // Being deleted (a finalizer holds it): taken already, whatever its finalizers do.
    let finalizers = secret["metadata"]["finalizers"].as_array();
    if !secret["metadata"]["deletionTimestamp"].is_null()
        || finalizers.is_some_and(|finalizers| !finalizers.is_empty())
    {
        return Err(Refusal::Unknown);
    }
    let digest = secret["data"][SECRET_DIGEST]
        .as_str()
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
        })
        .ok_or(Refusal::Mismatch)?;
    // Digests compared: the time taken tells nothing of the secret.
    let presented_digest = hex(&Sha256::digest(presented.secret.as_bytes()));
    if kept.id != presented.id || digest != presented_digest.as_bytes() {
        return Err(Refusal::Mismatch);
    }
    if let Some(expires) = kept.expires {
        let now = jiff::Timestamp::try_from(now).map_err(|_| Refusal::Expired)?;
        if now >= expires {
            return Err(Refusal::Expired);
        }
    }
    if !kept.roles.contains(&role) {
        return Err(Refusal::NotFor(role));
    }
    Ok(())
}

fn random_text(length: usize) -> String {
    use rand::Rng;
    let mut random = rand::rng();
    (0..length)
        .map(|_| char::from(ALPHABET[random.random_range(0..ALPHABET.len())]))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::ClusterCa;
    use std::time::Duration;

    fn ca_pem() -> String {
        ClusterCa::generate("test").unwrap().cert_pem().to_string()
    }

    #[test]
    fn a_token_reads_back_as_printed_and_names_its_ca() {
        let ca = ca_pem();
        let token = JoinToken::generate(&ca).unwrap();
        let printed = token.to_string();
        assert!(printed.starts_with("R1::"), "{printed}");
        let read: JoinToken = printed.parse().unwrap();
        assert_eq!(read, token);
        assert_eq!(read.ca_fingerprint, ca_fingerprint(&ca).unwrap());
        assert_ne!(read.ca_fingerprint, ca_fingerprint(&ca_pem()).unwrap());
        assert_eq!(token.secret_name(), format!("bootstrap-token-{}", token.id));
        assert!(!format!("{token:?}").contains(&token.secret));
    }

    #[test]
    fn a_malformed_token_is_refused_saying_what_a_token_looks_like() {
        let good = JoinToken::generate(&ca_pem()).unwrap().to_string();
        for bad in [
            "",
            "abcdef.0123456789abcdef",
            &good.replacen("R1", "R9", 1),
            &good.replacen("::", "::zz", 1),
            &good[..good.len() - 1],
            &good.replace('.', "-"),
            &format!("{}A", &good[..good.len() - 1]),
        ] {
            let refused = bad.parse::<JoinToken>().unwrap_err();
            assert!(refused.contains("R1::<64 hex digits>"), "{bad}: {refused}");
        }
    }

    #[test]
    fn a_kept_token_admits_only_its_secret_for_its_role_until_it_expires() {
        let token = JoinToken::generate(&ca_pem()).unwrap();
        let now = SystemTime::now();
        let expires = now + Duration::from_secs(3600);
        let secret = token_secret(&token, Role::Node, expires, "worker 7").unwrap();
        assert_eq!(secret["metadata"]["name"], token.secret_name());
        let kept = kept_token(&secret).unwrap();
        assert_eq!(kept.roles, [Role::Node]);
        assert_eq!(kept.description, "worker 7");
        assert_eq!(admits(&secret, &token, Role::Node, now), Ok(()));
        assert_eq!(
            admits(&secret, &token, Role::Master, now),
            Err(Refusal::NotFor(Role::Master))
        );
        let later = expires + Duration::from_secs(1);
        assert_eq!(
            admits(&secret, &token, Role::Node, later),
            Err(Refusal::Expired)
        );
        let guessed = JoinToken {
            secret: "0000000000000000".into(),
            ..token.clone()
        };
        assert_eq!(
            admits(&secret, &guessed, Role::Node, now),
            Err(Refusal::Mismatch)
        );
        // Only a digest is kept, never the secret.
        let encoded = base64::engine::general_purpose::STANDARD.encode(&token.secret);
        assert!(!secret.to_string().contains(&encoded));
        assert!(!joins_masters(&secret));
        let master = token_secret(&token, Role::Master, expires, "").unwrap();
        assert!(joins_masters(&master));
        let mut held = secret.clone();
        held["metadata"]["finalizers"] = json!(["example.com/keep"]);
        assert_eq!(
            admits(&held, &token, Role::Node, now),
            Err(Refusal::Unknown)
        );
        let mut not_a_token = secret.clone();
        not_a_token["type"] = json!("Opaque");
        assert_eq!(
            admits(&not_a_token, &token, Role::Node, now),
            Err(Refusal::Mismatch)
        );
    }
}
