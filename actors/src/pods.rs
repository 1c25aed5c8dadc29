//! What controllers ask of a pod (Kubernetes' `podutil`): is it still active, ready,
//! available after `minReadySeconds`, owned by whom. Pure; times come from the caller.
//! [`cached`]: the pod type those questions are asked of, as the shared cache keeps it.

pub mod cached;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use rudder_proto::objects::disruption::has_ready_condition;

use self::cached::{ContainerStatus, Pod};

/// Kubernetes' `IsPodReady`: its (first) Ready condition is True (the API server's eviction
/// asks the same question, of the same conditions).
pub fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_deref());
    has_ready_condition(conditions.unwrap_or_default())
}

/// Not finished (phase Succeeded or Failed) and not being deleted: a pod that counts toward
/// a controller's replicas.
pub fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && !is_terminal(pod)
}

/// Ended for good: phase Succeeded or Failed.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Whether the pod has been scheduled to a node.
pub fn is_assigned(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

/// The pod's Ready condition is True: since when (`None`: not ready).
pub fn ready_since(pod: &Pod) -> Option<jiff::Timestamp> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready")?;
    if ready.status != "True" {
        return None;
    }
    Some(
        ready
            .last_transition_time
            .as_ref()
            .map_or(jiff::Timestamp::UNIX_EPOCH, |t| t.0),
    )
}

/// Ready for at least `min_ready_seconds` at `now` (Kubernetes' `IsPodAvailable`).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => {
            let seconds = now.as_second() - since.as_second();
            seconds >= i64::from(min_ready_seconds)
        }
    }
}

/// How long until a ready pod becomes available (at least 1 s, so a requeue lands after it);
/// `None` when it is not ready, or already available.
pub fn available_in(
    pod: &Pod,
    min_ready_seconds: i32,
    now: jiff::Timestamp,
) -> Option<std::time::Duration> {
    if is_available(pod, min_ready_seconds, now) {
        return None;
    }
    let due = ready_since(pod)?.as_second() + i64::from(min_ready_seconds);
    let seconds = u64::try_from(due - now.as_second()).unwrap_or(0).max(1);
    Some(std::time::Duration::from_secs(seconds))
}

/// The sum of its containers' restart counts.
pub fn restarts(pod: &Pod) -> i32 {
    sum_restarts(
        pod.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref()),
    )
}

/// The sum of its init containers' restart counts.
pub fn init_restarts(pod: &Pod) -> i32 {
    sum_restarts(
        pod.status
            .as_ref()
            .and_then(|s| s.init_container_statuses.as_ref()),
    )
}

fn sum_restarts(statuses: Option<&Vec<ContainerStatus>>) -> i32 {
    statuses
        .into_iter()
        .flatten()
        .map(|c| c.restart_count)
        .sum()
}

/// The owner reference marked `controller: true`, if any.
pub fn controller_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::cached::Pod;

    /// A pod from JSON, for tests.
    pub fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).expect("a test pod decodes")
    }

    pub fn ready_pod(name: &str, since: &str) -> Pod {
        pod(serde_json::json!({
            "metadata": { "name": name, "namespace": "default", "creationTimestamp": since },
            "spec": { "nodeName": "n1", "containers": [] },
            "status": { "phase": "Running", "conditions": [
                { "type": "Ready", "status": "True", "lastTransitionTime": since }
            ] }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{pod, ready_pod};
    use super::*;

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn terminal_and_deleting_pods_are_not_active() {
        let running = ready_pod("a", "2024-01-01T00:00:00Z");
        assert!(is_active(&running));
        let mut deleting = running.clone();
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at("2024-01-01T00:00:01Z")),
        );
        assert!(!is_active(&deleting));
        for phase in ["Succeeded", "Failed"] {
            let done = pod(
                serde_json::json!({ "metadata": { "name": "d" }, "status": { "phase": phase } }),
            );
            assert!(!is_active(&done), "{phase}");
        }
    }

    #[test]
    fn availability_waits_min_ready_seconds_from_the_ready_transition() {
        let p = ready_pod("a", "2024-01-01T00:00:00Z");
        assert!(is_available(&p, 0, at("2024-01-01T00:00:00Z")));
        assert!(!is_available(&p, 10, at("2024-01-01T00:00:09Z")));
        assert!(is_available(&p, 10, at("2024-01-01T00:00:10Z")));
        let unready = pod(
            serde_json::json!({ "metadata": { "name": "u" }, "status": { "conditions": [
            { "type": "Ready", "status": "False" } ] } }),
        );
        assert!(!is_available(&unready, 0, at("2030-01-01T00:00:00Z")));
    }
}
