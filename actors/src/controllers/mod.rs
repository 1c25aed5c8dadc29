//! Every controller: a pure `reconcile` (in its own `reconcile.rs`, table-tested) and the
//! actor that feeds it from the informers' caches and carries its actions out.
//!
//! - [`replicaset`]: ReplicaSets and ReplicationControllers keep `replicas` pods.
//! - [`job`]: Jobs run pods to completion.
//! - [`cronjob`]: CronJobs create Jobs on a cron schedule.

pub mod cronjob;
pub mod job;
pub mod replicaset;
