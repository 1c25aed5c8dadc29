//! Workloads for the chaos runner and the tests: each records every operation with its
//! invocation and completion, for the checkers of [`crate::check`].
//!
//! - [`kv`]: puts, reads and compare-and-swaps through the etcd API, and what each write's
//!   client was told.
//! - [`pods`]: ReplicaSets and Deployments scaled and rolled out through the Rudder API,
//!   on hollow nodes, for the controllers and the scheduler to carry out.
//! - [`watchers`]: watches beside a workload, resumed on another member when a stream
//!   breaks.

pub mod kv;
pub mod pods;
pub mod watchers;
