//! The CronJob controller: Jobs created on a cron schedule in a time zone, with a
//! concurrency policy, a starting deadline and a history of finished Jobs.
//!
//! - `schedule.rs`: cron expressions and macros in a time zone (through `croner`), pure.

pub mod schedule;
