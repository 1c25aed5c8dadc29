//! A chaos run's fault schedule, drawn from its seed: the same seed, length and fault kinds
//! give the same schedule, which is what `rudder chaos replay` relies on. Pure.
//!
//! Faults come one at a time, so a three-member cluster keeps its quorum throughout: a quiet
//! start while the workload warms up, then each fault held for a while (a paused member
//! stays stopped, a killed one stays down before its restart) and a gap to recover, and a
//! quiet end before the run heals and checks. The kinds take turns in an order the seed
//! shuffles, so a run long enough for one of each has one of each.

use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::disk::DiskFault;
use crate::partition::Split;

/// What is done to a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL, then a restart on the same data after the hold.
    Kill,
    /// SIGSTOP, then SIGCONT after the hold.
    Pause,
    /// The members' network cut around the victim in a [`Split`]'s shape, healed after the
    /// hold (the members run in namespaces of their own for it).
    Partition,
    /// The member's disk fails it in a [`DiskFault`]'s way (failpoints: Rudder only).
    Disk,
    /// A worker node process killed with its nodes and their pods (the pods workload's
    /// hollow nodes), restarted after the hold.
    NodeLoss,
    /// The victim's links to every other member lossy both ways (a share of packets
    /// dropped at random; the members in namespaces of their own, as for partitions).
    Loss,
    /// The victim's links to every other member slow both ways: each packet held for a
    /// drawn delay (the members in namespaces of their own, as for partitions).
    Delay,
}

impl FaultKind {
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Disk,
        FaultKind::NodeLoss,
        FaultKind::Loss,
        FaultKind::Delay,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Disk => "disk",
            FaultKind::NodeLoss => "node-loss",
            FaultKind::Loss => "loss",
            FaultKind::Delay => "delay",
        }
    }

    /// `kill`, `pause`, `partition`, `disk`; an unknown name says which there are.
    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|kind| kind.name()).collect();
                format!(
                    "unknown fault {name:?}: the faults are {}",
                    known.join(", ")
                )
            })
    }
}

/// Which member, decided when the fault starts (who leads then).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Victim {
    Leader,
    /// A member that does not lead: the `pick`th of them, counting round.
    Follower {
        pick: u32,
    },
    /// Any member: the `pick`th, counting round (for node loss: any node process).
    Any {
        pick: u32,
    },
    /// The master whose scheduler holds the scheduler's lease (the pods workload).
    Scheduler,
    /// The master whose controller manager holds its lease (the pods workload).
    ControllerManager,
}

/// One fault of the schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedFault {
    /// From the start of the run.
    #[serde(with = "millis")]
    pub at: Duration,
    pub kind: FaultKind,
    pub victim: Victim,
    /// How long the member stays stopped (paused, or down before its restart), or the
    /// partition stays.
    #[serde(with = "millis")]
    pub hold: Duration,
    /// A partition's shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
    /// What a disk fault does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskFault>,
    /// The share of packets a loss fault drops, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_percent: Option<u8>,
    /// How long a delay fault holds each packet, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u16>,
    /// A second member the same fault strikes at the same time ([`pair_up`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub also: Option<Victim>,
}

impl PlannedFault {
    pub fn ends(&self) -> Duration {
        self.at + self.hold
    }
}

/// The share of packets a loss fault drops, in percent: enough to slow Raft's traffic,
/// not to cut it.
const LOSS: (u8, u8) = (10, 40);

/// How long a delay fault holds each packet, in milliseconds (each way: a round trip over
/// the victim's links takes twice it more): from a third of the election timeout to twice
/// it, so that some delays depose a leader and some do not.
const DELAY_MS: (u16, u16) = (50, 300);

/// What a node loss holds beyond twice a drawn hold.
const NODE_LOSS_LEAST: Duration = Duration::from_secs(7);

/// Before the first fault, and after the last one ends.
pub const QUIET: Duration = Duration::from_secs(2);
const HOLD: (u64, u64) = (500, 3_000);
const GAP: (u64, u64) = (1_000, 3_000);
/// The least time between one fault's end and the next one's start, also when a fault ran
/// late (a slow restart): the cluster gets this long to recover.
pub const MIN_GAP: Duration = Duration::from_millis(GAP.0);

/// The faults of a run of `length` with `kinds`, from `seed`.
pub fn draw(seed: u64, length: Duration, kinds: &[FaultKind]) -> Vec<PlannedFault> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut order: Vec<FaultKind> = kinds.to_vec();
    order.dedup();
    order.shuffle(&mut rng);
    let mut faults = Vec::new();
    if order.is_empty() {
        return faults;
    }
    let mut at = QUIET;
    for turn in 0.. {
        let kind = order[turn % order.len()];
        let hold = Duration::from_millis(rng.random_range(HOLD.0..=HOLD.1));
        // A lost node stays away long enough to be noticed: past the masters' grace
        // period for its lease (6 s), by 2 to 7 s.
        let hold = match kind {
            FaultKind::NodeLoss => hold * 2 + NODE_LOSS_LEAST,
            _ => hold,
        };
        if at + hold + QUIET > length {
            break;
        }
        let victim = match rng.random_range(0..10) {
            0..5 => Victim::Leader,
            5..8 => Victim::Follower { pick: rng.random() },
            _ => Victim::Any { pick: rng.random() },
        };
        // Drawn only for partitions, so that schedules without them stay as they were.
        let split = (kind == FaultKind::Partition)
            .then(|| Split::ALL[rng.random_range(0..Split::ALL.len())]);
        let disk = (kind == FaultKind::Disk)
            .then(|| DiskFault::ALL[rng.random_range(0..DiskFault::ALL.len())]);
        let loss_percent = (kind == FaultKind::Loss).then(|| rng.random_range(LOSS.0..=LOSS.1));
        let delay_ms =
            (kind == FaultKind::Delay).then(|| rng.random_range(DELAY_MS.0..=DELAY_MS.1));
        faults.push(PlannedFault {
            at,
            kind,
            victim,
            hold,
            split,
            disk,
            loss_percent,
            delay_ms,
            also: None,
        });
        at += hold + Duration::from_millis(rng.random_range(GAP.0..=GAP.1));
    }
    faults
}

/// The schedule of a run of `members` members: [`draw`], then [`pair_up`].
pub fn for_run(
    seed: u64,
    length: Duration,
    kinds: &[FaultKind],
    members: usize,
) -> Vec<PlannedFault> {
    let mut faults = draw(seed, length, kinds);
    pair_up(&mut faults, seed, members);
    faults
}

/// With the pods workload, about half the kills and pauses strike the master whose
/// scheduler or controller manager leads instead of the one their victim named. Drawn
/// from a generator of its own: the other runs' schedules stay as they were.
pub fn aim_at_components(faults: &mut [PlannedFault], seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ AIMING);
    for fault in faults.iter_mut() {
        let aim = rng.random_range(0..4);
        if matches!(fault.kind, FaultKind::Kill | FaultKind::Pause) {
            match aim {
                0 => fault.victim = Victim::Scheduler,
                1 => fault.victim = Victim::ControllerManager,
                _ => {}
            }
        }
    }
}

/// Mixed into the seed for [`aim_at_components`]'s generator ("aim").
const AIMING: u64 = 0x61_696d;

/// With 5 members or more, two faults at once: about half the kills, pauses and disk
/// faults strike a second member at the same time (a quorum still stands, two of five
/// down at most; a partition already takes two of five into its minority). Drawn from a
/// generator of its own, so a run of 3 members has the schedule it always had.
pub fn pair_up(faults: &mut [PlannedFault], seed: u64, members: usize) {
    if members < 5 {
        return;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ PAIRING);
    for fault in faults.iter_mut() {
        let second: u32 = rng.random();
        // A partition already takes two of five, as may a loss or a delay; a node loss
        // strikes a node.
        let single = matches!(
            fault.kind,
            FaultKind::Partition | FaultKind::NodeLoss | FaultKind::Loss | FaultKind::Delay
        );
        if !single && second.is_multiple_of(2) {
            fault.also = Some(Victim::Any { pick: second / 2 });
        }
    }
}

/// Mixed into the seed for [`pair_up`]'s generator ("pair").
const PAIRING: u64 = 0x7061_6972;

/// Durations as whole milliseconds in reports.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const BOTH: [FaultKind; 2] = [FaultKind::Kill, FaultKind::Pause];

    #[test]
    fn the_same_seed_draws_the_same_schedule_and_another_seed_another() {
        let length = Duration::from_secs(60);
        assert_eq!(draw(7, length, &BOTH), draw(7, length, &BOTH));
        assert_ne!(draw(7, length, &BOTH), draw(8, length, &BOTH));
    }

    #[test]
    fn faults_come_one_at_a_time_inside_the_quiet_edges() {
        for seed in 0..50 {
            let length = Duration::from_secs(30);
            let faults = draw(seed, length, &BOTH);
            assert!(!faults.is_empty(), "seed {seed}");
            assert!(faults[0].at >= QUIET);
            assert!(faults.last().unwrap().ends() + QUIET <= length);
            for pair in faults.windows(2) {
                assert!(pair[0].ends() < pair[1].at, "seed {seed}: {pair:?}");
            }
        }
    }

    #[test]
    fn every_kind_asked_for_takes_its_turn_and_no_other() {
        for seed in 0..20 {
            let faults = draw(seed, Duration::from_secs(30), &BOTH);
            for kind in BOTH {
                assert!(
                    faults.iter().any(|f| f.kind == kind),
                    "seed {seed}: no {kind:?}"
                );
            }
            let pauses = draw(seed, Duration::from_secs(30), &[FaultKind::Pause]);
            assert!(pauses.iter().all(|f| f.kind == FaultKind::Pause));
        }
    }

    #[test]
    fn partitions_and_disk_faults_and_only_they_have_a_shape_and_every_shape_comes_up() {
        let (mut splits, mut disks) = (HashSet::new(), HashSet::new());
        for seed in 0..40 {
            for fault in draw(seed, Duration::from_secs(30), &FaultKind::ALL) {
                assert_eq!(fault.split.is_some(), fault.kind == FaultKind::Partition);
                assert_eq!(fault.disk.is_some(), fault.kind == FaultKind::Disk);
                assert_eq!(fault.loss_percent.is_some(), fault.kind == FaultKind::Loss);
                assert!(fault
                    .loss_percent
                    .is_none_or(|p| (LOSS.0..=LOSS.1).contains(&p)));
                assert_eq!(fault.delay_ms.is_some(), fault.kind == FaultKind::Delay);
                assert!(fault
                    .delay_ms
                    .is_none_or(|ms| (DELAY_MS.0..=DELAY_MS.1).contains(&ms)));
                splits.extend(fault.split);
                disks.extend(fault.disk);
            }
        }
        assert_eq!(splits.len(), Split::ALL.len(), "{splits:?}");
        assert_eq!(disks.len(), DiskFault::ALL.len(), "{disks:?}");
    }

    #[test]
    fn five_members_get_two_faults_at_once_and_three_keep_their_schedule() {
        let length = Duration::from_secs(60);
        let kinds = FaultKind::ALL;
        for seed in 0..20 {
            assert_eq!(for_run(seed, length, &kinds, 3), draw(seed, length, &kinds));
            let five = for_run(seed, length, &kinds, 5);
            let alone: Vec<_> = five
                .iter()
                .map(|f| PlannedFault {
                    also: None,
                    ..f.clone()
                })
                .collect();
            assert_eq!(
                alone,
                draw(seed, length, &kinds),
                "the same faults, some paired"
            );
            assert!(five
                .iter()
                .all(|f| f.also.is_none() || f.kind != FaultKind::Partition));
        }
        let paired = (0..20)
            .flat_map(|seed| for_run(seed, length, &kinds, 5))
            .filter(|f| f.also.is_some())
            .count();
        assert!(paired > 10, "{paired}");
    }

    #[test]
    fn a_run_too_short_for_a_fault_has_none() {
        assert!(draw(1, Duration::from_secs(4), &BOTH).is_empty());
        assert!(draw(1, Duration::from_secs(60), &[]).is_empty());
    }

    #[test]
    fn kinds_are_named_and_an_unknown_one_is_refused_saying_which_exist() {
        assert_eq!(FaultKind::parse("kill"), Ok(FaultKind::Kill));
        assert_eq!(FaultKind::parse("partition"), Ok(FaultKind::Partition));
        assert_eq!(FaultKind::parse("disk"), Ok(FaultKind::Disk));
        assert_eq!(FaultKind::parse("delay"), Ok(FaultKind::Delay));
        let error = FaultKind::parse("jitter").unwrap_err();
        assert!(
            error.contains("the faults are kill, pause, partition, disk, node-loss, loss, delay"),
            "{error}"
        );
    }

    #[test]
    fn a_schedule_survives_its_report() {
        let faults = draw(3, Duration::from_secs(20), &BOTH);
        let json = serde_json::to_string(&faults).unwrap();
        assert_eq!(
            serde_json::from_str::<Vec<PlannedFault>>(&json).unwrap(),
            faults
        );
    }
}

#[cfg(test)]
mod aim_tests {
    use super::*;

    const WITH_NODES: [FaultKind; 3] = [FaultKind::Kill, FaultKind::Pause, FaultKind::NodeLoss];

    #[test]
    fn only_kills_and_pauses_are_aimed_and_both_components_are_aimed_at() {
        let (mut scheduler, mut controller_manager) = (0, 0);
        for seed in 0..40 {
            let drawn = for_run(seed, Duration::from_secs(30), &WITH_NODES, 3);
            let mut aimed = drawn.clone();
            aim_at_components(&mut aimed, seed);
            for (before, after) in drawn.iter().zip(&aimed) {
                assert_eq!(
                    (before.kind, before.at, before.hold),
                    (after.kind, after.at, after.hold)
                );
                match after.victim {
                    Victim::Scheduler => scheduler += 1,
                    Victim::ControllerManager => controller_manager += 1,
                    _ => {
                        assert_eq!(before.victim, after.victim);
                        continue;
                    }
                }
                assert!(
                    matches!(after.kind, FaultKind::Kill | FaultKind::Pause),
                    "{after:?}"
                );
            }
        }
        assert!(
            scheduler > 10 && controller_manager > 10,
            "{scheduler} {controller_manager}"
        );
    }

    #[test]
    fn a_lost_node_stays_away_longer_and_still_ends_inside_the_run() {
        for seed in 0..40 {
            let length = Duration::from_secs(30);
            for fault in draw(seed, length, &WITH_NODES) {
                if fault.kind == FaultKind::NodeLoss {
                    assert!(fault.hold >= Duration::from_secs(8), "{fault:?}");
                }
                assert!(fault.ends() + QUIET <= length, "{fault:?}");
            }
        }
    }
}
