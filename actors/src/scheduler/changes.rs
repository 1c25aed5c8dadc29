//! What the scheduler's shell asks of the objects it hears about (pure): which node updates
//! may let a parked pod fit, which pods are this scheduler's to place, which pod updates may
//! change where it fits, which bind refusals are moot, and the conditions that say a pod is
//! unschedulable.

use k8s_openapi::api::core::v1::{Node, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rudder_proto::client::ClientError;

use super::decide::{is_gated, is_ours};
use crate::pods::cached::Pod;

/// Whether a node's update may let a parked pod fit: its labels, taints, unschedulable flag,
/// allocatable, images or conditions changed (not its heartbeat times).
pub(super) fn node_may_help(old: &Node, new: &Node) -> bool {
    let conditions = |node: &Node| -> Vec<(String, String)> {
        node.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .map(|c| (c.type_.clone(), c.status.clone()))
            .collect()
    };
    let status = |node: &Node| {
        node.status
            .as_ref()
            .map(|s| (s.allocatable.clone(), s.images.clone()))
    };
    old.metadata.labels != new.metadata.labels
        || old.spec != new.spec
        || status(old) != status(new)
        || conditions(old) != conditions(new)
}

/// A pod this scheduler should place now.
pub(super) fn is_pending_for_us(pod: &Pod) -> bool {
    is_ours(pod) && !is_gated(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// Whether an update may change where the pod fits: its spec, labels or annotations
/// (kube-scheduler's `isPodUpdated` ignores the status and the server's bookkeeping).
pub(super) fn may_fit_differently(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec
        || old.metadata.labels != new.metadata.labels
        || old.metadata.annotations != new.metadata.annotations
}

/// A bind refused because the pod changed under it (bound already, being deleted, deleted and
/// created again, gone): nothing to retry for that pod as it was.
pub(super) fn is_moot(error: &ClientError) -> bool {
    error.is_not_found() || matches!(error.reason(), "Conflict" | "Forbidden" | "AlreadyExists")
}

/// The pod's conditions with PodScheduled set False for `message`; `None` when they already
/// say so.
pub(super) fn unschedulable_conditions(
    pod: &Pod,
    message: &str,
    now: jiff::Timestamp,
) -> Option<Vec<PodCondition>> {
    let mut conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let wanted = PodCondition {
        type_: "PodScheduled".into(),
        status: "False".into(),
        reason: Some("Unschedulable".into()),
        message: Some(message.to_string()),
        last_transition_time: Some(Time(now)),
        ..PodCondition::default()
    };
    match conditions.iter_mut().find(|c| c.type_ == "PodScheduled") {
        Some(current)
            if current.status == wanted.status
                && current.reason == wanted.reason
                && current.message == wanted.message =>
        {
            None
        }
        Some(current) => {
            let transition = if current.status == wanted.status {
                current.last_transition_time.clone()
            } else {
                wanted.last_transition_time.clone()
            };
            *current = PodCondition {
                last_transition_time: transition,
                ..wanted
            };
            Some(conditions)
        }
        None => {
            conditions.push(wanted);
            Some(conditions)
        }
    }
}
