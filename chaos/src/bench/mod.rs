//! Benchmarks: load generators and measurements behind `rudder bench ...`.

pub mod failover;
pub mod kv;
pub mod stats;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("no endpoints to measure: give --endpoints host:port,... or --spawn rudder|etcd")]
    NoEndpoints,
    #[error("connecting to {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("benchmark setup failed: {0}")]
    Setup(String),
}
