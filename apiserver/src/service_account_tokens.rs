//! ServiceAccount tokens: JWTs the masters sign (ES256, with the cluster's
//! `service-account.key`, which every master holds) in Kubernetes' bound-token form, so
//! what reads a Kubernetes token reads these. A token names its ServiceAccount (and its
//! uid), the pod it is bound to if any, who it is for (its audiences: the API's by
//! default) and when it expires.
//!
//! [`TokenKey`] issues them (for the `serviceaccounts/token` subresource) and, as an
//! [`Authenticate`], tells the front door whom a token names: signature, issuer, audience
//! and expiry checked here; that the ServiceAccount and pod still exist is the
//! authorizer's check (it reads the registry), see [`bound_to`].

use std::collections::BTreeMap;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rudder_proto::authn::{Authenticate, Subject};
use serde::{Deserialize, Serialize};

/// Who issues the tokens, and the API's own audience (kube-apiserver's default with
/// kubeadm's `--service-account-issuer`).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The token's id, in the subject's extra (Kubernetes' credential id).
pub const CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";
pub const POD_NAME: &str = "authentication.kubernetes.io/pod-name";
pub const POD_UID: &str = "authentication.kubernetes.io/pod-uid";
/// The shortest and default lives of a requested token (Kubernetes': 10 minutes, 1 hour).
pub const SHORTEST: Duration = Duration::from_secs(600);
pub const DEFAULT_LIFE: Duration = Duration::from_secs(3600);
/// The longest a token may live (Kubernetes sets none by default; a year bounds a leak).
pub const LONGEST: Duration = Duration::from_secs(365 * 24 * 3600);

/// What a token is issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub namespace: String,
    pub account: String,
    pub account_uid: String,
    /// The pod it is bound to: name and uid.
    pub pod: Option<(String, String)>,
    /// Who may accept it (empty: the API).
    pub audiences: Vec<String>,
    pub lifetime: Duration,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Vec<String>,
    exp: i64,
    iat: i64,
    nbf: i64,
    jti: String,
    #[serde(rename = "kubernetes.io")]
    kubernetes: KubernetesClaims,
}

#[derive(Debug, Serialize, Deserialize)]
struct KubernetesClaims {
    namespace: String,
    serviceaccount: Named,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pod: Option<Named>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Named {
    name: String,
    uid: String,
}

/// The user name of a ServiceAccount (`system:serviceaccount:NAMESPACE:NAME`).
pub fn account_user(namespace: &str, account: &str) -> String {
    format!("system:serviceaccount:{namespace}:{account}")
}

/// The key tokens are signed and checked with.
pub struct TokenKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl TokenKey {
    /// The key of a private key's PEM (`service-account.key`).
    pub fn from_pem(private_pem: &str) -> Result<Self, String> {
        let public = rudder_proto::tls::public_key_pem(private_pem).map_err(|e| e.to_string())?;
        Ok(Self {
            encoding: EncodingKey::from_ec_pem(private_pem.as_bytes())
                .map_err(|error| format!("the service-account key: {error}"))?,
            decoding: DecodingKey::from_ec_pem(public.as_bytes())
                .map_err(|error| format!("the service-account key's public half: {error}"))?,
        })
    }

    /// A token for `grant`, issued at `now` (seconds since the epoch), and when it expires.
    pub fn issue(&self, grant: &Grant, now: i64) -> Result<(String, i64), String> {
        let lifetime = i64::try_from(grant.lifetime.as_secs()).unwrap_or(i64::MAX);
        let expires = now.saturating_add(lifetime);
        let audiences = if grant.audiences.is_empty() {
            vec![ISSUER.to_string()]
        } else {
            grant.audiences.clone()
        };
        let claims = Claims {
            iss: ISSUER.into(),
            sub: account_user(&grant.namespace, &grant.account),
            aud: audiences,
            exp: expires,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            kubernetes: KubernetesClaims {
                namespace: grant.namespace.clone(),
                serviceaccount: Named {
                    name: grant.account.clone(),
                    uid: grant.account_uid.clone(),
                },
                pod: grant.pod.as_ref().map(|(name, uid)| Named {
                    name: name.clone(),
                    uid: uid.clone(),
                }),
            },
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.encoding)
            .map_err(|error| format!("signing a token: {error}"))?;
        Ok((token, expires))
    }
}

impl Authenticate for TokenKey {
    /// The ServiceAccount a token this cluster signed names, if it is for the API and has
    /// not expired (a minute's leeway for clocks).
    fn authenticate(&self, token: &str) -> Option<Subject> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .ok()?
            .claims;
        let namespace = claims.kubernetes.namespace;
        let account = claims.kubernetes.serviceaccount;
        if claims.sub != account_user(&namespace, &account.name) {
            return None;
        }
        let mut extra = BTreeMap::from([(
            CREDENTIAL_ID.to_string(),
            vec![format!("JTI={}", claims.jti)],
        )]);
        if let Some(pod) = claims.kubernetes.pod {
            extra.insert(POD_NAME.into(), vec![pod.name]);
            extra.insert(POD_UID.into(), vec![pod.uid]);
        }
        Some(Subject {
            user: claims.sub,
            uid: account.uid,
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
            ],
            extra,
        })
    }
}

/// What a token's subject must still find in the cluster: its ServiceAccount (namespace,
/// name, uid) and the pod it is bound to (name, uid). `None` for a subject no signed token
/// named (a certificate, a token file's line).
pub fn bound_to(subject: &Subject) -> Option<Binding> {
    subject.extra.get(CREDENTIAL_ID)?;
    let rest = subject.user.strip_prefix("system:serviceaccount:")?;
    let (namespace, account) = rest.split_once(':')?;
    let one = |key: &str| {
        subject
            .extra
            .get(key)
            .and_then(|values| values.first())
            .cloned()
    };
    Some(Binding {
        namespace: namespace.to_string(),
        account: account.to_string(),
        account_uid: subject.uid.clone(),
        pod: one(POD_NAME).zip(one(POD_UID)),
    })
}

/// What [`bound_to`] names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub namespace: String,
    pub account: String,
    pub account_uid: String,
    pub pod: Option<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_key() -> TokenKey {
        TokenKey::from_pem(&rudder_proto::tls::new_signing_key_pem().unwrap()).unwrap()
    }

    fn grant() -> Grant {
        Grant {
            namespace: "team".into(),
            account: "robot".into(),
            account_uid: "uid-1".into(),
            pod: Some(("web".into(), "uid-2".into())),
            audiences: Vec::new(),
            lifetime: DEFAULT_LIFE,
        }
    }

    fn now() -> i64 {
        jiff::Timestamp::now().as_second()
    }

    #[test]
    fn a_token_names_its_account_and_pod_and_only_its_signer_reads_it() {
        let key = new_key();
        let (token, expires) = key.issue(&grant(), now()).unwrap();
        assert_eq!(expires - now(), 3600, "an hour, give or take the second");
        let subject = key.authenticate(&token).expect("its signer reads it");
        assert_eq!(subject.user, "system:serviceaccount:team:robot");
        assert_eq!(subject.uid, "uid-1");
        assert_eq!(
            subject.groups,
            ["system:serviceaccounts", "system:serviceaccounts:team"]
        );
        assert_eq!(
            bound_to(&subject),
            Some(Binding {
                namespace: "team".into(),
                account: "robot".into(),
                account_uid: "uid-1".into(),
                pod: Some(("web".into(), "uid-2".into())),
            })
        );
        assert!(new_key().authenticate(&token).is_none(), "another key's");
        let mut tampered = token.clone();
        tampered.insert(tampered.len() - 3, 'x');
        assert!(key.authenticate(&tampered).is_none());
    }

    #[test]
    fn an_expired_token_or_one_for_another_audience_is_not_the_apis() {
        let key = new_key();
        let (old, _) = key.issue(&grant(), now() - 7200).unwrap();
        assert!(key.authenticate(&old).is_none(), "expired an hour ago");
        let vault = Grant {
            audiences: vec!["vault".into()],
            ..grant()
        };
        let (elsewhere, _) = key.issue(&vault, now()).unwrap();
        assert!(key.authenticate(&elsewhere).is_none());
        // A token file's subject is bound to nothing.
        let file = Subject {
            user: "system:serviceaccount:team:robot".into(),
            ..Subject::default()
        };
        assert_eq!(bound_to(&file), None);
    }
}
