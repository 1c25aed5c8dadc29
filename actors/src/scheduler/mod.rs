//! The scheduler: a pure core and its shell. The pure core: where a pod should run, or why
//! it cannot, as kube-scheduler's default profile decides it. No I/O, no clock, no randomness: the shell (queue, assume
//! cache, binding with the leader's fence, `FailedScheduling` events, the actor) keeps a
//! [`snapshot::Snapshot`] from the informers, asks [`decide::place`] about one pod at a time,
//! and carries out the answer.
//!
//! ```text
//!  informers ─► Snapshot: nodes, the pods on each and their sums, kept event by event
//!                  │
//!  queue ─► pod ─► decide::place(&pod, &snapshot, start, tie_break)
//!                  ├─ filters::PreFilter::new      once per pod (spread and affinity counts)
//!                  ├─ filters::run_filters_with_nominated  per node, round-robin from
//!                  │      `start`, until enough fit (decide::nodes_to_find); pods nominated
//!                  │      to the node of the pod's priority or higher count there too
//!                  └─ scores + spread + interpod   per feasible node, weighted, best wins
//!               ─► Ok(Placement { node, next_start, .. })  ─► snapshot.assume, bind
//!                  Err(Unschedulable { message, .. })      ─► event, back to the queue
//! ```
//!
//! - [`resources`]: a pod's requests (init containers, sidecars, overhead, pod-level), the
//!   non-zero requests scores use, a node's allocatable, what a node lacks.
//! - [`terms`]: pod (anti-)affinity terms parsed once: namespaces, selector, topology key.
//! - [`snapshot`]: nodes and the pods counting on them, updated incrementally: requests,
//!   host ports, label groups, images; `assume` for the assume cache; pending pods
//!   nominated to a node by a preemption.
//! - [`unfit`]: why a node does not fit, in kube-scheduler's words.
//! - [`filters`]: the per-pod PreFilter state and the filters in the profile's order.
//! - [`spread`]: PodTopologySpread (DoNotSchedule filter, ScheduleAnyway score, the system
//!   default constraints).
//! - [`interpod`]: InterPodAffinity (required terms both ways, preferred terms score).
//! - [`scores`]: the other scores, their normalization and the profile's weights.
//! - [`decide`]: which pods are ours, how many nodes to search, the placement and the
//!   `FailedScheduling` message.
//! - [`preemption`]: DefaultPreemption: for a pod no node fits, the node where evicting pods
//!   of lower priority makes room, and the fewest, least important such pods, sparing those
//!   whose eviction would break a PodDisruptionBudget ([`budgets`]) where it can.
//! - [`volumes`]: VolumeBinding: the pod's PersistentVolumeClaims (missing, unbound,
//!   waiting for a node), the nodes their volumes allow, the PreBind a placement makes
//!   (static volumes to reserve, claims to provision on the node) and when the wait for
//!   them ends; the claims, volumes and classes the snapshot keeps, with its own writes
//!   assumed ahead of the watch.
//!
//! The shell:
//!
//! - [`queue`]: active (priority, then arrival), backoff (1 s doubling to 10 s) and parked
//!   unschedulable pods, moved back by the events that may help them (pure).
//! - [`assumed`]: assumptions waiting for the watch to confirm their bind, expired after
//!   30 s (pure).
//! - [`actor`]: the actix actor: snapshot and queue from the informers, place, assume, bind
//!   under the fence, report the unschedulable (its VolumeBinding Reserve, PreBind and
//!   storage events in `actor_volumes.rs`, its preemption's writes in
//!   `actor_preemption.rs`); [`changes`]: what it asks of the objects it
//!   hears about (which updates matter, moot bind refusals, unschedulable conditions; pure).
//! - [`claims`]: VolumeBinding's PreBind writes: static volumes reserved for the pod's
//!   claims, claims to provision annotated with the chosen node (compare-and-swap); the
//!   actor then waits for the claims to be bound before it binds the pod.
//! - [`metrics`]: the scheduler's Prometheus figures (decision time, binds, the queue).
//! - [`run`]: leader election on `kube-system/rudder-scheduler`, the actor and its
//!   informers started for each term.

pub mod actor;
pub mod assumed;
pub mod budgets;
pub mod changes;
pub mod claims;
pub mod decide;
pub mod filters;
pub mod interpod;
pub mod metrics;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod run;
pub mod scores;
pub mod snapshot;
pub mod spread;
pub mod terms;
pub mod unfit;
pub mod volumes;

#[cfg(test)]
mod testing;
