//! Errors of the store: request errors a client can fix, and member failures.

use crate::kv::{LeaseId, Revision};

/// Why a request was refused. The store is unchanged whenever one of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum KvError {
    #[error("key is not provided: a request needs a non-empty key")]
    EmptyKey,
    #[error("range_end {range_end:?} sorts before key {key:?}: give a range_end after the key, or \"\\0\" for all keys from it")]
    RangeEndBeforeKey { key: String, range_end: String },
    #[error(
        "request is too large: {size} bytes, the limit is {limit} bytes (--max-request-bytes)"
    )]
    RequestTooLarge { size: usize, limit: usize },
    #[error("too many operations in txn request: {count}, the limit is {limit} (--max-txn-ops)")]
    TooManyTxnOps { count: usize, limit: usize },
    #[error("duplicate key given in txn request: {key:?} is written twice")]
    DuplicateKey { key: String },
    #[error("lease {id:x} not found: grant it first or use an existing lease")]
    LeaseNotFound { id: LeaseId },
    #[error("lease {id:x} already exists")]
    LeaseExists { id: LeaseId },
    #[error("lease TTL must be positive, got {ttl} seconds")]
    InvalidTtl { ttl: i64 },
    #[error("lease TTL {ttl} is too large: the maximum is {max} seconds")]
    TtlTooLarge { ttl: i64, max: i64 },
    #[error("required revision {requested} has been compacted: the oldest readable revision is {compact_revision}")]
    Compacted {
        requested: Revision,
        compact_revision: Revision,
    },
    #[error(
        "required revision {requested} is a future revision: the current revision is {current}"
    )]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("revision must not be negative, got {revision}")]
    NegativeRevision { revision: Revision },
    #[error("key {key:?} not found: ignore_value and ignore_lease need an existing key")]
    KeyNotFound { key: String },
    #[error("request {seq} of client {client:x} came again after the store forgot its earlier attempt (the client had moved on, or was idle too long): it may or may not have been applied; read before writing again")]
    OutcomeForgotten { client: u64, seq: u64 },
    #[error("request {seq} (part {part}) of client {client:x} was applied before as a different write: a client reused a request id; this write was not applied, and the earlier one may or may not have been")]
    RequestIdReused { client: u64, seq: u64, part: u32 },
    /// etcd's words exactly: clients match on them. While a NOSPACE alarm stands
    /// ([`crate::alarms`]), and when a write would take the keyspace past its quota.
    #[error("mvcc: database space exceeded")]
    NoSpace,
    /// A value of the past (an overwritten version's, see `crate::mvcc::History`) that this
    /// member's database could not give back.
    #[error("the value written at revision {revision} (change {sub}) could not be read from this member's database: {reason}")]
    HistoryUnreadable {
        revision: Revision,
        sub: u32,
        reason: String,
    },
}

/// Renders a key for an error message: as text when it is UTF-8, else escaped.
pub(crate) fn show_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) => text.to_owned(),
        Err(_) => key.escape_ascii().to_string(),
    }
}
