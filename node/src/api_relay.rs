//! The `default/kubernetes` Service from inside pods. Masters may listen on loopback only,
//! which a pod cannot reach, so each node relays that Service's TCP connections to the
//! masters it knows (as k3s' agent load balancer does): the node's proxy sends the
//! Service's address to this relay on the node's bridge address, and the relay connects to
//! the master that answered last, else to the next one that answers. Bytes pass through
//! untouched, so it relays whatever the masters serve.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long one master may take to accept before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The order in which to try `count` masters: `preferred` first, then the ones after it.
pub fn attempt_order(preferred: usize, count: usize) -> impl Iterator<Item = usize> {
    (0..count).map(move |step| (preferred + step) % count.max(1))
}

/// A running relay; stops (and closes its port) when dropped.
pub struct ApiRelay {
    pub addr: SocketAddr,
    accepting: JoinHandle<()>,
}

impl ApiRelay {
    /// Relays connections made to `listen` (port 0: any) to `masters` (`host:port`).
    pub async fn start(listen: SocketAddr, masters: Vec<String>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let masters = Arc::new(masters);
        let preferred = Arc::new(AtomicUsize::new(0));
        let accepting = tokio::spawn(async move {
            loop {
                let (client, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "the API relay could not accept");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (masters, preferred) = (masters.clone(), preferred.clone());
                tokio::spawn(async move {
                    if let Err(error) = relay(client, &masters, &preferred).await {
                        tracing::debug!(%error, %peer, "API relay connection ended");
                    }
                });
            }
        });
        Ok(Self { addr, accepting })
    }
}

impl Drop for ApiRelay {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn relay(
    mut client: TcpStream,
    masters: &[String],
    preferred: &AtomicUsize,
) -> std::io::Result<()> {
    let first = preferred.load(Ordering::Relaxed);
    let mut last_error = None;
    for index in attempt_order(first, masters.len()) {
        let master = &masters[index];
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(master.as_str())).await {
            Ok(Ok(mut upstream)) => {
                preferred.store(index, Ordering::Relaxed);
                let _ = upstream.set_nodelay(true);
                let _ = client.set_nodelay(true);
                tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
                return Ok(());
            }
            Ok(Err(error)) => last_error = Some(format!("{master}: {error}")),
            Err(_) => last_error = Some(format!("{master}: no answer within {CONNECT_TIMEOUT:?}")),
        }
    }
    Err(std::io::Error::other(format!(
        "no master answered (last: {})",
        last_error.unwrap_or_else(|| "no masters known".into())
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_master_that_answered_last_is_tried_first_then_the_others_in_turn() {
        assert_eq!(attempt_order(0, 3).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(attempt_order(2, 3).collect::<Vec<_>>(), [2, 0, 1]);
        assert_eq!(attempt_order(0, 0).count(), 0);
    }

    #[tokio::test]
    async fn a_connection_reaches_the_first_master_that_answers() {
        // A master that is gone (a port nobody listens on), then one that answers.
        let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gone_addr = gone.local_addr().unwrap().to_string();
        drop(gone);
        let master = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let master_addr = master.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut stream, _) = master.accept().await.unwrap();
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut question = [0u8; 4];
            stream.read_exact(&mut question).await.unwrap();
            stream.write_all(b"pong").await.unwrap();
        });
        let relay = ApiRelay::start("127.0.0.1:0".parse().unwrap(), vec![gone_addr, master_addr])
            .await
            .unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut client = TcpStream::connect(relay.addr).await.unwrap();
        client.write_all(b"ping").await.unwrap();
        let mut answer = [0u8; 4];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"pong");
    }
}
