//! AppendEntries that outlive openraft's timeout.
//!
//! openraft 0.9 gives every AppendEntries one heartbeat interval to be answered and then
//! drops it; the next attempt starts again from the last match it heard of. When a
//! follower needs longer than that to store and fsync a batch (two busy cores, a slow
//! disk), no attempt is ever answered in time: the follower does the work again and
//! again, the leader never learns of it, nothing commits, and a three-master cluster
//! stayed unavailable for over a minute (the scheduler pause test, CI and locally).
//!
//! So each target gets [`AppendSender`]: a batch of entries, once sent, runs to its answer
//! (up to a limit) whether or not openraft still waits for it, one batch at a time. What an
//! answer proves, the target's log matching the leader's through some entry under this
//! leader's vote, is remembered, and later requests are answered from it (`Success`, or
//! openraft's documented `PartialSuccess`) or sent without the entries the target is known
//! to hold. A late answer counts just as a late reply would in Raft: the target stored
//! those entries in this term before it answered. Heartbeats (no entries) are never held
//! behind a batch: they keep the follower from starting an election while it works.
//!
//! One caution for later: openraft stamps an answer with the time its own attempt was
//! sent, so an answer from what is known dates the target's acknowledgement later than it
//! was made. openraft 0.9 uses that time only in metrics; leader-lease reads (openraft
//! 0.10's `LeaseRead`, issue 17) must not trust it as it stands.
//!
//! [`progress`] and [`without_known_entries`] are the pure core.

use std::future::Future;
use std::time::Duration;

use openraft::error::{NetworkError, RPCError, RaftError};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use tokio::task::JoinHandle;

use crate::types::{LogId, Member, NodeId, TypeConfig, Vote};

pub type AppendResult =
    Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>>;

/// What is already known of a request's entries on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The target holds them all.
    Complete,
    /// The target holds them up to and including this entry (after the request's
    /// `prev_log_id`, before its last entry).
    Partial(LogId),
    /// Nothing beyond the request's `prev_log_id`.
    Unknown,
}

/// How much of `request` the target is known to hold, given that its log matches the
/// leader's through `matched` under `matched_vote`. Knowledge from another vote (another
/// leader's term, or before this leader's) says nothing.
pub fn progress(
    matched_vote: &Vote,
    matched: &LogId,
    request: &AppendEntriesRequest<TypeConfig>,
) -> Progress {
    if *matched_vote != request.vote || request.entries.is_empty() {
        return Progress::Unknown;
    }
    let prev_index = request.prev_log_id.map(|id| id.index);
    if prev_index.is_some_and(|prev| matched.index <= prev) {
        return Progress::Unknown;
    }
    let last = request.entries.last().expect("not empty").log_id;
    if matched.index >= last.index {
        Progress::Complete
    } else {
        Progress::Partial(*matched)
    }
}

/// `request` without the entries up to and including `matched`, which becomes its
/// `prev_log_id`: a target whose log matches through `matched` answers it as it would the
/// whole request.
pub fn without_known_entries(
    mut request: AppendEntriesRequest<TypeConfig>,
    matched: LogId,
) -> AppendEntriesRequest<TypeConfig> {
    request
        .entries
        .retain(|entry| entry.log_id.index > matched.index);
    request.prev_log_id = Some(matched);
    request
}

/// The last entry a request's `Success` proves the target holds.
fn proven_by(request: &AppendEntriesRequest<TypeConfig>) -> Option<LogId> {
    request
        .entries
        .last()
        .map(|entry| entry.log_id)
        .or(request.prev_log_id)
}

/// A batch on its way, with what its answer would prove.
struct InFlight {
    vote: Vote,
    prev_log_id: Option<LogId>,
    proves: Option<LogId>,
    /// Sent without entries already known to be held.
    trimmed: bool,
    answer: JoinHandle<AppendResult>,
}

/// One target's AppendEntries (see the module documentation).
pub struct AppendSender {
    in_flight: Option<InFlight>,
    /// The target's log matches the leader's through this entry, under this vote.
    matched: Option<(Vote, LogId)>,
    /// How long a batch may take before it is given up (it is then sent again).
    limit: Duration,
}

impl AppendSender {
    pub fn new(limit: Duration) -> Self {
        Self {
            in_flight: None,
            matched: None,
            limit,
        }
    }

    /// Answers `request` through `send`, which makes one RPC. The returned future may be
    /// dropped at any await (openraft's timeout): the batch it sent goes on, and its answer
    /// is used by the next call.
    pub async fn append<F, Fut>(
        &mut self,
        request: AppendEntriesRequest<TypeConfig>,
        send: F,
    ) -> AppendResult
    where
        F: Fn(AppendEntriesRequest<TypeConfig>) -> Fut,
        Fut: Future<Output = AppendResult> + Send + 'static,
    {
        if request.entries.is_empty() {
            return send(request).await;
        }
        loop {
            if let Some(known) = self.known(&request) {
                return Ok(known);
            }
            // A batch ending where this request starts, or before (openraft learned more,
            // from a snapshot say), cannot answer it: it is left to finish on its own.
            if self.in_flight.as_ref().is_some_and(|in_flight| {
                in_flight.vote == request.vote
                    && in_flight.proves.map(|id| id.index) <= request.prev_log_id.map(|id| id.index)
            }) {
                self.in_flight = None;
            }
            let Some(in_flight) = self.in_flight.as_mut() else {
                match &self.matched {
                    Some((vote, matched))
                        if progress(vote, matched, &request) != Progress::Unknown =>
                    {
                        self.start(
                            without_known_entries(request.clone(), *matched),
                            true,
                            &send,
                        )
                    }
                    _ => self.start(request.clone(), false, &send),
                }
                continue;
            };
            let answer = (&mut in_flight.answer).await;
            let finished = self.in_flight.take().expect("awaited above");
            let answer =
                answer.unwrap_or_else(|joined| Err(RPCError::Network(NetworkError::new(&joined))));
            match answer {
                Ok(AppendEntriesResponse::Success) => self.learn(finished.vote, finished.proves),
                Ok(AppendEntriesResponse::PartialSuccess(matched)) => {
                    self.learn(finished.vote, matched)
                }
                // About this very request (same leader, same starting point): passed on.
                other
                    if finished.vote == request.vote
                        && finished.prev_log_id == request.prev_log_id =>
                {
                    return other;
                }
                // A trimmed request's conflict means what was learned no longer holds.
                Ok(AppendEntriesResponse::Conflict) if finished.trimmed => self.matched = None,
                Ok(AppendEntriesResponse::Conflict) => {}
                Ok(AppendEntriesResponse::HigherVote(vote)) => {
                    return Ok(AppendEntriesResponse::HigherVote(vote));
                }
                // A batch lost on the way: the loop sends this request.
                Err(_) => {}
            }
        }
    }

    /// The answer what is known already gives `request`, if any.
    fn known(
        &self,
        request: &AppendEntriesRequest<TypeConfig>,
    ) -> Option<AppendEntriesResponse<NodeId>> {
        let (vote, matched) = self.matched.as_ref()?;
        match progress(vote, matched, request) {
            Progress::Complete => Some(AppendEntriesResponse::Success),
            // Worth answering at once while a batch is still out: openraft then counts
            // the target's progress (and may commit) instead of waiting for the batch.
            Progress::Partial(matched) if self.in_flight.is_some() => {
                Some(AppendEntriesResponse::PartialSuccess(Some(matched)))
            }
            _ => None,
        }
    }

    fn learn(&mut self, vote: Vote, proven: Option<LogId>) {
        let Some(proven) = proven else { return };
        match &self.matched {
            Some((known_vote, known)) if *known_vote == vote && known.index >= proven.index => {}
            _ => self.matched = Some((vote, proven)),
        }
    }

    fn start<F, Fut>(&mut self, request: AppendEntriesRequest<TypeConfig>, trimmed: bool, send: &F)
    where
        F: Fn(AppendEntriesRequest<TypeConfig>) -> Fut,
        Fut: Future<Output = AppendResult> + Send + 'static,
    {
        let vote = request.vote;
        let prev_log_id = request.prev_log_id;
        let proves = proven_by(&request);
        let limit = self.limit;
        let sending = send(request);
        let answer = tokio::spawn(async move {
            tokio::time::timeout(limit, sending)
                .await
                .unwrap_or_else(|elapsed| Err(RPCError::Network(NetworkError::new(&elapsed))))
        });
        self.in_flight = Some(InFlight {
            vote,
            prev_log_id,
            proves,
            trimmed,
            answer,
        });
    }
}

#[cfg(test)]
#[path = "append_sender_tests.rs"]
mod tests;
