//! The Raft log in RocksDB (openraft's `RaftLogStorage`).
//!
//! Entries are fsynced before openraft is told they are flushed, so nothing is acknowledged
//! before it is durable. A failed write or fsync fails the append, which stops Raft, and
//! the member with it: a log whose fsync failed once is never trusted again (after a
//! failed fsync the kernel may have dropped the pages a retry would report as written).
//!
//! Disk faults for chaos runs are failpoints here: `log-write-fails`, `log-fsync-fails`,
//! and `log-fsync-slow` (`return(MS)`: each fsync takes MS longer); and a bug to plant,
//! `fsync-errors-ignored`.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::mpsc;
use std::time::Instant;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, OptionalSend, RaftLogReader, StorageIOError};
use rocksdb::{Direction, IteratorMode, WriteBatch};
use rudder_proto::metrics::observe;

use crate::codec;
use crate::db::{Db, WeakDb, CF_LOGS, CF_RAFT};
use crate::metrics::StoreMetrics;
use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig, Vote};

#[derive(Clone, Debug)]
pub struct LogStore {
    db: Db,
    /// Appends waiting for their fsync, in order.
    flusher: mpsc::Sender<LogFlushed<TypeConfig>>,
    metrics: StoreMetrics,
}

/// Group commit: one fsync covers every append that queued up while the last one ran, and
/// the callbacks fire in append order. The thread ends when the last `LogStore` is dropped.
fn start_flusher(db: WeakDb, metrics: StoreMetrics) -> mpsc::Sender<LogFlushed<TypeConfig>> {
    let (sender, receiver) = mpsc::channel::<LogFlushed<TypeConfig>>();
    let spawned = std::thread::Builder::new()
        .name("rudder-log-fsync".into())
        .spawn(move || {
            while let Ok(first) = receiver.recv() {
                let mut waiting = vec![first];
                waiting.extend(receiver.try_iter());
                let started = Instant::now();
                // The fsync thread may block: a slow disk is a sleep here.
                let slower = rudder_proto::failpoints::eval("log-fsync-slow", |millis| {
                    millis.and_then(|m| m.parse::<u64>().ok()).unwrap_or(100)
                });
                if let Some(millis) = slower {
                    std::thread::sleep(std::time::Duration::from_millis(millis));
                }
                let result = match (
                    rudder_proto::failpoints::eval("log-fsync-fails", |_| ()),
                    db.upgrade(),
                ) {
                    (Some(()), _) => Err(injected("log-fsync-fails", "the log's fsync failed")),
                    (None, Some(db)) => db.sync_wal().map_err(|error| error.to_string()),
                    (None, None) => Err("the store database is closed".to_string()),
                };
                // A planted bug for chaos runs: the error swallowed, the entries reported
                // durable.
                let result = match result {
                    Err(_)
                        if rudder_proto::failpoints::eval("fsync-errors-ignored", |_| ())
                            .is_some() =>
                    {
                        Ok(())
                    }
                    result => result,
                };
                observe(&metrics.log_fsync_duration, started.elapsed());
                for callback in waiting {
                    let outcome = result.clone().map_err(std::io::Error::other);
                    callback.log_io_completed(outcome);
                }
            }
        });
    if let Err(error) = spawned {
        // Without the thread every append fails (its callback queue is closed), which stops
        // the member with this reason in the log.
        tracing::error!(%error, "could not start the log fsync thread");
    }
    sender
}

/// An injected disk fault's error, logged where the member's operator looks first.
fn injected(failpoint: &str, what: &str) -> String {
    let message = format!("injected disk fault (failpoint {failpoint}): {what}");
    tracing::error!("{message}");
    message
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn io<E: std::error::Error + 'static>(
    make: fn(AnyError) -> StorageIOError<NodeId>,
) -> impl Fn(E) -> StorageError {
    move |error| StorageError::IO {
        source: make(AnyError::new(&error)),
    }
}

impl LogStore {
    pub fn new(db: Db, metrics: StoreMetrics) -> Self {
        let flusher = start_flusher(db.downgrade(), metrics.clone());
        Self {
            db,
            flusher,
            metrics,
        }
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StorageError> {
        self.db
            .write_synced(batch)
            .map_err(io(StorageIOError::write_logs))
    }

    fn put_meta<T: serde::Serialize>(
        &self,
        key: &'static str,
        value: &T,
    ) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        self.db
            .put_in(&mut batch, CF_RAFT, key, value)
            .map_err(io(StorageIOError::write))?;
        self.write(batch)
    }

    fn last_entry(&self) -> Result<Option<LogId>, StorageError> {
        let mut iter = self
            .db
            .raw()
            .iterator_cf(self.db.cf(CF_LOGS), IteratorMode::End);
        match iter.next() {
            None => Ok(None),
            Some(item) => {
                let (_, bytes) = item.map_err(io(StorageIOError::read_logs))?;
                let entry: Entry = codec::decode(&bytes).map_err(io(StorageIOError::read_logs))?;
                Ok(Some(entry.log_id))
            }
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x + 1,
            Bound::Unbounded => 0,
        };
        let mut entries = Vec::new();
        let from = index_key(start);
        let iter = self.db.raw().iterator_cf(
            self.db.cf(CF_LOGS),
            IteratorMode::From(&from, Direction::Forward),
        );
        for item in iter {
            let (key, bytes) = item.map_err(io(StorageIOError::read_logs))?;
            let index = u64::from_be_bytes(key.as_ref().try_into().unwrap_or([0xff; 8]));
            if !range.contains(&index) {
                break;
            }
            entries.push(codec::decode(&bytes).map_err(io(StorageIOError::read_logs))?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self
            .db
            .get(CF_RAFT, "purged")
            .map_err(io(StorageIOError::read_logs))?;
        let last_log_id = self.last_entry()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.put_meta("vote", vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.db
            .get(CF_RAFT, "vote")
            .map_err(io(StorageIOError::read_vote))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: losing it only means re-applying committed entries after a restart.
        let mut batch = WriteBatch::default();
        self.db
            .put_in(&mut batch, CF_RAFT, "committed", &committed)
            .map_err(io(StorageIOError::write))?;
        self.db
            .raw()
            .write(batch)
            .map_err(io(StorageIOError::write))?;
        let index = committed.map_or(0, |id| i64::try_from(id.index).unwrap_or(i64::MAX));
        self.metrics.commit_index.set(index);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .db
            .get::<Option<LogId>>(CF_RAFT, "committed")
            .map_err(io(StorageIOError::read))?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        let logs = self.db.cf(CF_LOGS);
        for entry in entries {
            let bytes = codec::encode(&entry).map_err(io(StorageIOError::write_logs))?;
            batch.put_cf(logs, index_key(entry.log_id.index), bytes);
        }
        // Written now (readable at once), flushed by the fsync thread: openraft learns the
        // entries are durable through the callback, and only then counts them as accepted.
        if rudder_proto::failpoints::eval("log-write-fails", |_| ()).is_some() {
            let error =
                std::io::Error::other(injected("log-write-fails", "writing the log failed"));
            callback.log_io_completed(Err(std::io::Error::other(error.to_string())));
            return Err(io(StorageIOError::write_logs)(error));
        }
        if let Err(error) = self.db.write_unsynced(batch) {
            callback.log_io_completed(Err(std::io::Error::other(error.to_string())));
            return Err(io(StorageIOError::write_logs)(error));
        }
        self.flusher.send(callback).map_err(|_| {
            let stopped = std::io::Error::other("the log fsync thread has stopped");
            io(StorageIOError::write_logs)(stopped)
        })
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            self.db.cf(CF_LOGS),
            index_key(log_id.index),
            index_key(u64::MAX),
        );
        self.write(batch)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        self.db
            .put_in(&mut batch, CF_RAFT, "purged", &log_id)
            .map_err(io(StorageIOError::write))?;
        batch.delete_range_cf(
            self.db.cf(CF_LOGS),
            index_key(0),
            index_key(log_id.index + 1),
        );
        self.write(batch)
    }
}
