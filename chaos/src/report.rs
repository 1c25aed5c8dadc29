//! What a chaos run did and found: the options it ran with (enough to replay it), its
//! schedule and the faults as they happened, the workload's operations, each check's
//! verdict, and the run's. Written as `report.json`; [`summary`] is its text for a terminal.
//! Pure.

use serde::{Deserialize, Serialize};

use crate::check::linear::{self, Op, Operation};
use crate::inject::Injected;
use crate::schedule::{FaultKind, PlannedFault};

/// What a run was pointed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    Rudder,
    /// Debian's etcd, as a reference for the KV workload.
    Etcd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    Fail,
    /// A check could not decide (its search ran out of time): never a pass.
    Unknown,
}

/// How a run was asked for: replaying these runs the same schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub seed: u64,
    pub target: Target,
    pub masters: usize,
    pub length_ms: u64,
    pub faults: Vec<FaultKind>,
    pub clients: u32,
    pub keys: usize,
    /// Bugs planted in the members (failpoints), to show the checks find them.
    pub planted: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operations {
    pub total: usize,
    pub answered: usize,
    /// Their outcome is unknown: they may or may not have taken effect.
    pub unanswered: usize,
    pub swaps_won: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub verdict: Verdict,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub plan: Plan,
    pub schedule: Vec<PlannedFault>,
    pub injected: Vec<Injected>,
    pub operations: Operations,
    pub checks: Vec<Check>,
    pub verdict: Verdict,
}

impl Report {
    /// The report of a finished run: every check, and the verdict they give.
    pub fn new(
        plan: Plan,
        schedule: Vec<PlannedFault>,
        injected: Vec<Injected>,
        history: &[Operation],
        linearizability: &linear::Outcome,
    ) -> Self {
        let operations = count(history);
        let checks = vec![
            progress(&operations),
            faults(&schedule, &injected),
            linearizable(linearizability),
        ];
        let verdict = verdict(&checks);
        Self {
            plan,
            schedule,
            injected,
            operations,
            checks,
            verdict,
        }
    }
}

/// Any failure fails the run; otherwise anything undecided leaves it unknown.
pub fn verdict(checks: &[Check]) -> Verdict {
    let any = |wanted| checks.iter().any(|check| check.verdict == wanted);
    if any(Verdict::Fail) {
        Verdict::Fail
    } else if any(Verdict::Unknown) {
        Verdict::Unknown
    } else {
        Verdict::Pass
    }
}

fn count(history: &[Operation]) -> Operations {
    let answered = history.iter().filter(|op| op.completed.is_some()).count();
    Operations {
        total: history.len(),
        answered,
        unanswered: history.len() - answered,
        swaps_won: history
            .iter()
            .filter(|op| op.completed.is_some() && matches!(op.op, Op::Cas { swapped: true, .. }))
            .count(),
    }
}

/// A run whose workload heard nothing tested nothing.
fn progress(operations: &Operations) -> Check {
    let verdict = match operations.answered {
        0 => Verdict::Fail,
        _ => Verdict::Pass,
    };
    Check {
        name: "progress".into(),
        verdict,
        detail: format!(
            "{} operations answered, {} unanswered",
            operations.answered, operations.unanswered
        ),
    }
}

/// Every fault of the schedule happened.
fn faults(schedule: &[PlannedFault], injected: &[Injected]) -> Check {
    let verdict = match injected.len() == schedule.len() {
        true => Verdict::Pass,
        false => Verdict::Fail,
    };
    let leaders = injected.iter().filter(|fault| fault.was_leader).count();
    Check {
        name: "faults".into(),
        verdict,
        detail: format!(
            "{} of {} scheduled faults injected, {leaders} on the leader",
            injected.len(),
            schedule.len()
        ),
    }
}

fn linearizable(outcome: &linear::Outcome) -> Check {
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
        name: "linearizability".into(),
        verdict,
        detail,
    }
}

fn describe(op: &Op) -> String {
    match op {
        Op::Put { value } => format!("put {value:?}"),
        Op::Delete => "delete".into(),
        Op::Get { seen } => format!("get (saw {seen:?})"),
        Op::Cas {
            expected,
            new,
            swapped,
        } => format!("compare-and-swap {expected:?} → {new:?} (swapped: {swapped})"),
    }
}

/// The report for a terminal: the run, its faults, each check, the verdict.
pub fn summary(report: &Report) -> String {
    let plan = &report.plan;
    let mut text = format!(
        "seed {} · {} {:?} members · {:.0}s · faults {} · {} clients on {} keys{}\n",
        plan.seed,
        plan.masters,
        plan.target,
        plan.length_ms as f64 / 1000.0,
        plan.faults
            .iter()
            .map(|kind| kind.name())
            .collect::<Vec<_>>()
            .join(","),
        plan.clients,
        plan.keys,
        match plan.planted.is_empty() {
            true => String::new(),
            false => format!(" · planted: {}", plan.planted.join(",")),
        }
    );
    for check in &report.checks {
        text.push_str(&format!(
            "{:<8} {:<16} {}\n",
            format!("{:?}", check.verdict).to_uppercase(),
            check.name,
            check.detail
        ));
    }
    text.push_str(&format!(
        "{}\n",
        format!("{:?}", report.verdict).to_uppercase()
    ));
    text
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
