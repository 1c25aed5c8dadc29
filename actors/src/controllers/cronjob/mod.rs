//! The CronJob controller: Jobs created on a cron schedule in a time zone, with a
//! concurrency policy, a starting deadline and a history of finished Jobs.
//!
//! - `actor.rs`: the shell: events to keys, deletes, the Job, the status, events.
//! - `reconcile.rs`: the decision (active Jobs, history, the next run, concurrency), pure.
//! - `history.rs`: finished Jobs, references, history limits, pure.
//! - `schedule.rs`: cron expressions and macros in a time zone (through `croner`), pure.

pub mod actor;
pub mod history;
pub mod reconcile;
pub mod schedule;
