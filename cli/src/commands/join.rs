//! The joiner's half of a join token: a new master (`rudder server --join ADDR --token T`)
//! or node (`rudder node --token T`) dials a master's client port, takes its TLS chain only
//! through the CA its token names ([`PinnedCa`]), presents the token once, and keeps what it
//! is given in its own directory — a master a PKI directory (`DATA_DIR/pki`), a node its
//! CA, certificate and key (`ROOT/pki`) — so a restart needs no token (it was taken).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use rudder_proto::join::join_client::JoinClient;
use rudder_proto::join::{JoinRequest, JoinResponse};
use rudder_proto::join_token::{JoinToken, Role};
use rudder_proto::pinned_ca::PinnedCa;
use rudder_proto::tls::{self, ClientTls, Issued};
use rustls::pki_types::ServerName;

use crate::commands::ca;

/// How long one master has to answer (the TLS handshake, then the join).
const ANSWER_WITHIN: Duration = Duration::from_secs(15);
/// The file of a joined master's PKI directory naming the peer address it joined through.
const JOINED_THROUGH: &str = "joined-through";
/// A joined node's files, in `ROOT/pki`.
const NODE_CERT: &str = "node.crt";
const NODE_KEY: &str = "node.key";

/// A joining master's PKI directory (`data_dir/pki`) and the peer address it joins the
/// store through: from its first start's join, or asked for now with `token` at the master
/// `address` (its client port).
pub async fn master_pki(
    data_dir: &Path,
    address: &str,
    token: &str,
    name: &str,
) -> anyhow::Result<(PathBuf, String)> {
    let pki = data_dir.join("pki");
    if let Ok(through) = std::fs::read_to_string(pki.join(JOINED_THROUGH)) {
        tracing::info!(pki = %pki.display(), "joined before: the join token is not used again");
        return Ok((pki, through.trim().to_string()));
    }
    let token = parse(token, "rudder server --token")?;
    let answer = ask(
        &[address.to_string()],
        &token,
        JoinRequest {
            role: Role::Master.as_str().into(),
            name: name.into(),
            ..JoinRequest::default()
        },
    )
    .await?;
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
    // Standard output's first line is the master's `ready` line, which scripts read.
    tracing::info!(
        pki = %pki.display(),
        %peer,
        "joined with the token: the cluster's keys are in the PKI directory (keep them safe); \
         joining the store through the peer address"
    );
    Ok((pki, peer))
}

/// A joining node's TLS: from its first start's join (`root/pki`), or asked for now with
/// `token` at one of `servers`, for a key made here and never sent.
pub async fn node_tls(
    root: &Path,
    servers: &[String],
    token: &str,
    name: &str,
) -> anyhow::Result<ClientTls> {
    let pki = root.join("pki");
    let read = |file: &str| {
        let path = pki.join(file);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    if pki.join(NODE_KEY).exists() {
        tracing::info!(pki = %pki.display(), "joined before: the join token is not used again");
        return Ok(ClientTls {
            ca_pem: read(ca::CA_CERT)?,
            identity: Some(Issued {
                cert_pem: read(NODE_CERT)?,
                key_pem: read(NODE_KEY)?,
                not_after: std::time::SystemTime::UNIX_EPOCH,
            }),
        });
    }
    let token = parse(token, "rudder node --token")?;
    let (csr_pem, key_pem) = tls::signing_request(&format!("{}{name}", tls::NODE_USER_PREFIX))?;
    let answer = ask(
        servers,
        &token,
        JoinRequest {
            role: Role::Node.as_str().into(),
            name: name.into(),
            csr_pem,
            ..JoinRequest::default()
        },
    )
    .await?;
    std::fs::create_dir_all(&pki).with_context(|| format!("creating {}", pki.display()))?;
    ca::write_private(&pki.join(ca::CA_CERT), &answer.ca_pem)?;
    ca::write_private(&pki.join(NODE_CERT), &answer.certificate_pem)?;
    // The key last: its presence says the node joined.
    ca::write_private(&pki.join(NODE_KEY), &key_pem)?;
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

fn parse(token: &str, flag: &str) -> anyhow::Result<JoinToken> {
    token
        .parse()
        .map_err(|why: String| anyhow::anyhow!("{flag}: {why}"))
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
        let ca_pem = match tokio::time::timeout(ANSWER_WITHIN, pinned_ca(address, token)).await {
            Ok(Ok(ca_pem)) => ca_pem,
            Ok(Err(error)) => {
                unreachable.push(format!("{address}: {error:#}"));
                continue;
            }
            Err(_) => {
                unreachable.push(format!("{address}: no TLS answer within {ANSWER_WITHIN:?}"));
                continue;
            }
        };
        let tls = ClientTls {
            ca_pem,
            identity: None,
        };
        let endpoint = tls::endpoint(address, Some(&tls))
            .map_err(anyhow::Error::msg)?
            .connect_timeout(ANSWER_WITHIN)
            .timeout(ANSWER_WITHIN);
        let channel = match endpoint.connect().await {
            Ok(channel) => channel,
            Err(error) => {
                unreachable.push(format!("{address}: {error}"));
                continue;
            }
        };
        match JoinClient::new(channel).join(request.clone()).await {
            Ok(answer) => return Ok(answer.into_inner()),
            Err(status) if status.code() == tonic::Code::Unavailable => {
                unreachable.push(format!("{address}: {}", status.message()));
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

/// The CA of the master at `address`, if its TLS chain goes through the CA `token` names.
async fn pinned_ca(address: &str, token: &JoinToken) -> anyhow::Result<String> {
    let host = host_of(address)?;
    let server_name = ServerName::try_from(host.clone())
        .with_context(|| format!("{host:?} is not a host name or address"))?;
    let pinned = PinnedCa::new(token.ca_fingerprint);
    let connector = tokio_rustls::TlsConnector::from(pinned.client_config());
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .with_context(|| format!("connecting to {address}"))?;
    connector
        .connect(server_name, stream)
        .await
        .with_context(|| format!("TLS with {address}"))?;
    pinned
        .ca_pem()
        .context("the handshake ended without the CA it was pinned to")
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
}
