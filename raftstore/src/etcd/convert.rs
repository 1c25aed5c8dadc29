//! Conversions between the etcd wire types (`rudder-proto`) and the store's own types.
//!
//! They live here rather than in `rudder-proto` because Rust's orphan rule puts a `From`
//! impl beside one of its two types, and the proto crate must not depend on the store.

use rudder_proto::etcdserverpb as pb;
use rudder_proto::mvccpb;
use tonic::Status;

use crate::error::KvError;
use crate::kv::*;
use crate::store::{Header, MemberInfo, StoreError};

pub fn header(h: Header) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader {
        cluster_id: h.cluster_id,
        member_id: h.member_id,
        revision: h.revision,
        raft_term: h.raft_term,
    })
}

pub fn kv(kv: KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value.into(),
        lease: kv.lease,
    }
}

pub fn event(event: Event) -> mvccpb::Event {
    let kind = match event.kind {
        EventKind::Put => mvccpb::event::EventType::Put,
        EventKind::Delete => mvccpb::event::EventType::Delete,
    };
    mvccpb::Event {
        r#type: kind as i32,
        kv: Some(self::kv(event.kv)),
        prev_kv: event.prev_kv.map(self::kv),
    }
}

fn range_of(key: Vec<u8>, range_end: Vec<u8>) -> KeyRange {
    KeyRange { key, range_end }
}

/// etcd reads a revision `<= 0` as "the latest".
fn latest_if_negative(revision: Revision) -> Revision {
    revision.max(0)
}

pub fn range_request(r: pb::RangeRequest) -> Result<RangeRequest, Status> {
    use pb::range_request::{SortOrder as O, SortTarget as T};
    let sort_order = match O::try_from(r.sort_order) {
        Ok(O::None) => SortOrder::None,
        Ok(O::Ascend) => SortOrder::Ascend,
        Ok(O::Descend) => SortOrder::Descend,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "etcdserver: unknown sort_order {}",
                r.sort_order
            )))
        }
    };
    let sort_target = match T::try_from(r.sort_target) {
        Ok(T::Key) => SortTarget::Key,
        Ok(T::Version) => SortTarget::Version,
        Ok(T::Create) => SortTarget::Create,
        Ok(T::Mod) => SortTarget::Mod,
        Ok(T::Value) => SortTarget::Value,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "etcdserver: unknown sort_target {}",
                r.sort_target
            )))
        }
    };
    Ok(RangeRequest {
        range: range_of(r.key, r.range_end),
        limit: r.limit.max(0),
        revision: latest_if_negative(r.revision),
        sort_order,
        sort_target,
        serializable: r.serializable,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    })
}

pub fn range_response(h: Header, r: RangeResponse) -> pb::RangeResponse {
    pb::RangeResponse {
        header: header(h),
        kvs: r.kvs.into_iter().map(kv).collect(),
        more: r.more,
        count: r.count,
    }
}

pub fn put_request(r: pb::PutRequest) -> PutRequest {
    PutRequest {
        key: r.key,
        value: r.value.into(),
        lease: r.lease,
        prev_kv: r.prev_kv,
        ignore_value: r.ignore_value,
        ignore_lease: r.ignore_lease,
    }
}

pub fn put_response(h: Header, r: PutResponse) -> pb::PutResponse {
    pb::PutResponse {
        header: header(h),
        prev_kv: r.prev_kv.map(kv),
    }
}

pub fn delete_request(r: pb::DeleteRangeRequest) -> DeleteRangeRequest {
    DeleteRangeRequest {
        range: range_of(r.key, r.range_end),
        prev_kv: r.prev_kv,
    }
}

pub fn delete_response(h: Header, r: DeleteRangeResponse) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: header(h),
        deleted: r.deleted,
        prev_kvs: r.prev_kvs.into_iter().map(kv).collect(),
    }
}

fn compare(c: pb::Compare) -> Result<Compare, Status> {
    use pb::compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let result = match R::try_from(c.result) {
        Ok(R::Equal) => CompareResult::Equal,
        Ok(R::Greater) => CompareResult::Greater,
        Ok(R::Less) => CompareResult::Less,
        Ok(R::NotEqual) => CompareResult::NotEqual,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "etcdserver: unknown compare result {}",
                c.result
            )))
        }
    };
    // The oneof carries the operand; `target` says which field of the key to compare.
    let target = match (T::try_from(c.target), c.target_union) {
        (Ok(T::Version), Some(U::Version(v))) | (Ok(T::Version), Some(U::CreateRevision(v))) => {
            CompareTarget::Version(v)
        }
        (Ok(T::Version), None) => CompareTarget::Version(0),
        (Ok(T::Create), Some(U::CreateRevision(v))) => CompareTarget::Create(v),
        (Ok(T::Create), None) => CompareTarget::Create(0),
        (Ok(T::Mod), Some(U::ModRevision(v))) => CompareTarget::Mod(v),
        (Ok(T::Mod), None) => CompareTarget::Mod(0),
        (Ok(T::Value), Some(U::Value(v))) => CompareTarget::Value(v),
        (Ok(T::Value), None) => CompareTarget::Value(Vec::new()),
        (Ok(T::Lease), Some(U::Lease(v))) => CompareTarget::Lease(v),
        (Ok(T::Lease), None) => CompareTarget::Lease(0),
        (target, operand) => {
            return Err(Status::invalid_argument(format!(
                "etcdserver: compare target {target:?} does not match its operand {operand:?}"
            )))
        }
    };
    Ok(Compare {
        range: range_of(c.key, c.range_end),
        result,
        target,
    })
}

fn request_op(op: pb::RequestOp) -> Result<RequestOp, Status> {
    use pb::request_op::Request;
    match op.request {
        Some(Request::RequestRange(r)) => Ok(RequestOp::Range(range_request(r)?)),
        Some(Request::RequestPut(r)) => Ok(RequestOp::Put(put_request(r))),
        Some(Request::RequestDeleteRange(r)) => Ok(RequestOp::DeleteRange(delete_request(r))),
        Some(Request::RequestTxn(r)) => Ok(RequestOp::Txn(txn_request(r)?)),
        None => Err(Status::invalid_argument(
            "etcdserver: a txn operation has no request set",
        )),
    }
}

pub fn txn_request(r: pb::TxnRequest) -> Result<TxnRequest, Status> {
    Ok(TxnRequest {
        compare: r
            .compare
            .into_iter()
            .map(compare)
            .collect::<Result<_, _>>()?,
        success: r
            .success
            .into_iter()
            .map(request_op)
            .collect::<Result<_, _>>()?,
        failure: r
            .failure
            .into_iter()
            .map(request_op)
            .collect::<Result<_, _>>()?,
    })
}

fn response_op(h: Header, op: ResponseOp) -> pb::ResponseOp {
    use pb::response_op::Response;
    let response = match op {
        ResponseOp::Range(r) => Response::ResponseRange(range_response(h, r)),
        ResponseOp::Put(r) => Response::ResponsePut(put_response(h, r)),
        ResponseOp::DeleteRange(r) => Response::ResponseDeleteRange(delete_response(h, r)),
        ResponseOp::Txn(r) => Response::ResponseTxn(txn_response(h, r)),
    };
    pb::ResponseOp {
        response: Some(response),
    }
}

pub fn txn_response(h: Header, r: TxnResponse) -> pb::TxnResponse {
    pb::TxnResponse {
        header: header(h),
        succeeded: r.succeeded,
        responses: r
            .responses
            .into_iter()
            .map(|op| response_op(h, op))
            .collect(),
    }
}

pub fn member(info: MemberInfo) -> pb::Member {
    let url = |addr: &str| {
        if addr.is_empty() {
            Vec::new()
        } else {
            vec![format!("http://{addr}")]
        }
    };
    // Client URLs are listed as bare host:port: etcd 3.4's client dials a listed URL with the
    // whole URL as the HTTP/2 `:authority`, which hyper (rightly) refuses; host:port works
    // with every etcd client version.
    let client_urls = match info.member.client_addr.as_str() {
        "" => Vec::new(),
        addr => vec![addr.to_owned()],
    };
    pb::Member {
        id: info.id,
        name: info.member.name.clone(),
        peer_ur_ls: url(&info.member.peer_addr),
        client_ur_ls: client_urls,
        is_learner: info.is_learner,
    }
}

/// `http://host:port` (or a bare `host:port`) → `host:port`.
pub fn addr_of_url(url: &str) -> Result<String, Status> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let addr = rest.trim_end_matches('/');
    if addr.contains('/') || !addr.contains(':') {
        return Err(Status::invalid_argument(format!(
            "etcdserver: peer URL {url:?} is not of the form http://host:port"
        )));
    }
    Ok(addr.to_owned())
}

/// The alarm type an Alarm request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmAsked {
    /// NONE: in a GET, every alarm.
    Any,
    Kind(AlarmKind),
    /// CORRUPT, which Rudder never raises (HashKV compares the replicas instead).
    NeverRaised,
}

pub fn alarm_asked(alarm: i32) -> Result<AlarmAsked, Status> {
    match pb::AlarmType::try_from(alarm) {
        Ok(pb::AlarmType::None) => Ok(AlarmAsked::Any),
        Ok(pb::AlarmType::Nospace) => Ok(AlarmAsked::Kind(AlarmKind::NoSpace)),
        Ok(pb::AlarmType::Corrupt) => Ok(AlarmAsked::NeverRaised),
        Err(_) => Err(Status::invalid_argument(format!(
            "etcdserver: unknown alarm type {alarm}: NONE, NOSPACE or CORRUPT"
        ))),
    }
}

pub fn alarm_member(alarm: &Alarm) -> pb::AlarmMember {
    let kind = match alarm.kind {
        AlarmKind::NoSpace => pb::AlarmType::Nospace,
    };
    pb::AlarmMember {
        member_id: alarm.member,
        alarm: kind as i32,
    }
}

/// How etcd's `Status` lists a standing alarm among its errors.
pub fn alarm_error(alarm: &Alarm) -> String {
    let kind = match alarm.kind {
        AlarmKind::NoSpace => "NOSPACE",
    };
    format!("memberID:{} alarm:{kind} ", alarm.member)
}

/// Maps a store error to the gRPC status etcd would send, with etcd's message prefix.
pub fn status(error: StoreError) -> Status {
    let message = format!("etcdserver: {error}");
    match error {
        StoreError::Kv(kv) => match kv {
            KvError::Compacted { .. } | KvError::FutureRevision { .. } => {
                Status::out_of_range(message)
            }
            KvError::LeaseNotFound { .. } | KvError::KeyNotFound { .. } => {
                Status::not_found(message)
            }
            KvError::LeaseExists { .. } => Status::failed_precondition(message),
            KvError::OutcomeForgotten { .. } => Status::unavailable(message),
            KvError::RequestIdReused { .. } => Status::failed_precondition(message),
            KvError::NoSpace => Status::resource_exhausted(message),
            KvError::HistoryUnreadable { .. } => Status::internal(message),
            _ => Status::invalid_argument(message),
        },
        StoreError::NoLeader
        | StoreError::LeaderUnreachable { .. }
        | StoreError::Timeout { .. } => Status::unavailable(message),
        StoreError::Stopped | StoreError::Restoring | StoreError::QuorumLost { .. } => {
            Status::unavailable(message)
        }
        StoreError::MemberIdUsed { .. }
        | StoreError::NotLearner { .. }
        | StoreError::Membership { .. } => Status::failed_precondition(message),
        StoreError::MemberNotFound { .. } => Status::not_found(message),
        StoreError::UnexpectedReply { .. } => Status::internal(message),
    }
}
