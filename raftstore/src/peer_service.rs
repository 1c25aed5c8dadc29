//! The peer port's gRPC service (`rudder.raft.RaftPeer`), the serving side of
//! [`crate::network`]: openraft's RPCs go to Raft, pre-votes and handovers to the member's
//! [`Campaign`], forwarded client requests to the [`Store`] — each only once this
//! member's [`Identity`] admits its envelope.

use std::sync::Arc;
use std::time::Duration;

use rudder_proto::raft::raft_peer_server::RaftPeer;
use rudder_proto::raft::RaftPayload;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};

use crate::campaign::Campaign;
use crate::codec;
use crate::election::PreVoteRequest;
use crate::identity::{Envelope, Identity, Purpose, Refusal};
use crate::network::{envelope_of, payload, ForwardRequest, ForwardResponse};
use crate::store::{Store, StoreError};
use crate::types::{NodeId, Raft, TypeConfig};

/// The peer port's gRPC service.
pub struct PeerService {
    raft: Raft,
    store: Store,
    identity: Arc<Identity>,
    campaign: Campaign,
}

impl PeerService {
    pub fn new(raft: Raft, store: Store, identity: Arc<Identity>, campaign: Campaign) -> Self {
        Self {
            raft,
            store,
            identity,
            campaign,
        }
    }

    /// The message's envelope and content, once decoded and admitted for `purpose`
    /// (a forwarded request's purpose depends on what it asks).
    fn admit<T: DeserializeOwned>(
        &self,
        request: Request<RaftPayload>,
        purpose: impl FnOnce(&T) -> Purpose,
    ) -> Result<(Envelope, T), Status> {
        let sender = request.remote_addr();
        let message = request.into_inner();
        let envelope = envelope_of(&message);
        let decoded: T = codec::decode(&message.data)
            .map_err(|e| Status::invalid_argument(format!("undecodable peer message: {e}")))?;
        self.identity
            .admit(envelope, purpose(&decoded))
            .map_err(|refusal| self.refuse(refusal, sender))?;
        Ok((envelope, decoded))
    }

    /// Says why a message was refused, to the sender and in this member's log (a refusal
    /// repeats at the sender's heartbeat rate: the log gets the 1st, 2nd, 4th, 8th...).
    fn refuse(&self, refusal: Refusal, sender: Option<std::net::SocketAddr>) -> Status {
        let count = self.identity.refused();
        if count.is_power_of_two() {
            let sender = sender.map(|addr| addr.to_string()).unwrap_or_default();
            tracing::warn!(%refusal, %sender, refused = count, "peer message refused");
        }
        Status::failed_precondition(refusal.to_string())
    }

    /// `value` as the reply to the member that sent `envelope`.
    fn reply<T: Serialize>(
        &self,
        envelope: Envelope,
        value: &T,
    ) -> Result<Response<RaftPayload>, Status> {
        let data =
            codec::encode(value).map_err(|e| Status::internal(format!("encoding reply: {e}")))?;
        Ok(Response::new(payload(
            self.identity.envelope_to(envelope.from),
            data,
        )))
    }
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let (envelope, rpc): (_, AppendEntriesRequest<TypeConfig>) =
            self.admit(request, |_| Purpose::Raft)?;
        // Failpoint for tests and chaos runs: `return(ID)` cuts member ID (decimal) off
        // from every leader's AppendEntries, heartbeats included, as a one-way partition.
        let cut_off = rudder_proto::failpoints::eval("append-entries-lost", |member| {
            member.and_then(|member| member.parse::<NodeId>().ok())
        });
        if cut_off.flatten() == Some(self.identity.member()) {
            return Err(Status::unavailable(
                "AppendEntries lost on the way (failpoint append-entries-lost)",
            ));
        }
        let carries_entries = !rpc.entries.is_empty();
        let answer = self.raft.append_entries(rpc).await;
        // Failpoint for tests and chaos runs: a follower slow to store entries (a slow
        // fsync, starved cores) answers `return(MILLIS)` late; heartbeats are not delayed.
        let delay = carries_entries
            .then(|| {
                rudder_proto::failpoints::eval("append-entries-slow", |millis| {
                    millis.and_then(|millis| millis.parse::<u64>().ok())
                })
            })
            .flatten()
            .flatten();
        if let Some(delay) = delay {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        self.reply(envelope, &answer)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let (envelope, rpc): (_, VoteRequest<NodeId>) = self.admit(request, |_| Purpose::Raft)?;
        self.reply(envelope, &self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let (envelope, rpc): (_, InstallSnapshotRequest<TypeConfig>) =
            self.admit(request, |_| Purpose::Raft)?;
        self.reply(envelope, &self.raft.install_snapshot(rpc).await)
    }

    async fn pre_vote(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let (envelope, pre_vote): (_, PreVoteRequest) = self.admit(request, |_| Purpose::Raft)?;
        let answer = self
            .campaign
            .answer_pre_vote(&pre_vote)
            .await
            .ok_or_else(|| Status::unavailable("this member's Raft has stopped"))?;
        self.reply(envelope, &answer)
    }

    async fn timeout_now(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let (envelope, ()): (_, ()) = self.admit(request, |_| Purpose::Raft)?;
        self.campaign
            .take_over_from(envelope.from)
            .await
            .map_err(|refused| Status::failed_precondition(refused.to_string()))?;
        self.reply(envelope, &())
    }

    async fn forward(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let (envelope, forwarded) =
            self.admit(request, |forwarded: &ForwardRequest| match forwarded {
                ForwardRequest::Hello => Purpose::Hello,
                ForwardRequest::Join { .. } => Purpose::Join,
                _ => Purpose::Forward,
            })?;
        let result: Result<ForwardResponse, StoreError> =
            self.store.serve_forwarded(forwarded).await;
        // Failpoint for tests and chaos runs: the request was served, the reply is lost on
        // the way back (as when the connection breaks), so the sender cannot tell.
        if rudder_proto::failpoints::eval("forward-reply-lost", |_| ()).is_some() {
            return Err(Status::unavailable(
                "connection reset after the request was served (failpoint forward-reply-lost)",
            ));
        }
        self.reply(envelope, &result)
    }
}
