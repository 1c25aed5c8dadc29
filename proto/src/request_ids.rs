//! Request ids for exactly-once writes. A client gives each write it sends a sequence number
//! under its own random id and sends every retry of that write with the same number; the
//! store applies a request at most once and answers a retry with the first outcome (see
//! `rudder-raftstore`'s `sessions`). With each request the client also says the lowest
//! number it is still waiting on, so the store can forget what was answered.
//!
//! Both the store's own client API (`Store`) and [`crate::client::ApiClient`] number their
//! writes with a [`RequestIds`]; the API server passes an API client's numbers on to the
//! store in the `rudder-request-id` header ([`RequestNumber::to_header`]).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long after its first attempt a write may still be retried. The store remembers an
/// idle client for far longer (ten minutes of log time), so a retry inside this horizon
/// always finds its first outcome; past it, the caller hears "may or may not have been
/// applied" instead of a retry.
pub const RETRY_HORIZON: Duration = Duration::from_secs(60);

/// The gRPC metadata key that carries an API client's request number.
pub const REQUEST_ID_HEADER: &str = "rudder-request-id";

/// One client's numbering of its writes.
#[derive(Debug)]
pub struct RequestIds {
    client: u64,
    next: AtomicU64,
    in_flight: Mutex<BTreeSet<u64>>,
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestIds {
    /// A new client id, random (never 0), numbering from 1.
    pub fn new() -> Self {
        Self {
            client: random_client_id(),
            next: AtomicU64::new(1),
            in_flight: Mutex::new(BTreeSet::new()),
        }
    }

    pub fn client(&self) -> u64 {
        self.client
    }

    /// Numbers a new request; it counts as waiting for an answer until the ticket drops.
    pub fn begin(&self) -> Ticket<'_> {
        // Numbered and listed under one lock: a request numbered after this one must not
        // compute its `acked_below` before this one is listed as waiting.
        let seq = {
            let mut waiting = self.waiting();
            let seq = self.next.fetch_add(1, Ordering::Relaxed);
            waiting.insert(seq);
            seq
        };
        Ticket {
            ids: self,
            seq,
            started: Instant::now(),
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A request being made: its number, and what to send with it.
#[derive(Debug)]
pub struct Ticket<'a> {
    ids: &'a RequestIds,
    seq: u64,
    started: Instant,
}

impl Ticket<'_> {
    /// What to send with this attempt.
    pub fn number(&self) -> RequestNumber {
        let acked_below = self.ids.waiting().first().copied().unwrap_or(self.seq);
        RequestNumber {
            client: self.ids.client,
            seq: self.seq,
            acked_below: acked_below.min(self.seq),
        }
    }

    /// Whether a retry is still inside [`RETRY_HORIZON`].
    pub fn may_retry(&self) -> bool {
        self.started.elapsed() < RETRY_HORIZON
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.ids.waiting().remove(&self.seq);
    }
}

/// A request's number as it travels: the client, the request, and the lowest request of
/// this client still waiting for an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestNumber {
    pub client: u64,
    pub seq: u64,
    pub acked_below: u64,
}

impl RequestNumber {
    /// `client-seq-acked_below`, client in hex.
    pub fn to_header(&self) -> String {
        format!("{:x}-{}-{}", self.client, self.seq, self.acked_below)
    }

    /// Reads [`RequestNumber::to_header`]'s form; the error names what is wrong.
    pub fn from_header(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split('-').collect();
        let [client, seq, acked_below] = parts[..] else {
            return Err(format!(
                "{REQUEST_ID_HEADER} {text:?} is not of the form CLIENT-SEQ-ACKED_BELOW"
            ));
        };
        let bad = |what: &str| format!("{REQUEST_ID_HEADER} {text:?}: {what} is not a number");
        let number = Self {
            client: u64::from_str_radix(client, 16).map_err(|_| bad("the client (hex)"))?,
            seq: seq.parse().map_err(|_| bad("the sequence number"))?,
            acked_below: acked_below.parse().map_err(|_| bad("acked_below"))?,
        };
        if number.client == 0 || number.acked_below > number.seq || number.seq == u64::MAX {
            return Err(format!(
                "{REQUEST_ID_HEADER} {text:?}: the client must not be 0, the sequence number \
                 must be below 2^64-1, and acked_below must not exceed it"
            ));
        }
        Ok(number)
    }
}

fn random_client_id() -> u64 {
    rand::random::<u64>().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acked_below_is_the_oldest_request_still_waiting() {
        let ids = RequestIds::new();
        let first = ids.begin();
        let second = ids.begin();
        assert_eq!(second.number().acked_below, first.number().seq);
        drop(first);
        assert_eq!(second.number().acked_below, second.number().seq);
        let third = ids.begin();
        assert_eq!(third.number().acked_below, second.number().seq);
    }

    #[test]
    fn a_number_travels_through_the_header_unchanged() {
        let ids = RequestIds::new();
        let number = ids.begin().number();
        assert_eq!(RequestNumber::from_header(&number.to_header()), Ok(number));
        assert!(RequestNumber::from_header("x-1-1").is_err());
        assert!(RequestNumber::from_header("a-1-2")
            .unwrap_err()
            .contains("acked_below"));
        assert!(RequestNumber::from_header("a-1")
            .unwrap_err()
            .contains("CLIENT-SEQ"));
    }

    #[test]
    fn two_clients_get_different_ids() {
        assert_ne!(RequestIds::new().client(), RequestIds::new().client());
    }
}
