//! When a member campaigns to lead: Raft's election timer, pre-vote (Ongaro's thesis §9.6)
//! and leadership handover, in place of openraft 0.9's own timer (`campaign.rs` runs them).
//!
//! openraft 0.9 draws a follower's election timeout once per process and checks it on a
//! tick of 1.5 heartbeats; after a leader it had heard from, it waits the leader's lease
//! *and* that timeout. Failover took 0.8–1 s with 250–500 ms timeouts (BENCHMARKS.md), two
//! survivors that had drawn close timeouts duelled for seconds, and a member that merely
//! stopped hearing a healthy leader raised the term and deposed it. Here instead:
//! - the wait is drawn again for every attempt and measured from the last word of a leader
//!   (openraft's vote time, which every AppendEntries refreshes): [`ElectionTimer::next_try`];
//! - before a real election the member asks the voters whether they would vote
//!   ([`answer_pre_vote`]): one that leads, or heard from a leader (or voted for another
//!   candidate) within the lease, says no, so a member cut off from a healthy leader cannot
//!   depose it, nor a late candidate the one just elected;
//! - a leader that stops gracefully tells its most up-to-date follower to campaign at once
//!   ([`handover_target`]): the old leader's own vote and the target's make a quorum of
//!   three ([`is_quorum`]); in larger clusters the leader first falls silent for a lease.
//!
//! Everything here is pure: times are given, nothing is sent.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::types::{LogId, NodeId};

/// The election timer of one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionTimer {
    /// How long a voter that heard from a leader refuses to vote for another (openraft's
    /// leader lease, checked by every voter on a real vote too).
    pub lease: Duration,
    /// The random part of the wait, drawn again for every attempt.
    pub spread: Range<Duration>,
}

impl ElectionTimer {
    /// The timer for an election timeout of `timeout`: the lease is the timeout, and a
    /// fifth to the whole of it is drawn on top, so that voters' leases (refreshed by the
    /// same heartbeats as this member's) have run out when the pre-vote asks.
    pub fn new(timeout: Duration) -> Self {
        Self {
            lease: timeout,
            spread: timeout / 5..timeout,
        }
    }

    /// A random wait from [`Self::spread`].
    pub fn draw(&self) -> Duration {
        if self.spread.is_empty() {
            return self.spread.start;
        }
        rand::random_range(self.spread.clone())
    }

    /// When a member tries next (a pre-vote, then an election), if nothing is heard
    /// before. `heard` is openraft's vote time (a leader's message, or a vote changed),
    /// `knew_leader` whether that vote is a leader's, `last_try` this member's own last
    /// try, `alone` whether it is the only voter:
    /// - after a word newer than its last try: the lease when the word was a leader's (its
    ///   voters refuse until then), and the `drawn` wait;
    /// - after its own try: the drawn wait alone (the lease ran out once already);
    /// - alone: at once after a word, but never sooner than the drawn wait after a try.
    pub fn next_try(
        &self,
        heard: Instant,
        knew_leader: bool,
        last_try: Option<Instant>,
        alone: bool,
        drawn: Duration,
    ) -> Instant {
        match (last_try, alone) {
            (None, true) => heard,
            (Some(tried), true) => heard.max(tried + drawn),
            (Some(tried), false) if tried >= heard => tried + drawn,
            (_, false) => {
                let lease = if knew_leader {
                    self.lease
                } else {
                    Duration::ZERO
                };
                heard + lease + drawn
            }
        }
    }
}

/// "Would you vote for me?", asked before a real election; it changes nothing on the voter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVoteRequest {
    pub candidate: NodeId,
    pub last_log_id: Option<LogId>,
}

/// A voter's answer to a pre-vote, with its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PreVoteAnswer {
    Granted,
    /// The voter is the leader.
    Leading,
    /// The voter heard from a leader, or voted for another candidate, within the lease.
    HeardLeader,
    /// The candidate's log is behind the voter's: it could not win.
    LogBehind,
}

/// What a voter knows when it answers a pre-vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterState {
    pub leading: bool,
    /// When it last heard from a leader it accepts, or gave its vote to another candidate
    /// (which may be about to lead); `None` when neither holds.
    pub heard_at: Option<Instant>,
    pub last_log_id: Option<LogId>,
}

/// A voter's answer at `now`. Terms are not compared: the real vote does that, and a
/// candidate only learns a higher term from a real vote.
pub fn answer_pre_vote(
    voter: &VoterState,
    request: &PreVoteRequest,
    lease: Duration,
    now: Instant,
) -> PreVoteAnswer {
    if voter.leading {
        return PreVoteAnswer::Leading;
    }
    if voter.heard_at.is_some_and(|heard| now < heard + lease) {
        return PreVoteAnswer::HeardLeader;
    }
    if request.last_log_id < voter.last_log_id {
        return PreVoteAnswer::LogBehind;
    }
    PreVoteAnswer::Granted
}

/// Whether `granted` holds a majority of every configuration of a (possibly joint)
/// membership, as a Raft vote must.
pub fn is_quorum(configs: &[BTreeSet<NodeId>], granted: &BTreeSet<NodeId>) -> bool {
    !configs.is_empty()
        && configs.iter().all(|voters| {
            let for_it = voters.intersection(granted).count();
            for_it * 2 > voters.len()
        })
}

/// The voter a leader hands over to: of the others, the one whose log matches the
/// leader's furthest (ties: the lowest id, so the choice is stable).
pub fn handover_target(
    leader: NodeId,
    voters: &BTreeSet<NodeId>,
    matched: &BTreeMap<NodeId, Option<LogId>>,
) -> Option<NodeId> {
    voters
        .iter()
        .filter(|id| **id != leader)
        .map(|id| (matched.get(id).cloned().flatten(), *id))
        .max_by(|(a_log, a_id), (b_log, b_id)| a_log.cmp(b_log).then(b_id.cmp(a_id)))
        .map(|(_, id)| id)
}

#[cfg(test)]
#[path = "election_tests.rs"]
mod tests;
