//! What a CronJob knows of its Jobs: which are finished or succeeded, when they finished,
//! the references its status keeps, and which finished Jobs fall beyond the history limits.
//! Pure.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ObjectReference;

/// `spec.successfulJobsHistoryLimit` when unset.
pub const DEFAULT_SUCCESSFUL_JOBS_HISTORY_LIMIT: i32 = 3;
/// `spec.failedJobsHistoryLimit` when unset.
pub const DEFAULT_FAILED_JOBS_HISTORY_LIMIT: i32 = 1;

fn has_condition(job: &Job, type_: &str) -> bool {
    let status = job.status.as_ref();
    let conditions = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten();
    conditions
        .filter(|c| c.status == "True")
        .any(|c| c.type_ == type_)
}

/// Complete or Failed.
pub fn is_finished(job: &Job) -> bool {
    is_succeeded(job) || has_condition(job, "Failed")
}

pub fn is_succeeded(job: &Job) -> bool {
    has_condition(job, "Complete")
}

/// The reference `status.active` keeps.
pub fn job_reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// The finished Jobs beyond the limits, oldest first (by start time, as Kubernetes'
/// `cleanupFinishedJobs`; Jobs that never started count as newest, ties by name).
pub fn beyond_limits(jobs: &[Arc<Job>], successful_limit: i32, failed_limit: i32) -> Vec<Arc<Job>> {
    let mut doomed = Vec::new();
    for (succeeded, limit) in [(true, successful_limit), (false, failed_limit)] {
        let mut finished: Vec<&Arc<Job>> = jobs
            .iter()
            .filter(|j| is_finished(j) && is_succeeded(j) == succeeded)
            .collect();
        finished.sort_by_key(|j| {
            let started = j.status.as_ref().and_then(|s| s.start_time.as_ref());
            (
                started.is_none(),
                started.map(|t| t.0),
                j.metadata.name.clone(),
            )
        });
        let keep = usize::try_from(limit.max(0)).unwrap_or(0);
        let surplus = finished.len().saturating_sub(keep);
        doomed.extend(finished.into_iter().take(surplus).cloned());
    }
    doomed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, condition: &str, started: Option<&str>) -> Arc<Job> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": { "name": name },
                "status": { "startTime": started,
                            "conditions": [{ "type": condition, "status": "True" }] }
            }))
            .unwrap(),
        )
    }

    fn names(jobs: &[Arc<Job>]) -> Vec<&str> {
        jobs.iter()
            .map(|j| j.metadata.name.as_deref().unwrap())
            .collect()
    }

    #[test]
    fn the_oldest_finished_jobs_beyond_each_limit_go() {
        let jobs = [
            job("ok-3", "Complete", Some("2024-01-01T03:00:00Z")),
            job("ok-1", "Complete", Some("2024-01-01T01:00:00Z")),
            job("ok-never", "Complete", None),
            job("ok-2", "Complete", Some("2024-01-01T02:00:00Z")),
            job("bad-1", "Failed", Some("2024-01-01T01:00:00Z")),
            job("bad-2", "Failed", Some("2024-01-01T02:00:00Z")),
            job("running", "Suspended", Some("2024-01-01T00:00:00Z")),
        ];
        let cases: &[(i32, i32, &[&str])] = &[
            (3, 1, &["ok-1", "bad-1"]),
            (
                0,
                0,
                &["ok-1", "ok-2", "ok-3", "ok-never", "bad-1", "bad-2"],
            ),
            (10, 2, &[]),
        ];
        for (ok, bad, doomed) in cases {
            assert_eq!(
                names(&beyond_limits(&jobs, *ok, *bad)),
                *doomed,
                "limits {ok}/{bad}"
            );
        }
    }
}
