//! Events expire an hour after their last write, as with kube-apiserver's `--event-ttl=1h`:
//! every write of an Event attaches its key to a store lease, and the store deletes the key
//! when the lease runs out (a watch sees it DELETED). Like kube-apiserver's lease manager,
//! one lease serves every Event written within a minute of its grant, granted for the TTL
//! plus that minute, so no Event lives less than the TTL and the store holds ~60 leases an
//! hour, not one per Event. (`Registry::put` in `mod.rs` writes with it.)

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rudder_raftstore::kv::LeaseId;

/// How long an Event lives after its last write.
pub const EVENT_TTL: Duration = Duration::from_secs(3600);
/// How long one lease is handed to new writes.
const LEASE_REUSE: Duration = Duration::from_secs(60);

/// The lease Events are being written with, and when it was granted.
#[derive(Debug, Default)]
pub(crate) struct EventLeases {
    current: Mutex<Option<(LeaseId, Instant)>>,
}

impl EventLeases {
    /// The lease granted less than [`LEASE_REUSE`] before `now`, if any.
    pub(crate) fn reusable(&self, now: Instant) -> Option<LeaseId> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        current
            .filter(|(_, granted)| now.duration_since(*granted) < LEASE_REUSE)
            .map(|(id, _)| id)
    }

    pub(crate) fn remember(&self, id: LeaseId, granted: Instant) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some((id, granted));
    }
}

/// The lease's TTL in seconds: the Event TTL plus the time the lease is handed out.
pub(crate) fn lease_seconds() -> i64 {
    i64::try_from((EVENT_TTL + LEASE_REUSE).as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_reused_for_a_minute_and_outlives_the_ttl_by_that_minute() {
        let leases = EventLeases::default();
        let start = Instant::now();
        assert_eq!(leases.reusable(start), None);
        leases.remember(7, start);
        assert_eq!(leases.reusable(start + Duration::from_secs(59)), Some(7));
        assert_eq!(leases.reusable(start + Duration::from_secs(60)), None);
        assert_eq!(lease_seconds(), 3660);
    }
}
