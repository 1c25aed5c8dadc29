//! Alarms, as etcd's: a member raises NOSPACE when its keyspace outgrows the space quota
//! (`--quota-backend-bytes`), and while any member's NOSPACE alarm stands, every replica
//! refuses the writes that add data (puts, transactions with a put, lease grants) until an
//! operator has freed space (compact, defragment) and disarmed it. Deletes, compaction and
//! lease revocations still go through: they are how space is freed.
//!
//! Raised and disarmed through the Raft log and carried in snapshots, so every replica
//! refuses the same writes. Pure.

use std::collections::BTreeSet;

use crate::kv::{Alarm, AlarmKind, Command, PutRequest, RequestOp, TxnRequest};

/// The alarms standing in the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Alarms {
    standing: BTreeSet<Alarm>,
}

impl Alarms {
    pub fn new(list: impl IntoIterator<Item = Alarm>) -> Self {
        Self {
            standing: list.into_iter().collect(),
        }
    }

    /// Every standing alarm, by member.
    pub fn list(&self) -> Vec<Alarm> {
        self.standing.iter().copied().collect()
    }

    /// Raises `alarm`, or (`raise` false) disarms it; whether anything changed.
    pub fn set(&mut self, alarm: Alarm, raise: bool) -> bool {
        if raise {
            self.standing.insert(alarm)
        } else {
            self.standing.remove(&alarm)
        }
    }

    /// Whether a standing alarm refuses `command`: with NOSPACE, what adds data.
    pub fn refuse(&self, command: &Command) -> bool {
        let no_space = self.standing.iter().any(|a| a.kind == AlarmKind::NoSpace);
        no_space && adds_data(command)
    }
}

/// What `command` costs against the quota, as etcd counts it: a put its key and value and
/// 256 bytes of overhead, a lease grant 64 bytes, a transaction the puts of its costlier
/// branch (nested ones too); what frees space, nothing.
pub fn cost(command: &Command) -> u64 {
    match command {
        Command::Put(put) => put_cost(put),
        Command::LeaseGrant { .. } => LEASE_COST,
        Command::Txn(txn) => txn_cost(txn),
        Command::DeleteRange(_)
        | Command::Compact { .. }
        | Command::LeaseRevoke { .. }
        | Command::Alarm { .. } => 0,
    }
}

/// etcd's `kvOverhead` and `leaseOverhead`.
const PUT_OVERHEAD: u64 = 256;
const LEASE_COST: u64 = 64;

fn put_cost(put: &PutRequest) -> u64 {
    PUT_OVERHEAD + (put.key.len() + put.value.len()) as u64
}

fn txn_cost(txn: &TxnRequest) -> u64 {
    let branch = |ops: &[RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match op {
                RequestOp::Put(put) => put_cost(put),
                RequestOp::Txn(inner) => txn_cost(inner),
                RequestOp::Range(_) | RequestOp::DeleteRange(_) => 0,
            })
            .sum()
    };
    branch(&txn.success).max(branch(&txn.failure))
}

/// Whether `command` adds data, what etcd's quota charges for: a put, a transaction with a
/// put in either branch (nested ones too, which etcd lets through), a lease grant.
pub fn adds_data(command: &Command) -> bool {
    match command {
        Command::Put(_) | Command::LeaseGrant { .. } => true,
        Command::Txn(txn) => txn_puts(txn),
        Command::DeleteRange(_)
        | Command::Compact { .. }
        | Command::LeaseRevoke { .. }
        | Command::Alarm { .. } => false,
    }
}

fn txn_puts(txn: &TxnRequest) -> bool {
    txn.success.iter().chain(&txn.failure).any(|op| match op {
        RequestOp::Put(_) => true,
        RequestOp::Txn(inner) => txn_puts(inner),
        RequestOp::Range(_) | RequestOp::DeleteRange(_) => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{DeleteRangeRequest, KeyRange, PutRequest};

    fn put_request() -> PutRequest {
        PutRequest {
            key: b"k".to_vec(),
            ..Default::default()
        }
    }

    fn put() -> RequestOp {
        RequestOp::Put(put_request())
    }

    fn delete() -> RequestOp {
        RequestOp::DeleteRange(DeleteRangeRequest {
            range: KeyRange::single(b"k".to_vec()),
            prev_kv: false,
        })
    }

    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            compare: Vec::new(),
            success,
            failure,
        }
    }

    const NO_SPACE: Alarm = Alarm {
        member: 7,
        kind: AlarmKind::NoSpace,
    };

    #[test]
    fn a_standing_no_space_alarm_refuses_only_what_adds_data() {
        let mut alarms = Alarms::default();
        let grant = Command::LeaseGrant { id: 1, ttl: 10 };
        assert!(!alarms.refuse(&grant), "no alarm, no refusal");
        assert!(alarms.set(NO_SPACE, true));
        assert!(!alarms.set(NO_SPACE, true), "raised once");
        assert!(alarms.refuse(&grant));
        assert!(alarms.refuse(&Command::Put(put_request())));
        let nested = txn(
            vec![delete()],
            vec![RequestOp::Txn(txn(vec![], vec![put()]))],
        );
        assert!(
            alarms.refuse(&Command::Txn(nested)),
            "a put nested anywhere"
        );
        for freeing in [
            Command::Txn(txn(vec![delete()], vec![delete()])),
            Command::Compact { revision: 3 },
            Command::LeaseRevoke { id: 1 },
            Command::Alarm {
                alarm: NO_SPACE,
                raise: false,
            },
        ] {
            assert!(!alarms.refuse(&freeing), "{freeing:?} frees space");
        }
        assert!(alarms.set(NO_SPACE, false));
        assert!(!alarms.set(NO_SPACE, false), "disarmed once");
        assert!(!alarms.refuse(&grant));
        assert_eq!(alarms.list(), Vec::new());
    }

    #[test]
    fn a_write_costs_what_etcd_charges_it() {
        assert_eq!(cost(&Command::Put(put_request())), 256 + 1);
        assert_eq!(cost(&Command::LeaseGrant { id: 1, ttl: 5 }), 64);
        let costlier_failure = txn(
            vec![put()],
            vec![put(), RequestOp::Txn(txn(vec![put()], vec![]))],
        );
        assert_eq!(cost(&Command::Txn(costlier_failure)), 2 * 257);
        assert_eq!(cost(&Command::Txn(txn(vec![delete()], vec![]))), 0);
        assert_eq!(cost(&Command::Compact { revision: 1 }), 0);
    }
}
