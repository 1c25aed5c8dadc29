//! Where a component that runs on its own (`rudder controller-manager`, `rudder scheduler`,
//! `rudder proxy`) serves `GET /metrics`: `--metrics-bind-address`, on loopback at
//! Kubernetes' ports by default (10257, 10259, 10249), as kube's components do. (A master
//! serves its metrics on its client port, a node on its endpoint port.)

use std::net::SocketAddr;

use anyhow::Context;
use axum::routing::get;
use rudder_proto::metrics::{Metrics, CONTENT_TYPE};

/// The controller manager's default (kube-controller-manager's port).
pub const CONTROLLER_MANAGER: &str = "127.0.0.1:10257";
/// The scheduler's default (kube-scheduler's port).
pub const SCHEDULER: &str = "127.0.0.1:10259";
/// The proxy's default (kube-proxy's metrics port).
pub const PROXY: &str = "127.0.0.1:10249";

/// Serves `metrics` at `address` (`""` or `0`: nowhere) until the process ends; returns
/// the address bound.
pub async fn serve(address: &str, metrics: Metrics) -> anyhow::Result<Option<SocketAddr>> {
    if address.is_empty() || address == "0" {
        return Ok(None);
    }
    let address: SocketAddr = address.parse().with_context(|| {
        format!("--metrics-bind-address {address:?} is not an address such as 127.0.0.1:10249 (\"0\" turns it off)")
    })?;
    let listener = tokio::net::TcpListener::bind(address).await.with_context(|| {
        format!("binding --metrics-bind-address {address} (another process there? pick another port, or \"0\" to serve none)")
    })?;
    let bound = listener.local_addr()?;
    let router = axum::Router::new().route(
        "/metrics",
        get(move || async move {
            (
                [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)],
                metrics.encode(),
            )
        }),
    );
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::warn!(%error, "the metrics endpoint stopped");
        }
    });
    Ok(Some(bound))
}
