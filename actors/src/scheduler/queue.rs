//! The scheduling queue, as kube-scheduler's `PriorityQueue`: pods waiting for a node, in three
//! places. Pure: time is an argument.
//!
//! ```text
//!  add ─► active (highest priority first, then first come) ─► pop ─► in flight
//!  in flight ── bound ──────────► done (gone from the queue)
//!            ── bind failed ────► backoff (1 s doubling to 10 s per pod) ─► active when due
//!            ── fits nowhere ───► unschedulable (parked)
//!  unschedulable ── a cluster event that may help (node added or changed, pod deleted)
//!                   or 60 s parked ─► backoff if still backing off, else active
//! ```
//!
//! A pod updated while in flight is looked at again once its attempt ends, so a change made
//! during the attempt (a toleration added) is not lost. When no pod is active, a pod an
//! event moved to backoff goes before its backoff ends (kube-scheduler's
//! SchedulerPopFromBackoffQ): the node it waited for is used at once, not a second later.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use crate::informer::ObjectKey;
use crate::queue::backoff::Backoff;

/// kube-scheduler's `podInitialBackoffDuration`.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// kube-scheduler's `podMaxBackoffDuration`.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a pod stays parked as unschedulable without an event that may help it
/// (kube-scheduler's `podMaxInUnschedulablePodsDuration`).
pub const MAX_PARKED: Duration = Duration::from_secs(60);

/// Where a pod is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Waiting its turn; `seq` matches its entry in the heap.
    Active { seq: u64 },
    /// Failed; waits until `until`. `early`: moved here by an event that may help it, so it
    /// may go before its time when nothing else is waiting (kube-scheduler's
    /// SchedulerPopFromBackoffQ); a pod backing off after an error waits its time out.
    Backoff { until: Instant, early: bool },
    /// Fits nowhere; parked since `since`, until an event may help.
    Unschedulable { since: Instant },
    /// Taken by [`SchedulingQueue::pop`]; `again`: updated meanwhile, look again.
    InFlight { again: bool },
}

#[derive(Debug, Clone)]
struct Waiting {
    place: Place,
    priority: i32,
    /// When its current backoff ends (after a failure), so a parked pod moved by an event
    /// still waits out its backoff.
    backoff_until: Option<Instant>,
}

/// One turn in the active heap: higher priority first, then the earlier arrival.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Turn {
    priority: i32,
    seq: u64,
    key: ObjectKey,
}

impl Ord for Turn {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The pods waiting to be scheduled.
#[derive(Debug)]
pub struct SchedulingQueue {
    pods: HashMap<ObjectKey, Waiting>,
    /// Turns of active pods; stale turns (the pod moved or left) are skipped when popped.
    active: BinaryHeap<Turn>,
    /// When each pod backing off is due, earliest first; stale entries are skipped.
    backing_off: BinaryHeap<Reverse<(Instant, ObjectKey)>>,
    next_seq: u64,
    backoff: Backoff<ObjectKey>,
}

impl Default for SchedulingQueue {
    fn default() -> Self {
        Self {
            pods: HashMap::new(),
            active: BinaryHeap::new(),
            backing_off: BinaryHeap::new(),
            next_seq: 0,
            backoff: Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF),
        }
    }
}

impl SchedulingQueue {
    /// A pending pod seen (added or updated) with `priority`. A new pod becomes active; a
    /// parked one is looked at again (its change may make it fit); one in flight is looked
    /// at again after its attempt; one active or backing off keeps its place.
    pub fn add(&mut self, key: ObjectKey, priority: i32, now: Instant) {
        match self.pods.get_mut(&key).map(|w| w.place) {
            None => {
                self.pods.insert(
                    key.clone(),
                    Waiting {
                        place: Place::InFlight { again: false },
                        priority,
                        backoff_until: None,
                    },
                );
                self.activate(&key, now);
            }
            Some(Place::InFlight { .. }) => {
                if let Some(waiting) = self.pods.get_mut(&key) {
                    waiting.priority = priority;
                    waiting.place = Place::InFlight { again: true };
                }
            }
            Some(Place::Unschedulable { .. }) => {
                if let Some(waiting) = self.pods.get_mut(&key) {
                    waiting.priority = priority;
                }
                self.activate(&key, now);
            }
            Some(Place::Active { .. } | Place::Backoff { .. }) => {
                if let Some(waiting) = self.pods.get_mut(&key) {
                    waiting.priority = priority;
                }
            }
        }
    }

    /// The pod is gone, bound by someone else, or no longer ours.
    pub fn remove(&mut self, key: &ObjectKey) {
        self.pods.remove(key);
        self.backoff.forget(key);
    }

    /// The next pod to schedule, if one is due: backoffs that ended become active first.
    /// The pod is in flight until [`done`](Self::done), [`failed`](Self::failed) or
    /// [`unschedulable`](Self::unschedulable).
    pub fn pop(&mut self, now: Instant) -> Option<ObjectKey> {
        self.promote_backoffs(now);
        while let Some(turn) = self.active.pop() {
            let Some(waiting) = self.pods.get_mut(&turn.key) else {
                continue;
            };
            if waiting.place != (Place::Active { seq: turn.seq }) {
                continue;
            }
            waiting.place = Place::InFlight { again: false };
            return Some(turn.key);
        }
        self.pop_early()
    }

    /// The pod due first among those an event moved to backoff, taken before its time.
    fn pop_early(&mut self) -> Option<ObjectKey> {
        let (key, _) = self
            .pods
            .iter()
            .filter_map(|(key, w)| match w.place {
                Place::Backoff { until, early: true } => Some((key, until)),
                _ => None,
            })
            .min_by_key(|(_, until)| *until)?;
        let key = key.clone();
        if let Some(waiting) = self.pods.get_mut(&key) {
            waiting.place = Place::InFlight { again: false };
        }
        Some(key)
    }

    /// The pod was bound: it leaves the queue.
    pub fn done(&mut self, key: &ObjectKey) {
        self.remove(key);
    }

    /// The attempt failed for a reason that may pass (a bind error): the pod backs off.
    pub fn failed(&mut self, key: &ObjectKey, now: Instant) {
        let delay = self.backoff.on_failure(key);
        let Some(waiting) = self.pods.get_mut(key) else {
            return;
        };
        let until = now + delay;
        waiting.backoff_until = Some(until);
        self.back_off(key, until, false);
    }

    /// The pod fits on no node: it is parked until an event may help, or, if it was updated
    /// during the attempt, backs off and is tried again.
    pub fn unschedulable(&mut self, key: &ObjectKey, now: Instant) {
        let delay = self.backoff.on_failure(key);
        let Some(waiting) = self.pods.get_mut(key) else {
            return;
        };
        let until = now + delay;
        waiting.backoff_until = Some(until);
        match waiting.place {
            Place::InFlight { again: true } => self.back_off(key, until, true),
            _ => waiting.place = Place::Unschedulable { since: now },
        }
    }

    /// Something changed that may let parked pods fit (a node added or changed, a pod
    /// deleted): every parked pod moves to backoff if its backoff has not ended, else to
    /// active.
    pub fn move_parked(&mut self, now: Instant) {
        let parked: Vec<ObjectKey> = self
            .pods
            .iter()
            .filter(|(_, w)| matches!(w.place, Place::Unschedulable { .. }))
            .map(|(k, _)| k.clone())
            .collect();
        for key in parked {
            self.unpark(&key, now);
        }
    }

    /// Parked pods that waited [`MAX_PARKED`] are tried again (kube-scheduler's periodic
    /// flush), and backoffs that ended become active.
    pub fn flush(&mut self, now: Instant) {
        let stale: Vec<ObjectKey> = self
            .pods
            .iter()
            .filter(|(_, w)| {
                matches!(w.place, Place::Unschedulable { since } if now.saturating_duration_since(since) >= MAX_PARKED)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            self.unpark(&key, now);
        }
        self.promote_backoffs(now);
    }

    /// The earliest time a pod backing off becomes due, if any pod is backing off.
    pub fn next_due(&mut self) -> Option<Instant> {
        self.drop_stale_backoffs();
        self.backing_off.peek().map(|Reverse((until, _))| *until)
    }

    /// Pods in the queue, by place: (active, backing off, parked, in flight).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let mut counts = (0, 0, 0, 0);
        for waiting in self.pods.values() {
            match waiting.place {
                Place::Active { .. } => counts.0 += 1,
                Place::Backoff { .. } => counts.1 += 1,
                Place::Unschedulable { .. } => counts.2 += 1,
                Place::InFlight { .. } => counts.3 += 1,
            }
        }
        counts
    }

    /// Whether the pod is in the queue, in any place.
    pub fn is_known(&self, key: &ObjectKey) -> bool {
        self.pods.contains_key(key)
    }

    fn unpark(&mut self, key: &ObjectKey, now: Instant) {
        let Some(waiting) = self.pods.get_mut(key) else {
            return;
        };
        match waiting.backoff_until {
            Some(until) if until > now => self.back_off(key, until, true),
            _ => self.activate(key, now),
        }
    }

    fn back_off(&mut self, key: &ObjectKey, until: Instant, early: bool) {
        if let Some(waiting) = self.pods.get_mut(key) {
            waiting.place = Place::Backoff { until, early };
            self.backing_off.push(Reverse((until, key.clone())));
        }
    }

    /// Pops entries of the backoff heap that no longer describe their pod.
    fn drop_stale_backoffs(&mut self) {
        while let Some(Reverse((until, key))) = self.backing_off.peek() {
            let current = self
                .pods
                .get(key)
                .is_some_and(|w| matches!(w.place, Place::Backoff { until: u, .. } if u == *until));
            if current {
                return;
            }
            self.backing_off.pop();
        }
    }

    fn activate(&mut self, key: &ObjectKey, _now: Instant) {
        let Some(waiting) = self.pods.get_mut(key) else {
            return;
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        waiting.place = Place::Active { seq };
        self.active.push(Turn {
            priority: waiting.priority,
            seq,
            key: key.clone(),
        });
    }

    fn promote_backoffs(&mut self, now: Instant) {
        loop {
            self.drop_stale_backoffs();
            match self.backing_off.peek() {
                Some(Reverse((until, _))) if *until <= now => {}
                _ => return,
            }
            if let Some(Reverse((_, key))) = self.backing_off.pop() {
                self.activate(&key, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("default", name)
    }

    #[test]
    fn higher_priority_goes_first_then_first_come() {
        let now = Instant::now();
        let mut queue = SchedulingQueue::default();
        queue.add(key("a"), 0, now);
        queue.add(key("b"), 10, now);
        queue.add(key("c"), 0, now);
        queue.add(key("d"), 10, now);
        let order: Vec<_> = std::iter::from_fn(|| queue.pop(now))
            .map(|k| k.name)
            .collect();
        assert_eq!(order, ["b", "d", "a", "c"]);
    }

    #[test]
    fn a_failed_pod_backs_off_one_second_doubling_to_ten() {
        let t0 = Instant::now();
        let mut queue = SchedulingQueue::default();
        queue.add(key("a"), 0, t0);
        let mut now = t0;
        for expected in [1, 2, 4, 8, 10, 10] {
            assert_eq!(queue.pop(now), Some(key("a")));
            queue.failed(&key("a"), now);
            let due = now + Duration::from_secs(expected);
            assert_eq!(queue.next_due(), Some(due));
            assert_eq!(queue.pop(due - Duration::from_millis(1)), None);
            now = due;
        }
        assert_eq!(queue.pop(now), Some(key("a")));
        queue.done(&key("a"));
        queue.add(key("a"), 0, now);
        assert_eq!(queue.pop(now), Some(key("a")));
        queue.failed(&key("a"), now);
        assert_eq!(
            queue.next_due(),
            Some(now + INITIAL_BACKOFF),
            "a pod bound once starts its backoff again"
        );
    }

    #[test]
    fn a_parked_pod_waits_for_an_event_and_its_backoff() {
        let t0 = Instant::now();
        let mut queue = SchedulingQueue::default();
        queue.add(key("big"), 0, t0);
        assert_eq!(queue.pop(t0), Some(key("big")));
        queue.unschedulable(&key("big"), t0);
        let later = t0 + Duration::from_secs(5);
        assert_eq!(queue.pop(later), None, "parked: no retry without an event");
        assert_eq!(queue.counts(), (0, 0, 1, 0));
        queue.move_parked(later);
        assert_eq!(queue.pop(later), Some(key("big")), "a node came: try again");

        // Parked again right away: an event within its backoff moves it to backoff, from
        // where it goes early only when no pod is active.
        queue.unschedulable(&key("big"), later);
        let soon = later + Duration::from_millis(500);
        queue.move_parked(soon);
        assert_eq!(queue.counts(), (0, 1, 0, 0));
        queue.add(key("other"), 0, soon);
        assert_eq!(queue.pop(soon), Some(key("other")));
        assert_eq!(
            queue.pop(soon),
            Some(key("big")),
            "nothing else waits: early"
        );
        assert_eq!(queue.pop(soon), None);
    }

    #[test]
    fn a_pod_backing_off_after_an_error_never_goes_early() {
        let t0 = Instant::now();
        let mut queue = SchedulingQueue::default();
        queue.add(key("a"), 0, t0);
        queue.pop(t0);
        queue.failed(&key("a"), t0);
        queue.move_parked(t0);
        assert_eq!(queue.pop(t0 + Duration::from_millis(999)), None);
        assert_eq!(queue.pop(t0 + INITIAL_BACKOFF), Some(key("a")));
    }

    #[test]
    fn parked_pods_are_flushed_after_sixty_seconds() {
        let t0 = Instant::now();
        let mut queue = SchedulingQueue::default();
        queue.add(key("a"), 0, t0);
        queue.pop(t0);
        queue.unschedulable(&key("a"), t0);
        queue.flush(t0 + Duration::from_secs(59));
        assert_eq!(queue.pop(t0 + Duration::from_secs(59)), None);
        queue.flush(t0 + MAX_PARKED);
        assert_eq!(queue.pop(t0 + MAX_PARKED), Some(key("a")));
    }

    #[test]
    fn an_update_during_the_attempt_is_looked_at_again() {
        let t0 = Instant::now();
        let mut queue = SchedulingQueue::default();
        queue.add(key("a"), 0, t0);
        queue.pop(t0);
        queue.add(key("a"), 0, t0);
        queue.unschedulable(&key("a"), t0);
        assert_eq!(
            queue.counts(),
            (0, 1, 0, 0),
            "not parked: it changed meanwhile"
        );

        // An update to a parked pod makes it active.
        let t1 = t0 + Duration::from_secs(3);
        assert_eq!(queue.pop(t1), Some(key("a")));
        queue.unschedulable(&key("a"), t1);
        queue.add(key("a"), 0, t1);
        assert_eq!(queue.pop(t1), Some(key("a")));
    }

    #[test]
    fn removed_pods_never_come_out() {
        let now = Instant::now();
        let mut queue = SchedulingQueue::default();
        queue.add(key("a"), 0, now);
        queue.add(key("b"), 0, now);
        queue.remove(&key("a"));
        assert_eq!(queue.pop(now), Some(key("b")));
        assert_eq!(queue.pop(now), None);
        queue.add(key("b"), 0, now);
        assert_eq!(queue.pop(now), None, "in flight: not twice");
    }
}
