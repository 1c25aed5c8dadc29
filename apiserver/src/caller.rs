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
//! [`Registry::earlier_attempt`] whether an earlier attempt of the same request changed it.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};

use rudder_proto::request_ids::RequestNumber;
use rudder_raftstore::kv::{CommandResult, KeyRange, RangeRequest, Revision, TxnResponse};
use rudder_raftstore::sessions::RequestTag;
use serde_json::Value;

use crate::error::ApiError;
use crate::object;
use crate::registry::Registry;

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

impl Registry {
    /// The object at `key` as it was at `revision` (it may have changed since).
    pub(crate) async fn read_at(
        &self,
        key: &[u8],
        revision: Revision,
    ) -> Result<Option<Value>, ApiError> {
        let (_, response) = self
            .range(RangeRequest {
                range: KeyRange::single(key.to_vec()),
                revision,
                ..Default::default()
            })
            .await?;
        let Some(kv) = response.kvs.into_iter().next() else {
            return Ok(None);
        };
        let mut object = object::decode(&kv)?;
        object::set_resource_version(&mut object, kv.mod_revision);
        Ok(Some(object))
    }

    /// For a numbered client request about to be refused because the object is not as it
    /// asked (stale resourceVersion, already bound, gone): the revision of the earliest of
    /// its writes that an earlier attempt applied, if one did — then the refusal would be
    /// caused by the request itself, and the verb answers as that attempt did.
    pub(crate) async fn earlier_attempt(&self) -> Result<Option<Revision>, ApiError> {
        let Some(number) = current() else {
            return Ok(None);
        };
        let parts = self
            .store()
            .applied_parts(number.client, number.seq)
            .await?;
        Ok(parts
            .into_iter()
            .filter(|(_, outcome)| {
                matches!(
                    &outcome.result,
                    Ok(CommandResult::Txn(TxnResponse {
                        succeeded: true,
                        ..
                    }))
                )
            })
            .map(|(_, outcome)| outcome.revision)
            .min())
    }

    /// The object as an earlier attempt of this request left it, if one applied it.
    pub(crate) async fn as_earlier_attempt_left(
        &self,
        key: &[u8],
    ) -> Result<Option<Value>, ApiError> {
        match self.earlier_attempt().await? {
            Some(revision) => self.read_at(key, revision).await,
            None => Ok(None),
        }
    }
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
}
