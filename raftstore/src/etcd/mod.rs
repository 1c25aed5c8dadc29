//! The etcd v3 gRPC API on a member's client port: KV, Watch, Lease, Cluster and
//! Maintenance, wire-compatible so `etcdctl` and etcd client libraries work unchanged.
//! Each handler converts (see [`convert`]), calls [`Store`], and converts back.

pub mod convert;
pub mod snapshot_file;
mod watch_stream;

use std::pin::Pin;

use futures::Stream;
use rudder_proto::etcdserverpb as pb;
use rudder_proto::etcdserverpb::cluster_server::{Cluster, ClusterServer};
use rudder_proto::etcdserverpb::kv_server::{Kv, KvServer};
use rudder_proto::etcdserverpb::lease_server::{Lease, LeaseServer};
use rudder_proto::etcdserverpb::maintenance_server::{Maintenance, MaintenanceServer};
use rudder_proto::etcdserverpb::watch_server::WatchServer;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::Routes;
use tonic::{Request, Response, Status, Streaming};

use crate::kv::Alarm;
use crate::store::Store;
use crate::types::Member;
use crate::validate::Limits;
use convert::{status, AlarmAsked};

/// The version this API is compatible with, reported by `Status`.
pub const ETCD_API_VERSION: &str = "3.5.0";
/// Bytes per message of a `Snapshot` stream (etcd uses 32 KiB).
const SNAPSHOT_CHUNK: usize = 32 * 1024;

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The client port's gRPC services (the front door serves them; see `front_door.rs`).
pub fn routes(store: Store, limits: &Limits) -> Routes {
    let api = EtcdApi { store };
    let max = limits.max_grpc_message_bytes;
    Routes::new(KvServer::new(api.clone()).max_decoding_message_size(max))
        .add_service(WatchServer::new(api.clone()).max_decoding_message_size(max))
        .add_service(LeaseServer::new(api.clone()).max_decoding_message_size(max))
        .add_service(ClusterServer::new(api.clone()).max_decoding_message_size(max))
        .add_service(MaintenanceServer::new(api).max_decoding_message_size(max))
}

#[derive(Clone)]
pub struct EtcdApi {
    store: Store,
}

#[tonic::async_trait]
impl Kv for EtcdApi {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let req = convert::range_request(request.into_inner())?;
        let (header, response) = self.store.range(req).await.map_err(status)?;
        Ok(Response::new(convert::range_response(header, response)))
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let req = convert::put_request(request.into_inner());
        let (header, response) = self.store.put(req).await.map_err(status)?;
        Ok(Response::new(convert::put_response(header, response)))
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let req = convert::delete_request(request.into_inner());
        let (header, response) = self.store.delete_range(req).await.map_err(status)?;
        Ok(Response::new(convert::delete_response(header, response)))
    }

    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        let req = convert::txn_request(request.into_inner())?;
        let (header, response) = self.store.txn(req).await.map_err(status)?;
        Ok(Response::new(convert::txn_response(header, response)))
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let header = self
            .store
            .compact(request.into_inner().revision)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CompactionResponse {
            header: convert::header(header),
        }))
    }
}

#[tonic::async_trait]
impl Lease for EtcdApi {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let req = request.into_inner();
        let (header, lease) = self
            .store
            .lease_grant(req.id, req.ttl)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::LeaseGrantResponse {
            header: convert::header(header),
            id: lease.id,
            ttl: lease.ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let header = self
            .store
            .lease_revoke(request.into_inner().id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::LeaseRevokeResponse {
            header: convert::header(header),
        }))
    }

    type LeaseKeepAliveStream = ResponseStream<pb::LeaseKeepAliveResponse>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut requests = request.into_inner();
        let (sender, receiver) = mpsc::channel(16);
        let store = self.store.clone();
        tokio::spawn(async move {
            while let Ok(Some(req)) = requests.message().await {
                let reply = match store.lease_keep_alive(req.id).await {
                    Ok((header, ttl)) => Ok(pb::LeaseKeepAliveResponse {
                        header: convert::header(header),
                        id: req.id,
                        ttl,
                    }),
                    // etcd answers an unknown lease with TTL 0 ("expired or revoked").
                    Err(crate::StoreError::Kv(crate::KvError::LeaseNotFound { .. })) => {
                        Ok(pb::LeaseKeepAliveResponse {
                            header: convert::header(store.header()),
                            id: req.id,
                            ttl: 0,
                        })
                    }
                    Err(error) => Err(status(error)),
                };
                if sender.send(reply).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let req = request.into_inner();
        let (header, ttl) = self
            .store
            .lease_time_to_live(req.id, req.keys)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::LeaseTimeToLiveResponse {
            header: convert::header(header),
            id: ttl.id,
            ttl: ttl.ttl,
            granted_ttl: ttl.granted_ttl,
            keys: ttl.keys,
        }))
    }

    async fn lease_leases(
        &self,
        _request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        let (header, leases) = self.store.leases().await.map_err(status)?;
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: convert::header(header),
            leases: leases
                .into_iter()
                .map(|l| pb::LeaseStatus { id: l.id })
                .collect(),
        }))
    }
}

impl EtcdApi {
    fn member_list(&self) -> Vec<pb::Member> {
        self.store
            .members()
            .into_iter()
            .map(convert::member)
            .collect()
    }
}

#[tonic::async_trait]
impl Cluster for EtcdApi {
    async fn member_add(
        &self,
        request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        let req = request.into_inner();
        if !req.is_learner {
            return Err(Status::failed_precondition(
                "etcdserver: Rudder adds new members as learners only: add it with --learner, start it, \
                 and promote it once it has caught up (a voter that cannot vote yet risks quorum)",
            ));
        }
        let [url] = req.peer_ur_ls.as_slice() else {
            return Err(Status::invalid_argument(
                "etcdserver: give exactly one peer URL",
            ));
        };
        let member = Member {
            name: String::new(),
            peer_addr: convert::addr_of_url(url)?,
            client_addr: String::new(),
        };
        let id = (rand::random::<u64>() >> 1).max(1);
        self.store
            .add_member(id, member, true)
            .await
            .map_err(status)?;
        let added = self.member_list().into_iter().find(|m| m.id == id);
        Ok(Response::new(pb::MemberAddResponse {
            header: convert::header(self.store.header()),
            member: added,
            members: self.member_list(),
        }))
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        self.store
            .remove_member(request.into_inner().id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::MemberRemoveResponse {
            header: convert::header(self.store.header()),
            members: self.member_list(),
        }))
    }

    async fn member_update(
        &self,
        request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        let req = request.into_inner();
        let [url] = req.peer_ur_ls.as_slice() else {
            return Err(Status::invalid_argument(
                "etcdserver: give exactly one peer URL",
            ));
        };
        let current = self
            .store
            .members()
            .into_iter()
            .find(|m| m.id == req.id)
            .ok_or_else(|| status(crate::StoreError::MemberNotFound { id: req.id }))?;
        let member = Member {
            peer_addr: convert::addr_of_url(url)?,
            ..current.member
        };
        self.store
            .set_member(req.id, member)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::MemberUpdateResponse {
            header: convert::header(self.store.header()),
            members: self.member_list(),
        }))
    }

    async fn member_list(
        &self,
        _request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        Ok(Response::new(pb::MemberListResponse {
            header: convert::header(self.store.header()),
            members: self.member_list(),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        self.store
            .promote_member(request.into_inner().id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::MemberPromoteResponse {
            header: convert::header(self.store.header()),
            members: self.member_list(),
        }))
    }
}

#[tonic::async_trait]
impl Maintenance for EtcdApi {
    async fn alarm(
        &self,
        request: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        use pb::alarm_request::AlarmAction;
        let request = request.into_inner();
        let action = AlarmAction::try_from(request.action).map_err(|_| {
            Status::invalid_argument(format!(
                "etcdserver: unknown alarm action {}: GET, ACTIVATE or DEACTIVATE",
                request.action
            ))
        })?;
        let asked = convert::alarm_asked(request.alarm)?;
        let (header, alarms) = match (action, asked) {
            (AlarmAction::Get, asked) => {
                let (header, alarms) = self.store.alarms().await.map_err(status)?;
                let wanted = |alarm: &Alarm| match asked {
                    AlarmAsked::Any => true,
                    AlarmAsked::Kind(kind) => alarm.kind == kind,
                    AlarmAsked::NeverRaised => false,
                };
                (header, alarms.into_iter().filter(wanted).collect())
            }
            // As etcd: disarming what does not stand disarms nothing.
            (AlarmAction::Deactivate, AlarmAsked::Any | AlarmAsked::NeverRaised) => {
                (self.store.header(), Vec::new())
            }
            (AlarmAction::Activate, AlarmAsked::Any | AlarmAsked::NeverRaised) => {
                return Err(Status::invalid_argument(
                    "etcdserver: Rudder raises only NOSPACE alarms: name it to raise one",
                ))
            }
            (action, AlarmAsked::Kind(kind)) => {
                let alarm = Alarm {
                    member: request.member_id,
                    kind,
                };
                let raise = action == AlarmAction::Activate;
                let (header, changed) = self.store.set_alarm(alarm, raise).await.map_err(status)?;
                (header, changed.into_iter().collect())
            }
        };
        Ok(Response::new(pb::AlarmResponse {
            header: convert::header(header),
            alarms: alarms.iter().map(convert::alarm_member).collect(),
        }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let s = self.store.status();
        Ok(Response::new(pb::StatusResponse {
            header: convert::header(s.header),
            version: ETCD_API_VERSION.into(),
            db_size: s.db_size as i64,
            leader: s.leader.unwrap_or(0),
            raft_index: s.raft_index,
            raft_term: s.header.raft_term,
            raft_applied_index: s.raft_applied_index,
            errors: s.alarms.iter().map(convert::alarm_error).collect(),
            db_size_in_use: s.db_size_in_use as i64,
            is_learner: s.is_learner,
            storage_version: concat!("rudder-", env!("CARGO_PKG_VERSION")).into(),
            db_size_quota: self.store.quota_bytes().unwrap_or(0) as i64,
            downgrade_info: None,
        }))
    }

    async fn defragment(
        &self,
        _request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        let header = self.store.defragment().await.map_err(status)?;
        Ok(Response::new(pb::DefragmentResponse {
            header: convert::header(header),
        }))
    }

    async fn hash(
        &self,
        _request: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        let (header, hash) = self.store.hash_kv(0).map_err(status)?;
        Ok(Response::new(pb::HashResponse {
            header: convert::header(header),
            hash: hash.hash,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        let revision = request.into_inner().revision.max(0);
        let (header, hash) = self.store.hash_kv(revision).map_err(status)?;
        Ok(Response::new(pb::HashKvResponse {
            header: convert::header(header),
            hash: hash.hash,
            compact_revision: hash.compact_revision,
            hash_revision: hash.revision,
        }))
    }

    type SnapshotStream = ResponseStream<pb::SnapshotResponse>;

    async fn snapshot(
        &self,
        _request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let image = self.store.backup().await.map_err(status)?;
        let applied = self.store.status().raft_applied_index;
        // etcd's file (a bbolt database, then its SHA-256), so that etcdctl reads it.
        // Encoding a large keyspace takes a while: off the async workers (Raft's among them).
        let data = tokio::task::spawn_blocking(move || snapshot_file::encode(&image.mvcc, applied))
            .await
            .map_err(|e| Status::internal(format!("encoding the snapshot: {e}")))?
            .map_err(|e| Status::internal(format!("encoding the snapshot: {e}")))?;
        let header = convert::header(self.store.header());
        let chunks: Vec<Result<pb::SnapshotResponse, Status>> = data
            .chunks(SNAPSHOT_CHUNK)
            .enumerate()
            .map(|(i, blob)| {
                let sent = (i * SNAPSHOT_CHUNK + blob.len()) as u64;
                Ok(pb::SnapshotResponse {
                    header,
                    remaining_bytes: data.len() as u64 - sent,
                    blob: blob.to_vec(),
                    version: ETCD_API_VERSION.into(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn move_leader(
        &self,
        _request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        Err(Status::unimplemented(
            "etcdserver: move-leader is not supported by Rudder yet",
        ))
    }
}
