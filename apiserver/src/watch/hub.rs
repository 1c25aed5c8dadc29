//! One store watch per kind, shared by all of a master's watches on that kind.
//!
//! ```text
//!  store watch (every namespace, with previous values) ─► decode once ─► Batch
//!      ├─► recent batches (a ring: what a new subscriber replays)
//!      └─► each subscriber whose namespace and selectors match ─► its queue ─► its Feed
//!  join(from): every event after `from` is in the ring → replay it and join
//!              older, or compacted in the store          → no (the feed watches the store)
//!  a subscriber whose queue is full, or a hub that ended: the feed goes on from the store,
//!  and rejoins once the ring reaches back to where it is
//!  a hub starts at the store's current revision with the master's first watch of its kind
//!  and ends once it has had no subscriber for a minute (seen as writes arrive)
//! ```
//! Kubernetes' watch cache does this for the same reason: a thousand kubelets each watching
//! the pods of their own node must not each read, copy and decode every pod write. Only the
//! watches an event matches are woken, and pod watches that name a node (`spec.nodeName=`)
//! are indexed by it, so a pod's write looks at its node's watches only (Kubernetes' pod
//! "trigger"). Progress (for bookmarks) is an empty batch, for the watches that asked.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use rudder_raftstore::kv::{prefix_end, Event, EventKind, KeyRange, KeyValue, Revision};
use rudder_raftstore::watch::{ProgressHandle, WatchMessage, WatchRequest, Watcher};
use rudder_raftstore::Store;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::decoded::Decoded;
use crate::kinds::KindInfo;
use crate::object;
use crate::selectors::Selectors;

/// Batches kept for subscribers that join a little behind (a list, then a watch from its
/// revision, while writes go on). Each holds decoded objects (a pod's, before and after, and
/// its JSON): 1,024 cost each master about 50 MiB with 10,000 pods being written (`rudder
/// bench controllers`); one further behind watches the store and rejoins.
const RECENT_BATCHES: usize = 256;
/// Batches queued per subscriber before it is dropped to follow the store by itself. Room
/// for a whole replay of the recent batches and as much again.
const SUBSCRIBER_QUEUE: usize = 2 * RECENT_BATCHES;

/// Publishes between sweeps for subscribers gone quiet (their feed ended, nothing of
/// theirs was published since).
const SWEEP_EVERY: usize = 4096;

/// The field a kind's watches are indexed by, when they require a value of it.
fn trigger_field(info: &KindInfo) -> Option<&'static str> {
    (info.resource == "pods").then_some("spec.nodeName")
}

/// One store event, its objects decoded (shared by every watch it is sent to).
#[derive(Debug)]
pub(crate) struct Change {
    pub kind: EventKind,
    pub key: Vec<u8>,
    /// The revision of the write (of the deletion, for a delete).
    pub revision: Revision,
    /// The object written (puts only); `None` also when it is not JSON.
    pub current: Option<Arc<Value>>,
    /// `current` as JSON, encoded by the first watch that sends it.
    pub current_json: Arc<OnceLock<Vec<u8>>>,
    /// The object before the write, if there was one.
    pub previous: Option<Arc<Value>>,
    /// Why the object, or the one before, could not be decoded (a Secret sealed by a key
    /// this master lacks; a value that is not JSON): watches of it end with an ERROR.
    pub unreadable: Option<String>,
}

impl Change {
    pub(crate) fn decode(event: &Event, decoded: &Decoded) -> Self {
        let mut unreadable = None;
        let mut read = |kv: &KeyValue| match decoded.get(kv) {
            Ok(object) => Some(object),
            Err(error) => {
                unreadable = Some(error.to_string());
                None
            }
        };
        let current = match event.kind {
            EventKind::Put => read(&event.kv),
            EventKind::Delete => None,
        };
        let previous = event.prev_kv.as_ref().and_then(&mut read);
        Self {
            kind: event.kind,
            key: event.kv.key.clone(),
            revision: event.kv.mod_revision,
            current,
            current_json: Arc::default(),
            previous,
            unreadable,
        }
    }
}

/// The changes of one revision under a kind; none: the watch has seen everything up to
/// `revision` (progress, for bookmarks).
#[derive(Debug)]
pub(crate) struct Batch {
    pub revision: Revision,
    pub changes: Vec<Change>,
}

/// What a feed wants from a hub: changes under `namespace` (a key prefix) that `selectors`
/// match before or after, from after revision `from`.
pub(crate) struct Want {
    pub namespace: Vec<u8>,
    pub selectors: Selectors,
    pub from: Revision,
}

/// A feed's place at a hub: batches it may care about, in revision order.
pub(crate) struct Subscription {
    pub batches: mpsc::Receiver<Arc<Batch>>,
    progress: ProgressHandle,
    wants_progress: Arc<AtomicBool>,
}

impl Subscription {
    /// Asks for a progress batch: the hub's store watch is asked, and the next progress
    /// batch goes to the subscribers that asked (each bookmark tick of a thousand watches
    /// must not wake all thousand).
    pub(crate) fn request_progress(&self) {
        self.wants_progress.store(true, Ordering::SeqCst);
        self.progress.request();
    }
}

/// How long a hub with no subscriber goes on before it ends (checked as writes arrive; with
/// none it costs nothing).
const IDLE_LIFETIME: Duration = Duration::from_secs(60);
/// How often a hub sweeps out subscribers whose feed ended, and looks whether any is left.
const IDLE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// The hubs of one master, one per kind watched recently.
pub(crate) struct Hubs {
    by_resource: Mutex<HashMap<&'static str, Arc<Hub>>>,
    idle_lifetime: Duration,
}

impl Default for Hubs {
    fn default() -> Self {
        Self::with_idle_lifetime(IDLE_LIFETIME)
    }
}

impl Hubs {
    fn with_idle_lifetime(idle_lifetime: Duration) -> Self {
        Self {
            by_resource: Mutex::default(),
            idle_lifetime,
        }
    }

    /// Joins `info`'s hub, starting it at the store's current revision if there is none;
    /// `None` when the hub does not hold every change after `want.from` (the feed then
    /// watches the store by itself, and may [`Hubs::rejoin`] once it has caught up).
    pub(crate) fn subscribe(
        &self,
        store: &Store,
        decoded: &Arc<Decoded>,
        stopped: impl Future<Output = ()> + Send + 'static,
        info: &'static KindInfo,
        want: Want,
    ) -> Option<Subscription> {
        if compacted_before(store, want.from) {
            return None;
        }
        let hub = {
            let mut hubs = lock(&self.by_resource);
            match hubs.get(info.resource) {
                Some(hub) if !hub.state().ended => hub.clone(),
                _ => {
                    let (current, _) = store.revisions();
                    let hub = Hub::start(
                        store,
                        decoded.clone(),
                        stopped,
                        info,
                        (current, self.idle_lifetime),
                    )?;
                    hubs.insert(info.resource, hub.clone());
                    hub
                }
            }
        };
        hub.join(want)
    }

    /// Joins `info`'s hub if it runs and holds every change after `want.from`: a feed that
    /// watched the store by itself (it started further back, or fell behind) and has caught
    /// up comes back.
    pub(crate) fn rejoin(
        &self,
        store: &Store,
        info: &'static KindInfo,
        want: Want,
    ) -> Option<Subscription> {
        if compacted_before(store, want.from) {
            return None;
        }
        let hub = lock(&self.by_resource).get(info.resource)?.clone();
        hub.join(want)
    }
}

/// Whether the store compacted away revisions after `from`: such a start gets the store's
/// answer (410), as on any master, even while a hub still remembers them.
fn compacted_before(store: &Store, from: Revision) -> bool {
    let (_, compacted) = store.revisions();
    from + 1 < compacted
}

struct Hub {
    state: Mutex<HubState>,
    progress: ProgressHandle,
    trigger: Option<&'static str>,
    idle_lifetime: Duration,
}

struct HubState {
    /// The last batches with changes, oldest first.
    recent: VecDeque<Arc<Batch>>,
    /// Every change from this revision on is in `recent`.
    covered_from: Revision,
    subscribers: Subscribers,
    /// The store watch ended: no more batches.
    ended: bool,
    /// When subscribers were last swept out and counted.
    idle_checked: Instant,
    /// Since when it has had no subscriber, as last counted.
    idle_since: Option<Instant>,
}

struct Subscriber {
    namespace: Vec<u8>,
    selectors: Selectors,
    queue: mpsc::Sender<Arc<Batch>>,
    /// Set by its feed's progress request, cleared when a progress batch is sent to it.
    wants_progress: Arc<AtomicBool>,
}

/// A hub's subscribers, those requiring a value of the trigger field indexed by it.
#[derive(Default)]
struct Subscribers {
    /// Looked at for every batch.
    everyone: Vec<Subscriber>,
    /// Looked at for batches with an object (before or after) holding their value.
    by_trigger: HashMap<String, Vec<Subscriber>>,
    published_since_sweep: usize,
}

impl Subscribers {
    fn add(&mut self, trigger: Option<&str>, subscriber: Subscriber) {
        match trigger.and_then(|field| subscriber.selectors.required_field(field)) {
            Some(value) => self
                .by_trigger
                .entry(value.to_string())
                .or_default()
                .push(subscriber),
            None => self.everyone.push(subscriber),
        }
    }

    /// Offers the batch to every subscriber that may care; drops those that cannot take it.
    fn dispatch(&mut self, trigger: Option<&str>, batch: &Arc<Batch>) {
        let offer = |subscriber: &Subscriber| subscriber.offer(batch);
        self.everyone.retain(offer);
        self.published_since_sweep += 1;
        let values = match trigger {
            Some(field) if !batch.changes.is_empty() => {
                if self.published_since_sweep >= SWEEP_EVERY {
                    self.published_since_sweep = 0;
                    self.sweep();
                }
                let mut values: Vec<String> = batch
                    .changes
                    .iter()
                    .flat_map(|change| [&change.current, &change.previous])
                    .flatten()
                    .map(|object| object::field_value(object, field))
                    .collect();
                values.sort_unstable();
                values.dedup();
                values
            }
            // Progress: every subscriber is looked at, those that asked get it.
            _ => self.by_trigger.keys().cloned().collect(),
        };
        for value in values {
            if let Some(list) = self.by_trigger.get_mut(&value) {
                list.retain(offer);
                if list.is_empty() {
                    self.by_trigger.remove(&value);
                }
            }
        }
    }

    fn clear(&mut self) {
        self.everyone.clear();
        self.by_trigger.clear();
    }

    /// Drops the subscribers whose feed ended; whether any is left.
    fn sweep(&mut self) -> bool {
        self.everyone.retain(|s| !s.queue.is_closed());
        for list in self.by_trigger.values_mut() {
            list.retain(|s| !s.queue.is_closed());
        }
        self.by_trigger.retain(|_, list| !list.is_empty());
        !self.everyone.is_empty() || !self.by_trigger.is_empty()
    }
}

impl Subscriber {
    /// Sends the batch if it cares (a progress batch: if it asked for progress); whether it
    /// is still a subscriber (not gone, not so far behind that its queue is full).
    fn offer(&self, batch: &Arc<Batch>) -> bool {
        if self.queue.is_closed() {
            return false;
        }
        let wanted = if batch.changes.is_empty() {
            self.wants_progress.swap(false, Ordering::SeqCst)
        } else {
            self.cares(batch)
        };
        !wanted || self.queue.try_send(batch.clone()).is_ok()
    }

    /// Whether the batch has a change for this subscriber.
    fn cares(&self, batch: &Batch) -> bool {
        batch.changes.iter().any(|change| {
            change.key.starts_with(&self.namespace)
                && [&change.current, &change.previous]
                    .into_iter()
                    .flatten()
                    .any(|object| self.selectors.matches(object))
        })
    }
}

impl Hub {
    fn start(
        store: &Store,
        decoded: Arc<Decoded>,
        stopped: impl Future<Output = ()> + Send + 'static,
        info: &'static KindInfo,
        (from, idle_lifetime): (Revision, Duration),
    ) -> Option<Arc<Self>> {
        let prefix = object::prefix(info, "");
        let watcher = store
            .watch(WatchRequest {
                range: KeyRange {
                    range_end: prefix_end(&prefix),
                    key: prefix,
                },
                start_revision: from + 1,
                prev_kv: true,
                progress_notify: false,
                filter_puts: false,
                filter_deletes: false,
                mark_caught_up: false,
            })
            .ok()?;
        let hub = Arc::new(Hub {
            state: Mutex::new(HubState {
                recent: VecDeque::new(),
                covered_from: from + 1,
                subscribers: Subscribers::default(),
                ended: false,
                idle_checked: Instant::now(),
                idle_since: None,
            }),
            progress: watcher.progress_handle(),
            trigger: trigger_field(info),
            idle_lifetime,
        });
        let running = hub.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = running.run(watcher, &decoded) => {}
                () = stopped => {}
            }
            running.end();
        });
        Some(hub)
    }

    async fn run(&self, mut watcher: Watcher, decoded: &Decoded) {
        while let Some(message) = watcher.next().await {
            match message {
                WatchMessage::Events { revision, events } => self.publish(Batch {
                    revision,
                    changes: events
                        .iter()
                        .map(|event| Change::decode(event, decoded))
                        .collect(),
                }),
                WatchMessage::Progress { revision } => self.publish(Batch {
                    revision,
                    changes: Vec::new(),
                }),
                WatchMessage::CaughtUp { .. } => {}
                // The hub fell so far behind that its history was compacted: it ends, and
                // each feed watches the store from where it is (and learns of it there).
                WatchMessage::Compacted { .. } => return,
                // The member could not read the hub's history: it ends, and each feed
                // watches the store from where it is.
                WatchMessage::Failed { .. } => return,
            }
            if self.idle_too_long() {
                // Nobody watches this kind here any more: stop decoding its writes. The
                // next watch of the kind starts a new hub.
                return;
            }
        }
    }

    /// Whether the hub has had no subscriber for its idle lifetime; subscribers whose feed
    /// ended are swept out (at most once a second) before they are counted.
    fn idle_too_long(&self) -> bool {
        let now = Instant::now();
        let mut state = self.state();
        if now.duration_since(state.idle_checked) < IDLE_CHECK_EVERY.min(self.idle_lifetime) {
            return false;
        }
        state.idle_checked = now;
        if state.subscribers.sweep() {
            state.idle_since = None;
            return false;
        }
        let since = *state.idle_since.get_or_insert(now);
        now.duration_since(since) >= self.idle_lifetime
    }

    fn join(&self, want: Want) -> Option<Subscription> {
        let Want {
            namespace,
            selectors,
            from,
        } = want;
        let mut state = self.state();
        if state.ended || from + 1 < state.covered_from {
            return None;
        }
        let (queue, batches) = mpsc::channel(SUBSCRIBER_QUEUE);
        let wants_progress = Arc::new(AtomicBool::new(false));
        let subscriber = Subscriber {
            namespace,
            selectors,
            queue,
            wants_progress: wants_progress.clone(),
        };
        for batch in state.recent.iter() {
            if batch.revision > from
                && subscriber.cares(batch)
                && subscriber.queue.try_send(batch.clone()).is_err()
            {
                return None;
            }
        }
        state.subscribers.add(self.trigger, subscriber);
        state.idle_since = None;
        Some(Subscription {
            batches,
            progress: self.progress.clone(),
            wants_progress,
        })
    }

    /// Sends the batch to every subscriber it matters to; one that cannot take it (gone, or
    /// too far behind) is dropped.
    fn publish(&self, batch: Batch) {
        let batch = Arc::new(batch);
        let mut state = self.state();
        state.subscribers.dispatch(self.trigger, &batch);
        if batch.changes.is_empty() {
            return;
        }
        state.recent.push_back(batch);
        while state.recent.len() > RECENT_BATCHES {
            if let Some(forgotten) = state.recent.pop_front() {
                state.covered_from = forgotten.revision + 1;
            }
        }
    }

    /// No more batches: every subscriber's queue closes (its feed goes on from the store).
    fn end(&self) {
        let mut state = self.state();
        state.ended = true;
        state.subscribers.clear();
        state.recent.clear();
    }

    fn state(&self) -> MutexGuard<'_, HubState> {
        lock(&self.state)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use rudder_raftstore::kv::PutRequest;
    use rudder_raftstore::test_support::Cluster;

    use super::*;

    fn config_maps() -> &'static KindInfo {
        crate::kinds::resolve("configmaps").expect("a served kind")
    }

    fn everything_from(from: Revision) -> Want {
        Want {
            namespace: object::prefix(config_maps(), ""),
            selectors: Selectors::parse(config_maps(), "", "").expect("no selectors"),
            from,
        }
    }

    /// Writes a ConfigMap key straight to the store, then waits `pause`.
    async fn write(store: &Store, name: &str, pause: Duration) {
        let key = format!("/registry/configmaps/default/{name}").into_bytes();
        let value = format!(r#"{{"metadata":{{"name":"{name}"}}}}"#).into_bytes();
        store
            .put(PutRequest {
                key,
                value: value.into(),
                ..Default::default()
            })
            .await
            .expect("written");
        tokio::time::sleep(pause).await;
    }

    fn hub_of(hubs: &Hubs) -> Arc<Hub> {
        lock(&hubs.by_resource)[config_maps().resource].clone()
    }

    /// Joins the ConfigMaps hub from the store's current revision (starting one if none).
    fn join_config_maps(hubs: &Hubs, store: &Store, decoded: &Arc<Decoded>) -> Subscription {
        let want = everything_from(store.revisions().0);
        hubs.subscribe(store, decoded, std::future::pending(), config_maps(), want)
            .expect("the hub takes the subscriber")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hub_nobody_subscribes_to_any_more_ends_and_the_next_watch_starts_another() {
        let cluster = Cluster::start(1).await;
        let store = cluster.store(0).clone();
        let decoded = Arc::new(Decoded::new(crate::encryption::keys_of_this_process()));
        let hubs = Hubs::with_idle_lifetime(Duration::from_millis(300));
        let pause = Duration::from_millis(100);
        let subscription = join_config_maps(&hubs, &store, &decoded);
        let first = hub_of(&hubs);
        // Subscribed: writes for longer than the idle lifetime keep it running.
        for i in 0..8 {
            write(&store, &format!("a{i}"), pause).await;
        }
        assert!(!first.state().ended, "a hub with a subscriber runs on");
        drop(subscription);
        // Nobody left: the writes after its idle lifetime end it.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut written = 0;
        while !first.state().ended {
            assert!(Instant::now() < deadline, "a hub nobody subscribes to ends");
            write(&store, &format!("b{written}"), pause).await;
            written += 1;
        }
        join_config_maps(&hubs, &store, &decoded);
        assert!(!Arc::ptr_eq(&first, &hub_of(&hubs)), "a new hub");
        cluster.shutdown().await;
    }
}
