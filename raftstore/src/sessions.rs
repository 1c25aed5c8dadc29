//! Exactly-once writes: the table of recently applied client requests (the Raft
//! dissertation's §6.3, "Implementing linearizable semantics"). Pure: no I/O, no clock.
//!
//! A write may reach the log more than once: a leader can append and replicate an entry and
//! lose leadership before it answers (the next leader commits it), and a forward whose reply
//! was lost looks like one that never arrived. So every write proposed on a client's behalf
//! carries a [`RequestId`] — the client's random id, its sequence number, and a part number
//! for the several writes one API call may make — and every retry of it carries the same id.
//! The state machine consults this table before applying:
//!
//! ```text
//!  request (id, acked_below) ─► admit ─┬─ New        ─► apply, then record the outcome
//!                                      ├─ Repeat(o)  ─► answer o again; nothing changes
//!                                      ├─ Forgotten  ─► refuse: "may or may not have been applied"
//!                                      └─ Mismatch   ─► refuse: the id was used for another write
//! ```
//!
//! The table stays small: each request also says `acked_below`, the client's lowest sequence
//! number still waiting for an answer; outcomes below it can never be asked for again and
//! are dropped. A client's `floor` is the number below which its outcomes are no longer
//! kept: a retry of such a request is refused, never re-applied. Outcomes are bounded
//! besides by count per client and by age: a client idle for [`SESSION_TTL_MS`] of log time
//! keeps only its floor, raised past everything it had applied — so a leader whose clock
//! runs far ahead makes retries fail safely, not apply twice. Only the count of clients
//! ([`MAX_SESSIONS`], the longest idle first) forgets a client whole. Each outcome also keeps
//! the shape of its write (kind and keys), so a repeat of an id with another write is refused,
//! never answered with the other write's outcome. Time is the proposing leader's clock
//! carried in each entry, so every replica forgets the same things at the same log position.

use std::collections::BTreeMap;

use rudder_proto::request_ids::RETRY_HORIZON;
use serde::{Deserialize, Serialize};

use crate::error::KvError;
use crate::kv::{Command, DeleteRangeRequest, KeyRange, PutRequest, RequestOp, TxnRequest};
use crate::mvcc::{Effects, History, Mvcc};
use crate::types::{Outcome, Request};
pub use crate::types::{RequestId, RequestTag};

/// How long (of log time) a client that makes no write is remembered.
pub const SESSION_TTL_MS: u64 = 10 * 60 * 1000;
/// Outcomes kept per client beyond its `acked_below` (a store member numbers every write it
/// serves for etcd clients: this covers ~10 s of its writes at full speed while one of them
/// is still retried); the oldest go first, and a retry of one is then refused as forgotten.
pub const MAX_OUTCOMES_PER_SESSION: usize = 65_536;
/// Clients remembered at once (a floor and a time each, ~40 bytes); the longest idle goes
/// first, and only then can a retry of its requests go unrecognised.
pub const MAX_SESSIONS: usize = 262_144;
/// How often (in log time) idle sessions are swept out.
const SWEEP_EVERY_MS: u64 = 10 * 1000;

// Clients retry a write for at most `RETRY_HORIZON`: well inside the TTL, so a retry always
// finds its client's session, even across leaders whose clocks disagree by minutes.
const _: () = assert!(RETRY_HORIZON.as_secs() * 1000 * 5 <= SESSION_TTL_MS);

/// What the table says of a request about to be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Never applied: apply it and [`Sessions::record`] the outcome.
    New,
    /// Applied before: this is its outcome; apply nothing.
    Repeat(Outcome),
    /// Its outcome is no longer known (below the client's floor): apply nothing.
    Forgotten,
    /// The id was applied for a write of another shape: apply nothing, answer nothing of it.
    Mismatch,
}

/// An outcome as the table keeps it, with the shape of the write it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remembered {
    pub shape: u64,
    pub outcome: Outcome,
}

/// What the table remembers of one client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionMeta {
    /// Requests with a lower `seq` that are not in `outcomes` are forgotten.
    pub floor: u64,
    /// Log time of the client's last write.
    pub last_active_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub meta: SessionMeta,
    /// Outcomes by `(seq, part)`.
    pub outcomes: BTreeMap<(u64, u32), Remembered>,
}

/// A change the shell persists, in order, in the same batch as the applied entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionWrite {
    Clock(u64),
    Meta(u64, SessionMeta),
    /// A new outcome, now in the table.
    Outcome(RequestId),
    /// Every outcome of the client below this sequence number (one range delete for what
    /// `acked_below` released, instead of one delete per outcome).
    ForgetBelow(u64, u64),
    /// Every outcome of the client (its meta stays).
    ForgetOutcomes(u64),
    ForgetSession(u64),
}

/// The table: every client's session, and the log clock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sessions {
    /// The newest leader time seen in the log (never goes back).
    clock_ms: u64,
    sessions: BTreeMap<u64, Session>,
}

impl Sessions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the table from what was persisted.
    pub fn restore(clock_ms: u64, sessions: BTreeMap<u64, Session>) -> Self {
        Self { clock_ms, sessions }
    }

    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    pub fn sessions(&self) -> &BTreeMap<u64, Session> {
        &self.sessions
    }

    /// The outcomes of every applied write (by part) of request `seq` of `client`.
    pub fn outcomes_of(&self, client: u64, seq: u64) -> Vec<(u32, Outcome)> {
        let Some(session) = self.sessions.get(&client) else {
            return Vec::new();
        };
        session
            .outcomes
            .range((seq, 0)..=(seq, u32::MAX))
            .map(|((_, part), kept)| (*part, kept.outcome.clone()))
            .collect()
    }

    /// Number of outcomes remembered, in every session.
    pub fn outcome_count(&self) -> usize {
        self.sessions.values().map(|s| s.outcomes.len()).sum()
    }

    /// Moves the log clock to the time of the entry being applied (if later) and forgets the
    /// outcomes of clients idle for longer than [`SESSION_TTL_MS`] (their floors stay).
    pub fn tick(&mut self, entry_ms: u64, writes: &mut Vec<SessionWrite>) {
        if entry_ms <= self.clock_ms {
            return;
        }
        // Sweeps happen where the clock crosses a multiple of SWEEP_EVERY_MS: a function of
        // the log alone, so a restarted replica sweeps where the others do.
        let crossed = entry_ms / SWEEP_EVERY_MS > self.clock_ms / SWEEP_EVERY_MS;
        self.clock_ms = entry_ms;
        writes.push(SessionWrite::Clock(entry_ms));
        if !crossed {
            return;
        }
        let horizon = self.clock_ms.saturating_sub(SESSION_TTL_MS);
        for (client, session) in &mut self.sessions {
            if session.meta.last_active_ms >= horizon {
                continue;
            }
            if let Some(((last, _), _)) = session.outcomes.pop_last() {
                session.outcomes.clear();
                session.meta.floor = session.meta.floor.max(last.saturating_add(1));
                writes.push(SessionWrite::ForgetOutcomes(*client));
                writes.push(SessionWrite::Meta(*client, session.meta.clone()));
            }
        }
        self.thin_out(writes);
    }

    /// Past nine tenths of [`MAX_SESSIONS`], the longest idle clients that wait on nothing
    /// go, down to eight tenths: once per sweep, so that a new client rarely meets a full
    /// table (where `make_room` scans every session).
    fn thin_out(&mut self, writes: &mut Vec<SessionWrite>) {
        if self.sessions.len() <= MAX_SESSIONS / 10 * 9 {
            return;
        }
        let mut idle: Vec<(u64, u64)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.outcomes.is_empty())
            .map(|(client, s)| (s.meta.last_active_ms, *client))
            .collect();
        idle.sort_unstable();
        let excess = self.sessions.len().saturating_sub(MAX_SESSIONS / 10 * 8);
        for (_, client) in idle.into_iter().take(excess) {
            self.sessions.remove(&client);
            writes.push(SessionWrite::ForgetSession(client));
        }
    }

    /// Decides whether the request tagged `tag`, a write of shape `shape` (see [`shape`]),
    /// is applied, and notes the client's activity.
    pub fn admit(
        &mut self,
        tag: RequestTag,
        shape: u64,
        writes: &mut Vec<SessionWrite>,
    ) -> Admission {
        let RequestId { client, seq, part } = tag.id;
        if !self.sessions.contains_key(&client) {
            self.make_room(writes);
        }
        let clock_ms = self.clock_ms;
        let session = self.sessions.entry(client).or_default();
        session.meta.last_active_ms = clock_ms;
        if tag.acked_below > session.meta.floor {
            session.meta.floor = tag.acked_below;
            let kept = session.outcomes.split_off(&(tag.acked_below, 0));
            if !std::mem::replace(&mut session.outcomes, kept).is_empty() {
                writes.push(SessionWrite::ForgetBelow(client, tag.acked_below));
            }
        }
        writes.push(SessionWrite::Meta(client, session.meta.clone()));
        if let Some(kept) = session.outcomes.get(&(seq, part)) {
            if kept.shape != shape {
                return Admission::Mismatch;
            }
            return Admission::Repeat(kept.outcome.clone());
        }
        if seq < session.meta.floor {
            return Admission::Forgotten;
        }
        Admission::New
    }

    /// Remembers the outcome of a request [`Sessions::admit`] found new.
    pub fn record(
        &mut self,
        id: RequestId,
        shape: u64,
        outcome: &Outcome,
        writes: &mut Vec<SessionWrite>,
    ) {
        let Some(session) = self.sessions.get_mut(&id.client) else {
            return; // admit always creates the session first
        };
        let kept = Remembered {
            shape,
            outcome: outcome.clone(),
        };
        session.outcomes.insert((id.seq, id.part), kept);
        writes.push(SessionWrite::Outcome(id));
        if session.outcomes.len() <= MAX_OUTCOMES_PER_SESSION {
            return;
        }
        // The oldest request goes, never the one being recorded (one request may write
        // many parts: a delete with many dependents).
        let Some(&(oldest, _)) = session.outcomes.keys().next() else {
            return;
        };
        if oldest == id.seq {
            return;
        }
        let floor = oldest.saturating_add(1);
        session.outcomes = session.outcomes.split_off(&(floor, 0));
        writes.push(SessionWrite::ForgetBelow(id.client, floor));
        session.meta.floor = session.meta.floor.max(floor);
        writes.push(SessionWrite::Meta(id.client, session.meta.clone()));
    }

    /// Before a new client is added to a full table, the longest idle one goes.
    fn make_room(&mut self, writes: &mut Vec<SessionWrite>) {
        if self.sessions.len() < MAX_SESSIONS {
            return;
        }
        let idlest = self
            .sessions
            .iter()
            .min_by_key(|(client, s)| (s.meta.last_active_ms, **client))
            .map(|(client, _)| *client);
        if let Some(client) = idlest {
            self.sessions.remove(&client);
            writes.push(SessionWrite::ForgetSession(client));
        }
    }
}

/// Applies one request of a committed entry: through the table when it carries a tag.
/// Returns its outcome and the effects to persist (none for a repeat or a forgotten one).
pub fn apply_request(
    mvcc: &mut Mvcc,
    history: &dyn History,
    sessions: &mut Sessions,
    request: &Request,
    writes: &mut Vec<SessionWrite>,
) -> (Outcome, Effects) {
    let fresh = |mvcc: &mut Mvcc| {
        let (result, effects) = mvcc.apply(&request.command, history);
        let outcome = Outcome {
            revision: mvcc.revision(),
            result,
            replayed: false,
        };
        (outcome, effects)
    };
    let Some(tag) = request.tag else {
        return fresh(mvcc);
    };
    let shape = shape(&request.command);
    let refused = |error: KvError, mvcc: &Mvcc| {
        let outcome = Outcome {
            revision: mvcc.revision(),
            result: Err(error),
            replayed: false,
        };
        (outcome, Effects::default())
    };
    match sessions.admit(tag, shape, writes) {
        Admission::New => {
            let (outcome, effects) = fresh(mvcc);
            sessions.record(tag.id, shape, &outcome, writes);
            (outcome, effects)
        }
        Admission::Repeat(outcome) => (
            Outcome {
                replayed: true,
                ..outcome
            },
            Effects::default(),
        ),
        Admission::Forgotten => refused(
            KvError::OutcomeForgotten {
                client: tag.id.client,
                seq: tag.id.seq,
            },
            mvcc,
        ),
        Admission::Mismatch => refused(
            KvError::RequestIdReused {
                client: tag.id.client,
                seq: tag.id.seq,
                part: tag.id.part,
            },
            mvcc,
        ),
    }
}

/// The shape of a write: its kind and the keys it compares, reads and writes — what stays
/// the same across retries of one write (a retried create may carry a new uid in its value)
/// and tells two different writes apart. FNV-1a, the same on every replica.
pub fn shape(command: &Command) -> u64 {
    let mut hash = Fnv::default();
    shape_of_command(command, &mut hash);
    hash.0
}

fn shape_of_command(command: &Command, hash: &mut Fnv) {
    match command {
        Command::Put(put) => hash.put(put),
        Command::DeleteRange(delete) => hash.delete(delete),
        Command::Txn(txn) => shape_of_txn(txn, hash),
        Command::Compact { revision } => {
            hash.tag(7);
            hash.bytes(&revision.to_be_bytes());
        }
        Command::LeaseGrant { id, .. } => {
            hash.tag(8);
            hash.bytes(&id.to_be_bytes());
        }
        Command::LeaseRevoke { id } => {
            hash.tag(9);
            hash.bytes(&id.to_be_bytes());
        }
        Command::Alarm { alarm, raise } => {
            hash.tag(if *raise { 10 } else { 11 });
            hash.bytes(&alarm.member.to_be_bytes());
        }
    }
}

fn shape_of_txn(txn: &TxnRequest, hash: &mut Fnv) {
    hash.tag(3);
    for compare in &txn.compare {
        hash.range(&compare.range);
    }
    for (branch, ops) in [(4, &txn.success), (5, &txn.failure)] {
        hash.tag(branch);
        for op in ops {
            match op {
                RequestOp::Range(range) => {
                    hash.tag(6);
                    hash.range(&range.range);
                }
                RequestOp::Put(put) => hash.put(put),
                RequestOp::DeleteRange(delete) => hash.delete(delete),
                RequestOp::Txn(nested) => shape_of_txn(nested, hash),
            }
        }
    }
}

struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn tag(&mut self, tag: u8) {
        self.bytes(&[tag]);
    }

    /// A field with its length, so that ("ab", "c") and ("a", "bc") differ.
    fn bytes(&mut self, bytes: &[u8]) {
        for byte in (bytes.len() as u64).to_be_bytes().iter().chain(bytes) {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn range(&mut self, range: &KeyRange) {
        self.bytes(&range.key);
        self.bytes(&range.range_end);
    }

    fn put(&mut self, put: &PutRequest) {
        self.tag(1);
        self.bytes(&put.key);
    }

    fn delete(&mut self, delete: &DeleteRangeRequest) {
        self.tag(2);
        self.range(&delete.range);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::CommandResult;

    fn tag(client: u64, seq: u64, acked_below: u64) -> RequestTag {
        RequestTag {
            id: RequestId {
                client,
                seq,
                part: 0,
            },
            acked_below,
        }
    }

    fn outcome(revision: i64) -> Outcome {
        Outcome {
            revision,
            result: Ok(CommandResult::Compacted),
            replayed: false,
        }
    }

    #[test]
    fn a_request_seen_again_is_answered_with_its_first_outcome() {
        let mut table = Sessions::new();
        let mut writes = Vec::new();
        assert_eq!(table.admit(tag(7, 1, 1), 0, &mut writes), Admission::New);
        table.record(tag(7, 1, 1).id, 0, &outcome(5), &mut writes);
        assert_eq!(
            table.admit(tag(7, 1, 1), 0, &mut writes),
            Admission::Repeat(outcome(5))
        );
        // Another client's seq 1 is another request.
        assert_eq!(table.admit(tag(8, 1, 1), 0, &mut writes), Admission::New);
    }

    #[test]
    fn parts_of_one_request_are_separate_writes() {
        let mut table = Sessions::new();
        let mut writes = Vec::new();
        let mut second = tag(7, 1, 1);
        second.id.part = 1;
        assert_eq!(table.admit(tag(7, 1, 1), 0, &mut writes), Admission::New);
        table.record(tag(7, 1, 1).id, 0, &outcome(5), &mut writes);
        assert_eq!(table.admit(second, 0, &mut writes), Admission::New);
    }

    #[test]
    fn acknowledged_outcomes_are_dropped_and_a_late_copy_is_refused() {
        let mut table = Sessions::new();
        let mut writes = Vec::new();
        for seq in 1..=3 {
            assert_eq!(table.admit(tag(7, seq, 1), 0, &mut writes), Admission::New);
            table.record(tag(7, seq, 1).id, 0, &outcome(seq as i64), &mut writes);
        }
        assert_eq!(table.outcome_count(), 3);
        // The client heard the answers to 1 and 2.
        assert_eq!(table.admit(tag(7, 4, 3), 0, &mut writes), Admission::New);
        assert_eq!(table.outcome_count(), 1);
        assert!(writes.contains(&SessionWrite::ForgetBelow(7, 3)));
        // A delayed copy of request 2 must not be applied again.
        assert_eq!(
            table.admit(tag(7, 2, 1), 0, &mut writes),
            Admission::Forgotten
        );
        // Request 3 is still known.
        assert_eq!(
            table.admit(tag(7, 3, 3), 0, &mut writes),
            Admission::Repeat(outcome(3))
        );
    }

    #[test]
    fn the_oldest_outcome_goes_when_a_session_is_full_and_its_retry_is_refused() {
        let mut table = Sessions::new();
        let mut writes = Vec::new();
        let count = MAX_OUTCOMES_PER_SESSION as u64 + 1;
        for seq in 1..=count {
            table.admit(tag(7, seq, 1), 0, &mut writes);
            table.record(tag(7, seq, 1).id, 0, &outcome(seq as i64), &mut writes);
        }
        assert_eq!(table.outcome_count(), MAX_OUTCOMES_PER_SESSION);
        assert_eq!(
            table.admit(tag(7, 1, 1), 0, &mut writes),
            Admission::Forgotten
        );
        assert!(matches!(
            table.admit(tag(7, 2, 1), 0, &mut writes),
            Admission::Repeat(_)
        ));
    }

    #[test]
    fn an_idle_client_keeps_its_floor_so_a_late_retry_is_refused_and_a_new_request_applies() {
        let mut table = Sessions::new();
        let mut writes = Vec::new();
        table.tick(1_000, &mut writes);
        table.admit(tag(7, 1, 1), 0, &mut writes);
        table.record(tag(7, 1, 1).id, 0, &outcome(1), &mut writes);
        table.tick(500, &mut writes); // an entry from a leader whose clock is behind
        assert_eq!(table.clock_ms(), 1_000);
        table.tick(1_000 + SESSION_TTL_MS, &mut writes);
        assert_eq!(
            table.outcome_count(),
            1,
            "not idle for longer than the TTL yet"
        );
        writes.clear();
        // A leader whose clock is far ahead: the outcome goes, the floor stays.
        table.tick(1_000 + SESSION_TTL_MS + SWEEP_EVERY_MS, &mut writes);
        assert_eq!(table.outcome_count(), 0);
        assert!(writes.contains(&SessionWrite::ForgetOutcomes(7)));
        assert_eq!(
            table.admit(tag(7, 1, 1), 0, &mut writes),
            Admission::Forgotten
        );
        assert_eq!(table.admit(tag(7, 2, 2), 0, &mut writes), Admission::New);
    }

    #[test]
    fn a_crowded_table_sheds_its_longest_idle_clients_at_a_sweep() {
        let mut table = Sessions::new();
        let mut writes = Vec::new();
        let crowd = MAX_SESSIONS / 10 * 9 + 10;
        for client in 1..=crowd as u64 {
            table.tick(client, &mut writes);
            table.admit(tag(client, 1, 1), 0, &mut writes);
        }
        // One client waits on an answer: it stays whatever its age.
        table.record(tag(1, 1, 1).id, 0, &outcome(1), &mut writes);
        writes.clear();
        table.tick(crowd as u64 + SWEEP_EVERY_MS, &mut writes); // the next sweep
        assert_eq!(table.sessions().len(), MAX_SESSIONS / 10 * 8);
        assert!(
            table.sessions().contains_key(&1),
            "a client with an outcome stays"
        );
        assert!(!table.sessions().contains_key(&2), "the longest idle went");
        assert!(
            table.sessions().contains_key(&(crowd as u64)),
            "the newest stayed"
        );
    }

    #[test]
    fn an_id_applied_for_another_write_is_refused_not_answered() {
        use crate::kv::PutRequest;
        let put = |key: &str, value: &str| {
            shape(&Command::Put(PutRequest {
                key: key.into(),
                value: value.as_bytes().to_vec().into(),
                ..Default::default()
            }))
        };
        assert_eq!(
            put("a", "1"),
            put("a", "2"),
            "a retry may carry another value"
        );
        assert_ne!(put("a", "1"), put("b", "1"));
        let mut table = Sessions::new();
        let mut writes = Vec::new();
        table.admit(tag(7, 1, 1), put("a", "1"), &mut writes);
        table.record(tag(7, 1, 1).id, put("a", "1"), &outcome(1), &mut writes);
        assert_eq!(
            table.admit(tag(7, 1, 1), put("b", "1"), &mut writes),
            Admission::Mismatch
        );
    }

    #[test]
    fn a_full_session_forgets_the_oldest_request_but_never_the_one_being_recorded() {
        let mut table = Sessions::new();
        let mut writes = Vec::new();
        let part = |seq: u64, part: u32| {
            let mut this = tag(7, seq, 1);
            this.id.part = part;
            this
        };
        // One request with more parts than the cap (a delete with many dependents).
        for n in 0..=MAX_OUTCOMES_PER_SESSION as u32 {
            assert_eq!(table.admit(part(5, n), 0, &mut writes), Admission::New);
            table.record(part(5, n).id, 0, &outcome(1), &mut writes);
        }
        assert_eq!(table.outcome_count(), MAX_OUTCOMES_PER_SESSION + 1);
        // The next request pushes the whole oldest one out, and its retry is refused.
        table.admit(part(6, 0), 0, &mut writes);
        table.record(part(6, 0).id, 0, &outcome(2), &mut writes);
        assert_eq!(table.outcome_count(), 1);
        assert_eq!(
            table.admit(part(5, 0), 0, &mut writes),
            Admission::Forgotten
        );
        // The largest number a client can send is no overflow.
        assert_eq!(
            table.admit(part(u64::MAX, 0), 0, &mut writes),
            Admission::New
        );
        table.record(part(u64::MAX, 0).id, 0, &outcome(3), &mut writes);
        table.tick(SESSION_TTL_MS * 2, &mut writes); // the floor saturates, no panic
    }

    #[test]
    fn a_put_applied_twice_makes_one_revision_and_one_event() {
        use crate::kv::{Command, PutRequest};
        use crate::mvcc::NoHistory;
        let mut mvcc = Mvcc::new();
        let mut table = Sessions::new();
        let mut writes = Vec::new();
        let put = Request {
            command: Command::Put(PutRequest {
                key: b"k".to_vec(),
                value: b"unique".to_vec().into(),
                ..Default::default()
            }),
            tag: Some(tag(7, 1, 1)),
        };
        let (first, effects) = apply_request(&mut mvcc, &NoHistory, &mut table, &put, &mut writes);
        assert_eq!(effects.events.len(), 1);
        let (again, effects) = apply_request(&mut mvcc, &NoHistory, &mut table, &put, &mut writes);
        assert!(
            effects.events.is_empty(),
            "a repeat publishes no watch event"
        );
        assert_eq!(mvcc.revision(), 1, "a repeat uses no revision");
        assert_eq!(again.revision, first.revision);
        assert!(again.replayed && !first.replayed);
        // Without a tag (the leader's own lease duty) the command simply applies.
        let untagged = Request { tag: None, ..put };
        apply_request(&mut mvcc, &NoHistory, &mut table, &untagged, &mut writes);
        assert_eq!(mvcc.revision(), 2);
    }

    #[test]
    fn two_replicas_fed_the_same_requests_agree() {
        let feed = |table: &mut Sessions| {
            let mut writes = Vec::new();
            for (ms, client, seq, acked) in [(10, 1, 1, 1), (20, 2, 1, 1), (30, 1, 2, 2)] {
                table.tick(ms, &mut writes);
                if table.admit(tag(client, seq, acked), 0, &mut writes) == Admission::New {
                    table.record(
                        tag(client, seq, acked).id,
                        0,
                        &outcome(ms as i64),
                        &mut writes,
                    );
                }
            }
            writes
        };
        let (mut one, mut two) = (Sessions::new(), Sessions::new());
        assert_eq!(feed(&mut one), feed(&mut two));
        assert_eq!(one, two);
    }
}
