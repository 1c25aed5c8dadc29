//! `snapshot restore`: a new member's data directory built from a snapshot file (etcd's or
//! Rudder's, [`crate::etcd::snapshot_file`]), as `etcdctl snapshot restore` builds one.
//!
//! The directory holds the snapshot's keyspace and nothing else: no identity, no Raft log,
//! no membership. Started with `--initial-cluster`, the member forms a new cluster on top
//! of that keyspace, with member ids of the new cluster's own; each member of it is restored
//! from the same file. A live member is never restored in place (its Raft log and its
//! peers would disagree with the keyspace), so the directory must be new or empty.
//!
//! The restored keyspace is in no Raft log entry: a member that replayed the log from its
//! start would miss it. So:
//! - a restored member is marked with the file's SHA-256 (`RESTORED`, written with the
//!   keyspace in one batch); the mark joins its `--initial-cluster-token`, so members
//!   restored from another file, or not restored at all, form another cluster and refuse
//!   each other's messages instead of mixing;
//! - a restored member never joins a running cluster (`--join`): it forms a new one;
//! - at its first start it makes a Raft snapshot as soon as the cluster formed and purges
//!   its log up to it ([`settle`]), refusing to add members until then
//!   (`RESTORE_SETTLED` records it). Every member added afterwards gets the keyspace in that
//!   snapshot.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::db::{Db, DbError, CF_RAFT, RESTORED, RESTORE_SETTLED};
use crate::etcd::snapshot_file::{self, SnapshotFileError};
use crate::format::FormatError;
use crate::metrics::StoreMetrics;
use crate::state_machine::{SeedError, StateMachine};
use crate::store::Store;
use crate::types::Raft;

/// A restored member's marks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restoration {
    /// The SHA-256 of the file it was restored from, in hex.
    pub from: String,
    /// Whether its keyspace is in a Raft snapshot (members may be added).
    pub settled: bool,
}

/// The marks of the member of `db`, if it was restored.
pub fn restoration(db: &Db) -> Result<Option<Restoration>, DbError> {
    let Some(from) = db.get::<String>(CF_RAFT, RESTORED)? else {
        return Ok(None);
    };
    let settled = db.get::<bool>(CF_RAFT, RESTORE_SETTLED)?.unwrap_or(false);
    Ok(Some(Restoration { from, settled }))
}

/// What a restore wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub revision: i64,
    pub compact_revision: i64,
    /// Versions kept (live, overwritten and deleted since the compaction).
    pub versions: usize,
    pub leases: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(
        "{path:?} is not empty: restore into a new data directory (a member is never \
         restored in place)"
    )]
    NotEmpty { path: PathBuf },
    #[error("creating {path:?}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the snapshot: {0}")]
    File(#[from] SnapshotFileError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Seed(#[from] SeedError),
}

/// Builds a new member's data directory at `data_dir` from snapshot `file`.
pub fn restore(
    file: &[u8],
    data_dir: &Path,
    skip_hash_check: bool,
) -> Result<Restored, RestoreError> {
    let image = snapshot_file::decode(file, skip_hash_check)?;
    let occupied = match std::fs::read_dir(data_dir) {
        Ok(mut entries) => entries.next().is_some(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
        Err(source) => {
            return Err(RestoreError::Create {
                path: data_dir.to_owned(),
                source,
            })
        }
    };
    if occupied {
        return Err(RestoreError::NotEmpty {
            path: data_dir.to_owned(),
        });
    }
    std::fs::create_dir_all(data_dir).map_err(|source| RestoreError::Create {
        path: data_dir.to_owned(),
        source,
    })?;
    let restored = Restored {
        revision: image.revision,
        compact_revision: image.compact_revision,
        versions: image.versions.len(),
        leases: image.leases.len(),
    };
    let db = Db::open(&data_dir.join("db"))?;
    crate::format::open(&db)?;
    let (mut state_machine, _) = StateMachine::open(db, StoreMetrics::default())?;
    let from = hex(&Sha256::digest(file));
    state_machine.seed(image, &from)?;
    Ok(restored)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The `--initial-cluster-token` a member uses: a restored one's carries its file's hash,
/// so that only members restored from the same file form a cluster together.
pub fn cluster_token(token: &str, restoration: Option<&Restoration>) -> String {
    match restoration {
        Some(restored) => format!("{token}/restored:{}", restored.from),
        None => token.to_owned(),
    }
}

/// A restored member's first duty: once the cluster formed (an entry applied), a Raft
/// snapshot of the keyspace and the log purged up to it; then members may be added
/// (`RESTORE_SETTLED`). Started again at the next start if the member stops before. The store
/// refuses to add members from its start until this ends.
pub async fn settle(raft: Raft, db: Db, store: Store, mut stopped: watch::Receiver<bool>) {
    // Failpoint for tests: settling starts this many milliseconds late, so that members
    // asking to join meanwhile are refused (and retry) for certain.
    let late = rudder_proto::failpoints::eval("restore-settles-late", |millis| {
        millis.and_then(|millis| millis.parse::<u64>().ok())
    })
    .flatten();
    if let Some(millis) = late {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(millis)) => {}
            _ = stopped.changed() => return,
        }
    }
    let mut metrics = raft.metrics();
    let mut step = Settle::Applied;
    loop {
        let (applied, snapshot, purged) = {
            let now = metrics.borrow_and_update();
            let index = |id: Option<crate::types::LogId>| id.map(|id| id.index);
            (
                index(now.last_applied),
                index(now.snapshot),
                index(now.purged),
            )
        };
        step = match (step, applied) {
            (Settle::Applied, Some(at)) => {
                if raft.trigger().snapshot().await.is_err() {
                    return;
                }
                Settle::Snapshot(at)
            }
            // A snapshot already being built when this asked was of less: ask again.
            (Settle::Snapshot(at), _) if snapshot < Some(at) => {
                if raft.trigger().snapshot().await.is_err() {
                    return;
                }
                Settle::Snapshot(at)
            }
            (Settle::Snapshot(at), _) => {
                let upto = snapshot.unwrap_or(at);
                if raft.trigger().purge_log(upto).await.is_err() {
                    return;
                }
                Settle::Purge(upto)
            }
            (Settle::Purge(upto), _) if purged >= Some(upto) => {
                let mut batch = rocksdb::WriteBatch::default();
                let marked = db
                    .put_in(&mut batch, CF_RAFT, RESTORE_SETTLED, &true)
                    .and_then(|()| db.write_synced(batch));
                if let Err(error) = marked {
                    tracing::error!(%error, "marking the restore settled; it settles again at the next start");
                }
                store.set_restoring(false);
                tracing::info!(
                    purged_upto = upto,
                    "the restored keyspace is in a Raft snapshot: members can be added"
                );
                return;
            }
            (same, _) => same,
        };
        // openraft reports progress on its metrics; a purge delayed by replication is
        // looked at again now and then.
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// Where [`settle`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    /// Waiting for the cluster to form.
    Applied,
    /// Waiting for the snapshot of the keyspace at this index.
    Snapshot(u64),
    /// Waiting for the log purge up to this index.
    Purge(u64),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{EventKind, KeyValue, Lease};
    use crate::mvcc::{MvccImage, Rev, Version};

    fn file() -> Vec<u8> {
        let kv = KeyValue {
            key: b"k".to_vec(),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            value: b"v".to_vec().into(),
            lease: 0,
        };
        let image = MvccImage {
            revision: 2,
            compact_revision: 0,
            versions: vec![(
                Rev { main: 2, sub: 0 },
                Version {
                    kind: EventKind::Put,
                    kv,
                },
            )],
            leases: vec![Lease { id: 9, ttl: 30 }],
            alarms: Vec::new(),
        };
        snapshot_file::encode(&image, 7).unwrap()
    }

    #[test]
    fn a_restored_directory_opens_with_the_snapshots_keyspace_and_nothing_applied() {
        let dir = tempfile::tempdir().unwrap();
        let member = dir.path().join("m1");
        let restored = restore(&file(), &member, false).unwrap();
        assert_eq!(
            (restored.revision, restored.versions, restored.leases),
            (2, 1, 1)
        );
        let db = Db::open(&member.join("db")).unwrap();
        let marks = restoration(&db).unwrap().expect("marked restored");
        assert_eq!(marks.from.len(), 64, "the file's SHA-256 in hex");
        assert!(!marks.settled);
        let (_, keyspace) = StateMachine::open(db, StoreMetrics::default()).unwrap();
        let state = keyspace.read();
        assert_eq!(state.mvcc.revision(), 2);
        assert_eq!(state.mvcc.lease(9).map(|lease| lease.ttl), Some(30));
        assert_eq!(
            state.meta.applied, None,
            "the new cluster forms on top of it"
        );
    }

    #[test]
    fn only_members_restored_from_the_same_file_share_a_cluster_token() {
        let from = |hash: &str| Restoration {
            from: hash.into(),
            settled: false,
        };
        assert_eq!(cluster_token("t", None), "t");
        assert_eq!(cluster_token("t", Some(&from("ab"))), "t/restored:ab");
        assert_ne!(
            cluster_token("t", Some(&from("ab"))),
            cluster_token("t", Some(&from("cd")))
        );
    }

    #[test]
    fn a_directory_in_use_is_never_restored_into() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("something"), b"x").unwrap();
        let refused = restore(&file(), dir.path(), false).unwrap_err();
        assert!(
            matches!(refused, RestoreError::NotEmpty { .. }),
            "{refused}"
        );
        let damaged = &file()[..file().len() - 1];
        let refused = restore(damaged, &dir.path().join("new"), false).unwrap_err();
        assert!(matches!(refused, RestoreError::File(_)), "{refused}");
        assert!(
            !dir.path().join("new").exists(),
            "nothing written for a bad file"
        );
    }
}
