use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::{CommittedLeaderId, EntryPayload};

use super::*;
use crate::types::Entry;

const LEADER: NodeId = 1;

fn vote(term: u64) -> Vote {
    Vote::new_committed(term, LEADER)
}

fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(2, LEADER), index)
}

/// This leader's (term 2) request: entries `first..=last` after `prev`.
fn request(prev: u64, last: u64) -> AppendEntriesRequest<TypeConfig> {
    AppendEntriesRequest {
        vote: vote(2),
        prev_log_id: Some(log_id(prev)),
        entries: (prev + 1..=last)
            .map(|index| Entry {
                log_id: log_id(index),
                payload: EntryPayload::Blank,
            })
            .collect(),
        leader_commit: None,
    }
}

#[test]
fn what_a_match_says_of_a_request() {
    let asked = request(2, 8);
    assert_eq!(progress(&vote(2), &log_id(8), &asked), Progress::Complete);
    assert_eq!(progress(&vote(2), &log_id(9), &asked), Progress::Complete);
    assert_eq!(
        progress(&vote(2), &log_id(5), &asked),
        Progress::Partial(log_id(5))
    );
    assert_eq!(progress(&vote(2), &log_id(2), &asked), Progress::Unknown);
    assert_eq!(progress(&vote(2), &log_id(1), &asked), Progress::Unknown);
    // Learned under another vote: nothing.
    assert_eq!(progress(&vote(1), &log_id(8), &asked), Progress::Unknown);
    assert_eq!(progress(&vote(3), &log_id(8), &asked), Progress::Unknown);
    // A heartbeat carries nothing to know about.
    assert_eq!(
        progress(&vote(2), &log_id(8), &request(2, 2)),
        Progress::Unknown
    );
}

#[test]
fn a_request_loses_the_entries_the_target_holds() {
    let trimmed = without_known_entries(request(2, 8), log_id(5));
    assert_eq!(trimmed.prev_log_id, Some(log_id(5)));
    let indexes: Vec<u64> = trimmed.entries.iter().map(|e| e.log_id.index).collect();
    assert_eq!(indexes, vec![6, 7, 8]);
    assert_eq!(trimmed.vote, vote(2));
}

/// A target that answers every request `Success` after `delay`, recording what it got as
/// (prev index, last index).
#[derive(Clone, Default)]
struct Target {
    got: Arc<Mutex<Vec<(u64, u64)>>>,
}

impl Target {
    fn send(
        &self,
        delay: Duration,
    ) -> impl Fn(AppendEntriesRequest<TypeConfig>) -> futures::future::BoxFuture<'static, AppendResult>
    {
        let got = self.got.clone();
        move |request| {
            let prev = request.prev_log_id.map_or(0, |id| id.index);
            let last = proven_by(&request).map_or(0, |id| id.index);
            got.lock().unwrap().push((prev, last));
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(AppendEntriesResponse::Success)
            })
        }
    }

    fn got(&self) -> Vec<(u64, u64)> {
        self.got.lock().unwrap().clone()
    }
}

/// As openraft calls: given up after `ttl`.
async fn attempt(
    sender: &mut AppendSender,
    request: AppendEntriesRequest<TypeConfig>,
    send: impl Fn(AppendEntriesRequest<TypeConfig>) -> futures::future::BoxFuture<'static, AppendResult>,
    ttl: Duration,
) -> Option<AppendResult> {
    tokio::time::timeout(ttl, sender.append(request, send))
        .await
        .ok()
}

#[tokio::test(start_paused = true)]
async fn a_batch_answered_after_the_timeout_answers_the_next_attempt_unsent() {
    let target = Target::default();
    let mut sender = AppendSender::new(Duration::from_secs(5));
    let slow = target.send(Duration::from_millis(150));
    let ttl = Duration::from_millis(50);
    assert!(attempt(&mut sender, request(2, 8), &slow, ttl)
        .await
        .is_none());
    assert!(attempt(&mut sender, request(2, 8), &slow, ttl)
        .await
        .is_none());
    let answered = attempt(&mut sender, request(2, 8), &slow, ttl * 4).await;
    assert!(matches!(answered, Some(Ok(AppendEntriesResponse::Success))));
    assert_eq!(target.got(), vec![(2, 8)], "sent once");
    // Known now: answered without sending.
    let again = attempt(&mut sender, request(4, 8), &slow, ttl).await;
    assert!(matches!(again, Some(Ok(AppendEntriesResponse::Success))));
    assert_eq!(target.got().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_longer_retry_sends_only_the_entries_not_yet_held() {
    let target = Target::default();
    let mut sender = AppendSender::new(Duration::from_secs(5));
    let slow = target.send(Duration::from_millis(100));
    let ttl = Duration::from_millis(30);
    assert!(attempt(&mut sender, request(2, 5), &slow, ttl)
        .await
        .is_none());
    // openraft tries again from its last match with more entries; the first batch is
    // still out: its answer comes first, and is worth a partial success at once.
    let partial = attempt(&mut sender, request(2, 9), &slow, ttl * 10).await;
    assert!(matches!(
        partial,
        Some(Ok(AppendEntriesResponse::PartialSuccess(Some(id)))) if id == log_id(5)
    ));
    // The rest goes without entries 3..=5.
    let rest = attempt(&mut sender, request(5, 9), &slow, ttl * 10).await;
    assert!(matches!(rest, Some(Ok(AppendEntriesResponse::Success))));
    assert_eq!(target.got(), vec![(2, 5), (5, 9)]);
}

#[tokio::test(start_paused = true)]
async fn a_retry_from_behind_what_is_known_is_trimmed_before_sending() {
    let target = Target::default();
    let mut sender = AppendSender::new(Duration::from_secs(5));
    let quick = target.send(Duration::ZERO);
    let ttl = Duration::from_millis(500);
    attempt(&mut sender, request(2, 5), &quick, ttl).await;
    attempt(&mut sender, request(2, 9), &quick, ttl).await;
    assert_eq!(target.got(), vec![(2, 5), (5, 9)]);
}

#[tokio::test(start_paused = true)]
async fn heartbeats_pass_a_batch_in_flight() {
    let target = Target::default();
    let mut sender = AppendSender::new(Duration::from_secs(5));
    let ttl = Duration::from_millis(30);
    let slow = target.send(Duration::from_secs(1));
    assert!(attempt(&mut sender, request(2, 8), &slow, ttl)
        .await
        .is_none());
    let quick = target.send(Duration::ZERO);
    let heartbeat = attempt(&mut sender, request(2, 2), &quick, ttl).await;
    assert!(matches!(
        heartbeat,
        Some(Ok(AppendEntriesResponse::Success))
    ));
    assert_eq!(target.got(), vec![(2, 8), (2, 2)]);
}

#[tokio::test(start_paused = true)]
async fn knowledge_from_an_earlier_vote_is_not_used() {
    let target = Target::default();
    let mut sender = AppendSender::new(Duration::from_secs(5));
    let quick = target.send(Duration::ZERO);
    let ttl = Duration::from_millis(500);
    attempt(&mut sender, request(2, 8), &quick, ttl).await;
    let mut next_term = request(2, 8);
    next_term.vote = vote(3);
    attempt(&mut sender, next_term, &quick, ttl).await;
    assert_eq!(target.got(), vec![(2, 8), (2, 8)]);
}

#[tokio::test(start_paused = true)]
async fn a_batch_ending_where_the_request_starts_does_not_hold_it_up() {
    let target = Target::default();
    let mut sender = AppendSender::new(Duration::from_secs(5));
    let ttl = Duration::from_millis(30);
    let stuck = target.send(Duration::from_secs(3));
    assert!(attempt(&mut sender, request(2, 5), &stuck, ttl)
        .await
        .is_none());
    // openraft moved past the batch (a snapshot, say): the next request goes at once.
    let quick = target.send(Duration::ZERO);
    let next = attempt(&mut sender, request(6, 9), &quick, ttl).await;
    assert!(matches!(next, Some(Ok(AppendEntriesResponse::Success))));
    assert_eq!(target.got(), vec![(2, 5), (6, 9)]);
}
