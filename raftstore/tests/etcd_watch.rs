//! The etcd API's watch from an old revision: history comes in as few responses as etcd's
//! limits allow (1,000 revisions, or about 2 MiB), never splitting a revision; live events
//! follow one revision per response.

use std::time::Duration;

use rudder_proto::etcdserverpb as pb;
use rudder_raftstore::kv::{PutRequest, RequestOp, Revision, TxnRequest};
use rudder_raftstore::test_support::{etcd_watch, Cluster};
use rudder_raftstore::Store;
use tokio::sync::mpsc;
use tonic::Streaming;

async fn put(store: &Store, key: &str, value: Vec<u8>) -> Revision {
    let request = PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    };
    store.put(request).await.expect("put succeeds").0.revision
}

/// A watch on `prefix` from `start`, over the etcd API on `endpoint`; the sender keeps the
/// request stream (and so the watch) open.
async fn watch(
    endpoint: &str,
    prefix: &str,
    start: Revision,
) -> (mpsc::Sender<pb::WatchRequest>, Streaming<pb::WatchResponse>) {
    let mut range_end = prefix.as_bytes().to_vec();
    *range_end.last_mut().unwrap() += 1;
    let create = pb::WatchCreateRequest {
        key: prefix.into(),
        range_end,
        start_revision: start,
        ..Default::default()
    };
    etcd_watch(endpoint, create).await
}

async fn next(responses: &mut Streaming<pb::WatchResponse>) -> pb::WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), responses.message())
        .await
        .expect("a watch response within 10 s")
        .expect("the stream is healthy")
        .expect("the stream is open")
}

fn revisions(response: &pb::WatchResponse) -> Vec<i64> {
    let mut revisions: Vec<i64> = response
        .events
        .iter()
        .map(|event| event.kv.as_ref().unwrap().mod_revision)
        .collect();
    revisions.dedup();
    revisions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_comes_in_batches_of_a_thousand_revisions_and_a_revision_is_never_split() {
    let cluster = Cluster::start(1).await;
    let store = cluster.store(0);
    let first = put(store, "h/0000", b"v".to_vec()).await;
    let mut written = vec![first];
    // 998 more single puts, then a transaction of two: the 1,000th revision holds two events.
    for chunk in (1..999).collect::<Vec<_>>().chunks(50) {
        let keys: Vec<String> = chunk.iter().map(|i| format!("h/{i:04}")).collect();
        let puts = keys.iter().map(|key| put(store, key, b"v".to_vec()));
        written.extend(futures::future::join_all(puts).await);
    }
    let write = |key: &str| {
        RequestOp::Put(PutRequest {
            key: key.into(),
            value: b"t".to_vec().into(),
            ..Default::default()
        })
    };
    let txn = TxnRequest {
        compare: vec![],
        success: vec![write("h/txn-a"), write("h/txn-b")],
        failure: vec![],
    };
    written.push(store.txn(txn).await.unwrap().0.revision);
    for i in 0..5 {
        written.push(put(store, &format!("h/after-{i}"), b"v".to_vec()).await);
    }
    written.sort();

    let (_requests, mut responses) = watch(&cluster.client_endpoints()[0], "h/", first).await;
    assert!(next(&mut responses).await.created);
    let batch = next(&mut responses).await;
    assert_eq!(revisions(&batch), written[..1000]);
    assert_eq!(
        batch.events.len(),
        1001,
        "the transaction's two events together"
    );
    let rest = next(&mut responses).await;
    assert_eq!(revisions(&rest), written[1000..]);

    // Live: one revision per response.
    let live = put(store, "h/live", b"v".to_vec()).await;
    assert_eq!(revisions(&next(&mut responses).await), [live]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_cut_between_revisions_before_it_passes_two_mebibytes() {
    let cluster = Cluster::start(1).await;
    let store = cluster.store(0);
    let kib = |n: usize| vec![b'x'; n * 1024];
    // 700 + 700 KiB fit in 2 MiB, a third 700 does not; 1.4 MiB fits beside neither its
    // neighbour before nor the 1.1 MiB after; 1.1 MiB and 10 KiB go together.
    let first = put(store, "big/1", kib(700)).await;
    let second = put(store, "big/2", kib(700)).await;
    let third = put(store, "big/3", kib(700)).await;
    let fourth = put(store, "big/4", kib(1400)).await;
    let fifth = put(store, "big/4", kib(1100)).await;
    let sixth = put(store, "big/5", kib(10)).await;

    let (_requests, mut responses) = watch(&cluster.client_endpoints()[0], "big/", first).await;
    assert!(next(&mut responses).await.created);
    assert_eq!(revisions(&next(&mut responses).await), [first, second]);
    assert_eq!(revisions(&next(&mut responses).await), [third]);
    assert_eq!(revisions(&next(&mut responses).await), [fourth]);
    assert_eq!(revisions(&next(&mut responses).await), [fifth, sixth]);
    cluster.shutdown().await;
}
