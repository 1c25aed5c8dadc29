//! The member's RocksDB: one database, one write-ahead log, several column families.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `logs` | log index (u64 BE) | Raft entry |
//! | `raft` | `vote`, `purged`, `committed`, `member_id` | Raft metadata |
//! | `mvcc` | [`Rev`](crate::mvcc::Rev) (12 bytes BE) | one key version |
//! | `leases` | lease id (i64 BE) | lease |
//! | `sm` | `applied`, `membership`, `revision`, `compact`, `members_ever`, `cluster_id` | state-machine metadata |
//! | `snapshot` | (empty since format 4) | the last snapshot is a file beside the database: [`crate::snapshot_file`] |
//! | `sessions` | `c`; `s`+client; `o`+client+seq+batch | the request table ([`crate::session_store`]) |
//!
//! `raft`/`format` holds the data directory's format version (see [`crate::format`]).
//!
//! Sharing one WAL means a synced write also makes every earlier write durable. That is what
//! lets the state machine write without its own fsync: the log entries it applies were synced
//! before they were committed, and anything that lets the log be purged (a snapshot) first
//! syncs the WAL, which carries every earlier state-machine write to disk with it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use openraft::AnyError;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, IteratorMode, Options,
    WriteBatch, WriteOptions, DB,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;

pub const CF_LOGS: &str = "logs";
pub const CF_RAFT: &str = "raft";
pub const CF_MVCC: &str = "mvcc";
pub const CF_LEASES: &str = "leases";
pub const CF_SM: &str = "sm";
pub const CF_SNAPSHOT: &str = "snapshot";
pub const CF_SESSIONS: &str = "sessions";

/// What the memtables of all families may hold together before the largest is flushed.
pub const MEMTABLE_BUDGET_BYTES: usize = 24 << 20;

/// The one block cache of all the families. Without it each family's table factory makes its
/// own of 32 MiB, and the mvcc family's filled with what a Raft snapshot read (26 MB of a
/// leading master's heap at 10,000 pods). The reads it serves are of past revisions and of
/// Raft entries already flushed: a lagging follower's or a watch's catch-up. Reads of a whole
/// family or of the whole history (loading at start, a Raft snapshot, HashKV, a backup) pass
/// it by ([`Db::scan_whole`], `state_machine::SnapshotHistory`).
pub const BLOCK_CACHE_BYTES: usize = 8 << 20;

/// The key (Raft family) marking a restored member: the SHA-256 of its file, in hex (see
/// `crate::restore`).
pub const RESTORED: &str = "restored";
/// The key (Raft family) set once a restored member's log holds its keyspace.
pub const RESTORE_SETTLED: &str = "restore_settled";

const FAMILIES: [&str; 7] = [
    CF_LOGS,
    CF_RAFT,
    CF_MVCC,
    CF_LEASES,
    CF_SM,
    CF_SNAPSHOT,
    CF_SESSIONS,
];

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("opening the store database at {path:?}")]
    Open {
        path: PathBuf,
        #[source]
        source: rocksdb::Error,
    },
    #[error("reading {what} from the store database")]
    Read {
        what: &'static str,
        #[source]
        source: rocksdb::Error,
    },
    #[error("writing to the store database (the member stops: a failed write is never retried)")]
    Write {
        #[source]
        source: rocksdb::Error,
    },
    #[error("writing to the store database failed: injected disk fault (the member stops)")]
    InjectedFault,
    #[error("decoding {what} from the store database")]
    Decode {
        what: &'static str,
        #[source]
        source: codec::DecodeError,
    },
    #[error("encoding {what} for the store database")]
    Encode {
        what: &'static str,
        #[source]
        source: codec::EncodeError,
    },
    #[error(transparent)]
    SnapshotFile(#[from] crate::snapshot_file::SnapshotFileError),
}

impl From<DbError> for openraft::StorageIOError<u64> {
    fn from(error: DbError) -> Self {
        openraft::StorageIOError::write(AnyError::new(&error))
    }
}

/// The opened database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    inner: Arc<DB>,
    /// A failpoint for disk-fault tests and chaos runs: when set, every synced write fails.
    fail_writes: Arc<AtomicBool>,
}

impl Db {
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // One memtable budget for all the families (each would otherwise fill two of 64 MiB
        // before flushing): a master held 126 MB of memtables at 10,000 pods (heaptrack,
        // BENCHMARKS.md "The controllers"). Past the budget the largest memtable is flushed.
        // 24 MiB since 2026-12-07: 1,000-client puts ran as fast as with 48 (14.6-14.7k
        // against 13.8-15.6k ops/s), and a master not leading the controllers held about
        // 10 MiB less at 10,000 pods (BENCHMARKS.md, "old values read back from RocksDB").
        options.set_db_write_buffer_size(MEMTABLE_BUDGET_BYTES);
        let block_cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let mut tables = BlockBasedOptions::default();
        tables.set_block_cache(&block_cache);
        let families = FAMILIES.iter().map(|name| {
            let mut family = Options::default();
            family.set_block_based_table_factory(&tables);
            ColumnFamilyDescriptor::new(*name, family)
        });
        let inner =
            DB::open_cf_descriptors(&options, path, families).map_err(|source| DbError::Open {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            inner: Arc::new(inner),
            fail_writes: Arc::default(),
        })
    }

    /// A handle that does not keep the database open (for helper threads: RocksDB must be
    /// closed by its owners, not by a thread that may still run while the process exits).
    pub fn downgrade(&self) -> WeakDb {
        WeakDb {
            inner: Arc::downgrade(&self.inner),
            fail_writes: self.fail_writes.clone(),
        }
    }

    /// How many handles keep the database open (it closes when the last one drops).
    pub fn owners(&self) -> usize {
        Arc::strong_count(&self.inner)
    }

    /// What the families' block cache holds now, in bytes.
    pub fn block_cache_bytes(&self) -> u64 {
        let usage = self
            .inner
            .property_int_value_cf(self.cf(CF_MVCC), "rocksdb.block-cache-usage");
        usage.ok().flatten().unwrap_or(0)
    }

    pub fn raw(&self) -> &DB {
        &self.inner
    }

    /// The database's directory.
    pub fn path(&self) -> &Path {
        self.inner.path()
    }

    /// The database's size: the table files and memtables of every column family (the Raft
    /// log's included).
    pub fn size_bytes(&self) -> u64 {
        self.families_size(&FAMILIES)
    }

    /// What etcd's space quota counts, its keyspace: the families of the replicated state,
    /// not the Raft log and the stored snapshot (etcd counts its WAL and snapshots out too).
    pub fn keyspace_size_bytes(&self) -> u64 {
        self.families_size(&[CF_RAFT, CF_MVCC, CF_LEASES, CF_SM, CF_SESSIONS])
    }

    /// Rewrites every family's table files whole, dropping what deletes and compaction
    /// left behind: etcd's defragment, giving the space compaction freed back to the file
    /// system. Blocks while it works (seconds for gigabytes).
    pub fn defragment(&self) {
        let mut options = rocksdb::CompactOptions::default();
        options.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        for family in FAMILIES {
            self.inner.compact_range_cf_opt(
                self.cf(family),
                None::<&[u8]>,
                None::<&[u8]>,
                &options,
            );
        }
    }

    fn families_size(&self, families: &[&'static str]) -> u64 {
        let property = |cf, name| {
            self.inner
                .property_int_value_cf(cf, name)
                .ok()
                .flatten()
                .unwrap_or(0)
        };
        families
            .iter()
            .map(|family| {
                let cf = self.cf(family);
                property(cf, "rocksdb.total-sst-files-size")
                    + property(cf, "rocksdb.cur-size-all-mem-tables")
            })
            .sum()
    }

    pub fn cf(&self, name: &'static str) -> &ColumnFamily {
        // Every family in FAMILIES is created at open, so the handle always exists.
        self.inner
            .cf_handle(name)
            .expect("column family created at open")
    }

    /// Every entry of `family` in key order, for a read of the whole family at once (loading
    /// it at start, rewriting it): what it reads does not fill the block cache.
    pub fn scan_whole(&self, family: &'static str) -> rocksdb::DBIterator<'_> {
        let mut read = rocksdb::ReadOptions::default();
        read.fill_cache(false);
        self.inner
            .iterator_cf_opt(self.cf(family), read, IteratorMode::Start)
    }

    pub fn get<T: DeserializeOwned>(
        &self,
        cf: &'static str,
        key: &'static str,
    ) -> Result<Option<T>, DbError> {
        let bytes = self
            .inner
            .get_cf(self.cf(cf), key)
            .map_err(|source| DbError::Read { what: key, source })?;
        bytes
            .map(|bytes| {
                codec::decode(&bytes).map_err(|source| DbError::Decode { what: key, source })
            })
            .transpose()
    }

    pub fn put_in<T: Serialize>(
        &self,
        batch: &mut WriteBatch,
        cf: &'static str,
        key: &'static str,
        value: &T,
    ) -> Result<(), DbError> {
        let bytes = codec::encode(value).map_err(|source| DbError::Encode { what: key, source })?;
        batch.put_cf(self.cf(cf), key, bytes);
        Ok(())
    }

    /// From now on every synced write fails, as if the disk broke.
    pub fn inject_write_failure(&self) {
        self.fail_writes.store(true, Ordering::SeqCst);
    }

    /// Writes the batch and fsyncs the WAL before returning.
    pub fn write_synced(&self, batch: WriteBatch) -> Result<(), DbError> {
        self.write(batch, true)
    }

    /// Writes the batch to the WAL without waiting for the disk: it becomes durable with the
    /// next synced write or [`Db::sync_wal`] (the WAL is one ordered file).
    pub fn write_unsynced(&self, batch: WriteBatch) -> Result<(), DbError> {
        self.write(batch, false)
    }

    /// Fsyncs everything written so far.
    pub fn sync_wal(&self) -> Result<(), DbError> {
        self.check_failpoint()?;
        self.inner.flush_wal(true).map_err(failed)
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), DbError> {
        self.check_failpoint()?;
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        self.inner.write_opt(batch, &options).map_err(failed)
    }

    fn check_failpoint(&self) -> Result<(), DbError> {
        if self.fail_writes.load(Ordering::Relaxed) {
            tracing::error!("store write failed: injected disk fault; this member stops");
            return Err(DbError::InjectedFault);
        }
        Ok(())
    }
}

/// See [`Db::downgrade`].
#[derive(Clone, Debug)]
pub struct WeakDb {
    inner: std::sync::Weak<DB>,
    fail_writes: Arc<AtomicBool>,
}

impl WeakDb {
    /// The database, unless every owner has closed it.
    pub fn upgrade(&self) -> Option<Db> {
        Some(Db {
            inner: self.inner.upgrade()?,
            fail_writes: self.fail_writes.clone(),
        })
    }
}

fn failed(source: rocksdb::Error) -> DbError {
    tracing::error!(error = %source, "store write or fsync failed; this member stops");
    DbError::Write { source }
}
