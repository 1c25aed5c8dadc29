//! `rudder-printers`: what a user sees of an object — kubectl's tables (columns per kind,
//! AGE, the `-o wide` ones) and `describe`. One implementation for the CLI and for the
//! HTTP API's server-side printing (`meta.k8s.io/v1` Tables). Pure: objects and the current
//! time in, text out.
//!
//! ```text
//! object ──▶ table::row ──▶ pod / cells / network / volumes / workloads / access ──┐
//!              (fields: tolerant JSON reads; age: AGE)                     ├──▶ tabwriter
//! object + events ──▶ describe ──▶ describe_pod / describe_kinds / yaml ───┘
//! ```

mod access;
pub mod age;
mod cells;
pub mod describe;
mod describe_kinds;
mod describe_pod;
#[cfg(test)]
mod describe_tests;
mod describe_writer;
mod fields;
mod network;
mod pod;
pub mod table;
mod tabwriter;
#[cfg(test)]
mod test_support;
mod volumes;
mod workloads;
mod yaml;
