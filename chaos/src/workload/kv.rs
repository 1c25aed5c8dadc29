//! The key-value workload: clients put unique values, read (etcd's default, linearizable)
//! and compare-and-swap from the value they last read, on a few keys, through the etcd API;
//! every operation recorded with when it was sent and when (if ever) it was answered, as
//! [`crate::check::linear`] takes it. A client that hears nothing moves to the next member.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rudder_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use rudder_proto::etcdserverpb::request_op::Request as TxnOp;
use rudder_proto::etcdserverpb::{Compare, PutRequest, RangeRequest, RequestOp, TxnRequest};

use crate::check::linear::{Op, Operation};
use crate::check::once::Answer;
use crate::client::kv;
use crate::live::Live;

type Kv = rudder_proto::etcdserverpb::kv_client::KvClient<tonic::transport::Channel>;
type History = Arc<Mutex<Vec<Operation>>>;
type Writes = Arc<Mutex<BTreeMap<String, Answer>>>;

/// What the workload's clients did.
#[derive(Debug, Clone, Default)]
pub struct KvHistory {
    /// Every operation, for [`crate::check::linear`].
    pub operations: Vec<Operation>,
    /// What each write's client was told, by value, for [`crate::check::once`].
    pub writes: BTreeMap<String, Answer>,
}

/// The workload's shape.
#[derive(Debug, Clone)]
pub struct KvWorkload {
    pub clients: u32,
    /// Keys `<prefix>k0 ..`.
    pub keys: usize,
    pub prefix: String,
    /// Each client's choices follow from this and its number.
    pub seed: u64,
    /// Counts of operations answered and not, as they happen.
    pub live: Arc<Live>,
}

impl KvWorkload {
    /// Runs the clients against `endpoints` until `stop`; every operation of every client.
    pub async fn run(&self, endpoints: Vec<String>, stop: Arc<AtomicBool>) -> KvHistory {
        self.run_from(endpoints, stop, Instant::now()).await
    }

    /// [`KvWorkload::run`], with operation times counted from `start` (a chaos run's, so
    /// they line up with its faults).
    pub async fn run_from(
        &self,
        endpoints: Vec<String>,
        stop: Arc<AtomicBool>,
        start: Instant,
    ) -> KvHistory {
        let history: History = Arc::default();
        let writes: Writes = Arc::default();
        let clients: Vec<_> = (0..self.clients)
            .map(|id| {
                let (endpoints, stop) = (endpoints.clone(), stop.clone());
                let (history, writes) = (history.clone(), writes.clone());
                tokio::spawn(client(
                    id,
                    self.clone(),
                    endpoints,
                    start,
                    history,
                    writes,
                    stop,
                ))
            })
            .collect();
        for client in clients {
            // A client that panicked loses only its own operations' record: say so.
            if let Err(error) = client.await {
                eprintln!("a workload client ended: {error}");
            }
        }
        let operations = history.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let writes = writes.lock().unwrap_or_else(|p| p.into_inner()).clone();
        KvHistory { operations, writes }
    }
}

/// How long a client waits for one answer before it moves to the next member. Shorter than
/// the least quiet time a chaos run leaves after a fault ([`crate::schedule::MIN_GAP`]): a
/// proposal that a deposed leader dropped is never answered by etcd before its own request
/// timeout (5 s and more), and a client still waiting on one when the cluster has long
/// recovered would make the run look stalled.
pub const ATTEMPT_LIMIT: Duration = Duration::from_millis(800);
const _: () = assert!(ATTEMPT_LIMIT.as_millis() < crate::schedule::MIN_GAP.as_millis());

/// What an attempt asked, and what it heard with the revision its answer carried (`None`:
/// no answer).
async fn attempt(client: &mut Kv, key: &str, asked: &Op) -> Option<(Op, i64)> {
    let call = async {
        match asked {
            Op::Put { value } => {
                let request = PutRequest {
                    key: key.into(),
                    value: value.clone().into_bytes(),
                    ..Default::default()
                };
                let response = client.put(request).await.ok()?.into_inner();
                Some((asked.clone(), revision(response.header)))
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
                Some((Op::Get { seen }, revision(response.header)))
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
                let swapped = Op::Cas {
                    expected: expected.clone(),
                    new: new.clone(),
                    swapped: response.succeeded,
                };
                Some((swapped, revision(response.header)))
            }
            Op::Delete => None,
        }
    };
    tokio::time::timeout(ATTEMPT_LIMIT, call)
        .await
        .ok()
        .flatten()
}

fn revision(header: Option<rudder_proto::etcdserverpb::ResponseHeader>) -> i64 {
    header.map_or(0, |header| header.revision)
}

/// What a write's client was told, by the value it wrote (each written once).
fn answer_of(asked: &Op, heard: Option<&(Op, i64)>) -> Option<(String, Answer)> {
    let value = match asked {
        Op::Put { value } => value,
        Op::Cas { new, .. } => new,
        Op::Get { .. } | Op::Delete => return None,
    };
    let answer = match heard {
        None => Answer::Unknown,
        Some((Op::Cas { swapped: false, .. }, _)) => Answer::NotApplied,
        Some((_, revision)) => Answer::Applied {
            revision: *revision,
        },
    };
    Some((value.clone(), answer))
}

/// One client until `stop`: random puts of unique values, reads, and swaps from the value it
/// last read; every operation recorded with its times. On no answer it moves to the next
/// member.
async fn client(
    id: u32,
    workload: KvWorkload,
    endpoints: Vec<String>,
    start: Instant,
    history: History,
    writes: Writes,
    stop: Arc<AtomicBool>,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(workload.seed ^ u64::from(id));
    let mut target = id as usize % endpoints.len();
    let mut last_read: Option<String> = None;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let key = format!("{}k{}", workload.prefix, rng.random_range(0..workload.keys));
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
        if let Some((Op::Get { seen }, _)) = &heard {
            last_read = seen.clone();
        }
        if let Some((value, answer)) = answer_of(&asked, heard.as_ref()) {
            writes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(value, answer);
        }
        if heard.is_none() {
            target = (target + 1) % endpoints.len();
        }
        history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Operation {
                client: id,
                key,
                invoked,
                completed,
                op: heard.map_or(asked, |(op, _)| op),
            });
        let counted = match completed {
            Some(_) => &workload.live.answered,
            None => &workload.live.unanswered,
        };
        counted.fetch_add(1, Ordering::Relaxed);
        if completed.is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
