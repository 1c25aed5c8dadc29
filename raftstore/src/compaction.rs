//! Automatic compaction by retention, decided by the leader (pure: time is an argument).
//!
//! - `Revisions(n)`: keep the last `n` revisions.
//! - `Period(d)`: keep what was written in the last `d`: every so often the leader samples the
//!   current revision, and compacts to the newest sample that is at least `d` old.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::kv::Revision;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    Off,
    Revisions(i64),
    Period(Duration),
}

#[derive(Debug)]
pub struct AutoCompactor {
    retention: Retention,
    samples: VecDeque<(Instant, Revision)>,
}

impl AutoCompactor {
    pub fn new(retention: Retention) -> Self {
        Self {
            retention,
            samples: VecDeque::new(),
        }
    }

    /// How often the leader should call [`AutoCompactor::step`].
    pub fn interval(&self) -> Duration {
        match self.retention {
            Retention::Period(period) => {
                (period / 10).clamp(Duration::from_millis(100), Duration::from_secs(60))
            }
            _ => Duration::from_secs(1),
        }
    }

    /// Forgets what it sampled: a member that stops leading starts over when it leads again.
    pub fn reset(&mut self) {
        self.samples.clear();
    }

    /// Records the current revision and returns the revision to compact to, if any.
    pub fn step(
        &mut self,
        now: Instant,
        current: Revision,
        compacted: Revision,
    ) -> Option<Revision> {
        let target = match self.retention {
            Retention::Off => return None,
            Retention::Revisions(keep) => current - keep,
            Retention::Period(period) => {
                self.samples.push_back((now, current));
                let old_enough =
                    |sample: &(Instant, Revision)| now.duration_since(sample.0) >= period;
                // Keep only the newest sample that is old enough, and everything after it.
                while self.samples.len() > 1 && old_enough(&self.samples[1]) {
                    self.samples.pop_front();
                }
                match self.samples.front() {
                    Some(sample) if old_enough(sample) => sample.1,
                    _ => return None,
                }
            }
        };
        (target > compacted).then_some(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_retention_keeps_the_last_n_revisions() {
        let mut compactor = AutoCompactor::new(Retention::Revisions(100));
        let now = Instant::now();
        assert_eq!(compactor.step(now, 50, 0), None);
        assert_eq!(compactor.step(now, 250, 0), Some(150));
        assert_eq!(compactor.step(now, 250, 150), None);
    }

    #[test]
    fn periodic_retention_compacts_to_what_was_current_one_period_ago() {
        let mut compactor = AutoCompactor::new(Retention::Period(Duration::from_secs(60)));
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        assert_eq!(compactor.step(at(0), 10, 0), None);
        assert_eq!(compactor.step(at(30), 20, 0), None);
        assert_eq!(compactor.step(at(60), 30, 0), Some(10));
        assert_eq!(compactor.step(at(95), 40, 10), Some(20));
        compactor.reset();
        assert_eq!(
            compactor.step(at(100), 50, 20),
            None,
            "a new leader waits a full period"
        );
    }

    #[test]
    fn off_never_compacts() {
        let mut compactor = AutoCompactor::new(Retention::Off);
        assert_eq!(compactor.step(Instant::now(), 1_000_000, 0), None);
    }
}
