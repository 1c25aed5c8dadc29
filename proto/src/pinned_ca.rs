//! The TLS a joiner speaks before it trusts anything: it knows only the fingerprint of the
//! cluster CA (from its join token). A master serves its certificate followed by the CA's
//! ([`crate::tls::Issued::chained_with`]); [`PinnedCa`] takes the chain only if the CA in
//! it has that fingerprint and signed a master's certificate (not a node's: the CA signs
//! those too) for the name dialed, and keeps the CA. The joiner's call goes over that very
//! connection. A server that is not the cluster's
//! fails the handshake: the token is never sent to it. No IO: the CLI dials.

use std::sync::Arc;

use base64::Engine;

use crate::dial::{RoleVerifier, Server, Trust};

/// A server verifier pinned to the CA whose certificate has a fingerprint, taking a
/// master's certificate only.
#[derive(Debug)]
pub struct PinnedCa {
    verifier: Arc<RoleVerifier>,
}

impl PinnedCa {
    pub fn new(fingerprint: [u8; 32]) -> Arc<Self> {
        let trust = Trust::Pinned {
            fingerprint,
            found: std::sync::Mutex::new(None),
        };
        Arc::new(Self {
            verifier: Arc::new(RoleVerifier::new(trust, Server::Master)),
        })
    }

    /// A client configuration verifying servers so (no client certificate), speaking h2
    /// (gRPC).
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports rustls' default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(self.verifier.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(config)
    }

    /// The CA's certificate (PEM), once a handshake found it.
    pub fn ca_pem(&self) -> Option<String> {
        self.verifier.found().map(|der| pem_of(der.as_ref()))
    }
}

/// A certificate's DER as PEM.
fn pem_of(der: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join_token::ca_fingerprint;
    use crate::tls::{CertificateRequest, ClusterCa};
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::Error;
    use std::time::Duration;

    fn chain(ca: &ClusterCa, name: &str, with_ca: bool) -> Vec<CertificateDer<'static>> {
        let issued = ca
            .issue(&CertificateRequest::master(
                "m1",
                vec![name.into()],
                Duration::from_secs(3600),
            ))
            .unwrap();
        let issued = if with_ca {
            issued.chained_with(ca.cert_pem())
        } else {
            issued
        };
        CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn verify(pinned: &PinnedCa, chain: &[CertificateDer<'_>], name: &str) -> Result<(), Error> {
        let name = ServerName::try_from(name.to_string()).unwrap();
        pinned
            .verifier
            .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    #[test]
    fn only_a_chain_through_the_pinned_ca_for_the_name_dialed_is_taken() {
        let ca = ClusterCa::generate("cluster").unwrap();
        let pinned = PinnedCa::new(ca_fingerprint(ca.cert_pem()).unwrap());
        // No CA in the chain, another CA, another name: refused, nothing kept.
        let refused = verify(&pinned, &chain(&ca, "127.0.0.1", false), "127.0.0.1");
        assert!(refused
            .unwrap_err()
            .to_string()
            .contains("join token names"));
        let other = ClusterCa::generate("other").unwrap();
        assert!(verify(&pinned, &chain(&other, "127.0.0.1", true), "127.0.0.1").is_err());
        assert!(verify(&pinned, &chain(&ca, "m1.example", true), "127.0.0.1").is_err());
        assert_eq!(pinned.ca_pem(), None);
        // A node's serving certificate from the same CA, for the name dialed: not a master.
        let node = ca
            .issue(&CertificateRequest::node("127.0.0.1"))
            .unwrap()
            .chained_with(ca.cert_pem());
        let node: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(node.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let refused = verify(&pinned, &node, "127.0.0.1").unwrap_err();
        assert!(refused.to_string().contains("not a master's"), "{refused}");
        assert_eq!(pinned.ca_pem(), None);
        // The cluster's: taken, and its CA kept as PEM.
        verify(&pinned, &chain(&ca, "127.0.0.1", true), "127.0.0.1").unwrap();
        assert_eq!(
            ca_fingerprint(&pinned.ca_pem().unwrap()).unwrap(),
            ca_fingerprint(ca.cert_pem()).unwrap()
        );
    }

    #[test]
    fn a_signed_request_keeps_the_requesters_key_and_the_cas_names() {
        let ca = ClusterCa::generate("cluster").unwrap();
        let key = crate::tls::new_signing_key_pem().unwrap();
        let request = crate::tls::signing_request(&key, "system:node:evil").unwrap();
        crate::tls::check_signing_request(&request).unwrap();
        assert!(crate::tls::check_signing_request("not a request").is_err());
        let cert = ca
            .sign_request(&request, &CertificateRequest::node("n1"))
            .unwrap();
        assert_eq!(crate::tls::node_certificate_problem(&cert, "n1"), None);
        // The certificate goes with the requester's key.
        crate::tls::ServingCertificate::new(&crate::tls::Issued {
            cert_pem: cert,
            key_pem: key,
            not_after: std::time::SystemTime::UNIX_EPOCH,
        })
        .unwrap();
        assert!(ca
            .sign_request("not a request", &CertificateRequest::node("n1"))
            .is_err());
    }
}
