//! The node proxy (kube-proxy's job, in nftables mode): Services and their EndpointSlices
//! become this node's nftables table, so that a Service's cluster IP, node ports and
//! load-balancer addresses reach its ready pods, load-balanced in the kernel.
//!
//! - [`model`]: a Service and its slices as the ports the proxy forwards (pure).
//! - [`ruleset`]: those ports as an `nft` script that replaces this node's table in one
//!   transaction (pure).
//! - [`nft`]: running the script.
//! - [`actor`]: the actor that follows Services and slices and keeps the table current.

pub mod actor;
pub mod model;
pub mod nft;
pub mod ruleset;
