//! Which client request the registry's store writes are made for, so that a client's retry
//! of a request (sent again to this or another master after a lost answer) applies once.
//!
//! An API client numbers its writes (`rudder-request-id`, see `rudder_proto::request_ids`);
//! the service runs the verb inside [`on_behalf_of`], and each store write the verb makes
//! takes the next part number of that request ([`next_tag`]). A retry runs the same verb
//! again, whose writes get the same tags in the same order; the store answers a repeated one
//! with its first outcome. A request without a number gets the store's own numbering.
//!
//! Before refusing a numbered request because the object is not as it asked, a verb asks
//! whether an earlier attempt of the same request changed it (`registry/attempt.rs`). A verb
//! whose retry need not repeat the earlier attempt's writes one for one numbers its writes
//! past the parts already applied ([`skip_past`]).

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};

use rudder_proto::request_ids::RequestNumber;
use rudder_raftstore::sessions::RequestTag;

tokio::task_local! {
    static CALLER: Caller;
}

struct Caller {
    number: RequestNumber,
    next_part: AtomicU32,
}

/// Runs `verb` with its store writes tagged as parts of request `number` (if any).
pub async fn on_behalf_of<F: Future>(number: Option<RequestNumber>, verb: F) -> F::Output {
    match number {
        Some(number) => {
            let caller = Caller {
                number,
                next_part: AtomicU32::new(0),
            };
            CALLER.scope(caller, verb).await
        }
        None => verb.await,
    }
}

/// The number of the client request being served, if it has one.
pub fn current() -> Option<RequestNumber> {
    CALLER.try_with(|caller| caller.number).ok()
}

/// The tag of the next store write made for the current request; `None` outside one.
pub fn next_tag() -> Option<RequestTag> {
    CALLER
        .try_with(|caller| {
            let part = caller.next_part.fetch_add(1, Ordering::Relaxed);
            RequestTag::new(caller.number, part)
        })
        .ok()
}

/// Numbers the current request's next store writes after part `part`: a verb that found
/// parts of an earlier attempt applied (`registry/attempt.rs`) and does not repeat that
/// attempt's writes one for one (the eviction) goes on with fresh parts, never reusing one.
pub fn skip_past(part: u32) {
    let _ = CALLER.try_with(|caller| {
        caller
            .next_part
            .fetch_max(part.saturating_add(1), Ordering::Relaxed)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_write_of_a_request_is_the_next_part_and_none_outside() {
        assert_eq!(next_tag(), None);
        let number = RequestNumber {
            client: 9,
            seq: 4,
            acked_below: 3,
        };
        let parts = on_behalf_of(Some(number), async {
            [next_tag().unwrap(), next_tag().unwrap()]
        })
        .await;
        assert_eq!(parts.map(|tag| tag.id.part), [0, 1]);
        assert_eq!(parts[1].id.seq, 4);
        assert_eq!(parts[1].acked_below, 3);
    }

    #[tokio::test]
    async fn skipping_past_a_part_never_goes_back() {
        let number = RequestNumber {
            client: 9,
            seq: 5,
            acked_below: 5,
        };
        let parts = on_behalf_of(Some(number), async {
            skip_past(3);
            let fourth = next_tag().unwrap().id.part;
            skip_past(1);
            [fourth, next_tag().unwrap().id.part]
        })
        .await;
        assert_eq!(parts, [4, 5]);
        // Outside a request: nothing to skip.
        skip_past(7);
        assert_eq!(next_tag(), None);
    }
}
