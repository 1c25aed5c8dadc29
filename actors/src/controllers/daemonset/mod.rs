//! The DaemonSet controller: one pod per eligible node, updated node by node.
//!
//! - `reconcile.rs`: the decision (claim, manage per node, update step, status), pure.
//! - `placement.rs`: which nodes fit (daemon tolerations, selector, affinity, taints) and the
//!   pod made for one, pinned by node affinity for the scheduler to bind.
//! - `rollout.rs`: the RollingUpdate step (maxUnavailable, maxSurge), pure.
//! - `history.rs`: the template hash and ControllerRevisions, pure.
//! - `actor.rs`: the shell: events to keys, the plan carried out under the fence.
//! - `backoff.rs`: the per-node wait between deleting failed daemon pods, pure state.

pub mod actor;
pub mod backoff;
pub mod history;
pub mod placement;
pub mod reconcile;
pub mod rollout;
