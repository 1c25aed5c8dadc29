//! A port that takes connections from masters only, over TLS: the peer port (Raft) and a
//! node's kubelet port (logs, exec, port-forward, stats) share this accept loop. A caller
//! whose certificate the CA did not sign fails the handshake; one whose certificate is not
//! a master's ([`is_master_certificate`]: an operator's, a node's) is dropped after it.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::TcpListenerStream;

use crate::tls::is_master_certificate;

/// Handshakes that may run at once; one that does not finish in [`HANDSHAKE`] frees its
/// place.
const HANDSHAKES_AT_ONCE: usize = 64;
const HANDSHAKE: Duration = Duration::from_secs(10);

/// The connections of `listener` (`port`, for the log: "peer", "kubelet"), each from a
/// master, over `tls` (which must require client certificates).
pub fn accepted_from_masters(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    port: &'static str,
) -> impl Stream<Item = std::io::Result<TlsStream<TcpStream>>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    TcpListenerStream::new(listener)
        .map(move |accepted| {
            let acceptor = acceptor.clone();
            async move {
                let stream = match accepted.and_then(|stream| {
                    stream.set_nodelay(true)?;
                    Ok(stream)
                }) {
                    Ok(stream) => stream,
                    Err(error) => {
                        // Out of file descriptors and the like: not at full speed.
                        tracing::warn!(%error, port, "accepting a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        return None;
                    }
                };
                let stream = match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::warn!(%error, port, "a connection's TLS handshake failed");
                        return None;
                    }
                    Err(_) => return None,
                };
                let from_master = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .is_some_and(is_master_certificate);
                if !from_master {
                    tracing::warn!(
                        port,
                        "a connection with a certificate that is not a master's: dropped"
                    );
                    return None;
                }
                Some(Ok(stream))
            }
        })
        .buffer_unordered(HANDSHAKES_AT_ONCE)
        .filter_map(std::future::ready)
}
