//! Peer messages carry their cluster's identity (`rudder_raftstore::identity`): a member
//! never acts on another cluster's messages, or on messages meant for another member, even
//! when a peer list names its address.

use std::time::Duration;

use openraft::raft::VoteRequest;
use openraft::Vote;
use rudder_proto::raft::RaftPayload;
use rudder_raftstore::kv::*;
use rudder_raftstore::network::peer_client;
use rudder_raftstore::test_support::Cluster;
use rudder_raftstore::{codec, Member, NodeId};

async fn put(cluster: &Cluster, i: usize, key: &str) {
    let request = PutRequest {
        key: key.into(),
        value: b"v".to_vec().into(),
        ..Default::default()
    };
    cluster.store(i).put(request).await.expect("put succeeds");
}

async fn keys(cluster: &Cluster, i: usize) -> Vec<String> {
    let request = RangeRequest {
        // Every key: from "\0" to the end.
        range: KeyRange {
            key: vec![0],
            range_end: vec![0],
        },
        keys_only: true,
        ..Default::default()
    };
    let (_, response) = cluster
        .store(i)
        .range(request)
        .await
        .expect("range succeeds");
    response
        .kvs
        .into_iter()
        .map(|kv| String::from_utf8(kv.key).unwrap())
        .collect()
}

fn term(cluster: &Cluster, i: usize) -> u64 {
    cluster.store(i).raft().metrics().borrow().current_term
}

/// Makes a follower take over `rounds` times; returns the leader's term at the end.
async fn raise_term(cluster: &Cluster, rounds: usize) -> u64 {
    for _ in 0..rounds {
        let leader = cluster.leader().await;
        let before = term(cluster, leader);
        let follower = cluster.follower(leader);
        cluster
            .store(follower)
            .raft()
            .trigger()
            .elect()
            .await
            .expect("an election starts");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while term(cluster, cluster.leader().await) <= before {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no election in 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    term(cluster, cluster.leader().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_listed_at_another_clusters_address_takes_nothing_from_that_cluster() {
    let a = Cluster::start(3).await;
    let b = Cluster::start(3).await;
    // `a` runs ahead of `b`: a higher term and a longer log, what a follower would follow.
    let a_term = raise_term(&a, 3).await;
    let a_leader = a.leader().await;
    for i in 0..20 {
        put(&a, a_leader, &format!("a/{i}")).await;
    }
    let b_leader = b.leader().await;
    put(&b, b_leader, "b/0").await;
    let b_term = term(&b, b_leader);
    assert!(b_term < a_term, "b's term {b_term}, a's {a_term}");

    // `a` now believes one of its members lives at the address of one of `b`'s followers.
    let victim = b.follower(b_leader);
    let a_follower = a.follower(a_leader);
    // (Once every member has published its own addresses: one still publishing would put
    // its real address back.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while a
        .store(a_leader)
        .members()
        .iter()
        .any(|m| m.member.client_addr.is_empty())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a's members did not publish themselves"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let moved = Member {
        name: "m-moved".into(),
        peer_addr: b.configs[victim].listen_peer.to_string(),
        client_addr: b.configs[victim].listen_client.to_string(),
    };
    a.store(a_leader)
        .set_member(a.member(a_follower).id, moved)
        .await
        .expect("the membership changes");

    // `a`'s leader sends heartbeats there every 50 ms: wait until 20 were refused.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while b.member(victim).refused_peer_messages() < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the member at the reused address refused {} messages in 10 s",
            b.member(victim).refused_peer_messages()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing of `a` reached `b`: not its term, not its leader, not its entries.
    let metrics = b.store(victim).raft().metrics().borrow().clone();
    assert!(metrics.running_state.is_ok(), "{:?}", metrics.running_state);
    assert_eq!(metrics.current_term, b_term);
    assert_eq!(metrics.current_leader, Some(b.member(b_leader).id));
    put(&b, victim, "b/1").await;
    assert_eq!(keys(&b, victim).await, ["b/0", "b/1"]);
    assert_eq!(b.leader().await, b_leader);
    // And `a` goes on without the member it lost track of.
    put(&a, a_leader, "a/after").await;
    assert_eq!(keys(&a, a_leader).await.len(), 21);
    assert_eq!(a.member(a_leader).refused_peer_messages(), 0);

    a.shutdown().await;
    b.shutdown().await;
}

/// A vote request for a term far ahead, in the envelope given.
fn vote(cluster_id: u64, from: NodeId, to: NodeId) -> RaftPayload {
    let request = VoteRequest::<NodeId>::new(Vote::new(1_000, from), None);
    RaftPayload {
        data: codec::encode(&request).unwrap(),
        cluster_id,
        from,
        to,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_from_another_cluster_or_for_another_member_is_refused_with_the_reason() {
    let a = Cluster::start(3).await;
    let b = Cluster::start(3).await;
    let a_id = a.member(0).cluster_id().expect("a has a cluster id");
    let b_id = b.member(0).cluster_id().expect("b has a cluster id");
    let (me, other) = (b.member(0).id, b.member(1).id);
    let before = term(&b, 0);
    let mut client = peer_client(&b.configs[0].listen_peer.to_string(), None).unwrap();

    let refusals = [
        (
            vote(a_id, a.member(1).id, me),
            format!("of cluster {a_id:x}"),
        ),
        (
            vote(b_id, other, other),
            format!("for member {other:x} reached member {me:x}"),
        ),
        (vote(0, other, me), "names no cluster".to_owned()),
    ];
    for (message, reason) in refusals {
        let status = client.vote(message).await.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
        assert!(
            status.message().contains(&reason),
            "{status:?} should say {reason:?}"
        );
    }
    assert_eq!(b.member(0).refused_peer_messages(), 3);
    // Raft never saw them: a vote for term 1,000 would have moved it there.
    assert!(term(&b, 0) < 1_000 && term(&b, 0) >= before);

    // The same message in the right envelope reaches Raft, which answers in `b`'s name.
    let reply = client.vote(vote(b_id, other, me)).await.expect("admitted");
    let reply = reply.into_inner();
    assert_eq!((reply.cluster_id, reply.from, reply.to), (b_id, me, other));

    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_share_their_clusters_id_and_keep_it_and_a_joiner_learns_it() {
    let mut a = Cluster::start(3).await;
    let b = Cluster::start(3).await;
    let a_id = a.member(0).cluster_id().expect("a has a cluster id");
    // Headers show the id each member derived when it applied the first entry.
    a.converge().await;
    for i in 0..3 {
        assert_eq!(a.member(i).cluster_id(), Some(a_id));
        // What etcd clients see in every response header is the same id.
        assert_eq!(a.store(i).header().cluster_id, a_id);
        // Same names, different clusters: no member id in common.
        assert_ne!(a.member(i).id, b.member(i).id);
    }
    assert_ne!(b.member(0).cluster_id(), Some(a_id));

    let joined = a.join_new_member().await;
    assert_eq!(a.member(joined).cluster_id(), Some(a_id));
    let joined_id = a.member(joined).id;
    a.converge().await;
    assert_eq!(a.store(joined).header().cluster_id, a_id);

    for i in [0, joined] {
        let id = a.member(i).id;
        a.stop(i).await;
        a.restart(i).await;
        assert_eq!((a.member(i).id, a.member(i).cluster_id()), (id, Some(a_id)));
    }
    assert_eq!(a.member(joined).id, joined_id);
    put(&a, joined, "after-restart").await;

    a.shutdown().await;
    b.shutdown().await;
}
