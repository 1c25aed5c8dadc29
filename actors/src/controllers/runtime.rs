//! What every controller's shell shares: the [`Controller`] trait a controller implements
//! (its key, its work queue, how one key is synced, which caches it reads) and the one actor
//! that runs any of them ([`ControllerActor`]): it subscribes to the caches, hands each event
//! to the controller to turn into keys, holds the workers until every cache has synced
//! (client-go's `WaitForCacheSync`: a sync on a cache still filling sees too little and acts
//! twice), runs the worker loop over the queue, and stops on [`Stop`].
//!
//! ```text
//!  caches ─► Watched<K> ─► Watches<K>::on_event (keys ─► queue)
//!                          every cache Synced ─► `workers` × work(queue, sync)
//!  Stop ─► actor stops ─► queue shut down; the workers (actor items) are dropped mid-sync:
//!         the fence refuses whatever a deposed term still had in flight
//! ```

use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::time::Duration;

use actix::prelude::*;
use futures::StreamExt;
use rudder_proto::client::ClientError;
use rudder_proto::metrics::observe;

use super::metrics::{ControllerFigures, ControllerMetrics};
use super::Stop;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector as ApiLabelSelector, ObjectMeta,
};
use rudder_proto::objects::selector::LabelSelector;

use crate::informer::{ApiObject, Cache, Event, ObjectKey};
use crate::queue::WorkQueue;

/// A controller's logic as the shared actor runs it. Clones share one state (the caches, the
/// queue, expectations): each worker holds a clone.
pub trait Controller: Clone + Unpin + Send + 'static {
    /// What the work queue holds.
    type Key: Eq + Hash + Clone + Display + Send + Unpin + 'static;

    /// The controller's name in logs and `--controllers`.
    const NAME: &'static str;

    fn queue(&self) -> &WorkQueue<Self::Key>;

    /// Subscribes the actor to every cache the controller reads (`caches.watch(&cache)`),
    /// each once; the workers start when all of them have synced.
    fn watch(&self, caches: &mut Subscriptions<'_, Self>);

    /// One reconcile of `key`, carried out; returns when to look again.
    fn sync(&self, key: Self::Key) -> impl Future<Output = Result<Option<Duration>, ClientError>>;
}

/// How a controller turns one cache's events into keys (and expectations observed).
pub trait Watches<K>: Controller {
    fn on_event(&self, event: &Event<K>);
}

/// One cache's event, tagged with the cache's place in the sync gate.
pub struct Watched<K> {
    cache: usize,
    event: Event<K>,
}

impl<K: 'static> Message for Watched<K> {
    type Result = ();
}

/// Where [`Controller::watch`] subscribes the actor.
pub struct Subscriptions<'a, C: Controller> {
    ctx: &'a mut Context<ControllerActor<C>>,
    count: usize,
}

impl<C: Controller> Subscriptions<'_, C> {
    /// Feeds every event of `cache` to `C::on_event`.
    pub fn watch<K: ApiObject>(&mut self, cache: &Cache<K>)
    where
        C: Watches<K>,
    {
        let which = self.count;
        self.count += 1;
        self.ctx
            .add_message_stream(cache.subscribe().map(move |event| Watched {
                cache: which,
                event,
            }));
    }
}

/// The actor running one controller of type `C` for one term of leadership.
pub struct ControllerActor<C: Controller> {
    controller: C,
    workers: usize,
    gate: SyncGate,
    figures: ControllerFigures,
}

impl<C: Controller> ControllerActor<C> {
    /// Runs `controller` with `workers` syncs at a time (at least one), its queue and syncs
    /// measured in `metrics`.
    pub fn new(controller: C, workers: usize, metrics: &ControllerMetrics) -> Self {
        let figures = metrics.of(C::NAME);
        controller.queue().report_depth(figures.queue_depth.clone());
        Self {
            controller,
            workers: workers.max(1),
            gate: SyncGate::new(0),
            figures,
        }
    }
}

impl<C: Controller> Actor for ControllerActor<C> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let controller = self.controller.clone();
        let mut caches = Subscriptions { ctx, count: 0 };
        controller.watch(&mut caches);
        self.gate = SyncGate::new(caches.count);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.controller.queue().shut_down();
        // The term ended: nothing waits here now (the next term's queue reports its own).
        self.figures.queue_depth.set(0);
    }
}

impl<C: Controller> Handler<Stop> for ControllerActor<C> {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl<C, K> Handler<Watched<K>> for ControllerActor<C>
where
    C: Watches<K>,
    K: 'static,
{
    type Result = ();

    fn handle(&mut self, watched: Watched<K>, ctx: &mut Self::Context) {
        if let Event::Synced = watched.event {
            if self.gate.synced(watched.cache) {
                for _ in 0..self.workers {
                    let controller = self.controller.clone();
                    let queue = controller.queue().clone();
                    let figures = self.figures.clone();
                    let worker = work(queue, C::NAME, figures, move |key| {
                        let controller = controller.clone();
                        async move { controller.sync(key).await }
                    });
                    ctx.spawn(worker.into_actor(self));
                }
            }
        }
        self.controller.on_event(&watched.event);
    }
}

/// The controllers in `cache` whose selector (from `selector_of`; a missing, invalid or
/// select-everything one selects nothing) matches the labels of `object` in its namespace:
/// those that may adopt an orphan.
pub fn selecting<K: ApiObject>(
    cache: &Cache<K>,
    object: &ObjectMeta,
    selector_of: impl Fn(&K) -> Option<&ApiLabelSelector>,
) -> Vec<ObjectKey> {
    let namespace = object.namespace.as_deref().unwrap_or_default();
    let empty = BTreeMap::new();
    let labels = object.labels.as_ref().unwrap_or(&empty);
    cache
        .in_namespace(namespace)
        .into_iter()
        .filter(|controller| {
            selector_of(controller)
                .and_then(|s| LabelSelector::from_api(s).ok())
                .is_some_and(|s| !s.is_everything() && s.matches(labels))
        })
        .map(|controller| ObjectKey::of(controller.metadata()))
        .collect()
}

/// Which of a controller's caches have applied their first list.
#[derive(Debug, Clone)]
pub struct SyncGate {
    synced: Vec<bool>,
    opened: bool,
}

impl SyncGate {
    /// A gate over `caches` caches.
    pub fn new(caches: usize) -> Self {
        Self {
            synced: vec![false; caches],
            opened: false,
        }
    }

    /// Cache `which` has synced: true exactly once, when the last of them has.
    pub fn synced(&mut self, which: usize) -> bool {
        if let Some(flag) = self.synced.get_mut(which) {
            *flag = true;
        }
        if self.opened || !self.synced.iter().all(|s| *s) {
            return false;
        }
        self.opened = true;
        true
    }
}

/// Takes keys from `queue` until it shuts down: a sync that succeeds is forgotten by the
/// backoff (and looked at again when it asks), one that fails is retried after the key's
/// backoff. `what` names the controller in the logs; each sync is timed, and each failure
/// counted, in `figures`.
pub async fn work<K, F, Fut>(
    queue: WorkQueue<K>,
    what: &'static str,
    figures: ControllerFigures,
    sync: F,
) where
    K: Eq + Hash + Clone + Display,
    F: Fn(K) -> Fut,
    Fut: Future<Output = Result<Option<Duration>, ClientError>>,
{
    while let Some(key) = queue.next().await {
        let started = std::time::Instant::now();
        let synced = sync(key.clone()).await;
        observe(&figures.reconcile_duration, started.elapsed());
        match synced {
            Ok(requeue) => {
                queue.forget(&key);
                if let Some(after) = requeue {
                    queue.add_after(key.clone(), after);
                }
            }
            Err(error) => {
                figures.reconcile_errors.inc();
                let delay = queue.add_rate_limited(key.clone());
                if error.is_fence_refused() {
                    tracing::info!(controller = what, %key, "the controller lease is lost; this write was refused");
                } else {
                    tracing::warn!(controller = what, %key, %error, ?delay, "syncing; retrying");
                }
            }
        }
        queue.done(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_opens_once_when_the_last_cache_syncs() {
        let mut gate = SyncGate::new(3);
        assert!(!gate.synced(0));
        assert!(!gate.synced(0), "the same cache twice is not all");
        assert!(!gate.synced(2));
        assert!(gate.synced(1));
        assert!(!gate.synced(1), "a relist's Synced does not open it again");
    }
}
