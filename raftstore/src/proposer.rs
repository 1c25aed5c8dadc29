//! Group proposal: client commands that arrive while earlier ones are being committed are
//! proposed together as one Raft entry — one log write, one fsync, one replication round for
//! all of them. openraft 0.9 writes each entry to the log before it takes the next request,
//! so without this every write would pay a full round alone.
//!
//! ```text
//!  propose(cmd) ─► queue ─► take everything waiting (≤ MAX_BATCH, ≤ MAX_BATCH_BYTES)
//!                            └─► Raft entry Proposal{requests} ─► outcomes, in order ─► callers
//! ```
//! At most `MAX_IN_FLIGHT` entries are being committed at a time. Each request keeps its own
//! tag inside the batch, so a retry of any one of them is recognised alone.
//!
//! A leader cut off from the others never hears of the leader that replaces it (openraft
//! 0.9 has no check-quorum), and would hold its callers until the request timeout. So a
//! commit that has waited a while on a leader that has heard from no quorum for as long is
//! answered with [`Rejected::QuorumLost`]: its callers try another member, as they do when
//! a leader dies.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use crate::election::is_quorum;
use crate::types::{LogId, Member, NodeId, Outcome, Peer, Proposal, Raft, Request};

/// What openraft's metrics say each follower holds: its last log id matched.
type Matched = std::collections::BTreeMap<NodeId, Option<LogId>>;
use crate::validate::command_size;

const MAX_BATCH: usize = 512;
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
const MAX_IN_FLIGHT: usize = 8;

/// Why a command was not committed here. None of these says it was not applied: openraft
/// reports a lost leadership also for an entry it already replicated (the next leader may
/// commit it), and a timed-out or stopped proposal may still be committed. A caller may
/// propose again only with the same request tag (see `crate::sessions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// This member does not lead; the leader, if known.
    NotLeader(Option<Peer>),
    /// Raft has stopped.
    Stopped,
    /// Not committed within the request timeout; it may still be, later.
    TimedOut,
    /// This member leads but has heard from no quorum for `millis` ms: it is likely cut
    /// off, and another leader elected. The command may still be committed, if it reached
    /// the others.
    QuorumLost { millis: u64 },
}

struct Pending {
    request: Request,
    reply: oneshot::Sender<Result<Outcome, Rejected>>,
}

#[derive(Clone)]
pub struct Proposer {
    raft: Raft,
    queue: mpsc::UnboundedSender<Pending>,
    /// Set for good when this member stops: it proposes nothing more (see [`Self::hold`]).
    held: Arc<AtomicBool>,
    /// Proposals taken and not yet answered (queued, or being committed).
    taken: Arc<watch::Sender<usize>>,
}

/// Counts one taken proposal until it is answered (or its caller gives up).
struct Taken(Arc<watch::Sender<usize>>);

impl Taken {
    fn new(taken: &Arc<watch::Sender<usize>>) -> Self {
        taken.send_modify(|count| *count += 1);
        Self(taken.clone())
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        self.0.send_modify(|count| *count -= 1);
    }
}

impl Proposer {
    /// Starts the batching task; it ends when the last `Proposer` is dropped. A batch not
    /// committed within `timeout` gives its slot back (its callers hear `TimedOut`), so an
    /// entry that Raft never answers for cannot stall every later write; nor is one
    /// waited for once this leader has heard from no quorum for `quorum_lost_after`.
    pub fn start(raft: Raft, timeout: Duration, quorum_lost_after: Duration) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(run(raft.clone(), waiting, timeout, quorum_lost_after));
        Self {
            raft,
            queue,
            held: Arc::default(),
            taken: Arc::new(watch::Sender::new(0)),
        }
    }

    /// From now on nothing more is proposed here (see [`Self::held_answer`]): a leader
    /// handing over stops growing its log, so that the follower it hands over to holds
    /// every entry when it asks for votes. Proposals already taken go on to their answers.
    pub fn hold(&self) {
        self.held.store(true, Ordering::SeqCst);
    }

    /// Whether [`Self::hold`] was called.
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }

    /// What a held proposer answers: "stopped" once Raft has stopped, the other leader when
    /// one is known (callers forward there), else "no leader" (callers wait for the next).
    fn held_answer(&self) -> Rejected {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        if metrics.running_state.is_err() {
            return Rejected::Stopped;
        }
        let other_leader = metrics
            .current_leader
            .filter(|leader| *leader != metrics.id);
        let peer = other_leader.and_then(|id| {
            let member = metrics.membership_config.membership().get_node(&id)?;
            Some(Peer {
                id,
                member: member.clone(),
            })
        });
        Rejected::NotLeader(peer)
    }

    /// Resolves once every proposal taken before [`Self::hold`] has its answer (its entry
    /// is in the log, committed or not), or at `deadline`.
    pub async fn drained(&self, deadline: tokio::time::Instant) {
        let mut taken = self.taken.subscribe();
        let _ = tokio::time::timeout_at(deadline, taken.wait_for(|count| *count == 0)).await;
    }

    pub async fn propose(&self, request: Request) -> Result<Outcome, Rejected> {
        // Counted before the check: `drained` after `hold` cannot miss one that passed it.
        let _taken = Taken::new(&self.taken);
        if self.held.load(Ordering::SeqCst) {
            return Err(self.held_answer());
        }
        let (reply, outcome) = oneshot::channel();
        self.queue
            .send(Pending { request, reply })
            .map_err(|_| Rejected::Stopped)?;
        outcome.await.map_err(|_| Rejected::Stopped)?
    }
}

async fn run(
    raft: Raft,
    mut waiting: mpsc::UnboundedReceiver<Pending>,
    timeout: Duration,
    quorum_lost_after: Duration,
) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(first) = waiting.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        // Everything that queued up while a slot was busy goes into this entry.
        let mut bytes = command_size(&first.request.command);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            let Ok(next) = waiting.try_recv() else { break };
            bytes += command_size(&next.request.command);
            batch.push(next);
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            commit(&raft, batch, timeout, quorum_lost_after).await;
            drop(slot);
        });
    }
}

async fn commit(raft: &Raft, batch: Vec<Pending>, timeout: Duration, quorum_lost_after: Duration) {
    let (requests, replies): (Vec<Request>, Vec<_>) = batch
        .into_iter()
        .map(|pending| (pending.request, pending.reply))
        .unzip();
    // A planted bug for the chaos runner (`rudder chaos run --plant write-applied-twice`):
    // the batch is proposed again with its request ids lost, as a retry that forgot them
    // would, so the state machine applies it twice.
    let twice = rudder_proto::failpoints::eval("write-applied-twice", |_| ())
        .is_some()
        .then(|| requests.clone());
    let proposal = Proposal {
        at_ms: wall_clock_ms(),
        requests,
    };
    let mut written = tokio::select! {
        // An answer that came first wins a tie.
        biased;
        written = tokio::time::timeout(timeout, raft.client_write(proposal)) => written,
        millis = quorum_lost(raft, quorum_lost_after) => {
            tracing::warn!(
                millis,
                commands = replies.len(),
                "this leader has heard from no quorum: its callers try another member"
            );
            for reply in replies {
                let _ = reply.send(Err(Rejected::QuorumLost { millis }));
            }
            return;
        }
    };
    if let (Some(requests), Ok(Ok(_))) = (twice, &written) {
        let again = Proposal {
            at_ms: wall_clock_ms(),
            requests: requests
                .into_iter()
                .map(|request| Request {
                    tag: None,
                    ..request
                })
                .collect(),
        };
        written = tokio::time::timeout(timeout, raft.client_write(again)).await;
    }
    let Ok(written) = written else {
        tracing::warn!(
            commands = replies.len(),
            ?timeout,
            "a proposal was not committed in time"
        );
        for reply in replies {
            let _ = reply.send(Err(Rejected::TimedOut));
        }
        return;
    };
    match written {
        // Failpoint for tests: the entry was committed, but openraft answers as if this
        // member had lost leadership first — as it does for an entry it appended and
        // replicated before stepping down, which the next leader then commits.
        Ok(_) if rudder_proto::failpoints::eval("proposal-answer-lost", |_| ()).is_some() => {
            for reply in replies {
                let _ = reply.send(Err(Rejected::NotLeader(None)));
            }
        }
        Ok(response) => {
            for (reply, outcome) in replies.into_iter().zip(response.data.outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(error) => {
            let rejected = match error {
                RaftError::APIError(ClientWriteError::ForwardToLeader(to)) => {
                    Rejected::NotLeader(Peer::leader_of(&to))
                }
                // A normal entry never changes membership; anything else means Raft stopped.
                RaftError::APIError(ClientWriteError::ChangeMembershipError(_))
                | RaftError::Fatal(_) => Rejected::Stopped,
            };
            for reply in replies {
                let _ = reply.send(Err(rejected.clone()));
            }
        }
    }
}

/// Resolves, with how long it has been, once this member leads and has heard from no
/// quorum for longer than `after` while this commit waited at least that long (see
/// [`quorum_silent`]). A member that does not lead, or a leader no quorum has acknowledged
/// yet, is never judged.
async fn quorum_lost(raft: &Raft, after: Duration) -> u64 {
    let began = tokio::time::Instant::now();
    let mut metrics = raft.metrics();
    let matched_then = metrics.borrow().replication.clone();
    // Metrics change at every turn of openraft's loop; the tick covers a quiet one.
    let mut tick = tokio::time::interval(after / 4);
    loop {
        let silent = {
            let now = metrics.borrow_and_update();
            quorum_silent(&now, matched_then.as_ref(), began.elapsed(), after)
        };
        if let Some(millis) = silent {
            return millis;
        }
        tokio::select! {
            changed = metrics.changed() => {
                if changed.is_err() {
                    // Raft stopped: the write's own answer says so.
                    return std::future::pending().await;
                }
            }
            _ = tick.tick() => {}
        }
    }
}

/// How long this leader has heard from no quorum, if it is longer than `after` on two
/// counts, after `waited` (this commit's wait) is too: openraft's `millis_since_quorum_ack`
/// (which counts only answers that came within a heartbeat interval, so on a loaded
/// machine it runs high for a leader its followers hear well), and no quorum of voters
/// having taken an entry since the commit began (`matched_then`: the followers' matched
/// log ids then; a follower that answers at all, however late, moves its own).
fn quorum_silent(
    now: &openraft::RaftMetrics<NodeId, Member>,
    matched_then: Option<&Matched>,
    waited: Duration,
    after: Duration,
) -> Option<u64> {
    let after_ms = after.as_millis() as u64;
    if now.state != openraft::ServerState::Leader || waited < after {
        return None;
    }
    let millis = now
        .millis_since_quorum_ack
        .filter(|millis| *millis > after_ms)?;
    let took_entries = now.replication.iter().flatten().filter(|(id, matched)| {
        let then = matched_then
            .and_then(|then| then.get(*id).cloned())
            .flatten();
        **matched > then
    });
    let heard: BTreeSet<NodeId> = std::iter::once(now.id)
        .chain(took_entries.map(|(id, _)| *id))
        .collect();
    let voters = now.membership_config.membership().get_joint_config();
    (!is_quorum(voters, &heard)).then_some(millis)
}

/// This leader's wall clock: the time the log carries (see [`Proposal::at_ms`]).
fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or(0)
}

/// Batched ReadIndex: linearizable reads that arrive while a leadership check is under way
/// wait for the next one, and one check then serves all of them. (openraft 0.9 sends a
/// heartbeat round to the followers for every check.) Each waiter's check starts after it
/// arrived, so every read still sees every write acknowledged before the read began.
#[derive(Clone)]
pub struct ReadIndexer {
    queue: mpsc::UnboundedSender<oneshot::Sender<Result<u64, Rejected>>>,
}

impl ReadIndexer {
    pub fn start(raft: Raft) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(read_index_rounds(raft, waiting));
        Self { queue }
    }

    /// The log index a linearizable read must wait to have applied.
    pub async fn read_index(&self) -> Result<u64, Rejected> {
        let (reply, index) = oneshot::channel();
        self.queue.send(reply).map_err(|_| Rejected::Stopped)?;
        index.await.map_err(|_| Rejected::Stopped)?
    }
}

async fn read_index_rounds(
    raft: Raft,
    mut waiting: mpsc::UnboundedReceiver<oneshot::Sender<Result<u64, Rejected>>>,
) {
    while let Some(first) = waiting.recv().await {
        let mut replies = vec![first];
        replies.extend(std::iter::from_fn(|| waiting.try_recv().ok()));
        let result = match raft.get_read_log_id().await {
            Ok((read, _applied)) => Ok(read.map(|id| id.index).unwrap_or(0)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(to))) => {
                Err(Rejected::NotLeader(Peer::leader_of(&to)))
            }
            // No quorum answered: there may be a new leader soon.
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => {
                Err(Rejected::NotLeader(None))
            }
            Err(RaftError::Fatal(_)) => Err(Rejected::Stopped),
        };
        for reply in replies {
            let _ = reply.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use openraft::{Membership, ServerState};

    use super::*;
    use crate::types::StoredMembership;

    const AFTER: Duration = Duration::from_millis(300);

    fn log_id(index: u64) -> Option<LogId> {
        Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), index))
    }

    /// Member 1 leading 1, 2, 3, heard from by no quorum for `millis`, its followers
    /// having taken entries up to `matched`.
    fn leader(millis: u64, matched: [u64; 2]) -> openraft::RaftMetrics<NodeId, Member> {
        let voters: BTreeSet<NodeId> = [1, 2, 3].into();
        let nodes: BTreeMap<NodeId, Member> =
            voters.iter().map(|id| (*id, Member::default())).collect();
        let mut metrics = openraft::RaftMetrics::new_initial(1);
        metrics.state = ServerState::Leader;
        metrics.millis_since_quorum_ack = Some(millis);
        metrics.membership_config = Arc::new(StoredMembership::new(
            None,
            Membership::new(vec![voters], nodes),
        ));
        metrics.replication = Some(
            [(2, log_id(matched[0])), (3, log_id(matched[1]))]
                .into_iter()
                .collect(),
        );
        metrics
    }

    #[test]
    fn a_leader_no_quorum_has_answered_for_long_is_silent() {
        let then = leader(0, [10, 10]).replication;
        let cut_off = leader(450, [10, 10]);
        assert_eq!(
            quorum_silent(&cut_off, then.as_ref(), AFTER, AFTER),
            Some(450)
        );
        // One follower still takes entries: with the leader, a quorum of three.
        let one_left = leader(450, [11, 10]);
        assert_eq!(quorum_silent(&one_left, then.as_ref(), AFTER, AFTER), None);
    }

    #[test]
    fn slow_heartbeat_answers_alone_do_not_make_a_leader_silent() {
        // openraft counts no answer later than a heartbeat interval, so its figure runs
        // high on a loaded machine; followers that take entries hear the leader.
        let then = leader(0, [10, 10]).replication;
        let loaded = leader(900, [12, 14]);
        assert_eq!(quorum_silent(&loaded, then.as_ref(), AFTER, AFTER), None);
    }

    #[test]
    fn nothing_is_judged_early_or_of_a_member_that_does_not_lead() {
        let then = leader(0, [10, 10]).replication;
        let cut_off = leader(450, [10, 10]);
        let early = Duration::from_millis(100);
        assert_eq!(quorum_silent(&cut_off, then.as_ref(), early, AFTER), None);
        let mut follower = cut_off.clone();
        follower.state = ServerState::Follower;
        assert_eq!(quorum_silent(&follower, then.as_ref(), AFTER, AFTER), None);
        let mut unacknowledged = leader(0, [10, 10]);
        unacknowledged.millis_since_quorum_ack = None;
        assert_eq!(
            quorum_silent(&unacknowledged, then.as_ref(), AFTER, AFTER),
            None
        );
    }
}
