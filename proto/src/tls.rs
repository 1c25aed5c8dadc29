//! TLS for Rudder's connections: the cluster CA and the certificates it issues (rcgen), the
//! rustls configuration a server presents (its certificate, replaceable while it serves, so
//! it is renewed before it expires without a restart; a client certificate asked for but
//! not required — the front door decides what an anonymous caller may do), and who a client
//! certificate names (its common name the user, its organization the group, as Kubernetes
//! reads them). No IO: the files are the CLI's. Over 700 lines (a fifth of them tests),
//! kept whole: issuing certificates and reading them share the CA's types; dialing with
//! them, and checking who answers, is `dial.rs`.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

pub use crate::authn::{Caller, Subject};

/// How long the CA is valid: ten years, as kubeadm's.
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long the certificates it issues are valid: a year, as kubeadm's.
pub const CERTIFICATE_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// The user-name prefix of a node's credential (`system:node:NAME`).
pub const NODE_USER_PREFIX: &str = "system:node:";
/// The group of every node's credential.
pub const NODES_GROUP: &str = "system:nodes";
/// The group of masters (and the cluster's administrators).
pub const MASTERS_GROUP: &str = "system:masters";

/// How far back a certificate is valid from, for clocks a little behind the issuer's.
const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("making a certificate: {0}")]
    Issue(#[from] rcgen::Error),
    #[error("{what} is not PEM: {why}")]
    Pem { what: &'static str, why: String },
    #[error("the certificate and key do not go together, or the key is of no known type: {0}")]
    Key(rustls::Error),
    #[error("the CA certificate cannot verify clients: {0}")]
    Verifier(String),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The cluster's certificate authority: its certificate and key, as PEM.
#[derive(Clone)]
pub struct ClusterCa {
    cert_pem: String,
    key_pem: String,
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A client's (an operator, a controller, a node's kubelet).
    Client,
    /// A master's: it serves, and dials its peers as a client.
    ServerAndClient,
}

/// A certificate to issue.
#[derive(Debug, Clone)]
pub struct CertificateRequest {
    /// The user a client certificate names (a master's: its member name).
    pub common_name: String,
    /// The group (Kubernetes reads the organization so).
    pub organization: Option<String>,
    /// DNS names and IP addresses a server certificate is valid for.
    pub alternative_names: Vec<String>,
    pub usage: Usage,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// A certificate and its key, as PEM.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub not_after: SystemTime,
}

impl ClusterCa {
    /// A new CA named `name`, valid for [`CA_LIFETIME`].
    pub fn generate(name: &str) -> Result<Self, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = named(name, None);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = (now - CLOCK_SKEW).into();
        params.not_after = (now + CA_LIFETIME).into();
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A CA from its files' contents; checked to sign.
    pub fn from_pem(cert_pem: String, key_pem: String) -> Result<Self, TlsError> {
        let ca = Self { cert_pem, key_pem };
        ca.issuer()?;
        Ok(ca)
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// When the CA expires: nothing it signs is valid after.
    pub fn not_after(&self) -> SystemTime {
        // A CA that parsed when loaded always has one; else the lifetime it was made with.
        validity(&self.cert_pem)
            .map(|(_, until)| until)
            .unwrap_or_else(|| SystemTime::now() + CA_LIFETIME)
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The certificate `request` asks for, with a key of its own, signed by this CA.
    pub fn issue(&self, request: &CertificateRequest) -> Result<Issued, TlsError> {
        let params = certificate_params(request)?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer()?)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_after: request.not_after,
        })
    }

    /// The certificate `request` asks for, for the key of `csr_pem` (a certificate signing
    /// request, which must be signed by that key): only the key is taken from it; names,
    /// usage and lifetime are `request`'s.
    pub fn sign_request(
        &self,
        csr_pem: &str,
        request: &CertificateRequest,
    ) -> Result<String, TlsError> {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
        csr.params = certificate_params(request)?;
        Ok(csr.signed_by(&self.issuer()?)?.pem())
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, TlsError> {
        let key = KeyPair::from_pem(&self.key_pem).map_err(|error| TlsError::Pem {
            what: "the CA key",
            why: error.to_string(),
        })?;
        Ok(Issuer::from_ca_cert_pem(&self.cert_pem, key)?)
    }
}

/// Never the key.
impl fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterCa")
    }
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl CertificateRequest {
    /// A client certificate for `user` in `group`, valid from now for [`CERTIFICATE_LIFETIME`].
    pub fn client(user: &str, group: Option<&str>) -> Self {
        let now = SystemTime::now();
        Self {
            common_name: user.to_string(),
            organization: group.map(str::to_string),
            alternative_names: Vec::new(),
            usage: Usage::Client,
            not_before: now - CLOCK_SKEW,
            not_after: now + CERTIFICATE_LIFETIME,
        }
    }

    /// A node's certificate: `system:node:NAME` in `system:nodes` as a client, and as the
    /// server of its kubelet port, which masters dial by the node's name (a DNS name, as
    /// node names are). Valid from now for [`CERTIFICATE_LIFETIME`].
    pub fn node(name: &str) -> Self {
        Self::node_for(name, CERTIFICATE_LIFETIME)
    }

    /// A node's certificate valid from now for `lifetime`.
    pub fn node_for(name: &str, lifetime: Duration) -> Self {
        let now = SystemTime::now();
        Self {
            common_name: format!("{NODE_USER_PREFIX}{name}"),
            organization: Some(NODES_GROUP.into()),
            alternative_names: vec![name.to_string()],
            usage: Usage::ServerAndClient,
            not_before: now - CLOCK_SKEW,
            not_after: now + lifetime,
        }
    }

    /// A master's certificate: `name`, valid for `alternative_names`, from now for `lifetime`.
    pub fn master(name: &str, alternative_names: Vec<String>, lifetime: Duration) -> Self {
        let now = SystemTime::now();
        Self {
            common_name: name.to_string(),
            organization: Some(MASTERS_GROUP.into()),
            alternative_names,
            usage: Usage::ServerAndClient,
            not_before: now - CLOCK_SKEW,
            not_after: now + lifetime,
        }
    }
}

/// What a certificate for `request` says.
fn certificate_params(request: &CertificateRequest) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(request.alternative_names.clone())?;
    params.distinguished_name = named(&request.common_name, request.organization.as_deref());
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = match request.usage {
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::ServerAndClient => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    params.use_authority_key_identifier_extension = true;
    params.not_before = request.not_before.into();
    params.not_after = request.not_after.into();
    Ok(params)
}

/// A certificate signing request for the key `key_pem` (what a joining node sends, keeping
/// the key). The names in it are `common_name`'s only; the CA decides what it signs.
pub fn signing_request(key_pem: &str, common_name: &str) -> Result<String, TlsError> {
    let key = KeyPair::from_pem(key_pem).map_err(|error| TlsError::Pem {
        what: "the key",
        why: error.to_string(),
    })?;
    let mut params = CertificateParams::default();
    params.distinguished_name = named(common_name, None);
    Ok(params.serialize_request(&key)?.pem()?)
}

/// When the first certificate in `pem` is valid: from, until.
pub fn validity(pem: &str) -> Option<(SystemTime, SystemTime)> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    let (_, certificate) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let at = |seconds: i64| {
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?))
    };
    let validity = certificate.validity();
    Some((
        at(validity.not_before.timestamp())?,
        at(validity.not_after.timestamp())?,
    ))
}

/// When the first certificate in `pem` is due for renewal: two thirds into its life, counted
/// from when it was issued (its `not_before` is backdated for clocks behind the issuer's).
pub fn renewal_due(pem: &str) -> Option<SystemTime> {
    let (from, until) = validity(pem)?;
    let issued = (from + CLOCK_SKEW).min(until);
    Some(issued + until.duration_since(issued).unwrap_or_default() * 2 / 3)
}

/// Checks that `csr_pem` is a certificate signing request signed by the key it names.
pub fn check_signing_request(csr_pem: &str) -> Result<(), TlsError> {
    rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
    Ok(())
}

impl Issued {
    /// This certificate followed by the CA's in the chain it is served with, so a client
    /// that pins the CA by its fingerprint (a joiner) can find it.
    pub fn chained_with(&self, ca_pem: &str) -> Issued {
        Issued {
            cert_pem: format!("{}\n{}", self.cert_pem.trim_end(), ca_pem),
            ..self.clone()
        }
    }
}

fn named(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    if let Some(organization) = organization {
        name.push(DnType::OrganizationName, organization);
    }
    name.push(DnType::CommonName, common_name);
    name
}

fn certificates(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            what,
            why: error.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::Pem {
            what,
            why: "no CERTIFICATE block".into(),
        });
    }
    Ok(certificates)
}

fn certified_key(issued: &Issued) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = certificates(&issued.cert_pem, "the certificate")?;
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).map_err(|error| {
        TlsError::Pem {
            what: "the key",
            why: error.to_string(),
        }
    })?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key).map_err(TlsError::Key)?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(TlsError::Key)?;
    Ok(Arc::new(certified))
}

/// The certificate a server presents, replaceable while it serves.
#[derive(Debug, Clone)]
pub struct ServingCertificate {
    current: Arc<RwLock<Arc<CertifiedKey>>>,
}

impl ServingCertificate {
    pub fn new(issued: &Issued) -> Result<Self, TlsError> {
        Ok(Self {
            current: Arc::new(RwLock::new(certified_key(issued)?)),
        })
    }

    /// Presents `issued` from the next handshake on.
    pub fn replace(&self, issued: &Issued) -> Result<(), TlsError> {
        let certified = certified_key(issued)?;
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = certified;
        Ok(())
    }
}

impl ResolvesServerCert for ServingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
        )
    }
}

/// A server's TLS: `certificate`, and client certificates verified against `ca_pem` when
/// a client presents one (one from another CA, or expired, fails the handshake). Speaks h2
/// and HTTP/1.1.
pub fn server_config(
    ca_pem: &str,
    certificate: &ServingCertificate,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    serving(ca_pem, certificate, ClientCertificate::Optional)
}

/// Whether a server takes callers without a certificate (and what it speaks).
enum ClientCertificate {
    Optional,
    /// Required, over h2 only.
    Required,
    /// Required, over h2 or HTTP/1.1.
    RequiredAnyProtocol,
}

fn serving(
    ca_pem: &str,
    certificate: &ServingCertificate,
    clients: ClientCertificate,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca_pem)?), provider.clone());
    let (verifier, protocols) = match clients {
        ClientCertificate::Optional => (
            verifier.allow_unauthenticated(),
            vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        ),
        ClientCertificate::Required => (verifier, vec![b"h2".to_vec()]),
        ClientCertificate::RequiredAnyProtocol => {
            (verifier, vec![b"h2".to_vec(), b"http/1.1".to_vec()])
        }
    };
    let verifier = verifier
        .build()
        .map_err(|error| TlsError::Verifier(error.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(certificate.clone()));
    config.alpn_protocols = protocols;
    Ok(Arc::new(config))
}

/// What a client trusts and presents: the cluster CA, and its own certificate (none: it
/// calls anonymously, which a master allows only for health checks).
#[derive(Clone)]
pub struct ClientTls {
    pub ca_pem: String,
    pub identity: Option<Issued>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("identity", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

/// TLS between masters (the peer port): each serves with its certificate and requires the
/// caller's, which must be a master's ([`is_master_certificate`]: a member, not an operator
/// or a node, may speak Raft).
#[derive(Clone)]
pub struct PeerTls {
    pub server: Arc<rustls::ServerConfig>,
    /// What this master presents when it dials the others.
    pub client: ClientTls,
}

impl fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PeerTls")
    }
}

/// The peer port's server TLS: `certificate`, and a certificate from the CA required of
/// every caller. Speaks h2.
pub fn peer_server_config(
    ca_pem: &str,
    certificate: &ServingCertificate,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    serving(ca_pem, certificate, ClientCertificate::Required)
}

/// A node's kubelet port's server TLS: the node's certificate, and a certificate from the
/// CA required of every caller (the port keeps only masters'). Speaks h2 (the masters'
/// gRPC) and HTTP/1.1 (a `/metrics` scrape with a master's certificate).
pub fn kubelet_server_config(
    ca_pem: &str,
    certificate: &ServingCertificate,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    serving(ca_pem, certificate, ClientCertificate::RequiredAnyProtocol)
}

/// Whether `der` is a master's certificate: one the CA issued for serving too, in
/// `system:masters` (operators' certificates are for clients only; nodes', which serve
/// their kubelet port, are in `system:nodes`).
pub fn is_master_certificate(der: &CertificateDer<'_>) -> bool {
    let Ok((_, certificate)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return false;
    };
    let serves = matches!(
        certificate.extended_key_usage(),
        Ok(Some(usage)) if usage.value.server_auth
    );
    let master = certificate
        .subject()
        .iter_organization()
        .any(|o| o.as_str().ok() == Some(MASTERS_GROUP));
    serves && master
}

pub(crate) fn roots(ca_pem: &str) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in certificates(ca_pem, "the CA certificate")? {
        roots
            .add(ca)
            .map_err(|error| TlsError::Verifier(error.to_string()))?;
    }
    Ok(roots)
}

/// A new ECDSA P-256 private key (PKCS#8 PEM): what signs ServiceAccount tokens.
pub fn new_signing_key_pem() -> Result<String, TlsError> {
    Ok(KeyPair::generate()?.serialize_pem())
}

/// The public key (SPKI PEM) of the private key `private_pem`.
pub fn public_key_pem(private_pem: &str) -> Result<String, TlsError> {
    let key = KeyPair::from_pem(private_pem).map_err(|error| TlsError::Pem {
        what: "the signing key",
        why: error.to_string(),
    })?;
    Ok(key.public_key_pem())
}

/// What is wrong with `pem` as node `node`'s certificate (`None`: nothing): it must name
/// `system:node:NODE` in `system:nodes`, serve, and be valid for the node's name, which
/// masters dial it by.
pub fn node_certificate_problem(pem: &str, node: &str) -> Option<String> {
    let Ok(der) = CertificateDer::from_pem_slice(pem.as_bytes()) else {
        return Some("it is not a PEM certificate".into());
    };
    let Ok((_, certificate)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return Some("it does not parse".into());
    };
    let subject = subject_of(&der).unwrap_or_default();
    let wanted = format!("{NODE_USER_PREFIX}{node}");
    if subject.user != wanted || !subject.groups.iter().any(|g| g == NODES_GROUP) {
        return Some(format!(
            "it names {:?} in {:?}, not {wanted:?} in {NODES_GROUP:?}",
            subject.user, subject.groups
        ));
    }
    let serves = matches!(
        certificate.extended_key_usage(),
        Ok(Some(usage)) if usage.value.server_auth
    );
    let names_node = certificate
        .subject_alternative_name()
        .ok()
        .flatten()
        .is_some_and(|names| {
            names.value.general_names.iter().any(|name| {
                matches!(name, x509_parser::extensions::GeneralName::DNSName(dns) if *dns == node)
            })
        });
    (!serves || !names_node).then(|| {
        "it is a client's only (issued before nodes served TLS): it cannot serve the kubelet \
         port"
            .into()
    })
}

/// Who the client certificate `der` names (the handshake verified it), or `None` when it
/// does not parse or names no one.
pub fn subject_of(der: &CertificateDer<'_>) -> Option<Subject> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let subject = certificate.subject();
    let user = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    if user.is_empty() {
        return None;
    }
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(Subject {
        user,
        uid: String::new(),
        groups,
        ..Subject::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_name_their_subject_and_chain_to_the_ca() {
        let ca = ClusterCa::generate("rudder-ca").unwrap();
        let issued = ca
            .issue(&CertificateRequest::client("alice", Some("developers")))
            .unwrap();
        let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        assert_eq!(
            subject_of(&der),
            Some(Subject {
                user: "alice".into(),
                uid: String::new(),
                groups: vec!["developers".into()],
                ..Subject::default()
            })
        );
        // Verified by rustls' own WebPKI verifier against the CA, as a server does.
        let ca_der = CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_der).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        let now = rustls::pki_types::UnixTime::now();
        verifier.verify_client_cert(&der, &[], now).unwrap();

        assert!(
            !is_master_certificate(&der),
            "a client's certificate is not a master's"
        );
        let master = ca
            .issue(&CertificateRequest::master(
                "m1",
                vec!["127.0.0.1".into()],
                CA_LIFETIME,
            ))
            .unwrap();
        let master = CertificateDer::from_pem_slice(master.cert_pem.as_bytes()).unwrap();
        assert!(is_master_certificate(&master));
        // A node's serves its kubelet port, and is not a master's.
        let node = ca.issue(&CertificateRequest::node("n1")).unwrap();
        let node = CertificateDer::from_pem_slice(node.cert_pem.as_bytes()).unwrap();
        assert!(!is_master_certificate(&node));
        assert_eq!(
            subject_of(&node).map(|s| (s.user, s.groups)),
            Some(("system:node:n1".into(), vec![NODES_GROUP.into()]))
        );
        let node_pem = ca.issue(&CertificateRequest::node("n1")).unwrap().cert_pem;
        assert_eq!(node_certificate_problem(&node_pem, "n1"), None);
        let other = node_certificate_problem(&node_pem, "n2").unwrap();
        assert!(other.contains("system:node:n2"), "{other}");
        let client_only = ca
            .issue(&CertificateRequest::client(
                "system:node:n1",
                Some(NODES_GROUP),
            ))
            .unwrap()
            .cert_pem;
        let problem = node_certificate_problem(&client_only, "n1").unwrap();
        assert!(problem.contains("client's only"), "{problem}");

        let other = ClusterCa::generate("another").unwrap();
        let stranger = other
            .issue(&CertificateRequest::client("mallory", None))
            .unwrap();
        let stranger = CertificateDer::from_pem_slice(stranger.cert_pem.as_bytes()).unwrap();
        assert!(verifier.verify_client_cert(&stranger, &[], now).is_err());
    }

    #[test]
    fn a_ca_reloaded_from_its_pem_issues_and_a_served_certificate_is_replaceable() {
        let ca = ClusterCa::generate("rudder-ca").unwrap();
        let again = ClusterCa::from_pem(ca.cert_pem().into(), ca.key_pem().into()).unwrap();
        let lives = again.not_after().duration_since(SystemTime::now()).unwrap();
        assert!(lives > CA_LIFETIME - Duration::from_secs(60) && lives <= CA_LIFETIME);
        let first = again
            .issue(&CertificateRequest::master(
                "m1",
                vec!["localhost".into(), "127.0.0.1".into()],
                Duration::from_secs(3600),
            ))
            .unwrap();
        let serving = ServingCertificate::new(&first).unwrap();
        server_config(ca.cert_pem(), &serving).unwrap();
        let second = again
            .issue(&CertificateRequest::master(
                "m1",
                vec![],
                Duration::from_secs(60),
            ))
            .unwrap();
        serving.replace(&second).unwrap();
        assert!(ClusterCa::from_pem(ca.cert_pem().into(), "not a key".into()).is_err());
        let mismatched = Issued {
            key_pem: second.key_pem.clone(),
            ..first
        };
        assert!(matches!(
            ServingCertificate::new(&mismatched),
            Err(TlsError::Key(_))
        ));
    }

    #[test]
    fn a_short_certificate_is_due_two_thirds_into_its_life_from_its_issue() {
        let ca = ClusterCa::generate("rudder-ca").unwrap();
        let issued = ca
            .issue(&CertificateRequest::node_for("n1", Duration::from_secs(12)))
            .unwrap();
        // Not backdated by the clock skew allowance: that would make it due at once.
        let due = renewal_due(&issued.cert_pem).unwrap();
        let from_now = due.duration_since(SystemTime::now()).unwrap();
        assert!(
            from_now > Duration::from_secs(6) && from_now <= Duration::from_secs(8),
            "{from_now:?}"
        );
    }
}
