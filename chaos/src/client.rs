//! etcd v3 API clients over tonic, for tests, benchmarks and the chaos runner; and
//! [`scrape`], a component's `/metrics`.

use std::time::Duration;

use rudder_proto::etcdserverpb::kv_client::KvClient;
use rudder_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use rudder_proto::etcdserverpb::watch_client::WatchClient;
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

/// Like [`channel`], without a per-request timeout (for long-lived streams).
pub async fn stream_channel(addr: &str) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .connect()
        .await
}

pub async fn kv(addr: &str) -> Result<KvClient<Channel>, tonic::transport::Error> {
    Ok(KvClient::new(channel(addr).await?))
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
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let uri: hyper::Uri = format!("http://{endpoint}/metrics")
        .parse()
        .map_err(|error| format!("{endpoint:?} is not host:port: {error}"))?;
    let read = async {
        let response = client
            .get(uri)
            .await
            .map_err(|error| format!("{endpoint}: {error}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| format!("{endpoint}: {error}"))?
            .to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        if !status.is_success() {
            return Err(format!("{endpoint}/metrics answered {status}: {text}"));
        }
        Ok(text)
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .unwrap_or_else(|_| Err(format!("{endpoint}/metrics did not answer within 5 s")))
}
