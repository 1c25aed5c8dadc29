//! The StatefulSet controller: pods with stable names (`<set>-<ordinal>`), stable storage (a
//! claim per pod and claim template) and changes made in order, one pod at a time.
//!
//! - `actor.rs`: the shell: events to keys, the actions carried out in order under the fence.
//! - `reconcile.rs`: the decision (claim pods, fill and empty ordinals in order, scale down,
//!   roll, status, history), pure.
//! - `plan.rs`: what the decision returns: ordered actions, status, waits, requeue.
//! - `identity.rs`: names, hostnames, identity labels, the pod and claims of an ordinal, the
//!   claim retention policy, pure.
//! - `claims.rs`: whether a pod's claims let it be created, and whose claims are under the
//!   retention policy, pure.
//! - `history.rs`: ControllerRevisions: the current and update revision, rollback,
//!   collisions, pruning, pure.
//! - `update.rs`: the update strategy (RollingUpdate with a partition, OnDelete), pure.
//!
//! ```text
//!  caches (set, pods, claims, revisions of its namespace) ─► reconcile(.., now) ─► Plan
//!        ▲                                                                         │
//!        └──── watch events, expectations, requeue_after ◄── actor runs actions ◄──┘
//!                                                             in order, stops at a failure
//! ```

pub mod actor;
pub mod claims;
#[cfg(test)]
mod fixtures;
pub mod history;
pub mod identity;
pub mod plan;
pub mod reconcile;
pub mod update;
