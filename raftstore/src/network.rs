//! Peer traffic, the calling side: openraft's RPCs and forwarded client requests, over tonic
//! gRPC with bincode payloads (`rudder.raft.RaftPeer`). The serving side is
//! [`crate::peer_service`].
//!
//! Clients connect lazily and reconnect by themselves; an unreachable peer is reported to
//! openraft as `Unreachable` so it backs off instead of spinning.

use std::collections::HashMap;
use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use rudder_proto::raft::raft_peer_client::RaftPeerClient;
use rudder_proto::raft::RaftPayload;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint};
use tonic::Request;

use crate::codec;
use crate::kv::{LeaseId, LeaseTimeToLive};
use crate::types::{Member, NodeId, Outcome, Request as Write, TypeConfig};

/// Peer messages can carry many log entries or a snapshot chunk: allow large ones.
pub const PEER_MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// A client request a follower hands to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardRequest {
    /// A write, with the tag its every retry carries.
    Write(Write),
    /// "Which log index must I apply before a linearizable read?"
    ReadIndex,
    LeaseKeepAlive(LeaseId),
    LeaseTimeToLive {
        id: LeaseId,
        keys: bool,
    },
    AddMember {
        id: NodeId,
        member: Member,
        learner: bool,
    },
    /// A new member asks to be added; whoever receives it passes it on to the leader.
    Join {
        id: NodeId,
        member: Member,
    },
    /// Updates a member's addresses.
    SetMember {
        id: NodeId,
        member: Member,
    },
    PromoteMember(NodeId),
    RemoveMember(NodeId),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardResponse {
    Written(Outcome),
    ReadIndex(u64),
    KeepAlive { ttl: i64 },
    TimeToLive(LeaseTimeToLive),
    Done,
}

pub fn channel_to(addr: &str) -> Result<Channel, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5));
    Ok(endpoint.connect_lazy())
}

pub fn peer_client(addr: &str) -> Result<RaftPeerClient<Channel>, tonic::transport::Error> {
    Ok(RaftPeerClient::new(channel_to(addr)?)
        .max_decoding_message_size(PEER_MAX_MESSAGE_BYTES)
        .max_encoding_message_size(PEER_MAX_MESSAGE_BYTES))
}

/// One HTTP/2 connection per peer address, shared by every user: openraft's replication
/// streams, the leadership checks it makes for each linearizable read (which ask for a new
/// client every time), and request forwarding.
#[derive(Debug, Clone, Default)]
pub struct PeerClients {
    clients: Arc<Mutex<HashMap<String, RaftPeerClient<Channel>>>>,
}

impl PeerClients {
    pub fn get(&self, addr: &str) -> Result<RaftPeerClient<Channel>, tonic::transport::Error> {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(client) = clients.get(addr) {
            return Ok(client.clone());
        }
        let client = peer_client(addr)?;
        clients.insert(addr.to_owned(), client.clone());
        Ok(client)
    }
}

/// Creates one [`PeerConnection`] per target member, over the shared [`PeerClients`].
#[derive(Debug, Clone, Default)]
pub struct PeerNetwork {
    pub clients: PeerClients,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerConnection {
        PeerConnection {
            target,
            client: self.clients.get(&node.peer_addr).ok(),
            addr: node.peer_addr.clone(),
        }
    }
}

pub struct PeerConnection {
    target: NodeId,
    addr: String,
    client: Option<RaftPeerClient<Channel>>,
}

#[derive(Debug, thiserror::Error)]
#[error("peer {addr}: {status}")]
struct PeerCallError {
    addr: String,
    status: String,
}

#[derive(Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl PeerConnection {
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        request: &Req,
        option: RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Member, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: Error + DeserializeOwned,
    {
        let Some(client) = self.client.as_mut() else {
            let error = PeerCallError {
                addr: self.addr.clone(),
                status: "invalid address".into(),
            };
            return Err(RPCError::Unreachable(Unreachable::new(&error)));
        };
        let data = codec::encode(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let payload = Request::new(RaftPayload { data });
        let call = async {
            match rpc {
                Rpc::AppendEntries => client.append_entries(payload).await,
                Rpc::Vote => client.vote(payload).await,
                Rpc::InstallSnapshot => client.install_snapshot(payload).await,
            }
        };
        let response = match tokio::time::timeout(option.hard_ttl(), call).await {
            Err(elapsed) => return Err(RPCError::Network(NetworkError::new(&elapsed))),
            Ok(Err(status)) => {
                let error = PeerCallError {
                    addr: self.addr.clone(),
                    status: status.to_string(),
                };
                return Err(RPCError::Unreachable(Unreachable::new(&error)));
            }
            Ok(Ok(response)) => response.into_inner(),
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            codec::decode(&response.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.call(Rpc::AppendEntries, &rpc, option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(Rpc::InstallSnapshot, &rpc, option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.call(Rpc::Vote, &rpc, option).await
    }
}
