//! What a member's maintenance asks of [`Store`], from the local replica: its revisions,
//! its status (etcd's `Status`), the keyspace's hash (`HashKV`), and the whole replicated
//! state for `snapshot save` (after a read barrier).

use super::{Header, MemberStatus, Store, StoreError};
use crate::kv::{KeyspaceHash, Revision};

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

    pub fn hash_kv(&self, revision: Revision) -> Result<(Header, KeyspaceHash), StoreError> {
        let hash = self.inner.keyspace.read().mvcc.hash(revision)?;
        Ok((self.header(), hash))
    }

    pub fn status(&self) -> MemberStatus {
        let metrics = self.inner.raft.metrics().borrow().clone();
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
            db_size: (self.inner.db_size)(),
            version_count: state.mvcc.version_count(),
        }
    }

    /// The whole replicated state, for `snapshot save` backups.
    pub async fn backup(&self) -> Result<crate::state_machine::SnapshotImage, StoreError> {
        self.read_barrier().await?;
        let state = self.inner.keyspace.read();
        let image = crate::state_machine::SnapshotImage {
            mvcc: state.mvcc.image(),
            members_ever: state.meta.members_ever.clone(),
            cluster_id: state.meta.cluster_id,
            sessions: state.sessions.clone(),
        };
        Ok(image)
    }
}
