//! The ReplicaSet controller, which also runs ReplicationControllers (the same controller
//! with a plain label map for a selector).
//!
//! - `reconcile.rs`: the decision (claim, scale, status), pure.
//! - `rank.rs`: which pods go first when the set shrinks, pure.

pub mod rank;
pub mod reconcile;
