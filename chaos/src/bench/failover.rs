//! `rudder bench failover`: kill -9 the leader, time the first write that succeeds after.
//!
//! After the kill every surviving member is tried at once, again and again, so the figure is
//! the cluster's recovery time rather than a client's retry schedule.
//!
//! With `graceful`, the leader is stopped with SIGTERM instead (it hands over first), and
//! the figure is the longest time without a successful write from the signal until the
//! stopped member has exited and a write succeeded after that: what a rolling restart of
//! the masters costs writers.

use std::time::{Duration, Instant};

use rudder_proto::etcdserverpb::{PutRequest, StatusRequest};
use serde::Serialize;

use super::stats::min_median_max;
use super::BenchError;
use crate::client::{kv, maintenance};
use crate::cluster::ProcessCluster;

#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    pub runs_ms: Vec<f64>,
    pub min_ms: f64,
    pub median_ms: f64,
    pub max_ms: f64,
}

/// One attempt against one endpoint, bounded so a hung member cannot stall the round.
async fn try_put(endpoint: String, n: u64) -> Result<(), String> {
    let attempt = async {
        let mut client = kv(&endpoint).await.map_err(|e| e.to_string())?;
        let put = PutRequest {
            key: b"bench/failover".to_vec(),
            value: n.to_le_bytes().to_vec(),
            ..Default::default()
        };
        client.put(put).await.map(|_| ()).map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(3), attempt)
        .await
        .map_err(|_| "timed out".to_string())?
}

async fn first_write_after(
    cluster: &ProcessCluster,
    limit: Duration,
) -> Result<Duration, BenchError> {
    let started = Instant::now();
    // A new round of attempts every 20 ms, without waiting for the earlier ones: a member
    // that holds a request during the election must not hide one that answers sooner.
    let mut attempts = tokio::task::JoinSet::new();
    let mut round = tokio::time::interval(Duration::from_millis(20));
    let mut n = 0;
    loop {
        tokio::select! {
            _ = round.tick() => {
                n += 1;
                for endpoint in cluster.endpoints() {
                    attempts.spawn(try_put(endpoint, n));
                }
            }
            Some(Ok(Ok(()))) = attempts.join_next(), if !attempts.is_empty() => return Ok(started.elapsed()),
        }
        if started.elapsed() > limit {
            return Err(BenchError::Stalled("no write succeeded in time"));
        }
    }
}

/// How long until a survivor reports a leader other than `old` (polled every 5 ms).
async fn new_leader_seen(endpoints: Vec<String>, old: u64) -> Option<Duration> {
    let started = Instant::now();
    let mut clients = Vec::new();
    for endpoint in &endpoints {
        clients.push(maintenance(endpoint).await.ok()?);
    }
    while started.elapsed() < Duration::from_secs(30) {
        for client in &mut clients {
            if let Ok(status) = client.status(StatusRequest {}).await {
                let leader = status.into_inner().leader;
                if leader != 0 && leader != old {
                    return Some(started.elapsed());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// Waits until a restarted member has applied what the leader had committed.
pub(super) async fn caught_up(cluster: &ProcessCluster, member: usize) -> Result<(), BenchError> {
    let leader = cluster.leader().await?;
    let status = |addr: String| async move {
        let mut client = maintenance(&addr).await.ok()?;
        client
            .status(StatusRequest {})
            .await
            .ok()
            .map(|s| s.into_inner())
    };
    let target = status(cluster.members[leader].client_addr.clone())
        .await
        .map(|s| s.raft_index)
        .ok_or(BenchError::Stalled("the leader did not say its log index"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(s) = status(cluster.members[member].client_addr.clone()).await {
            if s.raft_applied_index >= target {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(BenchError::Stalled(
        "the restarted member did not catch up within 30 s",
    ))
}

/// Writes to the other members every 10 ms from now until member `stopping` has exited
/// and a write succeeded after that: the longest time between successes (from now).
async fn longest_write_gap_until_gone(
    cluster: &mut ProcessCluster,
    stopping: usize,
) -> Result<Duration, BenchError> {
    let started = Instant::now();
    let survivors: Vec<String> = (0..cluster.members.len())
        .filter(|i| *i != stopping)
        .map(|i| cluster.members[i].client_addr.clone())
        .collect();
    let mut attempts = tokio::task::JoinSet::new();
    let mut round = tokio::time::interval(Duration::from_millis(10));
    let (mut last_success, mut longest) = (started, Duration::ZERO);
    let mut gone_at: Option<Instant> = None;
    let mut n = 0;
    loop {
        tokio::select! {
            _ = round.tick() => {
                n += 1;
                for endpoint in &survivors {
                    attempts.spawn(try_put(endpoint.clone(), n));
                }
                if gone_at.is_none() && cluster.members[stopping].exited().is_some() {
                    gone_at = Some(Instant::now());
                }
            }
            Some(Ok(Ok(()))) = attempts.join_next(), if !attempts.is_empty() => {
                let now = Instant::now();
                longest = longest.max(now - last_success);
                last_success = now;
                if gone_at.is_some_and(|gone| now > gone) {
                    return Ok(longest);
                }
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(BenchError::Stalled(
                "the stopped leader did not exit, or no write succeeded after, within 60 s",
            ));
        }
    }
}

pub async fn measure(
    cluster: &mut ProcessCluster,
    runs: usize,
    graceful: bool,
) -> Result<FailoverReport, BenchError> {
    let mut runs_ms = Vec::new();
    for run in 1..=runs {
        // A write first, so the cluster is known to be serving before the kill.
        first_write_after(cluster, Duration::from_secs(30)).await?;
        let leader = cluster.leader().await?;
        let old_leader = cluster.members[leader].id;
        let election = |cluster: &ProcessCluster| {
            let endpoints = cluster.endpoints();
            tokio::spawn(new_leader_seen(endpoints, old_leader))
        };
        let (election, took) = if graceful {
            cluster.members[leader].terminate();
            let election = election(cluster);
            (
                election,
                longest_write_gap_until_gone(cluster, leader).await?,
            )
        } else {
            cluster.members[leader].kill();
            let election = election(cluster);
            (
                election,
                first_write_after(cluster, Duration::from_secs(60)).await?,
            )
        };
        let elected = election.await.ok().flatten();
        let elected = elected.map(|d| format!("{:.0} ms", d.as_secs_f64() * 1000.0));
        let (how, figure) = match graceful {
            true => ("stopped (SIGTERM)", "longest write gap"),
            false => ("killed", "first write after"),
        };
        eprintln!(
            "run {run}/{runs}: {how} leader {}, new leader reported after {}, {figure} {:.0} ms",
            cluster.members[leader].name,
            elected.unwrap_or_else(|| "?".into()),
            took.as_secs_f64() * 1000.0
        );
        runs_ms.push(took.as_secs_f64() * 1000.0);
        cluster.members[leader].restart().await?;
        caught_up(cluster, leader).await?;
    }
    let (min_ms, median_ms, max_ms) = min_median_max(&runs_ms);
    Ok(FailoverReport {
        min_ms,
        median_ms,
        max_ms,
        runs_ms,
    })
}
