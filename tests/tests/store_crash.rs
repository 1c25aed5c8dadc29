//! Crash safety of the store with real processes: `kill -9` of the leader during a write load.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rudder_proto::etcdserverpb::{HashKvRequest, PutRequest, RangeRequest, StatusRequest};
use rudder_tests::{kv, maintenance, rudder_binary_beside_tests, ProcessCluster};

type Acked = Arc<Mutex<BTreeMap<String, String>>>;

/// Writes `load/<writer>/<n>` until told to stop, trying each endpoint in turn on failure,
/// and records every acknowledged write.
async fn writer(
    id: usize,
    endpoints: Vec<String>,
    acked: Acked,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut target = id % endpoints.len();
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 5_000 {
        let key = format!("load/{id}/{n}");
        let value = format!("v{n}");
        let request = PutRequest {
            key: key.clone().into(),
            value: value.clone().into(),
            ..Default::default()
        };
        let result = match kv(&endpoints[target]).await {
            Ok(mut client) => client
                .put(request)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) => {
                acked.lock().unwrap().insert(key, value);
                n += 1;
            }
            Err(_) => {
                target = (target + 1) % endpoints.len();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Waits (up to 15 s) until at least `count` writes were acknowledged.
async fn wait_for_acked(acked: &Acked, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while acked.lock().unwrap().len() < count {
        assert!(
            Instant::now() < deadline,
            "fewer than {count} writes acknowledged in 15 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_under_load_loses_no_acknowledged_write() {
    let mut cluster = ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 3, &[])
        .expect("three members start");
    let endpoints = cluster.endpoints();
    let acked: Acked = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|id| tokio::spawn(writer(id, endpoints.clone(), acked.clone(), stop.clone())))
        .collect();

    wait_for_acked(&acked, 50).await; // the load is under way before the crash
    let leader = cluster.leader().await.unwrap();
    let before_kill = acked.lock().unwrap().len();
    assert!(before_kill > 0, "writes were acknowledged before the crash");
    cluster.members[leader].kill();
    let killed_at = Instant::now();
    while acked.lock().unwrap().len() <= before_kill + 4 {
        assert!(
            killed_at.elapsed() < Duration::from_secs(15),
            "writes resume after the leader is killed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "writes resumed {:?} after kill -9 of the leader",
        killed_at.elapsed()
    );
    let new_leader = cluster.leader().await.unwrap();
    assert_ne!(new_leader, leader, "a new leader was elected");
    let after_kill = acked.lock().unwrap().len();
    wait_for_acked(&acked, after_kill + 50).await; // and it goes on under the new leader
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }

    cluster.members[leader]
        .restart()
        .await
        .expect("the killed member restarts");
    let acked = acked.lock().unwrap().clone();
    let leader_addr = cluster.members[cluster.leader().await.unwrap()]
        .client_addr
        .clone();
    let revision = maintenance(&leader_addr)
        .await
        .unwrap()
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap()
        .revision;

    let mut hashes = Vec::new();
    for member in &cluster.members {
        // A linearizable read makes the member catch up to the leader's commit index.
        let mut client = kv(&member.client_addr).await.unwrap();
        let all = RangeRequest {
            key: b"load/".to_vec(),
            range_end: b"load0".to_vec(),
            ..Default::default()
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let stored: BTreeMap<String, String> = loop {
            match client.range(all.clone()).await {
                Ok(response) => {
                    break response
                        .into_inner()
                        .kvs
                        .into_iter()
                        .map(|kv| {
                            (
                                String::from_utf8(kv.key).unwrap(),
                                String::from_utf8(kv.value).unwrap(),
                            )
                        })
                        .collect()
                }
                Err(error) if Instant::now() < deadline => {
                    eprintln!("{} not ready yet: {error}", member.name);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => panic!("{} never answered: {error}", member.name),
            }
        };
        for (key, value) in &acked {
            assert_eq!(
                stored.get(key),
                Some(value),
                "{}: acknowledged write {key} is present",
                member.name
            );
        }
        let hash = maintenance(&member.client_addr)
            .await
            .unwrap()
            .hash_kv(HashKvRequest { revision })
            .await
            .unwrap()
            .into_inner();
        hashes.push((member.name.clone(), hash.hash, hash.hash_revision));
    }
    assert!(
        hashes.windows(2).all(|pair| pair[0].1 == pair[1].1),
        "all members hash alike: {hashes:?}"
    );
    println!(
        "{} acknowledged writes survived; hashes {hashes:?}",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_a_follower_waits_only_for_an_election_when_the_leader_is_stopped() {
    let cluster = ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 3, &[])
        .expect("three members start");
    let leader = cluster.leader().await.unwrap();
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let mut client = kv(&cluster.endpoints()[follower]).await.unwrap();
    let put = |key: &str| PutRequest {
        key: key.as_bytes().to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    // The follower forwards writes to the leader: the connection is open.
    client
        .put(put("before"))
        .await
        .expect("a write through the follower");

    // SIGSTOP: the leader's sockets still accept, nothing answers. The follower's forward
    // must give up once the others elect a new leader, and go there, instead of waiting
    // out its 7 s request timeout and failing.
    cluster.members[leader].pause();
    let stopped_at = Instant::now();
    let written = client.put(put("during")).await;
    let took = stopped_at.elapsed();
    cluster.members[leader].resume();
    assert!(written.is_ok(), "{written:?} after {took:?}");
    println!("a write through a follower took {took:?} with its leader stopped");
    assert!(
        took < Duration::from_secs(5),
        "the write waited {took:?} for a stopped leader"
    );
}
