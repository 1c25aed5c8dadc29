//! A watch whose history cannot be read back from this member's database ends, saying why,
//! rather than skipping what it could not read.

use std::time::Duration;

use crate::db::CF_MVCC;
use crate::kv::{KeyRange, PutRequest};
use crate::mvcc::Rev;
use crate::test_support::Cluster;
use crate::watch::{WatchMessage, WatchRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_whose_history_is_unreadable_ends_saying_why_and_skips_nothing() {
    let cluster = Cluster::start(1).await;
    let store = cluster.store(0);
    let mut revisions = Vec::new();
    for value in ["a", "b", "c"] {
        let put = PutRequest {
            key: b"k".to_vec(),
            value: value.as_bytes().to_vec().into(),
            ..Default::default()
        };
        revisions.push(store.put(put).await.unwrap().0.revision);
    }
    // The middle version was overwritten, so its value is read back from the database,
    // where its row has gone missing.
    let lost = revisions[1];
    let db = &store.inner.db;
    let row = Rev { main: lost, sub: 0 }.to_bytes();
    db.raw().delete_cf(db.cf(CF_MVCC), row).unwrap();

    let mut watcher = store
        .watch(WatchRequest {
            range: KeyRange::single("k"),
            start_revision: revisions[0],
            ..Default::default()
        })
        .unwrap();
    let mut messages = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), watcher.next()).await;
        match next.expect("the watch says something within 10 s") {
            Some(message) => messages.push(message),
            None => break,
        }
    }
    let Some(WatchMessage::Failed { reason }) = messages.last() else {
        panic!("the watch ends with the reason: {messages:?}");
    };
    assert!(
        reason.contains(&format!("revision {lost} (change 0) could not be read")),
        "{reason}"
    );
    let delivered_past_the_gap = messages.iter().any(
        |message| matches!(message, WatchMessage::Events { revision, .. } if *revision >= lost),
    );
    assert!(!delivered_past_the_gap, "nothing skipped: {messages:?}");
    cluster.shutdown().await;
}
