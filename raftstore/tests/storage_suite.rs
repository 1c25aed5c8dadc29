//! openraft's own storage conformance suite against the RocksDB log store and state machine.

use openraft::testing::{StoreBuilder, Suite};
use rudder_raftstore::db::Db;
use rudder_raftstore::log_store::LogStore;
use rudder_raftstore::metrics::StoreMetrics;
use rudder_raftstore::state_machine::StateMachine;
use rudder_raftstore::types::{StorageError, TypeConfig};
use tempfile::TempDir;

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = TempDir::new().expect("a temporary directory");
        let db = Db::open(&dir.path().join("db")).expect("opening a fresh database");
        let (state_machine, _keyspace) = StateMachine::open(db.clone(), StoreMetrics::default())
            .expect("loading an empty state");
        Ok((
            dir,
            LogStore::new(db, StoreMetrics::default()),
            state_machine,
        ))
    }
}

#[test]
fn rocksdb_store_passes_openraft_storage_suite() {
    if let Err(error) = Suite::test_all(RocksBuilder) {
        panic!("storage suite failed: {error}");
    }
}
