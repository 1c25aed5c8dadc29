//! Linearizability of a key-value history: is there one order of the operations, each
//! taking effect at an instant between its invocation and its completion, in which every
//! read saw the value the order gives and every compare-and-swap did what its client heard?
//!
//! A history is linearizable exactly when each key's is (linearizability composes), so keys
//! are searched one at a time: Wing & Gong's search, with Lowe's memo of the states already
//! tried (a set of operations taken, the register's value), as Porcupine does it. An
//! operation whose client heard nothing (a timeout, a broken connection) may take effect at
//! any instant after its invocation, or never: its completion is at infinity. The search
//! has a time budget; a key it cannot decide within it is reported undecided, never passed.
//! Pure.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

/// What a client asked of one key, and what it heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        value: String,
    },
    Delete,
    /// A lease revoked whose one key was put with `attached` (each lease is used for one
    /// put of a unique value): the key goes if it still holds that value, and stays if a
    /// later write replaced it (which detaches it from the lease).
    Revoke {
        attached: String,
    },
    /// A read that saw `seen` (`None`: the key was absent).
    Get {
        seen: Option<String>,
    },
    /// Compare-and-swap: write `new` if the value is `expected` (`None`: absent);
    /// `swapped` is what the client heard.
    Cas {
        expected: Option<String>,
        new: String,
        swapped: bool,
    },
}

/// One operation of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub client: u32,
    pub key: String,
    /// When the client sent it (any clock common to all clients, e.g. ns since the start).
    pub invoked: u64,
    /// When the client heard the answer; `None`: it never did (the outcome is unknown, and
    /// what the op says it heard is ignored).
    pub completed: Option<u64>,
    pub op: Op,
}

#[cfg(test)]
impl Operation {
    /// An operation on key `k` (tests here and in `report`).
    pub(crate) fn on_k(client: u32, invoked: u64, completed: Option<u64>, op: Op) -> Self {
        Self {
            client,
            key: "k".into(),
            invoked,
            completed,
            op,
        }
    }
}

/// A key no order explains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyViolation {
    pub key: String,
    /// The operations of the key, in invocation order.
    pub operations: Vec<Operation>,
    /// The most operations any order explained before it was stuck.
    pub explained: usize,
    /// An operation that completed before any order could take it (where the search was
    /// stuck furthest).
    pub stuck_at: Operation,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub linearizable_keys: usize,
    pub violations: Vec<KeyViolation>,
    /// Keys the search could not decide within its budget.
    pub undecided: Vec<String>,
}

impl Outcome {
    /// Every key decided, and linearizable.
    pub fn passed(&self) -> bool {
        self.violations.is_empty() && self.undecided.is_empty()
    }
}

/// Checks every key of `history`, each starting absent, within `budget` in all.
pub fn check(history: &[Operation], budget: Duration) -> Outcome {
    let deadline = Instant::now() + budget;
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for operation in history {
        // A read whose answer never came says nothing.
        if matches!(operation.op, Op::Get { .. }) && operation.completed.is_none() {
            continue;
        }
        by_key.entry(&operation.key).or_default().push(operation);
    }
    let mut outcome = Outcome::default();
    for (key, operations) in by_key {
        match search(&operations, deadline) {
            Search::Linearizable => outcome.linearizable_keys += 1,
            Search::Stuck {
                explained,
                stuck_at,
            } => {
                let mut operations: Vec<Operation> =
                    operations.iter().map(|op| (*op).clone()).collect();
                operations.sort_by_key(|op| op.invoked);
                outcome.violations.push(KeyViolation {
                    key: key.to_string(),
                    operations,
                    explained,
                    stuck_at,
                });
            }
            Search::OutOfTime => outcome.undecided.push(key.to_string()),
        }
    }
    outcome
}

/// The register's value after `op`, if `op` may take effect when it holds `value`.
fn step(value: &Option<String>, op: &Op, known: bool) -> Option<Option<String>> {
    match op {
        Op::Put { value: new } => Some(Some(new.clone())),
        Op::Delete => Some(None),
        Op::Revoke { attached } => match value {
            Some(held) if held == attached => Some(None),
            _ => Some(value.clone()),
        },
        Op::Get { seen } => (!known || seen == value).then(|| value.clone()),
        Op::Cas {
            expected,
            new,
            swapped,
        } => {
            let matches = value == expected;
            match (known, *swapped) {
                // Unknown: it did what the compare says, at its instant.
                (false, _) | (true, true) if matches => Some(Some(new.clone())),
                (false, _) => Some(value.clone()),
                (true, false) if !matches => Some(value.clone()),
                (true, _) => None,
            }
        }
    }
}

enum Search {
    Linearizable,
    Stuck {
        explained: usize,
        stuck_at: Operation,
    },
    OutOfTime,
}

/// One end of an operation in the time line: its invocation or its completion.
#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    /// The other end's event.
    partner: usize,
}

/// A set of operations, as bits.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Taken(Vec<u64>);

impl Taken {
    fn new(count: usize) -> Self {
        Taken(vec![0; count.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn unset(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// The end of a linked list.
const NIL: usize = usize::MAX;

/// How many steps between looks at the clock.
const CLOCK_EVERY: u32 = 1024;

fn search(operations: &[&Operation], deadline: Instant) -> Search {
    let count = operations.len();
    // The time line: invocations before completions at the same instant (they overlap).
    let mut ends: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * count);
    for (i, operation) in operations.iter().enumerate() {
        ends.push((operation.invoked, true, i));
        ends.push((operation.completed.unwrap_or(u64::MAX), false, i));
    }
    ends.sort_by_key(|&(time, is_call, op)| (time, !is_call, op));
    let mut at = vec![[0usize; 2]; count];
    for (position, &(_, is_call, op)) in ends.iter().enumerate() {
        at[op][usize::from(!is_call)] = position;
    }
    let events: Vec<Event> = ends
        .iter()
        .map(|&(_, is_call, op)| Event {
            op,
            is_call,
            partner: at[op][usize::from(is_call)],
        })
        .collect();
    // A doubly linked list over the events (dancing links), position `len` its head.
    let len = events.len();
    let head = len;
    let mut next = vec![NIL; len + 1];
    let mut prev = vec![NIL; len + 1];
    for i in 0..len {
        next[i] = if i + 1 < len { i + 1 } else { NIL };
        prev[i] = if i == 0 { head } else { i - 1 };
    }
    next[head] = if len > 0 { 0 } else { NIL };
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        let (p, n) = (prev[e], next[e]);
        next[p] = n;
        if n != NIL {
            prev[n] = p;
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        let (p, n) = (prev[e], next[e]);
        next[p] = e;
        if n != NIL {
            prev[n] = e;
        }
    };

    let mut value: Option<String> = None;
    let mut taken = Taken::new(count);
    let mut tried: HashSet<(Taken, Option<String>)> = HashSet::new();
    // The calls taken, with the value before each.
    let mut stack: Vec<(usize, Option<String>)> = Vec::new();
    let mut furthest = (0, 0);
    let mut steps = 0u32;
    let mut event = next[head];
    while next[head] != NIL {
        steps = steps.wrapping_add(1);
        if steps.is_multiple_of(CLOCK_EVERY) && Instant::now() > deadline {
            return Search::OutOfTime;
        }
        let current = events[event];
        if current.is_call {
            let operation = operations[current.op];
            let known = operation.completed.is_some();
            if let Some(after) = step(&value, &operation.op, known) {
                let mut with = taken.clone();
                with.set(current.op);
                if tried.insert((with, after.clone())) {
                    taken.set(current.op);
                    stack.push((event, std::mem::replace(&mut value, after)));
                    unlink(&mut next, &mut prev, event);
                    unlink(&mut next, &mut prev, current.partner);
                    event = next[head];
                    continue;
                }
            }
            event = next[event];
        } else {
            // An operation completed that no order has taken yet: undo the last choice.
            if stack.len() >= furthest.0 {
                furthest = (stack.len(), current.op);
            }
            let Some((call, before)) = stack.pop() else {
                return Search::Stuck {
                    explained: furthest.0,
                    stuck_at: operations[furthest.1].clone(),
                };
            };
            let undone = events[call];
            taken.unset(undone.op);
            value = before;
            relink(&mut next, &mut prev, undone.partner);
            relink(&mut next, &mut prev, call);
            event = next[call];
        }
        // The last event is always a completion, so a call is never last: `event` is set.
        debug_assert_ne!(event, NIL);
    }
    Search::Linearizable
}

#[cfg(test)]
#[path = "linear_tests.rs"]
mod tests;
