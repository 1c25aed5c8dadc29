//! etcd v3 API clients over tonic, for tests, benchmarks and the chaos runner.

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
