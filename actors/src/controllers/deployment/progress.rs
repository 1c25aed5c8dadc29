//! A Deployment's status conditions (Kubernetes' `deployment/util` and `progress.go`):
//! `Available` against `replicas - maxUnavailable`, and `Progressing` — created, progressing,
//! complete, paused, or past its `progressDeadlineSeconds` without progress. Pure.

use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// What happened in this sync, as far as `Progressing` cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Paused,
    /// Paused before, not now: the deadline starts again (`DeploymentResumed`).
    Resumed,
    /// The new ReplicaSet was created now.
    Created,
    /// Compared with the status before: more updated, ready or available pods, or fewer old.
    Moved,
    Complete,
    /// Nothing changed.
    Still,
}

/// The condition's new state; the previous one's times are kept when nothing changes, and
/// its transition time when only the reason or message does.
pub fn set_condition(
    conditions: &mut Vec<DeploymentCondition>,
    kind: &str,
    status: &str,
    reason: &str,
    message: String,
    now: jiff::Timestamp,
) {
    let now = Time(now);
    match conditions.iter_mut().find(|c| c.type_ == kind) {
        Some(c) if c.status == status && c.reason.as_deref() == Some(reason) => {
            if c.message.as_deref() != Some(message.as_str()) {
                c.message = Some(message);
                c.last_update_time = Some(now);
            }
        }
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Some(now.clone());
            }
            c.status = status.into();
            c.reason = Some(reason.into());
            c.message = Some(message);
            c.last_update_time = Some(now);
        }
        None => conditions.push(DeploymentCondition {
            type_: kind.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_update_time: Some(now.clone()),
            last_transition_time: Some(now),
        }),
    }
}

/// `Available`: at least `replicas - max_unavailable` pods available.
pub fn set_available(
    status: &mut DeploymentStatus,
    replicas: i32,
    max_unavailable: i32,
    now: jiff::Timestamp,
) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if status.available_replicas.unwrap_or(0) >= replicas - max_unavailable {
        set_condition(
            conditions,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            now,
        );
    } else {
        set_condition(
            conditions,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            now,
        );
    }
}

/// `Progressing` after this sync. `deadline`: `progressDeadlineSeconds` (`None`: no
/// deadline). Returns when to look again for the deadline.
pub fn set_progressing(
    status: &mut DeploymentStatus,
    progress: Progress,
    new_set: &str,
    deadline: Option<i32>,
    now: jiff::Timestamp,
) -> Option<std::time::Duration> {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    match progress {
        Progress::Paused => set_condition(
            conditions,
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused".into(),
            now,
        ),
        Progress::Resumed => set_condition(
            conditions,
            "Progressing",
            "Unknown",
            "DeploymentResumed",
            "Deployment is resumed".into(),
            now,
        ),
        Progress::Created => set_condition(
            conditions,
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            format!("Created new replica set {new_set:?}"),
            now,
        ),
        Progress::Complete => set_condition(
            conditions,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet {new_set:?} has successfully progressed."),
            now,
        ),
        Progress::Moved => {
            // Progress always moves lastUpdateTime (the deadline counts from it), even when the
            // condition says the same as before.
            let message = format!("ReplicaSet {new_set:?} is progressing.");
            let same = conditions.iter_mut().find(|c| {
                c.type_ == "Progressing"
                    && c.status == "True"
                    && c.reason.as_deref() == Some("ReplicaSetUpdated")
            });
            match same {
                Some(c) => {
                    c.message = Some(message);
                    c.last_update_time = Some(Time(now));
                }
                None => set_condition(
                    conditions,
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    message,
                    now,
                ),
            }
        }
        Progress::Still => {}
    }
    let deadline = deadline?;
    let current = conditions.iter().find(|c| c.type_ == "Progressing")?;
    let settled = matches!(
        current.reason.as_deref(),
        Some("NewReplicaSetAvailable" | "ProgressDeadlineExceeded" | "DeploymentPaused")
    );
    if settled {
        return None;
    }
    let since = current.last_update_time.as_ref()?.0;
    let due = since.as_second() + i64::from(deadline);
    if now.as_second() > due {
        set_condition(
            conditions,
            "Progressing",
            "False",
            "ProgressDeadlineExceeded",
            format!("ReplicaSet {new_set:?} has timed out progressing."),
            now,
        );
        return None;
    }
    Some(std::time::Duration::from_secs(
        u64::try_from(due - now.as_second()).unwrap_or(0) + 1,
    ))
}

/// Whether this sync moved the rollout forward compared with `before`.
pub fn moved(
    before: &DeploymentStatus,
    after: &DeploymentStatus,
    old_before: i32,
    old_after: i32,
) -> bool {
    let n = |v: Option<i32>| v.unwrap_or(0);
    n(after.updated_replicas) > n(before.updated_replicas)
        || old_after < old_before
        || n(after.ready_replicas) > n(before.ready_replicas)
        || n(after.available_replicas) > n(before.available_replicas)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(secs).unwrap()
    }

    fn progressing(status: &DeploymentStatus) -> (String, String) {
        let c = status
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Progressing")
            .unwrap();
        (c.status.clone(), c.reason.clone().unwrap())
    }

    #[test]
    fn a_rollout_without_progress_times_out_after_its_deadline() {
        let mut status = DeploymentStatus::default();
        let again = set_progressing(&mut status, Progress::Created, "web-abc", Some(600), at(0));
        assert_eq!(again, Some(std::time::Duration::from_secs(601)));
        assert!(
            set_progressing(&mut status, Progress::Still, "web-abc", Some(600), at(600)).is_some()
        );
        assert_eq!(
            progressing(&status),
            ("True".into(), "NewReplicaSetCreated".into())
        );
        set_progressing(&mut status, Progress::Still, "web-abc", Some(600), at(601));
        assert_eq!(
            progressing(&status),
            ("False".into(), "ProgressDeadlineExceeded".into())
        );
        let message = status.conditions.as_ref().unwrap()[0]
            .message
            .clone()
            .unwrap();
        assert_eq!(message, "ReplicaSet \"web-abc\" has timed out progressing.");
    }

    #[test]
    fn progress_moves_the_deadline_and_completion_ends_it() {
        let mut status = DeploymentStatus::default();
        set_progressing(&mut status, Progress::Created, "web-abc", Some(600), at(0));
        let again = set_progressing(&mut status, Progress::Moved, "web-abc", Some(600), at(500));
        assert_eq!(again, Some(std::time::Duration::from_secs(601)));
        let again = set_progressing(&mut status, Progress::Moved, "web-abc", Some(600), at(900));
        assert_eq!(
            again,
            Some(std::time::Duration::from_secs(601)),
            "the same condition, a new lastUpdateTime"
        );
        assert_eq!(
            set_progressing(
                &mut status,
                Progress::Complete,
                "web-abc",
                Some(600),
                at(2000)
            ),
            None
        );
        assert_eq!(
            progressing(&status),
            ("True".into(), "NewReplicaSetAvailable".into())
        );
        let c = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            c.last_transition_time.as_ref().unwrap().0,
            at(0),
            "True all along"
        );
    }

    #[test]
    fn availability_is_judged_against_max_unavailable() {
        let mut status = DeploymentStatus {
            available_replicas: Some(8),
            ..Default::default()
        };
        set_available(&mut status, 10, 2, at(0));
        assert_eq!(status.conditions.as_ref().unwrap()[0].status, "True");
        status.available_replicas = Some(7);
        set_available(&mut status, 10, 2, at(1));
        let c = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("False", Some("MinimumReplicasUnavailable"))
        );
    }
}
