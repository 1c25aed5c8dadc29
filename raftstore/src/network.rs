//! Peer traffic, the calling side: openraft's RPCs and forwarded client requests, over tonic
//! gRPC with bincode payloads (`rudder.raft.RaftPeer`). The serving side is
//! [`crate::peer_service`].
//!
//! Clients connect lazily and reconnect by themselves; an unreachable peer is reported to
//! openraft as `Unreachable` so it backs off instead of spinning. Every message carries this
//! member's [`Envelope`] and every reply must come from this member's cluster
//! (see [`crate::identity`]).

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
use prometheus_client::metrics::counter::Counter;
use rudder_proto::raft::raft_peer_client::RaftPeerClient;
use rudder_proto::raft::RaftPayload;
use rudder_proto::tls::ClientTls;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use crate::append_sender::AppendSender;
use crate::codec;
use crate::identity::{Envelope, Identity, Refusal};
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
    /// A new member asks who is there: the reply's envelope names the cluster it is about
    /// to join (it must know before the leader starts replicating to it).
    Hello,
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

/// A channel to the peer at `addr`, over TLS with `tls` when the cluster speaks it.
pub fn channel_to(addr: &str, tls: Option<&ClientTls>) -> Result<Channel, String> {
    let dial = rudder_proto::dial::Dial::master(addr, tls);
    let endpoint = dial
        .endpoint()?
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5));
    dial.connect_lazy(endpoint)
}

pub fn peer_client(addr: &str, tls: Option<&ClientTls>) -> Result<RaftPeerClient<Channel>, String> {
    Ok(RaftPeerClient::new(channel_to(addr, tls)?)
        .max_decoding_message_size(PEER_MAX_MESSAGE_BYTES)
        .max_encoding_message_size(PEER_MAX_MESSAGE_BYTES))
}

/// A peer message: `data` in `envelope`.
pub fn payload(envelope: Envelope, data: Vec<u8>) -> RaftPayload {
    RaftPayload {
        data,
        cluster_id: envelope.cluster_id,
        from: envelope.from,
        to: envelope.to,
    }
}

/// The envelope a peer message came in.
pub fn envelope_of(payload: &RaftPayload) -> Envelope {
    Envelope {
        cluster_id: payload.cluster_id,
        from: payload.from,
        to: payload.to,
    }
}

/// The peer port's RPCs.
#[derive(Debug, Clone, Copy)]
pub enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
    Forward,
    PreVote,
    TimeoutNow,
}

/// Why a peer call got no usable reply.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("peer {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// The call failed on the way or was refused; it may have been served.
    #[error("peer {addr}: {status}")]
    Status { addr: String, status: tonic::Status },
    #[error("peer {addr} answered for another cluster: {refusal}")]
    Foreign { addr: String, refusal: Refusal },
}

/// A peer's reply and the envelope it came in.
pub struct Reply {
    pub data: Vec<u8>,
    pub envelope: Envelope,
}

/// One HTTP/2 connection per peer address, shared by every user: openraft's replication
/// streams, the leadership checks it makes for each linearizable read (which ask for a new
/// client every time), and request forwarding. Every message goes out in this member's
/// [`Identity`].
#[derive(Debug, Clone)]
pub struct PeerClients {
    clients: Arc<Mutex<HashMap<String, RaftPeerClient<Channel>>>>,
    identity: Arc<Identity>,
    /// TLS to the peers (none: plaintext, on loopback).
    tls: Option<ClientTls>,
}

impl PeerClients {
    pub fn new(identity: Arc<Identity>, tls: Option<ClientTls>) -> Self {
        Self {
            clients: Arc::default(),
            identity,
            tls,
        }
    }

    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    fn client(&self, addr: &str) -> Result<RaftPeerClient<Channel>, String> {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(client) = clients.get(addr) {
            return Ok(client.clone());
        }
        let client = peer_client(addr, self.tls.as_ref())?;
        clients.insert(addr.to_owned(), client.clone());
        Ok(client)
    }

    /// Sends `data` to member `to` (0: whoever is there) at `addr`; the reply must come
    /// from this member's cluster. No deadline of its own: callers bound it.
    pub async fn call(
        &self,
        rpc: Rpc,
        addr: &str,
        to: NodeId,
        data: Vec<u8>,
    ) -> Result<Reply, CallError> {
        let mut client = self.client(addr).map_err(|e| CallError::Connect {
            addr: addr.to_owned(),
            reason: e.to_string(),
        })?;
        let message = payload(self.identity.envelope_to(to), data);
        let reply = match rpc {
            Rpc::AppendEntries => client.append_entries(message).await,
            Rpc::Vote => client.vote(message).await,
            Rpc::InstallSnapshot => client.install_snapshot(message).await,
            Rpc::Forward => client.forward(message).await,
            Rpc::PreVote => client.pre_vote(message).await,
            Rpc::TimeoutNow => client.timeout_now(message).await,
        }
        .map_err(|status| CallError::Status {
            addr: addr.to_owned(),
            status,
        })?
        .into_inner();
        let envelope = envelope_of(&reply);
        self.identity
            .admit_reply(envelope)
            .map_err(|refusal| CallError::Foreign {
                addr: addr.to_owned(),
                refusal,
            })?;
        Ok(Reply {
            data: reply.data,
            envelope,
        })
    }
}

/// Creates one [`PeerConnection`] per target member, over the shared [`PeerClients`].
#[derive(Debug, Clone)]
pub struct PeerNetwork {
    pub clients: PeerClients,
    /// How long openraft waits before it sends again to a member it could not reach: one
    /// heartbeat interval (see [`PeerConnection::backoff`]).
    pub retry_after: Duration,
    /// How long a batch of entries may take to be answered before it is sent again (see
    /// [`AppendSender`]).
    pub append_limit: Duration,
    /// Counts the snapshots sent whole.
    pub snapshots_sent: Counter,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerConnection {
        PeerConnection {
            caller: PeerCaller {
                target,
                addr: node.peer_addr.clone(),
                clients: self.clients.clone(),
            },
            appends: AppendSender::new(self.append_limit),
            retry_after: self.retry_after,
            snapshots_sent: self.snapshots_sent.clone(),
        }
    }
}

/// openraft's view of one target member.
pub struct PeerConnection {
    caller: PeerCaller,
    appends: AppendSender,
    retry_after: Duration,
    snapshots_sent: Counter,
}

/// Makes openraft's RPCs to one target; cheap to clone into a task.
#[derive(Clone)]
struct PeerCaller {
    target: NodeId,
    addr: String,
    clients: PeerClients,
}

impl PeerCaller {
    async fn call<Req, Resp, E>(
        &self,
        rpc: Rpc,
        request: &Req,
    ) -> Result<Resp, RPCError<NodeId, Member, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: Error + DeserializeOwned,
    {
        let data = codec::encode(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let reply = self
            .clients
            .call(rpc, &self.addr, self.target, data)
            .await
            // Refused, unreachable, or another cluster's: openraft backs off and tries again.
            .map_err(|error| RPCError::Unreachable(Unreachable::new(&error)))?;
        let result: Result<Resp, RaftError<NodeId, E>> =
            codec::decode(&reply.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    /// [`Self::call`] within `limit`.
    async fn call_within<Req, Resp, E>(
        &self,
        rpc: Rpc,
        request: &Req,
        limit: Duration,
    ) -> Result<Resp, RPCError<NodeId, Member, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: Error + DeserializeOwned,
    {
        tokio::time::timeout(limit, self.call(rpc, request))
            .await
            .unwrap_or_else(|elapsed| Err(RPCError::Network(NetworkError::new(&elapsed))))
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        // openraft drops this future after its timeout (`_option`); a batch sent goes on.
        let caller = self.caller.clone();
        self.appends
            .append(rpc, move |request| {
                let caller = caller.clone();
                async move { caller.call(Rpc::AppendEntries, &request).await }
            })
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let last_chunk = rpc.done;
        let answer = self
            .caller
            .call_within(Rpc::InstallSnapshot, &rpc, option.hard_ttl())
            .await;
        if last_chunk && answer.is_ok() {
            self.snapshots_sent.inc();
        }
        answer
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.caller
            .call_within(Rpc::Vote, &rpc, option.hard_ttl())
            .await
    }

    /// openraft's default waits 500 ms after an `Unreachable`, longer than our election
    /// timeout: one peer connection broken under load (a reset stream, a GOAWAY) silenced
    /// the leader towards a live follower until that follower started an election, and on
    /// two busy cores each election broke more connections (a three-master cluster stayed
    /// leaderless for a minute). One heartbeat interval still keeps a dead member from being
    /// called in a tight loop: a refused connection on its port costs microseconds.
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(self.retry_after))
    }
}
