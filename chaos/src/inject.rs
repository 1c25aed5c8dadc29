//! Carries out a [`schedule`](crate::schedule) on a [`ProcessCluster`], recording each
//! fault as it happened: which member (and whether it led), when it started and ended.
//! Every fault is healed before the next starts and before this returns.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cluster::{ClusterError, ProcessCluster};
use crate::schedule::{FaultKind, PlannedFault, Victim};

/// A fault as it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Injected {
    pub kind: FaultKind,
    pub victim: Victim,
    pub member: String,
    pub was_leader: bool,
    /// Milliseconds from the start of the run.
    pub started_ms: u64,
    /// When the member was running again (restarted or resumed).
    pub ended_ms: u64,
}

/// Runs `schedule` from `start`, telling `progress` of each fault as it begins.
pub async fn inject(
    cluster: &mut ProcessCluster,
    schedule: &[PlannedFault],
    start: Instant,
    mut progress: impl FnMut(&str),
) -> Result<Vec<Injected>, ClusterError> {
    let mut done = Vec::new();
    for (n, planned) in schedule.iter().enumerate() {
        tokio::time::sleep_until((start + planned.at).into()).await;
        let leader = cluster.leader().await?;
        let member = victim(cluster, planned.victim, leader);
        let name = cluster.members[member].name.clone();
        let started = start.elapsed();
        progress(&format!(
            "fault {}/{} at {:.1}s: {} {}{} for {:.1}s",
            n + 1,
            schedule.len(),
            started.as_secs_f64(),
            planned.kind.name(),
            name,
            if member == leader {
                " (the leader)"
            } else {
                ""
            },
            planned.hold.as_secs_f64()
        ));
        match planned.kind {
            FaultKind::Kill => {
                cluster.members[member].kill();
                tokio::time::sleep(planned.hold).await;
                cluster.members[member].restart().await?;
            }
            FaultKind::Pause => {
                cluster.members[member].pause();
                tokio::time::sleep(planned.hold).await;
                cluster.members[member].resume();
            }
        }
        done.push(Injected {
            kind: planned.kind,
            victim: planned.victim,
            member: name,
            was_leader: member == leader,
            started_ms: millis(started),
            ended_ms: millis(start.elapsed()),
        });
    }
    Ok(done)
}

/// The member `victim` names, given who leads; the members are all running here.
fn victim(cluster: &ProcessCluster, victim: Victim, leader: usize) -> usize {
    let count = cluster.members.len();
    match victim {
        Victim::Leader => leader,
        Victim::Follower { pick } => {
            let followers: Vec<usize> = (0..count).filter(|i| *i != leader).collect();
            match followers.is_empty() {
                true => leader,
                false => followers[pick as usize % followers.len()],
            }
        }
        Victim::Any { pick } => pick as usize % count,
    }
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis() as u64
}
