//! [`Store`]: the store's Rust client API, used in-process by the API server and behind the
//! etcd-compatible gRPC service.
//!
//! Any member serves every call. Writes go through Raft on the leader (a follower forwards
//! them over the peer port); linearizable reads confirm the leader's read index first (a
//! follower asks the leader for it, then waits until it has applied that far); serializable
//! reads are served from the local replica.
//!
//! One client request, at most one application: every write carries a request tag (the
//! caller's, or this store's own numbering), and every retry below — to the next leader,
//! after a lost reply, after losing leadership mid-proposal — carries the same tag, so the
//! state machine answers a repeat with the first outcome (`crate::sessions`). Which failures
//! are retried is decided in `on_leader` and `forward`, and said there.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};
use rudder_proto::raft::RaftPayload;
use rudder_proto::request_ids::{RequestIds, RETRY_HORIZON};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::KvError;
use crate::keyspace::Keyspace;
use crate::kv::*;
use crate::lease::LeaseClock;
use crate::network::{ForwardRequest, ForwardResponse, PeerClients};
use crate::proposer::{Proposer, ReadIndexer, Rejected};
use crate::sessions::RequestTag;
use crate::types::{Member, NodeId, Outcome, Raft, Request};
use crate::validate::{check_command, check_range_request, Limits};
use crate::watch::{self, WatchRequest, Watcher};

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum StoreError {
    #[error(transparent)]
    Kv(#[from] KvError),
    #[error("no leader is available (election in progress or no quorum); retry shortly")]
    NoLeader,
    #[error("the leader {leader} could not be reached ({reason}); the request may or may not have been applied")]
    LeaderUnreachable { leader: String, reason: String },
    #[error("request timed out after {millis} ms waiting for the cluster; a write may or may not have been applied")]
    Timeout { millis: u64 },
    #[error("this member has stopped")]
    Stopped,
    #[error("member id {id:x} was used before: a removed member's id is never reused")]
    MemberIdUsed { id: NodeId },
    #[error("member {id:x} is not in the cluster")]
    MemberNotFound { id: NodeId },
    #[error("member {id:x} is not a learner: only a learner can be promoted")]
    NotLearner { id: NodeId },
    #[error("membership change refused: {reason}")]
    Membership { reason: String },
    #[error("the leader answered with {detail}: members run incompatible versions")]
    UnexpectedReply { detail: String },
}

/// The response header of every call, like etcd's `ResponseHeader`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub cluster_id: u64,
    pub member_id: NodeId,
    pub revision: Revision,
    pub raft_term: u64,
}

/// One member as `member list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: NodeId,
    pub member: Member,
    pub is_learner: bool,
}

/// A member's view of itself (etcd's `Status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    pub header: Header,
    pub leader: Option<NodeId>,
    pub raft_index: u64,
    pub raft_applied_index: u64,
    pub is_learner: bool,
    pub db_size: u64,
    pub version_count: usize,
}

/// Tunables of the client-facing side of a member.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub limits: Limits,
    /// How long a call waits for a leader, a forward, or a read index before giving up.
    pub request_timeout: Duration,
    /// Idle interval between progress notifications of watches that asked for them.
    pub watch_progress_interval: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            request_timeout: Duration::from_secs(7),
            watch_progress_interval: Duration::from_secs(600),
        }
    }
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    id: NodeId,
    raft: Raft,
    keyspace: Arc<Keyspace>,
    options: StoreOptions,
    leases: Mutex<LeaseClock>,
    peers: PeerClients,
    proposer: Proposer,
    read_indexer: ReadIndexer,
    /// This member's numbering of the writes it makes for callers that bring no tag.
    request_ids: RequestIds,
    /// Membership changes made here run one at a time, each with its check: a check and
    /// the change it decides must not interleave with another change (a member's address
    /// update that waited out a removal would otherwise put the removed member back).
    membership_lock: tokio::sync::Mutex<()>,
    db_size: Box<dyn Fn() -> u64 + Send + Sync>,
}

/// What to do after one attempt at a leader-only call.
enum Attempt<T> {
    Done(T),
    Forward(Member),
    WaitForLeader,
}

impl Store {
    pub fn new(
        id: NodeId,
        raft: Raft,
        keyspace: Arc<Keyspace>,
        options: StoreOptions,
        peers: PeerClients,
        db_size: Box<dyn Fn() -> u64 + Send + Sync>,
    ) -> Self {
        let inner = Inner {
            id,
            proposer: Proposer::start(raft.clone(), options.request_timeout),
            read_indexer: ReadIndexer::start(raft.clone()),
            raft,
            keyspace,
            options,
            leases: Mutex::new(LeaseClock::default()),
            peers,
            request_ids: RequestIds::new(),
            membership_lock: tokio::sync::Mutex::new(()),
            db_size,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.options.limits
    }

    pub fn header(&self) -> Header {
        let revision = self.inner.keyspace.read().mvcc.revision();
        self.header_at(revision)
    }

    fn header_at(&self, revision: Revision) -> Header {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow();
        Header {
            cluster_id: self.inner.keyspace.read().meta.cluster_id,
            member_id: self.inner.id,
            revision,
            raft_term: metrics.current_term,
        }
    }

    // ---- KV ----

    pub async fn range(&self, req: RangeRequest) -> Result<(Header, RangeResponse), StoreError> {
        check_range_request(&req, self.limits())?;
        if !req.serializable {
            self.read_barrier().await?;
        }
        let state = self.inner.keyspace.read();
        let response = state.mvcc.range(&req)?;
        let revision = state.mvcc.revision();
        drop(state);
        Ok((self.header_at(revision), response))
    }

    pub async fn put(&self, req: PutRequest) -> Result<(Header, PutResponse), StoreError> {
        match self.propose(Command::Put(req)).await? {
            (header, CommandResult::Put(response)) => Ok((header, response)),
            (_, other) => unreachable!("put answered with {other:?}"),
        }
    }

    pub async fn delete_range(
        &self,
        req: DeleteRangeRequest,
    ) -> Result<(Header, DeleteRangeResponse), StoreError> {
        match self.propose(Command::DeleteRange(req)).await? {
            (header, CommandResult::DeleteRange(response)) => Ok((header, response)),
            (_, other) => unreachable!("delete answered with {other:?}"),
        }
    }

    pub async fn txn(&self, req: TxnRequest) -> Result<(Header, TxnResponse), StoreError> {
        self.txn_as(req, None)
            .await
            .map(|(header, response, _)| (header, response))
    }

    /// A transaction made on behalf of a client request `tag` (the API server passes its
    /// clients' request numbers): a repeat of the tag is answered with the first outcome,
    /// and the returned flag says so (`true`: this call changed nothing).
    pub async fn txn_as(
        &self,
        req: TxnRequest,
        tag: Option<RequestTag>,
    ) -> Result<(Header, TxnResponse, bool), StoreError> {
        match self.propose_as(Command::Txn(req), tag).await? {
            (header, CommandResult::Txn(response), replayed) => Ok((header, response, replayed)),
            (_, other, _) => unreachable!("txn answered with {other:?}"),
        }
    }

    pub async fn compact(&self, revision: Revision) -> Result<Header, StoreError> {
        Ok(self.propose(Command::Compact { revision }).await?.0)
    }

    /// Validates, commits through Raft, and returns the command's result.
    pub async fn propose(&self, command: Command) -> Result<(Header, CommandResult), StoreError> {
        let (header, result, _) = self.propose_as(command, None).await?;
        Ok((header, result))
    }

    /// [`Store::propose`] for a client request `tag` (`None`: this member numbers it);
    /// also says whether the answer is the stored outcome of an earlier application.
    pub async fn propose_as(
        &self,
        command: Command,
        tag: Option<RequestTag>,
    ) -> Result<(Header, CommandResult, bool), StoreError> {
        check_command(&command, self.limits())?;
        let outcome = match tag {
            Some(tag) => self.write(command, tag).await?,
            None => {
                let ticket = self.inner.request_ids.begin();
                self.write(command, RequestTag::new(ticket.number(), 0))
                    .await?
            }
        };
        let header = self.header_at(outcome.revision);
        Ok((header, outcome.result?, outcome.replayed))
    }

    /// Commits one tagged write. Every attempt carries the same tag, which is what makes
    /// retrying safe after any of the failures that leave its fate unknown: "not leader"
    /// from openraft (the entry may be replicated and committed by the next leader), a
    /// forward that broke after it was sent, a leader that stopped mid-proposal.
    async fn write(&self, command: Command, tag: RequestTag) -> Result<Outcome, StoreError> {
        let timeout_ms = self.inner.options.request_timeout.as_millis() as u64;
        let request = Request {
            command,
            tag: Some(tag),
        };
        let forwarded = ForwardRequest::Write(request.clone());
        self.on_leader(forwarded, || async {
            match self.inner.proposer.propose(request.clone()).await {
                Ok(outcome) => Ok(Attempt::Done(outcome)),
                Err(Rejected::NotLeader(Some(leader))) => Ok(Attempt::Forward(leader)),
                Err(Rejected::NotLeader(None)) => Ok(Attempt::WaitForLeader),
                Err(Rejected::Stopped) => Err(StoreError::Stopped),
                // Still in the leader's pipeline: it may commit. The caller hears "may or
                // may not"; its own retry with the same tag would still apply once.
                Err(Rejected::TimedOut) => Err(StoreError::Timeout { millis: timeout_ms }),
            }
        })
        .await
        .and_then(|response| match response {
            LeaderAnswer::Local(outcome)
            | LeaderAnswer::Remote(ForwardResponse::Written(outcome)) => Ok(outcome),
            LeaderAnswer::Remote(other) => Err(unexpected(other)),
        })
    }

    /// What the store remembers of request `seq` of `client`: the outcome of each of its
    /// writes applied so far, by part (linearizable). The API server asks before refusing a
    /// retried request, whose refusal may be caused by its own earlier attempt.
    pub async fn applied_parts(
        &self,
        client: u64,
        seq: u64,
    ) -> Result<Vec<(u32, Outcome)>, StoreError> {
        self.read_barrier().await?;
        Ok(self.inner.keyspace.read().sessions.outcomes_of(client, seq))
    }

    /// Waits until this replica has applied everything committed before the call started,
    /// as confirmed by the current leader (ReadIndex).
    async fn read_barrier(&self) -> Result<(), StoreError> {
        let index = self
            .on_leader(ForwardRequest::ReadIndex, || async {
                self.local_read_index().await
            })
            .await?;
        let index = match index {
            LeaderAnswer::Local(index)
            | LeaderAnswer::Remote(ForwardResponse::ReadIndex(index)) => index,
            LeaderAnswer::Remote(other) => return Err(unexpected(other)),
        };
        self.wait_applied(index).await
    }

    async fn local_read_index(&self) -> Result<Attempt<u64>, StoreError> {
        match self.inner.read_indexer.read_index().await {
            Ok(index) => Ok(Attempt::Done(index)),
            Err(Rejected::NotLeader(Some(leader))) => Ok(Attempt::Forward(leader)),
            Err(Rejected::NotLeader(None)) => Ok(Attempt::WaitForLeader),
            Err(Rejected::Stopped) => Err(StoreError::Stopped),
            Err(Rejected::TimedOut) => Err(StoreError::Timeout {
                millis: self.inner.options.request_timeout.as_millis() as u64,
            }),
        }
    }

    async fn wait_applied(&self, index: u64) -> Result<(), StoreError> {
        let timeout = self.inner.options.request_timeout;
        self.inner
            .raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "read index")
            .await
            .map(|_| ())
            .map_err(|error| match error {
                openraft::metrics::WaitError::Timeout(..) => StoreError::Timeout {
                    millis: timeout.as_millis() as u64,
                },
                openraft::metrics::WaitError::ShuttingDown => StoreError::Stopped,
            })
    }

    /// Runs `local` on this member if it leads; otherwise forwards `request` to the leader.
    /// Retries while there is no leader, until the request timeout (never past
    /// [`RETRY_HORIZON`]). A forward that failed before or after it was sent (`NoLeader`,
    /// `LeaderUnreachable`) is tried again: every request that goes through here is a read,
    /// an idempotent lease or membership call, or a tagged write.
    async fn on_leader<T, F, Fut>(
        &self,
        request: ForwardRequest,
        local: F,
    ) -> Result<LeaderAnswer<T>, StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Attempt<T>, StoreError>>,
    {
        let timeout = self.inner.options.request_timeout.min(RETRY_HORIZON);
        let deadline = Instant::now() + timeout;
        let mut last_error;
        loop {
            match local().await? {
                Attempt::Done(value) => return Ok(LeaderAnswer::Local(value)),
                Attempt::Forward(leader) => match self.forward(&leader, &request).await {
                    Ok(response) => return Ok(LeaderAnswer::Remote(response)),
                    // The leader we knew is gone, stopped, or lost the request's answer.
                    Err(
                        error @ (StoreError::NoLeader
                        | StoreError::LeaderUnreachable { .. }
                        | StoreError::Stopped),
                    ) => {
                        last_error = error;
                    }
                    Err(error) => return Err(error),
                },
                Attempt::WaitForLeader => last_error = StoreError::NoLeader,
            }
            if Instant::now() >= deadline {
                return Err(match last_error {
                    StoreError::NoLeader => StoreError::Timeout {
                        millis: timeout.as_millis() as u64,
                    },
                    other => other,
                });
            }
            // The election timeout is a few hundred milliseconds: poll a few times per round.
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    async fn forward(
        &self,
        leader: &Member,
        request: &ForwardRequest,
    ) -> Result<ForwardResponse, StoreError> {
        let unreachable = |reason: String| StoreError::LeaderUnreachable {
            leader: leader.name.clone(),
            reason,
        };
        let mut client = self
            .inner
            .peers
            .get(&leader.peer_addr)
            .map_err(|e| unreachable(e.to_string()))?;
        let data = codec::encode(request).map_err(|e| unreachable(e.to_string()))?;
        let call = client.forward(RaftPayload { data });
        let reply = tokio::time::timeout(self.inner.options.request_timeout, call)
            .await
            .map_err(|_| StoreError::Timeout {
                millis: self.inner.options.request_timeout.as_millis() as u64,
            })?
            // tonic says Unavailable both when it could not connect and when the connection
            // broke after the request went out: the request may have been served.
            .map_err(|status| unreachable(format!("{:?}: {}", status.code(), status.message())))?;
        // A reply this member cannot read comes from a member of another release: not
        // retried (it would be applied again each time), and said so.
        let result: Result<ForwardResponse, StoreError> =
            codec::decode(&reply.into_inner().data).map_err(|e| StoreError::UnexpectedReply {
                detail: format!("an unreadable reply from {} ({e})", leader.name),
            })?;
        result
    }

    /// Serves a request another member forwarded here because it believed this member leads.
    /// Never forwards again: a member that no longer leads says so and the sender retries
    /// (a write with the same tag, so an entry this member replicated before it lost
    /// leadership is not applied twice).
    pub async fn serve_forwarded(
        &self,
        request: ForwardRequest,
    ) -> Result<ForwardResponse, StoreError> {
        let not_leader = || StoreError::NoLeader;
        match request {
            ForwardRequest::Write(request) => match self.inner.proposer.propose(request).await {
                Ok(outcome) => Ok(ForwardResponse::Written(outcome)),
                Err(Rejected::NotLeader(_)) => Err(not_leader()),
                Err(Rejected::Stopped) => Err(StoreError::Stopped),
                Err(Rejected::TimedOut) => Err(StoreError::Timeout {
                    millis: self.inner.options.request_timeout.as_millis() as u64,
                }),
            },
            ForwardRequest::ReadIndex => match self.local_read_index().await? {
                Attempt::Done(index) => Ok(ForwardResponse::ReadIndex(index)),
                _ => Err(not_leader()),
            },
            ForwardRequest::LeaseKeepAlive(id) => self
                .keep_alive_local(id)?
                .map(|ttl| ForwardResponse::KeepAlive { ttl })
                .ok_or_else(not_leader),
            ForwardRequest::LeaseTimeToLive { id, keys } => self
                .time_to_live_local(id, keys)?
                .map(ForwardResponse::TimeToLive)
                .ok_or_else(not_leader),
            ForwardRequest::AddMember {
                id,
                member,
                learner,
            } => self
                .add_member_local(id, member, learner)
                .await
                .map(|()| ForwardResponse::Done),
            ForwardRequest::Join { id, member } => self
                .add_member(id, member, false)
                .await
                .map(|()| ForwardResponse::Done),
            // Routed like any call: a member whose address changed sends this to any peer.
            ForwardRequest::SetMember { id, member } => self
                .set_member(id, member)
                .await
                .map(|()| ForwardResponse::Done),
            ForwardRequest::PromoteMember(id) => {
                self.promote_local(id).await.map(|()| ForwardResponse::Done)
            }
            ForwardRequest::RemoveMember(id) => {
                self.remove_local(id).await.map(|()| ForwardResponse::Done)
            }
        }
    }

    // ---- Watch ----

    /// Starts a watch. As in etcd, a start revision in the future is allowed (events arrive
    /// once the store gets there); a compacted one gives a watcher whose only message is
    /// `Compacted`.
    pub fn watch(&self, request: WatchRequest) -> Result<Watcher, StoreError> {
        crate::validate::check_range(&request.range)?;
        if request.start_revision < 0 {
            return Err(KvError::NegativeRevision {
                revision: request.start_revision,
            }
            .into());
        }
        let interval = self.inner.options.watch_progress_interval;
        Ok(watch::start(self.inner.keyspace.clone(), request, interval))
    }

    // ---- Leases ----

    /// Grants a lease; `id` 0 picks a fresh id.
    pub async fn lease_grant(&self, id: LeaseId, ttl: i64) -> Result<(Header, Lease), StoreError> {
        let id = if id == 0 {
            (rand::random::<u64>() >> 1).max(1) as LeaseId
        } else {
            id
        };
        match self.propose(Command::LeaseGrant { id, ttl }).await? {
            (header, CommandResult::LeaseGranted { id, ttl }) => Ok((header, Lease { id, ttl })),
            (_, other) => unreachable!("lease grant answered with {other:?}"),
        }
    }

    pub async fn lease_revoke(&self, id: LeaseId) -> Result<Header, StoreError> {
        Ok(self.propose(Command::LeaseRevoke { id }).await?.0)
    }

    /// Restarts the lease's clock on the leader; returns the TTL in seconds.
    pub async fn lease_keep_alive(&self, id: LeaseId) -> Result<(Header, i64), StoreError> {
        let answer = self
            .on_leader(ForwardRequest::LeaseKeepAlive(id), || async {
                Ok(match self.keep_alive_local(id)? {
                    Some(ttl) => Attempt::Done(ttl),
                    None => self.leader_attempt(),
                })
            })
            .await?;
        match answer {
            LeaderAnswer::Local(ttl) | LeaderAnswer::Remote(ForwardResponse::KeepAlive { ttl }) => {
                Ok((self.header(), ttl))
            }
            LeaderAnswer::Remote(other) => Err(unexpected(other)),
        }
    }

    pub async fn lease_time_to_live(
        &self,
        id: LeaseId,
        keys: bool,
    ) -> Result<(Header, LeaseTimeToLive), StoreError> {
        let answer = self
            .on_leader(ForwardRequest::LeaseTimeToLive { id, keys }, || async {
                Ok(match self.time_to_live_local(id, keys)? {
                    Some(ttl) => Attempt::Done(ttl),
                    None => self.leader_attempt(),
                })
            })
            .await?;
        match answer {
            LeaderAnswer::Local(ttl) | LeaderAnswer::Remote(ForwardResponse::TimeToLive(ttl)) => {
                Ok((self.header(), ttl))
            }
            LeaderAnswer::Remote(other) => Err(unexpected(other)),
        }
    }

    pub async fn leases(&self) -> Result<(Header, Vec<Lease>), StoreError> {
        self.read_barrier().await?;
        let leases = self.inner.keyspace.read().mvcc.leases().collect();
        Ok((self.header(), leases))
    }

    /// The current and the compacted revision of this replica.
    pub fn revisions(&self) -> (Revision, Revision) {
        let state = self.inner.keyspace.read();
        (state.mvcc.revision(), state.mvcc.compact_revision())
    }

    pub fn is_leader(&self) -> bool {
        self.leading_term().is_some()
    }

    /// The term this member leads in, if it leads.
    fn leading_term(&self) -> Option<u64> {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow();
        (metrics.state == ServerState::Leader).then_some(metrics.current_term)
    }

    fn leader_attempt<T>(&self) -> Attempt<T> {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow();
        let leader = metrics.current_leader.filter(|id| *id != self.inner.id);
        match leader.and_then(|id| {
            metrics
                .membership_config
                .membership()
                .get_node(&id)
                .cloned()
        }) {
            Some(member) => Attempt::Forward(member),
            None => Attempt::WaitForLeader,
        }
    }

    /// `Ok(None)` when this member does not lead.
    fn keep_alive_local(&self, id: LeaseId) -> Result<Option<i64>, StoreError> {
        let Some(term) = self.leading_term() else {
            return Ok(None);
        };
        let leases: Vec<Lease> = self.inner.keyspace.read().mvcc.leases().collect();
        let lease = leases
            .iter()
            .find(|l| l.id == id)
            .cloned()
            .ok_or(KvError::LeaseNotFound { id })?;
        let mut clock = self.inner.leases.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        clock.sync(Some(term), &leases, now);
        Ok(Some(clock.keep_alive(&lease, now)))
    }

    fn time_to_live_local(
        &self,
        id: LeaseId,
        with_keys: bool,
    ) -> Result<Option<LeaseTimeToLive>, StoreError> {
        let Some(term) = self.leading_term() else {
            return Ok(None);
        };
        let state = self.inner.keyspace.read();
        let leases: Vec<Lease> = state.mvcc.leases().collect();
        let Some(lease) = state.mvcc.lease(id) else {
            return Ok(Some(LeaseTimeToLive {
                id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            }));
        };
        let keys = if with_keys {
            state.mvcc.lease_keys(id)
        } else {
            Vec::new()
        };
        drop(state);
        let mut clock = self.inner.leases.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        clock.sync(Some(term), &leases, now);
        let ttl = clock.remaining(id, now).unwrap_or(lease.ttl);
        Ok(Some(LeaseTimeToLive {
            id,
            ttl,
            granted_ttl: lease.ttl,
            keys,
        }))
    }

    /// One round of the leader's lease duty: sync the clock, revoke what expired.
    /// Run by [`crate::server`] a few times per second.
    pub async fn expire_leases(&self) {
        let expired = {
            let leases: Vec<Lease> = self.inner.keyspace.read().mvcc.leases().collect();
            let mut clock = self.inner.leases.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            clock.sync(self.leading_term(), &leases, now);
            clock.expired(now)
        };
        for id in expired {
            // Untagged and never retried: a revoke this round could not make is decided
            // again next round from the replicated state.
            let revoke = Request {
                command: Command::LeaseRevoke { id },
                tag: None,
            };
            match self.inner.proposer.propose(revoke).await {
                Ok(_) => tracing::debug!(lease = id, "lease expired and was revoked"),
                Err(rejected) => {
                    tracing::debug!(
                        lease = id,
                        ?rejected,
                        "could not revoke an expired lease yet"
                    );
                    return;
                }
            }
        }
    }

    // ---- Cluster ----

    pub fn members(&self) -> Vec<MemberInfo> {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, member)| MemberInfo {
                id: *id,
                member: member.clone(),
                is_learner: !voters.contains(id),
            })
            .collect()
    }

    /// Adds a member: as a learner, or (after it caught up) as a voter.
    pub async fn add_member(
        &self,
        id: NodeId,
        member: Member,
        learner: bool,
    ) -> Result<(), StoreError> {
        let request = ForwardRequest::AddMember {
            id,
            member: member.clone(),
            learner,
        };
        self.membership_call(
            request,
            || self.add_member_local(id, member.clone(), learner),
            |_| false,
        )
        .await
    }

    /// Replaces a member's name and addresses.
    pub async fn set_member(&self, id: NodeId, member: Member) -> Result<(), StoreError> {
        let request = ForwardRequest::SetMember {
            id,
            member: member.clone(),
        };
        self.membership_call(
            request,
            || self.set_member_local(id, member.clone()),
            |_| false,
        )
        .await
    }

    /// Asks the other members, one after the other, to pass this member's addresses on to
    /// the leader (used when this member cannot find the leader itself).
    pub async fn publish_via_peers(&self, me: Member) -> Result<(), StoreError> {
        let request = ForwardRequest::SetMember {
            id: self.id(),
            member: me,
        };
        let mut last_error = StoreError::NoLeader;
        for other in self.members().into_iter().filter(|m| m.id != self.id()) {
            match self.forward(&other.member, &request).await {
                Ok(_) => return Ok(()),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    pub async fn promote_member(&self, id: NodeId) -> Result<(), StoreError> {
        self.membership_call(
            ForwardRequest::PromoteMember(id),
            || self.promote_local(id),
            |error| matches!(error, StoreError::NotLearner { .. }),
        )
        .await
    }

    pub async fn remove_member(&self, id: NodeId) -> Result<(), StoreError> {
        self.membership_call(
            ForwardRequest::RemoveMember(id),
            || self.remove_local(id),
            |error| matches!(error, StoreError::MemberNotFound { .. }),
        )
        .await
    }

    // Membership changes go through openraft's own log entries, not the request table, so
    // their retries are made safe by what they ask for: adding a member that is already
    // there and setting addresses are no-ops; a promote or remove retried after its first
    // attempt was applied finds its goal reached (`goal_reached`), answered as done.

    async fn membership_call<F, Fut>(
        &self,
        request: ForwardRequest,
        local: F,
        goal_reached: impl Fn(&StoreError) -> bool,
    ) -> Result<(), StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), StoreError>>,
    {
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let answer = self
            .on_leader(request, || async {
                // Count the attempts that may change something: run here, or forwarded.
                if self.leading_term().is_none() {
                    let attempt = self.leader_attempt();
                    if matches!(attempt, Attempt::Forward(_)) {
                        attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    return Ok(attempt);
                }
                attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match local().await {
                    Ok(()) => Ok(Attempt::Done(())),
                    // Leadership moved between the check and the change: find the new leader.
                    Err(StoreError::NoLeader) => Ok(self.leader_attempt()),
                    Err(error) => Err(error),
                }
            })
            .await;
        let retried = attempts.load(std::sync::atomic::Ordering::Relaxed) > 1;
        match answer {
            Ok(LeaderAnswer::Local(()) | LeaderAnswer::Remote(ForwardResponse::Done)) => Ok(()),
            Ok(LeaderAnswer::Remote(other)) => Err(unexpected(other)),
            // An earlier attempt may have done it: "not a learner" after a promote, "not
            // found" after a remove, is then the goal reached.
            Err(error) if retried && goal_reached(&error) => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn add_member_local(
        &self,
        id: NodeId,
        member: Member,
        learner: bool,
    ) -> Result<(), StoreError> {
        {
            let _one_change = self.inner.membership_lock.lock().await;
            let known = self.members().into_iter().find(|m| m.id == id);
            if known.is_none() && self.inner.keyspace.read().meta.members_ever.contains(&id) {
                return Err(StoreError::MemberIdUsed { id });
            }
            if known.is_none() {
                self.add_learner(id, member).await?;
            }
        }
        if learner {
            return Ok(());
        }
        // A voter joins once it has caught up; the wait holds no lock, so the member can be
        // removed meanwhile (a joiner that never catches up must not block every change).
        self.wait_caught_up(id).await?;
        let _one_change = self.inner.membership_lock.lock().await;
        match self.members().into_iter().find(|m| m.id == id) {
            None => Err(StoreError::MemberNotFound { id }),
            Some(info) if !info.is_learner => Ok(()),
            Some(_) => {
                self.change(ChangeMembers::AddVoterIds(BTreeSet::from([id])))
                    .await
            }
        }
    }

    /// Waits until learner `id` has replicated this leader's log as it is now (as openraft's
    /// blocking add_learner does), or was removed, or this member stopped leading.
    async fn wait_caught_up(&self, id: NodeId) -> Result<(), StoreError> {
        let target = self.inner.raft.metrics().borrow().last_log_index;
        let matched = |m: &openraft::RaftMetrics<NodeId, Member>| {
            m.replication
                .as_ref()
                .and_then(|replication| replication.get(&id).copied().flatten())
                .map(|log_id| log_id.index)
        };
        let seen = self
            .inner
            .raft
            .wait(None)
            .metrics(
                |m| {
                    m.state != ServerState::Leader
                        || m.membership_config.membership().get_node(&id).is_none()
                        || matched(m) >= target
                },
                "a joining member catching up",
            )
            .await
            .map_err(|_| StoreError::Stopped)?;
        if seen.state != ServerState::Leader {
            Err(StoreError::NoLeader)
        } else if seen.membership_config.membership().get_node(&id).is_none() {
            Err(StoreError::MemberNotFound { id })
        } else {
            Ok(())
        }
    }

    /// Only for a listed member: a removed one is never put back by its address update.
    async fn set_member_local(&self, id: NodeId, member: Member) -> Result<(), StoreError> {
        let _one_change = self.inner.membership_lock.lock().await;
        if !self.members().iter().any(|m| m.id == id) {
            return Err(StoreError::MemberNotFound { id });
        }
        self.change(ChangeMembers::SetNodes(std::collections::BTreeMap::from([
            (id, member),
        ])))
        .await
    }

    /// Adds a learner without waiting for it to catch up (see `wait_caught_up`).
    async fn add_learner(&self, id: NodeId, member: Member) -> Result<(), StoreError> {
        let raft = &self.inner.raft;
        self.one_change_at_a_time(|| raft.add_learner(id, member.clone(), false))
            .await
    }

    async fn promote_local(&self, id: NodeId) -> Result<(), StoreError> {
        let _one_change = self.inner.membership_lock.lock().await;
        match self.members().into_iter().find(|m| m.id == id) {
            None => Err(StoreError::MemberNotFound { id }),
            Some(info) if !info.is_learner => Err(StoreError::NotLearner { id }),
            Some(_) => {
                self.change(ChangeMembers::AddVoterIds(BTreeSet::from([id])))
                    .await
            }
        }
    }

    /// Removes the member: a voter first stops voting, then it leaves the nodes. Each step
    /// is decided on this member's current view, until the member is gone from it (a run
    /// under load once left a removed voter listed as a learner).
    async fn remove_local(&self, id: NodeId) -> Result<(), StoreError> {
        let _one_change = self.inner.membership_lock.lock().await;
        let listed = |store: &Self| store.members().into_iter().find(|m| m.id == id);
        if listed(self).is_none() {
            return Err(StoreError::MemberNotFound { id });
        }
        let ids = BTreeSet::from([id]);
        // Two steps; a few more rounds only if a view was behind.
        for _ in 0..4 {
            let Some(info) = listed(self) else {
                return Ok(());
            };
            let step = if info.is_learner {
                ChangeMembers::RemoveNodes(ids.clone())
            } else {
                ChangeMembers::RemoveVoters(ids.clone())
            };
            self.change(step).await?;
        }
        match listed(self) {
            None => Ok(()),
            Some(_) => Err(StoreError::NoLeader),
        }
    }

    async fn change(&self, change: ChangeMembers<NodeId, Member>) -> Result<(), StoreError> {
        let raft = &self.inner.raft;
        self.one_change_at_a_time(|| raft.change_membership(change.clone(), false))
            .await
    }

    /// Runs a membership call, waiting out a change still in progress: openraft runs one at a
    /// time, and members publish their addresses through such changes at start-up. Returns
    /// once this member's view of the membership (what `members()` reads) shows the change:
    /// the call itself returns at commit, and the view follows a moment later.
    async fn one_change_at_a_time<F, Fut>(&self, call: F) -> Result<(), StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<
            Output = Result<
                openraft::raft::ClientWriteResponse<crate::types::TypeConfig>,
                RaftError<NodeId, ClientWriteError<NodeId, Member>>,
            >,
        >,
    {
        let deadline = Instant::now() + self.inner.options.request_timeout;
        loop {
            match call().await {
                Ok(response) => {
                    let changed = response.log_id;
                    let seen = self
                        .inner
                        .raft
                        .wait(Some(self.inner.options.request_timeout))
                        .metrics(
                            |m| m.membership_config.log_id().is_some_and(|id| id >= changed),
                            "the membership change in this member's view",
                        )
                        .await;
                    if seen.is_err() {
                        tracing::warn!(log_id = %changed, "a committed membership change is not in this member's view yet");
                    }
                    return Ok(());
                }
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::InProgress(_),
                ))) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                    return Err(StoreError::NoLeader)
                }
                Err(error) => return Err(membership_error(error)),
            }
        }
    }

    // ---- Maintenance ----

    pub fn hash_kv(&self, revision: Revision) -> Result<(Header, KeyspaceHash), StoreError> {
        let hash = self.inner.keyspace.read().mvcc.hash(revision)?;
        Ok((self.header(), hash))
    }

    pub fn status(&self) -> MemberStatus {
        let metrics = self.inner.raft.metrics().borrow().clone();
        let state = self.inner.keyspace.read();
        let is_learner = !metrics
            .membership_config
            .membership()
            .voter_ids()
            .any(|id| id == self.inner.id);
        let header = Header {
            cluster_id: state.meta.cluster_id,
            member_id: self.inner.id,
            revision: state.mvcc.revision(),
            raft_term: metrics.current_term,
        };
        MemberStatus {
            header,
            leader: metrics.current_leader,
            raft_index: metrics.last_log_index.unwrap_or(0),
            raft_applied_index: metrics.last_applied.map(|id| id.index).unwrap_or(0),
            is_learner,
            db_size: (self.inner.db_size)(),
            version_count: state.mvcc.version_count(),
        }
    }

    /// The whole replicated state, for `snapshot save` backups.
    pub async fn backup(&self) -> Result<crate::state_machine::SnapshotImage, StoreError> {
        self.read_barrier().await?;
        let state = self.inner.keyspace.read();
        let image = crate::state_machine::SnapshotImage {
            mvcc: state.mvcc.image(),
            members_ever: state.meta.members_ever.clone(),
            cluster_id: state.meta.cluster_id,
            sessions: state.sessions.clone(),
        };
        Ok(image)
    }
}

enum LeaderAnswer<T> {
    Local(T),
    Remote(ForwardResponse),
}

fn unexpected(response: ForwardResponse) -> StoreError {
    StoreError::UnexpectedReply {
        detail: format!("{response:?}"),
    }
}

fn membership_error<E: std::fmt::Display>(error: RaftError<NodeId, E>) -> StoreError {
    match error {
        RaftError::Fatal(_) => StoreError::Stopped,
        RaftError::APIError(e) => StoreError::Membership {
            reason: e.to_string(),
        },
    }
}
