//! `rudder server`: one store member.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use rudder_raftstore::server::RaftOptions;
use rudder_raftstore::validate::Limits;
use rudder_raftstore::{MemberConfig, RunningMember, StoreOptions};

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// This member's name; must appear in --initial-cluster when bootstrapping.
    #[arg(long)]
    name: String,
    /// Where the member keeps its data; restarting on the same directory resumes.
    #[arg(long)]
    data_dir: PathBuf,
    /// Address for clients (the etcd v3 API).
    #[arg(long, default_value = "127.0.0.1:2379")]
    listen_client: SocketAddr,
    /// Address for the other members (Raft traffic).
    #[arg(long, default_value = "127.0.0.1:2380")]
    listen_peer: SocketAddr,
    /// Members of a new cluster: name=peer-address,... (this member included).
    #[arg(long, value_delimiter = ',')]
    initial_cluster: Vec<String>,
    /// Join a running cluster through the peer address of any of its members.
    #[arg(long, conflicts_with = "initial_cluster")]
    join: Option<String>,
    /// Raft heartbeat interval, milliseconds.
    #[arg(long, default_value_t = 50)]
    heartbeat_interval_ms: u64,
    /// Minimum election timeout, milliseconds (the maximum is twice this).
    #[arg(long, default_value_t = 250)]
    election_timeout_ms: u64,
    /// Build a Raft snapshot after this many applied entries.
    #[arg(long, default_value_t = 10_000)]
    snapshot_count: u64,
    /// Log entries kept behind a snapshot for slightly-behind followers.
    #[arg(long, default_value_t = 1_000)]
    snapshot_catchup_entries: u64,
    /// Largest request in bytes.
    #[arg(long, default_value_t = 1536 * 1024)]
    max_request_bytes: usize,
    /// Most operations in one transaction branch.
    #[arg(long, default_value_t = 128)]
    max_txn_ops: usize,
    /// Most watches on one client stream.
    #[arg(long, default_value_t = 10_000)]
    max_watchers_per_stream: usize,
    /// Largest gRPC message accepted on the client port, bytes.
    #[arg(long, default_value_t = 2 * 1024 * 1024)]
    max_grpc_message_bytes: usize,
    /// Most concurrent streams per client connection.
    #[arg(long, default_value_t = 4096)]
    max_concurrent_streams: u32,
    /// How long a request waits for a leader before failing, milliseconds.
    #[arg(long, default_value_t = 7000)]
    request_timeout_ms: u64,
    /// Interval of watch progress notifications, milliseconds.
    #[arg(long, default_value_t = 600_000)]
    watch_progress_interval_ms: u64,
}

fn parse_initial_cluster(entries: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    entries
        .iter()
        .map(|entry| match entry.split_once('=') {
            Some((name, addr)) if !name.is_empty() && !addr.is_empty() => {
                let addr = addr.trim_start_matches("http://").trim_end_matches('/');
                Ok((name.to_owned(), addr.to_owned()))
            }
            _ => bail!("--initial-cluster entry {entry:?} is not name=host:port"),
        })
        .collect()
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let config = MemberConfig {
        name: args.name.clone(),
        data_dir: args.data_dir.clone(),
        listen_client: args.listen_client,
        listen_peer: args.listen_peer,
        initial_cluster: parse_initial_cluster(&args.initial_cluster)?,
        join: args.join.clone(),
        raft: RaftOptions {
            heartbeat_interval: Duration::from_millis(args.heartbeat_interval_ms),
            election_timeout: Duration::from_millis(args.election_timeout_ms),
            snapshot_entries: args.snapshot_count,
            keep_entries: args.snapshot_catchup_entries,
        },
        store: StoreOptions {
            limits: Limits {
                max_request_bytes: args.max_request_bytes,
                max_txn_ops: args.max_txn_ops,
                max_watchers_per_stream: args.max_watchers_per_stream,
                max_grpc_message_bytes: args.max_grpc_message_bytes,
                max_concurrent_streams: args.max_concurrent_streams,
            },
            request_timeout: Duration::from_millis(args.request_timeout_ms),
            watch_progress_interval: Duration::from_millis(args.watch_progress_interval_ms),
        },
    };
    let member = RunningMember::start(config).await.with_context(|| {
        format!(
            "starting member {} with data in {:?}",
            args.name, args.data_dir
        )
    })?;
    // Machine-readable line for scripts and tests that start members on port 0.
    println!(
        "rudder server {} ready: client {} peer {} id {:x}",
        args.name, member.client_addr, member.peer_addr, member.id
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; stopping"),
        _ = terminate.recv() => tracing::info!("terminated; stopping"),
        reason = member.failed() => {
            tracing::error!(%reason, "member stopped after a fatal error");
            bail!("member stopped: {reason}");
        }
    }
    member.shutdown().await;
    Ok(())
}
