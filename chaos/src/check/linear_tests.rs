use rand::{Rng, SeedableRng};

use super::*;

const BUDGET: Duration = Duration::from_secs(10);

/// An operation on key `k`.
fn op(client: u32, invoked: u64, completed: Option<u64>, op: Op) -> Operation {
    Operation::on_k(client, invoked, completed, op)
}

fn put(value: &str) -> Op {
    Op::Put {
        value: value.into(),
    }
}

fn get(seen: Option<&str>) -> Op {
    Op::Get {
        seen: seen.map(str::to_string),
    }
}

fn cas(expected: Option<&str>, new: &str, swapped: bool) -> Op {
    Op::Cas {
        expected: expected.map(str::to_string),
        new: new.into(),
        swapped,
    }
}

#[test]
fn a_sequential_history_that_reads_its_writes_is_linearizable() {
    let history = [
        op(1, 0, Some(1), get(None)),
        op(1, 2, Some(3), put("a")),
        op(2, 4, Some(5), get(Some("a"))),
        op(2, 6, Some(7), cas(Some("a"), "b", true)),
        op(1, 8, Some(9), cas(Some("a"), "c", false)),
        op(1, 10, Some(11), Op::Delete),
        op(2, 12, Some(13), get(None)),
    ];
    let outcome = check(&history, BUDGET);
    assert!(outcome.passed(), "{outcome:?}");
    assert_eq!(outcome.linearizable_keys, 1);
}

#[test]
fn a_stale_read_after_a_completed_write_is_not() {
    let history = [
        op(1, 0, Some(1), put("a")),
        op(1, 2, Some(3), put("b")),
        op(2, 4, Some(5), get(Some("a"))),
    ];
    let outcome = check(&history, BUDGET);
    assert_eq!(outcome.violations.len(), 1);
    let violation = &outcome.violations[0];
    assert_eq!(violation.key, "k");
    assert_eq!(violation.stuck_at.op, get(Some("a")));
    assert_eq!(violation.explained, 2);
}

#[test]
fn a_read_overlapping_a_write_may_see_either_value() {
    for seen in ["a", "b"] {
        let history = [
            op(1, 0, Some(1), put("a")),
            op(1, 2, Some(6), put("b")),
            op(2, 3, Some(5), get(Some(seen))),
        ];
        assert!(check(&history, BUDGET).passed(), "seeing {seen}");
    }
    // But two reads in a row cannot see the new value, then the old.
    let history = [
        op(1, 0, Some(1), put("a")),
        op(1, 2, Some(10), put("b")),
        op(2, 3, Some(4), get(Some("b"))),
        op(2, 5, Some(6), get(Some("a"))),
    ];
    assert!(!check(&history, BUDGET).passed());
}

#[test]
fn a_write_nobody_heard_back_from_may_land_late_or_never_but_not_be_undone() {
    let unheard = op(1, 2, None, put("c"));
    let before = op(1, 0, Some(1), put("a"));
    for seen in [Some("a"), Some("c")] {
        let history = [
            before.clone(),
            unheard.clone(),
            op(2, 5, Some(6), get(seen)),
        ];
        assert!(check(&history, BUDGET).passed(), "seeing {seen:?}");
    }
    let undone = [
        before,
        unheard,
        op(2, 5, Some(6), get(Some("c"))),
        op(2, 7, Some(8), get(Some("a"))),
    ];
    assert!(!check(&undone, BUDGET).passed());
}

#[test]
fn two_swaps_from_the_same_value_cannot_both_win() {
    let history = [
        op(1, 0, Some(1), put("a")),
        op(1, 2, Some(5), cas(Some("a"), "b", true)),
        op(2, 3, Some(6), cas(Some("a"), "c", true)),
    ];
    assert!(!check(&history, BUDGET).passed());
    // One winner, one loser, and an unanswered third that may or may not have applied.
    let history = [
        op(1, 0, Some(1), put("a")),
        op(1, 2, Some(5), cas(Some("a"), "b", true)),
        op(2, 3, Some(6), cas(Some("a"), "c", false)),
        op(3, 3, None, cas(Some("b"), "d", false)),
        op(2, 7, Some(8), get(Some("d"))),
    ];
    assert!(check(&history, BUDGET).passed());
}

#[test]
fn keys_are_judged_apart_and_a_violation_names_its_key() {
    let mut history = vec![
        op(1, 0, Some(1), put("a")),
        op(2, 2, Some(3), get(Some("a"))),
    ];
    let mut other = op(1, 4, Some(5), get(Some("ghost")));
    other.key = "other".into();
    history.push(other);
    let outcome = check(&history, BUDGET);
    assert_eq!(outcome.linearizable_keys, 1);
    assert_eq!(outcome.violations.len(), 1);
    assert_eq!(outcome.violations[0].key, "other");
}

#[test]
fn out_of_time_is_undecided_never_passed() {
    // Many overlapping writes and reads: too much to search in no time at all.
    let mut history = Vec::new();
    for i in 0..200u64 {
        history.push(op(i as u32, i, Some(10_000), put(&format!("v{i}"))));
    }
    history.push(op(999, 10_001, Some(10_002), get(Some("nobody"))));
    let outcome = check(&history, Duration::ZERO);
    assert_eq!(outcome.undecided, ["k"]);
    assert!(!outcome.passed());
}

#[test]
fn a_revoked_lease_takes_its_key_only_while_the_key_holds_what_the_lease_put() {
    let revoke = |attached: &str| Op::Revoke {
        attached: attached.into(),
    };
    // Put under the lease, revoked: the key is gone.
    let gone = [
        op(1, 0, Some(1), put("a")),
        op(1, 2, Some(3), revoke("a")),
        op(2, 4, Some(5), get(None)),
    ];
    assert!(check(&gone, BUDGET).passed());
    let kept = [
        gone[0].clone(),
        gone[1].clone(),
        op(2, 4, Some(5), get(Some("a"))),
    ];
    assert!(
        !check(&kept, BUDGET).passed(),
        "a revoked lease's key read back"
    );
    // Replaced after the lease's put: the replacement stays.
    let replaced = [
        op(1, 0, Some(1), put("a")),
        op(2, 2, Some(3), put("b")),
        op(1, 4, Some(5), revoke("a")),
        op(2, 6, Some(7), get(Some("b"))),
    ];
    assert!(check(&replaced, BUDGET).passed());
    let lost = [
        replaced[0].clone(),
        replaced[1].clone(),
        replaced[2].clone(),
        op(2, 6, Some(7), get(None)),
    ];
    assert!(
        !check(&lost, BUDGET).passed(),
        "a revoke took a key its lease no longer held"
    );
}

/// Histories made by a real register under concurrency, each operation taking effect at a
/// random instant inside its interval (some answers lost): always linearizable, however
/// the intervals overlap.
#[test]
fn histories_of_a_real_register_are_linearizable() {
    for seed in 0..50 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        // (instant of effect, operation), applied in instant order to find what each saw.
        let mut planned: Vec<(u64, u32, u64, Option<u64>, Op)> = Vec::new();
        for i in 0..30u32 {
            let invoked = rng.random_range(0..1_000u64);
            let effect = invoked + rng.random_range(0..50);
            let completed = effect + rng.random_range(0..50);
            let heard = rng.random_bool(0.9).then_some(completed);
            let kind = rng.random_range(0..5);
            let op = match kind {
                0 => put(&format!("v{i}")),
                1 => Op::Delete,
                2 => get(None),
                3 => Op::Revoke {
                    attached: format!("v{}", rng.random_range(0..30)),
                },
                _ => cas(
                    Some(&format!("v{}", rng.random_range(0..30))),
                    &format!("c{i}"),
                    false,
                ),
            };
            planned.push((
                effect * 100 + u64::from(i),
                i,
                invoked * 100,
                heard.map(|c| c * 100 + 99),
                op,
            ));
        }
        planned.sort_by_key(|p| p.0);
        let mut value: Option<String> = None;
        let mut history = Vec::new();
        for (_, client, invoked, completed, planned_op) in planned {
            let done = match planned_op {
                Op::Get { .. } => get(value.as_deref()),
                Op::Cas { expected, new, .. } => {
                    let swapped = value == expected;
                    if swapped {
                        value = Some(new.clone());
                    }
                    Op::Cas {
                        expected,
                        new,
                        swapped,
                    }
                }
                Op::Put { value: new } => {
                    value = Some(new.clone());
                    Op::Put { value: new }
                }
                Op::Delete => {
                    value = None;
                    Op::Delete
                }
                Op::Revoke { attached } => {
                    if value.as_ref() == Some(&attached) {
                        value = None;
                    }
                    Op::Revoke { attached }
                }
            };
            history.push(op(client, invoked, completed, done));
        }
        let outcome = check(&history, BUDGET);
        assert!(outcome.passed(), "seed {seed}: {outcome:?}");
    }
}

/// Every order of `ops` that keeps real time (one completed before another began goes
/// first), tried one by one: the definition itself, for small histories.
fn linearizable_by_brute_force(ops: &[Operation]) -> bool {
    let ops: Vec<&Operation> = ops
        .iter()
        .filter(|o| !(matches!(o.op, Op::Get { .. }) && o.completed.is_none()))
        .collect();
    fn extend(ops: &[&Operation], used: &mut Vec<bool>, value: Option<String>) -> bool {
        if used.iter().all(|u| *u) {
            return true;
        }
        for i in 0..ops.len() {
            if used[i] {
                continue;
            }
            // Every op that completed before this one began must be placed already.
            let ready = (0..ops.len())
                .all(|j| used[j] || j == i || ops[j].completed.is_none_or(|c| c >= ops[i].invoked));
            if !ready {
                continue;
            }
            if let Some(after) = step(&value, &ops[i].op, ops[i].completed.is_some()) {
                used[i] = true;
                if extend(ops, used, after) {
                    return true;
                }
                used[i] = false;
            }
        }
        false
    }
    extend(&ops, &mut vec![false; ops.len()], None)
}

#[test]
fn the_search_agrees_with_trying_every_order_on_small_random_histories() {
    let values = [None, Some("a"), Some("b")];
    let mut disagreements = Vec::new();
    let (mut yes, mut no) = (0, 0);
    for seed in 0..400 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let history: Vec<Operation> = (0..rng.random_range(1..7u32))
            .map(|client| {
                let invoked = rng.random_range(0..20u64);
                let completed = rng
                    .random_bool(0.85)
                    .then(|| invoked + rng.random_range(0..10));
                let pick = |rng: &mut rand::rngs::StdRng| values[rng.random_range(0..3)];
                let asked = match rng.random_range(0..5) {
                    0 => put(pick(&mut rng).unwrap_or("a")),
                    1 => Op::Delete,
                    2 => get(pick(&mut rng)),
                    3 => Op::Revoke {
                        attached: pick(&mut rng).unwrap_or("a").to_string(),
                    },
                    _ => cas(
                        pick(&mut rng),
                        pick(&mut rng).unwrap_or("b"),
                        rng.random_bool(0.5),
                    ),
                };
                op(client, invoked, completed, asked)
            })
            .collect();
        let expected = linearizable_by_brute_force(&history);
        if expected {
            yes += 1;
        } else {
            no += 1;
        }
        if check(&history, BUDGET).passed() != expected {
            disagreements.push((seed, expected, history));
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
    assert!(
        yes > 50 && no > 50,
        "both verdicts exercised: {yes} yes, {no} no"
    );
}
