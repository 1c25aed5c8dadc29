//! Data directories written by earlier releases open, migrated: format 1 (before
//! exactly-once writes: no format key, bare commands in the log, a snapshot without the
//! request table), format 2 (before alarms: a snapshot whose keyspace has none) and format
//! 3 (before snapshot files: the last snapshot in the database).
//!
//! `fixtures/format-N/m1` was written by that release's `rudder server` (one member,
//! `--snapshot-count 20 --snapshot-catchup-entries 5 --auto-compaction-mode off`):
//! `fixture/k1..k30` = `v<i>`, then k1..k5 = `w<i>`, k30 deleted, `fixture/leased` on a
//! 10-hour lease, compacted at revision 10 (all with etcdctl 3.4).

use std::path::Path;
use std::time::Duration;

use rudder_raftstore::compaction::Retention;
use rudder_raftstore::db::{Db, CF_SNAPSHOT};
use rudder_raftstore::kv::*;
use rudder_raftstore::snapshot_file::SnapshotFile;
use rudder_raftstore::test_support::{raft_options, store_options};
use rudder_raftstore::{KvError, MemberConfig, RunningMember, StoreError};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

async fn start(data_dir: &Path) -> RunningMember {
    let config = MemberConfig {
        name: "m1".into(),
        data_dir: data_dir.to_owned(),
        listen_client: "127.0.0.1:0".parse().unwrap(),
        listen_peer: "127.0.0.1:0".parse().unwrap(),
        initial_cluster: vec![("m1".into(), "127.0.0.1:0".into())],
        initial_cluster_token: String::new(),
        join: None,
        raft: raft_options(),
        store: store_options(),
        auto_compaction: Retention::Off,
        metrics: Default::default(),
        peer_tls: None,
    };
    RunningMember::start(config)
        .await
        .expect("the old directory opens")
}

async fn value(member: &RunningMember, key: &str) -> Option<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let request = RangeRequest {
            range: KeyRange::single(key),
            ..Default::default()
        };
        match member.store.range(request).await {
            Ok((_, response)) => {
                return response.kvs.into_iter().next().map(|kv| kv.value.to_vec())
            }
            Err(StoreError::NoLeader | StoreError::Timeout { .. })
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("reading {key}: {error}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_data_directory_of_format_1_opens_with_its_data() {
    opens_with_its_data("format-1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_data_directory_of_format_2_opens_with_its_data() {
    opens_with_its_data("format-2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_data_directory_of_format_3_opens_with_its_data_and_its_snapshot_in_a_file() {
    let dir = copy_fixture("format-3");
    let db_path = dir.path().join("m1/db");
    {
        // The migration alone, before a member could build a snapshot of its own.
        let db = Db::open(&db_path).unwrap();
        let in_db = db.raw().get_cf(db.cf(CF_SNAPSHOT), "current").unwrap();
        assert!(in_db.is_some(), "the fixture's snapshot is in its database");
        assert_eq!(rudder_raftstore::format::open(&db).unwrap(), 3);
        let in_db = db.raw().get_cf(db.cf(CF_SNAPSHOT), "current").unwrap();
        assert!(in_db.is_none(), "the snapshot left the database");
        let moved = SnapshotFile::beside(&db_path).read_meta().unwrap();
        assert!(
            moved
                .as_ref()
                .is_some_and(|meta| meta.last_log_id.is_some()),
            "the snapshot is in its file: {moved:?}"
        );
    }
    check_data(&dir.path().join("m1")).await;
}

/// A copy of `fixtures/<format>`, its member in `m1`.
fn copy_fixture(format: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format)
        .join("m1");
    copy_dir(&fixture, &dir.path().join("m1"));
    dir
}

async fn opens_with_its_data(format: &str) {
    let dir = copy_fixture(format);
    check_data(&dir.path().join("m1")).await;
}

/// Starts the member of `data_dir` and reads the fixture's data, writes, and starts it
/// again.
async fn check_data(data_dir: &Path) {
    let data_dir = data_dir.to_owned();
    let member = start(&data_dir).await;
    assert_eq!(
        value(&member, "fixture/k1").await.as_deref(),
        Some(&b"w1"[..])
    );
    assert_eq!(
        value(&member, "fixture/k10").await.as_deref(),
        Some(&b"v10"[..])
    );
    assert_eq!(
        value(&member, "fixture/k30").await,
        None,
        "the delete stays"
    );
    assert_eq!(
        value(&member, "fixture/leased").await.as_deref(),
        Some(&b"yes"[..])
    );
    let (_, leases) = member.store.leases().await.unwrap();
    assert_eq!(leases.len(), 1, "the lease is still there");
    let compacted = member
        .store
        .range(RangeRequest {
            range: KeyRange::single("fixture/k1"),
            revision: 5,
            ..Default::default()
        })
        .await;
    assert!(
        matches!(compacted, Err(StoreError::Kv(KvError::Compacted { .. }))),
        "history before the compaction stays compacted: {compacted:?}"
    );
    let (before, _) = member.store.revisions();
    let (header, _) = member
        .store
        .put(PutRequest {
            key: b"fixture/after".to_vec(),
            value: b"new".to_vec().into(),
            ..Default::default()
        })
        .await
        .expect("a write after the migration");
    assert_eq!(header.revision, before + 1);
    member.shutdown().await;

    // Opened again: now in the current format, nothing migrated twice.
    let member = start(&data_dir).await;
    assert_eq!(
        value(&member, "fixture/after").await.as_deref(),
        Some(&b"new"[..])
    );
    assert_eq!(
        value(&member, "fixture/k2").await.as_deref(),
        Some(&b"w2"[..])
    );
    member.shutdown().await;
}
