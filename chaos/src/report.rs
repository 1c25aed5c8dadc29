//! What a chaos run did and found: the options it ran with (enough to replay it), its
//! schedule and the faults as they happened, the workload's operations, each check's
//! verdict, and the run's, with how soon writes recovered after each kind of fault
//! ([`crate::recovery`]). Written as `report.json`; [`summary`] is its text for a terminal.
//! Each check's judgement is in `report_checks.rs`. Pure.

use serde::{Deserialize, Serialize};

#[path = "report_checks.rs"]
mod checks;
use checks::*;

use crate::check::linear::{self, Op, Operation};
use crate::check::{kube, once, serializable, watch};
use crate::disk::DiskEffect;
use crate::durability::{self, MemberHash};
use crate::inject::{Crash, Injected};
use crate::recovery::{self, Recovery};
use crate::schedule::{self, FaultKind, PlannedFault};

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
    /// The pods workload ran beside the KV one, on hollow nodes (Rudder only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pods: bool,
    /// The objects workload ran beside the KV one: ConfigMaps through the Rudder API.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub objects: bool,
}

impl Plan {
    /// The faults this plan's seed draws ([`schedule::for_run`]); with the pods workload,
    /// some aimed at the masters whose scheduler or controller manager leads.
    pub fn schedule(&self) -> Vec<PlannedFault> {
        let length = std::time::Duration::from_millis(self.length_ms);
        let mut faults = schedule::for_run(self.seed, length, &self.faults, self.masters);
        if self.pods {
            schedule::aim_at_components(&mut faults, self.seed);
        }
        faults
    }
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
    /// Members that ended without being told to.
    pub crashes: Vec<Crash>,
    /// What went wrong in the run itself (a workload that failed, a member that could not
    /// be restarted): each fails it.
    pub incidents: Vec<String>,
    /// When the workload stopped, from the start of the run.
    pub ended_ms: u64,
    pub operations: Operations,
    /// Operations answered in each [`BUCKET_MS`] of the run ([`crate::timeline`]).
    #[serde(default)]
    pub answered_per_bucket: Vec<u32>,
    pub checks: Vec<Check>,
    pub verdict: Verdict,
    /// How soon writes were answered again after each kind of fault (a figure, no check).
    #[serde(default)]
    pub recovery: Vec<Recovery>,
    /// The same, fault by fault (as [`Report::injected`]): milliseconds from the fault to
    /// the first write asked after it and answered; `None`: none before the next.
    #[serde(default)]
    pub recovered_ms: Vec<Option<u64>>,
}

/// What the watchers saw, against the store's record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchOutcome {
    pub watchers: usize,
    pub events: usize,
    pub violations: Vec<watch::Violation>,
    /// Watchers that never reached the last write, or were lost: each fails the check.
    pub fell_short: Vec<String>,
}

/// What a run observed, for [`Report::new`].
pub struct Observed<'a> {
    pub injected: Vec<Injected>,
    pub crashes: Vec<Crash>,
    pub incidents: Vec<String>,
    pub ended_ms: u64,
    /// Times in nanoseconds from the start of the run.
    pub history: &'a [Operation],
    pub linearizability: &'a linear::Outcome,
    /// The watchers against the store's record; or why they could not be checked.
    pub watches: Result<WatchOutcome, String>,
    /// The writes' violations against the store's record, with how many writes there
    /// were; or why it could not be checked.
    pub once: Result<(usize, Vec<once::Violation>), String>,
    /// The serializable reads' violations against the store's record, with how many reads
    /// there were; or why they could not be checked.
    pub serializable: Result<(usize, Vec<serializable::Violation>), String>,
    /// Each member's hash of the keyspace at one revision, after every member was killed
    /// at once and restarted; or why they could not be had.
    pub replicas: Result<Vec<MemberHash>, String>,
    /// With the objects workload: its history's linearizability; or why it could not be
    /// checked.
    pub objects: Option<Result<ObjectsOutcome, String>>,
    /// With the pods workload: the Kubernetes invariants over the store's record of the
    /// objects, and what the workload asked; or why they could not be checked.
    pub kubernetes: Option<Result<KubeOutcome, String>>,
}

/// What the objects workload did, and its linearizability.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectsOutcome {
    pub operations: usize,
    pub answered: usize,
    pub swaps_won: usize,
    pub linearizability: linear::Outcome,
}

impl ObjectsOutcome {
    /// `history`'s counts, and its linearizability within `budget`.
    pub fn judge(history: &[Operation], budget: std::time::Duration) -> Self {
        let counted = count(history);
        Self {
            operations: counted.total,
            answered: counted.answered,
            swaps_won: counted.swaps_won,
            linearizability: linear::check(history, budget),
        }
    }
}

/// What the pods workload asked, and the Kubernetes invariants' judgement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeOutcome {
    pub judged: kube::Judged,
    /// Changes asked of the objects, and how many were done.
    pub asked: usize,
    pub done: usize,
}

impl Report {
    /// The report of a finished run: every check, and the verdict they give.
    pub fn new(plan: Plan, schedule: Vec<PlannedFault>, observed: Observed<'_>) -> Self {
        let operations = count(observed.history);
        let answered_per_bucket = buckets(observed.history, observed.ended_ms);
        let mut checks = vec![
            progress(&operations, &observed),
            faults(&plan, &schedule, &observed.injected),
            members(&observed),
            linearizable("linearizability", observed.linearizability),
            watches(&observed.watches),
            at_most_once(&observed.once),
            serializable_reads(&observed.serializable),
            durable(&observed.replicas),
        ];
        checks.extend(observed.objects.as_ref().map(objects));
        checks.extend(observed.kubernetes.as_ref().map(kubernetes));
        let verdict = verdict(&checks);
        let recovered_ms =
            recovery::per_fault(&observed.injected, observed.history, observed.ended_ms);
        let recovery = recovery::grouped(&observed.injected, recovered_ms.iter().copied());
        Self {
            plan,
            schedule,
            injected: observed.injected,
            crashes: observed.crashes,
            incidents: observed.incidents,
            ended_ms: observed.ended_ms,
            operations,
            answered_per_bucket,
            checks,
            verdict,
            recovery,
            recovered_ms,
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

/// The width of one bucket of [`Report::answered_per_bucket`], in milliseconds.
pub const BUCKET_MS: u64 = 250;

/// Answers per [`BUCKET_MS`] from the start to `ended_ms`.
fn buckets(history: &[Operation], ended_ms: u64) -> Vec<u32> {
    let width = BUCKET_MS;
    let mut counts = vec![0u32; (ended_ms / width + 1) as usize];
    for completed in history.iter().filter_map(|op| op.completed) {
        let bucket = (completed / 1_000_000 / width) as usize;
        if let Some(count) = counts.get_mut(bucket) {
            *count += 1;
        }
    }
    counts
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
            "{:<8} {:<23} {}\n",
            format!("{:?}", check.verdict).to_uppercase(),
            check.name,
            check.detail
        ));
    }
    for line in recovery::lines(&report.recovery) {
        text.push_str(&format!("{:<8} {:<23} {line}\n", "", "recovery"));
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
