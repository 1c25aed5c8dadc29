//! Recognising a numbered request's earlier attempt: before a verb refuses a request because
//! the object is not as it asked (stale resourceVersion, already bound, gone), it asks
//! whether an earlier attempt of the same request (see `caller.rs`) already made the change;
//! then it answers as that attempt did.

use rudder_raftstore::kv::{CommandResult, KeyRange, RangeRequest, Revision, TxnResponse};
use serde_json::Value;

use super::Registry;
use crate::caller;
use crate::error::ApiError;
use crate::object;

/// The store writes earlier attempts of a numbered request made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EarlierParts {
    /// The highest part number used (applied, or lost to a failed compare).
    pub highest: u32,
    /// The revision of the earliest write that applied (its compares held), if one did.
    pub applied: Option<Revision>,
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
        Ok(self.earlier_parts().await?.and_then(|parts| parts.applied))
    }

    /// What earlier attempts of the current numbered request left in the store: `None` for
    /// an unnumbered request, or one no attempt of which reached the store.
    pub(crate) async fn earlier_parts(&self) -> Result<Option<EarlierParts>, ApiError> {
        let Some(number) = caller::current() else {
            return Ok(None);
        };
        let parts = self
            .store()
            .applied_parts(number.client, number.seq)
            .await?;
        let Some(highest) = parts.iter().map(|(part, _)| *part).max() else {
            return Ok(None);
        };
        let applied = parts
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
            .min();
        Ok(Some(EarlierParts { highest, applied }))
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
