//! Workloads for the chaos runner and the tests: each records every operation with its
//! invocation and completion, for the checkers of [`crate::check`].
//!
//! - [`kv`]: puts, deletes, reads (linearizable and serializable), compare-and-swaps and
//!   leases through the etcd API, and what each write's client was told.
//! - [`objects`]: ConfigMaps read, created, updated (compare-and-swap on the
//!   resourceVersion) and deleted through the Rudder API.
//! - [`pods`]: ReplicaSets, Deployments and a StatefulSet scaled (the Deployments rolled
//!   out) through the Rudder API, on hollow nodes, for the controllers and the scheduler
//!   to carry out.
//! - [`watchers`]: watches beside a workload, resumed on another member when a stream
//!   breaks.

pub mod kv;
pub mod objects;
pub mod pods;
pub mod watchers;
