//! One version of a key: where it sits ([`Rev`]), what is persisted of it ([`Version`]),
//! what the keyspace holds of it in memory ([`Kept`]: each key's newest version keeps its
//! value, an overwritten one leaves it to the [`History`] once the shell has persisted it),
//! and where the rest is read back from.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::KvError;
use crate::kv::{EventKind, KeyValue, Revision};

/// Position of one version: the transaction's revision and the change's index inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Rev {
    pub main: Revision,
    pub sub: u32,
}

impl Rev {
    /// Big-endian bytes, so RocksDB's byte order is revision order.
    pub fn to_bytes(self) -> [u8; 12] {
        let mut out = [0u8; 12];
        out[..8].copy_from_slice(&self.main.to_be_bytes());
        out[8..].copy_from_slice(&self.sub.to_be_bytes());
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let main = i64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let sub = u32::from_be_bytes(bytes.get(8..12)?.try_into().ok()?);
        Some(Self { main, sub })
    }
}

/// One stored version: a put, or a tombstone left by a delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub kind: EventKind,
    pub kv: KeyValue,
}

/// Where the values of overwritten versions are read back from: the database the shell
/// persisted every version to (`crate::state_machine::PersistedHistory`).
pub trait History {
    /// The value of the put stored under `rev`.
    fn value(&self, rev: Rev) -> Result<Bytes, KvError>;
}

/// No history: for reads of newest versions only (their values are always held), and for a
/// keyspace whose values are never forgotten.
pub struct NoHistory;

impl History for NoHistory {
    fn value(&self, rev: Rev) -> Result<Bytes, KvError> {
        Err(KvError::HistoryUnreadable {
            revision: rev.main,
            sub: rev.sub,
            reason: "this keyspace has no history to read it from".into(),
        })
    }
}

/// A version as the keyspace holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Kept {
    pub(super) kind: EventKind,
    /// Its value is empty once `forgotten`.
    pub(super) kv: KeyValue,
    /// An overwritten put whose value is left to the [`History`].
    pub(super) forgotten: bool,
}

impl Kept {
    pub(super) fn new(version: Version) -> Self {
        Self {
            kind: version.kind,
            kv: version.kv,
            forgotten: false,
        }
    }

    pub(super) fn is_put(&self) -> bool {
        self.kind == EventKind::Put
    }

    /// The key-value of this version (stored under `rev`), its value read back if forgotten.
    pub(super) fn read(&self, rev: Rev, history: &dyn History) -> Result<KeyValue, KvError> {
        let mut kv = self.kv.clone();
        if self.forgotten {
            kv.value = history.value(rev)?;
        }
        Ok(kv)
    }

    /// The key-value of a version whose value is held: a key's newest one, or any version
    /// written since the values were last forgotten.
    pub(super) fn held(&self) -> &KeyValue {
        debug_assert!(!self.forgotten, "a newest version's value is held");
        &self.kv
    }
}
