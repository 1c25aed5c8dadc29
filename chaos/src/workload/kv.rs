//! The key-value workload: clients put unique values, delete, read (etcd's default,
//! linearizable), compare-and-swap from the value they last read, and put under a lease of
//! their own that they later revoke, on a few keys, through the etcd API; every operation
//! recorded with when it was sent and when (if ever) it was answered, as
//! [`crate::check::linear`] takes it. They also read serializably (from the member asked,
//! however far behind), recorded apart for [`crate::check::serializable`]. A client that
//! hears nothing moves to the next member.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rudder_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use rudder_proto::etcdserverpb::request_op::Request as TxnOp;
use rudder_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest, RangeRequest,
    RequestOp, TxnRequest,
};

use crate::check::linear::{Op, Operation};
use crate::check::once::Answer;
use crate::check::serializable::SerializableRead;
use crate::client::{absent, kv, lease};
use crate::live::Live;

type Kv = rudder_proto::etcdserverpb::kv_client::KvClient<tonic::transport::Channel>;

/// What the workload's clients did.
#[derive(Debug, Clone, Default)]
pub struct KvHistory {
    /// Every operation, for [`crate::check::linear`].
    pub operations: Vec<Operation>,
    /// What each write's client was told, by value, for [`crate::check::once`].
    pub writes: BTreeMap<String, Answer>,
    /// Every serializable read answered, for [`crate::check::serializable`].
    pub serializable: Vec<SerializableRead>,
}

/// The clients' shared record, as they fill it.
#[derive(Clone, Default)]
struct Records {
    history: Arc<Mutex<Vec<Operation>>>,
    writes: Arc<Mutex<BTreeMap<String, Answer>>>,
    serializable: Arc<Mutex<Vec<SerializableRead>>>,
}

impl Records {
    fn take(&self) -> KvHistory {
        fn taken<T: Clone>(shared: &Mutex<T>) -> T {
            shared.lock().unwrap_or_else(|p| p.into_inner()).clone()
        }
        KvHistory {
            operations: taken(&self.history),
            writes: taken(&self.writes),
            serializable: taken(&self.serializable),
        }
    }

    /// One operation of the linearizable history, and the write's answer if it wrote.
    fn operation(&self, operation: Operation, answer: Option<(String, Answer)>) {
        if let Some((value, answer)) = answer {
            let mut writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
            writes.insert(value, answer);
        }
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        history.push(operation);
    }

    fn serializable(&self, read: SerializableRead) {
        let mut reads = self.serializable.lock().unwrap_or_else(|p| p.into_inner());
        reads.push(read);
    }
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
        let records = Records::default();
        let clients: Vec<_> = (0..self.clients)
            .map(|id| {
                let (endpoints, stop) = (endpoints.clone(), stop.clone());
                tokio::spawn(client(
                    id,
                    self.clone(),
                    endpoints,
                    start,
                    records.clone(),
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
        records.take()
    }
}

/// How long a client waits for one answer before it moves to the next member. Shorter than
/// the least quiet time a chaos run leaves after a fault ([`crate::schedule::MIN_GAP`]): a
/// proposal that a deposed leader dropped is never answered by etcd before its own request
/// timeout (5 s and more), and a client still waiting on one when the cluster has long
/// recovered would make the run look stalled.
pub const ATTEMPT_LIMIT: Duration = Duration::from_millis(800);
const _: () = assert!(ATTEMPT_LIMIT.as_millis() < crate::schedule::MIN_GAP.as_millis());

/// The TTL of the workload's leases: longer than any run, so that none expires in one (an
/// expiry is a deletion no client asked for, which the register model has no room for).
const LEASE_TTL_S: i64 = 3_600;

/// What an attempt asked (a put under `lease`, when not 0), and what it heard with the
/// revision its answer carried (`None`: no answer).
async fn attempt(client: &mut Kv, key: &str, asked: &Op, lease: i64) -> Option<(Op, i64)> {
    let call = async {
        match asked {
            Op::Put { value } => {
                let request = PutRequest {
                    key: key.into(),
                    value: value.clone().into_bytes(),
                    lease,
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
                    None => absent(key.as_bytes()),
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
            Op::Delete => {
                let request = DeleteRangeRequest {
                    key: key.into(),
                    ..Default::default()
                };
                let response = client.delete_range(request).await.ok()?.into_inner();
                Some((Op::Delete, revision(response.header)))
            }
            // Through the lease API: [`revoke`].
            Op::Revoke { .. } => None,
        }
    };
    tokio::time::timeout(ATTEMPT_LIMIT, call)
        .await
        .ok()
        .flatten()
}

/// A serializable read of `key` from the member at `endpoint` (`None`: no answer).
async fn serializable_get(endpoint: &str, client: u32, key: &str) -> Option<SerializableRead> {
    let call = async {
        let request = RangeRequest {
            key: key.into(),
            serializable: true,
            ..Default::default()
        };
        let response = kv(endpoint).await.ok()?.range(request).await.ok()?;
        let response = response.into_inner();
        Some(SerializableRead {
            client,
            key: key.to_string(),
            revision: revision(response.header),
            seen: response.kvs.first().map(|kv| {
                let value = String::from_utf8_lossy(&kv.value).into_owned();
                (value, kv.mod_revision)
            }),
        })
    };
    tokio::time::timeout(ATTEMPT_LIMIT, call)
        .await
        .ok()
        .flatten()
}

/// A new lease's id (`None`: no answer).
async fn grant(endpoint: &str) -> Option<i64> {
    let call = async {
        let request = LeaseGrantRequest {
            ttl: LEASE_TTL_S,
            id: 0,
        };
        let response = lease(endpoint)
            .await
            .ok()?
            .lease_grant(request)
            .await
            .ok()?;
        Some(response.into_inner().id)
    };
    tokio::time::timeout(ATTEMPT_LIMIT, call)
        .await
        .ok()
        .flatten()
}

/// Revokes the lease `id`; whether it was answered.
async fn revoke(endpoint: &str, id: i64) -> bool {
    let call = async {
        let request = LeaseRevokeRequest { id };
        lease(endpoint).await.ok()?.lease_revoke(request).await.ok()
    };
    tokio::time::timeout(ATTEMPT_LIMIT, call)
        .await
        .ok()
        .flatten()
        .is_some()
}

fn revision(header: Option<rudder_proto::etcdserverpb::ResponseHeader>) -> i64 {
    header.map_or(0, |header| header.revision)
}

/// What a write's client was told, by the value it wrote (each written once).
fn answer_of(asked: &Op, heard: Option<&(Op, i64)>) -> Option<(String, Answer)> {
    let value = match asked {
        Op::Put { value } => value,
        Op::Cas { new, .. } => new,
        Op::Get { .. } | Op::Delete | Op::Revoke { .. } => return None,
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

/// A lease a client holds, and the one put made under it.
struct Leased {
    id: i64,
    key: String,
    value: String,
}

/// What a client does next.
enum Step {
    /// A linearizable operation on one key.
    Key(Op),
    SerializableGet,
    /// Grant a lease and put under it; or, holding one, revoke it.
    Lease,
}

/// One client until `stop`: random puts of unique values, deletes, reads (linearizable and
/// serializable), swaps from the value it last read, and puts under a lease it later
/// revokes; every operation recorded with its times. On no answer it moves to the next
/// member.
async fn client(
    id: u32,
    workload: KvWorkload,
    endpoints: Vec<String>,
    start: Instant,
    records: Records,
    stop: Arc<AtomicBool>,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(workload.seed ^ u64::from(id));
    let mut target = id as usize % endpoints.len();
    let mut last_read: Option<String> = None;
    let mut held: Option<Leased> = None;
    let mut n = 0;
    let now = || start.elapsed().as_nanos() as u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let key = format!("{}k{}", workload.prefix, rng.random_range(0..workload.keys));
        let value = format!("c{id}-{n}");
        let step = match rng.random_range(0..10) {
            0 | 1 => Step::Key(Op::Put {
                value: value.clone(),
            }),
            2 | 3 => Step::Key(Op::Get { seen: None }),
            4..=6 => Step::Key(Op::Cas {
                expected: last_read.clone(),
                new: value.clone(),
                swapped: false,
            }),
            7 => Step::Key(Op::Delete),
            8 => Step::SerializableGet,
            _ => Step::Lease,
        };
        let endpoint = &endpoints[target];
        let invoked = now();
        let answered = match step {
            Step::Key(asked) => {
                let heard = match kv(endpoint).await {
                    Ok(mut client) => attempt(&mut client, &key, &asked, 0).await,
                    Err(_) => None,
                };
                if let Some((Op::Get { seen }, _)) = &heard {
                    last_read = seen.clone();
                }
                let answered = heard.is_some();
                let operation = Operation {
                    client: id,
                    key,
                    invoked,
                    completed: answered.then(now),
                    op: heard.as_ref().map_or(asked.clone(), |(op, _)| op.clone()),
                };
                records.operation(operation, answer_of(&asked, heard.as_ref()));
                answered
            }
            Step::SerializableGet => match serializable_get(endpoint, id, &key).await {
                Some(read) => {
                    records.serializable(read);
                    true
                }
                None => false,
            },
            Step::Lease => match held.take() {
                Some(leased) => {
                    let answered = revoke(endpoint, leased.id).await;
                    let operation = Operation {
                        client: id,
                        key: leased.key,
                        invoked,
                        completed: answered.then(now),
                        op: Op::Revoke {
                            attached: leased.value,
                        },
                    };
                    records.operation(operation, None);
                    answered
                }
                None => match grant(endpoint).await {
                    // A lease nobody heard of is never used: it expires after the run.
                    None => false,
                    Some(lease_id) => {
                        let asked = Op::Put {
                            value: value.clone(),
                        };
                        let invoked = now();
                        let heard = match kv(endpoint).await {
                            Ok(mut client) => attempt(&mut client, &key, &asked, lease_id).await,
                            Err(_) => None,
                        };
                        let answered = heard.is_some();
                        // Revoked later only if the put was answered: the register model
                        // cannot say that a put under a revoked lease is refused, so a put
                        // nobody heard back from must not meet its lease's revoke (its
                        // lease outlives the run instead).
                        held = answered.then(|| Leased {
                            id: lease_id,
                            key: key.clone(),
                            value,
                        });
                        let operation = Operation {
                            client: id,
                            key,
                            invoked,
                            completed: answered.then(now),
                            op: asked.clone(),
                        };
                        records.operation(operation, answer_of(&asked, heard.as_ref()));
                        answered
                    }
                },
            },
        };
        workload.live.count(answered);
        if !answered {
            target = (target + 1) % endpoints.len();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
