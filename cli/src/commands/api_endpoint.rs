//! The one address `rudder up` gives its cluster, which survives any one master's death: a
//! TCP balancer on a fixed loopback port in front of the masters' client ports (as k3s
//! agents run one), so a kubeconfig, which names one server, keeps working. Each connection
//! goes to the next master in turn; a master that refuses or does not answer the connect
//! within [`CONNECT_TIMEOUT`] is skipped for the next. Bytes pass through untouched: gRPC,
//! HTTP/1.1, h2 and upgraded streams alike.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long a connect to one master may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A running balancer; dropping it stops it and every connection it relays.
pub struct ApiEndpoint {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for ApiEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The masters to try for the `turn`-th connection: all of them, starting one further on
/// each time (pure).
pub fn order(masters: &[SocketAddr], turn: usize) -> Vec<SocketAddr> {
    if masters.is_empty() {
        return Vec::new();
    }
    let start = turn % masters.len();
    masters[start..]
        .iter()
        .chain(&masters[..start])
        .copied()
        .collect()
}

impl ApiEndpoint {
    /// Listens on `listen` and balances over `masters`.
    pub async fn start(listen: SocketAddr, masters: Vec<SocketAddr>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(listen).await.with_context(|| {
            format!(
                "binding the cluster's API endpoint {listen}: is another cluster using it? \
                 give `rudder up` another --api-port"
            )
        })?;
        let addr = listener.local_addr()?;
        let masters = Arc::new(masters);
        let turns = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            // Relays are tasks of this one: stopping the endpoint ends them too.
            let mut relays = tokio::task::JoinSet::new();
            loop {
                let client = tokio::select! {
                    accepted = listener.accept() => accepted,
                    Some(_) = relays.join_next(), if !relays.is_empty() => continue,
                };
                let client = match client {
                    Ok((client, _)) => client,
                    Err(error) => {
                        tracing::warn!(%error, "accepting on the API endpoint");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let turn = turns.fetch_add(1, Ordering::Relaxed);
                let masters = masters.clone();
                relays.spawn(async move {
                    relay(client, &order(&masters, turn)).await;
                });
            }
        });
        Ok(Self { addr, task })
    }
}

/// Probes a silent peer after a minute idle, so a relay to a frozen or vanished machine
/// ends instead of holding its task for ever.
fn keep_alive(stream: &TcpStream) {
    let probe = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    let socket = socket2::SockRef::from(stream);
    let _ = socket.set_tcp_keepalive(&probe);
    let _ = socket.set_tcp_nodelay(true);
}

async fn relay(mut client: TcpStream, masters: &[SocketAddr]) {
    keep_alive(&client);
    for master in masters {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(master)).await {
            Ok(Ok(mut server)) => {
                keep_alive(&server);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                return;
            }
            Ok(Err(error)) => tracing::debug!(%master, %error, "a master refused; trying the next"),
            Err(_) => tracing::debug!(%master, "a master did not answer; trying the next"),
        }
    }
    tracing::warn!("no master took a connection to the API endpoint");
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn each_connection_starts_at_the_next_master() {
        let masters: Vec<SocketAddr> = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(order(&masters, 0), masters);
        assert_eq!(order(&masters, 4)[0], masters[1]);
        assert_eq!(order(&masters, 4).len(), 3);
        assert!(order(&[], 3).is_empty());
    }

    #[tokio::test]
    async fn a_dead_master_is_skipped_and_bytes_pass_both_ways() {
        // A port nobody listens on: bind one, learn it, close it.
        let dead = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let alive = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let alive_addr = alive.local_addr().unwrap();
        let echo = tokio::spawn(async move {
            for _ in 0..2 {
                let (mut stream, _) = alive.accept().await.unwrap();
                let mut buffer = [0; 5];
                stream.read_exact(&mut buffer).await.unwrap();
                stream.write_all(&buffer).await.unwrap();
            }
        });
        let endpoint = ApiEndpoint::start("127.0.0.1:0".parse().unwrap(), vec![dead, alive_addr])
            .await
            .unwrap();
        for _ in 0..2 {
            let mut client = TcpStream::connect(endpoint.addr).await.unwrap();
            client.write_all(b"hello").await.unwrap();
            let mut answer = [0; 5];
            client.read_exact(&mut answer).await.unwrap();
            assert_eq!(&answer, b"hello");
        }
        echo.await.unwrap();
    }
}
