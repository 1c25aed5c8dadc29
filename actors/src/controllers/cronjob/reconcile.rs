//! The CronJob controller's decision (Kubernetes' `syncCronJob`), pure: a CronJob, the Jobs
//! of its namespace, and `now` in; the Job to create, the Jobs to delete, the status to
//! write, events to record, and when to look again (the next scheduled time), out.
//!
//! ```text
//!  its Jobs ─► status.active (finished ones out, missing ones out, unknown running ones in)
//!          └─► lastSuccessfulTime; finished Jobs beyond the history limits ─► delete
//!  schedule + timeZone (bad: a warning, nothing else) │ suspend ─► nothing more
//!  most recent unmet time since lastScheduleTime (or creation), within startingDeadline
//!   └─ too late ─► MissSchedule │ done already │ Forbid + active ─► wait
//!      Replace ─► delete the active Jobs; create <name>-<minutes since epoch>
//!  requeue: the next scheduled time (+100 ms)
//! ```
//!
//! Only the most recent missed time is ever started (Kubernetes does the same); more than
//! 100 missed times are reported as `TooManyMissedTimes`.
//!
//! The actor deletes (Replace's active Jobs and old history, with background propagation)
//! before it creates; after the create it appends [`job_reference`] of the created Job to
//! `status.active`, then writes the status. A Job found in the cache but not in
//! `status.active` (a crash between the two) is added back with an `UnexpectedJob` warning;
//! one in `status.active` but gone from the cache is dropped (`MissingJob`; Kubernetes
//! double-checks with a GET, so a cache that lags can, rarely, let Forbid start a second
//! Job, a risk Kubernetes documents too).

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

use super::history::{
    beyond_limits, is_finished, is_succeeded, job_reference, DEFAULT_FAILED_JOBS_HISTORY_LIMIT,
    DEFAULT_SUCCESSFUL_JOBS_HISTORY_LIMIT,
};
use super::schedule::Schedule;
use crate::pods::controller_of;

/// The annotation a created Job carries: its scheduled time, RFC 3339 in the CronJob's zone.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed times than this are reported (and only the latest is considered).
pub const TOO_MANY_MISSED: i64 = 100;
/// Added to the requeue so the next sync lands after the scheduled time, not just before.
pub const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// An event for the actor to record on the CronJob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub type_: EventType,
    pub reason: &'static str,
    pub message: String,
}

/// What the controller does for one CronJob.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The Job to create, after the deletions.
    pub create: Option<Job>,
    /// Jobs to delete (background propagation): Replace's active ones, then old history.
    pub delete: Vec<Arc<Job>>,
    /// The status to write when `status_changed` (or when a Job was created; see the map).
    pub status: CronJobStatus,
    pub status_changed: bool,
    pub events: Vec<Event>,
    /// Look again then: the next scheduled time. `None`: only a change to the CronJob or
    /// its Jobs can make it act (suspended, bad schedule, a schedule that never fires).
    pub requeue_after: Option<Duration>,
}

impl Plan {
    fn event(&mut self, type_: EventType, reason: &'static str, message: String) {
        self.events.push(Event {
            type_,
            reason,
            message,
        });
    }
}

/// `jobs`: the Jobs of the CronJob's namespace (those it does not control are skipped).
pub fn reconcile(cron_job: &CronJob, jobs: &[Arc<Job>], now: Timestamp) -> Plan {
    let uid = cron_job.metadata.uid.as_deref().unwrap_or_default();
    let owned: Vec<Arc<Job>> = jobs
        .iter()
        .filter(|j| controller_of(&j.metadata).is_some_and(|o| o.uid == uid))
        .cloned()
        .collect();
    let spec = cron_job.spec.clone().unwrap_or_default();
    let old = cron_job.status.clone().unwrap_or_default();
    let mut plan = Plan {
        status: old.clone(),
        ..Plan::default()
    };
    track_active(&mut plan, &owned);
    let successful = spec.successful_jobs_history_limit;
    let failed = spec.failed_jobs_history_limit;
    let history = beyond_limits(
        &owned,
        successful.unwrap_or(DEFAULT_SUCCESSFUL_JOBS_HISTORY_LIMIT),
        failed.unwrap_or(DEFAULT_FAILED_JOBS_HISTORY_LIMIT),
    );
    if cron_job.metadata.deletion_timestamp.is_none() && spec.suspend != Some(true) {
        schedule_next(&mut plan, cron_job, &owned, now);
    }
    for job in history {
        if !plan.delete.iter().any(|d| Arc::ptr_eq(d, &job)) {
            plan.delete.push(job);
        }
    }
    plan.status_changed = plan.status != old;
    plan
}

/// `status.active` and `lastSuccessfulTime` from the Jobs themselves.
fn track_active(plan: &mut Plan, owned: &[Arc<Job>]) {
    let status = &mut plan.status;
    let active = status.active.get_or_insert_with(Vec::new);
    let mut events = Vec::new();
    for job in owned {
        let job_uid = job.metadata.uid.clone();
        let listed = active.iter().position(|r| r.uid == job_uid);
        let name = job.metadata.name.clone().unwrap_or_default();
        match (listed, is_finished(job)) {
            (None, false) => {
                active.push(job_reference(job));
                let message =
                    format!("Saw a job that the controller did not create or forgot: {name}");
                events.push((EventType::Warning, "UnexpectedJob", message));
            }
            (Some(i), true) => {
                active.remove(i);
                let message = format!("Saw completed job: {name}");
                events.push((EventType::Normal, "SawCompletedJob", message));
            }
            _ => {}
        }
        if is_succeeded(job) {
            let completed = job.status.as_ref().and_then(|s| s.completion_time.clone());
            let later = |c: &Time| {
                status
                    .last_successful_time
                    .as_ref()
                    .is_none_or(|l| c.0 > l.0)
            };
            if let Some(completed) = completed.filter(later) {
                status.last_successful_time = Some(completed);
            }
        }
    }
    let status = &mut plan.status;
    let active = status.active.get_or_insert_with(Vec::new);
    active.retain(|r| {
        let present = owned.iter().any(|j| j.metadata.uid == r.uid);
        if !present {
            let name = r.name.clone().unwrap_or_default();
            events.push((
                EventType::Normal,
                "MissingJob",
                format!("Active job went missing: {name}"),
            ));
        }
        present
    });
    if active.is_empty() {
        plan.status.active = None;
    }
    for (type_, reason, message) in events {
        plan.event(type_, reason, message);
    }
}

/// Starts the most recent unmet scheduled time, if it may, and sets the requeue.
fn schedule_next(plan: &mut Plan, cron_job: &CronJob, owned: &[Arc<Job>], now: Timestamp) {
    let spec = cron_job.spec.clone().unwrap_or_default();
    let schedule = match Schedule::parse(&spec.schedule, spec.time_zone.as_deref()) {
        Ok(schedule) => schedule,
        Err(error) => {
            let reason = match error {
                super::schedule::ScheduleError::UnknownTimeZone { .. } => "UnknownTimeZone",
                _ => "UnparseableSchedule",
            };
            plan.event(EventType::Warning, reason, error.to_string());
            return;
        }
    };
    plan.requeue_after = schedule
        .next_after(now)
        .map(|next| duration_between(now, next) + NEXT_SCHEDULE_DELTA);
    let created = cron_job.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let last = plan.status.last_schedule_time.as_ref().map(|t| t.0);
    let mut earliest = last.or(created).unwrap_or(now);
    if let Some(deadline) = spec.starting_deadline_seconds {
        let window_start = now - jiff::SignedDuration::from_secs(deadline);
        earliest = earliest.max(window_start);
    }
    let (scheduled, missed) = most_recent_schedule(&schedule, earliest, now);
    if missed > TOO_MANY_MISSED {
        let message = "too many missed start times. \
            Set or decrease .spec.startingDeadlineSeconds or check clock skew";
        plan.event(
            EventType::Warning,
            "TooManyMissedTimes",
            message.to_string(),
        );
    }
    let Some(scheduled) = scheduled else { return };
    if let Some(deadline) = spec.starting_deadline_seconds {
        if scheduled + jiff::SignedDuration::from_secs(deadline) < now {
            let message = format!("Missed scheduled time to start a job: {scheduled}");
            plan.event(EventType::Warning, "MissSchedule", message);
            return;
        }
    }
    let name = job_name(cron_job, scheduled);
    let active = plan.status.active.clone().unwrap_or_default();
    if active
        .iter()
        .any(|r| r.name.as_deref() == Some(name.as_str()))
        || last == Some(scheduled)
    {
        return;
    }
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            let message = "Not starting job because prior execution is running \
                and concurrency policy is Forbid";
            plan.event(EventType::Normal, "JobAlreadyActive", message.to_string());
            return;
        }
        Some("Replace") => {
            for reference in &active {
                let job = owned.iter().find(|j| j.metadata.uid == reference.uid);
                plan.delete.extend(job.cloned());
            }
            plan.status.active = None;
        }
        _ => {}
    }
    plan.create = Some(new_job(cron_job, &schedule, scheduled));
    plan.status.last_schedule_time = Some(Time(scheduled));
}

/// Kubernetes' `mostRecentScheduleTime`: the latest scheduled time in (`earliest`, `now`],
/// and roughly how many were missed. It steps by the interval between the first two times
/// instead of walking every one, so a schedule stuck for years costs little.
fn most_recent_schedule(
    schedule: &Schedule,
    earliest: Timestamp,
    now: Timestamp,
) -> (Option<Timestamp>, i64) {
    let Some(t1) = schedule.next_after(earliest).filter(|t| *t <= now) else {
        return (None, 0);
    };
    let Some(t2) = schedule.next_after(t1).filter(|t| *t <= now) else {
        return (Some(t1), 1);
    };
    let interval = (t2.as_second() - t1.as_second()).max(1);
    let missed = (now.as_second() - t1.as_second()) / interval + 1;
    let skip = jiff::SignedDuration::from_secs((missed - 2).max(0) * interval);
    let mut t = (t1 + skip - jiff::SignedDuration::from_secs(1)).max(earliest);
    let mut most_recent = None;
    while let Some(next) = schedule.next_after(t).filter(|n| *n <= now) {
        most_recent = Some(next);
        t = next;
    }
    (most_recent, missed)
}

/// `<cronjob>-<scheduled time in minutes since the epoch>`, as Kubernetes names them.
pub fn job_name(cron_job: &CronJob, scheduled: Timestamp) -> String {
    let name = cron_job.metadata.name.as_deref().unwrap_or_default();
    format!("{name}-{}", scheduled.as_second().div_euclid(60))
}

/// The Job for `scheduled`, from the CronJob's template.
pub fn new_job(cron_job: &CronJob, schedule: &Schedule, scheduled: Timestamp) -> Job {
    let spec = cron_job.spec.clone().unwrap_or_default();
    let template = spec.job_template;
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.to_string(), schedule.rfc3339(scheduled));
    let owner = OwnerReference {
        api_version: "batch/v1".into(),
        kind: "CronJob".into(),
        name: cron_job.metadata.name.clone().unwrap_or_default(),
        uid: cron_job.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(cron_job, scheduled)),
            namespace: cron_job.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

fn duration_between(from: Timestamp, to: Timestamp) -> Duration {
    let span = to.as_duration() - from.as_duration();
    Duration::try_from(span).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// A CronJob created at midnight, `spec` merged over `* * * * *`.
    fn cron_job(spec: serde_json::Value, status: serde_json::Value) -> CronJob {
        let mut base = json!({ "schedule": "* * * * *", "jobTemplate": {
            "metadata": { "labels": { "app": "report" } },
            "spec": { "template": { "spec": { "restartPolicy": "Never", "containers": [] } } } } });
        for (k, v) in spec.as_object().unwrap() {
            base[k] = v.clone();
        }
        serde_json::from_value(json!({
            "metadata": { "name": "report", "namespace": "default", "uid": "cj-uid",
                          "creationTimestamp": "2024-01-01T00:00:00Z" },
            "spec": base, "status": status
        }))
        .unwrap()
    }

    /// A Job of the CronJob; `condition`: Complete, Failed, or anything for a running one.
    fn job(name: &str, condition: &str, started: &str) -> Arc<Job> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": { "name": name, "namespace": "default", "uid": format!("uid-{name}"),
                              "ownerReferences": [{ "apiVersion": "batch/v1", "kind": "CronJob",
                                  "name": "report", "uid": "cj-uid", "controller": true }] },
                "status": { "startTime": started, "completionTime": started,
                            "conditions": [{ "type": condition, "status": "True" }] }
            }))
            .unwrap(),
        )
    }

    fn active(jobs: &[&Arc<Job>]) -> serde_json::Value {
        let refs: Vec<_> = jobs.iter().map(|j| job_reference(j)).collect();
        serde_json::to_value(refs).unwrap()
    }

    fn created(plan: &Plan) -> Option<&str> {
        plan.create
            .as_ref()
            .and_then(|j| j.metadata.name.as_deref())
    }

    fn reasons(plan: &Plan) -> Vec<&str> {
        plan.events.iter().map(|e| e.reason).collect()
    }

    fn names(jobs: &[Arc<Job>]) -> Vec<&str> {
        jobs.iter()
            .map(|j| j.metadata.name.as_deref().unwrap())
            .collect()
    }

    #[test]
    fn every_minute_creates_one_job_per_minute_named_by_its_minute() {
        let mut status = json!({});
        let mut names = Vec::new();
        // A sync every 20 s for five minutes, the status carried from plan to plan.
        for tick in 1..=15 {
            let now = at("2024-01-01T00:00:00.5Z") + jiff::SignedDuration::from_secs(20 * tick);
            let plan = reconcile(&cron_job(json!({}), status), &[], now);
            names.extend(created(&plan).map(str::to_string));
            assert_eq!(plan.status_changed, plan.create.is_some(), "tick {tick}");
            let next_minute = 60 - (20 * tick) % 60;
            let expected = Duration::from_millis(u64::try_from(next_minute).unwrap() * 1000 - 400);
            assert_eq!(plan.requeue_after, Some(expected), "tick {tick}");
            status = serde_json::to_value(&plan.status).unwrap();
        }
        // 2024-01-01T00:00:00Z is minute 28401120 since the epoch.
        let expected: Vec<String> = (1..=5)
            .map(|m| format!("report-{}", 28_401_120 + m))
            .collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn the_created_job_carries_its_template_owner_and_scheduled_time() {
        let plan = reconcile(
            &cron_job(json!({}), json!({})),
            &[],
            at("2024-01-01T00:01:05Z"),
        );
        let job = plan.create.unwrap();
        assert_eq!(job.metadata.name.as_deref(), Some("report-28401121"));
        let annotations = job.metadata.annotations.unwrap();
        assert_eq!(annotations[SCHEDULED_TIMESTAMP], "2024-01-01T00:01:00Z");
        assert_eq!(job.metadata.labels.unwrap()["app"], "report");
        let owner = &job.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("CronJob", "cj-uid")
        );
        assert!(job.spec.is_some());
        assert_eq!(
            plan.status.last_schedule_time,
            Some(Time(at("2024-01-01T00:01:00Z")))
        );
        assert!(plan.status_changed);
    }

    #[test]
    fn a_time_zone_schedule_runs_through_the_spring_forward_gap() {
        // New York's 02:30 does not exist on 2024-03-10: the run moves to 03:00 EDT.
        let spec = json!({ "schedule": "30 2 * * *", "timeZone": "America/New_York" });
        let status = json!({ "lastScheduleTime": "2024-03-09T07:30:00Z" });
        let cases = [
            ("2024-03-10T06:59:00Z", None, Some(60)),
            (
                "2024-03-10T07:00:10Z",
                Some("2024-03-10T03:00:00-04:00"),
                Some(84_590),
            ),
        ];
        for (now, scheduled, requeue) in cases {
            let plan = reconcile(&cron_job(spec.clone(), status.clone()), &[], at(now));
            let annotation = plan
                .create
                .as_ref()
                .map(|j| j.metadata.annotations.as_ref().unwrap()[SCHEDULED_TIMESTAMP].clone());
            assert_eq!(annotation.as_deref(), scheduled, "{now}");
            assert_eq!(plan.requeue_after.map(|d| d.as_secs()), requeue, "{now}");
        }
    }

    #[test]
    fn a_missed_window_starts_only_the_latest_time_and_only_within_the_deadline() {
        let status = json!({ "lastScheduleTime": "2024-01-01T00:00:00Z" });
        let hourly = |deadline: Option<i64>| {
            cron_job(
                json!({ "schedule": "0 * * * *", "startingDeadlineSeconds": deadline }),
                status.clone(),
            )
        };
        let cases = [
            // (deadline, now, job created for)
            (None, "2024-01-01T05:30:00Z", Some("2024-01-01T05:00:00Z")),
            (
                Some(600),
                "2024-01-01T05:05:00Z",
                Some("2024-01-01T05:00:00Z"),
            ),
            (Some(600), "2024-01-01T05:30:00Z", None),
            (Some(200), "2024-01-01T05:05:00Z", None),
        ];
        for (deadline, now, scheduled) in cases {
            let plan = reconcile(&hourly(deadline), &[], at(now));
            let expected = scheduled.map(|s| job_name(&hourly(None), at(s)));
            assert_eq!(created(&plan), expected.as_deref(), "{deadline:?} {now}");
            assert!(plan.requeue_after.is_some());
        }
    }

    #[test]
    fn more_than_a_hundred_missed_times_are_reported_and_only_the_latest_starts() {
        let plan = reconcile(
            &cron_job(json!({}), json!({})),
            &[],
            at("2024-01-01T03:00:30Z"),
        );
        assert_eq!(reasons(&plan), ["TooManyMissedTimes"]);
        assert_eq!(
            plan.status.last_schedule_time,
            Some(Time(at("2024-01-01T03:00:00Z")))
        );
        let plan = reconcile(
            &cron_job(json!({}), json!({})),
            &[],
            at("2024-01-01T01:00:30Z"),
        );
        assert!(reasons(&plan).is_empty(), "60 missed");
    }

    #[test]
    fn an_irregular_schedule_finds_its_latest_time_across_a_weekend() {
        // 06:30, 10:30, 14:30 on weekdays; 2024-01-05 is a Friday.
        let schedule = Schedule::parse("30 6-16/4 * * 1-5", None).unwrap();
        let (latest, missed) = most_recent_schedule(
            &schedule,
            at("2024-01-05T11:00:00Z"),
            at("2024-01-08T09:00:00Z"),
        );
        assert_eq!(latest, Some(at("2024-01-08T06:30:00Z")));
        assert!(missed > 1);
        let (none, _) = most_recent_schedule(
            &schedule,
            at("2024-01-06T00:00:00Z"),
            at("2024-01-07T23:00:00Z"),
        );
        assert_eq!(none, None);
    }

    #[test]
    fn concurrency_policies_decide_what_a_running_job_means() {
        let running = job("report-28401120", "Running", "2024-01-01T00:00:00Z");
        let status =
            json!({ "lastScheduleTime": "2024-01-01T00:00:00Z", "active": active(&[&running]) });
        let now = at("2024-01-01T00:01:01Z");
        let cases = [
            // (policy, creates, deletes the running one, events)
            (None, true, false, vec![]),
            (Some("Allow"), true, false, vec![]),
            (Some("Forbid"), false, false, vec!["JobAlreadyActive"]),
            (Some("Replace"), true, true, vec![]),
        ];
        for (policy, creates, replaces, events) in cases {
            let spec = json!({ "concurrencyPolicy": policy });
            let plan = reconcile(
                &cron_job(spec, status.clone()),
                std::slice::from_ref(&running),
                now,
            );
            assert_eq!(plan.create.is_some(), creates, "{policy:?}");
            assert_eq!(!plan.delete.is_empty(), replaces, "{policy:?}");
            assert_eq!(reasons(&plan), events, "{policy:?}");
            let still_active = plan.status.active.iter().flatten().count();
            assert_eq!(still_active, usize::from(!replaces), "{policy:?}");
        }
    }

    #[test]
    fn finished_jobs_beyond_the_history_limits_are_deleted() {
        let jobs: Vec<Arc<Job>> = (1..=5)
            .map(|i| {
                job(
                    &format!("ok-{i}"),
                    "Complete",
                    &format!("2024-01-01T0{i}:00:00Z"),
                )
            })
            .chain((1..=3).map(|i| {
                job(
                    &format!("bad-{i}"),
                    "Failed",
                    &format!("2024-01-01T0{i}:00:00Z"),
                )
            }))
            .collect();
        let status = json!({ "lastScheduleTime": "2024-01-01T06:00:00Z" });
        let now = at("2024-01-01T06:00:30Z");
        let plan = reconcile(&cron_job(json!({}), status.clone()), &jobs, now);
        assert_eq!(
            names(&plan.delete),
            ["ok-1", "ok-2", "bad-1", "bad-2"],
            "defaults 3 and 1"
        );
        assert_eq!(
            plan.status.last_successful_time,
            Some(Time(at("2024-01-01T05:00:00Z")))
        );
        let limits = json!({ "successfulJobsHistoryLimit": 0, "failedJobsHistoryLimit": 5 });
        let plan = reconcile(&cron_job(limits, status), &jobs, now);
        assert_eq!(
            names(&plan.delete),
            ["ok-1", "ok-2", "ok-3", "ok-4", "ok-5"]
        );
    }

    #[test]
    fn the_active_list_follows_the_jobs() {
        let done = job("done", "Complete", "2024-01-01T00:00:00Z");
        let stray = job("stray", "Running", "2024-01-01T00:00:00Z");
        let gone = job("gone", "Running", "2024-01-01T00:00:00Z");
        let status = json!({
            "lastScheduleTime": "2024-01-01T00:01:00Z",
            "active": active(&[&done, &gone]),
        });
        let plan = reconcile(
            &cron_job(json!({}), status),
            &[done, stray],
            at("2024-01-01T00:01:30Z"),
        );
        let listed: Vec<_> = plan
            .status
            .active
            .iter()
            .flatten()
            .map(|r| r.name.as_deref().unwrap())
            .collect();
        assert_eq!(listed, ["stray"]);
        let mut seen = reasons(&plan);
        seen.sort();
        assert_eq!(seen, ["MissingJob", "SawCompletedJob", "UnexpectedJob"]);
        assert!(plan.create.is_none(), "00:01 was already started");
    }

    #[test]
    fn suspended_or_deleted_cron_jobs_start_nothing() {
        let plan = reconcile(
            &cron_job(json!({ "suspend": true }), json!({})),
            &[],
            at("2024-01-01T00:05:00Z"),
        );
        assert!(plan.create.is_none() && plan.requeue_after.is_none());
        let mut deleting = cron_job(json!({}), json!({}));
        deleting.metadata.deletion_timestamp = Some(Time(at("2024-01-01T00:04:00Z")));
        assert!(reconcile(&deleting, &[], at("2024-01-01T00:05:00Z"))
            .create
            .is_none());
    }

    #[test]
    fn a_bad_schedule_or_time_zone_is_a_warning_and_nothing_else() {
        let cases = [
            (
                json!({ "schedule": "CRON_TZ=UTC * * * * *" }),
                "UnparseableSchedule",
            ),
            (json!({ "schedule": "@every 1m" }), "UnparseableSchedule"),
            (json!({ "timeZone": "Nowhere/City" }), "UnknownTimeZone"),
        ];
        for (spec, reason) in cases {
            let plan = reconcile(
                &cron_job(spec.clone(), json!({})),
                &[],
                at("2024-01-01T00:05:00Z"),
            );
            assert_eq!(reasons(&plan), [reason], "{spec}");
            assert!(
                plan.create.is_none() && plan.requeue_after.is_none(),
                "{spec}"
            );
            assert_eq!(plan.events[0].type_, EventType::Warning);
        }
    }

    #[test]
    fn jobs_of_other_controllers_are_ignored() {
        let mut foreign = (*job("other", "Running", "2024-01-01T00:00:00Z")).clone();
        foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "someone-else".into();
        let status = json!({ "lastScheduleTime": "2024-01-01T00:01:00Z" });
        let plan = reconcile(
            &cron_job(json!({}), status),
            &[Arc::new(foreign)],
            at("2024-01-01T00:01:30Z"),
        );
        assert!(plan.events.is_empty() && plan.status.active.is_none());
    }
}
