//! Events: what the controllers and the scheduler tell users about the objects they act on
//! (`kubectl describe`, `kubectl get events`), recorded as client-go's `tools/record` does.
//!
//! ```text
//!  controller / scheduler ── Recorder::record (never blocks, never fails)
//!                                 │ bounded queue (full: dropped and counted)
//!                                 ▼
//!                  writer task ── Correlator::correlate (pure: occurrence, now, suffix)
//!                                 │   aggregate similar ─► count identical ─► filter spam
//!                                 ▼
//!                  Decision ── Create ─► create "events" │ Patch ─► patch (gone: create) │ Drop
//! ```
//!
//! - [`correlator`]: the pure core: a spam filter (a token bucket per object), an aggregator
//!   (ten distinct messages of one reason within ten minutes become one combined event) and a
//!   counter (a repeat patches `count` and `lastTimestamp` of the event already written),
//!   each cache bounded to 4096 records.
//! - [`recorder`]: the shell: [`Recorder`], its queue and writer task, and
//!   [`object_reference`], which names the object an event is about.
//! - `bounded`: the least-recently-used map the correlator's caches are kept in.

mod bounded;
pub mod correlator;
pub mod recorder;

pub use correlator::EventType;
pub use recorder::{object_reference, Recorder};
