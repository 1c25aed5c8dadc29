//! Serializable reads (etcd's `--consistency=s`): a member answers from its own state, which
//! may be behind the leader's, so such a read is not judged for linearizability. It is
//! judged against the store's record instead: the answer names the revision it was read
//! at, and the key must have held there exactly what was answered (the value and the
//! revision that wrote it; or nothing). A member that served a state the cluster never
//! had, or mixed two revisions, fails this.
//!
//! Pure.

use std::collections::BTreeMap;

use crate::check::watch::Change;

/// A serializable read of one key, as answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerializableRead {
    pub client: u32,
    pub key: String,
    /// The revision the answer's header names.
    pub revision: i64,
    /// The value seen and the revision that last wrote it (`None`: absent).
    pub seen: Option<(String, i64)>,
}

/// A read that does not match the record at its revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub read: SerializableRead,
    /// What the record holds for the key at the read's revision: the value and the
    /// revision that wrote it, or `None` (absent).
    pub recorded: Option<(String, i64)>,
}

/// Every read of `reads` against `record`, every change of the keys read from the first
/// revision on (in any order), through a revision no read is past.
pub fn check(reads: &[SerializableRead], record: &[Change]) -> Vec<Violation> {
    let mut by_key: BTreeMap<&str, Vec<&Change>> = BTreeMap::new();
    for change in record {
        by_key.entry(&change.key).or_default().push(change);
    }
    for changes in by_key.values_mut() {
        changes.sort_by_key(|change| change.revision);
    }
    reads
        .iter()
        .filter_map(|read| {
            let recorded = by_key
                .get(read.key.as_str())
                .and_then(|changes| {
                    changes
                        .iter()
                        .take_while(|change| change.revision <= read.revision)
                        .last()
                })
                .and_then(|change| Some((change.value.clone()?, change.revision)));
            (recorded != read.seen).then(|| Violation {
                read: read.clone(),
                recorded,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(revision: i64, value: Option<&str>) -> Change {
        Change {
            revision,
            key: "k".into(),
            value: value.map(String::from),
        }
    }

    fn read(revision: i64, seen: Option<(&str, i64)>) -> SerializableRead {
        SerializableRead {
            client: 1,
            key: "k".into(),
            revision,
            seen: seen.map(|(value, at)| (value.to_string(), at)),
        }
    }

    #[test]
    fn a_read_must_see_the_key_as_the_record_has_it_at_the_revision_it_names() {
        let record = [
            change(5, Some("b")),
            change(2, Some("a")),
            change(8, None),
            Change {
                revision: 3,
                key: "other".into(),
                value: Some("x".into()),
            },
        ];
        let true_reads = [
            read(1, None),
            read(2, Some(("a", 2))),
            read(4, Some(("a", 2))),
            read(7, Some(("b", 5))),
            read(8, None),
            read(12, None),
        ];
        assert_eq!(check(&true_reads, &record), vec![]);
        // Stale for the revision it names, a value never written there, a wrong writer's
        // revision, a deletion not seen.
        let false_reads = [
            read(5, Some(("a", 2))),
            read(4, Some(("x", 3))),
            read(6, Some(("b", 6))),
            read(9, Some(("b", 5))),
        ];
        let violations = check(&false_reads, &record);
        assert_eq!(violations.len(), 4, "{violations:#?}");
        assert_eq!(violations[0].recorded, Some(("b".to_string(), 5)));
        assert_eq!(violations[3].recorded, None);
    }
}
