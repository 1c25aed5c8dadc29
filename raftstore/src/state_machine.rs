//! The Raft state machine (openraft's `RaftStateMachine`): applies committed entries to the
//! MVCC keyspace, persists each applied batch together with the applied log id in one
//! RocksDB `WriteBatch`, publishes the revisions to watchers, and builds/installs snapshots
//! (kept in a file beside the database: [`crate::snapshot_file`]).

use std::collections::BTreeSet;
use std::io::Cursor;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use rocksdb::WriteBatch;
use rudder_proto::metrics::observe;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::db::{Db, DbError, WeakDb, CF_LEASES, CF_MVCC, CF_RAFT, CF_SM, RESTORED};
use crate::error::KvError;
use crate::identity::cluster_id_of;
use crate::keyspace::{FeedItem, Keyspace, Replicated, SmMeta};
use crate::kv::Command;
use crate::metrics::StoreMetrics;
use crate::mvcc::{Effects, Frozen, History, Mvcc, MvccImage, Rev, Version};
use crate::session_store;
use crate::sessions::{apply_request, Sessions};
use crate::snapshot_file::{SnapshotFile, SnapshotFileError};
use crate::types::*;

/// Where the standing alarms are kept (in the state machine's family; absent: none).
const ALARMS_KEY: &str = "alarms";

/// The payload of a Raft snapshot: the whole replicated state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotImage {
    pub mvcc: MvccImage,
    pub members_ever: BTreeSet<NodeId>,
    pub cluster_id: u64,
    /// The request table travels with the state, so a member that installs a snapshot
    /// (and then leads) still recognises a retry of a request applied before it.
    pub sessions: Sessions,
}

/// Why a state machine could not be seeded.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("the data directory already holds a member's state: restore into a new one")]
    NotEmpty,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The values of overwritten versions, read back from the database's `mvcc` family (where
/// [`StateMachine::persist_effects`] wrote every version). It does not keep the database open.
struct PersistedHistory(WeakDb);

impl History for PersistedHistory {
    fn value(&self, rev: Rev) -> Result<Bytes, KvError> {
        let Some(db) = self.0.upgrade() else {
            return Err(unreadable(rev, "the member stopped".into()));
        };
        let stored = db.raw().get_pinned_cf(db.cf(CF_MVCC), rev.to_bytes());
        stored_value(rev, stored)
    }
}

/// The same, from a database snapshot: the keyspace as it was at one moment. It reads every
/// overwritten value once (a Raft snapshot, a HashKV, a backup), so what it reads does not
/// fill the block cache: a master kept 26 MB of blocks a Raft snapshot had read until
/// later reads pushed them out (heaptrack at 10,000 pods, BENCHMARKS.md).
pub(crate) struct SnapshotHistory<'a> {
    db: &'a Db,
    /// Points at the snapshot, which must outlive it: hence the borrow beside it.
    read: rocksdb::ReadOptions,
    at: PhantomData<&'a rocksdb::Snapshot<'a>>,
}

impl<'a> SnapshotHistory<'a> {
    pub(crate) fn new(at: &'a rocksdb::Snapshot<'a>, db: &'a Db) -> Self {
        let mut read = rocksdb::ReadOptions::default();
        read.set_snapshot(at);
        read.fill_cache(false);
        Self {
            db,
            read,
            at: PhantomData,
        }
    }
}

impl History for SnapshotHistory<'_> {
    fn value(&self, rev: Rev) -> Result<Bytes, KvError> {
        let stored =
            self.db
                .raw()
                .get_pinned_cf_opt(self.db.cf(CF_MVCC), rev.to_bytes(), &self.read);
        stored_value(rev, stored)
    }
}

/// The value of the version read from the `mvcc` family under `rev`.
fn stored_value(
    rev: Rev,
    stored: Result<Option<rocksdb::DBPinnableSlice<'_>>, rocksdb::Error>,
) -> Result<Bytes, KvError> {
    let stored = stored
        .map_err(|e| unreadable(rev, e.to_string()))?
        .ok_or_else(|| unreadable(rev, "it is not in the database".into()))?;
    let version: Version = codec::decode(&stored).map_err(|e| unreadable(rev, e.to_string()))?;
    Ok(version.kv.value)
}

fn unreadable(rev: Rev, reason: String) -> KvError {
    KvError::HistoryUnreadable {
        revision: rev.main,
        sub: rev.sub,
        reason,
    }
}

/// The replicated state taken under the keyspace's read lock, for a snapshot or a backup
/// written after it is released.
pub(crate) struct FrozenState {
    mvcc: Frozen,
    members_ever: BTreeSet<NodeId>,
    cluster_id: u64,
    sessions: Sessions,
    meta: SnapshotMeta,
}

impl FrozenState {
    /// Takes the state, beside a database snapshot of the same moment (taken under the same
    /// lock) to read its forgotten values from.
    pub(crate) fn take<'a>(keyspace: &Keyspace, db: &'a Db) -> (Self, rocksdb::Snapshot<'a>) {
        let state = keyspace.read();
        let frozen = Self {
            mvcc: state.mvcc.freeze(),
            members_ever: state.meta.members_ever.clone(),
            cluster_id: state.meta.cluster_id,
            sessions: state.sessions.clone(),
            meta: snapshot_meta(&state),
        };
        (frozen, db.raw().snapshot())
    }

    /// The whole image in memory (for `snapshot save`), values read back from `history`.
    pub(crate) fn image(self, history: &dyn History) -> Result<SnapshotImage, KvError> {
        Ok(SnapshotImage {
            mvcc: self.mvcc.image(history)?,
            members_ever: self.members_ever,
            cluster_id: self.cluster_id,
            sessions: self.sessions,
        })
    }
}

/// The meta of a snapshot of `state`.
fn snapshot_meta(state: &Replicated) -> SnapshotMeta {
    let snapshot_id = match state.meta.applied {
        Some(applied) => format!(
            "{}-{}-{}",
            applied.leader_id,
            applied.index,
            state.mvcc.revision()
        ),
        None => format!("empty-{}", state.mvcc.revision()),
    };
    SnapshotMeta {
        last_log_id: state.meta.applied,
        last_membership: state.meta.membership.clone(),
        snapshot_id,
    }
}

/// A snapshot as format 3 kept it, in the database (now [`SnapshotFile`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredSnapshot {
    pub(crate) meta: SnapshotMeta,
    #[serde(with = "serde_bytes")]
    pub(crate) data: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct StateMachine {
    db: Db,
    snapshot: SnapshotFile,
    keyspace: Arc<Keyspace>,
    /// Where each client's records were last pruned (see [`session_store::Pruned`]).
    pruned: session_store::Pruned,
    metrics: StoreMetrics,
}

fn sm_error(error: impl std::error::Error + 'static) -> StorageError {
    StorageError::IO {
        source: StorageIOError::write_state_machine(AnyError::new(&error)),
    }
}

fn snapshot_error(
    meta: Option<&SnapshotMeta>,
    error: impl std::error::Error + 'static,
) -> StorageError {
    let signature = meta.map(|m| m.signature());
    StorageError::IO {
        source: StorageIOError::write_snapshot(signature, AnyError::new(&error)),
    }
}

/// What a member does at start with its snapshot file ([`snapshot_fit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SnapshotFit {
    /// It covers the purged log and is not ahead of the state: kept.
    Fits,
    /// Behind the purge, ahead of the state, or damaged: written again from the state.
    WriteAgain,
    /// Ahead of a state with nothing applied (a database wiped without its file): removed.
    Remove,
    /// The log is purged past the applied state: no snapshot of this state can cover it.
    LogPurgedPastState,
}

/// openraft needs the snapshot to cover the purged log and not to run ahead of what is
/// applied. `covers` is the file's last log id (`None`: the file is damaged). Pure.
///
/// `LogPurgedPastState`: openraft 0.9 queues the purge of an install without waiting for the
/// install, so a crash between the two loses the entries in between; rewriting the file
/// would not mend it, so the member only says so.
fn snapshot_fit(
    covers: Option<Option<LogId>>,
    purged: Option<LogId>,
    applied: Option<LogId>,
) -> SnapshotFit {
    match covers {
        Some(at) if at >= purged && at <= applied => SnapshotFit::Fits,
        _ if applied < purged => SnapshotFit::LogPurgedPastState,
        _ if applied.is_none() => SnapshotFit::Remove,
        _ => SnapshotFit::WriteAgain,
    }
}

impl StateMachine {
    /// Loads the applied state from the database.
    pub fn open(db: Db, metrics: StoreMetrics) -> Result<(Self, Arc<Keyspace>), DbError> {
        let meta: SmMeta = db.get(CF_SM, "meta")?.unwrap_or_default();
        let mvcc_state: (i64, i64) = db.get(CF_SM, "revisions")?.unwrap_or_default();
        let mut versions = Vec::new();
        for item in db.scan_whole(CF_MVCC) {
            let (key, value) = item.map_err(|source| DbError::Read {
                what: "mvcc",
                source,
            })?;
            let Some(rev) = Rev::from_bytes(&key) else {
                continue;
            };
            let version: Version = codec::decode(&value).map_err(|source| DbError::Decode {
                what: "mvcc",
                source,
            })?;
            versions.push((rev, version));
        }
        let mut leases = Vec::new();
        for item in db.scan_whole(CF_LEASES) {
            let (_, value) = item.map_err(|source| DbError::Read {
                what: "leases",
                source,
            })?;
            leases.push(codec::decode(&value).map_err(|source| DbError::Decode {
                what: "leases",
                source,
            })?);
        }
        let alarms = db.get(CF_SM, ALARMS_KEY)?.unwrap_or_default();
        let mut mvcc = Mvcc::restore(MvccImage {
            revision: mvcc_state.0,
            compact_revision: mvcc_state.1,
            versions,
            leases,
            alarms,
        });
        // Every version was just read from the database.
        mvcc.forget_overwritten_values();
        let sessions = session_store::load(&db)?;
        let keyspace = Arc::new(Keyspace::new(
            Replicated {
                mvcc,
                meta,
                sessions,
            },
            Box::new(PersistedHistory(db.downgrade())),
        ));
        let machine = Self {
            snapshot: SnapshotFile::beside(db.path()),
            db,
            keyspace: keyspace.clone(),
            pruned: session_store::Pruned::default(),
            metrics,
        };
        machine.fit_snapshot_to_state()?;
        Ok((machine, keyspace))
    }

    /// openraft needs the snapshot to cover the purged log and not to run ahead of what is
    /// applied. A file that does not (a crash between an install's state and its file left
    /// it older than the purge; a database wiped without its file left it ahead; a damaged
    /// file) is rebuilt from the state just opened, or removed if nothing was applied.
    fn fit_snapshot_to_state(&self) -> Result<(), DbError> {
        let found = match self.snapshot.read_meta() {
            Ok(None) => return Ok(()), // openraft builds one if the log was purged
            Ok(Some(meta)) => Some(meta.last_log_id),
            Err(SnapshotFileError::Decode { .. }) => None,
            Err(error) => return Err(error.into()),
        };
        let purged: Option<LogId> = self.db.get(CF_RAFT, "purged")?;
        let applied = self.keyspace.read().meta.applied;
        let unfit = || {
            tracing::warn!(
                snapshot = ?found, ?purged, ?applied,
                path = ?self.snapshot.path(),
                "the snapshot file does not fit the state opened: replacing it (written again \
                 from the state, or removed if nothing was applied)"
            );
        };
        match snapshot_fit(found, purged, applied) {
            SnapshotFit::Fits => Ok(()),
            SnapshotFit::LogPurgedPastState => {
                tracing::error!(
                    snapshot = ?found, ?purged, ?applied,
                    "the log is purged past the applied state (a crash during a snapshot \
                     install): this member is missing entries; remove it and add it again as \
                     a new member"
                );
                Ok(())
            }
            SnapshotFit::Remove => {
                unfit();
                Ok(self.snapshot.remove()?)
            }
            SnapshotFit::WriteAgain => {
                unfit();
                self.write_state_as_snapshot().map(|_| ())
            }
        }
    }

    /// Writes the replicated state to the snapshot file, and returns the snapshot's meta.
    /// The state is frozen under the read lock, beside a database snapshot of the same
    /// moment, and serialized after the lock is released, each forgotten value read back
    /// from that database snapshot as it is written.
    fn write_state_as_snapshot(&self) -> Result<SnapshotMeta, DbError> {
        let (frozen, at) = FrozenState::take(&self.keyspace, &self.db);
        let history = SnapshotHistory::new(&at, &self.db);
        // Same fields in the same order as `SnapshotImage`: the same bytes.
        #[derive(Serialize)]
        struct Image<'a, M: Serialize> {
            mvcc: M,
            members_ever: &'a BTreeSet<NodeId>,
            cluster_id: u64,
            sessions: &'a Sessions,
        }
        let image = Image {
            mvcc: frozen.mvcc.streamed(&history),
            members_ever: &frozen.members_ever,
            cluster_id: frozen.cluster_id,
            sessions: &frozen.sessions,
        };
        // The log up to the snapshot may be purged once it is written: the state machine's
        // own writes, unsynced (see `db`), must be on disk first.
        self.db.sync_wal()?;
        self.snapshot.write_image(&frozen.meta, &image)?;
        Ok(frozen.meta)
    }

    fn persist_effects(&self, batch: &mut WriteBatch, effects: &Effects) -> Result<(), DbError> {
        let mvcc = self.db.cf(CF_MVCC);
        for (sub, event) in effects.events.iter().enumerate() {
            let rev = Rev {
                main: event.kv.mod_revision,
                sub: sub as u32,
            };
            let version = Version {
                kind: event.kind,
                kv: event.kv.clone(),
            };
            let bytes = codec::encode(&version).map_err(|source| DbError::Encode {
                what: "mvcc",
                source,
            })?;
            batch.put_cf(mvcc, rev.to_bytes(), bytes);
        }
        for rev in &effects.removed {
            batch.delete_cf(mvcc, rev.to_bytes());
        }
        let leases = self.db.cf(CF_LEASES);
        for lease in &effects.leases_granted {
            let bytes = codec::encode(lease).map_err(|source| DbError::Encode {
                what: "lease",
                source,
            })?;
            batch.put_cf(leases, lease.id.to_be_bytes(), bytes);
        }
        for id in &effects.leases_revoked {
            batch.delete_cf(leases, id.to_be_bytes());
        }
        if let Some(alarms) = &effects.alarms {
            self.db.put_in(batch, CF_SM, ALARMS_KEY, alarms)?;
        }
        Ok(())
    }

    fn persist_meta(&self, batch: &mut WriteBatch, state: &Replicated) -> Result<(), DbError> {
        self.db.put_in(batch, CF_SM, "meta", &state.meta)?;
        let revisions = (state.mvcc.revision(), state.mvcc.compact_revision());
        self.db.put_in(batch, CF_SM, "revisions", &revisions)
    }

    /// Writes `mvcc` in place of the keyspace's versions and leases (its revisions are
    /// written with the meta).
    fn replace_keyspace(&self, batch: &mut WriteBatch, mvcc: &MvccImage) -> Result<(), DbError> {
        batch.delete_range_cf(self.db.cf(CF_MVCC), [0u8; 12], [0xffu8; 12]);
        batch.delete_range_cf(self.db.cf(CF_LEASES), [0u8; 8], [0xffu8; 8]);
        batch.delete_cf(self.db.cf(CF_LEASES), [0xffu8; 8]);
        let effects = Effects {
            events: Vec::new(),
            leases_granted: mvcc.leases.clone(),
            alarms: Some(mvcc.alarms.clone()),
            ..Effects::default()
        };
        self.persist_effects(batch, &effects)?;
        let mvcc_cf = self.db.cf(CF_MVCC);
        for (rev, version) in &mvcc.versions {
            let bytes = codec::encode(version).map_err(|source| DbError::Encode {
                what: "mvcc",
                source,
            })?;
            batch.put_cf(mvcc_cf, rev.to_bytes(), bytes);
        }
        Ok(())
    }

    /// Fills a new member's empty state machine with `mvcc` (a restored snapshot), before
    /// it ever starts: no log entry is applied yet, and its cluster is formed afterwards
    /// on top of this keyspace. The member is marked restored from `from` (the file's hash;
    /// see `crate::restore`) in the same batch. Refused once anything was applied.
    pub fn seed(&mut self, mvcc: MvccImage, from: &str) -> Result<(), SeedError> {
        {
            let state = self.keyspace.read();
            if state.meta.applied.is_some() || state.mvcc.revision() > 0 {
                return Err(SeedError::NotEmpty);
            }
        }
        let mut batch = WriteBatch::default();
        self.replace_keyspace(&mut batch, &mvcc)?;
        self.db
            .put_in(&mut batch, CF_RAFT, RESTORED, &from.to_owned())?;
        let mut state = self.keyspace.write();
        state.mvcc = Mvcc::restore(mvcc);
        self.persist_meta(&mut batch, &state)?;
        self.db.write_synced(batch)?;
        state.mvcc.forget_overwritten_values();
        Ok(())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let state = self.keyspace.read();
        Ok((state.meta.applied, state.meta.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let started = Instant::now();
        let mut batch = WriteBatch::default();
        let mut replies = Vec::new();
        let mut published = Vec::new();
        let mut session_writes = Vec::new();
        let mut state = self.keyspace.write();
        for entry in entries {
            state.meta.applied = Some(entry.log_id);
            let outcomes = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(proposal) => {
                    let Replicated { mvcc, sessions, .. } = &mut *state;
                    sessions.tick(proposal.at_ms, &mut session_writes);
                    let mut outcomes = Vec::with_capacity(proposal.requests.len());
                    for request in &proposal.requests {
                        let (outcome, effects) = apply_request(
                            mvcc,
                            self.keyspace.history(),
                            sessions,
                            request,
                            &mut session_writes,
                        );
                        // A value of the past this member's database could not give back
                        // (a transaction's range at a revision): the others read theirs, so
                        // answering with this error would make this replica differ. The
                        // member stops, as etcd does on a backend it cannot read; nothing of
                        // the batch is written, and a restart applies it again.
                        if let Err(error @ KvError::HistoryUnreadable { .. }) = &outcome.result {
                            return Err(sm_error(error.clone()));
                        }
                        if matches!(request.command, Command::Compact { .. })
                            && outcome.result.is_ok()
                            && !outcome.replayed
                        {
                            self.metrics.compactions.inc();
                        }
                        self.persist_effects(&mut batch, &effects)
                            .map_err(sm_error)?;
                        if !effects.events.is_empty() {
                            published.push(FeedItem::Revision {
                                revision: outcome.revision,
                                events: effects.events,
                            });
                        }
                        outcomes.push(outcome);
                    }
                    outcomes
                }
                EntryPayload::Membership(membership) => {
                    let ids: Vec<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
                    if state.meta.cluster_id == 0 {
                        state.meta.cluster_id =
                            cluster_id_of(entry.log_id.index, ids.iter().copied());
                    }
                    state.meta.members_ever.extend(ids);
                    state.meta.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Vec::new()
                }
            };
            replies.push(Applied { outcomes });
        }
        let batch_id = state.meta.applied.map_or(0, |id| id.index);
        session_store::persist(
            &self.db,
            &mut batch,
            &session_writes,
            &state.sessions,
            batch_id,
            &mut self.pruned,
        )
        .map_err(sm_error)?;
        self.persist_meta(&mut batch, &state).map_err(sm_error)?;
        // Unsynced on purpose: see `db` (the applied entries are already durable in the log).
        self.db.write_unsynced(batch).map_err(sm_error)?;
        state.mvcc.forget_overwritten_values();
        for item in published {
            self.keyspace.publish(item);
        }
        drop(state);
        observe(&self.metrics.apply_duration, started.elapsed());
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        self.metrics.snapshots_received.inc();
        let data = snapshot.into_inner();
        let image: SnapshotImage =
            codec::decode(&data).map_err(|e| snapshot_error(Some(meta), e))?;
        let mut batch = WriteBatch::default();
        self.replace_keyspace(&mut batch, &image.mvcc)
            .map_err(sm_error)?;
        let batch_id = meta.last_log_id.map_or(0, |id| id.index);
        session_store::replace(&self.db, &mut batch, &image.sessions, batch_id)
            .map_err(sm_error)?;
        // The records were all rewritten: pruning starts again.
        self.pruned = session_store::Pruned::default();
        let mut state = self.keyspace.write();
        *state = Replicated {
            mvcc: Mvcc::restore(image.mvcc),
            meta: SmMeta {
                applied: meta.last_log_id,
                membership: meta.last_membership.clone(),
                members_ever: image.members_ever,
                cluster_id: image.cluster_id,
            },
            sessions: image.sessions,
        };
        self.persist_meta(&mut batch, &state).map_err(sm_error)?;
        self.db.write_synced(batch).map_err(sm_error)?;
        state.mvcc.forget_overwritten_values();
        self.keyspace.publish(FeedItem::Reset);
        tracing::info!(snapshot = %meta.snapshot_id, revision = state.mvcc.revision(), "installed snapshot");
        drop(state);
        // After the state, which openraft may already have purged the log up to: a crash
        // before the file is written is mended at the next start (`fit_snapshot_to_state`).
        self.snapshot
            .write_data(meta, &data)
            .map_err(|e| snapshot_error(Some(meta), e))
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let stored = self.snapshot.read().map_err(|e| snapshot_error(None, e))?;
        Ok(stored.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let meta = self
            .write_state_as_snapshot()
            .map_err(|e| snapshot_error(None, e))?;
        // openraft keeps only the meta of a snapshot it had built (its state-machine worker,
        // `build_snapshot`); a follower that needs the data gets it from the file, through
        // `get_current_snapshot`.
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(Vec::new())),
        })
    }
}

#[cfg(test)]
#[path = "state_machine_tests.rs"]
mod tests;
