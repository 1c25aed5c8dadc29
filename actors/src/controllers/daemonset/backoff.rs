//! The backoff between deleting one failed daemon pod on a node and the next (Kubernetes'
//! `failedPodsBackoff`: 1 s doubling to 15 min), so a DaemonSet does not hot-loop against a
//! kubelet that keeps rejecting its pod. Pure state: the actor keeps one per controller and
//! passes `now`.

use std::collections::BTreeMap;
use std::time::Duration;

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    delay: Duration,
    last_update: jiff::Timestamp,
}

/// Per `(DaemonSet uid, node)`, the current delay and when it was last raised.
#[derive(Debug, Clone, Default)]
pub struct FailedPodBackoff {
    entries: BTreeMap<(String, String), Entry>,
}

impl FailedPodBackoff {
    /// How long until a failed pod on `node` may be deleted again; `None`: now.
    pub fn remaining(&self, uid: &str, node: &str, now: jiff::Timestamp) -> Option<Duration> {
        let entry = self.entries.get(&(uid.to_string(), node.to_string()))?;
        let elapsed = elapsed(entry.last_update, now);
        entry.delay.checked_sub(elapsed).filter(|d| !d.is_zero())
    }

    /// A failed pod on `node` is being deleted: the next one waits twice as long (from 1 s, at
    /// most 15 min; an entry idle for twice the maximum starts over).
    pub fn record(&mut self, uid: &str, node: &str, now: jiff::Timestamp) {
        let key = (uid.to_string(), node.to_string());
        let delay = match self.entries.get(&key) {
            Some(e) if elapsed(e.last_update, now) <= 2 * MAX_BACKOFF => {
                (e.delay * 2).min(MAX_BACKOFF)
            }
            _ => INITIAL_BACKOFF,
        };
        self.entries.insert(
            key,
            Entry {
                delay,
                last_update: now,
            },
        );
    }

    /// Forgets entries idle for twice the maximum delay.
    pub fn collect_garbage(&mut self, now: jiff::Timestamp) {
        self.entries
            .retain(|_, e| elapsed(e.last_update, now) <= 2 * MAX_BACKOFF);
    }
}

fn elapsed(since: jiff::Timestamp, now: jiff::Timestamp) -> Duration {
    Duration::try_from(now.duration_since(since)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    #[test]
    fn each_failed_deletion_doubles_the_wait_up_to_fifteen_minutes() {
        let mut b = FailedPodBackoff::default();
        assert_eq!(b.remaining("ds", "n1", at(0)), None);
        b.record("ds", "n1", at(0));
        assert_eq!(b.remaining("ds", "n1", at(0)), Some(Duration::from_secs(1)));
        assert_eq!(b.remaining("ds", "n1", at(1)), None);
        assert_eq!(b.remaining("ds", "n2", at(0)), None, "per node");
        b.record("ds", "n1", at(1));
        assert_eq!(b.remaining("ds", "n1", at(1)), Some(Duration::from_secs(2)));
        for i in 0..20 {
            b.record("ds", "n1", at(2 + i));
        }
        assert_eq!(b.remaining("ds", "n1", at(21)), Some(MAX_BACKOFF));
        b.record("ds", "n1", at(21 + 3 * 15 * 60));
        assert_eq!(
            b.remaining("ds", "n1", at(21 + 3 * 15 * 60)),
            Some(INITIAL_BACKOFF),
            "a long quiet spell starts over"
        );
        b.collect_garbage(at(10_000));
        assert_eq!(b.entries.len(), 0);
    }
}
