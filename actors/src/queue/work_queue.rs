//! [`WorkQueue`]: the async shell over [`QueueState`]. It reads the clock, wakes workers when
//! a key is added or a delayed one comes due, and can be shared (it is `Clone`) by an
//! informer's handlers, an actix actor and any number of tokio worker tasks.

use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::state::QueueState;

/// A shared work queue of keys (see [`QueueState`] for its rules). Workers loop on
/// [`WorkQueue::next`], process the key, then call [`WorkQueue::forget`] on success or
/// [`WorkQueue::add_rate_limited`] on failure, and always [`WorkQueue::done`].
#[derive(Debug)]
pub struct WorkQueue<K> {
    shared: Arc<Shared<K>>,
}

#[derive(Debug)]
struct Shared<K> {
    state: Mutex<QueueState<K>>,
    changed: Notify,
    /// Shows how many keys are ready, after every change (see [`WorkQueue::report_depth`]).
    depth: OnceLock<Gauge>,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K: Eq + Hash + Clone> Default for WorkQueue<K> {
    fn default() -> Self {
        Self::new(QueueState::default())
    }
}

impl<K: Eq + Hash + Clone> WorkQueue<K> {
    /// A queue starting from `state` (e.g. one with its own backoff).
    pub fn new(state: QueueState<K>) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                changed: Notify::new(),
                depth: OnceLock::new(),
            }),
        }
    }

    /// Keeps `gauge` at the number of ready keys from now on (a queue reports to one gauge;
    /// later ones are ignored).
    pub fn report_depth(&self, gauge: Gauge) {
        gauge.set(i64::try_from(self.len()).unwrap_or(i64::MAX));
        let _ = self.shared.depth.set(gauge);
    }

    pub fn add(&self, key: K) {
        self.change(|state, _| state.add(key));
    }

    /// Adds `key` once `delay` has passed (`requeue_after`).
    pub fn add_after(&self, key: K, delay: Duration) {
        self.change(|state, now| state.add_after(key, delay, now));
    }

    /// Adds `key` after its backoff (it failed once more); returns the delay chosen.
    pub fn add_rate_limited(&self, key: K) -> Duration {
        self.change(|state, now| state.add_rate_limited(key, now))
    }

    /// `key` succeeded: its backoff starts again from the base delay.
    pub fn forget(&self, key: &K) {
        self.lock().forget(key);
    }

    /// How many times in a row `key` failed.
    pub fn failures(&self, key: &K) -> u32 {
        self.lock().failures(key)
    }

    /// The worker is finished with `key` (whether it succeeded or not).
    pub fn done(&self, key: &K) {
        self.change(|state, _| state.done(key));
    }

    /// Stops the queue: new keys are ignored, waiting ones dropped, and [`WorkQueue::next`]
    /// answers `None` once the ready keys are handed out.
    pub fn shut_down(&self) {
        self.change(|state, _| state.shut_down());
    }

    /// How many keys are ready now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The next key to process, waiting until one is ready; `None` once the queue is shut
    /// down and drained.
    pub async fn next(&self) -> Option<K> {
        loop {
            // Registered before looking, so a change between the look and the wait wakes us.
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let wake_at = {
                let mut state = self.lock();
                if let Some(key) = state.pop(Instant::now().into_std()) {
                    self.show_depth(&state);
                    return Some(key);
                }
                if state.is_shut_down() {
                    return None;
                }
                state.next_ready_at()
            };
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(Instant::from_std(at)) => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    fn change<T>(&self, change: impl FnOnce(&mut QueueState<K>, std::time::Instant) -> T) -> T {
        let outcome = {
            let mut state = self.lock();
            let outcome = change(&mut state, Instant::now().into_std());
            self.show_depth(&state);
            outcome
        };
        self.shared.changed.notify_waiters();
        outcome
    }

    fn show_depth(&self, state: &QueueState<K>) {
        if let Some(gauge) = self.shared.depth.get() {
            gauge.set(i64::try_from(state.len()).unwrap_or(i64::MAX));
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState<K>> {
        // The state stays consistent across a panicking worker: every change is one call.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_worker_waits_for_a_key_and_wakes_when_one_is_added() {
        let queue = WorkQueue::default();
        let worker = tokio::spawn({
            let queue = queue.clone();
            async move { queue.next().await }
        });
        tokio::task::yield_now().await;
        assert!(!worker.is_finished());
        queue.add("a");
        assert_eq!(worker.await.ok().flatten(), Some("a"));
    }

    #[tokio::test]
    async fn a_requeued_key_comes_back_after_its_delay() {
        let queue = WorkQueue::default();
        let start = Instant::now();
        queue.add_after("a", Duration::from_millis(30));
        assert_eq!(queue.next().await, Some("a"));
        assert!(
            start.elapsed() >= Duration::from_millis(30),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn a_failing_key_comes_back_after_its_backoff_and_not_before_done() {
        let queue = WorkQueue::default();
        queue.add("a");
        let key = queue.next().await.expect("a key");
        let start = Instant::now();
        assert_eq!(queue.add_rate_limited(key), Duration::from_millis(5));
        let again = tokio::spawn({
            let queue = queue.clone();
            async move { queue.next().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !again.is_finished(),
            "handed out while still being processed"
        );
        queue.done(&key);
        assert_eq!(again.await.ok().flatten(), Some("a"));
        assert!(start.elapsed() >= Duration::from_millis(5));
    }

    #[tokio::test]
    async fn shutting_down_drains_ready_keys_then_ends_every_worker() {
        let queue = WorkQueue::default();
        let idle = tokio::spawn({
            let queue = queue.clone();
            async move { queue.next().await }
        });
        tokio::task::yield_now().await;
        queue.shut_down();
        assert_eq!(idle.await.ok().flatten(), None::<&str>);
        let queue = WorkQueue::default();
        queue.add("a");
        queue.shut_down();
        assert_eq!(queue.next().await, Some("a"));
        assert_eq!(queue.next().await, None);
    }
}
