//! Forwarding a question the cluster's names do not answer to an upstream resolver
//! (`--dns-upstream`, off by default: this machine may have no network). One question, one
//! exchange: over UDP, and again over TCP when the answer came truncated (each exchange
//! bounded by [`UPSTREAM_TIMEOUT`]). No cache: the upstream resolver keeps one.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the upstream resolver has for one exchange.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("asking the upstream resolver {upstream}: {source}")]
    Io {
        upstream: SocketAddr,
        source: std::io::Error,
    },
    #[error("the upstream resolver {upstream} did not answer within {UPSTREAM_TIMEOUT:?}")]
    Timeout { upstream: SocketAddr },
    #[error("the upstream resolver {upstream} answered something that is not DNS: {reason}")]
    Malformed {
        upstream: SocketAddr,
        reason: String,
    },
    #[error("already waiting on the upstream resolver for as many questions as allowed")]
    Busy,
}

/// Asks `upstream` `query` (with recursion when `recursion_desired`) and returns its answer.
pub async fn forward(
    upstream: SocketAddr,
    query: &Query,
    recursion_desired: bool,
) -> Result<Message, ForwardError> {
    let mut message = Message::query();
    message.metadata.id = rand::random();
    message.metadata.recursion_desired = recursion_desired;
    message.add_query(query.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    message.edns = Some(edns);
    let question = message.to_vec().map_err(|error| ForwardError::Malformed {
        upstream,
        reason: error.to_string(),
    })?;
    let answer = within(upstream, over_udp(upstream, &question, message.metadata.id)).await?;
    let answer = decode(upstream, message.metadata.id, &answer)?;
    if !answer.metadata.truncation {
        return Ok(answer);
    }
    let answer = within(upstream, over_tcp(upstream, &question)).await?;
    decode(upstream, message.metadata.id, &answer)
}

/// `exchange`, given [`UPSTREAM_TIMEOUT`].
async fn within(
    upstream: SocketAddr,
    exchange: impl std::future::Future<Output = std::io::Result<Vec<u8>>>,
) -> Result<Vec<u8>, ForwardError> {
    match tokio::time::timeout(UPSTREAM_TIMEOUT, exchange).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(source)) => Err(ForwardError::Io { upstream, source }),
        Err(_) => Err(ForwardError::Timeout { upstream }),
    }
}

fn decode(upstream: SocketAddr, id: u16, bytes: &[u8]) -> Result<Message, ForwardError> {
    let answer = Message::from_vec(bytes).map_err(|error| ForwardError::Malformed {
        upstream,
        reason: error.to_string(),
    })?;
    if answer.metadata.id != id {
        return Err(ForwardError::Malformed {
            upstream,
            reason: format!(
                "an answer to question {} instead of {id}",
                answer.metadata.id
            ),
        });
    }
    Ok(answer)
}

/// One exchange over UDP: datagrams not answering question `id` (late, or spoofed) are
/// skipped, not taken as the answer.
async fn over_udp(upstream: SocketAddr, question: &[u8], id: u16) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if upstream.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(question).await?;
    let mut buffer = vec![0u8; 4096];
    loop {
        let length = socket.recv(&mut buffer).await?;
        if length >= 2 && u16::from_be_bytes([buffer[0], buffer[1]]) == id {
            buffer.truncate(length);
            return Ok(buffer);
        }
    }
}

async fn over_tcp(upstream: SocketAddr, question: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = tokio::net::TcpStream::connect(upstream).await?;
    let length = u16::try_from(question.len()).map_err(std::io::Error::other)?;
    stream.write_all(&length.to_be_bytes()).await?;
    stream.write_all(question).await?;
    let length = stream.read_u16().await?;
    let mut buffer = vec![0u8; usize::from(length)];
    stream.read_exact(&mut buffer).await?;
    Ok(buffer)
}
