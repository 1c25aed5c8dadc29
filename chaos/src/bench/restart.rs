//! `rudder bench restart`: how long a member killed with -9 takes to serve again once the
//! store has taken many writes from many clients: what it reads back at start (Rudder: its
//! RocksDB WAL, Raft log and per-client session records; etcd: its WAL and snapshot). A
//! session-store change once made a restart take minutes (tens of thousands of range
//! tombstones replayed from the WAL); this keeps such a regression visible.
//!
//! The figure runs from the kill until a linearizable read through the restarted member
//! succeeds. A different follower each run, caught up before it is killed (never the
//! leader: that would time an election, `bench failover`'s figure; a run in which
//! leadership moved anyway says so). The figure includes what the harness waits for before
//! reading (Rudder's ready line; etcd's first Status answer, polled every 100 ms, which
//! can add up to 100 ms to etcd's figure).

use std::time::{Duration, Instant};

use rudder_proto::etcdserverpb::RangeRequest;
use serde::Serialize;

use super::failover::caught_up;
use super::kv::{self, KvLoad, Workload};
use super::stats::{min_median_max, Summary};
use super::BenchError;
use crate::client::kv as kv_client;
use crate::cluster::ProcessCluster;

/// How long a restarted member may take to serve.
const SERVES_WITHIN: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Serialize)]
pub struct RestartReport {
    /// The writes made before the restarts.
    pub load: Summary,
    /// The killed member's data directory before each restart, bytes.
    pub data_bytes: Vec<u64>,
    pub runs_ms: Vec<f64>,
    pub min_ms: f64,
    pub median_ms: f64,
    pub max_ms: f64,
}

/// Bytes under `path`, recursively (what a member keeps on disk).
fn size_of(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => size_of(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Tries a linearizable read through `endpoint` every 10 ms until one succeeds.
async fn serves(endpoint: &str, since: Instant) -> Result<Duration, BenchError> {
    loop {
        let attempt = async {
            let mut client = kv_client(endpoint).await.ok()?;
            let read = RangeRequest {
                key: b"bench/restart".to_vec(),
                ..Default::default()
            };
            client.range(read).await.ok()
        };
        if tokio::time::timeout(Duration::from_secs(2), attempt)
            .await
            .ok()
            .flatten()
            .is_some()
        {
            return Ok(since.elapsed());
        }
        if since.elapsed() > SERVES_WITHIN {
            return Err(BenchError::Stalled(
                "the restarted member did not serve a read within 120 s",
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Loads `cluster` with `load`'s puts, then kills and restarts a follower `runs` times.
pub async fn measure(
    cluster: &mut ProcessCluster,
    load: &KvLoad,
    runs: usize,
) -> Result<RestartReport, BenchError> {
    let load = kv::run(load, Workload::Put).await?;
    let (mut runs_ms, mut data_bytes) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        // A follower (a different one each run), caught up; leadership may move meanwhile,
        // so it is asked again just before the kill.
        let (leader, member) = loop {
            let leader = cluster.leader().await?;
            let followers: Vec<usize> = (0..cluster.members.len())
                .filter(|i| *i != leader)
                .collect();
            let Some(member) = followers.get((run - 1) % followers.len().max(1)).copied() else {
                return Err(BenchError::Stalled(
                    "a one-member cluster has no follower to kill",
                ));
            };
            caught_up(cluster, member).await?;
            if cluster.leader().await? == leader {
                break (leader, member);
            }
        };
        let killed = &mut cluster.members[member];
        killed.kill();
        data_bytes.push(size_of(&killed.data_dir));
        let since = Instant::now();
        killed.restart().await?;
        let took = serves(&killed.client_addr, since).await?;
        let name = killed.name.clone();
        // Killing a follower must not have cost an election: such a run would time one.
        let moved = match cluster.leader().await? == leader {
            true => "",
            false => " (leadership moved meanwhile: this run also timed an election)",
        };
        eprintln!(
            "run {run}/{runs}: killed follower {name} ({} MB on disk), serving again after \
             {:.0} ms{moved}",
            data_bytes.last().copied().unwrap_or(0) / 1_000_000,
            took.as_secs_f64() * 1000.0
        );
        runs_ms.push(took.as_secs_f64() * 1000.0);
    }
    let (min_ms, median_ms, max_ms) = min_median_max(&runs_ms);
    Ok(RestartReport {
        load,
        data_bytes,
        runs_ms,
        min_ms,
        median_ms,
        max_ms,
    })
}
