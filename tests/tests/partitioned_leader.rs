//! A leader cut off from the others by a real partition (each member in a network namespace
//! of its own, as the chaos runner makes them) answers a write at once, saying it has heard
//! from no quorum, instead of holding it for the whole request timeout; the majority elects
//! a new leader and takes writes; after the partition heals, every member reads the
//! majority's write, the old leader's uncommitted one gone.

use std::time::{Duration, Instant};

use rudder_chaos::partition::{self, Split};
use rudder_proto::etcdserverpb::{PutRequest, RangeRequest};
use rudder_tests::{kv, rudder_binary_beside_tests, ProcessCluster};

fn put(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_leader_answers_writes_at_once_and_the_majority_goes_on() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: a partition needs root (each member gets a network namespace)");
        return;
    }
    let cluster = ProcessCluster::start_rudder_apart(&rudder_binary_beside_tests(), 3, &[])
        .expect("three members, each in a namespace of its own");
    // A write its leader acknowledged, and the same leader after it (leadership may move
    // in between, right after the start).
    let leader = loop {
        let leader = cluster.leader().await.expect("a leader");
        kv(&cluster.members[leader].client_addr)
            .await
            .unwrap()
            .put(put("before", "1"))
            .await
            .expect("a write before the partition");
        if cluster.leader().await.expect("a leader") == leader {
            break leader;
        }
    };
    let old_leader = cluster.members[leader].client_addr.clone();

    cluster
        .partition(&partition::cuts(Split::Isolated, 3, leader, leader))
        .expect("the leader cut off");
    // Asked directly, the cut-off leader cannot commit: it must say so well before the
    // 7 s request timeout (it judges after twice the election timeout, 300 ms).
    let asked = Instant::now();
    let refused = kv(&old_leader)
        .await
        .unwrap()
        .put(put("during", "old-leader"))
        .await
        .expect_err("a leader without a quorum commits nothing");
    let waited = asked.elapsed();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("heard from no quorum"),
        "{refused:?}"
    );
    assert!(waited < Duration::from_secs(3), "answered after {waited:?}");

    // The majority elected another leader and takes writes.
    let others: Vec<String> = (0..3)
        .filter(|m| *m != leader)
        .map(|m| cluster.members[m].client_addr.clone())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let written = match kv(&others[0]).await {
            Ok(mut client) => client.put(put("during", "majority")).await.is_ok(),
            Err(_) => false,
        };
        if written {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the majority took no write in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let dropped = cluster.heal().expect("healed");
    assert!(dropped > 0, "the partition dropped nothing");
    // Healed: every member, the old leader included, reads the majority's write. The old
    // leader's entry never reached anyone: the new leader's log replaces it.
    for member in &cluster.members {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let read = match kv(&member.client_addr).await {
                Ok(mut client) => client
                    .range(RangeRequest {
                        key: "during".into(),
                        serializable: true,
                        ..Default::default()
                    })
                    .await
                    .ok()
                    .and_then(|r| r.into_inner().kvs.first().map(|kv| kv.value.clone())),
                Err(_) => None,
            };
            if read.is_some_and(|value| value == b"majority") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} never caught up after the heal",
                member.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
