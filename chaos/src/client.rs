//! etcd v3 API clients over tonic, for tests, benchmarks and the chaos runner; and
//! [`scrape`], a component's `/metrics`.

use std::time::Duration;

use rudder_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use rudder_proto::etcdserverpb::kv_client::KvClient;
use rudder_proto::etcdserverpb::lease_client::LeaseClient;
use rudder_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use rudder_proto::etcdserverpb::watch_client::WatchClient;
use rudder_proto::etcdserverpb::{Compare, RangeRequest};
use rudder_proto::tls::ClientTls;
use tonic::transport::{Channel, Endpoint};

/// One HTTP/2 connection to `addr` (host:port); requests time out after 10 s.
pub async fn channel(addr: &str) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .connect()
        .await
}

/// [`channel`], over TLS with `tls` when given (a master with `--pki`).
pub async fn channel_with(addr: &str, tls: Option<&ClientTls>) -> Result<Channel, String> {
    let dial = rudder_proto::dial::Dial::master(addr, tls);
    let endpoint = dial
        .endpoint()?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(10))
        .tcp_nodelay(true);
    dial.connect(endpoint).await
}

/// A Maintenance client of `addr`, over TLS with `tls` when given.
pub async fn maintenance_with(
    addr: &str,
    tls: Option<&ClientTls>,
) -> Result<MaintenanceClient<Channel>, String> {
    Ok(MaintenanceClient::new(channel_with(addr, tls).await?))
}

/// Like [`channel`], without a per-request timeout (for long-lived streams).
pub async fn stream_channel(addr: &str) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .connect()
        .await
}

/// A transaction's compare that holds while `key` does not exist (its create revision is 0).
pub fn absent(key: &[u8]) -> Compare {
    Compare {
        result: CompareResult::Equal.into(),
        target: CompareTarget::Create.into(),
        key: key.to_vec(),
        range_end: Vec::new(),
        target_union: Some(TargetUnion::CreateRevision(0)),
    }
}

pub async fn kv(addr: &str) -> Result<KvClient<Channel>, tonic::transport::Error> {
    Ok(KvClient::new(channel(addr).await?))
}

pub async fn lease(addr: &str) -> Result<LeaseClient<Channel>, tonic::transport::Error> {
    Ok(LeaseClient::new(channel(addr).await?))
}

pub async fn maintenance(
    addr: &str,
) -> Result<MaintenanceClient<Channel>, tonic::transport::Error> {
    Ok(MaintenanceClient::new(channel(addr).await?))
}

pub async fn watch(addr: &str) -> Result<WatchClient<Channel>, tonic::transport::Error> {
    Ok(WatchClient::new(stream_channel(addr).await?))
}

/// The Prometheus text a component serves at `http://<endpoint>/metrics` (a master's client
/// address, a node's endpoint, a `--metrics-bind-address`), within 5 s.
pub async fn scrape(endpoint: &str) -> Result<String, String> {
    scrape_with(endpoint, None).await
}

/// [`scrape`], over TLS with `tls` when given (a master with `--pki`).
pub async fn scrape_with(endpoint: &str, tls: Option<&ClientTls>) -> Result<String, String> {
    let tls = tls
        .map(rudder_proto::dial::http1_config)
        .transpose()
        .map_err(|error| error.to_string())?;
    let (status, text) = get(endpoint, "/metrics", tls, Duration::from_secs(5)).await?;
    if !status.is_success() {
        return Err(format!("{endpoint}/metrics answered {status}: {text}"));
    }
    Ok(text)
}

/// `GET path` from `endpoint` (host:port) over HTTP/1.1, over TLS with `tls` when given,
/// within `limit`: the status and the body.
pub async fn get(
    endpoint: &str,
    path: &str,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    limit: Duration,
) -> Result<(hyper::StatusCode, String), String> {
    use http_body_util::{BodyExt, Empty};

    let failed = |error: &dyn std::fmt::Display| format!("{endpoint}: {error}");
    let read = async {
        let stream = tokio::net::TcpStream::connect(endpoint)
            .await
            .map_err(|e| failed(&e))?;
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, endpoint)
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| failed(&e))?;
        let response = match tls {
            None => send(stream, request).await,
            Some(tls) => {
                let host = endpoint.rsplit_once(':').map_or(endpoint, |(host, _)| host);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| failed(&e))?;
                let stream = tokio_rustls::TlsConnector::from(tls)
                    .connect(name, stream)
                    .await
                    .map_err(|e| failed(&e))?;
                send(stream, request).await
            }
        }
        .map_err(|e| failed(&e))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| failed(&e))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(limit, read)
        .await
        .unwrap_or_else(|_| Err(format!("{endpoint}{path} did not answer within {limit:?}")))
}

/// Sends `request` on a connection of its own over `stream` (HTTP/1.1).
async fn send<S>(
    stream: S,
    request: hyper::Request<http_body_util::Empty<bytes::Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    sender.send_request(request).await
}

/// The revision a linearizable read on `addr` sees, retried until `limit` (a member just
/// restarted may not serve yet).
pub async fn revision_now(addr: &str, limit: Duration) -> Result<i64, String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let read = RangeRequest {
            key: b"\0".to_vec(),
            count_only: true,
            ..Default::default()
        };
        let answered = tokio::time::timeout(Duration::from_secs(2), async {
            kv(addr).await.ok()?.range(read).await.ok()
        })
        .await;
        if let Ok(Some(answer)) = answered {
            if let Some(header) = answer.into_inner().header {
                return Ok(header.revision);
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{addr} did not answer a read within {limit:?}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
