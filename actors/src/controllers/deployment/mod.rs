//! The Deployment controller: rolling updates and Recreate over ReplicaSets, revisions and
//! their history, pause, and the progress deadline.
//!
//! - `reconcile.rs`: the decision, pure.
//! - `rolling.rs`: the rollout's arithmetic over ReplicaSet sizes (surge, unavailability,
//!   proportional resizing), pure.
//! - `progress.rs`: the Available and Progressing conditions, pure.
//! - `sets.rs`: the Deployment's ReplicaSets: the new one, sizes, revisions, history, pure.
//! - `hash.rs`: the pod-template-hash naming a template's ReplicaSet.
//! - `actor.rs`: the shell: cache events to keys, workers that reconcile and act.

pub mod actor;
pub mod hash;
pub mod progress;
pub mod reconcile;
pub mod rolling;
pub mod sets;
