//! The ReplicaSet controller, which also runs ReplicationControllers (the same controller
//! with a plain label map for a selector).
//!
//! - `reconcile.rs`: the decision (claim, scale, status), pure.
//! - `rank.rs`: which pods go first when the set shrinks, pure.
//! - `actor.rs`: the shell: cache events to keys, workers that reconcile and act.

pub mod actor;
pub mod rank;
pub mod reconcile;
