//! `rudder-actors`: what keeps the cluster in its desired state. It talks to the API server
//! only through `rudder-proto`'s client (never to the store), like every component in the
//! seeds.
//!
//! ```text
//!  API ── list + watch ──► informer (reflector ─► cache with indexes) ─► handlers
//!                                                          │                 │ keys
//!                                                          ▼                 ▼
//!                       controller actor: work queue ─► reconcile (pure) ─► actions ─► API
//!                                                           (writes carry the leader's Fence)
//! ```
//!
//! - [`informer`]: list, watch from the list's revision, resume a broken stream from the last
//!   revision seen (on any master), relist on 410; a shared cache per resource with indexes
//!   (owner uid, node name, pluggable) and selector queries; subscribers receive
//!   Added/Updated/Deleted/Synced as a stream an actor adds with `ctx.add_message_stream`.
//! - [`queue`]: work queues of keys with de-duplication, per-key exponential backoff and
//!   `requeue_after`; a pure state and an async [`queue::WorkQueue`].
//! - [`leader`]: leader election for a Lease with fencing: a pure `decide` and an
//!   [`leader::Elector`] publishing `Leading { fence }` / `Following` on a watch channel.
//! - [`expectations`]: what a controller asked for and has not seen yet, so a lagging cache
//!   never makes it create or delete twice.
//! - [`intstr`]: int-or-percent bounds (`maxSurge: 25%`) scaled against a total.
//! - [`pods`]: what controllers ask of a pod (active, ready, available, controller), and
//!   [`pods::cached`], the pod they ask it of: what the shared cache keeps of one.
//! - [`scheduling`]: where a pod may run (taints and tolerations, node selector and required
//!   node affinity) and which volume a claim may use, shared by the DaemonSet, node
//!   lifecycle and PersistentVolume controllers and the scheduler.
//! - [`scheduler`]: the leader-elected scheduler: kube-scheduler's filters and scores over
//!   a snapshot (pure), its queue and assume cache, binds under the lease's fence.
//! - [`controllers`]: every controller, each a pure `reconcile` and its actor.
//! - [`events`]: the event recorder every controller and the scheduler report through
//!   (client-go's correlator: counts repeats, combines similar events, limits spam).
//! - [`manager`]: the controller manager: leader election, then informers and controllers
//!   under the lease's fence, all stopped when leadership ends; [`selection`]: which
//!   controllers run (`--controllers`).
//! - [`system`]: the actix system each component's thread runs, with a hook for when it idles.

pub mod controllers;
pub mod events;
pub mod expectations;
pub mod informer;
pub mod intstr;
pub mod leader;
pub mod manager;
pub mod pods;
pub mod queue;
pub mod scheduler;
pub mod scheduling;
pub mod selection;
pub mod system;
