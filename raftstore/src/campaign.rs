//! Runs the election core (`election.rs`) for one member over openraft 0.9, whose own
//! election timer is off (`enable_elect: false` in `server.rs`): the task that campaigns
//! when no leader is heard ([`Campaign::run`]), the answers to other members' pre-votes and
//! handovers (for `peer_service.rs`), and the handover a stopping leader makes
//! ([`Campaign::hand_over`]).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};
use openraft::ServerState;
use tokio::sync::watch;
use tokio::time::{sleep_until, timeout_at, Instant};

use crate::codec;
use crate::election::{
    answer_pre_vote, handover_target, is_quorum, ElectionTimer, PreVoteAnswer, PreVoteRequest,
    VoterState,
};
use crate::network::{PeerClients, Rpc};
use crate::types::{LogId, NodeId, Raft};

/// One member's elections; cheap to clone.
#[derive(Clone)]
pub struct Campaign {
    inner: Arc<Inner>,
}

struct Inner {
    id: NodeId,
    raft: Raft,
    peers: PeerClients,
    timer: ElectionTimer,
    started: Instant,
    counts: Counts,
    /// Set for good when the member stops: it campaigns no more and takes no handover.
    retired: AtomicBool,
}

/// How this member's elections began, since it started (for tests and operators).
#[derive(Debug, Default)]
struct Counts {
    pre_votes_lost: AtomicU64,
    by_timer: AtomicU64,
    by_handover: AtomicU64,
}

/// A snapshot of [`Counts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ElectionCounts {
    /// Pre-votes this member asked for and did not get: elections it did not start.
    pub pre_votes_lost: u64,
    /// Elections it started because it heard no leader.
    pub by_timer: u64,
    /// Elections it started because a stopping leader handed over to it.
    pub by_handover: u64,
}

/// What the timer needs to know of this member, read from openraft at once.
struct Local {
    leading: bool,
    voter: bool,
    /// When openraft's vote last changed or was refreshed by a leader's message.
    vote_at: Option<Instant>,
    /// The vote is a leader's (not this member's own candidacy, nor none).
    knew_leader: bool,
    configs: Vec<BTreeSet<NodeId>>,
    /// The other voters and their peer addresses.
    others: Vec<(NodeId, String)>,
}

/// Why a handover was refused.
#[derive(Debug, thiserror::Error)]
pub enum TakeOverError {
    #[error("member {from:x} is not the leader this member follows ({leader:?})")]
    NotMyLeader {
        from: NodeId,
        leader: Option<NodeId>,
    },
    #[error("this member's Raft has stopped: {0}")]
    Stopped(String),
    #[error("this member is stopping too")]
    Stopping,
}

impl Campaign {
    pub fn new(id: NodeId, raft: Raft, peers: PeerClients, timer: ElectionTimer) -> Self {
        let inner = Inner {
            id,
            raft,
            peers,
            timer,
            started: Instant::now(),
            counts: Counts::default(),
            retired: AtomicBool::new(false),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// This member is stopping: it starts no election and takes no handover from now on
    /// (one that stops beside it would hand over to it for nothing). A leader can still
    /// [`Self::hand_over`].
    pub fn retire(&self) {
        self.inner.retired.store(true, Ordering::SeqCst);
    }

    /// The lease voters keep for a leader they heard (the election timeout).
    pub fn lease(&self) -> std::time::Duration {
        self.inner.timer.lease
    }

    pub fn counts(&self) -> ElectionCounts {
        let counts = &self.inner.counts;
        ElectionCounts {
            pre_votes_lost: counts.pre_votes_lost.load(Ordering::Relaxed),
            by_timer: counts.by_timer.load(Ordering::Relaxed),
            by_handover: counts.by_handover.load(Ordering::Relaxed),
        }
    }

    /// The election timer: until `stopped`, whenever [`ElectionTimer::next_try`] comes
    /// with no word from a leader, asks for a pre-vote, and with a quorum's, starts an
    /// election.
    pub async fn run(self, mut stopped: watch::Receiver<bool>) {
        let inner = &self.inner;
        let mut last_try: Option<Instant> = None;
        let mut drawn_for: Option<Instant> = None;
        let mut drawn = inner.timer.draw();
        loop {
            if inner.retired.load(Ordering::SeqCst) {
                let _ = stopped.wait_for(|stop| *stop).await;
                return;
            }
            let Some(local) = self.local().await else {
                return; // Raft stopped.
            };
            let wake = if local.leading || !local.voter {
                Instant::now() + inner.timer.lease / 2
            } else {
                let heard = local.vote_at.unwrap_or(inner.started);
                let latest = last_try.map_or(heard, |tried| tried.max(heard));
                if drawn_for != Some(latest) {
                    drawn = inner.timer.draw();
                    drawn_for = Some(latest);
                }
                let alone = local.others.is_empty();
                let due = inner
                    .timer
                    .next_try(heard, local.knew_leader, last_try, alone, drawn);
                let now = Instant::now();
                if now >= due {
                    last_try = Some(now);
                    self.campaign(&local, now - heard).await;
                    continue;
                }
                due
            };
            tokio::select! {
                _ = sleep_until(wake) => {}
                _ = stopped.wait_for(|stop| *stop) => return,
            }
        }
    }

    async fn local(&self) -> Option<Local> {
        let me = self.inner.id;
        self.inner
            .raft
            .with_raft_state(move |state| {
                let effective = state.membership_state.effective();
                let membership = effective.membership();
                let vote = state.vote_ref();
                Local {
                    leading: state.server_state == ServerState::Leader,
                    voter: membership.voter_ids().any(|id| id == me),
                    vote_at: state.vote_last_modified(),
                    knew_leader: vote.is_committed(),
                    configs: membership.get_joint_config().clone(),
                    others: membership
                        .voter_ids()
                        .filter(|id| *id != me)
                        .filter_map(|id| {
                            let node = membership.get_node(&id)?;
                            Some((id, node.peer_addr.clone()))
                        })
                        .collect(),
                }
            })
            .await
            .ok()
    }

    /// The last entry in this member's log (openraft's view, ahead of its disk writes, as
    /// the real vote compares it).
    fn last_log_id(&self) -> Option<LogId> {
        self.inner.raft.data_metrics().borrow().last_log
    }

    /// A pre-vote, and with a quorum's grant, an election.
    async fn campaign(&self, local: &Local, silent_for: std::time::Duration) {
        let inner = &self.inner;
        let request = PreVoteRequest {
            candidate: inner.id,
            last_log_id: self.last_log_id(),
        };
        if !self.pre_vote(local, &request).await {
            inner.counts.pre_votes_lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        inner.counts.by_timer.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            silent_ms = silent_for.as_millis() as u64,
            "no leader heard and a quorum would vote: starting an election"
        );
        if let Err(error) = inner.raft.trigger().elect().await {
            tracing::warn!(%error, "starting an election");
        }
    }

    /// Whether a quorum (this member included) would vote for it; each voter is given the
    /// lease to answer.
    async fn pre_vote(&self, local: &Local, request: &PreVoteRequest) -> bool {
        let inner = &self.inner;
        let mut granted = BTreeSet::from([inner.id]);
        if is_quorum(&local.configs, &granted) {
            return true;
        }
        let data = match codec::encode(request) {
            Ok(data) => data,
            Err(error) => {
                tracing::error!(%error, "encoding a pre-vote");
                return false;
            }
        };
        let deadline = Instant::now() + inner.timer.lease;
        let mut answers: FuturesUnordered<_> = local
            .others
            .iter()
            .map(|(id, addr)| {
                let call = inner.peers.call(Rpc::PreVote, addr, *id, data.clone());
                async move { (*id, timeout_at(deadline, call).await) }
            })
            .collect();
        while let Some((id, reply)) = answers.next().await {
            let answer = match reply {
                Ok(Ok(reply)) => codec::decode::<PreVoteAnswer>(&reply.data).ok(),
                _ => None,
            };
            tracing::debug!(voter = format_args!("{id:x}"), ?answer, "pre-vote answer");
            if answer == Some(PreVoteAnswer::Granted) {
                granted.insert(id);
                if is_quorum(&local.configs, &granted) {
                    return true;
                }
            }
        }
        false
    }

    /// This member's answer to another's pre-vote (`None`: Raft has stopped).
    pub async fn answer_pre_vote(&self, request: &PreVoteRequest) -> Option<PreVoteAnswer> {
        let me = self.inner.id;
        let (leading, heard_at) = self
            .inner
            .raft
            .with_raft_state(move |state| {
                let vote = state.vote_ref();
                // A leader's word, or a vote given to another candidate (which may be
                // about to lead): Raft restarts its election timer on either.
                let voted_other =
                    vote.leader_id().get_term() > 0 && vote.leader_id().voted_for() != Some(me);
                let heard =
                    (vote.is_committed() || voted_other).then(|| state.vote_last_modified());
                (state.server_state == ServerState::Leader, heard.flatten())
            })
            .await
            .ok()?;
        let voter = VoterState {
            leading,
            heard_at,
            last_log_id: self.last_log_id(),
        };
        Some(answer_pre_vote(
            &voter,
            request,
            self.inner.timer.lease,
            Instant::now(),
        ))
    }

    /// A stopping leader's `TimeoutNow`: campaigns at once, without a pre-vote (its lease
    /// makes the old leader's vote one it can get). Only the leader it follows may ask.
    pub async fn take_over_from(&self, from: NodeId) -> Result<(), TakeOverError> {
        if self.inner.retired.load(Ordering::SeqCst) {
            return Err(TakeOverError::Stopping);
        }
        let leader = self.inner.raft.metrics().borrow().current_leader;
        if leader != Some(from) {
            return Err(TakeOverError::NotMyLeader { from, leader });
        }
        self.inner
            .counts
            .by_handover
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            leader = format_args!("{from:x}"),
            "the leader is stopping and hands over: starting an election"
        );
        self.inner
            .raft
            .trigger()
            .elect()
            .await
            .map_err(|error| TakeOverError::Stopped(error.to_string()))
    }

    /// If this member leads: hands leadership to the follower furthest along. It waits
    /// for its own lease to end (its vote is the target's to win), falls silent for a lease
    /// first when it and the target are not a quorum (the others' leases must end too),
    /// waits for the target to hold every entry, tells it to campaign, and waits
    /// for another member to lead; all within three leases. Returns the member it handed over to
    /// (`None`: it did not lead, or the target could not be told). Writes in flight fail
    /// over as in any election; only the election timeout is saved.
    pub async fn hand_over(&self) -> Option<NodeId> {
        let inner = &self.inner;
        let lease = inner.timer.lease;
        let mut metrics = inner.raft.metrics();
        let (target, addr, quorum_of_two) = {
            let now = metrics.borrow();
            if now.state != ServerState::Leader {
                return None;
            }
            let membership = now.membership_config.membership();
            let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
            let matched = now.replication.clone().unwrap_or_default();
            let target = handover_target(inner.id, &voters, &matched)?;
            let addr = membership.get_node(&target)?.peer_addr.clone();
            let pair = BTreeSet::from([inner.id, target]);
            (
                target,
                addr,
                is_quorum(membership.get_joint_config(), &pair),
            )
        };
        let give_up = Instant::now() + lease * 3;
        // This member refuses votes until a lease after it was elected (a leader's vote
        // time is its election's).
        let elected = inner
            .raft
            .with_raft_state(|state| state.vote_last_modified())
            .await
            .ok()
            .flatten();
        let mut quiet_until = elected.map(|elected| elected + lease);
        if !quorum_of_two {
            // The other voters refuse until a lease after its last heartbeat.
            inner.raft.runtime_config().heartbeat(false);
            quiet_until = Some(Instant::now() + lease);
        }
        if let Some(quiet_until) = quiet_until {
            sleep_until(quiet_until).await;
        }
        // Last, so that writes taken meanwhile reach the target before it asks for votes.
        let caught_up = |m: &openraft::RaftMetrics<NodeId, crate::types::Member>| {
            let matched = m.replication.as_ref().and_then(|r| r.get(&target).cloned());
            matched.flatten().map(|log_id| log_id.index) >= m.last_log_index
        };
        // As long as the rest allows: a target behind is refused the old leader's vote.
        let catch_up_by = give_up - lease / 2;
        if timeout_at(catch_up_by, metrics.wait_for(caught_up))
            .await
            .is_err()
        {
            tracing::info!(
                target = format_args!("{target:x}"),
                "handing over to a follower still catching up"
            );
        }
        let told = inner.peers.call(
            Rpc::TimeoutNow,
            &addr,
            target,
            codec::encode(&()).unwrap_or_default(),
        );
        match timeout_at(give_up, told).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "handing leadership over");
                return None;
            }
            Err(_) => {
                tracing::warn!("handing leadership over: no answer in time");
                return None;
            }
        }
        // Until another member leads, not merely until this one stopped: the target's
        // higher vote can depose this member (through a heartbeat's answer) before its vote
        // request arrives, and a member that stopped then would never give its vote.
        let me = inner.id;
        let succeeded = metrics.wait_for(|m| {
            m.state != ServerState::Leader && m.current_leader.is_some_and(|leader| leader != me)
        });
        let _ = timeout_at(give_up, succeeded).await;
        Some(target)
    }
}
