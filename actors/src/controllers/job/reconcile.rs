//! The Job controller's decision (Kubernetes' `syncJob`, `manageJob` and
//! `trackJobStatusAndRemoveFinalizers`), pure: a Job, its pods, whether its expectations
//! allow acting, and `now` in; the pods to create and delete, the finalizers to release, the
//! status to write, whether the Job's TTL has run out, and when to look again, out.
//!
//! ```text
//!  pods ─ count ends once (tracking finalizer) ─► succeeded / failed / completed indexes
//!   finished Job: release finalizers, delete leftovers, TTL ─► delete the Job
//!   suspend ─► delete active pods
//!   failed > backoffLimit, OnFailure restarts, activeDeadline passed ─► FailureTarget,
//!     then Failed once no pod runs and every end is counted
//!   succeeded reaches completions (or a work queue drains) ─► SuccessCriteriaMet, then
//!     Complete likewise
//!   otherwise: active vs parallelism ─► delete extras │ create (after the failure backoff)
//! ```
//!
//! Each pod's end is counted once, through the tracking finalizer (`tracking.rs`).
//!
//! A finished Job (Complete or Failed) is frozen: ends seen after it are not counted.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::backoff::{failure_backoff, past_backoff_limit_on_failure};
use super::template::{completion_index, is_tracked, new_pod};
use super::tracking::{len_of, to_i32, Tally};
use crate::controllers::replicaset::rank::deletion_order;
use crate::pods::cached::Pod;
use crate::pods::{controller_of, is_active, is_ready};

/// `spec.backoffLimit` when unset.
pub const DEFAULT_BACKOFF_LIMIT: i32 = 6;
/// At most this many pods are created or deleted in one sync (Kubernetes'
/// `MaxPodCreateDeletePerSync`).
pub const MAX_POD_CREATE_DELETE_PER_SYNC: usize = 500;
/// A Job the controller refuses to run (the API server's validation would have refused it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidJob {
    #[error("restartPolicy {policy:?} is not allowed in a Job's pods: use Never or OnFailure")]
    RestartPolicy { policy: String },
    #[error("completionMode {mode:?} is unknown: use NonIndexed or Indexed")]
    CompletionMode { mode: String },
    #[error("completionMode Indexed needs spec.completions")]
    IndexedWithoutCompletions,
}

/// A pod to create; `index` is its completion index in an Indexed Job.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPod {
    pub index: Option<u32>,
    pub pod: v1::Pod,
}

/// What the controller does for one Job.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Created in slow-start batches (`replicaset::reconcile::slow_start_batches`).
    pub create: Vec<NewPod>,
    pub delete: Vec<Arc<Pod>>,
    /// Pods whose end the stored status already holds: their tracking finalizer goes.
    pub remove_finalizers: Vec<Arc<Pod>>,
    /// The status to write (with the Job's resourceVersion) when `status_changed`.
    pub status: JobStatus,
    pub status_changed: bool,
    /// The Job finished more than `ttlSecondsAfterFinished` ago: delete it (in the
    /// background, so its pods go too).
    pub delete_job: bool,
    /// Look again then: the failure backoff, the active deadline, or the TTL runs out.
    pub requeue_after: Option<Duration>,
    /// The Job cannot run; say so (an event) and do nothing else.
    pub invalid: Option<InvalidJob>,
}

impl Plan {
    fn requeue(&mut self, after: Duration) {
        self.requeue_after = Some(self.requeue_after.map_or(after, |d| d.min(after)));
    }
}

/// `pods`: the pods the Job controls (others are skipped). `may_act`: its expectations are
/// satisfied, so the cache shows its earlier creations and deletions.
pub fn reconcile(job: &Job, pods: &[Arc<Pod>], may_act: bool, now: jiff::Timestamp) -> Plan {
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    let pods: Vec<Arc<Pod>> = pods
        .iter()
        .filter(|p| controller_of(&p.metadata).is_some_and(|o| o.uid == uid))
        .cloned()
        .collect();
    let spec = job.spec.clone().unwrap_or_default();
    let old = job.status.clone().unwrap_or_default();
    let mut plan = Plan::default();
    let finished_at = finished_at(&old);
    let frozen = finished_at.is_some() || job.metadata.deletion_timestamp.is_some();
    let mut status = old.clone();
    let mode = match check(&spec) {
        Ok(mode) => mode,
        Err(invalid) => {
            plan.invalid = Some(invalid);
            plan.status = status;
            return plan;
        }
    };
    let tally = Tally::count(&old, &pods, mode.indexed_completions(), !frozen);
    tally.write(&mut status, mode.is_indexed());
    if frozen {
        plan.remove_finalizers = pods.iter().filter(|p| is_tracked(p)).cloned().collect();
        plan.delete = pods.iter().filter(|p| is_active(p)).cloned().collect();
        if let (Some(at), Some(ttl)) = (finished_at, spec.ttl_seconds_after_finished) {
            let expires = at.as_second() + i64::from(ttl.max(0));
            match u64::try_from(expires - now.as_second()) {
                Ok(left) if left > 0 => plan.requeue(Duration::from_secs(left)),
                _ => plan.delete_job = true,
            }
        }
        return finish(plan, status, &old);
    }
    plan.remove_finalizers = tally.release.clone();
    let active: Vec<Arc<Pod>> = pods.iter().filter(|p| is_active(p)).cloned().collect();

    if spec.suspend == Some(true) {
        set_condition(
            &mut status,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            now,
        );
        status.start_time = None;
        plan.delete = active;
        return finish_active(plan, status, &old, &pods);
    }
    if condition_is(&old, "Suspended", "True") {
        set_condition(
            &mut status,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            now,
        );
        status.start_time = None;
    }
    let started = status.start_time.get_or_insert(Time(now)).0;

    let backoff_limit = spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT);
    let on_failure = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    let failure = if let Some(target) = failure_target(&old) {
        // Decided already: it waits for its pods' ends to be counted.
        Some(target)
    } else if tally.failed > i64::from(backoff_limit)
        || (on_failure && past_backoff_limit_on_failure(&active, backoff_limit))
    {
        Some((
            "BackoffLimitExceeded".to_string(),
            "Job has reached the specified backoff limit".to_string(),
        ))
    } else if let Some(deadline) = spec.active_deadline_seconds {
        let left = deadline - (now.as_second() - started.as_second());
        match u64::try_from(left) {
            Ok(left) if left > 0 => {
                plan.requeue(Duration::from_secs(left));
                None
            }
            _ => Some((
                "DeadlineExceeded".to_string(),
                "Job was active longer than specified deadline".to_string(),
            )),
        }
    } else {
        None
    };
    // The final condition waits until no pod runs and every end is counted (Kubernetes'
    // FailureTarget / SuccessCriteriaMet first, then Failed / Complete).
    let settled = active.is_empty() && !tally.has_uncounted();
    if let Some((reason, message)) = failure {
        set_condition(&mut status, "FailureTarget", "True", &reason, &message, now);
        if settled {
            set_condition(&mut status, "Failed", "True", &reason, &message, now);
            plan.requeue_after = ttl(&spec);
        }
        plan.delete = active;
        return finish_active(plan, status, &old, &pods);
    }

    let succeeded = tally.succeeded(mode.is_indexed());
    let complete = condition_is(&old, "SuccessCriteriaMet", "True")
        || match spec.completions {
            None => succeeded > 0 && active.is_empty(),
            Some(completions) => succeeded >= i64::from(completions),
        };
    if complete {
        set_condition(
            &mut status,
            "SuccessCriteriaMet",
            "True",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
            now,
        );
        if settled {
            set_condition(&mut status, "Complete", "True", "", "", now);
            status.completion_time = Some(Time(now));
            plan.requeue_after = ttl(&spec);
        }
        plan.delete = active;
        return finish_active(plan, status, &old, &pods);
    }

    if may_act {
        manage(&mut plan, job, &spec, &mode, &tally, &pods, &active, now);
    }
    finish_active(plan, status, &old, &pods)
}

/// How pods map to completions.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    NonIndexed,
    Indexed { completions: u32 },
}

impl Mode {
    fn indexed_completions(&self) -> Option<u32> {
        match self {
            Mode::NonIndexed => None,
            Mode::Indexed { completions } => Some(*completions),
        }
    }

    fn is_indexed(&self) -> bool {
        self.indexed_completions().is_some()
    }
}

fn check(spec: &k8s_openapi::api::batch::v1::JobSpec) -> Result<Mode, InvalidJob> {
    let policy = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone());
    match policy.as_deref() {
        Some("Never" | "OnFailure") => {}
        other => {
            let policy = other.unwrap_or("Always (the default)").to_string();
            return Err(InvalidJob::RestartPolicy { policy });
        }
    }
    match spec.completion_mode.as_deref() {
        None | Some("NonIndexed") => Ok(Mode::NonIndexed),
        Some("Indexed") => match spec.completions {
            Some(c) => Ok(Mode::Indexed {
                completions: u32::try_from(c).unwrap_or(0),
            }),
            None => Err(InvalidJob::IndexedWithoutCompletions),
        },
        Some(mode) => Err(InvalidJob::CompletionMode {
            mode: mode.to_string(),
        }),
    }
}

/// Creates up to parallelism (and the completions left), deletes extras and duplicates.
#[allow(clippy::too_many_arguments)]
fn manage(
    plan: &mut Plan,
    job: &Job,
    spec: &k8s_openapi::api::batch::v1::JobSpec,
    mode: &Mode,
    tally: &Tally,
    pods: &[Arc<Pod>],
    active: &[Arc<Pod>],
    now: jiff::Timestamp,
) {
    let parallelism = i64::from(spec.parallelism.unwrap_or(1).max(0));
    let succeeded = tally.succeeded(mode.is_indexed());
    let running = len_of(active);
    let want = match spec.completions {
        None if succeeded > 0 => running,
        None => parallelism,
        Some(completions) => (i64::from(completions) - succeeded).clamp(0, parallelism),
    };
    let mut keep: Vec<Arc<Pod>> = active.to_vec();
    if let Mode::Indexed { completions } = mode {
        // Pods of a finished index, of no valid index, or a second pod of an index go first.
        let mut seen = BTreeSet::new();
        let (mut valid, mut extra) = (Vec::new(), Vec::new());
        for pod in deletion_order(active).into_iter().rev() {
            match completion_index(&pod) {
                Some(i)
                    if i < *completions
                        && !tally.completed_indexes.contains(&i)
                        && seen.insert(i) =>
                {
                    valid.push(pod)
                }
                _ => extra.push(pod),
            }
        }
        plan.delete.extend(extra);
        keep = valid;
    }
    let keep_count = len_of(&keep);
    if keep_count > want {
        let surplus = usize::try_from(keep_count - want).unwrap_or(0);
        plan.delete
            .extend(deletion_order(&keep).into_iter().take(surplus));
    }
    plan.delete.truncate(MAX_POD_CREATE_DELETE_PER_SYNC);
    if keep_count >= want {
        return;
    }
    if let Some(wait) = failure_backoff(pods, now) {
        plan.requeue(wait);
        return;
    }
    let missing = usize::try_from(want - keep_count).unwrap_or(0);
    let missing = missing.min(MAX_POD_CREATE_DELETE_PER_SYNC);
    plan.create = match mode {
        Mode::NonIndexed => (0..missing).map(|_| new(job, None)).collect(),
        Mode::Indexed { completions } => {
            let taken: BTreeSet<u32> = keep.iter().filter_map(|p| completion_index(p)).collect();
            (0..*completions)
                .filter(|i| !taken.contains(i) && !tally.completed_indexes.contains(i))
                .take(missing)
                .map(|i| new(job, Some(i)))
                .collect()
        }
    };
}

fn new(job: &Job, index: Option<u32>) -> NewPod {
    NewPod {
        index,
        pod: new_pod(job, index),
    }
}

/// When the Job finished (its Complete or Failed condition), if it did.
fn finished_at(status: &JobStatus) -> Option<jiff::Timestamp> {
    let conditions = status.conditions.iter().flatten();
    let done = conditions
        .filter(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .find_map(|c| c.last_transition_time.as_ref().map(|t| t.0));
    let finished =
        condition_is(status, "Complete", "True") || condition_is(status, "Failed", "True");
    done.or_else(|| status.completion_time.as_ref().map(|t| t.0))
        .or_else(|| finished.then_some(jiff::Timestamp::UNIX_EPOCH))
}

fn ttl(spec: &k8s_openapi::api::batch::v1::JobSpec) -> Option<Duration> {
    let ttl = spec.ttl_seconds_after_finished?;
    Some(Duration::from_secs(u64::try_from(ttl).unwrap_or(0)))
}

/// The reason and message of a failure already decided (a `FailureTarget` condition).
fn failure_target(status: &JobStatus) -> Option<(String, String)> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "FailureTarget" && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

fn condition_is(status: &JobStatus, type_: &str, value: &str) -> bool {
    status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == type_ && c.status == value)
}

/// Sets a condition; its transition time moves only when its status changes, and one
/// already so (same status and reason) is left alone, so a steady Job writes no status.
fn set_condition(
    status: &mut JobStatus,
    type_: &str,
    value: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let text = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
    let existing = conditions.iter_mut().find(|c| c.type_ == type_);
    if let Some(c) = &existing {
        if c.status == value && c.reason == text(reason) {
            return;
        }
    }
    let transition = match &existing {
        Some(c) if c.status == value => c.last_transition_time.clone(),
        _ => Some(Time(now)),
    };
    let condition = JobCondition {
        type_: type_.to_string(),
        status: value.to_string(),
        reason: text(reason),
        message: text(message),
        last_probe_time: Some(Time(now)),
        last_transition_time: transition,
    };
    match existing {
        Some(c) => *c = condition,
        None => conditions.push(condition),
    }
}

/// Counts the active pods that stay (not being deleted by this plan).
fn finish_active(plan: Plan, mut status: JobStatus, old: &JobStatus, pods: &[Arc<Pod>]) -> Plan {
    let deleted: BTreeSet<*const Pod> = plan.delete.iter().map(Arc::as_ptr).collect();
    let staying: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|p| is_active(p) && !deleted.contains(&Arc::as_ptr(p)))
        .collect();
    status.active = Some(to_i32(len_of(&staying)));
    status.ready = Some(to_i32(len_of(
        &staying
            .into_iter()
            .filter(|p| is_ready(p))
            .collect::<Vec<_>>(),
    )));
    finish(plan, status, old)
}

fn finish(mut plan: Plan, status: JobStatus, old: &JobStatus) -> Plan {
    plan.status_changed = status != *old;
    plan.status = status;
    plan
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
