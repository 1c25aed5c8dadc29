//! The Job controller: pods run to completion, `completions` of them (or until a work queue
//! drains), `parallelism` at a time, retried after a backoff up to `backoffLimit`, within
//! `activeDeadlineSeconds`; Indexed Jobs give each pod a completion index.
//!
//! - `reconcile.rs`: the decision (count ends once, fail, complete, create, delete, TTL),
//!   pure.
//! - `tracking.rs`: each pod's end counted once, through the tracking finalizer, pure.
//! - `backoff.rs`: the failure backoff before replacements, and OnFailure restarts, pure.
//! - `template.rs`: the pods a Job creates (labels, tracking finalizer, index), pure.
//! - `indexes.rs`: the `"1,3-5"` form of `status.completedIndexes`, pure.
//! - `actor.rs`: the shell: cache events to keys, workers that reconcile and act.

pub mod actor;
pub mod backoff;
#[cfg(test)]
mod fixtures;
pub mod indexes;
pub mod reconcile;
pub mod template;
pub mod tracking;
