//! How `rudder server` is secured: the keyring it seals Secrets with, and TLS on its client
//! port from the cluster's PKI directory (`--pki`, made by `rudder ca init`): a serving
//! certificate it issues itself (renewed before it expires, without a restart) and the
//! client certificates of the components it runs (controller manager, scheduler); and TLS
//! between masters on the peer port, where only masters' certificates get in. Without a PKI
//! directory both ports speak plaintext, and only on loopback unless `--insecure`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use rudder_apiserver::encryption::{keyring_file, Keyring};
use rudder_proto::tls::{
    self, CertificateRequest, ClientTls, ClusterCa, PeerTls, ServingCertificate,
};

use crate::commands::ca;

/// The keyring's file in a data directory, when neither --encryption-keys nor --pki gives
/// one.
pub const KEYRING_FILE: &str = "encryption.keys";

/// What the member's flags say about its security.
pub struct SecurityFlags<'a> {
    pub data_dir: &'a Path,
    pub encryption_keys: Option<&'a Path>,
    pub pki: Option<&'a Path>,
    /// Bootstrapping a cluster of one (no --join, at most itself in --initial-cluster).
    pub alone: bool,
}

/// The keyring file this member seals Secrets with, and the keyring: the one given, the
/// PKI directory's, the one in its data directory, or (the first master of a new
/// one-master cluster) one made there.
pub fn keyring(flags: &SecurityFlags<'_>) -> anyhow::Result<(PathBuf, Keyring)> {
    let given = flags
        .encryption_keys
        .map(Path::to_path_buf)
        .or_else(|| flags.pki.map(|pki| pki.join(ca::KEYRING)));
    if let Some(path) = given {
        if !path.exists() {
            bail!(
                "{}: no such file; make a cluster's keyring once with `rudder encryption-keys \
                 new FILE` (or `rudder ca init DIR`) and give every master a copy",
                path.display()
            );
        }
        return Ok((path.clone(), keyring_file::read(&path)?));
    }
    let path = flags.data_dir.join(KEYRING_FILE);
    if path.exists() {
        return Ok((path.clone(), keyring_file::read(&path)?));
    }
    if !flags.alone {
        bail!(
            "{} has no Secret-encryption keyring, and this master is one of several: every \
             master needs the same one. Make it once with `rudder encryption-keys new FILE` \
             (or copy a running master's), then start each master with --encryption-keys FILE",
            flags.data_dir.display()
        );
    }
    if flags.data_dir.join("db").exists() {
        // A new key could not open what the cluster sealed: never made behind a restart.
        bail!(
            "{} holds a member but no Secret-encryption keyring: give the cluster's with \
             --encryption-keys FILE (a one-master cluster from before Secrets were encrypted: \
             `rudder encryption-keys new {}` makes one)",
            flags.data_dir.display(),
            path.display()
        );
    }
    std::fs::create_dir_all(flags.data_dir)
        .with_context(|| format!("creating the data directory {:?}", flags.data_dir))?;
    let keyring = keyring_file::create(&path)?;
    tracing::info!(
        path = %path.display(),
        "made the Secret-encryption keyring: a master joining this cluster needs a copy \
         (--encryption-keys)"
    );
    Ok((path, keyring))
}

/// A plaintext port is served only on loopback, unless the operator insists.
pub fn check_plaintext(port: &str, listen: SocketAddr, insecure: bool) -> anyhow::Result<()> {
    if listen.ip().is_loopback() || insecure {
        return Ok(());
    }
    bail!(
        "the {port} port {listen} is not on loopback, and would speak plaintext: anyone who \
         reaches it could read and write everything. Give --pki DIR (made by `rudder ca \
         init DIR`) for TLS, or --insecure to serve plaintext anyway"
    )
}

/// TLS on the client port: the CA, the certificate served, how it is renewed.
pub struct ServerTls {
    ca: ClusterCa,
    serving: ServingCertificate,
    request: CertificateRequest,
    lifetime: Duration,
    pub config: Arc<rustls::ServerConfig>,
}

impl ServerTls {
    /// A serving certificate for member `name`, valid for loopback, the client address
    /// (when it is one) and `extra_names`, for `lifetime`.
    pub fn start(
        pki: &Path,
        name: &str,
        listening: [SocketAddr; 2],
        extra_names: &[String],
        lifetime: Duration,
    ) -> anyhow::Result<Self> {
        let ca = ca::load(pki)?;
        let request = CertificateRequest::master(
            name,
            serving_names(name, &listening.map(|a| a.ip()), extra_names),
            lifetime,
        );
        let issued = ca.issue(&request).with_context(|| {
            format!(
                "issuing this master's certificate for {:?} (check --tls-san)",
                request.alternative_names
            )
        })?;
        // The CA after it: a joiner pinning the CA by fingerprint finds it there.
        let serving = ServingCertificate::new(&issued.chained_with(ca.cert_pem()))?;
        let config = tls::server_config(ca.cert_pem(), &serving)?;
        Ok(Self {
            ca,
            serving,
            request,
            lifetime,
            config,
        })
    }

    /// The names and addresses this master's certificate is valid for.
    pub fn names(&self) -> &[String] {
        &self.request.alternative_names
    }

    /// The cluster CA this master issues from.
    pub fn ca(&self) -> &ClusterCa {
        &self.ca
    }

    /// TLS between this master and the others: the certificate it serves (renewed) on
    /// the peer port too, a master's certificate required of every caller, and one to dial
    /// them with — which lives as long as the CA, since connections to peers, made once,
    /// cannot swap it.
    pub fn peer(&self) -> anyhow::Result<PeerTls> {
        let mut request = CertificateRequest::master(
            &self.request.common_name,
            self.request.alternative_names.clone(),
            tls::CA_LIFETIME,
        );
        request.not_after = self.ca.not_after();
        Ok(PeerTls {
            server: tls::peer_server_config(self.ca.cert_pem(), &self.serving)?,
            client: ClientTls {
                ca_pem: self.ca.cert_pem().to_string(),
                identity: Some(self.ca.issue(&request)?),
            },
        })
    }

    /// A client certificate for a component this master runs. It never leaves the
    /// process, which cannot swap it in its client: it lives as long as the CA does.
    pub fn client(&self, user: &str) -> anyhow::Result<ClientTls> {
        let mut request = CertificateRequest::client(user, Some("system:masters"));
        request.not_after = self.ca.not_after();
        Ok(ClientTls {
            ca_pem: self.ca.cert_pem().to_string(),
            identity: Some(self.ca.issue(&request)?),
        })
    }

    /// Renews the served certificate when two thirds of its life have passed (by the wall
    /// clock, so a machine that slept renews on waking), retrying every
    /// [`RENEWAL_RETRY`] if that fails, for as long as the process runs.
    pub fn renew_before_expiry(&self) {
        let (ca, serving, request, lifetime) = (
            self.ca.clone(),
            self.serving.clone(),
            self.request.clone(),
            self.lifetime,
        );
        tokio::spawn(async move {
            let mut renew_at = SystemTime::now() + lifetime * 2 / 3;
            loop {
                sleep_until(renew_at).await;
                let fresh = CertificateRequest::master(
                    &request.common_name,
                    request.alternative_names.clone(),
                    lifetime,
                );
                let renewed = ca
                    .issue(&fresh)
                    .map_err(anyhow::Error::from)
                    .and_then(|issued| Ok(serving.replace(&issued.chained_with(ca.cert_pem()))?));
                match renewed {
                    Ok(()) => {
                        tracing::info!(valid_for = ?lifetime, "this master's certificate was renewed");
                        renew_at = SystemTime::now() + lifetime * 2 / 3;
                    }
                    Err(error) => {
                        tracing::error!(
                            error = format!("{error:#}"),
                            "renewing this master's certificate failed: the old one is served \
                             until it expires; trying again"
                        );
                        renew_at = SystemTime::now() + RENEWAL_RETRY;
                    }
                }
            }
        });
    }
}

/// How often a renewal looks at the clock at most; how soon a failed one is tried again.
const RENEWAL_CHECK: Duration = Duration::from_secs(60);
pub const RENEWAL_RETRY: Duration = Duration::from_secs(10);

/// Sleeps until the wall clock reads `at`, looking at it every [`RENEWAL_CHECK`] at most
/// (so a machine that slept through `at` wakes up to it within that).
pub async fn sleep_until(at: SystemTime) {
    while let Ok(left) = at.duration_since(SystemTime::now()) {
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(RENEWAL_CHECK)).await;
    }
}

/// What a master's certificate is valid for: loopback, its name, the addresses it listens
/// on (client and peer, unless every address), and the operator's extra names.
fn serving_names(name: &str, listening: &[IpAddr], extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    names.push(name.to_string());
    for ip in listening.iter().filter(|ip| !ip.is_unspecified()) {
        names.push(ip.to_string());
    }
    names.extend(extra.iter().cloned());
    names.sort();
    names.dedup();
    names
}

/// The address a master's own components dial: its client port, on loopback when it
/// listens on every address (the certificate names loopback).
pub fn own_endpoint(client: SocketAddr) -> String {
    if client.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], client.port())).to_string()
    } else {
        client.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_is_refused_off_loopback_unless_insisted_on() {
        let loopback: SocketAddr = "127.0.0.1:2379".parse().unwrap();
        let everywhere: SocketAddr = "0.0.0.0:2379".parse().unwrap();
        check_plaintext("client", loopback, false).unwrap();
        let refused = check_plaintext("client", everywhere, false)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("Give --pki DIR"), "{refused}");
        check_plaintext("client", everywhere, true).unwrap();
    }

    #[test]
    fn a_master_certificate_names_loopback_its_name_and_address() {
        let listening = ["10.0.0.5".parse().unwrap(), "10.0.1.5".parse().unwrap()];
        let names = serving_names("m1", &listening, &["api.local".into()]);
        for name in [
            "localhost",
            "127.0.0.1",
            "::1",
            "m1",
            "10.0.0.5",
            "10.0.1.5",
            "api.local",
        ] {
            assert!(names.contains(&name.to_string()), "{name}: {names:?}");
        }
        let everywhere = serving_names("m1", &["0.0.0.0".parse().unwrap()], &[]);
        assert!(!everywhere.contains(&"0.0.0.0".to_string()));
        assert_eq!(
            own_endpoint("0.0.0.0:2379".parse().unwrap()),
            "127.0.0.1:2379"
        );
    }

    #[test]
    fn the_keyring_is_made_only_for_a_new_master_alone() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("m1");
        let flags = |alone| SecurityFlags {
            data_dir: &data,
            encryption_keys: None,
            pki: None,
            alone,
        };
        let refused = keyring(&flags(false)).unwrap_err().to_string();
        assert!(refused.contains("one of several"), "{refused}");
        std::fs::create_dir_all(data.join("db")).unwrap();
        let refused = keyring(&flags(true)).unwrap_err().to_string();
        assert!(refused.contains("holds a member"), "{refused}");
        std::fs::remove_dir(data.join("db")).unwrap();
        let (path, made) = keyring(&flags(true)).unwrap();
        assert_eq!(path, data.join(KEYRING_FILE));
        let (_, again) = keyring(&flags(true)).unwrap();
        assert_eq!(again.to_text(), made.to_text());
    }
}
