//! The pod garbage collector (kube-controller-manager's PodGC): finished pods beyond
//! `--terminated-pod-gc-threshold` (oldest first), pods bound to a node that no longer
//! exists, and terminating pods no kubelet will finish (never scheduled, or on a node
//! tainted out-of-service) are force-deleted.
//!
//! - `reconcile.rs`: one pass over every pod, with the quarantine of missing nodes, pure.
//! - `actor.rs`: the shell: a pass every 20 s and on relevant events, the live reads of
//!   quarantined nodes, the status writes and force deletes under the leader's fence.

pub mod actor;
pub mod reconcile;
