//! `watch`: store events under a kind's prefix, translated into Kubernetes watch events.
//!
//! ```text
//!  resourceVersion "" / "0": list at R, send each match as ADDED, then watch from R+1
//!  resourceVersion N:        watch from N+1 (compacted → one ERROR event, 410 Expired)
//!  store event ─ prev/next match the selectors? ─► ADDED / MODIFIED / DELETED (or nothing)
//!  idle ─ bookmark timer ─ quorum confirmed? ─ store progress ─► BOOKMARK (revision reached)
//!                                          └ no ─► ERROR 503: the client watches elsewhere
//! ```
//! An object that stops matching the selectors is sent as DELETED, one that starts matching
//! as ADDED, as Kubernetes does, so a filtered cache stays exact.

use std::time::Duration;

use rudder_raftstore::kv::{prefix_end, Event, EventKind, KeyRange, RangeRequest, Revision};
use rudder_raftstore::watch::{WatchMessage, WatchRequest};
use rudder_raftstore::Store;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::kinds::KindInfo;
use crate::list::{ListOptions, Selectors};
use crate::object;
use crate::registry::Registry;

/// Default longest quiet time between bookmarks.
pub const DEFAULT_BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
const EVENT_BUFFER: usize = 256;
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
}

/// One Kubernetes watch event.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    /// ADDED, MODIFIED, DELETED, BOOKMARK or ERROR.
    pub kind: &'static str,
    pub object: Value,
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
        let from: Revision = match options.resource_version.as_str() {
            "" | "0" => {
                let listed = self
                    .list(
                        resource,
                        &ListOptions {
                            namespace: namespace.clone(),
                            label_selector: options.label_selector.clone(),
                            field_selector: options.field_selector.clone(),
                            resource_version: options.resource_version.clone(),
                            ..Default::default()
                        },
                    )
                    .await?;
                initial = listed.items;
                listed.revision
            }
            text => text
                .parse::<Revision>()
                .ok()
                .filter(|revision| (0..Revision::MAX).contains(revision))
                .ok_or_else(|| {
                    ApiError::bad_field(
                        "resourceVersion",
                        format!("resourceVersion {text:?} is not a version this server gave out"),
                    )
                })?,
        };
        let prefix = object::prefix(info, &namespace);
        let watcher = self.store.watch(WatchRequest {
            range: KeyRange {
                key: prefix.clone(),
                range_end: prefix_end(&prefix),
            },
            start_revision: from + 1,
            prev_kv: true,
            progress_notify: false,
            filter_puts: false,
            filter_deletes: false,
        })?;
        let bookmarks = options.allow_bookmarks.then(|| {
            options
                .bookmark_interval
                .unwrap_or(DEFAULT_BOOKMARK_INTERVAL)
        });
        let feed = Feed {
            info,
            store: self.store.clone(),
            probe: prefix.clone(),
            selectors,
            sender,
            reached: from,
        };
        let stopped = self.stopped();
        tokio::spawn(async move {
            tokio::select! {
                _ = feed.run(initial, watcher, bookmarks) => {}
                _ = stopped => {}
            }
        });
        Ok(receiver)
    }
}

struct Feed {
    info: &'static KindInfo,
    /// For the quorum check before each bookmark.
    store: Store,
    /// The key the quorum check reads (one small linearizable read).
    probe: Vec<u8>,
    selectors: Selectors,
    sender: mpsc::Sender<WatchEvent>,
    /// The revision up to which every event has been sent.
    reached: Revision,
}

impl Feed {
    async fn run(
        mut self,
        initial: Vec<Value>,
        mut watcher: rudder_raftstore::watch::Watcher,
        bookmarks: Option<Duration>,
    ) {
        let listed = !initial.is_empty();
        for object in initial {
            if !self.send("ADDED", object).await {
                return;
            }
        }
        // The initial objects carry their own (older) versions: tell a client that may
        // resume where the listing ended.
        if listed && bookmarks.is_some() && !self.bookmark().await {
            return;
        }
        let progress = watcher.progress_handle();
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
                message = watcher.next() => match message {
                    Some(WatchMessage::Events { revision, events }) => {
                        for event in events {
                            if let Some((kind, object)) = self.translate(&event) {
                                if !self.send(kind, object).await {
                                    return;
                                }
                            }
                        }
                        self.reached = revision;
                    }
                    Some(WatchMessage::Progress { revision }) => {
                        self.reached = self.reached.max(revision);
                        if !self.bookmark().await {
                            return;
                        }
                    }
                    Some(WatchMessage::Compacted { compact_revision }) => {
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
                    None => return,
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
                    progress.request();
                }
                _ = sender.closed() => return,
            }
        }
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
        self.sender.send(WatchEvent { kind, object }).await.is_ok()
    }

    /// The Kubernetes event for one store event, if the watch's selectors care.
    fn translate(&self, event: &Event) -> Option<(&'static str, Value)> {
        let previous = event
            .prev_kv
            .as_ref()
            .and_then(|kv| object::decode(kv).ok())
            .filter(|object| self.selectors.matches(object));
        match event.kind {
            EventKind::Put => {
                let current = object::decode(&event.kv).ok()?;
                let matches = self.selectors.matches(&current);
                match (previous.is_some(), matches) {
                    (false, true) => Some(("ADDED", current)),
                    (true, true) => Some(("MODIFIED", current)),
                    (true, false) => Some(("DELETED", current)),
                    (false, false) => None,
                }
            }
            EventKind::Delete => {
                let mut gone = previous?;
                object::set_resource_version(&mut gone, event.kv.mod_revision);
                Some(("DELETED", gone))
            }
        }
    }
}
