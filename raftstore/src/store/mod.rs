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
//!
//! Lease calls are in [`leases`]; membership calls (add, promote, remove, addresses) in
//! [`membership`]; what a member's maintenance asks of it (revisions, status, hash, the
//! backup for `snapshot save`), in `maintenance`; the figures a metrics scrape reads, in
//! [`figures`]; why a call failed, [`StoreError`], in `errors`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::ServerState;
use rudder_proto::metrics::observe;
use rudder_proto::request_ids::{RequestIds, RETRY_HORIZON};

use crate::codec;
use crate::db::Db;
use crate::error::KvError;
use crate::keyspace::Keyspace;
use crate::kv::*;
use crate::lease::LeaseClock;
use crate::metrics::{OpenWatch, StoreMetrics};
use crate::network::{CallError, ForwardRequest, ForwardResponse, PeerClients, Rpc};
use crate::proposer::{Proposer, ReadIndexer, Rejected};
use crate::sessions::RequestTag;
use crate::types::{Member, NodeId, Outcome, Peer, Raft, Request};
use crate::validate::{check_command, check_range_request, Limits};
use crate::watch::{self, WatchRequest, Watcher};

mod errors;
pub mod figures;
mod leases;
mod maintenance;
mod membership;

pub use errors::StoreError;

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
    /// What the space quota counts ([`crate::db::Db::keyspace_size_bytes`]).
    pub db_size_in_use: u64,
    pub version_count: usize,
    /// The alarms standing in the cluster, as this replica knows them.
    pub alarms: Vec<Alarm>,
}

/// Tunables of the client-facing side of a member.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub limits: Limits,
    /// How long a call waits for a leader, a forward, or a read index before giving up.
    pub request_timeout: Duration,
    /// Idle interval between progress notifications of watches that asked for them.
    pub watch_progress_interval: Duration,
    /// A leader that has heard from no quorum for this long answers its pending writes
    /// with [`StoreError::QuorumLost`] (see `crate::proposer`). `rudder server` sets it to
    /// twice the election timeout (the default: twice the default one).
    pub quorum_lost_after: Duration,
    /// The space quota, etcd's `--quota-backend-bytes`: a write that would take this
    /// member's keyspace past it raises the NOSPACE alarm ([`crate::alarms`]). None: no
    /// quota.
    pub quota_bytes: Option<u64>,
}

/// etcd's default space quota, 2 GiB.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 << 30;

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            request_timeout: Duration::from_secs(7),
            watch_progress_interval: Duration::from_secs(600),
            quorum_lost_after: Duration::from_millis(300),
            quota_bytes: Some(DEFAULT_QUOTA_BYTES),
        }
    }
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// A [`Store`] that does not keep the member's database open (see [`Store::downgrade`]).
#[derive(Clone)]
pub struct WeakStore(std::sync::Weak<Inner>);

impl WeakStore {
    /// The store, while its member runs.
    pub fn upgrade(&self) -> Option<Store> {
        self.0.upgrade().map(|inner| Store { inner })
    }
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
    db: Db,
    metrics: StoreMetrics,
    /// A restored member's keyspace is not in its Raft log until its first snapshot: no
    /// member may be added (it would replay the log without it) until then.
    restoring: std::sync::atomic::AtomicBool,
    /// The keyspace's size as last measured ([`Store::watch_space`]), for the quota check.
    keyspace_bytes: std::sync::atomic::AtomicU64,
    /// Set while this member's NOSPACE alarm is being raised: one proposal at a time.
    raising_no_space: std::sync::atomic::AtomicBool,
}

/// What to do after one attempt at a leader-only call.
enum Attempt<T> {
    Done(T),
    Forward(Peer),
    WaitForLeader,
}

impl Store {
    /// This member takes no more writes (it is stopping and, if it leads, hands over):
    /// writes sent to it wait for the next leader, and are tried there.
    pub fn hold_writes(&self) {
        self.inner.proposer.hold();
    }

    /// Resolves once every write taken before [`Self::hold_writes`] has its answer (its
    /// entry is in the log), or after `limit`.
    pub async fn writes_drained(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        self.inner.proposer.drained(deadline).await;
    }

    pub fn new(
        id: NodeId,
        raft: Raft,
        keyspace: Arc<Keyspace>,
        options: StoreOptions,
        peers: PeerClients,
        db: Db,
        metrics: StoreMetrics,
    ) -> Self {
        let keyspace_bytes = db.keyspace_size_bytes();
        let inner = Inner {
            id,
            proposer: Proposer::start(
                raft.clone(),
                options.request_timeout,
                options.quorum_lost_after,
            ),
            read_indexer: ReadIndexer::start(raft.clone()),
            raft,
            keyspace,
            options,
            leases: Mutex::new(LeaseClock::default()),
            peers,
            request_ids: RequestIds::new(),
            membership_lock: tokio::sync::Mutex::new(()),
            db,
            metrics,
            restoring: std::sync::atomic::AtomicBool::new(false),
            keyspace_bytes: std::sync::atomic::AtomicU64::new(keyspace_bytes),
            raising_no_space: std::sync::atomic::AtomicBool::new(false),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Whether members may not be added yet, this member's keyspace having been restored
    /// from a snapshot that its Raft log does not hold (see `crate::restore`).
    pub fn set_restoring(&self, restoring: bool) {
        self.inner
            .restoring
            .store(restoring, std::sync::atomic::Ordering::SeqCst);
    }

    fn is_restoring(&self) -> bool {
        self.inner
            .restoring
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A handle that does not keep this store (and its database) alive.
    pub fn downgrade(&self) -> WeakStore {
        WeakStore(Arc::downgrade(&self.inner))
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
        let response = state.mvcc.range(&req, self.inner.keyspace.history())?;
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
        self.check_quota(&command, tag).await?;
        let started = Instant::now();
        let written = match tag {
            Some(tag) => self.write(command, tag).await,
            None => {
                let ticket = self.inner.request_ids.begin();
                self.write(command, RequestTag::new(ticket.number(), 0))
                    .await
            }
        };
        let metrics = &self.inner.metrics;
        observe(&metrics.proposal_duration, started.elapsed());
        if written.is_err() {
            metrics.proposals_failed.inc();
        }
        let outcome = written?;
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
                Err(Rejected::QuorumLost { millis }) => Err(StoreError::QuorumLost { millis }),
            }
        })
        .await
        .and_then(|response| match response {
            LeaderAnswer::Local(outcome)
            | LeaderAnswer::Remote(ForwardResponse::Written(outcome)) => Ok(outcome),
            LeaderAnswer::Remote(other) => Err(StoreError::unexpected(other)),
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
        // A planted bug for the chaos runner to find (`rudder chaos run --plant
        // stale-reads`): linearizable reads served from this replica as it stands.
        if rudder_proto::failpoints::eval("stale-reads", |_| ()).is_some() {
            return Ok(());
        }
        let index = self
            .on_leader(ForwardRequest::ReadIndex, || async {
                self.local_read_index().await
            })
            .await?;
        let index = match index {
            LeaderAnswer::Local(index)
            | LeaderAnswer::Remote(ForwardResponse::ReadIndex(index)) => index,
            LeaderAnswer::Remote(other) => return Err(StoreError::unexpected(other)),
        };
        self.wait_applied(index).await
    }

    async fn local_read_index(&self) -> Result<Attempt<u64>, StoreError> {
        match self.inner.read_indexer.read_index().await {
            Ok(index) => Ok(Attempt::Done(index)),
            Err(Rejected::NotLeader(Some(leader))) => Ok(Attempt::Forward(leader)),
            Err(Rejected::NotLeader(None)) => Ok(Attempt::WaitForLeader),
            Err(Rejected::Stopped) => Err(StoreError::Stopped),
            Err(Rejected::QuorumLost { millis }) => Err(StoreError::QuorumLost { millis }),
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
                Attempt::Forward(leader) => {
                    match self.forward_to_leader(&leader, &request, deadline).await {
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
                    }
                }
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

    /// Forwards `request` to `leader` until `deadline`, giving up (for the caller to try
    /// again) as soon as this member sees the leader or term change: a stopped leader then
    /// costs the election that replaces it, not the whole request timeout.
    async fn forward_to_leader(
        &self,
        leader: &Peer,
        request: &ForwardRequest,
        deadline: Instant,
    ) -> Result<ForwardResponse, StoreError> {
        let mut metrics = self.inner.raft.metrics();
        let seen = {
            let now = metrics.borrow_and_update();
            (now.current_leader, now.current_term)
        };
        let replaced = async {
            loop {
                if metrics.changed().await.is_err() {
                    return std::future::pending().await;
                }
                let now = metrics.borrow_and_update();
                if (now.current_leader, now.current_term) != seen {
                    return;
                }
            }
        };
        let limit = deadline.saturating_duration_since(Instant::now());
        tokio::select! {
            answer = self.forward(leader, request, limit) => answer,
            () = replaced => Err(StoreError::LeaderUnreachable {
                leader: leader.member.name.clone(),
                reason: "the cluster elected another leader while the request was in flight"
                    .into(),
            }),
        }
    }

    /// Sends `request` to `leader`, waiting at most `limit` for the answer.
    async fn forward(
        &self,
        leader: &Peer,
        request: &ForwardRequest,
        limit: Duration,
    ) -> Result<ForwardResponse, StoreError> {
        let unreachable = |reason: String| StoreError::LeaderUnreachable {
            leader: leader.member.name.clone(),
            reason,
        };
        let data = codec::encode(request).map_err(|e| unreachable(e.to_string()))?;
        let call = self
            .inner
            .peers
            .call(Rpc::Forward, &leader.member.peer_addr, leader.id, data);
        let reply = tokio::time::timeout(limit, call)
            .await
            .map_err(|_| StoreError::Timeout {
                millis: self.inner.options.request_timeout.as_millis() as u64,
            })?
            .map_err(|error| match error {
                // tonic says Unavailable both when it could not connect and when the
                // connection broke after the request went out: it may have been served.
                CallError::Status { status, .. } => {
                    unreachable(format!("{:?}: {}", status.code(), status.message()))
                }
                // Another cluster's member, or a bad address: the membership may change.
                other => unreachable(other.to_string()),
            })?;
        // A reply this member cannot read comes from a member of another release: not
        // retried (it would be applied again each time), and said so.
        let result: Result<ForwardResponse, StoreError> =
            codec::decode(&reply.data).map_err(|e| StoreError::UnexpectedReply {
                detail: format!("an unreadable reply from {} ({e})", leader.member.name),
            })?;
        result
    }

    /// The peer connections and identity this member sends with.
    pub fn peers(&self) -> &PeerClients {
        &self.inner.peers
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
                Err(Rejected::QuorumLost { millis }) => Err(StoreError::QuorumLost { millis }),
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
            ForwardRequest::Hello => Ok(ForwardResponse::Done),
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
        let watching = watch::Watching {
            open: OpenWatch::new(&self.inner.metrics.watchers),
            events_sent: self.inner.metrics.watch_events_sent.clone(),
        };
        Ok(watch::start(
            self.inner.keyspace.clone(),
            request,
            interval,
            watching,
        ))
    }

    // ---- Leadership ----

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
        let Some(id) = leader else {
            return Attempt::WaitForLeader;
        };
        match metrics
            .membership_config
            .membership()
            .get_node(&id)
            .cloned()
        {
            Some(member) => Attempt::Forward(Peer { id, member }),
            None => Attempt::WaitForLeader,
        }
    }
}

enum LeaderAnswer<T> {
    Local(T),
    Remote(ForwardResponse),
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod history_tests;
