//! The ServiceAccount controller (kube-controller-manager's `serviceaccount-controller`):
//! every active namespace has the ServiceAccount `default`, created with the namespace and
//! created again when it is deleted; a terminating namespace gets nothing.
//!
//! - `reconcile.rs`: which accounts one namespace lacks, pure.
//! - `actor.rs`: the shell: namespace and account events to namespace keys, the creates
//!   under the leader's fence.

pub mod actor;
pub mod reconcile;
