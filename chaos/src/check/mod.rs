//! Checkers of recorded histories (DESIGN.md §8): pure functions from what clients were
//! answered and what the cluster shows to the list of violations. Each checks both
//! directions — nothing acknowledged is lost, and nothing is applied twice.
//!
//! - [`once`]: writes of unique values against a watch of every change.
//! - [`linear`]: linearizability of a key-value history, key by key, within a time budget.
//! - [`serializable`]: each serializable read saw its key as the record has it at the
//!   revision the answer names.
//! - [`watch`]: each watcher saw every change of its range once, in order, as made.
//! - [`kube`]: Kubernetes invariants over the store's record of the objects (no pod bound
//!   twice, no node over its allocatable, ReplicaSets and Deployments within their bounds,
//!   one pod per StatefulSet ordinal).

pub mod kube;
pub mod linear;
pub mod once;
pub mod serializable;
pub mod watch;
