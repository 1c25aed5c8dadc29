//! [`Cache`]: one resource's [`Store`] shared between the reflector that fills it and the
//! controllers that read it (cheap to clone), and the subscribers it tells of each change.
//!
//! Delivery is a tokio unbounded channel per subscriber ([`Subscription`], a `Stream`): the
//! reflector never waits for a slow consumer (as client-go's listeners, whose buffers
//! grow), events are `Arc`s so a backlog is cheap, a dropped subscription is noticed and
//! removed, and an actor takes it with `ctx.add_message_stream` without the informer
//! knowing actix's mailboxes. Changes are applied and sent under the store's lock, so every
//! subscriber sees them in the cache's order, and a late subscriber first hears `Added` for
//! what is already cached.

use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::task::{Context, Poll};

use rudder_proto::objects::selector::LabelSelector;
use tokio::sync::mpsc;

use super::event::{Change, Event};
use super::index::Index;
use super::key::ObjectKey;
use super::object::ApiObject;
use super::store::{NoSuchIndex, Store};

/// A shared cache of one resource's objects.
pub struct Cache<K> {
    shared: Arc<Shared<K>>,
}

struct Shared<K> {
    store: RwLock<Store<K>>,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Event<K>>>>,
}

impl<K> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

/// The events of one subscriber, in the cache's order; a `Stream` of [`Event`]s.
pub struct Subscription<K> {
    events: mpsc::UnboundedReceiver<Event<K>>,
}

impl<K> Subscription<K> {
    /// The next event; `None` once the cache is gone.
    pub async fn recv(&mut self) -> Option<Event<K>> {
        self.events.recv().await
    }
}

impl<K> futures::Stream for Subscription<K> {
    type Item = Event<K>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event<K>>> {
        self.events.poll_recv(cx)
    }
}

impl<K: ApiObject> Cache<K> {
    /// An empty cache keeping these indexes (namespaces need none: see
    /// [`Cache::in_namespace`]).
    pub fn new(indexes: Vec<Index<K>>) -> Self {
        Self::of(Store::new(indexes))
    }

    fn of(store: Store<K>) -> Self {
        Self {
            shared: Arc::new(Shared {
                store: RwLock::new(store),
                subscribers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// A new subscriber: it hears `Added` for every object cached now (and `Synced` if the
    /// cache has synced), then every change.
    pub fn subscribe(&self) -> Subscription<K> {
        let (sender, events) = mpsc::unbounded_channel();
        let store = self.read();
        for object in store.list() {
            let _ = sender.send(Event::Added(object));
        }
        if store.has_synced() {
            let _ = sender.send(Event::Synced);
        }
        self.subscribers().push(sender);
        drop(store);
        Subscription { events }
    }

    /// Whether anyone still listens.
    pub fn has_subscribers(&self) -> bool {
        let mut subscribers = self.subscribers();
        subscribers.retain(|s| !s.is_closed());
        !subscribers.is_empty()
    }

    pub fn get(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.read().get(key)
    }

    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().list()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// The objects of one namespace, by name.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        self.read().in_namespace(namespace)
    }

    /// The objects of `namespace` whose labels `selector` matches.
    pub fn selected(&self, namespace: &str, selector: &LabelSelector) -> Vec<Arc<K>> {
        self.read().selected(namespace, selector)
    }

    /// Keeps `indexes` too (those not kept already, known by name), filed with every object
    /// cached: for a cache shared by components that each need their own.
    pub fn add_indexes(&self, indexes: Vec<Index<K>>) {
        self.write().add_indexes(indexes);
    }

    /// The objects under `value` in the index `name` (e.g. [`super::index::OWNER_UID`]).
    pub fn indexed(&self, name: &str, value: &str) -> Result<Vec<Arc<K>>, NoSuchIndex> {
        self.read().indexed(name, value)
    }

    /// Whether a list has been applied.
    pub fn has_synced(&self) -> bool {
        self.read().has_synced()
    }

    /// The last revision seen (list, event or bookmark).
    pub fn revision(&self) -> Option<u64> {
        self.read().revision()
    }

    /// Where the reflector's next watch starts; `None`: it must list.
    pub(super) fn resume_from(&self) -> Option<u64> {
        self.read().resume_from()
    }

    /// Applies a list taken at `revision` and tells the subscribers what changed. The
    /// reflector calls it; so may a controller's test that fills a cache by hand.
    pub fn replace(&self, items: Vec<K>, revision: u64) {
        let mut store = self.write();
        let events = store.replace(items, revision);
        self.publish(events);
    }

    /// Applies a watch change and tells the subscribers what changed (the reflector, or a
    /// test).
    pub fn apply(&self, change: Change<K>) {
        let mut store = self.write();
        let events = store.apply(change);
        self.publish(events);
    }

    /// Sends while the caller holds the store's write lock, so order is the cache's order.
    fn publish(&self, events: Vec<Event<K>>) {
        if events.is_empty() {
            return;
        }
        let mut subscribers = self.subscribers();
        subscribers.retain(|subscriber| {
            events
                .iter()
                .all(|event| subscriber.send(event.clone()).is_ok())
        });
    }

    fn read(&self) -> RwLockReadGuard<'_, Store<K>> {
        self.shared.store.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Store<K>> {
        self.shared.store.write().unwrap_or_else(|p| p.into_inner())
    }

    fn subscribers(&self) -> std::sync::MutexGuard<'_, Vec<mpsc::UnboundedSender<Event<K>>>> {
        self.shared
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;

    use super::*;

    fn map(name: &str, revision: u64) -> ConfigMap {
        let mut map = ConfigMap::default();
        map.metadata.namespace = Some("a".into());
        map.metadata.name = Some(name.into());
        map.metadata.uid = Some(format!("{name}-uid"));
        map.metadata.resource_version = Some(revision.to_string());
        map
    }

    fn kinds(subscription: &mut Subscription<ConfigMap>) -> Vec<String> {
        std::iter::from_fn(|| subscription.events.try_recv().ok())
            .map(|event| match event {
                Event::Added(m) => format!("added {}", m.metadata.name.clone().unwrap_or_default()),
                Event::Updated { new, .. } => {
                    format!("updated {}", new.metadata.name.clone().unwrap_or_default())
                }
                Event::Deleted(m) => {
                    format!("deleted {}", m.metadata.name.clone().unwrap_or_default())
                }
                Event::Synced => "synced".into(),
            })
            .collect()
    }

    #[test]
    fn a_late_subscriber_first_hears_what_is_cached_then_every_change() {
        let cache = Cache::new(Vec::new());
        let mut early = cache.subscribe();
        cache.replace(vec![map("x", 2)], 3);
        let mut late = cache.subscribe();
        cache.apply(Change::Applied(map("y", 4)));
        cache.apply(Change::Deleted(map("x", 5)));
        assert_eq!(
            kinds(&mut early),
            ["added x", "synced", "added y", "deleted x"]
        );
        assert_eq!(
            kinds(&mut late),
            ["added x", "synced", "added y", "deleted x"]
        );
        assert_eq!(cache.revision(), Some(5));
        assert!(cache.has_synced());
    }

    #[test]
    fn a_dropped_subscription_is_forgotten() {
        let cache: Cache<ConfigMap> = Cache::new(Vec::new());
        let subscription = cache.subscribe();
        assert!(cache.has_subscribers());
        drop(subscription);
        cache.replace(vec![map("x", 2)], 3);
        assert!(!cache.has_subscribers());
    }
}
