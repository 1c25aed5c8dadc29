//! When a Job may replace failed pods, and when failures are too many: Kubernetes'
//! pod-failure backoff and its `pastBackoffLimitOnFailure`. Pure; `now` from the caller.

use std::sync::Arc;
use std::time::Duration;

use super::tracking::ended;
use crate::pods::cached::Pod;
use crate::pods::{init_restarts, restarts};

/// The wait before replacing the first failed pod; it doubles with every failure since the
/// last success, up to [`MAX_POD_FAILURE_BACKOFF`].
pub const POD_FAILURE_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(360);

/// Kubernetes' `pastBackoffLimitOnFailure`: with restartPolicy OnFailure, container restarts
/// of active pods count as failures.
pub fn past_backoff_limit_on_failure(active: &[Arc<Pod>], backoff_limit: i32) -> bool {
    let total: i64 = active
        .iter()
        .map(|p| i64::from(restarts(p)) + i64::from(init_restarts(p)))
        .sum();
    match backoff_limit {
        0 => total > 0,
        limit => total >= i64::from(limit),
    }
}

/// Kubernetes' pod-failure backoff: 10 s after the last failure, doubling with each failure
/// since the last success, capped at 6 minutes. Counted from the pods still present: a failed
/// pod deleted early shortens the wait.
pub fn failure_backoff(pods: &[Arc<Pod>], now: jiff::Timestamp) -> Option<Duration> {
    let last_success = pods
        .iter()
        .filter(|p| ended(p) == Some(true))
        .map(|p| finished_time(p))
        .max();
    let failures: Vec<i64> = pods
        .iter()
        .filter(|p| ended(p) == Some(false))
        .map(|p| finished_time(p))
        .filter(|at| last_success.is_none_or(|s| *at > s))
        .collect();
    let last_failure = *failures.iter().max()?;
    let doublings = u32::try_from(failures.len() - 1)
        .unwrap_or(u32::MAX)
        .min(16);
    let delay = (POD_FAILURE_BACKOFF * 2u32.pow(doublings)).min(MAX_POD_FAILURE_BACKOFF);
    let due = last_failure + i64::try_from(delay.as_secs()).unwrap_or(i64::MAX);
    u64::try_from(due - now.as_second())
        .ok()
        .filter(|left| *left > 0)
        .map(Duration::from_secs)
}

/// When the pod ended, in seconds: its last container's finish, else its deletion, else
/// its creation.
fn finished_time(pod: &Pod) -> i64 {
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref());
    let finished = statuses
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0.as_second())
        .max();
    let meta = &pod.metadata;
    finished
        .or_else(|| meta.deletion_timestamp.as_ref().map(|t| t.0.as_second()))
        .or_else(|| meta.creation_timestamp.as_ref().map(|t| t.0.as_second()))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    fn failed_at(finished: &[&str]) -> Vec<Arc<Pod>> {
        let failed = finished.iter().enumerate();
        failed
            .map(|(i, at)| job_pod(&format!("f{i}"), "Failed", at))
            .collect()
    }

    #[test]
    fn replacements_wait_out_a_doubling_failure_backoff() {
        // (failed pods finished at, expected wait)
        let cases: &[(&[&str], Option<u64>)] = &[
            (&[], None),
            (&["2024-01-01T00:59:55Z"], Some(5)),
            (&["2024-01-01T00:59:00Z", "2024-01-01T00:59:55Z"], Some(15)),
            (&["2024-01-01T00:59:50Z"], None),
            (&["2024-01-01T00:50:00Z"; 9], None),
            (&["2024-01-01T00:58:00Z"; 9], Some(240)),
        ];
        for (finished, wait) in cases {
            let wait_secs = failure_backoff(&failed_at(finished), now()).map(|d| d.as_secs());
            assert_eq!(wait_secs, *wait, "{finished:?}");
        }
    }

    #[test]
    fn a_success_resets_the_failure_backoff() {
        let mut pods = failed_at(&["2024-01-01T00:59:55Z"]);
        assert!(failure_backoff(&pods, now()).is_some());
        pods.push(job_pod("s", "Succeeded", "2024-01-01T00:59:58Z"));
        assert_eq!(failure_backoff(&pods, now()), None);
    }

    #[test]
    fn container_restarts_reach_the_backoff_limit() {
        let pods = [restarting("r", 2), job_pod("calm", "Running", T0)];
        let cases = [(0, true), (1, true), (2, true), (3, false)];
        for (limit, past) in cases {
            assert_eq!(
                past_backoff_limit_on_failure(&pods, limit),
                past,
                "limit {limit}"
            );
        }
        let calm = [job_pod("calm", "Running", T0)];
        assert!(!past_backoff_limit_on_failure(&calm, 0));
    }
}
