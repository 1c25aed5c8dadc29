//! Each check of a chaos run's report: what it judged from what was observed, and its
//! verdict and detail. Apart from [`super`] (the report's shape and text), so that a new
//! check is one function here and one line in `Report::new`. Pure.

use super::*;

/// A run whose workload heard nothing tested nothing; nor did one whose cluster never came
/// back: after each fault, before the next (or the end), some operation must be answered.
pub(super) fn progress(operations: &Operations, observed: &Observed<'_>) -> Check {
    let mut stalled = Vec::new();
    for fault in &observed.injected {
        let until = recovery::next_start(&observed.injected, fault).unwrap_or(observed.ended_ms);
        let (from_ns, until_ns) = (fault.ended_ms * 1_000_000, until * 1_000_000);
        let answered = observed.history.iter().any(|op| {
            op.completed
                .is_some_and(|at| at >= from_ns && at <= until_ns)
        });
        if !answered {
            stalled.push(format!(
                "nothing answered from {:.1}s to {:.1}s, after the {} of {}",
                fault.ended_ms as f64 / 1000.0,
                until as f64 / 1000.0,
                fault.kind.name(),
                fault.member
            ));
        }
    }
    let verdict = match operations.answered == 0 || !stalled.is_empty() {
        true => Verdict::Fail,
        false => Verdict::Pass,
    };
    let mut detail = format!(
        "{} operations answered, {} unanswered",
        operations.answered, operations.unanswered
    );
    for stall in stalled {
        detail.push_str("; ");
        detail.push_str(&stall);
    }
    Check {
        name: "progress".into(),
        verdict,
        detail,
    }
}

/// Every fault of the schedule happened, and there was one of each kind asked for.
pub(super) fn faults(plan: &Plan, schedule: &[PlannedFault], injected: &[Injected]) -> Check {
    let missing: Vec<&str> = plan
        .faults
        .iter()
        .filter(|kind| !injected.iter().any(|fault| fault.kind == **kind))
        .map(|kind| kind.name())
        .collect();
    // A partition that dropped nothing cut nothing, and a delay that held nothing slowed
    // nothing: they happened on paper only.
    let empty_cuts: Vec<String> = injected
        .iter()
        .filter_map(|fault| {
            let did = match (fault.dropped_packets, fault.delayed_packets) {
                (Some(0), _) => "dropped",
                (_, Some(0)) => "delayed",
                _ => return None,
            };
            Some(format!(
                "the {} at {:.1}s ({}) {did} no packet",
                fault.kind.name(),
                fault.started_ms as f64 / 1000.0,
                fault.sides.as_deref().unwrap_or(&fault.member)
            ))
        })
        .collect();
    // A disk fault's member must have stopped (or slowed) as the fault says.
    let disk_problems: Vec<String> = injected
        .iter()
        .filter_map(|fault| {
            let problem = fault.disk_effect.as_ref()?.problem()?;
            Some(format!(
                "the disk fault at {:.1}s ({}): {} {problem}",
                fault.started_ms as f64 / 1000.0,
                fault.disk.map_or("?", |disk| disk.name()),
                fault.member
            ))
        })
        .collect();
    // A fault that struck two members is a record for each.
    let records = schedule.len() + schedule.iter().filter(|f| f.also.is_some()).count();
    let all_done = injected.len() == records && missing.is_empty();
    let verdict = match all_done && empty_cuts.is_empty() && disk_problems.is_empty() {
        true => Verdict::Pass,
        false => Verdict::Fail,
    };
    let leaders = injected.iter().filter(|fault| fault.was_leader).count();
    let firsts = injected.iter().filter(|fault| !fault.second).count();
    let mut detail = format!(
        "{firsts} of {} scheduled faults injected, {leaders} on the leader",
        schedule.len()
    );
    let pairs = injected.iter().filter(|fault| fault.second).count();
    if pairs > 0 {
        detail.push_str(&format!("; {pairs} of them on two members at once"));
    }
    let dropped: u64 = injected.iter().filter_map(|f| f.dropped_packets).sum();
    if injected.iter().any(|f| f.dropped_packets.is_some()) {
        detail.push_str(&format!(
            "; partitions and losses dropped {dropped} packets"
        ));
    }
    let delayed: u64 = injected.iter().filter_map(|f| f.delayed_packets).sum();
    if injected.iter().any(|f| f.delayed_packets.is_some()) {
        detail.push_str(&format!("; delays held {delayed} packets"));
    }
    if !missing.is_empty() {
        detail.push_str(&format!("; never injected: {}", missing.join(", ")));
    }
    let stopped = injected
        .iter()
        .filter(|f| matches!(f.disk_effect, Some(DiskEffect::Stopped { .. })))
        .count();
    if injected.iter().any(|f| f.disk_effect.is_some()) {
        detail.push_str(&format!("; {stopped} members stopped on a failed disk"));
    }
    for problem in empty_cuts.into_iter().chain(disk_problems) {
        detail.push_str("; ");
        detail.push_str(&problem);
    }
    Check {
        name: "faults".into(),
        verdict,
        detail,
    }
}

/// No member ended by itself, and the run itself went as planned.
pub(super) fn members(observed: &Observed<'_>) -> Check {
    let mut problems: Vec<String> = observed
        .crashes
        .iter()
        .map(|crash| {
            format!(
                "{} ended by itself ({}), found at {:.1}s",
                crash.member,
                crash.exit,
                crash.found_ms as f64 / 1000.0
            )
        })
        .collect();
    problems.extend(observed.incidents.iter().cloned());
    let verdict = match problems.is_empty() {
        true => Verdict::Pass,
        false => Verdict::Fail,
    };
    Check {
        name: "members".into(),
        verdict,
        detail: match problems.is_empty() {
            true => "every member ran until the run ended it".into(),
            false => problems.join("; "),
        },
    }
}

pub(super) fn linearizable(name: &str, outcome: &linear::Outcome) -> Check {
    let verdict = if !outcome.violations.is_empty() {
        Verdict::Fail
    } else if !outcome.undecided.is_empty() {
        Verdict::Unknown
    } else {
        Verdict::Pass
    };
    let mut detail = format!(
        "{} keys linearizable, {} not, {} undecided",
        outcome.linearizable_keys,
        outcome.violations.len(),
        outcome.undecided.len()
    );
    if let Some(violation) = outcome.violations.first() {
        let stuck = &violation.stuck_at;
        detail.push_str(&format!(
            "; key {:?}: no order explains more than {} of its {} operations; stuck at client \
             {}'s {} sent at {:.3}s, answered at {}",
            violation.key,
            violation.explained,
            violation.operations.len(),
            stuck.client,
            describe(&stuck.op),
            stuck.invoked as f64 / 1e9,
            stuck
                .completed
                .map(|at| format!("{:.3}s", at as f64 / 1e9))
                .unwrap_or_else(|| "never".into()),
        ));
    }
    if !outcome.undecided.is_empty() {
        detail.push_str(&format!(
            "; undecided within the time budget: {}",
            outcome.undecided.join(", ")
        ));
    }
    Check {
        name: name.into(),
        verdict,
        detail,
    }
}

/// The objects workload's ConfigMaps: linearizable, and some operations answered.
pub(super) fn objects(outcome: &Result<ObjectsOutcome, String>) -> Check {
    let name = "objects linearizability";
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(why) => return unchecked(name, why),
    };
    let mut check = linearizable(name, &outcome.linearizability);
    check.detail = format!(
        "{} operations on ConfigMaps through the Rudder API, {} answered ({} swaps won): {}",
        outcome.operations, outcome.answered, outcome.swaps_won, check.detail
    );
    if outcome.answered == 0 {
        check.verdict = Verdict::Fail;
        check.detail = format!(
            "no operation on the ConfigMaps was answered: {}",
            check.detail
        );
    } else if outcome.swaps_won == 0 && check.verdict == Verdict::Pass {
        // Every compare lost (or unknown): what a swap promises was never tested.
        check.verdict = Verdict::Unknown;
        check.detail = format!("no swap won, so none was judged: {}", check.detail);
    }
    check
}

/// The first few violations, and how many there were.
pub(super) fn violations<T: std::fmt::Debug>(found: &[T]) -> String {
    let shown: Vec<String> = found.iter().take(3).map(|v| format!("{v:?}")).collect();
    let more = match found.len() > 3 {
        true => format!(" and {} more", found.len() - 3),
        false => String::new(),
    };
    format!("{}{more}", shown.join("; "))
}

/// The whole cluster killed at once and restarted: the replicas hash alike at one revision
/// (nothing acknowledged was lost to it: the at-most-once check read the record after it).
pub(super) fn durable(replicas: &Result<Vec<MemberHash>, String>) -> Check {
    let hashes = match replicas {
        Ok(hashes) if !hashes.is_empty() => hashes,
        Ok(_) => return unchecked("durability", "no member gave a hash"),
        Err(why) => return unchecked("durability", why),
    };
    let disagree = durability::agree(hashes);
    let detail = match (disagree.is_empty(), hashes.first()) {
        (true, Some(first)) => format!(
            "every member killed at once and restarted; {} members hash the keyspace alike \
             ({:08x}) at revision {}; the at-most-once check reads acknowledged writes back \
             after it",
            hashes.len(),
            first.hash,
            first.revision
        ),
        _ => format!("the replicas differ: {}", disagree.join("; ")),
    };
    Check {
        name: "durability".into(),
        verdict: match disagree.is_empty() {
            true => Verdict::Pass,
            false => Verdict::Fail,
        },
        detail,
    }
}

/// No pod bound twice, no node over its allocatable, ReplicaSets and Deployments within
/// their bounds, one pod per StatefulSet ordinal; and, so that a pass means something, pods were bound and changes done.
pub(super) fn kubernetes(outcome: &Result<KubeOutcome, String>) -> Check {
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(why) => return unchecked("kubernetes", why),
    };
    let kube::Evidence {
        pods_created,
        binds,
        full_nodes,
        growths_judged,
        takeovers,
        fenced_writes,
        ordinals_judged,
    } = outcome.judged.evidence;
    let violations = &outcome.judged.violations;
    let idle = binds == 0 || outcome.done == 0;
    // Every bind is a fenced write: none logged means the masters' logs said nothing of
    // them (their log filter), not that none landed.
    let unlogged = binds > 0 && fenced_writes == 0;
    let verdict = match (violations.is_empty(), idle, unlogged) {
        (false, _, _) | (true, true, _) => Verdict::Fail,
        (true, false, true) => Verdict::Unknown,
        (true, false, false) => Verdict::Pass,
    };
    let mut detail = format!(
        "{} of {} changes to ReplicaSets, Deployments and StatefulSets done; {pods_created} \
         pods created, {binds} bound, {full_nodes} nodes full at some point, {growths_judged} \
         growths judged against their bounds, {ordinals_judged} StatefulSet pods judged for \
         their ordinal; {takeovers} takeovers of the scheduler's or controller \
         manager's lease; {fenced_writes} fenced writes judged against their lease",
        outcome.done, outcome.asked
    );
    if idle {
        detail.push_str("; nothing was bound or changed, so nothing was tested");
    }
    if unlogged {
        detail.push_str("; no fenced write was logged (target rudder::fenced), so none was judged");
    }
    // Each broken invariant: how often, and its first two (one kind must not hide another).
    let mut broken: Vec<&str> = violations.iter().map(|v| v.invariant).collect();
    broken.sort_unstable();
    broken.dedup();
    for invariant in broken {
        let of_it: Vec<&kube::Violation> = violations
            .iter()
            .filter(|v| v.invariant == invariant)
            .collect();
        detail.push_str(&format!("; {invariant}: {} violations", of_it.len()));
        for violation in of_it.iter().take(2) {
            detail.push_str(&format!(
                "; {invariant} at revision {}: {}",
                violation.revision, violation.detail
            ));
        }
    }
    Check {
        name: "kubernetes".into(),
        verdict,
        detail,
    }
}

pub(super) fn unchecked(name: &str, why: &str) -> Check {
    Check {
        name: name.into(),
        verdict: Verdict::Unknown,
        detail: format!("not checked: {why}"),
    }
}

/// Every watcher saw every change in its range exactly once, in order, as made, and
/// reached the last write.
pub(super) fn watches(outcome: &Result<WatchOutcome, String>) -> Check {
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(why) => return unchecked("watches", why),
    };
    let clean = outcome.violations.is_empty() && outcome.fell_short.is_empty();
    let verdict = match (clean, outcome.watchers > 0) {
        (true, true) => Verdict::Pass,
        (true, false) => Verdict::Unknown,
        (false, _) => Verdict::Fail,
    };
    let mut detail = format!(
        "{} watchers saw {} events, resuming across faults",
        outcome.watchers, outcome.events
    );
    if !outcome.violations.is_empty() {
        detail = format!(
            "{} violations: {}",
            outcome.violations.len(),
            violations(&outcome.violations)
        );
    }
    for short in &outcome.fell_short {
        detail.push_str("; ");
        detail.push_str(short);
    }
    Check {
        name: "watches".into(),
        verdict,
        detail,
    }
}

/// No write applied twice, none acknowledged and lost, none refused yet applied.
pub(super) fn at_most_once(outcome: &Result<(usize, Vec<once::Violation>), String>) -> Check {
    let (writes, found) = match outcome {
        Ok(outcome) => outcome,
        Err(why) => return unchecked("at-most-once", why),
    };
    let verdict = match found.is_empty() {
        true => Verdict::Pass,
        false => Verdict::Fail,
    };
    let detail = match found.is_empty() {
        true => format!("{writes} writes: none applied twice, none acknowledged and lost"),
        false => format!("{} violations: {}", found.len(), violations(found)),
    };
    Check {
        name: "at-most-once".into(),
        verdict,
        detail,
    }
}

/// Each serializable read saw its key as the record has it at the revision it names.
pub(super) fn serializable_reads(
    outcome: &Result<(usize, Vec<serializable::Violation>), String>,
) -> Check {
    let name = "serializable reads";
    let (reads, found) = match outcome {
        Ok(outcome) => outcome,
        Err(why) => return unchecked(name, why),
    };
    let (verdict, detail) = match (found.first(), reads) {
        (None, 0) => (
            Verdict::Unknown,
            "no serializable read was answered".to_string(),
        ),
        (None, _) => (
            Verdict::Pass,
            format!("{reads} reads, each saw its key as the store had it at the revision it named"),
        ),
        (Some(first), _) => {
            let read = &first.read;
            let detail = format!(
                "{} of {reads} reads saw what the store never had at their revision; first: \
                 client {} read {:?} at revision {} and saw {:?}, where the store had {:?}",
                found.len(),
                read.client,
                read.key,
                read.revision,
                read.seen,
                first.recorded
            );
            (Verdict::Fail, detail)
        }
    };
    Check {
        name: name.into(),
        verdict,
        detail,
    }
}

pub(super) fn describe(op: &Op) -> String {
    match op {
        Op::Put { value } => format!("put {value:?}"),
        Op::Delete => "delete".into(),
        Op::Revoke { attached } => format!("revoke the lease {attached:?} was put with"),
        Op::Get { seen } => format!("get (saw {seen:?})"),
        Op::Cas {
            expected,
            new,
            swapped,
        } => format!("compare-and-swap {expected:?} → {new:?} (swapped: {swapped})"),
    }
}
