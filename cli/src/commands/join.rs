//! The joiner's half of a join token: a new master (`rudder server --join ADDR --token T`)
//! or node (`rudder node --token T`) dials a master's client port, takes its TLS chain only
//! through the CA its token names and only from a master ([`PinnedCa`]), presents the token
//! once over that connection, and keeps what it is given in its own directory — a master a
//! PKI directory (`DATA_DIR/pki`), a node its CA, certificate and key (`ROOT/pki`) — which
//! later starts use without a token (it was taken).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use rudder_apiserver::encryption::Keyring;
use rudder_proto::client::ApiClient;
use rudder_proto::join::join_client::JoinClient;
use rudder_proto::join::{JoinRequest, JoinResponse, RenewRequest};
use rudder_proto::join_token::{ca_fingerprint, JoinToken, Role};
use rudder_proto::pinned_ca::PinnedCa;
use rudder_proto::tls::{self, ClientTls, ClusterCa, Issued, ServingCertificate};
use rustls::pki_types::ServerName;

use crate::commands::ca;
use crate::commands::server_security::{sleep_until, RENEWAL_RETRY};

/// How long one master has to answer (the TLS handshake, then the join).
const ANSWER_WITHIN: Duration = Duration::from_secs(15);
/// The file of a joined master's PKI directory naming the peer address it joined through.
const JOINED_THROUGH: &str = "joined-through";
/// A joined node's files, in `ROOT/pki`: its certificate and key in one file (so a renewal
/// replaces both at once), which says the node joined; and the key of a join not finished
/// yet, used again by the next.
const NODE_IDENTITY: &str = "node.pem";
const PENDING_KEY: &str = "node.key";

/// A master that joined with a token before: its PKI directory and the peer address it
/// joined through.
pub fn joined_master(data_dir: &Path) -> Option<(PathBuf, String)> {
    let pki = data_dir.join("pki");
    let through = std::fs::read_to_string(pki.join(JOINED_THROUGH)).ok()?;
    Some((pki, through.trim().to_string()))
}

/// A joining master's PKI directory (`data_dir/pki`) and the peer address it joins the
/// store through, asked for with `token` at the master `address` (its client port).
pub async fn master_pki(
    data_dir: &Path,
    address: &str,
    token: &str,
    name: &str,
) -> anyhow::Result<(PathBuf, String)> {
    let pki = data_dir.join("pki");
    if pki.exists() {
        bail!(
            "{} exists but is not a joined master's PKI directory: remove it to join with the \
             token, or start with --pki {} instead of --token",
            pki.display(),
            pki.display()
        );
    }
    let token = parse(token, "rudder server --token")?;
    if data_dir.join("pki.joining").exists() {
        tracing::warn!(
            "DATA_DIR/pki.joining is left from a join that stopped after the token was taken: \
             if this join is refused, make a new token"
        );
    }
    let request = JoinRequest {
        role: Role::Master.as_str().into(),
        name: name.into(),
        ..JoinRequest::default()
    };
    let hint = "with --token, --join names a running master's client address (where the \
                token is presented), not its peer address";
    let answer = ask(&[address.to_string()], &token, request, hint).await?;
    let peer = peer_address(&answer.peer_address, address)?;
    // What every master holds must be whole before it is kept: the CA's key signs for its
    // certificate, the keyring reads.
    ClusterCa::from_pem(answer.ca_pem.clone(), answer.ca_key_pem.clone())
        .context("the CA the master answered")?;
    Keyring::parse(&answer.keyring).context("the keyring the master answered")?;
    // Written beside, then renamed: a directory with `joined-through` is whole.
    let partial = data_dir.join("pki.joining");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    ca::write_private(&partial.join(ca::CA_CERT), &answer.ca_pem)?;
    ca::write_private(&partial.join(ca::CA_KEY), &answer.ca_key_pem)?;
    ca::write_private(&partial.join(ca::KEYRING), &answer.keyring)?;
    ca::write_private(
        &partial.join(ca::SERVICE_ACCOUNT_KEY),
        &answer.service_account_key_pem,
    )?;
    ca::write_private(&partial.join(JOINED_THROUGH), &peer)?;
    sync_directory(&partial)?;
    std::fs::rename(&partial, &pki)
        .with_context(|| format!("moving {} to {}", partial.display(), pki.display()))?;
    sync_directory(data_dir)?;
    // Standard output's first line is the master's `ready` line, which scripts read.
    tracing::info!(
        pki = %pki.display(),
        %peer,
        "joined with the token: the cluster's keys are in the PKI directory (keep them safe); \
         joining the store through the peer address"
    );
    Ok((pki, peer))
}

/// A node that joined with a token before: its TLS, from `root/pki`.
pub fn joined_node(root: &Path) -> anyhow::Result<Option<ClientTls>> {
    let pki = root.join("pki");
    let path = pki.join(NODE_IDENTITY);
    let identity = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if pki.join("node.crt").exists() {
                bail!(
                    "{} holds a certificate as an earlier rudder kept it (node.crt and \
                     node.key): join again — delete the Node, remove {}, and start with \
                     --token",
                    pki.display(),
                    pki.display()
                );
            }
            return Ok(None);
        }
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    let ca_path = pki.join(ca::CA_CERT);
    let ca_pem = std::fs::read_to_string(&ca_path)
        .with_context(|| format!("reading {}", ca_path.display()))?;
    let issued = split_identity(&identity)
        .with_context(|| format!("{} holds no certificate and key", path.display()))?;
    Ok(Some(ClientTls {
        ca_pem,
        identity: Some(issued),
    }))
}

/// Why a joined node's credential will not do any more, if it will not: expired, or from
/// another cluster than `token` (given again) names.
pub fn stale(joined: &ClientTls, token: Option<&JoinToken>) -> Option<String> {
    if let Some(token) = token {
        if ca_fingerprint(&joined.ca_pem).ok() != Some(token.ca_fingerprint) {
            return Some("it is another cluster's than the join token's".into());
        }
    }
    let expires = joined
        .identity
        .as_ref()
        .and_then(|issued| tls::validity(&issued.cert_pem))
        .map(|(_, until)| until)?;
    (expires <= SystemTime::now()).then(|| {
        format!(
            "it expired at {}",
            jiff::Timestamp::try_from(expires)
                .map(|at| at.to_string())
                .unwrap_or_default()
        )
    })
}

/// A joining node's TLS, asked for with `token` at one of `servers`, for a key made here
/// (kept in `root/pki` before anything is asked, and never sent).
pub async fn node_tls(
    root: &Path,
    servers: &[String],
    token: &JoinToken,
    name: &str,
) -> anyhow::Result<ClientTls> {
    let pki = root.join("pki");
    std::fs::create_dir_all(&pki).with_context(|| format!("creating {}", pki.display()))?;
    // A key left by a join that did not finish is used again.
    let key_path = pki.join(PENDING_KEY);
    let key_pem = match std::fs::read_to_string(&key_path) {
        Ok(pem) => pem,
        Err(_) => {
            let pem = tls::new_signing_key_pem()?;
            write_whole(&pki, PENDING_KEY, &pem)?;
            pem
        }
    };
    let csr_pem = tls::signing_request(&key_pem, &format!("{}{name}", tls::NODE_USER_PREFIX))
        .with_context(|| {
            format!(
                "a certificate request for the key in {}",
                key_path.display()
            )
        })?;
    let request = JoinRequest {
        role: Role::Node.as_str().into(),
        name: name.into(),
        csr_pem,
        ..JoinRequest::default()
    };
    let answer = ask(servers, token, request, "").await?;
    let issued = Issued {
        cert_pem: answer.certificate_pem,
        key_pem,
        not_after: std::time::SystemTime::UNIX_EPOCH,
    };
    write_whole(&pki, ca::CA_CERT, &answer.ca_pem)?;
    write_whole(&pki, NODE_IDENTITY, &identity_text(&issued))?;
    let _ = std::fs::remove_file(&key_path);
    println!(
        "rudder node {name}: joined with the token; its certificate is in {}",
        pki.display()
    );
    Ok(ClientTls {
        ca_pem: answer.ca_pem,
        identity: Some(issued),
    })
}

/// Renews a joined node's certificate whenever two thirds of its life have passed (by the
/// wall clock): a new key, a certificate for it from a master (`Renew`, called with the
/// current one), written into `root/pki`, then presented by `client` and served by
/// `serving` (the kubelet port) — no restart. A failure is logged and tried again soon; the
/// old certificate serves until it expires. Runs until the process ends.
pub async fn renew_node_certificate(
    root: PathBuf,
    name: String,
    client: Arc<ApiClient>,
    serving: Option<ServingCertificate>,
) {
    let pki = root.join("pki");
    loop {
        let renew_at = client
            .tls()
            .and_then(|tls| tls.identity)
            .and_then(|issued| tls::renewal_due(&issued.cert_pem))
            .unwrap_or_else(|| SystemTime::now() + RENEWAL_RETRY);
        sleep_until(renew_at).await;
        match renew_once(&pki, &name, &client, serving.as_ref()).await {
            Ok(until) => {
                tracing::info!(?until, "this node's certificate was renewed");
                // Never back to back, whatever the certificate says of itself.
                tokio::time::sleep(RENEWAL_GAP).await;
            }
            Err(error) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    "renewing this node's certificate failed: the old one serves until it \
                     expires; trying again"
                );
                tokio::time::sleep(RENEWAL_RETRY).await;
            }
        }
    }
}

/// The least time between two renewals.
const RENEWAL_GAP: Duration = Duration::from_secs(1);

/// One renewal; answers when the new certificate expires.
async fn renew_once(
    pki: &Path,
    node: &str,
    client: &ApiClient,
    serving: Option<&ServingCertificate>,
) -> anyhow::Result<SystemTime> {
    let key_pem = tls::new_signing_key_pem()?;
    let csr_pem = tls::signing_request(&key_pem, "renewal")?;
    let asked = client.open_on(|channel| {
        let csr_pem = csr_pem.clone();
        async move {
            JoinClient::new(channel)
                .renew(RenewRequest { csr_pem })
                .await
        }
    });
    let answer = tokio::time::timeout(ANSWER_WITHIN, asked)
        .await
        .map_err(|_| anyhow::anyhow!("no master answered within {ANSWER_WITHIN:?}"))??;
    let issued = Issued {
        cert_pem: answer.certificate_pem,
        key_pem,
        not_after: SystemTime::UNIX_EPOCH,
    };
    // Checked before it replaces the only copy: the node's, for the new key.
    let (_, until) = tls::validity(&issued.cert_pem).context("the renewed certificate")?;
    if let Some(problem) = tls::node_certificate_problem(&issued.cert_pem, node) {
        bail!("the renewed certificate will not do: {problem}");
    }
    ServingCertificate::new(&issued).context("the renewed certificate and its key")?;
    write_whole(pki, NODE_IDENTITY, &identity_text(&issued))?;
    if let Some(serving) = serving {
        serving.replace(&issued)?;
    }
    client.renew_identity(issued);
    Ok(until)
}

/// A certificate and its key as one file's text.
fn identity_text(issued: &Issued) -> String {
    format!("{}\n{}", issued.cert_pem.trim_end(), issued.key_pem)
}

/// The certificate blocks and the key block of an identity file.
fn split_identity(text: &str) -> Option<Issued> {
    let (mut cert_pem, mut key_pem) = (String::new(), String::new());
    let mut into_key = false;
    for line in text.lines() {
        if line.starts_with("-----BEGIN ") {
            into_key = !line.contains("CERTIFICATE");
        }
        let into = if into_key {
            &mut key_pem
        } else {
            &mut cert_pem
        };
        into.push_str(line);
        into.push('\n');
    }
    (cert_pem.contains("CERTIFICATE") && key_pem.contains("PRIVATE KEY")).then_some(Issued {
        cert_pem,
        key_pem,
        not_after: SystemTime::UNIX_EPOCH,
    })
}

pub fn parse(token: &str, flag: &str) -> anyhow::Result<JoinToken> {
    token
        .parse()
        .map_err(|why: String| anyhow::anyhow!("{flag}: {why}"))
}

/// `text` as `dir/file`, readable by its owner only, whole or not at all (written beside,
/// then renamed).
fn write_whole(dir: &Path, file: &str, text: &str) -> anyhow::Result<()> {
    let partial = dir.join(format!("{file}.partial"));
    ca::write_private(&partial, text)?;
    let path = dir.join(file);
    std::fs::rename(&partial, &path).with_context(|| format!("writing {}", path.display()))?;
    sync_directory(dir)
}

fn sync_directory(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|directory| directory.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// Asks the masters at `addresses` in turn until one answers: a refusal is final (another
/// master would refuse too), an unreachable master is passed over.
async fn ask(
    addresses: &[String],
    token: &JoinToken,
    mut request: JoinRequest,
    unreachable_hint: &str,
) -> anyhow::Result<JoinResponse> {
    request.token = token.to_string();
    let mut unreachable = Vec::new();
    for address in addresses {
        let channel = match pinned_channel(address, token).await {
            Ok(channel) => channel,
            Err(error) => {
                unreachable.push(format!("{address}: {error:#}"));
                continue;
            }
        };
        match JoinClient::new(channel).join(request.clone()).await {
            Ok(answer) => {
                let answer = answer.into_inner();
                if ca_fingerprint(&answer.ca_pem).ok() != Some(token.ca_fingerprint) {
                    bail!(
                        "the master at {address} answered with a CA the join token does not name"
                    );
                }
                return Ok(answer);
            }
            Err(status) if status.code() == tonic::Code::Unavailable => {
                unreachable.push(format!("{address}: {}", status.message()));
            }
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
                ) =>
            {
                bail!(
                    "the master at {address} did not answer in time ({}): the token may have \
                     been taken all the same — see `rudder token list`, and make a new one if \
                     it is gone",
                    status.message()
                )
            }
            Err(status) => bail!(
                "the master at {address} refused to join us: {}",
                status.message()
            ),
        }
    }
    let hint = if unreachable_hint.is_empty() {
        String::new()
    } else {
        format!(" ({unreachable_hint})")
    };
    bail!(
        "no master could be asked to join: {}{hint}",
        unreachable.join("; ")
    )
}

/// A gRPC channel to the master at `address` over TLS verified by [`PinnedCa`] against
/// `token`'s CA: the join goes over the very connection whose chain was checked.
async fn pinned_channel(
    address: &str,
    token: &JoinToken,
) -> anyhow::Result<tonic::transport::Channel> {
    let host = host_of(address)?;
    let server_name = ServerName::try_from(host.clone())
        .with_context(|| format!("{host:?} is not a host name or address"))?;
    let config = PinnedCa::new(token.ca_fingerprint).client_config();
    let connector = rudder_proto::dial::connector(address, server_name, config);
    // `http`: the connector speaks TLS itself; tonic must not add its own.
    tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .with_context(|| format!("{address:?} is not host:port"))?
        .connect_timeout(ANSWER_WITHIN)
        .timeout(ANSWER_WITHIN)
        .connect_with_connector(connector)
        .await
        // The handshake's own words (the verifier's refusal) are in the source chain.
        .map_err(|error| anyhow::anyhow!(rudder_proto::dial::causes(&error)))
}

/// The host of `host:port`, as a joiner's error.
fn host_of(address: &str) -> anyhow::Result<String> {
    rudder_proto::dial::host_of(address).map_err(anyhow::Error::msg)
}

/// Where a joining master reaches the answering one's peer port: the address it gave,
/// unless that is every address (0.0.0.0), then on the host it was dialed at.
fn peer_address(answered: &str, dialed: &str) -> anyhow::Result<String> {
    let peer: SocketAddr = answered
        .parse()
        .with_context(|| format!("the master answered a peer address {answered:?}"))?;
    if !peer.ip().is_unspecified() {
        return Ok(peer.to_string());
    }
    let host = host_of(dialed)?;
    Ok(match host.parse::<std::net::IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, peer.port()).to_string(),
        Err(_) => format!("{host}:{}", peer.port()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_address_on_every_address_is_reached_where_the_master_was_dialed() {
        assert_eq!(
            peer_address("10.0.0.5:2380", "10.0.0.5:2379").unwrap(),
            "10.0.0.5:2380"
        );
        assert_eq!(
            peer_address("0.0.0.0:2380", "10.0.0.7:2379").unwrap(),
            "10.0.0.7:2380"
        );
        assert_eq!(
            peer_address("0.0.0.0:2380", "m1.example:2379").unwrap(),
            "m1.example:2380"
        );
        assert_eq!(host_of("[::1]:2379").unwrap(), "::1");
        assert!(host_of("no-port").is_err());
    }

    #[test]
    fn a_node_uses_what_a_finished_join_left_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        assert!(joined_node(dir.path()).unwrap().is_none());
        let pki = dir.path().join("pki");
        std::fs::create_dir_all(&pki).unwrap();
        // A key alone is a join that did not finish.
        write_whole(&pki, PENDING_KEY, "key").unwrap();
        assert!(joined_node(dir.path()).unwrap().is_none());
        let ca = tls::ClusterCa::generate("test").unwrap();
        let issued = ca.issue(&tls::CertificateRequest::node("n1")).unwrap();
        write_whole(&pki, ca::CA_CERT, ca.cert_pem()).unwrap();
        write_whole(&pki, NODE_IDENTITY, &identity_text(&issued)).unwrap();
        let joined = joined_node(dir.path()).unwrap().unwrap();
        assert_eq!(joined.ca_pem, ca.cert_pem());
        let identity = joined.identity.unwrap();
        assert_eq!(identity.cert_pem.trim(), issued.cert_pem.trim());
        assert_eq!(identity.key_pem.trim(), issued.key_pem.trim());
        ServingCertificate::new(&identity).expect("the key goes with the certificate");
        assert!(!pki.join("node.pem.partial").exists());
        assert!(joined_master(dir.path()).is_none());
    }
}
