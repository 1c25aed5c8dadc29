//! The cluster DNS (the seeds' coredns), served by every node for its own pods: the
//! `kube-system/kube-dns` Service's address (the tenth of the service range) is sent by the
//! node's proxy to the node's own server on its bridge address, so nodes sharing a machine
//! never compete for port 53.
//!
//! ```text
//!  ServiceView ─ events ─► actor.rs ─ ClusterNames (records.rs, pure) ─► SharedNames
//!  pod ─ 10.96.0.10:53 ─► proxy DNAT ─► <bridge address>:53 ─► server.rs (hickory) ─┘ answer
//! ```
//!
//! - [`records`]: which names exist and what they answer (pure, table-tested).
//! - [`server`]: hickory's UDP and TCP server around them.
//! - [`actor`]: keeps the names current from the node's informers.
//! - [`upstream`]: names outside the cluster, forwarded when `--dns-upstream` is given.

pub mod actor;
pub mod records;
pub mod server;
pub mod upstream;

pub use records::ClusterNames;
pub use server::{DnsServer, SharedNames};
