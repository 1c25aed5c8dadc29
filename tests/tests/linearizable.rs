//! The store is linearizable through leader kills and pauses — with real processes,
//! through the etcd API, checked by `rudder_chaos::check::linear` (the search the chaos
//! runner uses): clients put, read and compare-and-swap a few keys, each operation recorded
//! with when it was sent and when (if ever) it was answered; then one order of them all must
//! explain every answer. Reads are etcd's default, linearizable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rudder_chaos::check::linear::{check, Op, Operation};
use rudder_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use rudder_proto::etcdserverpb::request_op::Request as TxnOp;
use rudder_proto::etcdserverpb::{Compare, PutRequest, RangeRequest, RequestOp, TxnRequest};
use rudder_tests::faults::inject_faults;
use rudder_tests::{kv, rudder_binary_beside_tests, ProcessCluster};

const KEYS: usize = 3;
const CLIENTS: u32 = 6;

type Kv = rudder_proto::etcdserverpb::kv_client::KvClient<tonic::transport::Channel>;
type History = Arc<Mutex<Vec<Operation>>>;

/// What an attempt asked, and what it heard (`None`: no answer).
async fn attempt(client: &mut Kv, key: &str, asked: &Op) -> Option<Op> {
    let limit = Duration::from_secs(5);
    let call = async {
        match asked {
            Op::Put { value } => {
                let request = PutRequest {
                    key: key.into(),
                    value: value.clone().into_bytes(),
                    ..Default::default()
                };
                client.put(request).await.ok()?;
                Some(asked.clone())
            }
            Op::Get { .. } => {
                let request = RangeRequest {
                    key: key.into(),
                    ..Default::default()
                };
                let response = client.range(request).await.ok()?.into_inner();
                let seen = response
                    .kvs
                    .first()
                    .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
                Some(Op::Get { seen })
            }
            Op::Cas { expected, new, .. } => {
                let compare = match expected {
                    Some(value) => Compare {
                        result: CompareResult::Equal.into(),
                        target: CompareTarget::Value.into(),
                        key: key.into(),
                        range_end: Vec::new(),
                        target_union: Some(TargetUnion::Value(value.clone().into_bytes())),
                    },
                    None => Compare {
                        result: CompareResult::Equal.into(),
                        target: CompareTarget::Create.into(),
                        key: key.into(),
                        range_end: Vec::new(),
                        target_union: Some(TargetUnion::CreateRevision(0)),
                    },
                };
                let request = TxnRequest {
                    compare: vec![compare],
                    success: vec![RequestOp {
                        request: Some(TxnOp::RequestPut(PutRequest {
                            key: key.into(),
                            value: new.clone().into_bytes(),
                            ..Default::default()
                        })),
                    }],
                    failure: Vec::new(),
                };
                let response = client.txn(request).await.ok()?.into_inner();
                Some(Op::Cas {
                    expected: expected.clone(),
                    new: new.clone(),
                    swapped: response.succeeded,
                })
            }
            Op::Delete => None,
        }
    };
    tokio::time::timeout(limit, call).await.ok().flatten()
}

/// One client until `stop`: random puts of unique values, reads, and swaps from the value it
/// last read; every operation recorded with its times. On no answer it moves to the next
/// member.
async fn client(
    id: u32,
    endpoints: Vec<String>,
    start: Instant,
    history: History,
    stop: Arc<AtomicBool>,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from(id));
    let mut target = id as usize % endpoints.len();
    let mut last_read: Option<String> = None;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let key = format!("lin/k{}", rng.random_range(0..KEYS));
        let asked = match rng.random_range(0..3) {
            0 => Op::Put {
                value: format!("c{id}-{n}"),
            },
            1 => Op::Get { seen: None },
            _ => Op::Cas {
                expected: last_read.clone(),
                new: format!("c{id}-{n}"),
                swapped: false,
            },
        };
        let invoked = start.elapsed().as_nanos() as u64;
        let heard = match kv(&endpoints[target]).await {
            Ok(mut client) => attempt(&mut client, &key, &asked).await,
            Err(_) => None,
        };
        let completed = heard.as_ref().map(|_| start.elapsed().as_nanos() as u64);
        if let Some(Op::Get { seen }) = &heard {
            last_read = seen.clone();
        }
        if heard.is_none() {
            target = (target + 1) % endpoints.len();
        }
        history.lock().unwrap().push(Operation {
            client: id,
            key,
            invoked,
            completed,
            op: heard.unwrap_or(asked),
        });
        if completed.is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn puts_reads_and_swaps_under_leader_kills_and_pauses_are_linearizable() {
    let mut cluster = ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 3, &[])
        .expect("three members start");
    let endpoints = cluster.endpoints();
    let start = Instant::now();
    let history: History = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (endpoints, history, stop) = (endpoints.clone(), history.clone(), stop.clone());
            tokio::spawn(client(id, endpoints, start, history, stop))
        })
        .collect();
    let faults = inject_faults(&mut cluster, Duration::from_secs(20)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let history = history.lock().unwrap().clone();
    let answered = history.iter().filter(|op| op.completed.is_some()).count();
    let unanswered = history.len() - answered;
    let swapped = history
        .iter()
        .filter(|op| matches!(op.op, Op::Cas { swapped: true, .. }) && op.completed.is_some())
        .count();
    println!(
        "{} operations: {answered} answered ({swapped} swaps won), {unanswered} unanswered; {faults:?}",
        history.len()
    );
    assert!(
        answered > 300,
        "the load made progress: {answered} answered"
    );
    assert!(swapped > 20, "swaps succeeded too: {swapped}");
    assert!(
        faults.kills >= 3 && faults.pauses >= 1,
        "the run exercised its faults: {faults:?}"
    );
    let checked = Instant::now();
    let outcome = check(&history, Duration::from_secs(60));
    println!("checked in {:?}: {outcome:?}", checked.elapsed());
    assert!(
        outcome.violations.is_empty(),
        "not linearizable: {:#?}",
        outcome.violations
    );
    assert!(
        outcome.undecided.is_empty(),
        "undecided within the budget: {:?}",
        outcome.undecided
    );
    assert_eq!(outcome.linearizable_keys, KEYS);
}
