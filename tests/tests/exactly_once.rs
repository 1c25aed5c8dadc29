//! One client request, at most one application — with real processes, through the etcd API
//! and the Rudder API, while the leader is killed (`kill -9`) and paused (SIGSTOP).
//!
//! Each run writes values no one writes twice, then reads every member's history with a
//! watch from revision 1 and checks it against what the clients heard
//! (`rudder_chaos::check::once`): an acknowledged value exactly once at its revision, a
//! refused one nowhere, an unknown one at most once; every member the same history and hash.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rudder_chaos::check::once::{check, Answer, Seen};
use rudder_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use rudder_proto::etcdserverpb::request_op::Request as Op;
use rudder_proto::etcdserverpb::{
    Compare, HashKvRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use rudder_tests::faults::{inject_faults, leader};
use rudder_tests::{kv, maintenance, rudder_binary_beside_tests, ProcessCluster};

type Answers = Arc<Mutex<BTreeMap<String, Answer>>>;

const KEYS: usize = 5;
const CLIENTS: usize = 8;

#[derive(Clone, Copy)]
enum Workload {
    /// Plain puts.
    Put,
    /// Read the key's mod revision, then "if unchanged, put": a write that, applied twice,
    /// fails its own compare the second time.
    CompareAndSwap,
}

/// One client: unique values `c<client>-<n>` onto `once/k<0..KEYS>` until `stop`; every
/// answer recorded. On an error it moves to the next member.
async fn client(
    id: usize,
    endpoints: Vec<String>,
    workload: Workload,
    answers: Answers,
    stop: Arc<AtomicBool>,
) {
    let mut target = id % endpoints.len();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("once/k{}", (id * 7 + n * 3) % KEYS);
        let value = format!("c{id}-{n}");
        n += 1;
        let answer = match kv(&endpoints[target]).await {
            Ok(mut client) => match workload {
                Workload::Put => put(&mut client, &key, &value).await,
                Workload::CompareAndSwap => swap(&mut client, &key, &value).await,
            },
            Err(_) => Err(()),
        };
        let answer = answer.unwrap_or_else(|()| {
            target = (target + 1) % endpoints.len();
            Answer::Unknown
        });
        let failed = answer == Answer::Unknown;
        answers.lock().unwrap().insert(value, answer);
        if failed {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

type Kv = rudder_proto::etcdserverpb::kv_client::KvClient<tonic::transport::Channel>;

async fn put(client: &mut Kv, key: &str, value: &str) -> Result<Answer, ()> {
    let request = PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    };
    let response = client.put(request).await.map_err(|_| ())?.into_inner();
    let revision = response.header.ok_or(())?.revision;
    Ok(Answer::Applied { revision })
}

async fn swap(client: &mut Kv, key: &str, value: &str) -> Result<Answer, ()> {
    let read = RangeRequest {
        key: key.into(),
        ..Default::default()
    };
    let current = client.range(read).await.map_err(|_| ())?.into_inner();
    let mod_revision = current.kvs.first().map_or(0, |kv| kv.mod_revision);
    let request = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal.into(),
            target: CompareTarget::Mod.into(),
            key: key.into(),
            range_end: Vec::new(),
            target_union: Some(TargetUnion::ModRevision(mod_revision)),
        }],
        success: vec![RequestOp {
            request: Some(Op::RequestPut(PutRequest {
                key: key.into(),
                value: value.into(),
                ..Default::default()
            })),
        }],
        failure: Vec::new(),
    };
    let response = client.txn(request).await.map_err(|_| ())?.into_inner();
    if !response.succeeded {
        return Ok(Answer::NotApplied);
    }
    let revision = response.header.ok_or(())?.revision;
    Ok(Answer::Applied { revision })
}

/// Every change under `once/` from revision 1 to `last`, as `member` has them (the
/// workload only puts).
async fn history(addr: &str, last: i64) -> Vec<Seen> {
    let changes = rudder_chaos::history::changes(addr, "once/", last)
        .await
        .expect("the watch delivers the whole history in time");
    rudder_chaos::check::once::puts_of(changes)
}

/// Where every member has caught up to, once they all answer: the store's revision, and
/// the revision of the last write under `once/`. The two differ: the masters' own writes
/// (their leader leases, renewed every few seconds) go on after the workload stops.
async fn settled_revision(cluster: &ProcessCluster) -> (i64, i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut revisions = Vec::new();
        for member in &cluster.members {
            // Linearizable: the member catches up to the leader's commit index first. The
            // workload's keys are only ever put, so the newest of them is its last write.
            let read = RangeRequest {
                key: b"once/".to_vec(),
                range_end: b"once0".to_vec(),
                keys_only: true,
                ..Default::default()
            };
            let answered = async { kv(&member.client_addr).await.ok()?.range(read).await.ok() };
            if let Some(response) = answered.await {
                let response = response.into_inner();
                let last_write = response.kvs.iter().map(|kv| kv.mod_revision).max();
                revisions.push((response.header.unwrap().revision, last_write.unwrap_or(0)));
            }
        }
        if revisions.len() == cluster.members.len() && revisions.windows(2).all(|w| w[0] == w[1]) {
            return revisions[0];
        }
        assert!(
            Instant::now() < deadline,
            "members never agreed on a revision: {revisions:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn run(workload: Workload, seconds: u64) {
    let mut cluster = ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 3, &[])
        .expect("three members start");
    let endpoints = cluster.endpoints();
    let answers: Answers = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (endpoints, answers, stop) = (endpoints.clone(), answers.clone(), stop.clone());
            tokio::spawn(client(id, endpoints, workload, answers, stop))
        })
        .collect();
    let faults = inject_faults(&mut cluster, Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }

    let (last, last_write) = settled_revision(&cluster).await;
    let answers = answers.lock().unwrap().clone();
    let count = |wanted: fn(&Answer) -> bool| answers.values().filter(|a| wanted(a)).count();
    let applied = count(|a| matches!(a, Answer::Applied { .. }));
    println!(
        "{} writes: {applied} acknowledged, {} refused, {} unknown; {faults:?}; last revision {last}, last write {last_write}",
        answers.len(),
        count(|a| *a == Answer::NotApplied),
        count(|a| *a == Answer::Unknown),
    );
    assert!(
        applied > 100,
        "the load made progress: {applied} acknowledged"
    );

    let mut histories = Vec::new();
    for member in &cluster.members {
        let seen = history(&member.client_addr, last_write).await;
        let violations = check(&answers, &seen);
        assert!(
            violations.is_empty(),
            "{}: {} violations, the first: {:?}",
            member.name,
            violations.len(),
            &violations[..violations.len().min(10)]
        );
        histories.push(seen);
    }
    assert!(
        histories.windows(2).all(|w| w[0] == w[1]),
        "every member has the same history"
    );
    let mut hashes = Vec::new();
    for member in &cluster.members {
        let hash = maintenance(&member.client_addr)
            .await
            .unwrap()
            .hash_kv(HashKvRequest { revision: last })
            .await
            .unwrap()
            .into_inner();
        hashes.push(hash.hash);
    }
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "members' HashKV agree: {hashes:?}"
    );
    // Most of the scheduled faults happened (a restart under load can take a second, and a
    // round with no leader to find is skipped).
    let (scheduled_kills, scheduled_pauses) = (seconds as usize / 4, seconds as usize / 7);
    assert!(
        faults.kills * 3 >= scheduled_kills * 2 && faults.pauses * 3 >= scheduled_pauses * 2,
        "the run exercised its faults: {faults:?} of {scheduled_kills} kills and \
         {scheduled_pauses} pauses scheduled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn puts_under_leader_kills_and_pauses_are_applied_exactly_once() {
    run(Workload::Put, 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compare_and_swaps_under_leader_kills_and_pauses_are_applied_exactly_once() {
    run(Workload::CompareAndSwap, 60).await;
}

/// What a create through the Rudder API was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Created {
    /// Created, with this uid.
    Yes(String),
    /// Refused as a duplicate or conflict: wrong, since every name is new.
    Refused(String),
    /// "May or may not have been applied", or no master answered.
    Unknown(String),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creates_through_the_api_under_leader_kills_are_answered_and_applied_once() {
    use rudder_proto::client::ApiClient;
    const CREATES: usize = 2_000;
    const WORKERS: usize = 8;
    let mut cluster = ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 3, &[])
        .expect("three members start");
    let endpoints = cluster.endpoints();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let answers: Arc<Mutex<BTreeMap<String, Created>>> = Arc::default();
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            // One client per worker, as separate programs would have.
            let client = ApiClient::new(endpoints.clone());
            let (next, answers) = (next.clone(), answers.clone());
            tokio::spawn(async move {
                // Paced (8 workers × 12.5/s = 100 creates/s), so that the 2,000 creates
                // span about 20 s of leader kills instead of 3 s without one.
                let mut pace = tokio::time::interval(Duration::from_millis(80));
                loop {
                    pace.tick().await;
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= CREATES {
                        return;
                    }
                    let name = format!("once-{n}");
                    let object = serde_json::json!({
                        "apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name}, "data": {"n": n.to_string()},
                    });
                    let answer = match client.create_object("configmaps", "default", &object).await
                    {
                        Ok(created) => Created::Yes(created["metadata"]["uid"].to_string()),
                        Err(error) if ["AlreadyExists", "Conflict"].contains(&error.reason()) => {
                            Created::Refused(error.to_string())
                        }
                        Err(error) => Created::Unknown(error.to_string()),
                    };
                    answers.lock().unwrap().insert(name, answer);
                }
            })
        })
        .collect();
    let mut kills = 0;
    let start = Instant::now();
    let mut next_kill = Duration::from_secs(4);
    while !workers.iter().all(|w| w.is_finished()) {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the creates finish"
        );
        if start.elapsed() >= next_kill {
            next_kill += Duration::from_secs(4);
            if let Some(victim) = leader(&cluster, None).await {
                cluster.members[victim].kill();
                kills += 1;
                cluster.members[victim].restart().await.unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let answers = answers.lock().unwrap().clone();
    let refused: Vec<_> = answers
        .iter()
        .filter(|(_, a)| matches!(a, Created::Refused(_)))
        .collect();
    let unknown: Vec<_> = answers
        .iter()
        .filter(|(_, a)| matches!(a, Created::Unknown(_)))
        .collect();
    println!(
        "{CREATES} creates in {:?} with {kills} leader kills: {} unknown {:?}",
        start.elapsed(),
        unknown.len(),
        &unknown[..unknown.len().min(5)]
    );
    assert!(kills >= 3, "the run killed leaders: {kills}");
    assert!(
        refused.is_empty(),
        "no create refused by its own earlier application: {refused:?}"
    );
    assert!(
        unknown.len() * 100 <= CREATES,
        "at most 1% answered 'may or may not': {} ({:?})",
        unknown.len(),
        &unknown[..unknown.len().min(5)]
    );

    let client = ApiClient::new(cluster.endpoints());
    for (name, answer) in &answers {
        let stored = client.get_object("configmaps", "default", name).await;
        match (answer, stored) {
            (Created::Yes(uid), Ok(object)) => assert_eq!(
                &object["metadata"]["uid"].to_string(),
                uid,
                "{name}: the object answered is the object stored"
            ),
            (Created::Yes(_), Err(error)) => panic!("{name} was answered Created: {error}"),
            _ => {}
        }
    }
}
