//! A member cut off from a healthy leader asks for a pre-vote, is refused, and never
//! raises the term: the leader keeps leading (`election.rs`). Without the pre-vote, its
//! election would depose the leader (openraft 0.9's leader grants any up-to-date
//! candidate of a higher term). Failpoints are global to the process: this binary holds
//! one test.

use std::time::Duration;

use rudder_raftstore::kv::PutRequest;
use rudder_raftstore::test_support::Cluster;
use rudder_raftstore::Store;

async fn put(store: &Store, key: &str) {
    let put = store.put(PutRequest {
        key: key.into(),
        value: b"v".to_vec().into(),
        ..Default::default()
    });
    tokio::time::timeout(Duration::from_secs(5), put)
        .await
        .unwrap_or_else(|_| panic!("put {key} did not commit within 5 s"))
        .unwrap_or_else(|error| panic!("put {key}: {error}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cut_off_from_a_healthy_leader_cannot_depose_it() {
    let cluster = Cluster::start(3).await;
    cluster.converge().await;
    let leader = cluster.settled_leader().await;
    let cut_off = cluster.follower(leader);
    let other = (0..3).find(|i| *i != leader && *i != cut_off).unwrap();
    let term_before = cluster.store(leader).raft().metrics().borrow().current_term;
    let cut_off_id = cluster.member(cut_off).id;

    rudder_proto::failpoints::configure("append-entries-lost", &format!("return({cut_off_id})"))
        .unwrap();
    // Until the cut-off member asked three times and was refused each time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while cluster.member(cut_off).elections().pre_votes_lost < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cut-off member did not ask for a pre-vote: {:?}",
            cluster.member(cut_off).elections()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The leader goes on committing with the other follower meanwhile.
    put(cluster.store(leader), "while-cut-off").await;
    rudder_proto::failpoints::remove("append-entries-lost");

    assert_eq!(cluster.member(cut_off).elections().by_timer, 0);
    assert_eq!(cluster.member(other).elections().by_timer, 0);
    let metrics = cluster.store(leader).raft().metrics().borrow().clone();
    assert_eq!(metrics.current_term, term_before, "the term was raised");
    assert_eq!(metrics.state, openraft::ServerState::Leader);
    // Healed, the member catches up under the same leader.
    put(cluster.store(leader), "healed").await;
    cluster.converge().await;
    assert_eq!(cluster.leader().await, leader);
    cluster.shutdown().await;
}
