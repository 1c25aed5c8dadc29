//! [`StoreError`]: why a store call failed, as callers and the peer port see it.

use serde::{Deserialize, Serialize};

use crate::error::KvError;
use crate::network::ForwardResponse;
use crate::types::NodeId;

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum StoreError {
    #[error(transparent)]
    Kv(#[from] KvError),
    #[error("no leader is available (election in progress or no quorum); retry shortly")]
    NoLeader,
    #[error("the leader {leader} could not be reached ({reason}); the request may or may not have been applied")]
    LeaderUnreachable { leader: String, reason: String },
    #[error("request timed out after {millis} ms waiting for the cluster; a write may or may not have been applied")]
    Timeout { millis: u64 },
    #[error("this member has stopped")]
    Stopped,
    #[error("member id {id:x} was used before: a removed member's id is never reused")]
    MemberIdUsed { id: NodeId },
    #[error("member {id:x} is not in the cluster")]
    MemberNotFound { id: NodeId },
    #[error("member {id:x} is not a learner: only a learner can be promoted")]
    NotLearner { id: NodeId },
    #[error("membership change refused: {reason}")]
    Membership { reason: String },
    #[error("the leader answered with {detail}: members run incompatible versions")]
    UnexpectedReply { detail: String },
    // Last: errors cross the peer port by their place in this list.
    #[error(
        "this cluster was just restored from a snapshot and is making its first Raft \
         snapshot; members can be added in a moment: retry shortly"
    )]
    Restoring,
    #[error(
        "this member leads but has heard from no quorum for {millis} ms (cut off from the \
         others?); a write may or may not have been applied: try another member"
    )]
    QuorumLost { millis: u64 },
}

impl StoreError {
    /// The leader answered a forwarded request with an answer of another kind.
    pub(crate) fn unexpected(response: ForwardResponse) -> Self {
        Self::UnexpectedReply {
            detail: format!("{response:?}"),
        }
    }
}
