//! Lease deadlines, kept only by the Raft leader (as in etcd).
//!
//! The replicated state knows which leases exist and their TTLs; when each one runs out is
//! the leader's business. A new leader starts every lease's clock afresh (a full TTL), so a
//! leader change never expires a lease that was being kept alive. Expiry is proposed through
//! the log as a revoke, so every replica drops the lease and its keys at the same revision.
//!
//! Pure: time comes in as an argument.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::kv::{Lease, LeaseId};

#[derive(Debug, Default)]
pub struct LeaseClock {
    deadlines: HashMap<LeaseId, Instant>,
    /// The term this clock was started for; `None` while not leading.
    term: Option<u64>,
}

impl LeaseClock {
    /// Brings the clock in line with the replicated leases. Starting to lead in a new term
    /// restarts every clock; leases granted since the last call get a full TTL; revoked ones go.
    pub fn sync(&mut self, leading_term: Option<u64>, leases: &[Lease], now: Instant) {
        if leading_term != self.term {
            self.deadlines.clear();
            self.term = leading_term;
        }
        if self.term.is_none() {
            return;
        }
        self.deadlines
            .retain(|id, _| leases.iter().any(|lease| lease.id == *id));
        for lease in leases {
            self.deadlines
                .entry(lease.id)
                .or_insert_with(|| now + ttl(lease.ttl));
        }
    }

    pub fn is_leading(&self) -> bool {
        self.term.is_some()
    }

    /// Restarts `lease`'s clock; returns the TTL granted, in seconds.
    pub fn keep_alive(&mut self, lease: &Lease, now: Instant) -> i64 {
        self.deadlines.insert(lease.id, now + ttl(lease.ttl));
        lease.ttl
    }

    /// Whole seconds left, rounded up; `None` if the clock does not know the lease.
    pub fn remaining(&self, id: LeaseId, now: Instant) -> Option<i64> {
        let left = self.deadlines.get(&id)?.saturating_duration_since(now);
        Some(left.as_millis().div_ceil(1000) as i64)
    }

    /// Leases whose time is up, in id order; revoking them is the caller's job.
    pub fn expired(&self, now: Instant) -> Vec<LeaseId> {
        let mut ids: Vec<LeaseId> = self
            .deadlines
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }
}

fn ttl(seconds: i64) -> Duration {
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(id: LeaseId, ttl: i64) -> Lease {
        Lease { id, ttl }
    }

    #[test]
    fn a_lease_expires_after_its_ttl_unless_kept_alive() {
        let start = Instant::now();
        let mut clock = LeaseClock::default();
        clock.sync(Some(1), &[lease(1, 5), lease(2, 5)], start);
        assert!(clock.expired(start + Duration::from_secs(4)).is_empty());
        clock.keep_alive(&lease(1, 5), start + Duration::from_secs(4));
        assert_eq!(clock.expired(start + Duration::from_secs(5)), [2]);
        assert_eq!(clock.remaining(1, start + Duration::from_secs(5)), Some(4));
    }

    #[test]
    fn a_new_term_restarts_every_clock() {
        let start = Instant::now();
        let mut clock = LeaseClock::default();
        clock.sync(Some(1), &[lease(1, 5)], start);
        clock.sync(None, &[lease(1, 5)], start + Duration::from_secs(3));
        assert!(!clock.is_leading());
        let later = start + Duration::from_secs(6);
        clock.sync(Some(2), &[lease(1, 5)], later);
        assert!(clock.expired(later + Duration::from_secs(4)).is_empty());
        assert_eq!(clock.expired(later + Duration::from_secs(5)), [1]);
    }

    #[test]
    fn revoked_leases_leave_the_clock() {
        let start = Instant::now();
        let mut clock = LeaseClock::default();
        clock.sync(Some(1), &[lease(1, 1)], start);
        clock.sync(Some(1), &[], start);
        assert_eq!(clock.remaining(1, start), None);
        assert!(clock.expired(start + Duration::from_secs(9)).is_empty());
    }
}
