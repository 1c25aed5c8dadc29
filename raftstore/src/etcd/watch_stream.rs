//! etcd's `Watch` service: one bidirectional stream carries many watches, each created,
//! cancelled and asked for progress by id. A watch from an old revision gets the history it
//! asks for in as few responses as the limits allow ([`HistoryBatch`]), as etcd sends it;
//! live events go out as they come, a revision (a transaction's events) per response.

use std::collections::HashMap;

use rudder_proto::etcdserverpb as pb;
use rudder_proto::etcdserverpb::watch_create_request::FilterType;
use rudder_proto::etcdserverpb::watch_request::RequestUnion;
use rudder_proto::etcdserverpb::watch_server::Watch;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{convert, EtcdApi, ResponseStream};
use crate::kv::{Event, KeyRange, KeyValue};
use crate::store::{Header, Store};
use crate::watch::{ProgressHandle, WatchMessage, WatchRequest, Watcher};

type Outbox = mpsc::Sender<Result<pb::WatchResponse, Status>>;

#[tonic::async_trait]
impl Watch for EtcdApi {
    type WatchStream = ResponseStream<pb::WatchResponse>;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (outbox, receiver) = mpsc::channel(256);
        let session = Session {
            store: self.store.clone(),
            outbox,
            watches: HashMap::new(),
            next_id: 0,
        };
        tokio::spawn(session.run(request.into_inner()));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// The watches of one client stream.
struct Session {
    store: Store,
    outbox: Outbox,
    watches: HashMap<i64, (JoinHandle<()>, ProgressHandle)>,
    next_id: i64,
}

impl Session {
    async fn run(mut self, mut requests: Streaming<pb::WatchRequest>) {
        while let Ok(Some(request)) = requests.message().await {
            let reply = match request.request_union {
                Some(RequestUnion::CreateRequest(create)) => self.create(create),
                Some(RequestUnion::CancelRequest(cancel)) => self.cancel(cancel.watch_id),
                Some(RequestUnion::ProgressRequest(_)) => {
                    self.watches
                        .values()
                        .for_each(|(_, progress)| progress.request());
                    None
                }
                None => None,
            };
            if let Some(reply) = reply {
                if self.outbox.send(Ok(reply)).await.is_err() {
                    break;
                }
            }
            self.watches.retain(|_, (task, _)| !task.is_finished());
        }
        for (task, _) in self.watches.into_values() {
            task.abort();
        }
    }

    fn response(&self, watch_id: i64) -> pb::WatchResponse {
        pb::WatchResponse {
            header: convert::header(self.store.header()),
            watch_id,
            ..Default::default()
        }
    }

    fn create(&mut self, create: pb::WatchCreateRequest) -> Option<pb::WatchResponse> {
        let id = if create.watch_id != 0 {
            create.watch_id
        } else {
            self.next_free_id()
        };
        let refuse = |reason: String| pb::WatchResponse {
            created: true,
            canceled: true,
            cancel_reason: reason,
            ..self.response(id)
        };
        if self.watches.contains_key(&id) {
            return Some(refuse(format!(
                "etcdserver: watch id {id} is already in use on this stream"
            )));
        }
        let limit = self.store.limits().max_watchers_per_stream;
        if self.watches.len() >= limit {
            return Some(refuse(format!(
                "etcdserver: too many watches on this stream (limit {limit}, --max-watchers-per-stream): open another stream"
            )));
        }
        let request = WatchRequest {
            range: KeyRange {
                key: create.key,
                range_end: create.range_end,
            },
            start_revision: create.start_revision.max(0),
            prev_kv: create.prev_kv,
            progress_notify: create.progress_notify,
            filter_puts: create.filters.contains(&(FilterType::Noput as i32)),
            filter_deletes: create.filters.contains(&(FilterType::Nodelete as i32)),
            mark_caught_up: true,
        };
        tracing::debug!(
            id,
            start_revision = request.start_revision,
            revision = self.store.header().revision,
            "etcd watch created"
        );
        let watcher = match self.store.watch(request) {
            Ok(watcher) => watcher,
            Err(error) => return Some(refuse(format!("etcdserver: {error}"))),
        };
        let created = pb::WatchResponse {
            created: true,
            ..self.response(id)
        };
        // The "created" reply must precede the watch's first event: send it from the task.
        let progress = watcher.progress_handle();
        let task = tokio::spawn(pump(
            id,
            watcher,
            self.store.clone(),
            self.outbox.clone(),
            created,
        ));
        self.watches.insert(id, (task, progress));
        None
    }

    fn next_free_id(&mut self) -> i64 {
        while self.watches.contains_key(&self.next_id) {
            self.next_id += 1;
        }
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn cancel(&mut self, id: i64) -> Option<pb::WatchResponse> {
        match self.watches.remove(&id) {
            Some((task, _)) => {
                task.abort();
                Some(pb::WatchResponse {
                    canceled: true,
                    ..self.response(id)
                })
            }
            None => Some(pb::WatchResponse {
                canceled: true,
                cancel_reason: format!("etcdserver: no watch with id {id} on this stream"),
                ..self.response(id)
            }),
        }
    }
}

/// Revisions of history one response carries at most (etcd's `watchBatchMaxRevs`).
const HISTORY_REVISIONS_PER_RESPONSE: usize = 1000;
/// Bytes of history events one response carries at most, unless one revision alone is
/// larger (a revision is never split): half of a gRPC client's usual 4 MiB receive limit.
const HISTORY_BYTES_PER_RESPONSE: usize = 2 * 1024 * 1024;

/// History gathered for one response: whole revisions, in order.
#[derive(Debug, Default)]
struct HistoryBatch {
    revision: i64,
    revisions: usize,
    bytes: usize,
    events: Vec<rudder_proto::mvccpb::Event>,
}

impl HistoryBatch {
    /// Adds one revision's events; returns a batch to send when one is full: what was
    /// gathered before, when this revision would take it past the byte limit, or this
    /// one at the revision limit. A revision larger than the limit goes alone.
    fn add(&mut self, revision: i64, events: Vec<Event>) -> Option<HistoryBatch> {
        // Keys and values (and previous ones) make the size; the rest is a few bytes each.
        let kv_bytes = |kv: &KeyValue| kv.key.len() + kv.value.len() + 32;
        let bytes = events
            .iter()
            .map(|event| kv_bytes(&event.kv) + event.prev_kv.as_ref().map_or(0, kv_bytes))
            .sum::<usize>();
        let earlier = match self.bytes + bytes > HISTORY_BYTES_PER_RESPONSE {
            true => self.take(),
            false => None,
        };
        self.bytes += bytes;
        self.events.extend(events.into_iter().map(convert::event));
        self.revision = revision;
        self.revisions += 1;
        earlier.or_else(|| match self.revisions >= HISTORY_REVISIONS_PER_RESPONSE {
            true => self.take(),
            false => None,
        })
    }

    fn response(self, id: i64, store: &Store) -> pb::WatchResponse {
        pb::WatchResponse {
            header: convert::header(Header {
                revision: self.revision,
                ..store.header()
            }),
            watch_id: id,
            events: self.events,
            ..Default::default()
        }
    }

    /// What was gathered, if anything.
    fn take(&mut self) -> Option<HistoryBatch> {
        let batch = std::mem::take(self);
        (!batch.events.is_empty()).then_some(batch)
    }
}

/// Moves one watch's messages to the client stream: history (up to
/// [`WatchMessage::CaughtUp`]) in batches, the rest one message per response.
async fn pump(
    id: i64,
    mut watcher: Watcher,
    store: Store,
    outbox: Outbox,
    created: pb::WatchResponse,
) {
    if outbox.send(Ok(created)).await.is_err() {
        return;
    }
    let mut history = Some(HistoryBatch::default());
    while let Some(message) = watcher.next().await {
        let mut responses = Vec::new();
        match (message, history.as_mut()) {
            (WatchMessage::Events { revision, events }, Some(batch)) => {
                responses.extend(
                    batch
                        .add(revision, events)
                        .map(|full| full.response(id, &store)),
                );
            }
            (WatchMessage::CaughtUp { revision }, _) => {
                tracing::debug!(id, revision, "etcd watch caught up: history sent");
                let last = history.take().and_then(|mut batch| batch.take());
                // Every revision up to the mark was looked at, as etcd's header says.
                let last = last.map(|batch| HistoryBatch {
                    revision: batch.revision.max(revision),
                    ..batch
                });
                responses.extend(last.map(|batch| batch.response(id, &store)));
            }
            (message, _) => {
                let pending = history.as_mut().and_then(HistoryBatch::take);
                responses.extend(pending.map(|batch| batch.response(id, &store)));
                responses.extend(to_response(id, &store, message));
            }
        }
        for response in responses {
            if outbox.send(Ok(response)).await.is_err() {
                return;
            }
        }
    }
    // The watch ended before its history did: what was gathered still goes out.
    if let Some(batch) = history.as_mut().and_then(HistoryBatch::take) {
        let _ = outbox.send(Ok(batch.response(id, &store))).await;
    }
}

fn to_response(id: i64, store: &Store, message: WatchMessage) -> Option<pb::WatchResponse> {
    let header = |revision| {
        convert::header(Header {
            revision,
            ..store.header()
        })
    };
    let response = match message {
        WatchMessage::Events { revision, events } => pb::WatchResponse {
            header: header(revision),
            watch_id: id,
            events: events.into_iter().map(convert::event).collect(),
            ..Default::default()
        },
        WatchMessage::Progress { revision } => pb::WatchResponse {
            header: header(revision),
            watch_id: id,
            ..Default::default()
        },
        WatchMessage::Compacted { compact_revision } => pb::WatchResponse {
            header: convert::header(store.header()),
            watch_id: id,
            canceled: true,
            compact_revision,
            cancel_reason: "etcdserver: mvcc: required revision has been compacted".into(),
            ..Default::default()
        },
        // etcd cancels a watch it cannot serve, saying why.
        WatchMessage::Failed { reason } => pb::WatchResponse {
            header: convert::header(store.header()),
            watch_id: id,
            canceled: true,
            cancel_reason: format!("etcdserver: {reason}"),
            ..Default::default()
        },
        WatchMessage::CaughtUp { .. } => return None,
    };
    Some(response)
}
