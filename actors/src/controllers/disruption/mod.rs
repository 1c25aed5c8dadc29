//! The disruption controller (kube-controller-manager's `disruption`): keeps each
//! PodDisruptionBudget's status — how many pods it expects, how many are healthy, how many
//! may be disrupted now — which the API server's eviction subresource reads and decrements.
//!
//! - `reconcile.rs`: a budget's status from the pods it counts and their controllers'
//!   replicas, approved evictions awaited for up to two minutes; pure, table-tested.
//! - `actor.rs`: the shell: budget, pod and workload events to budget keys; the status
//!   written under the leader's fence at the resourceVersion it was computed from; a look
//!   again when an awaited eviction times out.

pub mod actor;
pub mod reconcile;
