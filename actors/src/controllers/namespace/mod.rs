//! The namespace controller: a terminating namespace is emptied (everything in it deleted,
//! waiting for what takes time to go) and then finalized, as kube-controller-manager's.
//! It replaces the loop the API server ran, so the work survives the master that took the
//! delete (any leader picks a terminating namespace up from its cache).
//!
//! - `reconcile.rs` (pure): the next step for one namespace;
//! - `actor.rs`: discovery of the namespaced kinds, the deletes, the finalize write.

pub mod actor;
pub mod reconcile;
