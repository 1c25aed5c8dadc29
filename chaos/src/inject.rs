//! Carries out a [`schedule`](crate::schedule) on a [`ProcessCluster`], recording each
//! fault as it happened: which member (and whether it led), when it started and ended.
//! Every fault is healed before the next starts and before this returns; a fault that ran
//! late pushes the next one back, so the cluster always gets [`MIN_GAP`] to recover. A
//! member that ends by itself (a crash) is recorded, with its exit, and restarted.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cluster::{ClusterError, MemberProcess, ProcessCluster};
use crate::disk::{self, DiskEffect, DiskFault};
use crate::partition::{self, Split};
use crate::schedule::{FaultKind, PlannedFault, Victim, MIN_GAP};

/// A fault as it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Injected {
    pub kind: FaultKind,
    pub victim: Victim,
    pub member: String,
    pub was_leader: bool,
    /// Milliseconds from the start of the run to when the fault was in place.
    pub started_ms: u64,
    /// When the member was running again (restarted or resumed), or the partition healed.
    pub ended_ms: u64,
    /// A partition's shape, and its sides as they were (e.g. `m1 | m2 m3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sides: Option<String>,
    /// The packets a partition dropped: none would mean it cut nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped_packets: Option<u64>,
    /// A disk fault's kind, and what it did to the member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskFault>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_effect: Option<DiskEffect>,
}

/// A member that ended without being told to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crash {
    pub member: String,
    /// When it was found ended, from the start of the run.
    pub found_ms: u64,
    pub exit: String,
}

/// What [`inject`] did and found.
#[derive(Debug, Default)]
pub struct Injection {
    pub faults: Vec<Injected>,
    pub crashes: Vec<Crash>,
    /// When the last fault ended (zero when there was none).
    pub last_end: Duration,
}

/// Runs `schedule` from `start`, telling `progress` of each fault as it begins. On an error
/// (a member that cannot restart, no leader) the faults so far are in `done`.
pub async fn inject(
    cluster: &mut ProcessCluster,
    schedule: &[PlannedFault],
    start: Instant,
    done: &mut Injection,
    mut progress: impl FnMut(&str),
) -> Result<(), ClusterError> {
    for (n, planned) in schedule.iter().enumerate() {
        let earliest = match done.faults.is_empty() {
            true => planned.at,
            false => planned.at.max(done.last_end + MIN_GAP),
        };
        tokio::time::sleep_until((start + earliest).into()).await;
        restart_crashed(cluster, start, done, &mut progress).await?;
        let leader = cluster.leader().await?;
        let member = victim(cluster, planned.victim, leader);
        let name = cluster.members[member].name.clone();
        let started = start.elapsed();
        // (A schedule from before partitions had shapes holds none: isolated, then.)
        let split = (planned.kind == FaultKind::Partition)
            .then(|| planned.split.unwrap_or(Split::Isolated));
        let sides = split.map(|split| {
            let names: Vec<String> = cluster.members.iter().map(|m| m.name.clone()).collect();
            partition::describe(split, member, leader, &names)
        });
        progress(&format!(
            "fault {}/{} at {:.1}s: {} {}{}{} for {:.1}s",
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
            match (split, &sides, planned.disk) {
                (Some(split), Some(sides), _) => format!(", {}: {sides}", split.name()),
                (_, _, Some(disk)) if planned.kind == FaultKind::Disk => {
                    format!(", {}", disk.name())
                }
                _ => String::new(),
            },
            planned.hold.as_secs_f64()
        ));
        let mut dropped_packets = None;
        let disk = (planned.kind == FaultKind::Disk)
            .then(|| planned.disk.unwrap_or(DiskFault::FsyncFails));
        let mut disk_effect = None;
        // When the fault is in place (a partition takes an nft run per member).
        let in_place;
        match planned.kind {
            FaultKind::Kill => {
                cluster.members[member].kill();
                in_place = start.elapsed();
                tokio::time::sleep(planned.hold).await;
                cluster.members[member].restart().await?;
            }
            FaultKind::Pause => {
                cluster.members[member].pause();
                in_place = start.elapsed();
                tokio::time::sleep(planned.hold).await;
                cluster.members[member].resume();
            }
            FaultKind::Partition => {
                let split = split.unwrap_or(Split::Isolated);
                let cuts = partition::cuts(split, cluster.members.len(), member, leader);
                cluster.partition(&cuts)?;
                in_place = start.elapsed();
                tokio::time::sleep(planned.hold).await;
                dropped_packets = Some(cluster.heal()?);
            }
            FaultKind::Disk => {
                let disk = disk.unwrap_or(DiskFault::FsyncFails);
                let target = &mut cluster.members[member];
                let log_from = target.log_len();
                let slow_before = slow_fsyncs(&target.client_addr).await;
                target.set_failpoints(&disk.on())?;
                applied(target, log_from).await;
                in_place = start.elapsed();
                let until = tokio::time::Instant::now() + planned.hold;
                let stopped = match disk.stops_the_member() {
                    true => Some(stopped_by(target, disk, until, log_from).await),
                    false => None,
                };
                tokio::time::sleep_until(until).await;
                let off = target.set_failpoints(&disk.off());
                let effect = match stopped {
                    Some(effect) => {
                        // Stopped (or stopped now, when it would not): back on a sound disk.
                        target.kill();
                        target.restart().await?;
                        effect
                    }
                    None => slowed(target, slow_before).await,
                };
                off?;
                disk_effect = Some(effect);
            }
        }
        done.last_end = start.elapsed();
        done.faults.push(Injected {
            kind: planned.kind,
            victim: planned.victim,
            member: name,
            was_leader: member == leader,
            started_ms: millis(in_place),
            ended_ms: millis(done.last_end),
            split,
            sides,
            dropped_packets,
            disk,
            disk_effect,
        });
    }
    Ok(())
}

/// Waits (up to a second) until `member` has logged, after `log_from`, that it applied its
/// failpoints file: from then on the fault is in place.
async fn applied(member: &MemberProcess, log_from: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while !member.log_since(log_from).contains(disk::APPLIED)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How `member` met a disk fault that must stop it: its exit, if it came before `until`,
/// judged by its code and what it logged since `log_from`.
async fn stopped_by(
    member: &mut MemberProcess,
    disk: DiskFault,
    until: tokio::time::Instant,
    log_from: u64,
) -> DiskEffect {
    let since = tokio::time::Instant::now();
    loop {
        if let Some(status) = member.exited() {
            let log = member.log_since(log_from);
            let after_ms = millis(since.elapsed());
            return disk::judge_exit(disk, status.code(), status.to_string(), &log, after_ms);
        }
        if tokio::time::Instant::now() >= until {
            return DiskEffect::KeptRunning;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How a slow disk showed in `member`'s fsyncs: counted once the fsyncs begun during the
/// fault have ended (the histogram counts an fsync when it ends), polling for a while.
async fn slowed(member: &MemberProcess, before: Result<u64, String>) -> DiskEffect {
    let before = match before {
        Ok(before) => before,
        Err(why) => return DiskEffect::Unmeasured { why },
    };
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(disk::SLOW_FSYNC_MS) * 2
        + Duration::from_secs(2);
    loop {
        let now = slow_fsyncs(&member.client_addr).await;
        match now {
            Ok(now) if now > before => {
                return DiskEffect::SlowFsyncs {
                    count: now - before,
                }
            }
            Ok(_) | Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(_) => return DiskEffect::SlowFsyncs { count: 0 },
            Err(why) => return DiskEffect::Unmeasured { why },
        }
    }
}

/// The slow fsyncs a member's metrics counted so far.
async fn slow_fsyncs(client_addr: &str) -> Result<u64, String> {
    let metrics = crate::client::scrape(client_addr).await?;
    disk::slow_fsyncs(&metrics)
        .ok_or_else(|| format!("{client_addr}/metrics has no fsync histogram"))
}

/// Records and restarts every member that ended by itself.
pub async fn restart_crashed(
    cluster: &mut ProcessCluster,
    start: Instant,
    done: &mut Injection,
    mut progress: impl FnMut(&str),
) -> Result<(), ClusterError> {
    for member in &mut cluster.members {
        if let Some(status) = member.exited() {
            let crash = Crash {
                member: member.name.clone(),
                found_ms: millis(start.elapsed()),
                exit: status.to_string(),
            };
            progress(&format!(
                "{} ended by itself ({}): restarting it",
                crash.member, crash.exit
            ));
            done.crashes.push(crash);
            member.restart().await?;
        }
    }
    Ok(())
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
