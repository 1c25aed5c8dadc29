//! openraft's type configuration for the store, and the member identity types.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::error::KvError;
use crate::kv::{Command, CommandResult, Revision};

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

/// What the state machine answers for one log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The store revision after this entry.
    pub revision: Revision,
    /// `None` for entries that carry no command (blank, membership).
    pub result: Option<Result<CommandResult, KvError>>,
}

openraft::declare_raft_types!(
    /// The store's Raft: commands in, [`Applied`] out, members addressed by [`Member`].
    pub TypeConfig:
        D = Command,
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

/// The id of a member of the initial cluster, derived from its name so every member of a
/// fresh cluster computes the same ids without talking (FNV-1a, never 0).
pub fn initial_member_id(name: &str) -> NodeId {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash >> 1).max(1)
}
