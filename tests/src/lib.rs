//! `rudder-tests`: end-to-end tests against the real `rudder` binary. The process driver
//! lives in `rudder-chaos` (the chaos runner and the benchmarks use it too); this crate adds
//! what only tests need.

pub use rudder_chaos::client::{kv, maintenance, watch};
pub use rudder_chaos::cluster::{rudder_binary_beside_tests, ProcessCluster};
