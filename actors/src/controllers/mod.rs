//! Every controller: a pure `reconcile` (in its own `reconcile.rs`, table-tested) and the
//! actor that feeds it from the informers' caches and carries its actions out.
//!
//! - [`daemonset`]: DaemonSets run one pod on every node that fits.
//! - [`nodelifecycle`]: nodes gone silent become Unknown and tainted, their pods evicted at a
//!   safe rate.
//! - [`nodeipam`]: nodes registered without a pod range get the next free block.
//! - [`replicaset`]: ReplicaSets and ReplicationControllers keep `replicas` pods.
//! - [`deployment`]: Deployments roll their template out over ReplicaSets.
//! - [`job`]: Jobs run pods to completion.
//! - [`statefulset`]: StatefulSets keep one pod per ordinal, with stable names and claims.
//! - [`cronjob`]: CronJobs create Jobs on a cron schedule.
//! - [`runtime`]: what every controller's shell shares (the trait, the one actor, the
//!   cache-sync gate, the worker loop); [`writes`]: the fenced writes they share (slow-start
//!   creates, deletes, owner references).

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod job;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod replicaset;
pub mod runtime;
pub mod statefulset;
pub mod writes;

/// Tells a controller actor to stop (its leadership ended).
#[derive(Debug, Clone, Copy, actix::Message)]
#[rtype(result = "()")]
pub struct Stop;
