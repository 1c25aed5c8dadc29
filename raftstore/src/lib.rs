//! `rudder-raftstore`: Rudder's replicated key-value store — etcd v3's data model and
//! guarantees on openraft 0.9 and RocksDB, embedded in every master.
//!
//! ```text
//!  client ─► Store (store.rs) ─ validate ─► proposer ─► Raft ─ peers (network.rs, gRPC+bincode)
//!             │  ▲ reads: batched ReadIndex,   (batches)     │ committed entries (log_store.rs:
//!             │  │ then the local replica                    ▼  group-committed fsync)
//!             │  └──────────────── StateMachine (state_machine.rs)
//!             │                      │ Mvcc::apply (mvcc.rs, pure) ─► effects
//!             │                      │ effects + applied log id ─► one RocksDB batch
//!             └─ watch (watch.rs) ◄──┘ feed of applied revisions (keyspace.rs)
//! ```
//!
//! - [`kv`]: the request/response types (etcd's model in plain Rust).
//! - [`mvcc`]: the keyspace, pure but for the history it is given: revisions, versions, txn,
//!   compaction, leases, hash; an overwritten version's value is read back from the
//!   database (`mvcc::History`).
//! - [`sessions`]: exactly-once writes: the pure table of recently applied client requests
//!   (every write carries a request tag; a retry is answered with the first outcome);
//!   [`session_store`]: that table in RocksDB.
//! - [`validate`]: request limits and shape checks before anything reaches the log.
//! - [`log_store`], [`state_machine`], [`db`]: the RocksDB storage behind openraft, and
//!   [`snapshot_file`]: the last Raft snapshot, a file beside the database; [`format`]: the
//!   data directory's format version and migrations.
//! - [`watch`], [`keyspace`]: gap-free watches over the applied state.
//! - [`lease`]: the leader's lease clock (pure); [`compaction`]: automatic compaction (pure);
//!   [`alarms`]: etcd's alarms, NOSPACE past the space quota refusing what adds data (pure).
//! - [`network`]: peer RPCs and request forwarding (calling), with [`append_sender`]
//!   letting a batch of entries outlive openraft's timeout; [`peer_service`]: the peer
//!   port (serving); [`identity`]: the cluster and member ids every peer message carries,
//!   and the check that refuses another cluster's or another member's messages; [`proposer`]: group proposal of writes and batched ReadIndex.
//! - [`election`]: when a member campaigns — a timer drawn afresh for every try, pre-vote,
//!   leadership handover (pure); [`campaign`]: running it over openraft, whose own election
//!   timer is off.
//! - [`metrics`]: the store's Prometheus figures (`rudder_raft_*`, `rudder_store_*`).
//! - [`bbolt`]: bbolt's file format (pure), the database in an etcd snapshot;
//!   `etcd::snapshot_file`: etcd's snapshot file to and from the keyspace's image;
//!   [`restore`]: a new member's data directory from one (`rudder snapshot restore`).
//! - [`store`]: [`Store`], the client API; [`server`]: assembling and running a member,
//!   from its [`member_config`].
//! - [`etcd`]: the etcd v3 gRPC API on the client port; [`front_door`]: the client port,
//!   gRPC to the gRPC services and all else to the HTTP service a master mounts;
//!   [`authority_scheme`]: takes the `http://` off the HTTP/2 `:authority` etcdctl sends.
//! - `test_support` (feature `test-support`, for this crate's and `rudder-apiserver`'s
//!   tests): an in-process cluster of real members on loopback port 0.

// openraft's `StorageError` (returned by every storage call) is large by its design.
#![allow(clippy::result_large_err)]

pub mod alarms;
pub mod append_sender;
pub mod authority_scheme;
pub mod bbolt;
pub mod campaign;
pub mod codec;
pub mod compaction;
pub mod db;
pub mod election;
pub mod error;
pub mod etcd;
pub mod format;
pub mod front_door;
pub mod identity;
pub mod keyspace;
pub mod kv;
pub mod lease;
pub mod log_store;
pub mod member_config;
pub mod metrics;
pub mod mvcc;
pub mod network;
pub mod peer_service;
pub mod proposer;
pub mod restore;
pub mod server;
pub mod session_store;
pub mod sessions;
pub mod snapshot_file;
pub mod state_machine;
pub mod store;
#[cfg(feature = "test-support")]
pub mod test_support;
pub mod types;
pub mod validate;
pub mod watch;

pub use error::KvError;
pub use server::{MemberConfig, RunningMember};
pub use store::{Store, StoreError, StoreOptions};
pub use types::{Member, NodeId};
