//! One request, at most one application: a workload writes values no one writes twice, a
//! watch from the first revision records every change, and this compares the two.
//!
//! | what a client heard | what must be in the watch |
//! |---|---|
//! | applied at revision r | the value exactly once, at r |
//! | not applied (a compare-and-swap whose compare failed) | the value nowhere |
//! | unknown (an error, a timeout) | the value at most once |
//!
//! The watch itself must be in order: revisions strictly increase.

use std::collections::BTreeMap;

/// What the client that wrote a value was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Applied {
        revision: i64,
    },
    /// The store said the write did not happen (a transaction's compare failed).
    NotApplied,
    /// An error: the write may or may not have happened.
    Unknown,
}

/// One change seen by the watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub revision: i64,
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// One write, applied more than once.
    AppliedTwice { value: String, revisions: Vec<i64> },
    /// Acknowledged, but never seen.
    Lost { value: String, revision: i64 },
    /// Acknowledged at one revision, seen at another.
    WrongRevision {
        value: String,
        answered: i64,
        seen: i64,
    },
    /// Answered "not applied", but applied (typically by an earlier attempt of the same
    /// request, whose retry then failed its own compare).
    AppliedThoughRefused { value: String, revision: i64 },
    /// A value no client wrote.
    Unwritten { value: String, revision: i64 },
    /// The watch went back or stood still.
    OutOfOrder { after: i64, revision: i64 },
}

/// The puts among a watch's changes (a deletion writes no value).
pub fn puts_of(changes: Vec<crate::check::watch::Change>) -> Vec<Seen> {
    changes
        .into_iter()
        .filter_map(|change| {
            Some(Seen {
                revision: change.revision,
                key: change.key,
                value: change.value?,
            })
        })
        .collect()
}

/// Every violation of the table above; empty when the history is right.
pub fn check(answers: &BTreeMap<String, Answer>, seen: &[Seen]) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut last = 0;
    let mut by_value: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for change in seen {
        if change.revision < last {
            violations.push(Violation::OutOfOrder {
                after: last,
                revision: change.revision,
            });
        }
        last = change.revision;
        by_value
            .entry(&change.value)
            .or_default()
            .push(change.revision);
    }
    for (value, revisions) in &by_value {
        let value = value.to_string();
        if revisions.len() > 1 {
            violations.push(Violation::AppliedTwice {
                value: value.clone(),
                revisions: revisions.clone(),
            });
        }
        let revision = revisions[0];
        match answers.get(&value) {
            None => violations.push(Violation::Unwritten { value, revision }),
            Some(Answer::NotApplied) => {
                violations.push(Violation::AppliedThoughRefused { value, revision })
            }
            Some(Answer::Applied { revision: answered }) if *answered != revision => violations
                .push(Violation::WrongRevision {
                    value,
                    answered: *answered,
                    seen: revision,
                }),
            Some(_) => {}
        }
    }
    for (value, answer) in answers {
        if let Answer::Applied { revision } = answer {
            if !by_value.contains_key(value.as_str()) {
                violations.push(Violation::Lost {
                    value: value.clone(),
                    revision: *revision,
                });
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(revision: i64, value: &str) -> Seen {
        Seen {
            revision,
            key: "k".into(),
            value: value.into(),
        }
    }

    #[test]
    fn a_right_history_has_no_violation() {
        let answers = BTreeMap::from([
            ("a".to_string(), Answer::Applied { revision: 2 }),
            ("b".to_string(), Answer::Unknown),
            ("c".to_string(), Answer::Unknown),
            ("d".to_string(), Answer::NotApplied),
        ]);
        assert_eq!(check(&answers, &[seen(2, "a"), seen(3, "b")]), []);
    }

    #[test]
    fn a_value_at_two_revisions_is_applied_twice_whatever_the_answer() {
        let answers = BTreeMap::from([("a".to_string(), Answer::Applied { revision: 5 })]);
        assert_eq!(
            check(&answers, &[seen(5, "a"), seen(7, "a")]),
            [Violation::AppliedTwice {
                value: "a".into(),
                revisions: vec![5, 7]
            }]
        );
        let unknown = BTreeMap::from([("a".to_string(), Answer::Unknown)]);
        assert_eq!(check(&unknown, &[seen(5, "a"), seen(7, "a")]).len(), 1);
    }

    #[test]
    fn lost_misplaced_refused_unwritten_and_disordered_writes_are_each_named() {
        let answers = BTreeMap::from([
            ("lost".to_string(), Answer::Applied { revision: 1 }),
            ("moved".to_string(), Answer::Applied { revision: 2 }),
            ("refused".to_string(), Answer::NotApplied),
        ]);
        let violations = check(
            &answers,
            &[seen(3, "moved"), seen(4, "refused"), seen(2, "ghost")],
        );
        assert_eq!(
            violations,
            [
                Violation::OutOfOrder {
                    after: 4,
                    revision: 2
                },
                Violation::Unwritten {
                    value: "ghost".into(),
                    revision: 2
                },
                Violation::WrongRevision {
                    value: "moved".into(),
                    answered: 2,
                    seen: 3
                },
                Violation::AppliedThoughRefused {
                    value: "refused".into(),
                    revision: 4
                },
                Violation::Lost {
                    value: "lost".into(),
                    revision: 1
                },
            ]
        );
    }
}
