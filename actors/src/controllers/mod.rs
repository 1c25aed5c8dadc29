//! Every controller: a pure `reconcile` (in its own `reconcile.rs`, table-tested) and the
//! actor that feeds it from the informers' caches and carries its actions out.
//!
//! - [`daemonset`]: DaemonSets run one pod on every node that fits.
//! - [`disruption`]: PodDisruptionBudgets' status: how many of their pods may be disrupted
//!   now (what the eviction subresource allows).
//! - [`endpoints`]: every Service with a selector has Endpoints and EndpointSlices listing
//!   the pods behind it, ready or not.
//! - [`garbagecollector`]: objects whose owners are gone are deleted; Foreground and Orphan
//!   deletions are carried out through their finalizers.
//! - [`namespace`]: terminating namespaces are emptied, then finalized.
//! - [`nodelifecycle`]: nodes gone silent become Unknown and tainted, their pods evicted at a
//!   safe rate.
//! - [`nodeipam`]: nodes registered without a pod range get the next free block.
//! - [`podgc`]: pods whose node is gone, terminating pods no kubelet will finish, and finished
//!   pods beyond a threshold are force-deleted.
//! - [`serviceaccount`]: every active namespace has the ServiceAccount `default`.
//! - [`replicaset`]: ReplicaSets and ReplicationControllers keep `replicas` pods.
//! - [`deployment`]: Deployments roll their template out over ReplicaSets.
//! - [`job`]: Jobs run pods to completion.
//! - [`statefulset`]: StatefulSets keep one pod per ordinal, with stable names and claims.
//! - [`cronjob`]: CronJobs create Jobs on a cron schedule.
//! - [`volume`]: PersistentVolumeClaims bound to volumes, or given one by the built-in
//!   local-path provisioner on their first pod's node; released volumes reclaimed.
//! - [`runtime`]: what every controller's shell shares (the trait, the one actor, the
//!   cache-sync gate, the worker loop), measured in [`metrics`]; [`writes`]: the fenced writes they share (slow-start
//!   creates, deletes, owner references).

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod garbagecollector;
pub mod job;
pub mod metrics;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podgc;
pub mod replicaset;
pub mod runtime;
pub mod serviceaccount;
pub mod statefulset;
pub mod volume;
pub mod writes;

/// Tells a controller actor to stop (its leadership ended).
#[derive(Debug, Clone, Copy, actix::Message)]
#[rtype(result = "()")]
pub struct Stop;
