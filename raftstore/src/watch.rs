//! Watches: every change to a key range from a start revision, in order, exactly once.
//!
//! ```text
//!   catch up: read history in chunks under the read lock ──┐
//!                       last chunk: subscribe to the feed ──┤ (same lock: no gap, no overlap)
//!   live: feed ── revision batches ──► filter ──► client    │
//!           └─ lagged or snapshot reset ──► catch up again ─┘
//! ```
//! A start revision that compaction removed ends the watch with [`WatchMessage::Compacted`];
//! history the database cannot give back, with [`WatchMessage::Failed`].

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{broadcast, mpsc, Notify};

use crate::keyspace::{FeedItem, Keyspace};
use crate::kv::{Event, EventKind, KeyRange, Revision};
use crate::metrics::OpenWatch;

/// Revisions read from history per lock hold while catching up.
const CATCH_UP_CHUNK: Revision = 256;
/// Messages buffered per watch before the watcher task waits for the client.
const WATCH_BUFFER: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WatchRequest {
    pub range: KeyRange,
    /// First revision to deliver; `0` = changes after now.
    pub start_revision: Revision,
    pub prev_kv: bool,
    /// Send [`WatchMessage::Progress`] every `progress_interval` while idle.
    pub progress_notify: bool,
    pub filter_puts: bool,
    pub filter_deletes: bool,
    /// Send [`WatchMessage::CaughtUp`] each time history has been delivered.
    pub mark_caught_up: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMessage {
    /// All matching events of one revision (a transaction's events arrive together).
    Events {
        revision: Revision,
        events: Vec<Event>,
    },
    /// Nothing matching happened up to `revision` (a bookmark).
    Progress { revision: Revision },
    /// Every event up to `revision` that history held when the watch (re)started was
    /// delivered; what follows comes live. Sent only when asked for
    /// ([`WatchRequest::mark_caught_up`]): the etcd API sends history up to here in as few
    /// responses as it can, as etcd does.
    CaughtUp { revision: Revision },
    /// The start revision was compacted; the watch has ended.
    Compacted { compact_revision: Revision },
    /// This member could not read the watch's history back from its database (the
    /// reason says what failed); the watch has ended.
    Failed { reason: String },
}

/// The client side of one watch. Dropping it cancels the watch.
#[derive(Debug)]
pub struct Watcher {
    messages: mpsc::Receiver<WatchMessage>,
    progress: Arc<Notify>,
}

impl Watcher {
    /// The next message; `None` once the watch ended (compacted, failed, or the member
    /// stopped).
    pub async fn next(&mut self) -> Option<WatchMessage> {
        self.messages.recv().await
    }

    /// Asks for a [`WatchMessage::Progress`] with the revision the watch has reached.
    pub fn request_progress(&self) {
        self.progress.notify_one();
    }

    /// A handle that can ask for progress while another task reads the messages.
    pub fn progress_handle(&self) -> ProgressHandle {
        ProgressHandle(self.progress.clone())
    }
}

#[derive(Debug, Clone)]
pub struct ProgressHandle(Arc<Notify>);

impl ProgressHandle {
    pub fn request(&self) {
        self.0.notify_one();
    }
}

/// Starts a watch. `start_revision` must not be in the future (checked by the caller, who
/// knows the current revision); a compacted one ends the watch at once with `Compacted`.
/// What a watch counts while it runs: itself among the open watches, and the events it
/// sends.
pub struct Watching {
    pub open: OpenWatch,
    pub events_sent: Counter,
}

pub fn start(
    keyspace: Arc<Keyspace>,
    request: WatchRequest,
    progress_interval: Duration,
    watching: Watching,
) -> Watcher {
    let (sender, messages) = mpsc::channel(WATCH_BUFFER);
    let progress = Arc::new(Notify::new());
    let current = keyspace.read().mvcc.revision();
    let next = if request.start_revision > 0 {
        request.start_revision
    } else {
        current + 1
    };
    let task = WatchTask {
        keyspace,
        request,
        sender,
        progress: progress.clone(),
        next,
        // A watch from a future revision has reached no further than the store.
        reached: (next - 1).min(current),
        watching,
    };
    tokio::spawn(task.run(progress_interval));
    Watcher { messages, progress }
}

struct WatchTask {
    keyspace: Arc<Keyspace>,
    request: WatchRequest,
    sender: mpsc::Sender<WatchMessage>,
    progress: Arc<Notify>,
    /// The next revision to deliver.
    next: Revision,
    /// The highest revision the watch has looked at (delivered or filtered out).
    reached: Revision,
    watching: Watching,
}

enum History {
    Compacted(Revision),
    /// The keyspace could not read a value of the past back from the database.
    Unreadable(crate::error::KvError),
    Chunk {
        events: Vec<Event>,
        feed: Option<broadcast::Receiver<Arc<FeedItem>>>,
        upto: Revision,
    },
}

enum Step {
    Continue,
    Stop,
}

impl WatchTask {
    async fn run(mut self, progress_interval: Duration) {
        let mut ticker = tokio::time::interval(progress_interval);
        ticker.tick().await;
        loop {
            let Some(mut feed) = self.catch_up().await else {
                return;
            };
            if self.request.mark_caught_up {
                let caught_up = WatchMessage::CaughtUp {
                    revision: self.reached,
                };
                if self.send(caught_up).await.is_err() {
                    return;
                }
            }
            loop {
                tokio::select! {
                    item = feed.recv() => match item {
                        Ok(item) => match &*item {
                            FeedItem::Revision { revision, events } => {
                                // A planted bug for the chaos runner (`rudder chaos run
                                // --plant lost-watch-events`): a live revision skipped as if
                                // delivered (history read back later stays whole).
                                let lost = rudder_proto::failpoints::eval("lost-watch-events", |_| ()).is_some();
                                let events: &[Event] = if lost { &[] } else { events };
                                if let Step::Stop = self.deliver(*revision, events).await {
                                    return;
                                }
                            }
                            FeedItem::Reset => break,
                        },
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    () = self.progress.notified() => {
                        if self.send(WatchMessage::Progress { revision: self.reached }).await.is_err() {
                            return;
                        }
                    }
                    _ = ticker.tick(), if self.request.progress_notify => {
                        if self.send(WatchMessage::Progress { revision: self.reached }).await.is_err() {
                            return;
                        }
                    }
                    () = self.sender.closed() => return,
                }
            }
        }
    }

    /// Delivers history from `next` until the current revision, then subscribes to the feed.
    /// Returns `None` when the watch ended.
    async fn catch_up(&mut self) -> Option<broadcast::Receiver<Arc<FeedItem>>> {
        loop {
            let (events, feed, upto) = match self.read_history() {
                History::Compacted(compact_revision) => {
                    let _ = self
                        .send(WatchMessage::Compacted { compact_revision })
                        .await;
                    return None;
                }
                History::Unreadable(error) => {
                    tracing::error!(%error, "a watch could not read its history; it ends");
                    let reason = error.to_string();
                    let _ = self.send(WatchMessage::Failed { reason }).await;
                    return None;
                }
                History::Chunk { events, feed, upto } => (events, feed, upto),
            };
            for chunk in events.chunk_by(|a, b| a.kv.mod_revision == b.kv.mod_revision) {
                if let Step::Stop = self.deliver(chunk[0].kv.mod_revision, chunk).await {
                    return None;
                }
            }
            // `upto` is the store's revision: a watch from the future has not reached its
            // start, only this.
            self.reached = self.reached.max(upto.min(self.next - 1));
            self.next = self.next.max(upto + 1);
            if feed.is_some() {
                return feed;
            }
        }
    }

    /// One chunk of history from `next`; the last chunk comes with a feed subscription taken
    /// under the same read lock.
    fn read_history(&self) -> History {
        let state = self.keyspace.read();
        let compact = state.mvcc.compact_revision();
        if self.next < compact {
            return History::Compacted(compact);
        }
        let current = state.mvcc.revision();
        let last_chunk = current - self.next < CATCH_UP_CHUNK;
        let upto = if last_chunk {
            current
        } else {
            self.next + CATCH_UP_CHUNK - 1
        };
        let events = match state.mvcc.events_in(
            self.next,
            upto,
            &self.request.range,
            self.request.prev_kv,
            self.keyspace.history(),
        ) {
            Ok(events) => events,
            Err(error) => return History::Unreadable(error),
        };
        let feed = last_chunk.then(|| self.keyspace.subscribe());
        History::Chunk { events, feed, upto }
    }

    async fn deliver(&mut self, revision: Revision, events: &[Event]) -> Step {
        if revision < self.next {
            // Before the watch's start (a future one): looked at, nothing for it.
            self.reached = self.reached.max(revision);
            return Step::Continue;
        }
        let events: Vec<Event> = events
            .iter()
            .filter(|event| self.request.range.contains(&event.kv.key))
            .filter(|event| match event.kind {
                EventKind::Put => !self.request.filter_puts,
                EventKind::Delete => !self.request.filter_deletes,
            })
            .map(|event| Event {
                prev_kv: if self.request.prev_kv {
                    event.prev_kv.clone()
                } else {
                    None
                },
                ..event.clone()
            })
            .collect();
        self.next = revision + 1;
        self.reached = revision;
        if events.is_empty() {
            return Step::Continue;
        }
        let count = events.len() as u64;
        match self.send(WatchMessage::Events { revision, events }).await {
            Ok(()) => {
                self.watching.events_sent.inc_by(count);
                Step::Continue
            }
            Err(()) => Step::Stop,
        }
    }

    async fn send(&self, message: WatchMessage) -> Result<(), ()> {
        self.sender.send(message).await.map_err(|_| ())
    }
}
