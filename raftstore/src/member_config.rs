//! What a store member is started with ([`MemberConfig`], [`RaftOptions`]) and why it may
//! fail to start ([`ServerError`]); `crate::server` starts it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rudder_proto::metrics::Metrics;
use rudder_proto::tls::PeerTls;

use crate::compaction::Retention;
use crate::db::DbError;
use crate::identity::InitialClusterError;
use crate::store::{StoreError, StoreOptions};
use crate::types::NodeId;

/// Raft timing and log retention of a member.
#[derive(Debug, Clone)]
pub struct RaftOptions {
    pub heartbeat_interval: Duration,
    /// A follower that heard nothing from a leader for this long (the leader's lease) and
    /// then a random fifth to whole of it again asks the voters for a pre-vote, and with a
    /// quorum's, starts an election (`election.rs`). At least 3 heartbeats.
    pub election_timeout: Duration,
    /// Build a snapshot after this many applied entries since the last one.
    pub snapshot_entries: u64,
    /// Entries kept in the log behind the last snapshot (for followers slightly behind).
    pub keep_entries: u64,
}

impl Default for RaftOptions {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(30),
            election_timeout: Duration::from_millis(150),
            snapshot_entries: 10_000,
            keep_entries: 1_000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct MemberConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client: SocketAddr,
    pub listen_peer: SocketAddr,
    /// `name=peer_addr` of every member of a new cluster, this one included.
    pub initial_cluster: Vec<(String, String)>,
    /// Tells a new cluster from any other with the same `initial_cluster` (etcd's
    /// `--initial-cluster-token`); may be empty. Read only when bootstrapping.
    pub initial_cluster_token: String,
    /// The peer address of any member of a running cluster to join.
    pub join: Option<String>,
    pub raft: RaftOptions,
    pub store: StoreOptions,
    pub auto_compaction: Retention,
    /// Where the member registers its metrics (`rudder_raft_*`, `rudder_store_*`): the
    /// process' registry. A member registers once per start, so a member restarted in the
    /// same process needs a fresh registry.
    pub metrics: Metrics,
    /// TLS between the members (none: plaintext, for members on loopback).
    pub peer_tls: Option<PeerTls>,
}

impl MemberConfig {
    /// This configuration with a registry of its own (for a member restarted in a process
    /// that ran it before: each start registers its metrics anew).
    pub fn with_fresh_metrics(self) -> Self {
        Self {
            metrics: Metrics::default(),
            ..self
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Format(#[from] crate::format::FormatError),
    #[error("creating the data directory {path:?}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("binding {what} address {addr}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid Raft settings")]
    RaftConfig(#[from] openraft::ConfigError),
    #[error(
        "--election-timeout-ms {election_ms} must be at least 3 times --heartbeat-interval-ms \
         {heartbeat_ms} (and the heartbeat at least 1 ms): a follower would start elections \
         between a live leader's heartbeats"
    )]
    RaftTimers { heartbeat_ms: u64, election_ms: u64 },
    #[error("starting Raft")]
    Raft(#[from] openraft::error::Fatal<NodeId>),
    #[error(
        "--initial-cluster does not list this member's name {name:?}: add {name}=<peer address>"
    )]
    NotInInitialCluster { name: String },
    #[error(
        "a new member needs --initial-cluster (to bootstrap) or --join (to join a running cluster)"
    )]
    NoClusterToForm,
    #[error(
        "{path:?} was restored from a snapshot: it forms a new cluster (start it with \
         --initial-cluster), it cannot join a running one; to add a member to a running \
         cluster, start it with --join on an empty data directory"
    )]
    RestoredJoin { path: PathBuf },
    #[error(transparent)]
    InitialCluster(#[from] InitialClusterError),
    #[error(
        "member {name:?} was created for a different --initial-cluster than it is given now: \
         give it the list it first started with, or a fresh --data-dir"
    )]
    InitialClusterChanged { name: String },
    #[error("joining the cluster through {endpoint}: {source}")]
    Join {
        endpoint: String,
        #[source]
        source: StoreError,
    },
}
