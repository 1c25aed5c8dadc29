//! `rudder-chaos`: drives clusters under test and measures them.
//!
//! - [`cluster`]: start, kill (by PID), restart real member processes — Rudder's or etcd's.
//! - [`client`]: etcd v3 gRPC clients; everything here speaks only that API, so the same
//!   code measures Rudder and etcd side by side.
//! - [`bench`]: load generators (`rudder bench kv ...`), failover measurement, and the pure
//!   statistics they report.
//!
//! - [`check`]: pure checkers of recorded histories ([`check::once`]: nothing applied
//!   twice, nothing acknowledged lost; [`check::linear`]: linearizability, key by key;
//!   [`check::watch`]: watches against the store's history).
//!
//! - [`workload`]: client loads that record every operation for the checkers
//!   ([`workload::kv`]: puts, reads and swaps through the etcd API).
//!
//! Fault injection and the runner of DESIGN.md §8 grow here next.

pub mod bench;
pub mod check;
pub mod client;
pub mod cluster;
pub mod workload;
