//! One client request, at most one application (DESIGN.md §3): the two ways a write used to
//! be applied twice, reproduced deterministically with failpoints. Failpoints are global to
//! the process, so these tests live in a binary of their own and take turns.

use std::time::Duration;

use rudder_raftstore::kv::*;
use rudder_raftstore::store::Store;
use rudder_raftstore::test_support::Cluster;
use rudder_raftstore::watch::{WatchMessage, WatchRequest};

static FAILPOINTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn put_request(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.as_bytes().to_vec().into(),
        ..Default::default()
    }
}

async fn get(store: &Store, key: &str) -> KeyValue {
    let req = RangeRequest {
        range: KeyRange::single(key),
        ..Default::default()
    };
    let (_, response) = store.range(req).await.expect("range succeeds");
    response.kvs.into_iter().next().expect("the key exists")
}

/// Every event under `prefix` from `from` until the key `end` appears.
async fn events_until(store: &Store, prefix: &str, from: Revision, end: &str) -> Vec<Event> {
    let request = WatchRequest {
        range: KeyRange::prefix(prefix),
        start_revision: from,
        ..Default::default()
    };
    let mut watcher = store.watch(request).unwrap();
    let mut seen = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), watcher.next())
            .await
            .expect("a watch message in time")
            .expect("the watch is open");
        if let WatchMessage::Events { events, .. } = message {
            for event in events {
                let last = event.kv.key == end.as_bytes();
                seen.push(event);
                if last {
                    return seen;
                }
            }
        }
    }
}

/// Writes `key` once through `store` with the failpoint armed for one hit, then checks the
/// write was applied exactly once and answered with the revision it was applied at.
async fn write_once_through_failure(cluster: &Cluster, store: &Store, failpoint: &str) {
    let key = format!("once/{failpoint}");
    let from = cluster.store(0).revisions().0 + 1;
    rudder_proto::failpoints::configure(failpoint, "1*return").unwrap();
    let answered = store.put(put_request(&key, "unique")).await;
    rudder_proto::failpoints::remove(failpoint);
    let (header, _) = answered.expect("the write is answered after its retry");

    let stored = get(store, &key).await;
    assert_eq!(
        stored.version, 1,
        "{failpoint}: applied once, not {}",
        stored.version
    );
    assert_eq!(
        stored.mod_revision, header.revision,
        "answered with its own revision"
    );
    let end = format!("once/{failpoint}-end");
    store.put(put_request(&end, "x")).await.unwrap();
    let events = events_until(store, "once/", from, &end).await;
    let writes: Vec<Revision> = events
        .iter()
        .filter(|e| e.kv.key == key.as_bytes())
        .map(|e| e.kv.mod_revision)
        .collect();
    assert_eq!(writes, [header.revision], "{failpoint}: one watch event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forward_whose_reply_is_lost_after_the_apply_is_applied_once() {
    let _turn = FAILPOINTS.lock().await;
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.follower(leader);
    // The follower forwards to the leader, which applies it; the reply never comes back,
    // so the follower sends the same request again.
    write_once_through_failure(&cluster, cluster.store(follower), "forward-reply-lost").await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_entry_committed_while_its_leader_reports_lost_leadership_is_applied_once() {
    let _turn = FAILPOINTS.lock().await;
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    // The leader commits the entry but hears "not leader": it proposes again.
    write_once_through_failure(&cluster, cluster.store(leader), "proposal-answer-lost").await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_retried_after_its_first_application_answers_as_the_first_did() {
    let _turn = FAILPOINTS.lock().await;
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.follower(leader);
    // A create: "if absent, put". Applied twice, the second would answer "exists".
    let create = TxnRequest {
        compare: vec![Compare {
            range: KeyRange::single("once/created"),
            result: CompareResult::Equal,
            target: CompareTarget::Create(0),
        }],
        success: vec![RequestOp::Put(put_request("once/created", "v"))],
        failure: vec![],
    };
    rudder_proto::failpoints::configure("forward-reply-lost", "1*return").unwrap();
    let answered = cluster.store(follower).txn(create).await;
    rudder_proto::failpoints::remove("forward-reply-lost");
    let (_, response) = answered.expect("the create is answered");
    assert!(
        response.succeeded,
        "the retry answers as the first application did"
    );
    cluster.shutdown().await;
}
