//! The data directory's format version, and opening the formats of earlier releases.
//!
//! | version | written by | what it holds |
//! |---|---|---|
//! | 1 | releases before exactly-once writes (no `format` key) | log entries carry bare commands |
//! | 2 | releases before alarms | log entries carry tagged requests and the leader's time; snapshots and the `sessions` column family carry the request table |
//! | 3 | releases before snapshot files | snapshots carry the standing alarms ([`crate::alarms`]) |
//! | 4 | this release | the last snapshot is a file beside the database ([`crate::snapshot_file`]), no longer in its `snapshot` family |
//!
//! A member opens version 1 by rewriting its log entries and its last snapshot in version
//! 3's form, and version 2 by rewriting its last snapshot (each in one synced batch, so a
//! crash midway leaves the old version intact); then version 3 by writing its snapshot to
//! the file and deleting it from the database (a crash before the deletion writes the file
//! again). It refuses a version it does not know with the version found and the one it
//! needs.

use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::db::{Db, DbError, CF_LOGS, CF_RAFT, CF_SNAPSHOT};
use crate::sessions::Sessions;
use crate::snapshot_file::{SnapshotFile, SnapshotFileError};
use crate::state_machine::{SnapshotImage, StoredSnapshot};
use crate::types::{Entry, Proposal, Request};

/// The format this release writes.
pub const CURRENT: u32 = 4;

const FORMAT_KEY: &str = "format";

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("the data directory has format version {found}, but this rudder reads versions 1 to {CURRENT}: run the rudder release that wrote it, or a newer one")]
    Newer { found: u32 },
    #[error("reading the data directory's format version")]
    Read(#[source] DbError),
    #[error("migrating the data directory from format version {from} to {CURRENT} ({what}); the directory is unchanged")]
    Migrate {
        from: u32,
        what: &'static str,
        #[source]
        source: DbError,
    },
    #[error("migrating the data directory from format version 3 to {CURRENT} (moving the snapshot to its file); it stays at format 3")]
    MoveSnapshot(#[source] SnapshotFileError),
}

/// Makes `db` hold the current format: records it in a new directory, migrates an older one,
/// refuses a newer one. Returns the version the directory had.
pub fn open(db: &Db) -> Result<u32, FormatError> {
    let recorded: Option<u32> = db.get(CF_RAFT, FORMAT_KEY).map_err(FormatError::Read)?;
    let member_id: Option<u64> = db.get(CF_RAFT, "member_id").map_err(FormatError::Read)?;
    let found = match (recorded, member_id) {
        (Some(version), _) => version,
        // Every member records its id first thing, so an id without a version is version 1.
        (None, Some(_)) => 1,
        (None, None) => CURRENT, // a new directory
    };
    match found {
        CURRENT if recorded.is_some() => Ok(CURRENT),
        CURRENT => record(db, WriteBatch::default(), found, CURRENT).map(|()| found),
        1..=3 => {
            if found < 3 {
                let batch = if found == 1 {
                    v1::migrate(db)?
                } else {
                    v2::migrate(db)?
                };
                record(db, batch, found, 3)?;
            }
            record(db, v3::migrate(db)?, 3, CURRENT)?;
            tracing::info!(from = found, to = CURRENT, "migrated the data directory");
            Ok(found)
        }
        found => Err(FormatError::Newer { found }),
    }
}

/// Writes `batch` with `version` recorded, synced.
fn record(db: &Db, mut batch: WriteBatch, from: u32, version: u32) -> Result<(), FormatError> {
    let failed = |what| move |source| FormatError::Migrate { from, what, source };
    db.put_in(&mut batch, CF_RAFT, FORMAT_KEY, &version)
        .map_err(failed("recording the version"))?;
    db.write_synced(batch).map_err(failed("writing"))
}

/// The errors of migrating from version `from`, by what was being done.
fn failed(from: u32, what: &'static str) -> impl FnOnce(DbError) -> FormatError {
    move |source| FormatError::Migrate { from, what, source }
}

fn undecodable(from: u32, what: &'static str) -> impl FnOnce(codec::DecodeError) -> FormatError {
    move |source| failed(from, what)(DbError::Decode { what, source })
}

fn unencodable(from: u32, what: &'static str) -> impl FnOnce(codec::EncodeError) -> FormatError {
    move |source| failed(from, what)(DbError::Encode { what, source })
}

/// Rewrites the stored snapshot, if there is one, through `convert` (its image as version
/// `from` encoded it, to the current one), into `batch`.
fn migrate_snapshot<Old: serde::de::DeserializeOwned>(
    db: &Db,
    batch: &mut WriteBatch,
    from: u32,
    convert: impl FnOnce(Old) -> SnapshotImage,
) -> Result<(), FormatError> {
    let stored: Option<StoredSnapshot> = db
        .get(CF_SNAPSHOT, "current")
        .map_err(failed(from, "reading the snapshot"))?;
    if let Some(mut stored) = stored {
        let old: Old = codec::decode(&stored.data).map_err(undecodable(from, "snapshot"))?;
        stored.data = codec::encode(&convert(old)).map_err(unencodable(from, "snapshot"))?;
        db.put_in(batch, CF_SNAPSHOT, "current", &stored)
            .map_err(failed(from, "writing the snapshot"))?;
    }
    Ok(())
}

/// Format 3 and its migration: the last snapshot was kept in the database.
mod v3 {
    use super::*;

    /// Writes the stored snapshot, if there is one, to its file; returns the batch that
    /// deletes it from the database.
    pub fn migrate(db: &Db) -> Result<WriteBatch, FormatError> {
        let mut batch = WriteBatch::default();
        let stored: Option<StoredSnapshot> = db
            .get(CF_SNAPSHOT, "current")
            .map_err(failed(3, "reading the snapshot"))?;
        if let Some(stored) = stored {
            SnapshotFile::beside(db.path())
                .write_data(&stored.meta, &stored.data)
                .map_err(FormatError::MoveSnapshot)?;
            batch.delete_cf(db.cf(CF_SNAPSHOT), "current");
        }
        Ok(batch)
    }
}

/// Format 2 and its migration: its snapshots' keyspace held no alarms.
mod v2 {
    use super::*;
    use crate::kv::Lease;
    use crate::mvcc::{Rev, Version};
    use crate::types::NodeId;
    use std::collections::BTreeSet;

    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    pub struct MvccImage {
        pub revision: i64,
        pub compact_revision: i64,
        pub versions: Vec<(Rev, Version)>,
        pub leases: Vec<Lease>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct SnapshotImage {
        pub mvcc: MvccImage,
        pub members_ever: BTreeSet<NodeId>,
        pub cluster_id: u64,
        pub sessions: Sessions,
    }

    /// A version 1 or 2 keyspace in the current form: no alarm stood before alarms.
    pub fn mvcc(old: MvccImage) -> crate::mvcc::MvccImage {
        crate::mvcc::MvccImage {
            revision: old.revision,
            compact_revision: old.compact_revision,
            versions: old.versions,
            leases: old.leases,
            alarms: Vec::new(),
        }
    }

    pub fn image(old: SnapshotImage) -> super::SnapshotImage {
        super::SnapshotImage {
            mvcc: mvcc(old.mvcc),
            members_ever: old.members_ever,
            cluster_id: old.cluster_id,
            sessions: old.sessions,
        }
    }

    /// The batch that rewrites the stored snapshot.
    pub fn migrate(db: &Db) -> Result<WriteBatch, FormatError> {
        let mut batch = WriteBatch::default();
        migrate_snapshot(db, &mut batch, 2, image)?;
        Ok(batch)
    }
}

/// Format 1 and its migration.
mod v1 {
    use super::v2::MvccImage;
    use super::*;
    use crate::kv::Command;
    use crate::types::{Applied, Member, NodeId};
    use std::collections::BTreeSet;
    use std::io::Cursor;

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Proposal {
        pub commands: Vec<Command>,
    }

    openraft::declare_raft_types!(
        pub TypeConfig:
            D = Proposal,
            R = Applied,
            NodeId = NodeId,
            Node = Member,
            Entry = openraft::Entry<TypeConfig>,
            SnapshotData = Cursor<Vec<u8>>,
            AsyncRuntime = openraft::TokioRuntime,
    );

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct SnapshotImage {
        pub mvcc: MvccImage,
        pub members_ever: BTreeSet<NodeId>,
        pub cluster_id: u64,
    }

    /// Version 1 of a log entry in version 2's form: the commands untagged (they were
    /// proposed before requests had ids), at log time 0.
    pub fn entry(old: openraft::Entry<TypeConfig>) -> Entry {
        let payload = match old.payload {
            openraft::EntryPayload::Blank => openraft::EntryPayload::Blank,
            openraft::EntryPayload::Normal(proposal) => {
                openraft::EntryPayload::Normal(super::Proposal {
                    at_ms: 0,
                    requests: proposal
                        .commands
                        .into_iter()
                        .map(|command| Request { command, tag: None })
                        .collect(),
                })
            }
            openraft::EntryPayload::Membership(membership) => {
                openraft::EntryPayload::Membership(membership)
            }
        };
        Entry {
            log_id: old.log_id,
            payload,
        }
    }

    pub fn image(old: SnapshotImage) -> super::SnapshotImage {
        super::SnapshotImage {
            mvcc: super::v2::mvcc(old.mvcc),
            members_ever: old.members_ever,
            cluster_id: old.cluster_id,
            sessions: Sessions::new(),
        }
    }

    /// The batch that rewrites every log entry and the stored snapshot.
    pub fn migrate(db: &Db) -> Result<WriteBatch, FormatError> {
        let mut batch = WriteBatch::default();
        let logs = db.cf(CF_LOGS);
        for item in db.scan_whole(CF_LOGS) {
            let (key, value) = item
                .map_err(|source| DbError::Read {
                    what: "logs",
                    source,
                })
                .map_err(failed(1, "reading the log"))?;
            let old: openraft::Entry<TypeConfig> =
                codec::decode(&value).map_err(undecodable(1, "log entry"))?;
            let new = codec::encode(&entry(old)).map_err(unencodable(1, "log entry"))?;
            batch.put_cf(logs, key, new);
        }
        migrate_snapshot(db, &mut batch, 1, image)?;
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{Command, PutRequest};
    use crate::types::SnapshotMeta;

    fn put(key: &str) -> Command {
        Command::Put(PutRequest {
            key: key.into(),
            value: b"v".to_vec().into(),
            ..Default::default()
        })
    }

    /// A stored snapshot holding `image` (in whatever form an old release encoded it).
    fn put_snapshot(db: &Db, batch: &mut WriteBatch, image: &impl Serialize) {
        let stored = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: None,
                last_membership: Default::default(),
                snapshot_id: "s".into(),
            },
            data: codec::encode(image).unwrap(),
        };
        db.put_in(batch, CF_SNAPSHOT, "current", &stored).unwrap();
    }

    /// What a member of `version` recorded first thing: its id and the version.
    fn member_of_format(db: &Db, version: u32) -> WriteBatch {
        let mut batch = WriteBatch::default();
        db.put_in(&mut batch, CF_RAFT, "member_id", &7u64).unwrap();
        db.put_in(&mut batch, CF_RAFT, FORMAT_KEY, &version)
            .unwrap();
        batch
    }

    /// The migrated snapshot: in its file, no longer in the database.
    fn snapshot_in_its_file(db: &Db) -> SnapshotImage {
        let in_db: Option<StoredSnapshot> = db.get(CF_SNAPSHOT, "current").unwrap();
        assert!(in_db.is_none(), "the snapshot left the database");
        let (meta, data) = SnapshotFile::beside(db.path()).read().unwrap().unwrap();
        assert_eq!(meta.snapshot_id, "s");
        codec::decode(&data).unwrap()
    }

    #[test]
    fn a_version_3_directory_gets_its_snapshot_moved_to_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db")).unwrap();
        let mut batch = member_of_format(&db, 3);
        let image = SnapshotImage {
            mvcc: crate::mvcc::MvccImage {
                revision: 9,
                ..Default::default()
            },
            members_ever: [7].into(),
            cluster_id: 42,
            sessions: Sessions::new(),
        };
        put_snapshot(&db, &mut batch, &image);
        db.write_synced(batch).unwrap();

        assert_eq!(open(&db).unwrap(), 3);
        let moved = snapshot_in_its_file(&db);
        assert_eq!((moved.cluster_id, moved.mvcc.revision), (42, 9));
        assert_eq!(open(&db).unwrap(), CURRENT, "migrated once");
    }

    #[test]
    fn a_version_3_directory_without_a_snapshot_is_recorded_as_current() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db")).unwrap();
        db.write_synced(member_of_format(&db, 3)).unwrap();
        assert_eq!(open(&db).unwrap(), 3);
        assert!(SnapshotFile::beside(db.path()).read().unwrap().is_none());
        assert_eq!(db.get::<u32>(CF_RAFT, FORMAT_KEY).unwrap(), Some(CURRENT));
    }

    #[test]
    fn a_version_1_directory_is_migrated_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db")).unwrap();
        // What a version 1 member left: its id, a log entry, a snapshot.
        let mut batch = WriteBatch::default();
        db.put_in(&mut batch, CF_RAFT, "member_id", &7u64).unwrap();
        let old_entry = openraft::Entry::<v1::TypeConfig> {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 7), 3),
            payload: openraft::EntryPayload::Normal(v1::Proposal {
                commands: vec![put("a"), put("b")],
            }),
        };
        batch.put_cf(
            db.cf(CF_LOGS),
            3u64.to_be_bytes(),
            codec::encode(&old_entry).unwrap(),
        );
        let old_image = v1::SnapshotImage {
            mvcc: Default::default(),
            members_ever: [7].into(),
            cluster_id: 42,
        };
        put_snapshot(&db, &mut batch, &old_image);
        db.write_synced(batch).unwrap();

        assert_eq!(open(&db).unwrap(), 1);
        let bytes = db
            .raw()
            .get_cf(db.cf(CF_LOGS), 3u64.to_be_bytes())
            .unwrap()
            .unwrap();
        let entry: Entry = codec::decode(&bytes).unwrap();
        let openraft::EntryPayload::Normal(proposal) = entry.payload else {
            panic!("the entry stays a normal entry");
        };
        assert_eq!(
            proposal.requests,
            vec![
                Request {
                    command: put("a"),
                    tag: None
                },
                Request {
                    command: put("b"),
                    tag: None
                }
            ]
        );
        let image = snapshot_in_its_file(&db);
        assert_eq!((image.cluster_id, image.sessions), (42, Sessions::new()));
        assert_eq!(open(&db).unwrap(), CURRENT, "migrated once");

        let mut batch = WriteBatch::default();
        db.put_in(&mut batch, CF_RAFT, FORMAT_KEY, &(CURRENT + 1))
            .unwrap();
        db.write_synced(batch).unwrap();
        let refused = open(&db).unwrap_err().to_string();
        assert!(
            refused.contains(&format!("format version {}", CURRENT + 1)),
            "{refused}"
        );
        assert!(refused.contains(&format!("1 to {CURRENT}")), "{refused}");
    }

    #[test]
    fn a_version_2_directory_gets_its_snapshot_with_no_alarm_standing() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db")).unwrap();
        let mut batch = member_of_format(&db, 2);
        let old_image = v2::SnapshotImage {
            mvcc: v2::MvccImage {
                revision: 9,
                compact_revision: 4,
                versions: Vec::new(),
                leases: vec![crate::kv::Lease { id: 5, ttl: 60 }],
            },
            members_ever: [7].into(),
            cluster_id: 42,
            sessions: Sessions::new(),
        };
        put_snapshot(&db, &mut batch, &old_image);
        db.write_synced(batch).unwrap();

        assert_eq!(open(&db).unwrap(), 2);
        let image = snapshot_in_its_file(&db);
        assert_eq!(
            (
                image.cluster_id,
                image.mvcc.revision,
                image.mvcc.compact_revision
            ),
            (42, 9, 4)
        );
        assert_eq!(image.mvcc.leases.len(), 1);
        assert!(image.mvcc.alarms.is_empty());
        assert_eq!(open(&db).unwrap(), CURRENT, "migrated once");
    }

    #[test]
    fn a_new_directory_records_the_current_version() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db")).unwrap();
        assert_eq!(open(&db).unwrap(), CURRENT);
        assert_eq!(db.get::<u32>(CF_RAFT, FORMAT_KEY).unwrap(), Some(CURRENT));
    }
}
