//! Recovery: how long after a fault began the workload's first write asked after it was
//! answered, the availability a client sees, grouped by what the fault was (its kind, the
//! partition's shape, and whether it struck the leader): the median and the worst. A
//! figure, not a check: it fails nothing. Pure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::check::linear::{Op, Operation};
use crate::inject::Injected;
use crate::schedule::FaultKind;

/// The recovery of one group of faults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    /// E.g. `kill of the leader`, `partition (isolated) of a follower`.
    pub fault: String,
    pub count: usize,
    pub median_ms: u64,
    pub worst_ms: u64,
    /// Faults after which no write was answered before the next fault (or the end).
    pub never: usize,
}

/// What a fault was, as recovery groups it.
pub fn label(fault: &Injected) -> String {
    let whom = match fault.was_leader {
        true => "the leader",
        false => "a follower",
    };
    let shape = match (fault.split, fault.disk, fault.loss_percent) {
        (Some(split), _, _) => format!(" ({})", split.name()),
        (_, Some(disk), _) => format!(" ({})", disk.name()),
        // Grouped by tens: 10-19%, 20-29%, ...
        (_, _, Some(percent)) => format!(" ({}-{}%)", percent / 10 * 10, percent / 10 * 10 + 9),
        // Grouped by hundreds: 0-99 ms, 100-199 ms, ...
        _ => match fault.delay_ms {
            Some(ms) => format!(" ({}-{} ms)", ms / 100 * 100, ms / 100 * 100 + 99),
            None => String::new(),
        },
    };
    // Of two struck at once, the leader's record comes first (inject.rs).
    let whom = match (&fault.with, fault.was_leader) {
        (Some(_), true) => "the leader and a follower",
        (Some(_), false) => "two followers",
        (None, _) => whom,
    };
    format!("{}{shape} of {whom}", fault.kind.name())
}

/// When the first fault after `fault` began: one that began once it had ended (a fault
/// that struck two members is two records at the same time; neither is the other's next).
pub fn next_start(injected: &[Injected], fault: &Injected) -> Option<u64> {
    injected
        .iter()
        .map(|other| other.started_ms)
        .filter(|started| *started >= fault.ended_ms)
        .min()
}

/// Per fault, the milliseconds from its start to the first write asked at or after it and
/// answered before the next fault began (or `until_ms`); `None`: there was none.
pub fn per_fault(injected: &[Injected], history: &[Operation], until_ms: u64) -> Vec<Option<u64>> {
    injected
        .iter()
        .map(|fault| {
            let from = fault.started_ms * 1_000_000;
            let until = next_start(injected, fault).unwrap_or(until_ms) * 1_000_000;
            history
                .iter()
                .filter(|op| matches!(op.op, Op::Put { .. } | Op::Cas { .. } | Op::Delete))
                .filter(|op| op.invoked >= from)
                .filter_map(|op| op.completed)
                .filter(|completed| *completed <= until)
                .min()
                .map(|completed| (completed - from) / 1_000_000)
        })
        .collect()
}

/// Recoveries by [`label`] (`took`: per fault, as [`per_fault`] gives them), in the
/// labels' order; from one run, or from many (`rudder chaos recovery`).
pub fn grouped<'a>(
    faults: impl IntoIterator<Item = &'a Injected>,
    took: impl IntoIterator<Item = Option<u64>>,
) -> Vec<Recovery> {
    let mut groups: BTreeMap<String, Vec<Option<u64>>> = BTreeMap::new();
    for (fault, took) in faults.into_iter().zip(took) {
        // A fault that struck two members counts once, as its first record; a node loss
        // does not touch the store, so its writes' recovery would say nothing.
        if !fault.second && fault.kind != FaultKind::NodeLoss {
            groups.entry(label(fault)).or_default().push(took);
        }
    }
    groups
        .into_iter()
        .map(|(fault, took)| {
            let mut recovered: Vec<u64> = took.iter().flatten().copied().collect();
            recovered.sort_unstable();
            Recovery {
                fault,
                count: took.len(),
                // The lower median: a time some fault really took.
                median_ms: recovered
                    .get(recovered.len().saturating_sub(1) / 2)
                    .copied()
                    .unwrap_or(0),
                worst_ms: recovered.last().copied().unwrap_or(0),
                never: took.len() - recovered.len(),
            }
        })
        .collect()
}

/// One line per group, e.g. `kill of the leader: 2, median 180 ms, worst 240 ms`.
pub fn lines(recoveries: &[Recovery]) -> Vec<String> {
    recoveries
        .iter()
        .map(|r| {
            let mut line = format!(
                "{}: {}, median {} ms, worst {} ms",
                r.fault, r.count, r.median_ms, r.worst_ms
            );
            if r.never > 0 {
                line.push_str(&format!(", {} with no write answered", r.never));
            }
            line
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::Split;
    use crate::schedule::FaultKind;

    fn fault(kind: FaultKind, was_leader: bool, started_ms: u64, ended_ms: u64) -> Injected {
        Injected {
            split: (kind == FaultKind::Partition).then_some(Split::Isolated),
            ..Injected::plain(kind, "m1", was_leader, started_ms, ended_ms)
        }
    }

    fn write(invoked_ms: u64, completed_ms: Option<u64>) -> Operation {
        Operation {
            client: 0,
            key: "k".into(),
            invoked: invoked_ms * 1_000_000,
            completed: completed_ms.map(|ms| ms * 1_000_000),
            op: Op::Put {
                value: format!("v{invoked_ms}"),
            },
        }
    }

    #[test]
    fn a_fault_recovers_at_the_first_write_asked_after_it_and_answered() {
        let faults = [
            fault(FaultKind::Kill, true, 1_000, 1_500),
            fault(FaultKind::Pause, false, 5_000, 6_000),
        ];
        let history = [
            // Asked before the kill: says nothing of recovery.
            write(990, Some(1_100)),
            // Unanswered, then answered 200 ms after the kill.
            write(1_001, None),
            write(1_050, Some(1_200)),
            write(1_060, Some(1_300)),
            // A read is not a write.
            Operation {
                op: Op::Get { seen: None },
                ..write(5_000, Some(5_001))
            },
            write(5_002, Some(5_010)),
        ];
        assert_eq!(per_fault(&faults, &history, 9_000), [Some(200), Some(10)]);
    }

    #[test]
    fn a_fault_on_two_members_at_once_is_one_fault_with_one_window() {
        let first = Injected {
            with: Some("m2".into()),
            ..fault(FaultKind::Kill, true, 1_000, 2_000)
        };
        let second = Injected {
            member: "m2".into(),
            with: Some("m1".into()),
            second: true,
            ..fault(FaultKind::Kill, false, 1_003, 2_000)
        };
        let later = fault(FaultKind::Pause, false, 4_000, 4_500);
        let faults = [first, second, later];
        // The twins' windows run to the later fault, not to each other.
        assert_eq!(next_start(&faults, &faults[0]), Some(4_000));
        let history = [write(1_100, Some(1_400)), write(4_001, Some(4_002))];
        assert_eq!(
            per_fault(&faults, &history, 9_000),
            [Some(400), Some(397), Some(2)]
        );
        let grouped = grouped(&faults, per_fault(&faults, &history, 9_000));
        let labels: Vec<(&str, usize)> = grouped
            .iter()
            .map(|r| (r.fault.as_str(), r.count))
            .collect();
        assert_eq!(
            labels,
            [
                ("kill of the leader and a follower", 1),
                ("pause of a follower", 1)
            ]
        );
    }

    #[test]
    fn a_fault_with_no_write_answered_before_the_next_never_recovered() {
        let faults = [
            fault(FaultKind::Kill, true, 1_000, 1_500),
            fault(FaultKind::Kill, true, 3_000, 3_500),
        ];
        let history = [write(2_000, Some(3_100)), write(3_200, Some(3_400))];
        assert_eq!(per_fault(&faults, &history, 9_000), [None, Some(400)]);
        let grouped = grouped(&faults, per_fault(&faults, &history, 9_000));
        assert_eq!(
            grouped,
            [Recovery {
                fault: "kill of the leader".into(),
                count: 2,
                median_ms: 400,
                worst_ms: 400,
                never: 1,
            }]
        );
        assert_eq!(
            lines(&grouped),
            ["kill of the leader: 2, median 400 ms, worst 400 ms, 1 with no write answered"]
        );
    }

    #[test]
    fn faults_group_by_kind_shape_and_whom_they_struck() {
        let faults = [
            fault(FaultKind::Partition, true, 1_000, 2_000),
            fault(FaultKind::Partition, true, 3_000, 4_000),
            fault(FaultKind::Partition, false, 5_000, 6_000),
            fault(FaultKind::Pause, true, 7_000, 8_000),
        ];
        let history = [
            write(1_000, Some(1_300)),
            write(3_000, Some(3_100)),
            write(5_000, Some(5_005)),
            write(7_000, Some(7_250)),
        ];
        let grouped = grouped(&faults, per_fault(&faults, &history, 9_000));
        let figures: Vec<(&str, usize, u64, u64)> = grouped
            .iter()
            .map(|r| (r.fault.as_str(), r.count, r.median_ms, r.worst_ms))
            .collect();
        assert_eq!(
            figures,
            [
                ("partition (isolated) of a follower", 1, 5, 5),
                ("partition (isolated) of the leader", 2, 100, 300),
                ("pause of the leader", 1, 250, 250),
            ]
        );
    }
}
