//! A watch whose history cannot be read back from this member's database ends, saying why,
//! rather than skipping what it could not read; over the etcd API it is cancelled with the
//! reason, as etcd cancels a watch it cannot serve.

use std::time::Duration;

use rudder_proto::etcdserverpb as pb;

use super::Store;
use crate::db::CF_MVCC;
use crate::kv::{KeyRange, PutRequest, Revision};
use crate::mvcc::Rev;
use crate::test_support::{etcd_watch, Cluster};
use crate::watch::{WatchMessage, WatchRequest};

/// Three versions of `k`, the middle one's row then deleted from the database (it was
/// overwritten, so its value is read back from there). Returns the three revisions.
async fn history_with_a_hole(store: &Store) -> Vec<Revision> {
    let mut revisions = Vec::new();
    for value in ["a", "b", "c"] {
        let put = PutRequest {
            key: b"k".to_vec(),
            value: value.as_bytes().to_vec().into(),
            ..Default::default()
        };
        revisions.push(store.put(put).await.unwrap().0.revision);
    }
    let db = &store.inner.db;
    let row = Rev {
        main: revisions[1],
        sub: 0,
    }
    .to_bytes();
    db.raw().delete_cf(db.cf(CF_MVCC), row).unwrap();
    revisions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_whose_history_is_unreadable_ends_saying_why_and_skips_nothing() {
    let cluster = Cluster::start(1).await;
    let store = cluster.store(0);
    let revisions = history_with_a_hole(store).await;
    let lost = revisions[1];

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_etcd_api_such_a_watch_is_cancelled_with_the_reason() {
    let cluster = Cluster::start(1).await;
    let revisions = history_with_a_hole(cluster.store(0)).await;
    let endpoint = &cluster.client_endpoints()[0];
    let create = pb::WatchCreateRequest {
        key: b"k".to_vec(),
        start_revision: revisions[0],
        ..Default::default()
    };
    let (requests, mut responses) = etcd_watch(endpoint, create).await;
    let lost = revisions[1];
    let cancelled = loop {
        let next = tokio::time::timeout(Duration::from_secs(10), responses.message()).await;
        let response = next
            .expect("a response within 10 s")
            .expect("the stream is healthy")
            .expect("the stream is open");
        let past_the_gap = response
            .events
            .iter()
            .any(|event| event.kv.as_ref().is_some_and(|kv| kv.mod_revision >= lost));
        assert!(!past_the_gap, "nothing skipped: {response:?}");
        if response.canceled {
            break response;
        }
    };
    assert!(
        cancelled
            .cancel_reason
            .starts_with(&format!("etcdserver: the value written at revision {lost}")),
        "{cancelled:?}"
    );
    drop(requests);
    cluster.shutdown().await;
}
