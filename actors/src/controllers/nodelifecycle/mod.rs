//! The node lifecycle controller: notices nodes that stopped renewing their Lease, taints
//! nodes that are not ready or unreachable, evicts the pods that do not tolerate that, at a
//! rate that stops when the whole cluster looks down.
//!
//! - `reconcile.rs`: one pass over all nodes (conditions, taints, evictions), pure.
//! - `health.rs`: one node's readiness from its Lease and conditions, and its taints, pure.
//! - `disruption.rs`: zone states and their token buckets (full disruption stops it), pure.
//! - `eviction.rs`: when a pod on a NoExecute-tainted node goes, pure.
//! - `actor.rs`: the shell: a pass at least every monitor period, carried out under the fence.

pub mod actor;
pub mod disruption;
pub mod eviction;
pub mod health;
pub mod reconcile;
