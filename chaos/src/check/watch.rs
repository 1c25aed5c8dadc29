//! Watches against the store's history: each watcher must have seen every change in its
//! range from its start revision through the last revision it vouches for (its last event
//! or progress notice), each exactly once, in revision order, as the change was made — and
//! nothing else. Faults may break a watcher's stream; one that resumes from the revision
//! after its last event is one watcher to this check, and any event the resumption lost or
//! replayed shows up here.
//!
//! The reference is the history of changes as the store applied them (a watch of the whole
//! keyspace from revision 1 on the healed cluster, before any compaction). Pure.

use std::collections::{BTreeMap, HashMap};

/// One change: a put of `value` (`Some`) or a deletion (`None`) of `key` at `revision`.
/// Several changes may share a revision (one transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub revision: i64,
    pub key: String,
    pub value: Option<String>,
}

/// What one watcher saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watcher {
    pub name: String,
    /// The keys watched: every key with this prefix ("" for all).
    pub prefix: String,
    /// The first revision asked for.
    pub from: i64,
    /// The last revision the watcher vouches it has everything through.
    pub through: i64,
    pub events: Vec<Change>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// An event at an earlier revision after a later one.
    OutOfOrder {
        watcher: String,
        after: i64,
        revision: i64,
    },
    /// The same change delivered twice.
    Duplicate {
        watcher: String,
        revision: i64,
        key: String,
    },
    /// A change in the watcher's range and revisions it never saw.
    Missed {
        watcher: String,
        revision: i64,
        key: String,
    },
    /// An event for a change the store never made (or outside what was asked).
    Phantom {
        watcher: String,
        revision: i64,
        key: String,
    },
    /// The right key and revision, another value.
    Differs {
        watcher: String,
        revision: i64,
        key: String,
        made: Option<String>,
        seen: Option<String>,
    },
}

/// Every violation of every watcher; empty when all saw exactly what was made.
pub fn check(reference: &[Change], watchers: &[Watcher]) -> Vec<Violation> {
    let made: HashMap<(i64, &str), &Option<String>> = reference
        .iter()
        .map(|change| ((change.revision, change.key.as_str()), &change.value))
        .collect();
    let mut violations = Vec::new();
    for watcher in watchers {
        let name = || watcher.name.clone();
        let mut last = i64::MIN;
        let mut delivered: BTreeMap<(i64, &str), usize> = BTreeMap::new();
        for event in &watcher.events {
            if event.revision < last {
                violations.push(Violation::OutOfOrder {
                    watcher: name(),
                    after: last,
                    revision: event.revision,
                });
            }
            last = last.max(event.revision);
            let times = delivered
                .entry((event.revision, event.key.as_str()))
                .or_default();
            *times += 1;
            if *times == 2 {
                violations.push(Violation::Duplicate {
                    watcher: name(),
                    revision: event.revision,
                    key: event.key.clone(),
                });
            }
            let asked = event.key.starts_with(&watcher.prefix)
                && (watcher.from..=watcher.through).contains(&event.revision);
            match made.get(&(event.revision, event.key.as_str())) {
                Some(value) if asked => {
                    if **value != event.value {
                        violations.push(Violation::Differs {
                            watcher: name(),
                            revision: event.revision,
                            key: event.key.clone(),
                            made: (*value).clone(),
                            seen: event.value.clone(),
                        });
                    }
                }
                // Made, but not asked for (another range, or past what it vouches for, which
                // is only a violation if outside the range or before the start).
                Some(_) if event.revision > watcher.through => {}
                _ => violations.push(Violation::Phantom {
                    watcher: name(),
                    revision: event.revision,
                    key: event.key.clone(),
                }),
            }
        }
        for change in reference {
            let asked = change.key.starts_with(&watcher.prefix)
                && (watcher.from..=watcher.through).contains(&change.revision);
            if asked && !delivered.contains_key(&(change.revision, change.key.as_str())) {
                violations.push(Violation::Missed {
                    watcher: name(),
                    revision: change.revision,
                    key: change.key.clone(),
                });
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(revision: i64, key: &str, value: &str) -> Change {
        Change {
            revision,
            key: key.into(),
            value: Some(value.into()),
        }
    }

    fn delete(revision: i64, key: &str) -> Change {
        Change {
            revision,
            key: key.into(),
            value: None,
        }
    }

    /// Puts at 2 and 3, a transaction of two puts at 4, a deletion at 5.
    fn reference() -> Vec<Change> {
        vec![
            put(2, "a/1", "x"),
            put(3, "b/1", "y"),
            put(4, "a/2", "z"),
            put(4, "b/2", "w"),
            delete(5, "a/1"),
        ]
    }

    fn watcher(prefix: &str, from: i64, through: i64, events: Vec<Change>) -> Watcher {
        Watcher {
            name: "w".into(),
            prefix: prefix.into(),
            from,
            through,
            events,
        }
    }

    #[test]
    fn watchers_that_saw_exactly_their_range_pass() {
        let everything = watcher("", 1, 5, reference());
        let prefixed = watcher("a/", 3, 5, vec![put(4, "a/2", "z"), delete(5, "a/1")]);
        // Through 4 only: the deletion at 5 is not yet vouched for.
        let early = watcher("", 2, 4, reference()[..4].to_vec());
        assert_eq!(check(&reference(), &[everything, prefixed, early]), []);
    }

    #[test]
    fn a_resumption_that_lost_or_replayed_an_event_is_caught() {
        // Resumed from 4 instead of after 3: the event at 3 twice. Resumed from 5: 4 missed.
        let mut replayed = reference();
        replayed.insert(2, put(3, "b/1", "y"));
        let mut lost = reference();
        lost.retain(|change| change.revision != 4);
        let violations = check(
            &reference(),
            &[watcher("", 1, 5, replayed), watcher("", 1, 5, lost)],
        );
        assert_eq!(
            violations,
            [
                Violation::Duplicate {
                    watcher: "w".into(),
                    revision: 3,
                    key: "b/1".into()
                },
                Violation::Missed {
                    watcher: "w".into(),
                    revision: 4,
                    key: "a/2".into()
                },
                Violation::Missed {
                    watcher: "w".into(),
                    revision: 4,
                    key: "b/2".into()
                },
            ]
        );
    }

    #[test]
    fn disorder_phantoms_wrong_values_and_foreign_keys_are_each_named() {
        let events = vec![
            put(3, "b/1", "y"),
            put(2, "a/1", "x"),
            put(4, "a/2", "other"),
            put(4, "b/2", "w"),
            delete(5, "a/1"),
            put(6, "never", "made"),
        ];
        let violations = check(&reference(), &[watcher("", 1, 6, events)]);
        assert!(violations.contains(&Violation::OutOfOrder {
            watcher: "w".into(),
            after: 3,
            revision: 2
        }));
        assert!(violations.contains(&Violation::Differs {
            watcher: "w".into(),
            revision: 4,
            key: "a/2".into(),
            made: Some("z".into()),
            seen: Some("other".into())
        }));
        assert!(violations.contains(&Violation::Phantom {
            watcher: "w".into(),
            revision: 6,
            key: "never".into()
        }));
        assert_eq!(violations.len(), 3, "{violations:?}");
        // A key outside the prefix, or a revision before the start, was not asked for.
        let foreign = watcher(
            "a/",
            3,
            5,
            vec![put(3, "b/1", "y"), put(4, "a/2", "z"), delete(5, "a/1")],
        );
        let early = watcher("", 3, 5, reference());
        let violations = check(&reference(), &[foreign, early]);
        assert_eq!(
            violations,
            [
                Violation::Phantom {
                    watcher: "w".into(),
                    revision: 3,
                    key: "b/1".into()
                },
                Violation::Phantom {
                    watcher: "w".into(),
                    revision: 2,
                    key: "a/1".into()
                },
            ]
        );
    }
}
