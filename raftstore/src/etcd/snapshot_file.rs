//! etcd's snapshot file (what `etcdctl snapshot save` writes from the `Snapshot` stream, and
//! `snapshot status` and `snapshot restore` read), to and from the keyspace's image (pure):
//! a bbolt database ([`crate::bbolt`]) with etcd's buckets, then the SHA-256 of it.
//!
//! ```text
//!  key    revision (8 bytes big-endian main, '_', 8 bytes big-endian sub; 't' after a
//!         deletion's) → mvccpb.KeyValue: every version kept since the compaction
//!  lease  lease id (8 bytes big-endian) → leasepb.Lease { ID, TTL }
//!  meta   finishedCompactRev → the compaction's revision (as a key of `key`);
//!         consistent_index → the applied Raft index (8 bytes big-endian; restore
//!         rewrites it)
//! ```
//!
//! So a Rudder snapshot restores into etcd, and an etcd snapshot into Rudder.

use std::collections::BTreeMap;

use prost::Message;
use rudder_proto::mvccpb;
use sha2::{Digest, Sha256};

use crate::bbolt::{self, BboltError, Bucket};
use crate::kv::{EventKind, KeyValue, Lease};
use crate::mvcc::{MvccImage, Rev, Version};

const KEY: &[u8] = b"key";
const LEASE: &[u8] = b"lease";
const META: &[u8] = b"meta";
const FINISHED_COMPACT: &[u8] = b"finishedCompactRev";
/// etcd writes this when a compaction starts, and `finishedCompactRev` when it is done.
const SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
const CONSISTENT_INDEX: &[u8] = b"consistent_index";
const TOMBSTONE: u8 = b't';
const SHA256_LEN: usize = 32;

/// leasepb.Lease, as etcd stores a lease.
#[derive(Clone, PartialEq, Message)]
struct LeaseRecord {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(int64, tag = "2")]
    ttl: i64,
    #[prost(int64, tag = "3")]
    remaining_ttl: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error(transparent)]
    Bbolt(#[from] BboltError),
    #[error(
        "the snapshot's SHA-256 does not match its contents: the file is damaged or cut short"
    )]
    HashMismatch,
    #[error(
        "the snapshot has no SHA-256 at its end (not written by `snapshot save`?); pass \
         --skip-hash-check to restore it anyway"
    )]
    NoHash,
    #[error("the snapshot has no `key` bucket: it is not an etcd snapshot")]
    NoKeyBucket,
    #[error("bad entry in bucket {bucket:?}: {why}")]
    BadEntry { bucket: &'static str, why: String },
}

/// A revision as etcd's `key` bucket orders it.
fn revision_key(rev: Rev, kind: EventKind) -> Vec<u8> {
    let mut key = Vec::with_capacity(18);
    key.extend_from_slice(&rev.main.to_be_bytes());
    key.push(b'_');
    key.extend_from_slice(&u64::from(rev.sub).to_be_bytes());
    if kind == EventKind::Delete {
        key.push(TOMBSTONE);
    }
    key
}

fn bad(bucket: &'static str, why: impl Into<String>) -> SnapshotFileError {
    SnapshotFileError::BadEntry {
        bucket,
        why: why.into(),
    }
}

/// Reads a key of the `key` bucket: the revision, and whether it is a deletion's.
fn parse_revision_key(key: &[u8]) -> Result<(Rev, EventKind), SnapshotFileError> {
    let kind = match key.len() {
        17 => EventKind::Put,
        18 if key[17] == TOMBSTONE => EventKind::Delete,
        _ => return Err(bad("key", format!("a revision key of {} bytes", key.len()))),
    };
    if key[8] != b'_' {
        return Err(bad("key", "a revision key without its '_'"));
    }
    let main = i64::from_be_bytes(key[0..8].try_into().expect("8 bytes"));
    let sub = u64::from_be_bytes(key[9..17].try_into().expect("8 bytes"));
    let sub = u32::try_from(sub).map_err(|_| bad("key", format!("sub-revision {sub}")))?;
    Ok((Rev { main, sub }, kind))
}

/// The snapshot file of `image` (the keyspace at `applied_index` of the Raft log): the
/// bbolt database, then its SHA-256.
pub fn encode(image: &MvccImage, applied_index: u64) -> Result<Vec<u8>, BboltError> {
    let keys: Bucket = image
        .versions
        .iter()
        .map(|(rev, version)| {
            let kv = &version.kv;
            let record = mvccpb::KeyValue {
                key: kv.key.clone(),
                create_revision: kv.create_revision,
                mod_revision: kv.mod_revision,
                version: kv.version,
                value: kv.value.to_vec(),
                lease: kv.lease,
            };
            (revision_key(*rev, version.kind), record.encode_to_vec())
        })
        .collect();
    let leases: Bucket = image
        .leases
        .iter()
        .map(|lease| {
            let record = LeaseRecord {
                id: lease.id,
                ttl: lease.ttl,
                remaining_ttl: 0,
            };
            (lease.id.to_be_bytes().to_vec(), record.encode_to_vec())
        })
        .collect();
    let compacted = Rev {
        main: image.compact_revision,
        sub: 0,
    };
    let meta: Bucket = [
        (
            FINISHED_COMPACT.to_vec(),
            revision_key(compacted, EventKind::Put),
        ),
        (
            CONSISTENT_INDEX.to_vec(),
            applied_index.to_be_bytes().to_vec(),
        ),
    ]
    .into();
    let buckets: BTreeMap<Vec<u8>, Bucket> = [
        (KEY.to_vec(), keys),
        (LEASE.to_vec(), leases),
        (META.to_vec(), meta),
    ]
    .into();
    let mut file = bbolt::write(&buckets)?;
    let hash = Sha256::digest(&file);
    file.extend_from_slice(&hash);
    Ok(file)
}

/// Whether `file` ends with a SHA-256 of the rest, by etcd's rule: a bbolt database is
/// whole pages (multiples of 512 bytes), so 32 bytes more is the hash.
fn has_hash(file: &[u8]) -> bool {
    file.len() % 512 == SHA256_LEN
}

/// The length of the database in `file` (without the SHA-256 after it, if there is one).
pub fn database_len(file: &[u8]) -> usize {
    if has_hash(file) {
        file.len() - SHA256_LEN
    } else {
        file.len()
    }
}

/// The keyspace image in an etcd snapshot `file` (etcd's or Rudder's), its hash checked
/// unless `skip_hash_check`.
pub fn decode(file: &[u8], skip_hash_check: bool) -> Result<MvccImage, SnapshotFileError> {
    let database = if has_hash(file) {
        let (database, hash) = file.split_at(file.len() - SHA256_LEN);
        if Sha256::digest(database).as_slice() != hash && !skip_hash_check {
            return Err(SnapshotFileError::HashMismatch);
        }
        database
    } else if skip_hash_check {
        file
    } else {
        return Err(SnapshotFileError::NoHash);
    };
    let buckets = bbolt::read(database)?;
    let keys = buckets.get(KEY).ok_or(SnapshotFileError::NoKeyBucket)?;
    let mut versions = Vec::with_capacity(keys.len());
    for (key, value) in keys {
        let (rev, kind) = parse_revision_key(key)?;
        let record = mvccpb::KeyValue::decode(value.as_slice())
            .map_err(|error| bad("key", format!("revision {}: {error}", rev.main)))?;
        let kv = KeyValue {
            key: record.key,
            create_revision: record.create_revision,
            // etcd writes a deletion's record with its key alone.
            mod_revision: if kind == EventKind::Delete {
                rev.main
            } else {
                record.mod_revision
            },
            version: record.version,
            value: record.value.into(),
            lease: record.lease,
        };
        versions.push((rev, Version { kind, kv }));
    }
    let mut leases = Vec::new();
    for (key, value) in buckets.get(LEASE).into_iter().flatten() {
        let record = LeaseRecord::decode(value.as_slice())
            .map_err(|error| bad("lease", format!("lease {key:x?}: {error}")))?;
        leases.push(Lease {
            id: record.id,
            ttl: record.ttl,
        });
    }
    // A compaction etcd had started but not finished is as good as done (etcd's own restore
    // finishes it): older versions may still be in the file, but are no longer readable.
    let mut compact_revision = 0;
    for name in [FINISHED_COMPACT, SCHEDULED_COMPACT] {
        if let Some(revision) = buckets.get(META).and_then(|meta| meta.get(name)) {
            compact_revision = compact_revision.max(parse_revision_key(revision)?.0.main);
        }
    }
    let revision = versions
        .last()
        .map_or(0, |(rev, _)| rev.main)
        .max(compact_revision);
    Ok(MvccImage {
        revision,
        compact_revision,
        versions,
        leases,
        // A cluster made from a snapshot starts with no alarm standing.
        alarms: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(main: i64, sub: u32, key: &str, value: &str, lease: i64) -> (Rev, Version) {
        (
            Rev { main, sub },
            Version {
                kind: EventKind::Put,
                kv: KeyValue {
                    key: key.into(),
                    create_revision: 2,
                    mod_revision: main,
                    version: 1,
                    value: value.as_bytes().to_vec().into(),
                    lease,
                },
            },
        )
    }

    fn image() -> MvccImage {
        let deleted = (
            Rev { main: 5, sub: 0 },
            Version {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: b"gone".to_vec(),
                    mod_revision: 5,
                    ..KeyValue::default()
                },
            },
        );
        MvccImage {
            revision: 5,
            compact_revision: 2,
            versions: vec![
                put(2, 0, "a", "1", 0),
                put(3, 0, "b", "2", 7),
                put(3, 1, "gone", "x", 0),
                put(4, 0, "a", "3", 0),
                deleted,
            ],
            leases: vec![Lease { id: 7, ttl: 60 }],
            alarms: Vec::new(),
        }
    }

    #[test]
    fn an_image_reads_back_as_written() {
        let file = encode(&image(), 42).unwrap();
        assert!(has_hash(&file));
        let read = decode(&file, false).unwrap();
        assert_eq!(read.revision, 5);
        assert_eq!(read.compact_revision, 2);
        assert_eq!(read.versions, image().versions);
        assert_eq!(read.leases, image().leases);
    }

    #[test]
    fn etcds_key_format_is_big_endian_revisions_with_a_tombstone_mark() {
        let key = revision_key(Rev { main: 258, sub: 1 }, EventKind::Delete);
        assert_eq!(key, b"\0\0\0\0\0\0\x01\x02_\0\0\0\0\0\0\0\x01t");
        assert_eq!(
            parse_revision_key(&key).unwrap(),
            (Rev { main: 258, sub: 1 }, EventKind::Delete)
        );
        assert!(parse_revision_key(b"short").is_err());
    }

    #[test]
    fn a_damaged_or_unhashed_file_is_refused_unless_told() {
        let mut file = encode(&image(), 1).unwrap();
        let middle = file.len() / 2;
        file[middle] ^= 1;
        assert!(matches!(
            decode(&file, false),
            Err(SnapshotFileError::HashMismatch)
        ));
        let database = &encode(&image(), 1).unwrap()[..file.len() - SHA256_LEN];
        assert!(matches!(
            decode(database, false),
            Err(SnapshotFileError::NoHash)
        ));
        assert_eq!(decode(database, true).unwrap().revision, 5);
    }
}
