//! Workloads for the chaos runner and the tests: each records every operation with its
//! invocation and completion, for the checkers of [`crate::check`].
//!
//! - [`kv`]: puts, reads and compare-and-swaps through the etcd API.

pub mod kv;
