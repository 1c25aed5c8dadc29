//! Carries out a [`schedule`](crate::schedule) on a [`ProcessCluster`], recording each
//! fault as it happened: which member (and whether it led), when it started and ended.
//! Every fault is healed before the next starts and before this returns; a fault that ran
//! late pushes the next one back, so the cluster always gets [`MIN_GAP`] to recover. A
//! fault that strikes two members at once is recorded once for each. A member that ends by
//! itself (a crash) is recorded, with its exit, and restarted.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use rudder_proto::etcdserverpb::RangeRequest;

use crate::check::kube::{CONTROLLER_MANAGER_LEASE, SCHEDULER_LEASE};
use crate::client::kv;
use crate::cluster::{ClusterError, MemberProcess, ProcessCluster};
use crate::disk::{self, DiskEffect, DiskFault};
use crate::live::Live;
use crate::network::PartitionError;
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
    /// The other member a fault struck at the same time (two at once, with 5 members).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with: Option<String>,
    /// This record is the second member's of a fault that struck two: the fault is the
    /// first record's (recovery counts it once).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub second: bool,
    /// The share of packets a loss fault dropped at random, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_percent: Option<u8>,
    /// How long a delay fault held each packet, and how many it held: none would mean it
    /// slowed nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delayed_packets: Option<u64>,
    /// The lease the struck master's scheduler or controller manager held then, with its
    /// holder and epoch (a fault aimed at it, [`Victim::Scheduler`] and the like).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
}

impl Injected {
    /// A fault of `kind` on member `member` (leading or not) from `started_ms` to
    /// `ended_ms`, nothing more.
    pub fn plain(
        kind: FaultKind,
        member: &str,
        was_leader: bool,
        started_ms: u64,
        ended_ms: u64,
    ) -> Self {
        Self {
            kind,
            victim: Victim::Leader,
            member: member.into(),
            was_leader,
            started_ms,
            ended_ms,
            split: None,
            sides: None,
            dropped_packets: None,
            disk: None,
            disk_effect: None,
            with: None,
            second: false,
            loss_percent: None,
            delay_ms: None,
            delayed_packets: None,
            lease: None,
        }
    }
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
    live: &Live,
    mut progress: impl FnMut(&str),
) -> Result<(), ClusterError> {
    for (n, planned) in schedule.iter().enumerate() {
        live.faults_done.store(n, Ordering::Relaxed);
        let earliest = match done.faults.is_empty() {
            true => planned.at,
            false => planned.at.max(done.last_end + MIN_GAP),
        };
        tokio::time::sleep_until((start + earliest).into()).await;
        restart_crashed(cluster, start, done, &mut progress).await?;
        if planned.kind == FaultKind::NodeLoss {
            let label = format!("fault {}/{}", n + 1, schedule.len());
            lose_node(cluster, planned, &label, start, done, &mut progress).await?;
            continue;
        }
        let leader = cluster.leader().await?;
        let (member, lease) = match planned.victim {
            Victim::Scheduler => lease_holder(cluster, SCHEDULER_LEASE, leader).await,
            Victim::ControllerManager => {
                lease_holder(cluster, CONTROLLER_MANAGER_LEASE, leader).await
            }
            named => (victim(cluster, named, leader), None),
        };
        // Two at once: the second is never the first.
        let second = planned.also.map(|also| {
            let picked = victim(cluster, also, leader);
            match picked == member {
                true => (member + 1) % cluster.members.len(),
                false => picked,
            }
        });
        let mut struck: Vec<usize> = std::iter::once(member).chain(second).collect();
        // The leader first, when it is one of two: the fault is recorded as striking it.
        struck.sort_by_key(|m| *m != leader);
        let names: Vec<String> = struck
            .iter()
            .map(|m| cluster.members[*m].name.clone())
            .collect();
        let started = start.elapsed();
        // (A schedule from before partitions had shapes holds none: isolated, then.)
        let split = (planned.kind == FaultKind::Partition)
            .then(|| planned.split.unwrap_or(Split::Isolated));
        let sides = split.map(|split| {
            let names: Vec<String> = cluster.members.iter().map(|m| m.name.clone()).collect();
            partition::describe(split, member, leader, &names)
        });
        let whom: Vec<String> = struck
            .iter()
            .map(|m| match *m == leader {
                true => format!("{} (the leader)", cluster.members[*m].name),
                false => cluster.members[*m].name.clone(),
            })
            .collect();
        let aimed = match (planned.victim, &lease) {
            (Victim::Scheduler, Some(_)) => ", whose scheduler leads",
            (Victim::ControllerManager, Some(_)) => ", whose controller manager leads",
            (Victim::Scheduler | Victim::ControllerManager, None) => {
                ", as no master's component held the lease aimed at"
            }
            _ => "",
        };
        progress(&format!(
            "fault {}/{} at {:.1}s: {} {}{}{} for {:.1}s",
            n + 1,
            schedule.len(),
            started.as_secs_f64(),
            planned.kind.name(),
            whom.join(" and "),
            aimed,
            match (split, &sides, planned.disk) {
                (Some(split), Some(sides), _) => format!(", {}: {sides}", split.name()),
                (_, _, Some(disk)) if planned.kind == FaultKind::Disk => {
                    format!(", {}", disk.name())
                }
                _ if planned.kind == FaultKind::Loss => format!(
                    ", {}% of the packets on its links dropped",
                    planned.loss_percent.unwrap_or(LOSS_UNSAID)
                ),
                _ if planned.kind == FaultKind::Delay => format!(
                    ", each packet on its links held {} ms",
                    planned.delay_ms.unwrap_or(DELAY_UNSAID)
                ),
                _ => String::new(),
            },
            planned.hold.as_secs_f64()
        ));
        let mut dropped_packets = None;
        let mut delayed_packets = None;
        let disk = (planned.kind == FaultKind::Disk)
            .then(|| planned.disk.unwrap_or(DiskFault::FsyncFails));
        let mut disk_effects: Vec<Option<DiskEffect>> = vec![None; struck.len()];
        // When the fault is in place (a partition takes an nft run per member).
        let in_place;
        match planned.kind {
            FaultKind::Kill => {
                for m in &struck {
                    cluster.members[*m].kill();
                }
                in_place = start.elapsed();
                tokio::time::sleep(planned.hold).await;
                for m in &struck {
                    cluster.members[*m].restart().await?;
                }
            }
            FaultKind::Pause => {
                for m in &struck {
                    cluster.members[*m].pause();
                }
                in_place = start.elapsed();
                tokio::time::sleep(planned.hold).await;
                for m in &struck {
                    cluster.members[*m].resume();
                }
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
                let mut log_from = Vec::new();
                let mut slow_before = Vec::new();
                for m in &struck {
                    let target = &cluster.members[*m];
                    log_from.push(target.log_len());
                    slow_before.push(slow_fsyncs(&target.client_addr).await);
                    target.set_failpoints(&disk.on())?;
                }
                for (m, from) in struck.iter().zip(&log_from) {
                    applied(&cluster.members[*m], *from).await;
                }
                in_place = start.elapsed();
                let until = tokio::time::Instant::now() + planned.hold;
                if disk.stops_the_member() {
                    let stopped = stopped_by(cluster, &struck, disk, until, &log_from).await;
                    disk_effects = stopped.into_iter().map(Some).collect();
                }
                tokio::time::sleep_until(until).await;
                let mut off = Ok(());
                for (k, m) in struck.iter().enumerate() {
                    let target = &mut cluster.members[*m];
                    off = off.and(target.set_failpoints(&disk.off()));
                    match disk.stops_the_member() {
                        // Stopped (or stopped now, when it would not): on a sound disk again.
                        true => {
                            target.kill();
                            target.restart().await?;
                        }
                        false => {
                            let before = slow_before[k].clone();
                            disk_effects[k] = Some(slowed(target, before).await);
                        }
                    }
                }
                off?;
            }
            FaultKind::Loss => {
                let percent = planned.loss_percent.unwrap_or(LOSS_UNSAID);
                let links = partition::cuts(Split::Isolated, cluster.members.len(), member, leader);
                cluster.lose(&links, percent)?;
                in_place = start.elapsed();
                tokio::time::sleep(planned.hold).await;
                dropped_packets = Some(cluster.heal()?);
            }
            FaultKind::Delay => {
                let delay = Duration::from_millis(planned.delay_ms.unwrap_or(DELAY_UNSAID).into());
                let delaying = cluster.delay(member, delay)?;
                in_place = start.elapsed();
                tokio::time::sleep(planned.hold).await;
                delayed_packets = Some(delaying.end().map_err(PartitionError::from)?);
            }
            FaultKind::NodeLoss => unreachable!("node loss is carried out by lose_node, above"),
        }
        done.last_end = start.elapsed();
        for (k, m) in struck.iter().enumerate() {
            let other = names.iter().enumerate().find(|(j, _)| *j != k);
            done.faults.push(Injected {
                kind: planned.kind,
                victim: match k {
                    0 => planned.victim,
                    _ => planned.also.unwrap_or(planned.victim),
                },
                member: names[k].clone(),
                was_leader: *m == leader,
                started_ms: millis(in_place),
                ended_ms: millis(done.last_end),
                split,
                sides: sides.clone(),
                dropped_packets,
                disk,
                disk_effect: disk_effects[k].take(),
                with: other.map(|(_, name)| name.clone()),
                second: k > 0,
                loss_percent: planned.loss_percent,
                delay_ms: planned.delay_ms,
                delayed_packets,
                // The lease was read for the member the victim named, wherever it sorts.
                lease: lease.clone().filter(|_| *m == member),
            });
        }
    }
    live.faults_done.store(schedule.len(), Ordering::Relaxed);
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

/// How the `struck` members met a disk fault that must stop them: each one's exit, if it
/// came before `until`, judged by its code and what it logged since its `log_from`.
async fn stopped_by(
    cluster: &mut ProcessCluster,
    struck: &[usize],
    disk: DiskFault,
    until: tokio::time::Instant,
    log_from: &[u64],
) -> Vec<DiskEffect> {
    let since = tokio::time::Instant::now();
    let mut effects: Vec<Option<DiskEffect>> = vec![None; struck.len()];
    loop {
        for (k, m) in struck.iter().enumerate() {
            let member = &mut cluster.members[*m];
            if effects[k].is_none() {
                if let Some(status) = member.exited() {
                    let log = member.log_since(log_from[k]);
                    let after_ms = millis(since.elapsed());
                    let code = status.code();
                    effects[k] = Some(disk::judge_exit(
                        disk,
                        code,
                        status.to_string(),
                        &log,
                        after_ms,
                    ));
                }
            }
        }
        let all = effects.iter().all(Option::is_some);
        if all || tokio::time::Instant::now() >= until {
            return effects
                .into_iter()
                .map(|effect| effect.unwrap_or(DiskEffect::KeptRunning))
                .collect();
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
    for group in &mut cluster.nodes {
        if let Some(status) = group.exited() {
            let crash = Crash {
                member: group.name.clone(),
                found_ms: millis(start.elapsed()),
                exit: status.to_string(),
            };
            progress(&format!(
                "node process {} ended by itself ({}): restarting it",
                crash.member, crash.exit
            ));
            done.crashes.push(crash);
            group.restart()?;
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
        // Resolved from their leases by `inject`; a second victim aimed so strikes the leader.
        Victim::Scheduler | Victim::ControllerManager => leader,
    }
}

/// A loss fault's share when its schedule (from before it had one) says none.
const LOSS_UNSAID: u8 = 20;
/// A delay fault's hold per packet when its schedule (written by hand) says none.
const DELAY_UNSAID: u16 = 100;

/// The master whose component holds the lease at `key`, and the lease described; the Raft
/// leader, and no lease, when no master holds it now (or it could not be read).
async fn lease_holder(
    cluster: &ProcessCluster,
    key: &str,
    leader: usize,
) -> (usize, Option<String>) {
    let read = RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    };
    let answered = tokio::time::timeout(Duration::from_secs(2), async {
        let mut client = kv(&cluster.members[leader].client_addr).await.ok()?;
        client.range(read).await.ok()
    })
    .await;
    let lease: Option<serde_json::Value> = answered
        .ok()
        .flatten()
        .and_then(|answer| answer.into_inner().kvs.into_iter().next())
        .and_then(|kv| serde_json::from_slice(&kv.value).ok());
    let held = lease.as_ref().map(|lease| held_by(lease, key));
    match held.and_then(|(master, said)| {
        let index = cluster.members.iter().position(|m| m.name == master)?;
        Some((index, said))
    }) {
        Some((index, said)) => (index, Some(said)),
        None => (leader, None),
    }
}

/// The master a Lease object names as its holder (a holder identity is the master's name,
/// `_`, a per-process suffix), and the lease at `key` described with its holder and epoch.
/// Pure.
fn held_by<'a>(lease: &'a serde_json::Value, key: &str) -> (&'a str, String) {
    let holder = lease["spec"]["holderIdentity"].as_str().unwrap_or("");
    let epoch = lease["spec"]["leaseTransitions"].as_i64().unwrap_or(0);
    let master = holder.rsplit_once('_').map_or(holder, |(name, _)| name);
    let said = format!(
        "{} held by {holder} at epoch {epoch}",
        key.trim_start_matches("/registry/leases/")
    );
    (master, said)
}

/// Node loss: kills one node process (its nodes and their pods) and restarts it after the
/// hold, recorded under the process's name.
async fn lose_node(
    cluster: &mut ProcessCluster,
    planned: &PlannedFault,
    label: &str,
    start: Instant,
    done: &mut Injection,
    progress: &mut impl FnMut(&str),
) -> Result<(), ClusterError> {
    // A node has no leader: a fault drawn for "the leader" takes the group its start time
    // picks (as fixed by the schedule as a drawn pick), not always the first.
    let pick = match planned.victim {
        Victim::Any { pick } | Victim::Follower { pick } => pick as usize,
        _ => planned.at.as_millis() as usize,
    };
    let groups = cluster.nodes.len();
    let group = cluster
        .nodes
        .get_mut(pick % groups.max(1))
        .ok_or(ClusterError::NoNodes)?;
    progress(&format!(
        "{label} at {:.1}s: node-loss {} (nodes {}) for {:.1}s",
        start.elapsed().as_secs_f64(),
        group.name,
        group.node_names().join(", "),
        planned.hold.as_secs_f64()
    ));
    group.kill();
    let in_place = start.elapsed();
    tokio::time::sleep(planned.hold).await;
    group.restart()?;
    done.last_end = start.elapsed();
    let mut record = Injected::plain(
        FaultKind::NodeLoss,
        &group.name,
        false,
        millis(in_place),
        millis(done.last_end),
    );
    record.victim = planned.victim;
    done.faults.push(record);
    Ok(())
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_lease_names_its_masters_by_the_holder_before_the_process_suffix() {
        let lease = json!({"spec": {
            "holderIdentity": "m2_74640679-5482-447c-9079-4417a15b83d0", "leaseTransitions": 3,
        }});
        let (master, said) = held_by(&lease, SCHEDULER_LEASE);
        assert_eq!(master, "m2");
        assert_eq!(
            said,
            "kube-system/rudder-scheduler held by m2_74640679-5482-447c-9079-4417a15b83d0 at \
             epoch 3"
        );
        // Released (no holder): no master is named.
        let released = json!({"spec": {"holderIdentity": "", "leaseTransitions": 3}});
        assert_eq!(held_by(&released, SCHEDULER_LEASE).0, "");
    }
}
