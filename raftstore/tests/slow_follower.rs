//! Followers slower to answer an AppendEntries than openraft's timeout (one heartbeat
//! interval) still let every write commit, and no election follows (`append_sender.rs`).
//! Failpoints are global to the process: this binary holds one test.

use std::time::{Duration, Instant};

use rudder_raftstore::kv::PutRequest;
use rudder_raftstore::test_support::{raft_options, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_four_heartbeats_slow_still_commit_every_write_without_an_election() {
    let cluster = Cluster::start(3).await;
    // (A candidate of the first elections may still campaign until all follow one leader.)
    let leader = cluster.settled_leader().await;
    let store = cluster.store(leader);
    let term_before = store.raft().metrics().borrow().current_term;
    let slow = raft_options().heartbeat_interval * 4;
    rudder_proto::failpoints::configure(
        "append-entries-slow",
        &format!("return({})", slow.as_millis()),
    )
    .unwrap();

    let mut took = Vec::new();
    for i in 0..10 {
        let started = Instant::now();
        let put = store.put(PutRequest {
            key: format!("slow/{i}").into(),
            value: b"v".to_vec().into(),
            ..Default::default()
        });
        // Before the fix no batch was ever answered in time: every put timed out.
        tokio::time::timeout(Duration::from_secs(5), put)
            .await
            .unwrap_or_else(|_| panic!("put {i} did not commit within 5 s"))
            .unwrap_or_else(|error| panic!("put {i}: {error}"));
        took.push(started.elapsed());
    }
    rudder_proto::failpoints::remove("append-entries-slow");

    // Heartbeats are not held behind a slow batch: the followers never lost the leader.
    let term_after = store.raft().metrics().borrow().current_term;
    let counts: Vec<_> = (0..3)
        .map(|i| (i == leader, cluster.member(i).elections()))
        .collect();
    assert_eq!(term_before, term_after, "an election happened: {counts:?}");
    // Each write waits for a slow answer (the failpoint acted), and typically for one, not
    // for many: the median, not the slowest, so that one put delayed by a loaded machine
    // (the whole suite runs beside this test) does not decide.
    took.sort();
    let (fastest, median) = (took[0], took[took.len() / 2]);
    assert!(
        fastest >= slow && median < slow * 2,
        "puts took {took:?} with answers {slow:?} late"
    );
    cluster.shutdown().await;
}
