//! Which links a network partition cuts: the shapes Jepsen's nemeses use, over member
//! indexes, decided when the fault starts (the victim is who leads or follows then). Pure.
//!
//! A cut `(from, to)` means `to` receives nothing from `from`; a two-way cut is both pairs.
//! The runner's clients are never cut: they still reach every member, so a member on the
//! wrong side of a partition is still asked, and must not answer what it cannot know.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// The shape of a partition around its victim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    /// The victim alone, cut both ways from every other member.
    Isolated,
    /// The victim in the largest minority (alone in 3 members, with one more in 5), cut
    /// both ways from the majority: a leader here must lose its leadership.
    Minority,
    /// Two halves that cannot reach each other, the victim in one, and one member (the
    /// first after the victim that does not lead) reaching both: with 3 members the victim
    /// and the third are cut from each other and the bridge hears both. (A leader as the
    /// bridge would make a cut no message crosses: followers do not talk to each other.)
    Bridge,
    /// The victim receives nothing from the others; its packets still reach them. Over
    /// TCP that stalls its side too, once its segments go unacknowledged: a one-way cut
    /// at the packet level, as Jepsen's, not a one-way channel.
    OneWay,
}

impl Split {
    pub const ALL: [Split; 4] = [
        Split::Isolated,
        Split::Minority,
        Split::Bridge,
        Split::OneWay,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Split::Isolated => "isolated",
            Split::Minority => "minority",
            Split::Bridge => "bridge",
            Split::OneWay => "one-way",
        }
    }
}

/// The directed links `(from, to)` that `split` cuts among `members`, around `victim`,
/// while `leader` leads.
pub fn cuts(
    split: Split,
    members: usize,
    victim: usize,
    leader: usize,
) -> BTreeSet<(usize, usize)> {
    let others: Vec<usize> = (0..members).filter(|m| *m != victim).collect();
    let mut cut = BTreeSet::new();
    let mut both_ways = |a: usize, b: usize| {
        cut.insert((a, b));
        cut.insert((b, a));
    };
    match split {
        Split::Isolated => others.iter().for_each(|o| both_ways(victim, *o)),
        Split::Minority => {
            let (minority, majority) = sides(split, members, victim, leader);
            for a in &minority {
                for b in &majority {
                    both_ways(*a, *b);
                }
            }
        }
        Split::Bridge => {
            let (left, right) = bridged_halves(members, victim, leader);
            for a in &left {
                for b in &right {
                    both_ways(*a, *b);
                }
            }
        }
        Split::OneWay => {
            for o in &others {
                cut.insert((*o, victim));
            }
        }
    }
    cut
}

/// The two sides, the victim's first: for a [`Split::Bridge`], the victim's half with the
/// bridge, and the other half.
pub fn sides(
    split: Split,
    members: usize,
    victim: usize,
    leader: usize,
) -> (Vec<usize>, Vec<usize>) {
    let others: Vec<usize> = (0..members).filter(|m| *m != victim).collect();
    match split {
        Split::Isolated | Split::OneWay => (vec![victim], others),
        Split::Minority => {
            // The largest minority: (members - 1) / 2, the victim and the next ones round.
            let size = (members - 1) / 2;
            let minority: Vec<usize> = (0..size).map(|k| (victim + k) % members).collect();
            let majority = (0..members).filter(|m| !minority.contains(m)).collect();
            (minority, majority)
        }
        Split::Bridge => {
            let (mut left, right) = bridged_halves(members, victim, leader);
            left.push(bridge(members, victim, leader));
            (left, right)
        }
    }
}

/// The member that reaches both halves of a bridge: the first after the victim that does
/// not lead.
fn bridge(members: usize, victim: usize, leader: usize) -> usize {
    (1..members)
        .map(|k| (victim + k) % members)
        .find(|m| *m != leader)
        .expect("3 members or more")
}

/// The bridge's two halves, the victim's first: everyone but the bridge, taken in turn
/// from the victim round, to each half alternately.
fn bridged_halves(members: usize, victim: usize, leader: usize) -> (Vec<usize>, Vec<usize>) {
    let bridge = bridge(members, victim, leader);
    let rest: Vec<usize> = (0..members)
        .map(|k| (victim + k) % members)
        .filter(|m| *m != bridge)
        .collect();
    let left = rest.iter().step_by(2).copied().collect();
    let right = rest.iter().skip(1).step_by(2).copied().collect();
    (left, right)
}

/// How the partition reads in a run's progress and report, e.g. `m1 | m2 m3`, or
/// `m1 | m3, both reaching m2` for a bridge: `names[i]` is member `i`'s.
pub fn describe(split: Split, victim: usize, leader: usize, names: &[String]) -> String {
    let members = names.len();
    let list = |side: &[usize]| {
        side.iter()
            .map(|m| names[*m].as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    match split {
        Split::Bridge => {
            let (left, right) = bridged_halves(members, victim, leader);
            format!(
                "{} | {}, both reaching {}",
                list(&left),
                list(&right),
                names[bridge(members, victim, leader)]
            )
        }
        Split::OneWay => {
            let (_, others) = sides(split, members, victim, leader);
            format!("{} hears nothing from {}", names[victim], list(&others))
        }
        Split::Isolated | Split::Minority => {
            let (mine, theirs) = sides(split, members, victim, leader);
            format!("{} | {}", list(&mine), list(&theirs))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("m{i}")).collect()
    }

    #[test]
    fn an_isolated_member_neither_hears_nor_is_heard() {
        let cut = cuts(Split::Isolated, 3, 1, 1);
        let expected: BTreeSet<_> = [(1, 0), (0, 1), (1, 2), (2, 1)].into();
        assert_eq!(cut, expected);
        assert_eq!(describe(Split::Isolated, 1, 1, &names(3)), "m2 | m1 m3");
    }

    #[test]
    fn a_minority_is_as_large_as_a_minority_can_be_and_holds_the_victim() {
        assert_eq!(
            cuts(Split::Minority, 3, 2, 0),
            cuts(Split::Isolated, 3, 2, 0)
        );
        let (minority, majority) = sides(Split::Minority, 5, 4, 4);
        assert_eq!(minority, vec![4, 0]);
        assert_eq!(majority, vec![1, 2, 3]);
        let cut = cuts(Split::Minority, 5, 4, 4);
        assert_eq!(cut.len(), 2 * 2 * 3);
        assert!(!cut.contains(&(4, 0)) && !cut.contains(&(1, 2)));
        assert_eq!(
            describe(Split::Minority, 4, 4, &names(5)),
            "m5 m1 | m2 m3 m4"
        );
    }

    #[test]
    fn a_bridge_cuts_the_victim_s_half_from_the_other_and_the_next_member_reaches_both() {
        let cut = cuts(Split::Bridge, 5, 0, 0);
        // The bridge is 1; halves {0, 3} and {2, 4}.
        let expected: BTreeSet<_> = [
            (0, 2),
            (2, 0),
            (0, 4),
            (4, 0),
            (3, 2),
            (2, 3),
            (3, 4),
            (4, 3),
        ]
        .into();
        assert_eq!(cut, expected);
        assert!(cut.iter().all(|(a, b)| *a != 1 && *b != 1));
        assert_eq!(sides(Split::Bridge, 5, 0, 0), (vec![0, 3, 1], vec![2, 4]));
        // With 3 members: the victim and the third cannot reach each other.
        assert_eq!(cuts(Split::Bridge, 3, 2, 2), [(2, 1), (1, 2)].into());
        assert_eq!(
            describe(Split::Bridge, 0, 0, &names(5)),
            "m1 m4 | m3 m5, both reaching m2"
        );
    }

    #[test]
    fn one_way_cuts_only_what_reaches_the_victim() {
        let cut = cuts(Split::OneWay, 3, 0, 1);
        assert_eq!(cut, [(1, 0), (2, 0)].into());
        assert_eq!(
            describe(Split::OneWay, 0, 1, &names(3)),
            "m1 hears nothing from m2 m3"
        );
    }

    #[test]
    fn a_follower_s_bridge_is_never_the_leader() {
        // Victim 0, leader 1: the bridge is 2, and the leader is cut from the victim.
        assert_eq!(cuts(Split::Bridge, 3, 0, 1), [(0, 1), (1, 0)].into());
        assert_eq!(
            describe(Split::Bridge, 0, 1, &names(3)),
            "m1 | m2, both reaching m3"
        );
    }

    #[test]
    fn every_shape_cuts_a_link_of_the_leader_and_never_a_member_from_itself() {
        // Followers do not talk to each other: a cut that spares the leader's links would
        // drop nothing, and test nothing.
        for members in [3, 5, 7] {
            for victim in 0..members {
                for leader in 0..members {
                    for split in Split::ALL {
                        let cut = cuts(split, members, victim, leader);
                        let case =
                            format!("{split:?} of {members}, victim {victim}, leader {leader}");
                        assert!(
                            cut.iter().any(|(a, b)| *a == leader || *b == leader),
                            "{case}"
                        );
                        assert!(cut
                            .iter()
                            .all(|(a, b)| a != b && *a < members && *b < members));
                    }
                }
            }
        }
    }
}
