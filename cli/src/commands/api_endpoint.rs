//! The one address `rudder up` gives its cluster, which survives any one master's death: a
//! TCP balancer on a fixed loopback port in front of the masters' client ports (as k3s
//! agents run one), so a kubeconfig, which names one server, keeps working. Each connection
//! goes to the next ready master in turn: every [`PROBE_EVERY`] each master's `/readyz` is
//! asked (a restarting master binds its port before it can serve), and the unready are tried
//! only when no master is ready. A master that refuses or does not answer the connect within
//! [`CONNECT_TIMEOUT`] is skipped for the next. Bytes pass through untouched: gRPC,
//! HTTP/1.1, h2 and upgraded streams alike.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long a connect to one master may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How often each master's readiness is asked, and how long its answer may take.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// A running balancer; dropping it stops it and every connection it relays.
pub struct ApiEndpoint {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
    probe: JoinHandle<()>,
}

impl Drop for ApiEndpoint {
    fn drop(&mut self) {
        self.task.abort();
        self.probe.abort();
    }
}

/// The masters to try for the `turn`-th connection: the ready ones starting one further on
/// each time, then the unready in the same rotation, as a last resort (pure). `ready[i]`
/// says whether `masters[i]` answered its last readiness probe.
pub fn order(masters: &[SocketAddr], ready: &[bool], turn: usize) -> Vec<SocketAddr> {
    if masters.is_empty() {
        return Vec::new();
    }
    let start = turn % masters.len();
    let rotated: Vec<usize> = (start..masters.len()).chain(0..start).collect();
    let is_ready = |i: &usize| ready.get(*i).copied().unwrap_or(true);
    rotated
        .iter()
        .filter(|i| is_ready(i))
        .chain(rotated.iter().filter(|i| !is_ready(i)))
        .map(|i| masters[*i])
        .collect()
}

/// Whether `master` answers `GET /readyz` with 200 within [`PROBE_EVERY`] (over TLS
/// trusting `tls`'s CA when the masters speak it).
async fn is_ready(master: SocketAddr, tls: Option<Arc<rustls::ClientConfig>>) -> bool {
    let master = master.to_string();
    let asked = rudder_chaos::client::get(&master, "/readyz", tls, PROBE_EVERY).await;
    matches!(asked, Ok((status, _)) if status.is_success())
}

impl ApiEndpoint {
    /// Listens on `listen` and balances over `masters`, probing them over TLS with `tls`
    /// when they speak it.
    pub async fn start(
        listen: SocketAddr,
        masters: Vec<SocketAddr>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(listen).await.with_context(|| {
            format!(
                "binding the cluster's API endpoint {listen}: is another cluster using it? \
                 give `rudder up` another --api-port"
            )
        })?;
        let addr = listener.local_addr()?;
        let masters = Arc::new(masters);
        let turns = Arc::new(AtomicUsize::new(0));
        // Ready until a probe says otherwise, so the first connections are not held back.
        let ready: Arc<Vec<AtomicBool>> =
            Arc::new(masters.iter().map(|_| AtomicBool::new(true)).collect());
        let probe = tokio::spawn({
            let (masters, ready) = (masters.clone(), ready.clone());
            async move {
                loop {
                    let asked = masters.iter().map(|m| is_ready(*m, tls.clone()));
                    let answers = futures::future::join_all(asked).await;
                    for (flag, answer) in ready.iter().zip(answers) {
                        flag.store(answer, Ordering::Relaxed);
                    }
                    tokio::time::sleep(PROBE_EVERY).await;
                }
            }
        });
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
                let now_ready: Vec<bool> = ready
                    .iter()
                    .map(|flag| flag.load(Ordering::Relaxed))
                    .collect();
                let masters = order(&masters, &now_ready, turn);
                relays.spawn(async move {
                    relay(client, &masters).await;
                });
            }
        });
        Ok(Self { addr, task, probe })
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
        let all = [true, true, true];
        assert_eq!(order(&masters, &all, 0), masters);
        assert_eq!(order(&masters, &all, 4)[0], masters[1]);
        assert_eq!(order(&masters, &all, 4).len(), 3);
        assert!(order(&[], &[], 3).is_empty());
        // A master that is not ready goes last, whatever the turn.
        let second_down = [true, false, true];
        assert_eq!(
            order(&masters, &second_down, 1),
            [masters[2], masters[0], masters[1]]
        );
        assert_eq!(
            order(&masters, &[false, false, false], 2),
            [masters[2], masters[0], masters[1]],
            "none ready: all of them, in turn"
        );
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
        // Echoes five bytes per connection, for as many connections as come (the
        // endpoint's readiness probes among them: they read as not ready, which only
        // moves this master last).
        let echo = tokio::spawn(async move {
            loop {
                let (mut stream, _) = alive.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buffer = [0; 5];
                    if stream.read_exact(&mut buffer).await.is_ok() {
                        let _ = stream.write_all(&buffer).await;
                    }
                });
            }
        });
        let endpoint =
            ApiEndpoint::start("127.0.0.1:0".parse().unwrap(), vec![dead, alive_addr], None)
                .await
                .unwrap();
        for _ in 0..2 {
            let mut client = TcpStream::connect(endpoint.addr).await.unwrap();
            client.write_all(b"hello").await.unwrap();
            let mut answer = [0; 5];
            client.read_exact(&mut answer).await.unwrap();
            assert_eq!(&answer, b"hello");
        }
        echo.abort();
    }
}
