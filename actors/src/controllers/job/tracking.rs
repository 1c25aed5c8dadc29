//! Counting a Job pod's end exactly once, as Kubernetes does with the
//! `batch.kubernetes.io/job-tracking` finalizer every Job pod is created with. Pure.
//!
//! ```text
//!  pod ended, holds the finalizer ─► uid into status.uncountedTerminatedPods (written)
//!  stored as uncounted, still holds it ─► release the finalizer
//!  stored as uncounted, released or gone ─► succeeded / failed += 1, out of uncounted
//! ```
//!
//! A pod deleted right after it ended is so still counted, and never twice. This holds only
//! if the actor writes the status with the Job's `resourceVersion` (a conflict means its
//! cache lagged: requeue). A pod that ended without the finalizer (created before tracking,
//! or released by hand) is not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::batch::v1::{JobStatus, UncountedTerminatedPods};

use super::indexes;
use super::template::{completion_index, is_tracked};
use crate::pods::cached::Pod;
use crate::pods::phase;

/// The ends of the Job's pods, each counted once.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) succeeded: i64,
    pub(super) failed: i64,
    pub(super) uncounted_succeeded: BTreeSet<String>,
    pub(super) uncounted_failed: BTreeSet<String>,
    pub(super) completed_indexes: BTreeSet<u32>,
    /// Stored as uncounted and still holding the finalizer.
    pub(super) release: Vec<Arc<Pod>>,
}

impl Tally {
    pub(super) fn count(
        old: &JobStatus,
        pods: &[Arc<Pod>],
        indexed: Option<u32>,
        add_new: bool,
    ) -> Self {
        let stored = old.uncounted_terminated_pods.clone().unwrap_or_default();
        let by_uid: BTreeMap<&str, &Arc<Pod>> = pods
            .iter()
            .filter_map(|p| Some((p.metadata.uid.as_deref()?, p)))
            .collect();
        let mut tally = Tally {
            succeeded: i64::from(old.succeeded.unwrap_or(0)),
            failed: i64::from(old.failed.unwrap_or(0)),
            completed_indexes: indexes::parse(old.completed_indexes.as_deref().unwrap_or("")),
            ..Tally::default()
        };
        for (uids, succeeded) in [(stored.succeeded, true), (stored.failed, false)] {
            for uid in uids.into_iter().flatten() {
                match by_uid.get(uid.as_str()) {
                    Some(pod) if is_tracked(pod) => {
                        tally.release.push(Arc::clone(pod));
                        tally.uncounted(succeeded).insert(uid);
                    }
                    _ if succeeded => tally.succeeded += 1,
                    _ => tally.failed += 1,
                }
            }
        }
        if add_new {
            for pod in pods.iter().filter(|p| is_tracked(p)) {
                let Some(succeeded) = ended(pod) else {
                    continue;
                };
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                let stored_elsewhere = tally.uncounted(!succeeded).contains(&uid);
                if !stored_elsewhere {
                    tally.uncounted(succeeded).insert(uid);
                }
            }
        }
        if let Some(completions) = indexed {
            let done = pods.iter().filter(|p| ended(p) == Some(true));
            let done = done
                .filter_map(|p| completion_index(p))
                .filter(|i| *i < completions);
            tally.completed_indexes.extend(done);
        }
        tally
    }

    /// Whether some ends are seen but not yet counted (their finalizers still to release).
    pub(super) fn has_uncounted(&self) -> bool {
        !self.uncounted_succeeded.is_empty() || !self.uncounted_failed.is_empty()
    }

    fn uncounted(&mut self, succeeded: bool) -> &mut BTreeSet<String> {
        match succeeded {
            true => &mut self.uncounted_succeeded,
            false => &mut self.uncounted_failed,
        }
    }

    /// Succeeded completions: distinct indexes when Indexed.
    pub(super) fn succeeded(&self, indexed: bool) -> i64 {
        match indexed {
            false => self.succeeded + len(&self.uncounted_succeeded),
            true => len(&self.completed_indexes),
        }
    }

    pub(super) fn write(&self, status: &mut JobStatus, indexed: bool) {
        let list = |set: &BTreeSet<String>| {
            Some(set.iter().cloned().collect::<Vec<_>>()).filter(|l| !l.is_empty())
        };
        status.failed = Some(to_i32(self.failed));
        status.succeeded = Some(to_i32(match indexed {
            false => self.succeeded,
            true => len(&self.completed_indexes),
        }));
        status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
            succeeded: list(&self.uncounted_succeeded),
            failed: list(&self.uncounted_failed),
        });
        if indexed {
            status.completed_indexes = Some(indexes::format(&self.completed_indexes));
        }
    }
}

/// `Some(true)`: succeeded; `Some(false)`: failed, or being deleted before it succeeded (an
/// orphan that may never reach the Failed phase, as Kubernetes counts it).
pub(super) fn ended(pod: &Pod) -> Option<bool> {
    match phase(pod) {
        "Succeeded" => Some(true),
        "Failed" => Some(false),
        _ if pod.metadata.deletion_timestamp.is_some() => Some(false),
        _ => None,
    }
}

pub(super) fn len<T>(set: &BTreeSet<T>) -> i64 {
    i64::try_from(set.len()).unwrap_or(i64::MAX)
}

pub(super) fn len_of<T>(items: &[T]) -> i64 {
    i64::try_from(items.len()).unwrap_or(i64::MAX)
}

pub(super) fn to_i32(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    fn count(status: serde_json::Value, pods: &[Arc<Pod>]) -> (JobStatus, Tally) {
        let job = job(json!({}), status);
        let old = job.status.unwrap_or_default();
        let tally = Tally::count(&old, pods, None, true);
        let mut status = old;
        tally.write(&mut status, false);
        (status, tally)
    }

    fn uncounted_succeeded(status: &JobStatus) -> Option<Vec<String>> {
        status.uncounted_terminated_pods.clone()?.succeeded
    }

    #[test]
    fn an_end_is_counted_once_through_the_tracking_finalizer() {
        let done = job_pod("a", "Succeeded", T0);
        // 1: seen ended: stored as uncounted, finalizer kept until that status is stored.
        let (status, tally) = count(json!({}), std::slice::from_ref(&done));
        assert_eq!(
            uncounted_succeeded(&status),
            Some(vec!["uid-a".to_string()])
        );
        assert_eq!(status.succeeded, Some(0));
        assert_eq!(tally.succeeded(false), 1, "decisions see it at once");
        assert!(tally.release.is_empty());
        // 2: the stored status holds it: release the finalizer.
        let stored = json!({ "uncountedTerminatedPods": { "succeeded": ["uid-a"] } });
        let (status, tally) = count(stored.clone(), std::slice::from_ref(&done));
        assert_eq!(names(&tally.release), ["a"]);
        assert_eq!(status.succeeded, Some(0));
        // 3: released (or deleted): counted, and gone from uncounted.
        for pods in [vec![released(done.clone())], vec![]] {
            let (status, tally) = count(stored.clone(), &pods);
            assert_eq!(status.succeeded, Some(1));
            assert_eq!(uncounted_succeeded(&status), None);
            assert_eq!(tally.succeeded(false), 1);
        }
        // 4: a released pod is never counted again.
        let (status, _) = count(json!({ "succeeded": 1 }), &[released(done)]);
        assert_eq!(status.succeeded, Some(1));
    }

    #[test]
    fn a_pod_deleted_before_it_succeeded_counts_as_failed() {
        let mut deleting = (*job_pod("a", "Running", T0)).clone();
        deleting.metadata.deletion_timestamp = Some(Time(at("2024-01-01T00:59:00Z")));
        let (status, tally) = count(json!({}), &[Arc::new(deleting)]);
        let uncounted = status.uncounted_terminated_pods.unwrap();
        assert_eq!(uncounted.failed, Some(vec!["uid-a".to_string()]));
        assert_eq!(tally.failed + len(&tally.uncounted_failed), 1);
    }

    #[test]
    fn succeeded_indexes_are_added_to_the_completed_ones() {
        let job = job(json!({}), json!({ "completedIndexes": "0-1" }));
        let pods = [
            indexed(job_pod("three", "Succeeded", T0), 3),
            indexed(job_pod("failed", "Failed", T0), 2),
            indexed(job_pod("beyond", "Succeeded", T0), 9),
        ];
        let old = job.status.unwrap_or_default();
        let tally = Tally::count(&old, &pods, Some(5), true);
        let mut status = old;
        tally.write(&mut status, true);
        assert_eq!(status.completed_indexes.as_deref(), Some("0-1,3"));
        assert_eq!(status.succeeded, Some(3));
    }
}
