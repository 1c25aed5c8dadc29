//! The node proxy (kube-proxy's job, in nftables mode): Services and their EndpointSlices
//! become this node's nftables table, so that a Service's cluster IP, node ports and
//! load-balancer addresses reach its ready pods, load-balanced in the kernel.
//!
//! - [`model`]: a Service and its slices as the ports the proxy forwards (pure).
//! - [`ruleset`]: those ports as this node's table, a value (pure).
//! - [`script`]: a table as an `nft` script — the whole table replaced, or only what
//!   differs from the last one — each one transaction (pure).
//! - [`nft`]: running a script.
//! - [`conntrack`]: the UDP flows a change leaves wrong (pure), deleted after the sync.
//! - [`metrics`]: the proxy's Prometheus figures (sync duration, failures, table size).
//! - [`actor`]: the actor that follows Services and slices and keeps the table current.

pub mod actor;
pub mod conntrack;
pub mod metrics;
pub mod model;
pub mod nft;
pub mod ruleset;
pub mod script;
#[cfg(test)]
mod testing;
