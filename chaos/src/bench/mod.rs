//! Benchmarks: load generators and measurements behind `rudder bench ...`.

pub mod api;
pub mod api_http;
pub mod failover;
pub mod kv;
pub mod pod_startup;
pub mod restart;
pub mod sealing;
pub mod stats;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("no endpoints to measure: give --endpoints host:port,... or --spawn rudder|etcd")]
    NoEndpoints,
    #[error("connecting to {endpoint}: is a store listening there?")]
    Connect {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// Over TLS (a member with `--pki`): the handshake's or the connection's words.
    #[error("connecting to {endpoint} over TLS: {reason}")]
    Dial { endpoint: String, reason: String },
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("preparing the benchmark: {what} failed: {status}")]
    Prepare {
        what: &'static str,
        status: tonic::Status,
    },
    #[error("{0} (the cluster did not recover in time: see the members' logs)")]
    Stalled(&'static str),
    #[error("a load task panicked: {0}")]
    TaskPanicked(#[from] tokio::task::JoinError),
}
