//! Work queues: what a controller's handlers fill with keys and its workers drain.
//!
//! ```text
//!  handlers ── add / add_after ──► WorkQueue ── next ──► worker: reconcile
//!                                     ▲                        │
//!                                     └─ add_rate_limited ◄────┤ failed (backoff 5 ms → 1,000 s)
//!                                        forget + done    ◄────┘ succeeded
//! ```
//!
//! - [`state`]: the pure queue (de-duplication, keys in processing, delayed keys, backoff),
//!   every timed operation taking `now`.
//! - [`backoff`]: per-key exponential backoff, client-go's default.
//! - [`work_queue`]: [`WorkQueue`], the async shell that owns the clock and wakes workers.
//!
//! The queue is generic over its key; controllers queue the informer's `ObjectKey`
//! (`namespace/name`), the one name the cache and the queue share.

pub mod backoff;
pub mod state;
pub mod work_queue;

pub use backoff::Backoff;
pub use state::QueueState;
pub use work_queue::WorkQueue;
