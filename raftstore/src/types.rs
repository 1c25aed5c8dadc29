//! openraft's type configuration for the store, and the member identity types.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::error::KvError;
use crate::kv::{Command, CommandResult, Revision};
use rudder_proto::request_ids::RequestNumber;

/// A member's Raft id. Never reused once a member has been removed.
pub type NodeId = u64;

/// How to reach a member: its peer (Raft) address and its client (API) address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub peer_addr: String,
    pub client_addr: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (peer {}, client {})",
            self.name, self.peer_addr, self.client_addr
        )
    }
}

/// A member with its id: whom to send a message, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: NodeId,
    pub member: Member,
}

impl Peer {
    /// The leader openraft names when it refuses a request here, if it knows one.
    pub fn leader_of(to: &openraft::error::ForwardToLeader<NodeId, Member>) -> Option<Self> {
        Some(Self {
            id: to.leader_id?,
            member: to.leader_node.clone()?,
        })
    }
}

/// One Raft entry's payload: client requests proposed together share one log write and one
/// replication round; they are applied in order, each exactly as if proposed alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The proposing leader's wall clock (ms since the epoch): the log's clock, by which
    /// every replica ages the request table alike (see `crate::sessions`).
    pub at_ms: u64,
    pub requests: Vec<Request>,
}

/// A command and, when a client asked for it, the id that makes its retries apply once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub command: Command,
    /// `None` only for the leader's own duties that are never retried (lease expiry).
    pub tag: Option<RequestTag>,
}

/// One client request, the same across every retry of it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct RequestId {
    /// The client's random id (a store member's own, or an API client's).
    pub client: u64,
    /// The client's sequence number of the request.
    pub seq: u64,
    /// Which of the request's store writes (an API call may make several, one after another).
    pub part: u32,
}

/// A request id with what the client says about its other requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RequestTag {
    pub id: RequestId,
    /// Every request of this client with a lower `seq` has been answered: their outcomes may go.
    pub acked_below: u64,
}

impl RequestTag {
    /// The tag of store write number `part` made for the client request `number`.
    pub fn new(number: RequestNumber, part: u32) -> Self {
        Self {
            id: RequestId {
                client: number.client,
                seq: number.seq,
                part,
            },
            acked_below: number.acked_below,
        }
    }
}

/// What one command did: its result, and the store revision right after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub revision: Revision,
    pub result: Result<CommandResult, KvError>,
    /// This answer is the stored outcome of an earlier application of the same request:
    /// this attempt changed nothing.
    pub replayed: bool,
}

/// The state machine's answer for one entry: an outcome per command of its proposal (none
/// for blank and membership entries).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Applied {
    pub outcomes: Vec<Outcome>,
}

openraft::declare_raft_types!(
    /// The store's Raft: [`Proposal`]s in, [`Applied`] out, members addressed by [`Member`].
    pub TypeConfig:
        D = Proposal,
        R = Applied,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Member>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Member>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
