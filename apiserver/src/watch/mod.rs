//! `watch`: store events under a kind's prefix, translated into Kubernetes watch events.
//!
//! ```text
//!  resourceVersion "" / "0": list at R, send each match as ADDED, then watch from R+1
//!  resourceVersion N:        watch from N+1 (compacted → one ERROR event, 410 Expired)
//!  store events ─ the kind's hub (hub.rs: one store watch per kind, decoded once, only to
//!                 the watches they match; a watch older than it remembers: its own store watch)
//!  change ─ prev/next match the selectors? ─► ADDED / MODIFIED / DELETED (or nothing)
//!  idle ─ bookmark timer ─ quorum confirmed? ─ store progress ─► BOOKMARK (revision reached)
//!                                          └ no ─► ERROR 503: the client watches elsewhere
//! ```
//! An object that stops matching the selectors is sent as DELETED, one that starts matching
//! as ADDED, as Kubernetes does, so a filtered cache stays exact.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rudder_raftstore::kv::{prefix_end, EventKind, KeyRange, RangeRequest, Revision};
use rudder_raftstore::watch::{WatchMessage, WatchRequest, Watcher};
use rudder_raftstore::Store;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::decoded::Decoded;
use crate::error::ApiError;
use crate::kinds::KindInfo;
use crate::list::ListOptions;
use crate::object;
use crate::registry::Registry;
use crate::selectors::Selectors;
use hub::{Batch, Change, Subscription, Want};

mod hub;
pub(crate) use hub::Hubs;

/// Default longest quiet time between bookmarks.
pub const DEFAULT_BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
const EVENT_BUFFER: usize = 256;
/// How often a feed on a store watch of its own tries to rejoin its kind's hub.
const REJOIN_EVERY: Duration = Duration::from_secs(1);
/// How long the check before a bookmark waits for the quorum.
const QUORUM_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    pub namespace: String,
    pub label_selector: String,
    pub field_selector: String,
    pub resource_version: String,
    pub allow_bookmarks: bool,
    pub bookmark_interval: Option<Duration>,
    /// `sendInitialEvents`. `true`, a streaming list: the current state as ADDED events
    /// (then, with bookmarks allowed, a BOOKMARK annotated `k8s.io/initial-events-end`),
    /// then the changes, whatever the resourceVersion (which the state is not older than).
    /// `false`: no initial events, even from no resourceVersion (then from now). Not given:
    /// initial events from no resourceVersion ("" or "0") only, as watches always had.
    pub send_initial_events: Option<bool>,
}

/// The annotation of the bookmark that ends a streaming list's initial events.
pub const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// One Kubernetes watch event.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    /// ADDED, MODIFIED, DELETED, BOOKMARK or ERROR.
    pub kind: &'static str,
    pub object: Arc<Value>,
    /// `object` as JSON, encoded once for every watch sent the same object.
    json: Arc<OnceLock<Vec<u8>>>,
}

impl WatchEvent {
    fn new(kind: &'static str, object: Value) -> Self {
        Self::shared(kind, Arc::new(object), Arc::default())
    }

    fn shared(kind: &'static str, object: Arc<Value>, json: Arc<OnceLock<Vec<u8>>>) -> Self {
        Self { kind, object, json }
    }

    /// The object as JSON.
    pub fn json(&self) -> &[u8] {
        self.json
            .get_or_init(|| self.object.to_string().into_bytes())
    }
}

impl PartialEq for WatchEvent {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.object == other.object
    }
}

impl Registry {
    /// Starts a watch; events arrive on the returned channel until the client drops it or an
    /// ERROR event ends the watch.
    pub async fn watch(
        &self,
        resource: &str,
        options: &WatchOptions,
    ) -> Result<mpsc::Receiver<WatchEvent>, ApiError> {
        let info = self.kind(resource)?;
        let selectors = Selectors::parse(info, &options.label_selector, &options.field_selector)?;
        let namespace = if info.namespaced {
            options.namespace.clone()
        } else {
            String::new()
        };
        let (sender, receiver) = mpsc::channel(EVENT_BUFFER);
        let mut initial = Vec::new();
        let given = match options.resource_version.as_str() {
            "" | "0" => None,
            text => Some(
                text.parse::<Revision>()
                    .ok()
                    .filter(|revision| (0..Revision::MAX).contains(revision))
                    .ok_or_else(|| {
                        ApiError::bad_field(
                            "resourceVersion",
                            format!(
                                "resourceVersion {text:?} is not a version this server gave out"
                            ),
                        )
                    })?,
            ),
        };
        let streaming = options.send_initial_events == Some(true);
        let from: Revision = match given {
            Some(revision) if !streaming => revision,
            _ => {
                // A streaming list reads the latest state, which is not older than any
                // resourceVersion the server gave out.
                let listed = self
                    .list(
                        resource,
                        &ListOptions {
                            namespace: namespace.clone(),
                            label_selector: options.label_selector.clone(),
                            field_selector: options.field_selector.clone(),
                            resource_version: if streaming {
                                String::new()
                            } else {
                                options.resource_version.clone()
                            },
                            // Without initial events, only the list's revision is wanted.
                            limit: if options.send_initial_events == Some(false) {
                                1
                            } else {
                                0
                            },
                            ..Default::default()
                        },
                    )
                    .await?;
                if let Some(revision) = given.filter(|revision| *revision > listed.revision) {
                    return Err(ApiError::bad_field(
                        "resourceVersion",
                        format!(
                            "resourceVersion {revision} is newer than the cluster's ({})",
                            listed.revision
                        ),
                    ));
                }
                if options.send_initial_events != Some(false) {
                    initial = listed.items;
                }
                listed.revision
            }
        };
        let initial = Initial {
            objects: initial,
            end_marked: streaming && options.allow_bookmarks,
        };
        let prefix = object::prefix(info, &namespace);
        let bookmarks = options.allow_bookmarks.then(|| {
            options
                .bookmark_interval
                .unwrap_or(DEFAULT_BOOKMARK_INTERVAL)
        });
        let shared = self.hubs.subscribe(
            &self.store,
            &self.decoded,
            self.stopped(),
            info,
            Want {
                namespace: prefix.clone(),
                selectors: selectors.clone(),
                from,
            },
        );
        let source = match shared {
            Some(subscription) => Source::Shared(subscription),
            None => Source::Direct(watch_store(&self.store, &prefix, from)?),
        };
        let feed = Feed {
            info,
            hubs: self.hubs.clone(),
            last_rejoin: tokio::time::Instant::now(),
            decoded: self.decoded.clone(),
            store: self.store.clone(),
            probe: prefix,
            selectors,
            sender,
            reached: from,
            bookmark_wanted: false,
        };
        let stopped = self.stopped();
        tokio::spawn(async move {
            tokio::select! {
                _ = feed.run(initial, source, bookmarks) => {}
                _ = stopped => {}
            }
        });
        Ok(receiver)
    }
}

/// What a watch sends before the changes.
struct Initial {
    /// ADDED events (a watch from no resourceVersion, or a streaming list).
    objects: Vec<Value>,
    /// Ended by the `k8s.io/initial-events-end` bookmark (a streaming list).
    end_marked: bool,
}

/// This watch's own store watch of `prefix` from after `from` (when no hub serves it).
fn watch_store(store: &Store, prefix: &[u8], from: Revision) -> Result<Watcher, ApiError> {
    Ok(store.watch(WatchRequest {
        range: KeyRange {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
        },
        start_revision: from + 1,
        prev_kv: true,
        progress_notify: false,
        filter_puts: false,
        filter_deletes: false,
        mark_caught_up: false,
    })?)
}

/// Where a feed's store events come from.
enum Source {
    /// The kind's hub, shared with the master's other watches (the usual case).
    Shared(Subscription),
    /// A store watch of its own: it started further back than the hub remembers, or the
    /// hub dropped it for falling behind, or the hub ended.
    Direct(Watcher),
}

/// What a source gives next.
enum Next {
    Batch(Arc<Batch>),
    Compacted(Revision),
    /// The hub let this feed go: it goes on from the store.
    LeftHub,
    Ended,
}

impl Source {
    async fn next(&mut self, decoded: &Decoded) -> Next {
        match self {
            Source::Shared(subscription) => match subscription.batches.recv().await {
                Some(batch) => Next::Batch(batch),
                None => Next::LeftHub,
            },
            Source::Direct(watcher) => loop {
                return match watcher.next().await {
                    Some(WatchMessage::Events { revision, events }) => {
                        Next::Batch(Arc::new(Batch {
                            revision,
                            changes: events
                                .iter()
                                .map(|event| Change::decode(event, decoded))
                                .collect(),
                        }))
                    }
                    Some(WatchMessage::Progress { revision }) => Next::Batch(Arc::new(Batch {
                        revision,
                        changes: Vec::new(),
                    })),
                    // Feeds send events as they come: where history ends changes nothing.
                    Some(WatchMessage::CaughtUp { .. }) => continue,
                    Some(WatchMessage::Compacted { compact_revision }) => {
                        Next::Compacted(compact_revision)
                    }
                    Some(WatchMessage::Failed { .. }) | None => Next::Ended,
                };
            },
        }
    }

    fn request_progress(&self) {
        match self {
            Source::Shared(subscription) => subscription.request_progress(),
            Source::Direct(watcher) => watcher.request_progress(),
        }
    }
}

struct Feed {
    info: &'static KindInfo,
    /// To rejoin the kind's hub after watching the store by itself.
    hubs: Arc<Hubs>,
    /// When it last tried to.
    last_rejoin: tokio::time::Instant,
    decoded: Arc<Decoded>,
    /// For the quorum check before each bookmark, and to go on from the store.
    store: Store,
    /// The watched prefix; the quorum check reads its first key (one small linearizable read).
    probe: Vec<u8>,
    selectors: Selectors,
    sender: mpsc::Sender<WatchEvent>,
    /// The revision up to which every event has been sent.
    reached: Revision,
    /// A bookmark is due at the next progress.
    bookmark_wanted: bool,
}

impl Feed {
    async fn run(mut self, initial: Initial, mut source: Source, bookmarks: Option<Duration>) {
        let listed = !initial.objects.is_empty();
        for object in initial.objects {
            if !self.send("ADDED", object).await {
                return;
            }
        }
        if initial.end_marked {
            // A streaming list's client waits for this mark, even after no objects (it asked
            // for bookmarks; without them it does not wait).
            if !self.initial_events_end().await {
                return;
            }
        } else if listed && bookmarks.is_some() && !self.bookmark().await {
            // The initial objects carry their own (older) versions: tell a client that may
            // resume where the listing ended.
            return;
        }
        let sender = self.sender.clone();
        let mut timer = bookmarks.map(tokio::time::interval);
        if let Some(timer) = timer.as_mut() {
            timer.reset();
        }
        loop {
            let tick = async {
                match timer.as_mut() {
                    Some(timer) => timer.tick().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                next = source.next(&self.decoded) => match next {
                    Next::Batch(batch) if batch.changes.is_empty() => {
                        self.reached = self.reached.max(batch.revision);
                        if std::mem::take(&mut self.bookmark_wanted) && !self.bookmark().await {
                            return;
                        }
                    }
                    Next::Batch(batch) if batch.revision <= self.reached => {}
                    Next::Batch(batch) => {
                        for change in &batch.changes {
                            if let Some(why) = change
                                .unreadable
                                .as_ref()
                                .filter(|_| change.key.starts_with(&self.probe))
                            {
                                // Never a silent gap: the client hears, and lists again.
                                let error = ApiError::internal(why.clone());
                                let _ = self.send("ERROR", error.status_object()).await;
                                return;
                            }
                            if let Some(event) = self.translate(change) {
                                if !self.deliver(event).await {
                                    return;
                                }
                            }
                        }
                        self.reached = batch.revision;
                        if let Some(shared) = self.rejoin(&source) {
                            source = shared;
                        }
                    }
                    Next::LeftHub => match watch_store(&self.store, &self.probe, self.reached) {
                        Ok(watcher) => {
                            source = Source::Direct(watcher);
                            if self.bookmark_wanted {
                                // The hub it left will not answer its request.
                                source.request_progress();
                            }
                        }
                        Err(error) => {
                            let _ = self.send("ERROR", error.status_object()).await;
                            return;
                        }
                    },
                    Next::Compacted(compact_revision) => {
                        let error = ApiError::Expired {
                            message: format!(
                                "too old resource version: {} ({compact_revision}): list again \
                                 and watch from the list's resourceVersion",
                                self.reached
                            ),
                        };
                        let _ = self.send("ERROR", error.status_object()).await;
                        return;
                    }
                    Next::Ended => return,
                },
                _ = tick => {
                    // A master cut off from the quorum still sees its own (stale) replica:
                    // without this check its watches would stay open and silent forever.
                    if !self.has_quorum().await {
                        let error = ApiError::Unavailable {
                            source: rudder_raftstore::StoreError::NoLeader,
                        };
                        let _ = self.send("ERROR", error.status_object()).await;
                        return;
                    }
                    self.bookmark_wanted = true;
                    source.request_progress();
                }
                _ = sender.closed() => return,
            }
        }
    }

    /// The kind's hub, for a feed on a store watch of its own once the hub reaches back to
    /// where it is (tried at most once a second).
    fn rejoin(&mut self, source: &Source) -> Option<Source> {
        if !matches!(source, Source::Direct(_)) || self.last_rejoin.elapsed() < REJOIN_EVERY {
            return None;
        }
        self.last_rejoin = tokio::time::Instant::now();
        let want = Want {
            namespace: self.probe.clone(),
            selectors: self.selectors.clone(),
            from: self.reached,
        };
        let subscription = self.hubs.rejoin(&self.store, self.info, want)?;
        if self.bookmark_wanted {
            subscription.request_progress();
        }
        Some(Source::Shared(subscription))
    }

    /// Whether this master can still confirm it is up to date (a linearizable read).
    async fn has_quorum(&self) -> bool {
        let read = self.store.range(RangeRequest {
            range: KeyRange::single(self.probe.clone()),
            count_only: true,
            ..Default::default()
        });
        matches!(
            tokio::time::timeout(QUORUM_CHECK_TIMEOUT, read).await,
            Ok(Ok(_))
        )
    }

    /// The BOOKMARK that ends a streaming list's initial events.
    async fn initial_events_end(&self) -> bool {
        let bookmark = json!({
            "kind": self.info.kind,
            "apiVersion": self.info.api_version,
            "metadata": {
                "resourceVersion": self.reached.to_string(),
                "annotations": { INITIAL_EVENTS_END: "true" },
            },
        });
        self.send("BOOKMARK", bookmark).await
    }

    /// A BOOKMARK at the revision reached.
    async fn bookmark(&self) -> bool {
        let bookmark = json!({
            "kind": self.info.kind,
            "apiVersion": self.info.api_version,
            "metadata": { "resourceVersion": self.reached.to_string() },
        });
        self.send("BOOKMARK", bookmark).await
    }

    async fn send(&self, kind: &'static str, object: Value) -> bool {
        self.deliver(WatchEvent::new(kind, object)).await
    }

    async fn deliver(&self, event: WatchEvent) -> bool {
        self.sender.send(event).await.is_ok()
    }

    /// The Kubernetes event for one change under the kind, if it is in this watch's
    /// namespace and its selectors care. What is written is shared, object and JSON, with
    /// every other watch it is sent to.
    fn translate(&self, change: &Change) -> Option<WatchEvent> {
        if !change.key.starts_with(&self.probe) {
            return None;
        }
        let previous = change
            .previous
            .as_deref()
            .filter(|object| self.selectors.matches(object));
        match change.kind {
            EventKind::Put => {
                let current = change.current.as_ref()?;
                let kind = match (previous.is_some(), self.selectors.matches(current)) {
                    (false, true) => "ADDED",
                    (true, true) => "MODIFIED",
                    (true, false) => "DELETED",
                    (false, false) => return None,
                };
                Some(WatchEvent::shared(
                    kind,
                    current.clone(),
                    change.current_json.clone(),
                ))
            }
            EventKind::Delete => {
                let mut gone = previous?.clone();
                object::set_resource_version(&mut gone, change.revision);
                Some(WatchEvent::new("DELETED", gone))
            }
        }
    }
}
