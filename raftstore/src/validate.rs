//! Checks a request can make before it reaches the Raft log: shape and size only.
//!
//! Checks that need the state (does the lease exist, is the revision compacted) happen when
//! the command is applied, in `mvcc`; both refuse without changing anything.

use crate::error::{show_key, KvError};
use crate::kv::*;

/// Request limits of one member; every one is a `rudder server` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request, counted as the bytes of its keys and values (etcd: 1.5 MiB).
    pub max_request_bytes: usize,
    /// Most compares or operations in one branch of a transaction (etcd: 128).
    pub max_txn_ops: usize,
    /// Most watches one client stream may hold open at a time.
    pub max_watchers_per_stream: usize,
    /// Largest gRPC message the client port decodes.
    pub max_grpc_message_bytes: usize,
    /// Most concurrent HTTP/2 streams one client connection may open.
    pub max_concurrent_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: 1536 * 1024,
            max_txn_ops: 128,
            max_watchers_per_stream: 10_000,
            // Like etcd: the request limit plus room for the gRPC envelope.
            max_grpc_message_bytes: 1536 * 1024 + 512 * 1024,
            max_concurrent_streams: 4096,
        }
    }
}

pub fn check_command(command: &Command, limits: &Limits) -> Result<(), KvError> {
    let size = command_size(command);
    if size > limits.max_request_bytes {
        return Err(KvError::RequestTooLarge {
            size,
            limit: limits.max_request_bytes,
        });
    }
    match command {
        Command::Put(put) => check_key(&put.key),
        Command::DeleteRange(delete) => check_range(&delete.range),
        Command::Txn(txn) => check_txn(txn, limits),
        Command::Compact { revision } if *revision < 0 => Err(KvError::NegativeRevision {
            revision: *revision,
        }),
        Command::Compact { .. } => Ok(()),
        Command::LeaseGrant { ttl, .. } => crate::mvcc::check_ttl(*ttl),
        Command::LeaseRevoke { .. } | Command::Alarm { .. } => Ok(()),
    }
}

pub fn check_range_request(req: &RangeRequest, limits: &Limits) -> Result<(), KvError> {
    let size = req.range.key.len() + req.range.range_end.len();
    if size > limits.max_request_bytes {
        return Err(KvError::RequestTooLarge {
            size,
            limit: limits.max_request_bytes,
        });
    }
    if req.revision < 0 {
        return Err(KvError::NegativeRevision {
            revision: req.revision,
        });
    }
    check_range(&req.range)
}

fn check_key(key: &[u8]) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    Ok(())
}

/// A range needs a key; its end, when given, must sort after the key (or be `"\0"`).
pub fn check_range(range: &KeyRange) -> Result<(), KvError> {
    check_key(&range.key)?;
    let end = range.range_end.as_slice();
    if !end.is_empty() && end != [0] && end <= range.key.as_slice() {
        return Err(KvError::RangeEndBeforeKey {
            key: show_key(&range.key),
            range_end: show_key(end),
        });
    }
    Ok(())
}

fn check_txn(txn: &TxnRequest, limits: &Limits) -> Result<(), KvError> {
    let count = txn
        .compare
        .len()
        .max(txn.success.len())
        .max(txn.failure.len());
    if count > limits.max_txn_ops {
        return Err(KvError::TooManyTxnOps {
            count,
            limit: limits.max_txn_ops,
        });
    }
    for compare in &txn.compare {
        check_range(&compare.range)?;
    }
    for op in txn.success.iter().chain(&txn.failure) {
        match op {
            RequestOp::Range(range) => check_range_request(range, limits)?,
            RequestOp::Put(put) => check_key(&put.key)?,
            RequestOp::DeleteRange(delete) => check_range(&delete.range)?,
            RequestOp::Txn(inner) => check_txn(inner, limits)?,
        }
    }
    Ok(())
}

/// The bytes of keys and values a command carries (what the request size limit counts).
pub fn command_size(command: &Command) -> usize {
    match command {
        Command::Put(put) => put.key.len() + put.value.len(),
        Command::DeleteRange(delete) => range_size(&delete.range),
        Command::Txn(txn) => txn_size(txn),
        _ => 0,
    }
}

fn range_size(range: &KeyRange) -> usize {
    range.key.len() + range.range_end.len()
}

fn txn_size(txn: &TxnRequest) -> usize {
    let compares: usize = txn
        .compare
        .iter()
        .map(|c| {
            let value = match &c.target {
                CompareTarget::Value(v) => v.len(),
                _ => 8,
            };
            range_size(&c.range) + value
        })
        .sum();
    let ops: usize = txn
        .success
        .iter()
        .chain(&txn.failure)
        .map(|op| match op {
            RequestOp::Range(r) => range_size(&r.range),
            RequestOp::Put(p) => p.key.len() + p.value.len(),
            RequestOp::DeleteRange(d) => range_size(&d.range),
            RequestOp::Txn(inner) => txn_size(inner),
        })
        .sum();
    compares + ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_shapes_get_precise_errors() {
        let limits = Limits::default();
        let put = |key: &[u8], value: Vec<u8>| {
            Command::Put(PutRequest {
                key: key.to_vec(),
                value: value.into(),
                ..Default::default()
            })
        };
        assert_eq!(
            check_command(&put(b"", vec![]), &limits),
            Err(KvError::EmptyKey)
        );
        let huge = vec![0u8; limits.max_request_bytes + 1];
        assert!(matches!(
            check_command(&put(b"k", huge), &limits),
            Err(KvError::RequestTooLarge { .. })
        ));
        let backwards = KeyRange {
            key: b"b".to_vec(),
            range_end: b"a".to_vec(),
        };
        assert_eq!(
            check_range(&backwards),
            Err(KvError::RangeEndBeforeKey {
                key: "b".into(),
                range_end: "a".into()
            })
        );
        let open = KeyRange {
            key: b"b".to_vec(),
            range_end: vec![0],
        };
        assert_eq!(check_range(&open), Ok(()));
        let many = TxnRequest {
            success: vec![
                RequestOp::Put(PutRequest {
                    key: b"k".to_vec(),
                    ..Default::default()
                });
                129
            ],
            ..Default::default()
        };
        assert_eq!(
            check_command(&Command::Txn(many), &limits),
            Err(KvError::TooManyTxnOps {
                count: 129,
                limit: 128
            })
        );
        assert_eq!(
            check_command(&Command::LeaseGrant { id: 1, ttl: -1 }, &limits),
            Err(KvError::InvalidTtl { ttl: -1 })
        );
        assert_eq!(
            check_command(&Command::Compact { revision: -3 }, &limits),
            Err(KvError::NegativeRevision { revision: -3 })
        );
    }
}
