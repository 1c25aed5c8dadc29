//! What a member's maintenance asks of [`Store`], from the local replica: its revisions,
//! its status (etcd's `Status`), the keyspace's hash (`HashKV`), and the whole replicated
//! state for `snapshot save` (after a read barrier); alarms and the space quota
//! ([`crate::alarms`]), and defragmenting.

use super::{Header, MemberStatus, Store, StoreError};
use std::sync::atomic::Ordering;

use crate::alarms::cost;
use crate::error::KvError;
use crate::kv::{Alarm, AlarmKind, Command, CommandResult, KeyspaceHash, Revision};
use crate::sessions::RequestTag;
use crate::state_machine::{FrozenState, SnapshotHistory};

impl Store {
    /// The current and the compacted revision of this replica.
    pub fn revisions(&self) -> (Revision, Revision) {
        let state = self.inner.keyspace.read();
        (state.mvcc.revision(), state.mvcc.compact_revision())
    }

    /// Keys in the keyspace's index (deleted ones until compaction).
    pub fn indexed_keys(&self) -> usize {
        self.inner.keyspace.read().mvcc.indexed_keys()
    }

    /// Reads the values it hashes after the keyspace's lock is released, from a database
    /// snapshot taken under it: a hash of every retained version does not hold up writes.
    pub fn hash_kv(&self, revision: Revision) -> Result<(Header, KeyspaceHash), StoreError> {
        let db = &self.inner.db;
        let (frozen, at) = {
            let state = self.inner.keyspace.read();
            state.mvcc.check_readable(revision)?;
            (state.mvcc.freeze(), db.raw().snapshot())
        };
        let hash = frozen.hash(revision, &SnapshotHistory::new(&at, db))?;
        Ok((self.header(), hash))
    }

    pub fn status(&self) -> MemberStatus {
        let metrics = self.inner.raft.metrics().borrow().clone();
        // Before the keyspace's lock: RocksDB takes its own to answer.
        let (db_size, db_size_in_use) = (self.inner.db.size_bytes(), self.measure_space());
        let state = self.inner.keyspace.read();
        let is_learner = !metrics
            .membership_config
            .membership()
            .voter_ids()
            .any(|id| id == self.inner.id);
        let header = Header {
            cluster_id: state.meta.cluster_id,
            member_id: self.inner.id,
            revision: state.mvcc.revision(),
            raft_term: metrics.current_term,
        };
        MemberStatus {
            header,
            leader: metrics.current_leader,
            raft_index: metrics.last_log_index.unwrap_or(0),
            raft_applied_index: metrics.last_applied.map(|id| id.index).unwrap_or(0),
            is_learner,
            db_size,
            db_size_in_use,
            version_count: state.mvcc.version_count(),
            alarms: state.mvcc.alarms(),
        }
    }

    /// The alarms standing in the cluster, after a read barrier (etcd's `alarm list`).
    pub async fn alarms(&self) -> Result<(Header, Vec<Alarm>), StoreError> {
        self.read_barrier().await?;
        let alarms = self.inner.keyspace.read().mvcc.alarms();
        Ok((self.header(), alarms))
    }

    /// Raises `alarm`, or (`raise` false) disarms it, through the log; the alarm, if that
    /// changed anything.
    pub async fn set_alarm(
        &self,
        alarm: Alarm,
        raise: bool,
    ) -> Result<(Header, Option<Alarm>), StoreError> {
        match self.propose(Command::Alarm { alarm, raise }).await? {
            (header, CommandResult::Alarmed(changed)) => Ok((header, changed)),
            (_, other) => unreachable!("an alarm answered with {other:?}"),
        }
    }

    /// Rewrites this member's database whole (etcd's `defrag`, which is per member too):
    /// the space that compaction freed goes back to the file system.
    pub async fn defragment(&self) -> Result<Header, StoreError> {
        let db = self.inner.db.clone();
        let started = std::time::Instant::now();
        let before = db.size_bytes();
        tokio::task::spawn_blocking(move || db.defragment())
            .await
            .map_err(|_| StoreError::Stopped)?;
        let after = self.inner.db.size_bytes();
        tracing::info!(before, after, took = ?started.elapsed(), "defragmented");
        Ok(self.header())
    }

    /// The space quota, if there is one.
    pub fn quota_bytes(&self) -> Option<u64> {
        self.inner.options.quota_bytes
    }

    /// Measures this member's keyspace (what the quota counts) for the quota check.
    fn measure_space(&self) -> u64 {
        let size = self.inner.db.keyspace_size_bytes();
        self.inner.keyspace_bytes.store(size, Ordering::Relaxed);
        size
    }

    /// Measures the keyspace and, past the quota, raises this member's NOSPACE alarm: run
    /// every tenth of a second, so that a member no client writes to (its writes all come
    /// through the log) is held to its quota too.
    pub async fn watch_space(&self) {
        let size = self.measure_space();
        if self
            .inner
            .options
            .quota_bytes
            .is_some_and(|quota| size >= quota)
        {
            self.raise_no_space(size).await;
        }
    }

    /// Refuses a write that adds data when it would take this member's keyspace past the
    /// space quota, raising the NOSPACE alarm for it first (etcd's quota check, made before
    /// anything reaches the log; the alarm then makes every replica refuse such writes). A
    /// retry of a write this replica knows was applied is let through, to be answered as
    /// it was the first time.
    pub(super) async fn check_quota(
        &self,
        command: &Command,
        tag: Option<RequestTag>,
    ) -> Result<(), StoreError> {
        let Some(quota) = self.inner.options.quota_bytes else {
            return Ok(());
        };
        let cost = cost(command);
        let size = self.inner.keyspace_bytes.load(Ordering::Relaxed);
        if cost == 0 || size.saturating_add(cost) < quota {
            return Ok(());
        }
        if let Some(RequestTag { id, .. }) = tag {
            let state = self.inner.keyspace.read();
            let applied = state.sessions.outcomes_of(id.client, id.seq);
            if applied.iter().any(|(part, _)| *part == id.part) {
                return Ok(());
            }
        }
        self.raise_no_space(size).await;
        Err(StoreError::Kv(KvError::NoSpace))
    }

    /// Raises this member's NOSPACE alarm unless it stands or is being raised.
    async fn raise_no_space(&self, size: u64) {
        let alarm = Alarm {
            member: self.inner.id,
            kind: AlarmKind::NoSpace,
        };
        if self.inner.keyspace.read().mvcc.alarms().contains(&alarm)
            || self.inner.raising_no_space.swap(true, Ordering::SeqCst)
        {
            return;
        }
        tracing::warn!(
            size,
            quota = self.inner.options.quota_bytes,
            "the keyspace is past its space quota (--quota-backend-bytes): NOSPACE raised, \
             writes that add data are refused until space is freed (compact, then defragment \
             every member) and the alarm disarmed (etcdctl alarm disarm)"
        );
        // Boxed: raising goes through `propose`, which may have called this.
        if let Err(error) = Box::pin(self.set_alarm(alarm, true)).await {
            tracing::warn!(%error, "raising the NOSPACE alarm");
        }
        self.inner.raising_no_space.store(false, Ordering::SeqCst);
    }

    /// The whole replicated state, for `snapshot save` backups.
    pub async fn backup(&self) -> Result<crate::state_machine::SnapshotImage, StoreError> {
        self.read_barrier().await?;
        let db = &self.inner.db;
        let (frozen, at) = FrozenState::take(&self.inner.keyspace, db);
        let image = frozen.image(&SnapshotHistory::new(&at, db))?;
        Ok(image)
    }
}
