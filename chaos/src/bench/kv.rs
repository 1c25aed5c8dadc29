//! `rudder bench kv`: put, range, txn (CAS) and watch load over the etcd v3 API.
//!
//! `clients` tasks share `connections` HTTP/2 connections (round-robin over the endpoints);
//! each takes the next operation number from a shared counter until `total`, so the run is
//! bounded in count. Every latency is recorded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use rudder_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use rudder_proto::etcdserverpb::kv_client::KvClient;
use rudder_proto::etcdserverpb::request_op::Request;
use rudder_proto::etcdserverpb::watch_client::WatchClient;
use rudder_proto::etcdserverpb::watch_request::RequestUnion;
use rudder_proto::etcdserverpb::{
    Compare, PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest, WatchRequest,
};
use tonic::transport::Channel;

use super::stats::{summarize, Summary};
use super::BenchError;
use crate::client::{channel, stream_channel};
use rudder_proto::tls::ClientTls;

#[derive(Debug, Clone)]
pub struct KvLoad {
    pub endpoints: Vec<String>,
    pub clients: usize,
    pub connections: usize,
    pub total: u64,
    pub key_size: usize,
    pub value_size: usize,
    /// Keys are drawn from `0..key_space`.
    pub key_space: u64,
    pub sequential_keys: bool,
    pub progress: bool,
    /// TLS to the members (with a certificate in `system:masters`, which the etcd API
    /// takes); none: plaintext.
    pub tls: Option<ClientTls>,
}

#[derive(Debug, Clone, Copy)]
pub enum Workload {
    Put,
    Range {
        serializable: bool,
    },
    /// Compare-and-swap: each client updates its own key guarded by its mod revision.
    Txn,
    /// `watchers` watch one key while puts arrive at `rate` per second.
    Watch {
        watchers: usize,
        rate: u64,
    },
}

/// A key of exactly `size` bytes (at least the number itself).
fn key(n: u64, size: usize) -> Vec<u8> {
    format!("{n:0>size$}").into_bytes()
}

fn progress_bar(total: u64, enabled: bool, what: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_owned());
    bar
}

async fn connect_all(load: &KvLoad, streams: bool) -> Result<Vec<Channel>, BenchError> {
    let mut channels = Vec::new();
    for i in 0..load.connections.max(1) {
        let endpoint = &load.endpoints[i % load.endpoints.len()];
        channels.push(connect(endpoint, load.tls.as_ref(), streams).await?);
    }
    Ok(channels)
}

/// One connection to `endpoint`, over TLS with `tls`; for `streams` (watches) no request
/// time limit.
async fn connect(
    endpoint: &str,
    tls: Option<&ClientTls>,
    streams: bool,
) -> Result<Channel, BenchError> {
    let connected = match (tls, streams) {
        (None, false) => channel(endpoint).await,
        (None, true) => stream_channel(endpoint).await,
        (Some(_), _) => {
            let dial = rudder_proto::dial::Dial::master(endpoint, tls);
            let mut configured = dial
                .endpoint()
                .map_err(|reason| BenchError::Dial {
                    endpoint: endpoint.to_string(),
                    reason,
                })?
                .connect_timeout(Duration::from_millis(500))
                .tcp_nodelay(true);
            if !streams {
                configured = configured.timeout(Duration::from_secs(10));
            }
            return dial
                .connect(configured)
                .await
                .map_err(|reason| BenchError::Dial {
                    endpoint: endpoint.to_string(),
                    reason,
                });
        }
    };
    connected.map_err(|source| BenchError::Connect {
        endpoint: endpoint.to_string(),
        source,
    })
}

/// One unmeasured write per connection: connections are established, the cluster has settled
/// after its start, and the first measured request pays no set-up cost — for both stores.
/// It writes key 0 with a value of the configured size, which is the key `range` reads.
async fn warm_up(channels: &[Channel], load: &KvLoad) -> Result<(), BenchError> {
    for connection in channels {
        let mut client = KvClient::new(connection.clone());
        let put = PutRequest {
            key: key(0, load.key_size),
            value: vec![b'v'; load.value_size],
            ..Default::default()
        };
        client
            .put(put)
            .await
            .map_err(|status| BenchError::Prepare {
                what: "warming up a connection",
                status,
            })?;
    }
    Ok(())
}

pub async fn run(load: &KvLoad, workload: Workload) -> Result<Summary, BenchError> {
    if load.endpoints.is_empty() {
        return Err(BenchError::NoEndpoints);
    }
    if let Workload::Watch { watchers, rate } = workload {
        return watch(load, watchers, rate).await;
    }
    let channels = connect_all(load, false).await?;
    warm_up(&channels, load).await?;
    let name = match workload {
        Workload::Put => "put".to_string(),
        Workload::Range { serializable: true } => "range (serializable)".into(),
        Workload::Range {
            serializable: false,
        } => "range (linearizable)".into(),
        Workload::Txn => "txn (compare-and-swap)".into(),
        Workload::Watch { .. } => unreachable!("handled above"),
    };
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let bar = progress_bar(load.total, load.progress, &name);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..load.clients.max(1) {
        let client = KvClient::new(channels[c % channels.len()].clone());
        let (next, errors, bar, load) = (next.clone(), errors.clone(), bar.clone(), load.clone());
        tasks.push(tokio::spawn(async move {
            client_loop(c, client, workload, &load, &next, &errors, &bar).await
        }));
    }
    let mut latencies = Vec::with_capacity(load.total as usize);
    for task in tasks {
        latencies.extend(task.await?);
    }
    bar.finish_and_clear();
    Ok(summarize(
        &name,
        latencies,
        errors.load(Ordering::Relaxed),
        started.elapsed(),
    ))
}

async fn client_loop(
    id: usize,
    mut client: KvClient<Channel>,
    workload: Workload,
    load: &KvLoad,
    next: &AtomicU64,
    errors: &AtomicU64,
    bar: &ProgressBar,
) -> Vec<Duration> {
    let mut latencies = Vec::new();
    let value = vec![b'v'; load.value_size];
    let own_key = key(1_000_000_000 + id as u64, load.key_size);
    let mut own_revision = 0;
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= load.total {
            return latencies;
        }
        let k = if load.sequential_keys {
            n % load.key_space.max(1)
        } else {
            rand::random_range(0..load.key_space.max(1))
        };
        let started = Instant::now();
        let ok = match workload {
            Workload::Put => {
                let put = PutRequest {
                    key: key(k, load.key_size),
                    value: value.clone(),
                    ..Default::default()
                };
                client.put(put).await.is_ok()
            }
            Workload::Range { serializable } => {
                let range = RangeRequest {
                    key: key(0, load.key_size),
                    serializable,
                    ..Default::default()
                };
                client.range(range).await.is_ok()
            }
            Workload::Txn => {
                let compare = Compare {
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Mod as i32,
                    key: own_key.clone(),
                    target_union: Some(TargetUnion::ModRevision(own_revision)),
                    ..Default::default()
                };
                let put = PutRequest {
                    key: own_key.clone(),
                    value: value.clone(),
                    ..Default::default()
                };
                let txn = TxnRequest {
                    compare: vec![compare],
                    success: vec![RequestOp {
                        request: Some(Request::RequestPut(put)),
                    }],
                    failure: vec![],
                };
                match client.txn(txn).await {
                    Ok(response) => {
                        let response = response.into_inner();
                        if response.succeeded {
                            own_revision =
                                response.header.map(|h| h.revision).unwrap_or(own_revision);
                        }
                        response.succeeded
                    }
                    Err(_) => false,
                }
            }
            Workload::Watch { .. } => unreachable!("watch has its own loop"),
        };
        if ok {
            latencies.push(started.elapsed());
        } else {
            errors.fetch_add(1, Ordering::Relaxed);
        }
        bar.inc(1);
    }
}

/// Watch fan-out: every put carries its send time; every watcher measures delivery latency.
async fn watch(load: &KvLoad, watchers: usize, rate: u64) -> Result<Summary, BenchError> {
    let base = Instant::now();
    let watch_key = key(42, load.key_size);
    let mut streams = Vec::new();
    let connections = connect_all(load, true).await?;
    let bar = progress_bar(load.total * watchers as u64, load.progress, "watch events");
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(watchers.max(1));
    for w in 0..watchers.max(1) {
        let mut client = WatchClient::new(connections[w % connections.len()].clone());
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: watch_key.clone(),
                ..Default::default()
            })),
        };
        let (total, bar, ready) = (load.total, bar.clone(), ready_tx.clone());
        streams.push(tokio::spawn(async move {
            let (sender, receiver) = tokio::sync::mpsc::channel(1);
            let _ = sender.send(create).await;
            let mut latencies = Vec::new();
            let Ok(response) = client.watch(tokio_stream_of(receiver)).await else {
                return latencies;
            };
            let mut responses = response.into_inner();
            while let Ok(Some(message)) = responses.message().await {
                if message.created {
                    let _ = ready.send(()).await;
                }
                for event in message.events {
                    let value = event.kv.map(|kv| kv.value).unwrap_or_default();
                    let sent = value
                        .get(..8)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_le_bytes)
                        .unwrap_or(0);
                    latencies.push(base.elapsed().saturating_sub(Duration::from_nanos(sent)));
                    bar.inc(1);
                }
                if latencies.len() as u64 >= total {
                    break;
                }
            }
            drop(sender);
            latencies
        }));
    }
    drop(ready_tx);
    for _ in 0..watchers.max(1) {
        if ready_rx.recv().await.is_none() {
            return Err(BenchError::Stalled(
                "a watch stream closed before it was created",
            ));
        }
    }
    let mut putter = KvClient::new(connections[0].clone());
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let started = Instant::now();
    let mut put_errors = 0;
    for n in 0..load.total {
        tokio::time::sleep_until((started + interval * n as u32).into()).await;
        let mut value = (base.elapsed().as_nanos() as u64).to_le_bytes().to_vec();
        value.resize(load.value_size.max(8), b'v');
        let put = PutRequest {
            key: watch_key.clone(),
            value,
            ..Default::default()
        };
        if putter.put(put).await.is_err() {
            put_errors += 1;
        }
    }
    let mut latencies = Vec::new();
    for stream in streams {
        match tokio::time::timeout(Duration::from_secs(30), stream).await {
            Ok(Ok(received)) => latencies.extend(received),
            _ => {
                return Err(BenchError::Stalled(
                    "a watcher did not receive every event within 30 s",
                ))
            }
        }
    }
    bar.finish_and_clear();
    let name = format!("watch ({watchers} watchers, {rate} puts/s)");
    Ok(summarize(&name, latencies, put_errors, started.elapsed()))
}

fn tokio_stream_of(
    receiver: tokio::sync::mpsc::Receiver<WatchRequest>,
) -> impl futures::Stream<Item = WatchRequest> {
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}
