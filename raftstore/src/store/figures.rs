//! The store's figures read at each scrape ([`MemberFigures`]): Raft's term, leadership and
//! log indexes, and the keyspace's revisions, size and keys. (What is recorded as it runs
//! is `crate::metrics`.)

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Unit;
use rudder_proto::metrics::encode_gauge;

use super::{Store, WeakStore};

/// The member's figures read at each scrape: Raft's term, leadership and log indexes, and
/// the keyspace's revisions, size and keys.
/// It holds the store weakly: a stopped member's database closes even while the
/// process' registry lives on (a scrape then shows none of its figures).
#[derive(Clone)]
pub struct MemberFigures {
    store: WeakStore,
}

impl std::fmt::Debug for MemberFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberFigures").finish_non_exhaustive()
    }
}

impl MemberFigures {
    pub fn new(store: &Store) -> Self {
        Self {
            store: store.downgrade(),
        }
    }
}

impl Collector for MemberFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(store) = self.store.upgrade() else {
            return Ok(());
        };
        let status = store.status();
        let (revision, compacted) = store.revisions();
        let as_i64 = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        let figures: [(&str, &str, Option<&Unit>, i64); 10] = [
            (
                "rudder_raft_term",
                "The Raft term this member is in",
                None,
                as_i64(status.header.raft_term),
            ),
            (
                "rudder_raft_is_leader",
                "1 if this member leads, else 0",
                None,
                i64::from(status.leader == Some(store.id())),
            ),
            (
                "rudder_raft_has_leader",
                "1 if this member knows a leader, else 0",
                None,
                i64::from(status.leader.is_some()),
            ),
            (
                "rudder_raft_last_log_index",
                "The last index in this member's Raft log",
                None,
                as_i64(status.raft_index),
            ),
            (
                "rudder_raft_apply_index",
                "The last log index applied to this member's state machine",
                None,
                as_i64(status.raft_applied_index),
            ),
            (
                "rudder_store_revision",
                "The keyspace's current revision",
                None,
                revision,
            ),
            (
                "rudder_store_compact_revision",
                "The revision the keyspace is compacted to",
                None,
                compacted,
            ),
            (
                "rudder_store_db_total_size",
                "Size of the store's database on disk and in memory tables",
                Some(&Unit::Bytes),
                as_i64(status.db_size),
            ),
            (
                "rudder_store_keys",
                "Keys in the keyspace's index (deleted ones until compaction)",
                None,
                as_i64(store.indexed_keys() as u64),
            ),
            (
                "rudder_store_versions",
                "Versions stored (live, overwritten and deleted) until compaction",
                None,
                as_i64(status.version_count as u64),
            ),
        ];
        for (name, help, unit, value) in figures {
            encode_gauge(&mut encoder, name, help, unit, value)?;
        }
        Ok(())
    }
}
