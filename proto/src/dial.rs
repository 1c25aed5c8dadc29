//! Dialing a master or a node over TLS and checking who answers: a certificate from the
//! cluster CA for the name dialed (webpki), and then the right kind of certificate — a
//! master's when a master is dialed ([`is_master_certificate`]; the CA also signs nodes'
//! certificates, which serve their kubelet ports and must not pass for a master), the
//! node's own (`system:node:NAME` in `system:nodes`) when a node is. tonic's TLS checks only
//! the first, so TLS channels are made here, with a connector of our own (tokio-rustls).

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use tonic::transport::{Channel, Endpoint};

use crate::join_token::fingerprint_of;
use crate::tls::{
    is_master_certificate, roots, subject_of, ClientTls, TlsError, NODES_GROUP, NODE_USER_PREFIX,
};

/// Who the server dialed must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Server {
    Master,
    /// The node of this name (its certificate names it; the address dialed need not).
    Node(String),
}

/// A connection to make: where, with what TLS (none: plaintext), to whom.
pub struct Dial<'a> {
    address: &'a str,
    tls: Option<&'a ClientTls>,
    server: Server,
}

impl<'a> Dial<'a> {
    /// A master's client or peer port at `address` (`host:port`, which its certificate
    /// names).
    pub fn master(address: &'a str, tls: Option<&'a ClientTls>) -> Self {
        Self {
            address,
            tls,
            server: Server::Master,
        }
    }

    /// Node `name`'s kubelet port at `address`.
    pub fn node(address: &'a str, tls: Option<&'a ClientTls>, name: &str) -> Self {
        Self {
            address,
            tls,
            server: Server::Node(name.to_string()),
        }
    }

    /// The endpoint, to set timeouts and keep-alives on before [`Dial::connect`]: always
    /// `http://` (the TLS, if any, is the connector's).
    pub fn endpoint(&self) -> Result<Endpoint, String> {
        Endpoint::from_shared(format!("http://{}", self.address))
            .map_err(|error| format!("bad address {:?}: {error}", self.address))
    }

    /// A channel, connected now.
    pub async fn connect(&self, endpoint: Endpoint) -> Result<Channel, String> {
        let connected = match self.tls {
            None => endpoint.connect().await,
            Some(tls) => endpoint.connect_with_connector(self.connector(tls)?).await,
        };
        connected.map_err(|error| format!("connecting to {}: {}", self.address, causes(&error)))
    }

    /// A channel that connects on its first call.
    pub fn connect_lazy(&self, endpoint: Endpoint) -> Result<Channel, String> {
        Ok(match self.tls {
            None => endpoint.connect_lazy(),
            Some(tls) => endpoint.connect_with_connector_lazy(self.connector(tls)?),
        })
    }

    fn connector(&self, tls: &ClientTls) -> Result<impl TlsConnector, String> {
        let config = client_config(tls, &self.server, b"h2")
            .map_err(|error| format!("TLS for {}: {error}", self.address))?;
        let name = match &self.server {
            Server::Master => host_of(self.address)?,
            Server::Node(node) => node.clone(),
        };
        let server_name = ServerName::try_from(name.clone())
            .map_err(|_| format!("{name:?} is not a host name or address"))?;
        Ok(connector(self.address, server_name, config))
    }
}

/// A TLS connection as a connector hands it to tonic.
pub type TlsIo = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// What tonic takes to connect a channel over our own TLS.
pub trait TlsConnector:
    tower::Service<http::Uri, Response = TlsIo, Error = std::io::Error, Future: Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<T> TlsConnector for T where
    T: tower::Service<http::Uri, Response = TlsIo, Error = std::io::Error, Future: Send + 'static>
        + Clone
        + Send
        + 'static
{
}

/// Connects to `address` and speaks TLS by `config`, expecting `server_name` (whatever URI
/// tonic asks for: the address is this one).
pub fn connector(
    address: &str,
    server_name: ServerName<'static>,
    config: Arc<rustls::ClientConfig>,
) -> impl TlsConnector {
    let address = address.to_string();
    tower::service_fn(move |_: http::Uri| {
        let (config, server_name, address) = (config.clone(), server_name.clone(), address.clone());
        async move {
            let stream = tokio::net::TcpStream::connect(&address).await?;
            stream.set_nodelay(true)?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(server_name, stream)
                .await?;
            Ok(hyper_util::rt::TokioIo::new(tls))
        }
    })
}

/// A rustls client trusting the cluster CA, presenting `tls`'s certificate if it has one,
/// taking only `server`, speaking `protocol` (ALPN).
pub fn client_config(
    tls: &ClientTls,
    server: &Server,
    protocol: &[u8],
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots(&tls.ca_pem)?),
        provider.clone(),
    )
    .build()
    .map_err(|error| TlsError::Verifier(error.to_string()))?;
    let verifier = Arc::new(RoleVerifier::new(Trust::Ca(webpki), server.clone()));
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &tls.identity {
        Some(issued) => {
            let chain = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| TlsError::Pem {
                    what: "the client certificate",
                    why: error.to_string(),
                })?;
            let key =
                PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).map_err(|error| {
                    TlsError::Pem {
                        what: "the client key",
                        why: error.to_string(),
                    }
                })?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![protocol.to_vec()];
    Ok(Arc::new(config))
}

/// A rustls client for HTTP/1.1 requests to a master (a `/metrics` scrape): trusting the
/// cluster CA, taking only a master's certificate, presenting `tls`'s certificate if it
/// has one.
pub fn http1_config(tls: &ClientTls) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    client_config(tls, &Server::Master, b"http/1.1")
}

/// [`http1_config`] with no certificate of its own (for health probes, which a master
/// answers anyone).
pub fn probe_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let anonymous = ClientTls {
        ca_pem: ca_pem.to_string(),
        identity: None,
    };
    http1_config(&anonymous)
}

/// Where a verifier's trust comes from.
#[derive(Debug)]
pub(crate) enum Trust {
    /// The cluster CA, known.
    Ca(Arc<WebPkiServerVerifier>),
    /// The CA whose certificate has this SHA-256 (a joiner's, from its token), found in the
    /// chain the server presents; kept once a server proved it.
    Pinned {
        fingerprint: [u8; 32],
        found: Mutex<Option<CertificateDer<'static>>>,
    },
}

/// webpki's checks against the trusted CA, then the kind of certificate `server` must
/// present.
#[derive(Debug)]
pub(crate) struct RoleVerifier {
    trust: Trust,
    server: Server,
    provider: Arc<CryptoProvider>,
}

impl RoleVerifier {
    pub(crate) fn new(trust: Trust, server: Server) -> Self {
        Self {
            trust,
            server,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }

    /// The CA a pinned verifier found, once a server proved it.
    pub(crate) fn found(&self) -> Option<CertificateDer<'static>> {
        match &self.trust {
            Trust::Pinned { found, .. } => found.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            Trust::Ca(_) => None,
        }
    }
}

impl ServerCertVerifier for RoleVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let verified = match &self.trust {
            Trust::Ca(webpki) => webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            )?,
            Trust::Pinned { fingerprint, .. } => {
                let Some(ca) = intermediates
                    .iter()
                    .find(|certificate| fingerprint_of(certificate.as_ref()) == *fingerprint)
                else {
                    return Err(Error::General(
                        "the server does not present the CA the join token names: it is not \
                         a master of that cluster (or an old one, serving no CA in its chain)"
                            .into(),
                    ));
                };
                let mut roots = RootCertStore::empty();
                roots.add(ca.clone().into_owned())?;
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                    .build()
                    .map_err(|error| Error::General(error.to_string()))?
                    .verify_server_cert(end_entity, &[], server_name, ocsp_response, now)?
            }
        };
        match &self.server {
            Server::Master if !is_master_certificate(end_entity) => {
                return Err(Error::General(
                    "the server's certificate is not a master's (a node's?): refused".into(),
                ))
            }
            Server::Node(node) if !is_nodes_certificate(end_entity, node) => {
                return Err(Error::General(format!(
                    "the server's certificate is not node {node}'s: refused"
                )))
            }
            _ => {}
        }
        if let Trust::Pinned { fingerprint, found } = &self.trust {
            let ca = intermediates
                .iter()
                .find(|certificate| fingerprint_of(certificate.as_ref()) == *fingerprint);
            *found.lock().unwrap_or_else(|p| p.into_inner()) = ca.map(|ca| ca.clone().into_owned());
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Whether `der` names node `node` (`system:node:NODE` in `system:nodes`).
fn is_nodes_certificate(der: &CertificateDer<'_>, node: &str) -> bool {
    subject_of(der).is_some_and(|subject| {
        subject.user.strip_prefix(NODE_USER_PREFIX) == Some(node)
            && subject.groups.iter().any(|group| group == NODES_GROUP)
    })
}

/// The host of `host:port` (an IPv6 address without its brackets).
pub fn host_of(address: &str) -> Result<String, String> {
    if let Ok(socket) = address.parse::<std::net::SocketAddr>() {
        return Ok(socket.ip().to_string());
    }
    match address.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(host.to_string())
        }
        _ => Err(format!("{address:?} is not host:port")),
    }
}

/// An error with its sources, so a refused handshake says why.
pub fn causes(error: &dyn std::error::Error) -> String {
    let mut words = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        words = format!("{words}: {cause}");
        source = cause.source();
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{CertificateRequest, ClusterCa};
    use std::time::Duration;

    fn chain(pem: &str) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn verifier(ca: &ClusterCa, server: Server) -> RoleVerifier {
        let webpki = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots(ca.cert_pem()).unwrap()),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        RoleVerifier::new(Trust::Ca(webpki), server)
    }

    fn verify(verifier: &RoleVerifier, pem: &str, name: &str) -> Result<(), Error> {
        let chain = chain(pem);
        let name = ServerName::try_from(name.to_string()).unwrap();
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    #[test]
    fn a_master_must_present_a_masters_certificate_and_a_node_its_own() {
        let ca = ClusterCa::generate("cluster").unwrap();
        let master = ca
            .issue(&CertificateRequest::master(
                "m1",
                vec!["m1.example".into()],
                Duration::from_secs(3600),
            ))
            .unwrap();
        // A node's certificate for the master's name: the CA signed it, webpki takes it.
        let posing = ca.issue(&CertificateRequest::node("m1.example")).unwrap();
        let node = ca.issue(&CertificateRequest::node("n1")).unwrap();

        let to_master = verifier(&ca, Server::Master);
        verify(&to_master, &master.cert_pem, "m1.example").unwrap();
        let refused = verify(&to_master, &posing.cert_pem, "m1.example").unwrap_err();
        assert!(refused.to_string().contains("not a master's"), "{refused}");

        let to_n1 = verifier(&ca, Server::Node("n1".into()));
        verify(&to_n1, &node.cert_pem, "n1").unwrap();
        assert!(verify(&to_n1, &master.cert_pem, "m1.example").is_err());
        let to_n2 = verifier(&ca, Server::Node("n2".into()));
        assert!(verify(&to_n2, &node.cert_pem, "n1").is_err());
        assert_eq!(host_of("[::1]:2379").unwrap(), "::1");
        assert_eq!(host_of("m1.example:2379").unwrap(), "m1.example");
        assert!(host_of("no-port").is_err());
    }

    #[tokio::test]
    async fn a_channel_to_a_master_refuses_a_node_serving_at_its_address() {
        let ca = ClusterCa::generate("cluster").unwrap();
        // A node's certificate naming the address a master is dialed at.
        let posing = ca.issue(&CertificateRequest::node("127.0.0.1")).unwrap();
        let serving = crate::tls::ServingCertificate::new(&posing).unwrap();
        let config = crate::tls::server_config(ca.cert_pem(), &serving).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = tokio_rustls::TlsAcceptor::from(config).accept(stream).await;
        });
        let tls = ClientTls {
            ca_pem: ca.cert_pem().to_string(),
            identity: None,
        };
        let dial = Dial::master(&address, Some(&tls));
        let refused = dial.connect(dial.endpoint().unwrap()).await.unwrap_err();
        assert!(refused.contains("not a master's"), "{refused}");
        server.await.unwrap();
    }
}
