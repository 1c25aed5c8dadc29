//! The work queue's state, pure: which keys are ready, which are being processed, which wait
//! for a time, and how long failing keys back off. Every operation that depends on time takes
//! `now`; the async shell ([`super::WorkQueue`]) owns the clock and the waiting.
//!
//! The rules are client-go's workqueue: a key is handed out once however often it was added
//! while it waited (de-duplication); a key added again while it is being processed is handed
//! out again only after [`QueueState::done`], so no two workers ever hold the same key; a
//! delayed key becomes ready at its time, the earliest of its delays winning.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

use super::backoff::Backoff;

#[derive(Debug, Clone)]
pub struct QueueState<K> {
    /// Ready keys in the order they became ready; each at most once.
    ready: VecDeque<K>,
    /// Keys to hand out: those in `ready`, and those processed now that were added again.
    dirty: HashSet<K>,
    processing: HashSet<K>,
    /// Keys waiting for a time, by (time, arrival), and each waiting key's time.
    waiting: BTreeMap<(Instant, u64), K>,
    waiting_until: HashMap<K, (Instant, u64)>,
    arrivals: u64,
    backoff: Backoff<K>,
    shut_down: bool,
}

impl<K: Eq + Hash + Clone> Default for QueueState<K> {
    fn default() -> Self {
        Self::new(Backoff::default())
    }
}

impl<K: Eq + Hash + Clone> QueueState<K> {
    pub fn new(backoff: Backoff<K>) -> Self {
        Self {
            ready: VecDeque::new(),
            dirty: HashSet::new(),
            processing: HashSet::new(),
            waiting: BTreeMap::new(),
            waiting_until: HashMap::new(),
            arrivals: 0,
            backoff,
            shut_down: false,
        }
    }

    /// Makes `key` ready, unless it is already queued; a key being processed becomes ready
    /// when its worker calls [`QueueState::done`]. Ignored after shutdown.
    pub fn add(&mut self, key: K) {
        if self.shut_down || self.dirty.contains(&key) {
            return;
        }
        self.dirty.insert(key.clone());
        if !self.processing.contains(&key) {
            self.ready.push_back(key);
        }
    }

    /// Adds `key` once `delay` has passed from `now`. A key already waiting keeps the earlier
    /// of its two times.
    pub fn add_after(&mut self, key: K, delay: Duration, now: Instant) {
        if self.shut_down {
            return;
        }
        if delay.is_zero() {
            self.add(key);
            return;
        }
        let at = now + delay;
        if let Some(&(earlier, _)) = self.waiting_until.get(&key) {
            if earlier <= at {
                return;
            }
        }
        self.arrivals += 1;
        let slot = (at, self.arrivals);
        if let Some(old) = self.waiting_until.insert(key.clone(), slot) {
            self.waiting.remove(&old);
        }
        self.waiting.insert(slot, key);
    }

    /// Adds `key` after its backoff: one more failure in a row. Returns the delay chosen.
    pub fn add_rate_limited(&mut self, key: K, now: Instant) -> Duration {
        let delay = self.backoff.on_failure(&key);
        self.add_after(key, delay, now);
        delay
    }

    /// `key` succeeded: its backoff starts again from the base delay. It does not remove the
    /// key from the queue.
    pub fn forget(&mut self, key: &K) {
        self.backoff.forget(key);
    }

    /// How many times in a row `key` was re-added after failing.
    pub fn failures(&self, key: &K) -> u32 {
        self.backoff.failures(key)
    }

    /// The next ready key at `now` (delayed keys whose time has come become ready first, in
    /// the order of their times); the caller processes it and then calls `done`.
    pub fn pop(&mut self, now: Instant) -> Option<K> {
        self.promote(now);
        let key = self.ready.pop_front()?;
        self.dirty.remove(&key);
        self.processing.insert(key.clone());
        Some(key)
    }

    /// The worker finished with `key`: if it was added meanwhile, it is ready again.
    pub fn done(&mut self, key: &K) {
        if self.processing.remove(key) && self.dirty.contains(key) {
            self.ready.push_back(key.clone());
        }
    }

    /// When the earliest waiting key becomes ready (none: no key waits).
    pub fn next_ready_at(&self) -> Option<Instant> {
        self.waiting.keys().next().map(|&(at, _)| at)
    }

    /// New keys are ignored from now on and waiting ones dropped; ready ones are still
    /// handed out.
    pub fn shut_down(&mut self) {
        self.shut_down = true;
        self.waiting.clear();
        self.waiting_until.clear();
    }

    pub fn is_shut_down(&self) -> bool {
        self.shut_down
    }

    /// How many keys are ready (not counting waiting or processed ones).
    pub fn len(&self) -> usize {
        self.ready.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ready.is_empty()
    }

    fn promote(&mut self, now: Instant) {
        while let Some(entry) = self.waiting.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            self.waiting_until.remove(&key);
            self.add(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn drain(queue: &mut QueueState<&'static str>, now: Instant) -> Vec<&'static str> {
        std::iter::from_fn(|| queue.pop(now)).collect()
    }

    #[test]
    fn a_key_added_twice_is_handed_out_once_in_first_added_order() {
        let now = Instant::now();
        let mut queue = QueueState::default();
        for key in ["a", "b", "a", "c", "b"] {
            queue.add(key);
        }
        assert_eq!(queue.len(), 3);
        assert_eq!(drain(&mut queue, now), vec!["a", "b", "c"]);
    }

    #[test]
    fn a_key_added_while_processed_is_handed_out_again_only_after_done() {
        let now = Instant::now();
        let mut queue = QueueState::default();
        queue.add("a");
        assert_eq!(queue.pop(now), Some("a"));
        queue.add("a");
        queue.add("a");
        assert_eq!(
            queue.pop(now),
            None,
            "no second worker gets a key being processed"
        );
        queue.done(&"a");
        assert_eq!(drain(&mut queue, now), vec!["a"], "handed out once more");
        queue.done(&"a");
        assert_eq!(
            queue.pop(now),
            None,
            "done without a new add queues nothing"
        );
    }

    #[test]
    fn failures_back_off_doubling_until_forgotten() {
        let start = Instant::now();
        let mut queue = QueueState::default();
        let delays: Vec<_> = (0..4).map(|_| queue.add_rate_limited("a", start)).collect();
        assert_eq!(delays, vec![ms(5), ms(10), ms(20), ms(40)]);
        // Waiting keeps the earliest time: 5 ms.
        assert_eq!(queue.next_ready_at(), Some(start + ms(5)));
        assert_eq!(queue.failures(&"a"), 4);
        queue.forget(&"a");
        assert_eq!(queue.failures(&"a"), 0);
        assert_eq!(queue.add_rate_limited("a", start), ms(5));
    }

    #[test]
    fn backoff_is_capped_at_a_thousand_seconds() {
        let now = Instant::now();
        let mut queue = QueueState::default();
        let last = (0..30).map(|_| queue.add_rate_limited("a", now)).last();
        assert_eq!(last, Some(Duration::from_secs(1_000)));
    }

    #[test]
    fn delayed_keys_become_ready_at_their_time_in_time_order() {
        let start = Instant::now();
        let mut queue = QueueState::default();
        queue.add_after("late", ms(30), start);
        queue.add_after("early", ms(10), start);
        queue.add_after("middle", ms(20), start);
        queue.add_after("tie", ms(20), start);
        assert_eq!(queue.pop(start + ms(9)), None);
        assert_eq!(queue.next_ready_at(), Some(start + ms(10)));
        assert_eq!(
            queue.pop(start + ms(10)),
            Some("early"),
            "ready at its exact time"
        );
        assert_eq!(
            drain(&mut queue, start + ms(25)),
            vec!["middle", "tie"],
            "equal times in arrival order"
        );
        assert_eq!(drain(&mut queue, start + ms(30)), vec!["late"]);
        assert_eq!(queue.next_ready_at(), None);
    }

    #[test]
    fn a_waiting_key_keeps_its_earliest_time_and_joins_a_ready_copy_once() {
        let start = Instant::now();
        let mut queue = QueueState::default();
        queue.add_after("a", ms(10), start);
        queue.add_after("a", ms(50), start);
        assert_eq!(queue.next_ready_at(), Some(start + ms(10)));
        queue.add_after("a", ms(5), start);
        assert_eq!(
            queue.next_ready_at(),
            Some(start + ms(5)),
            "an earlier time wins"
        );
        queue.add("a");
        assert_eq!(drain(&mut queue, start + ms(5)), vec!["a"]);
        assert_eq!(queue.next_ready_at(), None);
    }

    #[test]
    fn a_zero_delay_is_an_add() {
        let now = Instant::now();
        let mut queue = QueueState::default();
        queue.add_after("a", Duration::ZERO, now);
        assert_eq!(queue.pop(now), Some("a"));
    }

    #[test]
    fn after_shutdown_ready_keys_drain_and_new_or_waiting_ones_are_dropped() {
        let now = Instant::now();
        let mut queue = QueueState::default();
        queue.add("ready");
        queue.add_after("waiting", ms(1), now);
        queue.shut_down();
        queue.add("new");
        queue.add_after("later", ms(1), now);
        assert!(queue.is_shut_down());
        assert_eq!(drain(&mut queue, now + ms(10)), vec!["ready"]);
        assert_eq!(queue.next_ready_at(), None);
    }
}
