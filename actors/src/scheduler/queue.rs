//! The scheduling queue, as kube-scheduler's `PriorityQueue`: pods waiting for a node, in three
//! places. Pure: time is an argument.
//!
//! ```text
//!  add ─► active (highest priority first, then first come) ─► pop ─► in flight
//!  in flight ── bound ──────────► done (gone from the queue)
//!            ── bind failed ────► backoff (1 s doubling to 10 s per pod) ─► active when due
//!            ── fits nowhere ───► unschedulable (parked, with the plugins that said no)
//!  unschedulable ── a cluster event that may help it (queueing hints: a node added or
//!                   changed helps every plugin; a pod gone frees resources, ports,
//!                   affinity and spread; a pod placed or relabelled changes affinity and
//!                   spread; a claim, volume or class changed helps VolumeBinding)
//!                   or 60 s parked ─► backoff if still backing off, else active
//! ```
//!
//! A pod updated while in flight is looked at again once its attempt ends, so a change made
//! during the attempt (a toleration added) is not lost. When no pod is active, a pod an
//! event moved to backoff goes before its backoff ends (kube-scheduler's
//! SchedulerPopFromBackoffQ): the node it waited for is used at once, not a second later.
//! Every place has its own index (heaps for turns and due times, a set for the parked), so
//! no step scans every waiting pod.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::time::{Duration, Instant};

use super::unfit::{
    INTER_POD_AFFINITY_PLUGIN, NODE_PORTS_PLUGIN, NODE_RESOURCES_FIT_PLUGIN,
    POD_TOPOLOGY_SPREAD_PLUGIN, VOLUME_BINDING_PLUGIN,
};
use crate::informer::ObjectKey;
use crate::queue::backoff::Backoff;

/// kube-scheduler's `podInitialBackoffDuration`.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// kube-scheduler's `podMaxBackoffDuration`.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a pod stays parked as unschedulable without an event that may help it
/// (kube-scheduler's `podMaxInUnschedulablePodsDuration`).
pub const MAX_PARKED: Duration = Duration::from_secs(60);

/// A change in the cluster that may let parked pods fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterEvent {
    /// A node was added, or its labels, taints, capacity or conditions changed.
    NodeChanged,
    /// A pod counted on a node was deleted or ended: its resources and ports are free.
    PodGone,
    /// A pod was bound, or a bound pod relabelled: affinity and spread counts changed.
    PodPlaced,
    /// A claim, volume or storage class was added or changed: claims may be bound now.
    VolumeChanged,
}

impl ClusterEvent {
    /// Whether the event may help a pod refused by `plugins` (kube-scheduler's queueing
    /// hints, coarsely).
    fn may_help(self, plugins: &BTreeSet<&'static str>) -> bool {
        let helped: &[&str] = match self {
            ClusterEvent::NodeChanged => return true,
            ClusterEvent::PodGone => &[
                NODE_RESOURCES_FIT_PLUGIN,
                NODE_PORTS_PLUGIN,
                INTER_POD_AFFINITY_PLUGIN,
                POD_TOPOLOGY_SPREAD_PLUGIN,
            ],
            ClusterEvent::PodPlaced => &[INTER_POD_AFFINITY_PLUGIN, POD_TOPOLOGY_SPREAD_PLUGIN],
            ClusterEvent::VolumeChanged => &[VOLUME_BINDING_PLUGIN],
        };
        helped.iter().any(|p| plugins.contains(p))
    }
}

/// Where a pod is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Waiting its turn; `seq` matches its entry in the heap.
    Active { seq: u64 },
    /// Failed; waits until `until`. `early`: moved here by an event that may help it, so it
    /// may go before its time when nothing else is waiting; a pod backing off after an error
    /// waits its time out.
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
    /// The plugins that refused it last.
    plugins: BTreeSet<&'static str>,
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

/// Due times of pods backing off, earliest first; an entry no longer matching its pod's
/// place is stale and skipped.
type DueHeap = BinaryHeap<Reverse<(Instant, ObjectKey)>>;

/// The pods waiting to be scheduled.
#[derive(Debug)]
pub struct SchedulingQueue {
    pods: HashMap<ObjectKey, Waiting>,
    /// Turns of active pods; stale turns (the pod moved or left) are skipped when popped.
    active: BinaryHeap<Turn>,
    /// Every pod backing off, by due time.
    backing_off: DueHeap,
    /// Pods backing off that may go early, by due time.
    early: DueHeap,
    parked: HashSet<ObjectKey>,
    next_seq: u64,
    backoff: Backoff<ObjectKey>,
}

impl Default for SchedulingQueue {
    fn default() -> Self {
        Self {
            pods: HashMap::new(),
            active: BinaryHeap::new(),
            backing_off: BinaryHeap::new(),
            early: BinaryHeap::new(),
            parked: HashSet::new(),
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
        let place = match self.pods.get_mut(&key) {
            None => {
                self.pods.insert(
                    key.clone(),
                    Waiting {
                        place: Place::InFlight { again: false },
                        priority,
                        backoff_until: None,
                        plugins: BTreeSet::new(),
                    },
                );
                None
            }
            Some(waiting) => {
                waiting.priority = priority;
                if let Place::InFlight { .. } = waiting.place {
                    waiting.place = Place::InFlight { again: true };
                }
                Some(waiting.place)
            }
        };
        match place {
            None => self.activate(&key, now),
            Some(Place::Unschedulable { .. }) => {
                self.parked.remove(&key);
                self.activate(&key, now);
            }
            Some(_) => {}
        }
    }

    /// The pod is gone, bound by someone else, or no longer ours.
    pub fn remove(&mut self, key: &ObjectKey) {
        self.pods.remove(key);
        self.parked.remove(key);
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
        while let Some(Reverse((until, key))) = self.early.pop() {
            let Some(waiting) = self.pods.get_mut(&key) else {
                continue;
            };
            if waiting.place == (Place::Backoff { until, early: true }) {
                waiting.place = Place::InFlight { again: false };
                return Some(key);
            }
        }
        None
    }

    /// Whether [`pop`](Self::pop) would give a pod now.
    pub fn has_due(&mut self, now: Instant) -> bool {
        self.promote_backoffs(now);
        self.drop_stale_turns();
        drop_stale(&mut self.early, &self.pods, |place, until| {
            place == Place::Backoff { until, early: true }
        });
        !self.active.is_empty() || !self.early.is_empty()
    }

    /// The pod was bound: it leaves the queue.
    pub fn done(&mut self, key: &ObjectKey) {
        self.remove(key);
    }

    /// The attempt failed for a reason that may pass (a bind error): the pod backs off.
    pub fn failed(&mut self, key: &ObjectKey, now: Instant) {
        let Some(until) = self.next_backoff(key, now) else {
            return;
        };
        self.back_off(key, until, false);
    }

    /// The pod fits on no node, refused by `plugins`: it is parked until an event may help,
    /// or, if it was updated during the attempt, backs off and is tried again.
    pub fn unschedulable(
        &mut self,
        key: &ObjectKey,
        plugins: BTreeSet<&'static str>,
        now: Instant,
    ) {
        let Some(until) = self.next_backoff(key, now) else {
            return;
        };
        let Some(waiting) = self.pods.get_mut(key) else {
            return;
        };
        waiting.plugins = plugins;
        if waiting.place == (Place::InFlight { again: true }) {
            self.back_off(key, until, true);
        } else {
            waiting.place = Place::Unschedulable { since: now };
            self.parked.insert(key.clone());
        }
    }

    /// `event` happened: every parked pod it may help moves to backoff if its backoff has
    /// not ended, else to active.
    pub fn move_parked(&mut self, event: ClusterEvent, now: Instant) {
        let helped: Vec<ObjectKey> = self
            .parked
            .iter()
            .filter(|key| {
                self.pods
                    .get(*key)
                    .is_some_and(|w| event.may_help(&w.plugins))
            })
            .cloned()
            .collect();
        for key in helped {
            self.unpark(&key, now);
        }
    }

    /// Parked pods that waited [`MAX_PARKED`] are tried again (kube-scheduler's periodic
    /// flush), and backoffs that ended become active.
    pub fn flush(&mut self, now: Instant) {
        let stale: Vec<ObjectKey> = self
            .parked
            .iter()
            .filter(|key| {
                self.pods.get(*key).is_some_and(|w| {
                    matches!(w.place, Place::Unschedulable { since }
                        if now.saturating_duration_since(since) >= MAX_PARKED)
                })
            })
            .cloned()
            .collect();
        for key in stale {
            self.unpark(&key, now);
        }
        self.promote_backoffs(now);
    }

    /// The earliest time a pod backing off becomes due, if any pod is backing off.
    pub fn next_due(&mut self) -> Option<Instant> {
        drop_stale(
            &mut self.backing_off,
            &self.pods,
            |place, until| matches!(place, Place::Backoff { until: u, .. } if u == until),
        );
        self.backing_off.peek().map(|Reverse((until, _))| *until)
    }

    /// Pods in the queue, by place: (active, backing off, parked, in flight). Counts every
    /// pod: for tests and reports, not for every pass.
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

    /// The end of the pod's next backoff (one more failure counted); `None` if the pod has
    /// left the queue (its failure is not counted: nothing would forget it).
    fn next_backoff(&mut self, key: &ObjectKey, now: Instant) -> Option<Instant> {
        if !self.pods.contains_key(key) {
            return None;
        }
        let until = now + self.backoff.on_failure(key);
        if let Some(waiting) = self.pods.get_mut(key) {
            waiting.backoff_until = Some(until);
        }
        Some(until)
    }

    fn unpark(&mut self, key: &ObjectKey, now: Instant) {
        self.parked.remove(key);
        let Some(waiting) = self.pods.get(key) else {
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
            if early {
                self.early.push(Reverse((until, key.clone())));
            }
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
            let due = self.next_due().is_some_and(|until| until <= now);
            if !due {
                return;
            }
            if let Some(Reverse((_, key))) = self.backing_off.pop() {
                self.activate(&key, now);
            }
        }
    }

    /// Pops turns that no longer match their pod, so an empty heap means nothing active.
    fn drop_stale_turns(&mut self) {
        while let Some(turn) = self.active.peek() {
            let current = self
                .pods
                .get(&turn.key)
                .is_some_and(|w| w.place == Place::Active { seq: turn.seq });
            if current {
                return;
            }
            self.active.pop();
        }
    }
}

/// Pops entries from the top of `heap` while `matches(place, until)` says they no longer
/// describe their pod.
fn drop_stale(
    heap: &mut DueHeap,
    pods: &HashMap<ObjectKey, Waiting>,
    matches: impl Fn(Place, Instant) -> bool,
) {
    while let Some(Reverse((until, key))) = heap.peek() {
        let current = pods.get(key).is_some_and(|w| matches(w.place, *until));
        if current {
            return;
        }
        heap.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("default", name)
    }

    fn resources() -> BTreeSet<&'static str> {
        BTreeSet::from([NODE_RESOURCES_FIT_PLUGIN])
    }

    #[test]
    fn only_events_that_may_help_move_a_parked_pod() {
        let t0 = Instant::now();
        let mut queue = SchedulingQueue::default();
        queue.add(key("cpu"), 0, t0);
        queue.add(key("apart"), 0, t0);
        queue.add(key("tainted"), 0, t0);
        let later = t0 + Duration::from_secs(5);
        for (name, plugin) in [
            ("cpu", NODE_RESOURCES_FIT_PLUGIN),
            ("apart", INTER_POD_AFFINITY_PLUGIN),
            ("tainted", super::super::unfit::TAINT_TOLERATION_PLUGIN),
        ] {
            assert_eq!(queue.pop(t0), Some(key(name)));
            queue.unschedulable(&key(name), BTreeSet::from([plugin]), t0);
        }
        queue.move_parked(ClusterEvent::PodPlaced, later);
        assert_eq!(
            queue.pop(later),
            Some(key("apart")),
            "affinity counts changed"
        );
        assert_eq!(queue.pop(later), None);
        queue.move_parked(ClusterEvent::PodGone, later);
        assert_eq!(queue.pop(later), Some(key("cpu")), "resources were freed");
        assert_eq!(queue.pop(later), None, "a freed pod does not lift a taint");
        queue.move_parked(ClusterEvent::NodeChanged, later);
        assert_eq!(queue.pop(later), Some(key("tainted")));
        assert!(!queue.has_due(later));
    }

    #[test]
    fn a_failure_after_the_pod_left_is_not_counted() {
        let t0 = Instant::now();
        let mut queue = SchedulingQueue::default();
        queue.add(key("a"), 0, t0);
        queue.pop(t0);
        queue.remove(&key("a"));
        queue.failed(&key("a"), t0);
        queue.add(key("a"), 0, t0);
        assert_eq!(queue.pop(t0), Some(key("a")));
        queue.failed(&key("a"), t0);
        assert_eq!(
            queue.next_due(),
            Some(t0 + INITIAL_BACKOFF),
            "a first failure"
        );
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
        queue.unschedulable(&key("big"), resources(), t0);
        let later = t0 + Duration::from_secs(5);
        assert_eq!(queue.pop(later), None, "parked: no retry without an event");
        assert_eq!(queue.counts(), (0, 0, 1, 0));
        queue.move_parked(ClusterEvent::NodeChanged, later);
        assert_eq!(queue.pop(later), Some(key("big")), "a node came: try again");

        // Parked again right away: an event within its backoff moves it to backoff, from
        // where it goes early only when no pod is active.
        queue.unschedulable(&key("big"), resources(), later);
        let soon = later + Duration::from_millis(500);
        queue.move_parked(ClusterEvent::NodeChanged, soon);
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
        queue.move_parked(ClusterEvent::NodeChanged, t0);
        assert_eq!(queue.pop(t0 + Duration::from_millis(999)), None);
        assert_eq!(queue.pop(t0 + INITIAL_BACKOFF), Some(key("a")));
    }

    #[test]
    fn parked_pods_are_flushed_after_sixty_seconds() {
        let t0 = Instant::now();
        let mut queue = SchedulingQueue::default();
        queue.add(key("a"), 0, t0);
        queue.pop(t0);
        queue.unschedulable(&key("a"), resources(), t0);
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
        queue.unschedulable(&key("a"), resources(), t0);
        assert_eq!(
            queue.counts(),
            (0, 1, 0, 0),
            "not parked: it changed meanwhile"
        );

        // An update to a parked pod makes it active.
        let t1 = t0 + Duration::from_secs(3);
        assert_eq!(queue.pop(t1), Some(key("a")));
        queue.unschedulable(&key("a"), resources(), t1);
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
