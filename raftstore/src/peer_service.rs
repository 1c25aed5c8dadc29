//! The peer port's gRPC service (`rudder.raft.RaftPeer`), the serving side of
//! [`crate::network`]: openraft's RPCs go to Raft, forwarded client requests to the
//! [`Store`].

use rudder_proto::raft::raft_peer_server::RaftPeer;
use rudder_proto::raft::RaftPayload;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};

use crate::codec;
use crate::network::{ForwardRequest, ForwardResponse};
use crate::store::{Store, StoreError};
use crate::types::{NodeId, Raft, TypeConfig};

/// The peer port's gRPC service.
pub struct PeerService {
    raft: Raft,
    store: Store,
}

impl PeerService {
    pub fn new(raft: Raft, store: Store) -> Self {
        Self { raft, store }
    }
}

fn decode_request<T: DeserializeOwned>(request: Request<RaftPayload>) -> Result<T, Status> {
    codec::decode(&request.into_inner().data)
        .map_err(|e| Status::invalid_argument(format!("undecodable peer message: {e}")))
}

fn encode_response<T: Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    let data =
        codec::encode(value).map_err(|e| Status::internal(format!("encoding reply: {e}")))?;
    Ok(Response::new(RaftPayload { data }))
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode_request(request)?;
        encode_response(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: VoteRequest<NodeId> = decode_request(request)?;
        encode_response(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode_request(request)?;
        encode_response(&self.raft.install_snapshot(rpc).await)
    }

    async fn forward(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let forwarded: ForwardRequest = decode_request(request)?;
        let result: Result<ForwardResponse, StoreError> =
            self.store.serve_forwarded(forwarded).await;
        // Failpoint for tests and chaos runs: the request was served, the reply is lost on
        // the way back (as when the connection breaks), so the sender cannot tell.
        fail::fail_point!("forward-reply-lost", |_| Err(Status::unavailable(
            "connection reset after the request was served (failpoint forward-reply-lost)"
        )));
        encode_response(&result)
    }
}
