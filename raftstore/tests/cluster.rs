//! The store contract (DESIGN.md §3) on real three-member clusters in one process.

use std::collections::BTreeSet;
use std::time::Duration;

use rudder_raftstore::campaign::ElectionCounts;
use rudder_raftstore::compaction::Retention;
use rudder_raftstore::kv::*;
use rudder_raftstore::server::RaftOptions;
use rudder_raftstore::store::Store;
use rudder_raftstore::test_support::{raft_options, Cluster};
use rudder_raftstore::watch::{WatchMessage, WatchRequest, Watcher};
use rudder_raftstore::{KvError, Member, StoreError};

async fn put(store: &Store, key: &str, value: &str) -> Revision {
    let req = PutRequest {
        key: key.into(),
        value: value.as_bytes().to_vec().into(),
        ..Default::default()
    };
    store.put(req).await.expect("put succeeds").0.revision
}

async fn get(store: &Store, key: &str) -> Option<KeyValue> {
    let req = RangeRequest {
        range: KeyRange::single(key),
        ..Default::default()
    };
    store
        .range(req)
        .await
        .expect("range succeeds")
        .1
        .kvs
        .into_iter()
        .next()
}

/// Member `id` as `store` lists it.
fn listed(store: &Store, id: u64) -> Member {
    let members = store.members();
    match members.iter().find(|m| m.id == id) {
        Some(info) => info.member.clone(),
        None => panic!("member {id:x} is not listed: {members:?}"),
    }
}

/// The next watch message, failing the test after `seconds`.
async fn next(watcher: &mut Watcher, seconds: u64) -> WatchMessage {
    tokio::time::timeout(Duration::from_secs(seconds), watcher.next())
        .await
        .expect("a watch message in time")
        .expect("the watch is still open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_on_a_follower_is_read_linearizably_on_another() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let revision = put(cluster.store(followers[0]), "greeting", "hello").await;
    let read = get(cluster.store(followers[1]), "greeting")
        .await
        .expect("the key is visible");
    assert_eq!(read.value, &b"hello"[..]);
    assert_eq!(read.mod_revision, revision);
    let (header, _) = cluster
        .store(leader)
        .range(RangeRequest {
            range: KeyRange::single("greeting"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(header.revision, revision);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_from_an_old_revision_sees_every_event_once_in_order_under_8_writers() {
    let cluster = Cluster::start(3).await;
    let first = put(cluster.store(0), "w/seed", "0").await;
    let mut writers = Vec::new();
    for writer in 0..8 {
        let store = cluster.store(writer % 3).clone();
        writers.push(tokio::spawn(async move {
            let mut written = Vec::new();
            for n in 0..40 {
                let key = format!("w/{writer}/{}", n % 7);
                written.push((key.clone(), put(&store, &key, &format!("{n}")).await));
            }
            written
        }));
    }
    // Start watching from the old revision once the writers are under way.
    while cluster.store(2).revisions().0 < first + 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let request = WatchRequest {
        range: KeyRange::prefix("w/"),
        start_revision: first,
        ..Default::default()
    };
    let mut watcher = cluster.store(2).watch(request).unwrap();
    let mut expected: BTreeSet<(String, Revision)> =
        BTreeSet::from([("w/seed".to_string(), first)]);
    for writer in writers {
        expected.extend(writer.await.unwrap());
    }
    let mut seen = Vec::new();
    let mut last_revision = 0;
    while seen.len() < expected.len() {
        match next(&mut watcher, 10).await {
            WatchMessage::Events { revision, events } => {
                assert!(
                    revision > last_revision,
                    "revisions go strictly up: {revision} after {last_revision}"
                );
                last_revision = revision;
                for event in events {
                    assert_eq!(event.kv.mod_revision, revision);
                    seen.push((
                        String::from_utf8(event.kv.key).unwrap(),
                        event.kv.mod_revision,
                    ));
                }
            }
            WatchMessage::Progress { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no event is delivered twice");
    assert_eq!(unique, expected, "every write is seen exactly once");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_from_a_compacted_revision_ends_with_compacted() {
    let cluster = Cluster::start(3).await;
    let store = cluster.store(1);
    let first = put(store, "c/a", "1").await;
    put(store, "c/a", "2").await;
    let third = put(store, "c/a", "3").await;
    store.compact(third).await.unwrap();
    // Watches are served by the local replica: catch the watching members up first.
    get(cluster.store(2), "c/a").await;
    get(cluster.store(0), "c/a").await;
    let request = WatchRequest {
        range: KeyRange::prefix("c/"),
        start_revision: first,
        ..Default::default()
    };
    let mut watcher = cluster.store(2).watch(request).unwrap();
    assert_eq!(
        next(&mut watcher, 5).await,
        WatchMessage::Compacted {
            compact_revision: third
        }
    );
    assert!(
        watcher.next().await.is_none(),
        "the watch ends after compacted"
    );
    // From the compact revision itself, history is complete.
    let request = WatchRequest {
        range: KeyRange::prefix("c/"),
        start_revision: third,
        ..Default::default()
    };
    let mut watcher = cluster.store(0).watch(request).unwrap();
    assert!(
        matches!(next(&mut watcher, 5).await, WatchMessage::Events { revision, .. } if revision == third)
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transactions_events_arrive_together() {
    let cluster = Cluster::start(3).await;
    let request = WatchRequest {
        range: KeyRange::prefix("t/"),
        prev_kv: true,
        ..Default::default()
    };
    let mut watcher = cluster.store(0).watch(request).unwrap();
    put(cluster.store(1), "t/b", "old").await;
    let write = |key: &str| {
        RequestOp::Put(PutRequest {
            key: key.into(),
            value: b"new".to_vec().into(),
            ..Default::default()
        })
    };
    let txn = TxnRequest {
        compare: vec![],
        success: vec![write("t/a"), write("t/b"), write("t/c")],
        failure: vec![],
    };
    let (header, response) = cluster.store(2).txn(txn).await.unwrap();
    assert!(response.succeeded);
    let WatchMessage::Events { .. } = next(&mut watcher, 5).await else {
        panic!("first the single put")
    };
    match next(&mut watcher, 5).await {
        WatchMessage::Events { revision, events } => {
            assert_eq!(revision, header.revision);
            let keys: Vec<_> = events.iter().map(|e| e.kv.key.clone()).collect();
            assert_eq!(keys, [b"t/a".to_vec(), b"t/b".to_vec(), b"t/c".to_vec()]);
            assert_eq!(events[1].prev_kv.as_ref().unwrap().value, &b"old"[..]);
        }
        other => panic!("expected the txn's events, got {other:?}"),
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn progress_notifications_report_the_revision_reached() {
    let cluster = Cluster::start(3).await;
    let revision = put(cluster.store(0), "elsewhere", "x").await;
    get(cluster.store(1), "elsewhere").await; // the watching member has applied it
    let request = WatchRequest {
        range: KeyRange::prefix("quiet/"),
        progress_notify: true,
        ..Default::default()
    };
    let mut watcher = cluster.store(1).watch(request).unwrap();
    match next(&mut watcher, 5).await {
        WatchMessage::Progress { revision: reached } => assert!(reached >= revision),
        other => panic!("expected progress, got {other:?}"),
    }
    cluster.shutdown().await;
}

/// A watch from a revision the store has not reached reports, on progress, the revision the
/// store has reached (a client takes it as "seen up to here"), never its future start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_from_the_future_reports_progress_no_further_than_the_store() {
    let cluster = Cluster::start(1).await;
    let store = cluster.store(0);
    let now = put(store, "elsewhere", "x").await;
    let request = WatchRequest {
        range: KeyRange::prefix("later/"),
        start_revision: now + 10,
        ..Default::default()
    };
    let mut watcher = store.watch(request).unwrap();
    watcher.request_progress();
    match next(&mut watcher, 5).await {
        WatchMessage::Progress { revision } => assert_eq!(revision, now),
        other => panic!("expected progress, got {other:?}"),
    }
    let later = put(store, "elsewhere", "y").await;
    // The write reaches the watch through the feed; progress follows it, still short of the
    // start.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        watcher.request_progress();
        match next(&mut watcher, 5).await {
            WatchMessage::Progress { revision } if revision == later => break,
            WatchMessage::Progress { revision } => {
                assert!(revision < later, "{revision} past the store's {later}");
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "stuck at {revision}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("expected progress, got {other:?}"),
        }
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lease_keys_vanish_after_the_ttl() {
    let cluster = Cluster::start(3).await;
    let store = cluster.store(1);
    let (_, lease) = store.lease_grant(0, 1).await.unwrap();
    let req = PutRequest {
        key: b"l/key".to_vec(),
        value: b"v".to_vec().into(),
        lease: lease.id,
        ..Default::default()
    };
    let (header, _) = store.put(req).await.unwrap();
    let request = WatchRequest {
        range: KeyRange::single("l/key"),
        start_revision: header.revision + 1,
        ..Default::default()
    };
    let mut watcher = cluster.store(2).watch(request).unwrap();
    match next(&mut watcher, 5).await {
        WatchMessage::Events { events, .. } => assert_eq!(events[0].kind, EventKind::Delete),
        other => panic!("expected the lease's delete, got {other:?}"),
    }
    for i in 0..3 {
        assert_eq!(get(cluster.store(i), "l/key").await, None);
    }
    let (_, ttl) = cluster
        .store(0)
        .lease_time_to_live(lease.id, false)
        .await
        .unwrap();
    assert_eq!(ttl.ttl, -1, "the lease is gone");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kept_alive_lease_survives_a_leader_change() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.follower(leader);
    let keeper = cluster.store(follower).clone();
    // A TTL well above an election under CPU load, so only a real loss of the lease fails.
    let (_, lease) = keeper.lease_grant(0, 4).await.unwrap();
    let req = PutRequest {
        key: b"kept".to_vec(),
        value: b"v".to_vec().into(),
        lease: lease.id,
        ..Default::default()
    };
    keeper.put(req).await.unwrap();
    // Keep-alives run until the check is done (however long stopping the leader takes).
    let started = tokio::time::Instant::now();
    let (done, mut until_done) = tokio::sync::watch::channel(false);
    let keep_alive = tokio::spawn(async move {
        // Each keep-alive's outcome and timing, for the failure message.
        let mut log = Vec::new();
        while !*until_done.borrow() {
            let at = started.elapsed();
            let outcome = keeper.lease_keep_alive(lease.id).await;
            log.push(format!(
                "{:>5} ms +{:>4} ms {:?}",
                at.as_millis(),
                (started.elapsed() - at).as_millis(),
                outcome.map(|(_, ttl)| ttl)
            ));
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = until_done.changed() => {}
            }
        }
        log
    });
    cluster.stop(leader).await;
    let stopped = started.elapsed();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let kept = get(cluster.store(follower), "kept").await.is_some();
    let checked = started.elapsed();
    done.send_replace(true);
    let log = keep_alive.await.unwrap();
    assert!(
        kept,
        "kept alive across the leader change (leader stopped at {} ms, checked at {} ms):\n{}",
        stopped.as_millis(),
        checked.as_millis(),
        log.join("\n")
    );
    // Without keep-alives it goes within the TTL (plus the expiry check period).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while get(cluster.store(follower), "kept").await.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lease expired once no longer kept alive"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_kept_down_rejoins_through_a_snapshot() {
    let raft = RaftOptions {
        snapshot_entries: 100,
        keep_entries: 10,
        ..raft_options()
    };
    let mut cluster = Cluster::start_with(3, raft).await;
    let leader = cluster.leader().await;
    let lagging = cluster.follower(leader);
    cluster.stop(lagging).await;
    for n in 0..400 {
        put(
            cluster.store(leader),
            &format!("s/{}", n % 50),
            &format!("{n}"),
        )
        .await;
    }
    // Snapshots are built and the log purged in the background: wait for it.
    cluster
        .store(leader)
        .raft()
        .wait(Some(Duration::from_secs(20)))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index > 100),
            "the leader purges its log",
        )
        .await
        .expect("the leader purged its log behind a snapshot");
    cluster.restart(lagging).await;
    cluster.converge().await;
    let snapshot = cluster.store(lagging).raft().metrics().borrow().snapshot;
    assert!(
        snapshot.is_some(),
        "the restarted member installed a snapshot"
    );
    let (_, expected) = cluster.store(leader).hash_kv(0).unwrap();
    let (_, hash) = cluster.store(lagging).hash_kv(0).unwrap();
    assert_eq!(hash, expected);
    assert_eq!(
        get(cluster.store(lagging), "s/49").await.unwrap().value,
        &b"399"[..]
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_are_added_promoted_and_removed_and_ids_never_reused() {
    let cluster = Cluster::start(3).await;
    let store = cluster.store(0);
    let newcomer = Member {
        name: "m4".into(),
        peer_addr: "127.0.0.1:9".into(),
        client_addr: String::new(),
    };
    store
        .add_member(4444, newcomer.clone(), true)
        .await
        .unwrap();
    // The membership a member lists is its own view: let it catch up first.
    cluster.converge().await;
    let listed = store
        .members()
        .into_iter()
        .find(|m| m.id == 4444)
        .expect("the learner is listed");
    assert!(listed.is_learner);
    assert_eq!(
        store.promote_member(1).await,
        Err(StoreError::MemberNotFound { id: 1 })
    );
    let voter = store
        .members()
        .into_iter()
        .find(|m| !m.is_learner)
        .unwrap()
        .id;
    assert_eq!(
        store.promote_member(voter).await,
        Err(StoreError::NotLearner { id: voter })
    );
    store.promote_member(4444).await.unwrap();
    cluster.converge().await;
    assert!(
        !store
            .members()
            .into_iter()
            .find(|m| m.id == 4444)
            .unwrap()
            .is_learner
    );
    store.remove_member(4444).await.unwrap();
    cluster.converge().await;
    assert!(store.members().iter().all(|m| m.id != 4444));
    assert_eq!(
        store.add_member(4444, newcomer, true).await,
        Err(StoreError::MemberIdUsed { id: 4444 })
    );
    // The cluster still works with its three original members.
    put(cluster.store(2), "after", "membership").await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_a_precise_error_and_changes_nothing() {
    let cluster = Cluster::start(3).await;
    let store = cluster.store(1);
    put(store, "present", "v").await;
    get(store, "present").await; // catches the local replica up before its HashKV
    let (_, before) = store.hash_kv(0).unwrap();
    let limits = store.limits().clone();
    let put_req = |key: &str, value: Vec<u8>, lease: LeaseId| {
        Command::Put(PutRequest {
            key: key.into(),
            value: value.into(),
            lease,
            ..Default::default()
        })
    };
    let many_ops = TxnRequest {
        success: vec![
            RequestOp::Put(PutRequest {
                key: b"k".to_vec(),
                ..Default::default()
            });
            limits.max_txn_ops + 1
        ],
        ..Default::default()
    };
    let cases: Vec<(&str, Command, KvError)> = vec![
        (
            "empty key",
            put_req("", b"v".to_vec(), 0),
            KvError::EmptyKey,
        ),
        (
            "range end before key",
            Command::DeleteRange(DeleteRangeRequest {
                range: KeyRange {
                    key: b"b".to_vec(),
                    range_end: b"a".to_vec(),
                },
                prev_kv: false,
            }),
            KvError::RangeEndBeforeKey {
                key: "b".into(),
                range_end: "a".into(),
            },
        ),
        (
            "oversized value",
            put_req("big", vec![0; limits.max_request_bytes], 0),
            KvError::RequestTooLarge {
                size: limits.max_request_bytes + 3,
                limit: limits.max_request_bytes,
            },
        ),
        (
            "too many txn ops",
            Command::Txn(many_ops),
            KvError::TooManyTxnOps {
                count: limits.max_txn_ops + 1,
                limit: limits.max_txn_ops,
            },
        ),
        (
            "unknown lease",
            put_req("leased", b"v".to_vec(), 12345),
            KvError::LeaseNotFound { id: 12345 },
        ),
        (
            "negative ttl",
            Command::LeaseGrant { id: 7, ttl: -10 },
            KvError::InvalidTtl { ttl: -10 },
        ),
        (
            "compaction beyond current revision",
            Command::Compact {
                revision: before.revision + 100,
            },
            KvError::FutureRevision {
                requested: before.revision + 100,
                current: before.revision,
            },
        ),
        (
            "ignore_value on a missing key",
            Command::Put(PutRequest {
                key: b"absent".to_vec(),
                ignore_value: true,
                ..Default::default()
            }),
            KvError::KeyNotFound {
                key: "absent".into(),
            },
        ),
    ];
    for (what, command, expected) in cases {
        let got = store.propose(command).await;
        assert_eq!(got.map(|_| ()), Err(StoreError::Kv(expected)), "{what}");
    }
    let future = RangeRequest {
        range: KeyRange::single("present"),
        revision: before.revision + 5,
        ..Default::default()
    };
    assert_eq!(
        store.range(future).await.map(|_| ()),
        Err(StoreError::Kv(KvError::FutureRevision {
            requested: before.revision + 5,
            current: before.revision
        }))
    );
    let watch_empty_key = WatchRequest {
        range: KeyRange::single(""),
        ..Default::default()
    };
    assert!(matches!(
        cluster.store(0).watch(watch_empty_key),
        Err(StoreError::Kv(KvError::EmptyKey))
    ));
    for i in 0..3 {
        cluster
            .store(i)
            .range(RangeRequest {
                range: KeyRange::single("present"),
                ..Default::default()
            })
            .await
            .unwrap();
        let (_, after) = cluster.store(i).hash_kv(0).unwrap();
        assert_eq!(after, before, "member {i} unchanged");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_compacts_by_revision_retention() {
    let cluster = Cluster::start_configured(3, raft_options(), Retention::Revisions(10)).await;
    let mut last = 0;
    for n in 0..30 {
        last = put(cluster.store(0), "r/key", &n.to_string()).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let compacted: Vec<Revision> = (0..3).map(|i| cluster.store(i).revisions().1).collect();
        if compacted.iter().all(|c| *c >= last - 10) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "automatic compaction reached {compacted:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let old = RangeRequest {
        range: KeyRange::single("r/key"),
        revision: 1,
        ..Default::default()
    };
    assert!(matches!(
        cluster.store(1).range(old).await,
        Err(StoreError::Kv(KvError::Compacted { .. }))
    ));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disk_write_failure_stops_the_member_and_the_others_go_on() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let broken = cluster.follower(leader);
    let member = cluster.members[broken].as_ref().unwrap();
    member.inject_disk_failure();
    put(cluster.store(leader), "after/failure", "1").await;
    let reason = tokio::time::timeout(Duration::from_secs(10), member.failed())
        .await
        .expect("the member stops");
    assert!(
        reason.contains("injected disk fault"),
        "the reason names the fault: {reason}"
    );
    let healthy = (0..3).find(|i| *i != broken && *i != leader).unwrap();
    put(cluster.store(healthy), "after/failure", "2").await;
    assert_eq!(
        get(cluster.store(leader), "after/failure")
            .await
            .unwrap()
            .value,
        &b"2"[..]
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_cluster_resumes_from_its_data() {
    let mut cluster = Cluster::start(3).await;
    let (_, lease) = cluster.store(0).lease_grant(0, 3600).await.unwrap();
    let req = PutRequest {
        key: b"durable".to_vec(),
        value: b"yes".to_vec().into(),
        lease: lease.id,
        ..Default::default()
    };
    let (header, _) = cluster.store(0).put(req).await.unwrap();
    // HashKV reads the local replica (as in etcd): a linearizable read first catches it up.
    get(cluster.store(0), "durable").await;
    let (_, hash) = cluster.store(0).hash_kv(0).unwrap();
    for i in 0..3 {
        cluster.stop(i).await;
    }
    for i in 0..3 {
        cluster.restart(i).await;
    }
    cluster.leader().await;
    let kv = get(cluster.store(2), "durable")
        .await
        .expect("the key survived a full restart");
    assert_eq!(
        (kv.value.as_ref(), kv.mod_revision, kv.lease),
        (&b"yes"[..], header.revision, lease.id)
    );
    get(cluster.store(1), "durable").await;
    assert_eq!(cluster.store(1).hash_kv(0).unwrap().1, hash);
    let next = put(cluster.store(1), "durable", "again").await;
    assert_eq!(
        next,
        header.revision + 1,
        "revisions continue where they were"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_member_publishes_its_client_address() {
    let cluster = Cluster::start(3).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let members = cluster.store(0).members();
        let published = members
            .iter()
            .filter(|m| !m.member.client_addr.is_empty())
            .count();
        if published == 3 {
            let expected: BTreeSet<String> = cluster
                .configs
                .iter()
                .map(|c| c.listen_client.to_string())
                .collect();
            let listed: BTreeSet<String> =
                members.into_iter().map(|m| m.member.client_addr).collect();
            assert_eq!(listed, expected);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "client addresses published: {members:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fourth_member_joins_another_is_removed_and_its_id_is_never_reused() {
    let mut cluster = Cluster::start(3).await;
    put(cluster.store(0), "before", "join").await;
    let fourth = cluster.join_new_member().await;
    cluster.converge().await;
    let members = cluster.store(0).members();
    assert_eq!(members.len(), 4);
    assert!(
        members.iter().all(|m| !m.is_learner),
        "the joined member was promoted: {members:?}"
    );
    // The new member serves reads of what was written before it joined.
    assert_eq!(
        get(cluster.store(fourth), "before").await.unwrap().value,
        &b"join"[..]
    );

    let leader = cluster.leader().await;
    let removed = cluster.follower(leader);
    let removed_id = cluster.members[removed].as_ref().unwrap().id;
    let removed_member = listed(cluster.store(removed), removed_id);
    cluster
        .store(fourth)
        .remove_member(removed_id)
        .await
        .unwrap();
    cluster.stop(removed).await;
    cluster.converge().await;
    // A loaded machine may have moved leadership meanwhile: ask whoever leads now, and give
    // its view of the membership a moment (it follows the commit; a run under load once
    // showed 4 here).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let leader = loop {
        let leader = cluster.leader().await;
        let members = cluster.store(leader).members();
        if members.len() == 3 {
            break leader;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "member {removed_id} is still listed 5 s after its removal: {members:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    put(cluster.store(fourth), "after", "removal").await;
    assert_eq!(
        cluster
            .store(leader)
            .add_member(removed_id, removed_member, true)
            .await,
        Err(StoreError::MemberIdUsed { id: removed_id })
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serializable_reads_serve_the_local_replica() {
    let cluster = Cluster::start(3).await;
    let revision = put(cluster.store(0), "local", "v").await;
    cluster.converge().await;
    for i in 0..3 {
        let req = RangeRequest {
            range: KeyRange::single("local"),
            serializable: true,
            ..Default::default()
        };
        let (header, response) = cluster.store(i).range(req).await.unwrap();
        assert_eq!(response.kvs[0].mod_revision, revision);
        assert_eq!(header.member_id, cluster.store(i).id());
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_resumed_from_its_last_revision_misses_nothing() {
    let cluster = Cluster::start(3).await;
    let request = WatchRequest {
        range: KeyRange::prefix("resume/"),
        ..Default::default()
    };
    let mut watcher = cluster.store(0).watch(request.clone()).unwrap();
    let mut last_seen = 0;
    for n in 0..3 {
        put(cluster.store(1), &format!("resume/{n}"), "v").await;
        if let WatchMessage::Events { revision, .. } = next(&mut watcher, 5).await {
            last_seen = revision;
        }
    }
    drop(watcher); // the stream breaks
    let mut missed = Vec::new();
    for n in 3..6 {
        missed.push(put(cluster.store(2), &format!("resume/{n}"), "v").await);
    }
    let resumed = WatchRequest {
        start_revision: last_seen + 1,
        ..request
    };
    let mut watcher = cluster.store(1).watch(resumed).unwrap();
    let mut seen = Vec::new();
    while seen.len() < missed.len() {
        if let WatchMessage::Events { revision, .. } = next(&mut watcher, 5).await {
            seen.push(revision);
        }
    }
    assert_eq!(seen, missed);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_restarted_at_new_addresses_rejoins_through_its_peers() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let moved = cluster.follower(leader);
    cluster.stop(moved).await;
    let revision = put(cluster.store(leader), "moved/key", "v").await;
    // The leader only knows the old address: the moved member must tell it, through a peer.
    cluster.restart_elsewhere(moved).await;
    let new_peer = cluster.configs[moved].listen_peer.to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let listed = cluster.store(leader).members();
        if listed.iter().any(|m| m.member.peer_addr == new_peer) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "new address never published: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.converge().await;
    let kv = get(cluster.store(moved), "moved/key").await.unwrap();
    assert_eq!(kv.mod_revision, revision);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_members_address_update_does_not_put_it_back() {
    // A member's own "publish my addresses" call, late after its removal, used to re-insert
    // it as a learner (and then its id could be added again).
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let removed = cluster.follower(leader);
    let removed_id = cluster.members[removed].as_ref().unwrap().id;
    let member = listed(cluster.store(leader), removed_id);
    cluster
        .store(leader)
        .remove_member(removed_id)
        .await
        .unwrap();
    let moved = Member {
        client_addr: "127.0.0.1:1".into(),
        ..member.clone()
    };
    assert_eq!(
        cluster.store(leader).set_member(removed_id, moved).await,
        Err(StoreError::MemberNotFound { id: removed_id })
    );
    let members = cluster.store(leader).members();
    assert!(
        members.iter().all(|m| m.id != removed_id),
        "the removed member stays removed: {members:?}"
    );
    assert_eq!(
        cluster
            .store(leader)
            .add_member(removed_id, member, true)
            .await,
        Err(StoreError::MemberIdUsed { id: removed_id })
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_leader_hands_over_and_nobody_waits_out_an_election_timeout() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    put(cluster.store(leader), "handover/before", "1").await;
    cluster.converge().await;
    let leader = cluster.leader().await;
    let term = cluster.store(leader).raft().metrics().borrow().current_term;
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let counts = |cluster: &Cluster| -> Vec<_> {
        let counts = survivors.iter().map(|i| cluster.member(*i).elections());
        counts.collect()
    };
    let before = counts(&cluster);
    // Writes keep coming through a survivor while the leader stops (they are forwarded to
    // it until it steps down): the target must still win the handover's election.
    let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = {
        let store = cluster.store(survivors[0]).clone();
        let written = written.clone();
        tokio::spawn(async move {
            for i in 0.. {
                let request = PutRequest {
                    key: format!("handover/during/{i}").into(),
                    value: b"w".to_vec().into(),
                    ..Default::default()
                };
                if store.put(request).await.is_ok() {
                    written.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while written.load(std::sync::atomic::Ordering::Relaxed) < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "writes through a survivor did not succeed within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    cluster.stop(leader).await;
    let next = cluster.leader().await;
    writer.abort();
    let after = counts(&cluster);
    let started =
        |i: usize, field: fn(&ElectionCounts) -> u64| field(&after[i]) - field(&before[i]);
    let by_handover: Vec<u64> = (0..2).map(|i| started(i, |c| c.by_handover)).collect();
    let by_timer: Vec<u64> = (0..2).map(|i| started(i, |c| c.by_timer)).collect();
    let new_leader = survivors.iter().position(|i| *i == next).unwrap();
    // No survivor's timer ran out: the election was the handover's alone.
    assert_eq!(by_timer, [0, 0], "before {before:?}, after {after:?}");
    assert_eq!(
        by_handover[new_leader], 1,
        "before {before:?}, after {after:?}"
    );
    let new_term = cluster.store(next).raft().metrics().borrow().current_term;
    assert_eq!(new_term, term + 1);
    put(cluster.store(next), "handover/after", "2").await;
    let before = get(cluster.store(next), "handover/before").await;
    assert_eq!(before.map(|kv| kv.value), Some(b"1".to_vec().into()));
    cluster.shutdown().await;
}
