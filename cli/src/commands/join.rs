//! The joiner's half of a join token: a new master (`rudder server --join ADDR --token T`)
//! or node (`rudder node --token T`) dials a master's client port, takes its TLS chain only
//! through the CA its token names and only from a master ([`PinnedCa`]), presents the token
//! once over that connection, and keeps what it is given in its own directory — a master a
//! PKI directory (`DATA_DIR/pki`), a node its CA, certificate and key (`ROOT/pki`) — which
//! later starts use without a token (it was taken).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use rudder_proto::join::join_client::JoinClient;
use rudder_proto::join::{JoinRequest, JoinResponse};
use rudder_proto::join_token::{ca_fingerprint, JoinToken, Role};
use rudder_proto::pinned_ca::PinnedCa;
use rudder_proto::tls::{self, ClientTls, Issued};
use rustls::pki_types::ServerName;

use crate::commands::ca;

/// How long one master has to answer (the TLS handshake, then the join).
const ANSWER_WITHIN: Duration = Duration::from_secs(15);
/// The file of a joined master's PKI directory naming the peer address it joined through.
const JOINED_THROUGH: &str = "joined-through";
/// A joined node's files, in `ROOT/pki`: the certificate is written last, and says the
/// node joined.
const NODE_CERT: &str = "node.crt";
const NODE_KEY: &str = "node.key";

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
    let request = JoinRequest {
        role: Role::Master.as_str().into(),
        name: name.into(),
        ..JoinRequest::default()
    };
    let answer = ask(&[address.to_string()], &token, request)
        .await
        .map_err(|error| {
            error.context(
                "with --token, --join names a running master's client address (where the \
                 token is presented), not its peer address",
            )
        })?;
    let peer = peer_address(&answer.peer_address, address)?;
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
    if !pki.join(NODE_CERT).exists() {
        return Ok(None);
    }
    let read = |file: &str| {
        let path = pki.join(file);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    Ok(Some(ClientTls {
        ca_pem: read(ca::CA_CERT)?,
        identity: Some(Issued {
            cert_pem: read(NODE_CERT)?,
            key_pem: read(NODE_KEY)?,
            not_after: std::time::SystemTime::UNIX_EPOCH,
        }),
    }))
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
    let key_path = pki.join(NODE_KEY);
    let key_pem = match std::fs::read_to_string(&key_path) {
        Ok(pem) => pem,
        Err(_) => {
            let pem = tls::new_signing_key_pem()?;
            write_whole(&pki, NODE_KEY, &pem)?;
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
    let answer = ask(servers, token, request).await?;
    write_whole(&pki, ca::CA_CERT, &answer.ca_pem)?;
    write_whole(&pki, NODE_CERT, &answer.certificate_pem)?;
    println!(
        "rudder node {name}: joined with the token; its certificate is in {}",
        pki.display()
    );
    Ok(ClientTls {
        ca_pem: answer.ca_pem,
        identity: Some(Issued {
            cert_pem: answer.certificate_pem,
            key_pem,
            not_after: std::time::SystemTime::UNIX_EPOCH,
        }),
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
    bail!(
        "no master could be asked to join: {}",
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
    let dialed = address.to_string();
    let connector = tower::service_fn(move |_: http::Uri| {
        let (config, server_name, dialed) = (config.clone(), server_name.clone(), dialed.clone());
        async move {
            let stream = tokio::net::TcpStream::connect(&dialed).await?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(server_name, stream)
                .await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    // `http`: the connector speaks TLS itself; tonic must not add its own.
    tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .with_context(|| format!("{address:?} is not host:port"))?
        .connect_timeout(ANSWER_WITHIN)
        .timeout(ANSWER_WITHIN)
        .connect_with_connector(connector)
        .await
        .map_err(|error| {
            // The handshake's own words (the verifier's refusal) are in the source chain.
            let mut words = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                words = format!("{words}: {cause}");
                source = cause.source();
            }
            anyhow::anyhow!(words)
        })
}

/// The host of `host:port` (an IPv6 address without its brackets).
fn host_of(address: &str) -> anyhow::Result<String> {
    if let Ok(socket) = address.parse::<SocketAddr>() {
        return Ok(socket.ip().to_string());
    }
    match address.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(host.to_string())
        }
        _ => bail!("{address:?} is not host:port"),
    }
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
        write_whole(&pki, NODE_KEY, "key").unwrap();
        assert!(joined_node(dir.path()).unwrap().is_none());
        write_whole(&pki, ca::CA_CERT, "ca").unwrap();
        write_whole(&pki, NODE_CERT, "cert").unwrap();
        let joined = joined_node(dir.path()).unwrap().unwrap();
        assert_eq!(joined.ca_pem, "ca");
        assert!(!pki.join("node.crt.partial").exists());
        assert!(joined_master(dir.path()).is_none());
    }
}
