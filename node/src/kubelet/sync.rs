//! The kubelet's decision, pure: the pods the API says belong here against the pods the
//! runtime runs → the operations that bring them together.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::runtime::{ContainerState, PodPlan, RunningContainer, RunningPod};

/// A pod bound to this node, as far as syncing is concerned.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredPod {
    pub plan: PodPlan,
    /// It has a deletionTimestamp: stop it, then confirm the deletion.
    pub terminating: bool,
    /// Its deletionGracePeriodSeconds, once it is terminating.
    pub grace: Option<Duration>,
}

/// One step the kubelet takes.
#[derive(Debug, Clone, PartialEq)]
pub enum PodOp {
    Start(Box<PodPlan>),
    /// Stop it within `grace` (the pod's own when `None`).
    Stop {
        uid: String,
        grace: Option<Duration>,
    },
    /// Tell the API the pod's status (phase, address, conditions, container states).
    Report {
        uid: String,
    },
    /// The pod has stopped: delete it for good (grace period 0, this uid only).
    ConfirmDeletion {
        namespace: String,
        name: String,
        uid: String,
    },
}

/// What to do now. Pods the API no longer has are stopped; terminating ones are stopped,
/// then confirmed; new ones started; a pod whose status differs from what this kubelet last
/// reported (`reported`: uid → [`fingerprint`]) is reported.
pub fn sync(
    desired: &[DesiredPod],
    running: &[RunningPod],
    reported: &BTreeMap<String, Value>,
    host_ip: &str,
) -> Vec<PodOp> {
    let mut ops = Vec::new();
    for pod in desired {
        let uid = &pod.plan.uid;
        let runs = running.iter().find(|r| r.uid == *uid);
        match (pod.terminating, runs) {
            (false, None) => ops.push(PodOp::Start(Box::new(pod.plan.clone()))),
            (false, Some(running)) => {
                if reported.get(uid) != Some(&fingerprint(running, host_ip)) {
                    ops.push(PodOp::Report { uid: uid.clone() });
                }
            }
            (true, Some(_)) => ops.push(PodOp::Stop {
                uid: uid.clone(),
                grace: pod.grace,
            }),
            (true, None) => ops.push(PodOp::ConfirmDeletion {
                namespace: pod.plan.namespace.clone(),
                name: pod.plan.name.clone(),
                uid: uid.clone(),
            }),
        }
    }
    for running in running {
        if !desired.iter().any(|d| d.plan.uid == running.uid) {
            ops.push(PodOp::Stop {
                uid: running.uid.clone(),
                grace: None,
            });
        }
    }
    ops
}

/// A pod object from the API as a [`DesiredPod`]; `None` if it has no uid or its spec does
/// not decode.
pub fn desired(pod: &Value) -> Option<DesiredPod> {
    let meta = &pod["metadata"];
    let uid = meta["uid"].as_str().filter(|u| !u.is_empty())?;
    let spec = serde_json::from_value(pod["spec"].clone()).ok()?;
    Some(DesiredPod {
        plan: PodPlan {
            uid: uid.into(),
            namespace: meta["namespace"].as_str().unwrap_or("default").into(),
            name: meta["name"].as_str().unwrap_or("").into(),
            spec,
            volume_files: BTreeMap::new(),
        },
        terminating: !meta["deletionTimestamp"].is_null(),
        grace: meta["deletionGracePeriodSeconds"]
            .as_u64()
            .map(Duration::from_secs),
    })
}

/// The status as reported, minus the clock: equal fingerprints need no new report.
pub fn fingerprint(pod: &RunningPod, host_ip: &str) -> Value {
    pod_status(pod, host_ip, jiff::Timestamp::UNIX_EPOCH)
}

fn state_json(state: &ContainerState) -> Value {
    match state {
        ContainerState::Waiting { reason, message } => {
            let mut waiting = json!({ "reason": reason });
            if !message.is_empty() {
                waiting["message"] = json!(message);
            }
            json!({ "waiting": waiting })
        }
        ContainerState::Running { started_at } => json!({ "running": { "startedAt": started_at } }),
        ContainerState::Terminated {
            exit_code,
            signal,
            reason,
            message,
            started_at,
            finished_at,
        } => {
            let mut terminated = json!({
                "exitCode": exit_code, "reason": reason,
                "startedAt": started_at, "finishedAt": finished_at,
            });
            if let Some(signal) = signal {
                terminated["signal"] = json!(signal);
            }
            if !message.is_empty() {
                terminated["message"] = json!(message);
            }
            json!({ "terminated": terminated })
        }
    }
}

fn container_json(c: &RunningContainer) -> Value {
    let mut status = json!({
        "name": c.name, "image": c.image, "imageID": c.image_id,
        "ready": c.ready, "started": c.started, "restartCount": c.restart_count,
        "state": state_json(&c.state),
        "lastState": c.last_state.as_ref().map(state_json).unwrap_or_else(|| json!({})),
    });
    if !c.id.is_empty() {
        status["containerID"] = json!(c.id);
    }
    status
}

/// The pod's status as a merge patch of `status` (conditions as the kubelet sets them).
pub fn running_status(pod: &RunningPod, host_ip: &str, now: jiff::Timestamp) -> Value {
    json!({ "status": pod_status(pod, host_ip, now) })
}

/// The conditions the kubelet sets; any other (DisruptionTarget, a readiness gate's) is
/// someone else's.
const KUBELET_CONDITIONS: [&str; 5] = [
    "PodReadyToStartContainers",
    "Initialized",
    "ContainersReady",
    "Ready",
    "PodScheduled",
];

/// `patch` (a [`running_status`]) fitted to the pod as the API has it (`current`): a merge
/// patch replaces the whole `conditions` list, so the conditions others set are carried
/// over, and the kubelet's own keep their `lastTransitionTime` while their status holds.
pub fn keeping_conditions(mut patch: Value, current: &Value) -> Value {
    let held = current["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let conditions = patch
        .get_mut("status")
        .and_then(|status| status.get_mut("conditions"))
        .and_then(Value::as_array_mut);
    let Some(conditions) = conditions else {
        return patch;
    };
    for condition in conditions.iter_mut() {
        let before = held.iter().find(|c| c["type"] == condition["type"]);
        if let Some(before) = before.filter(|c| c["status"] == condition["status"]) {
            if !before["lastTransitionTime"].is_null() {
                condition["lastTransitionTime"] = before["lastTransitionTime"].clone();
            }
        }
    }
    conditions.extend(held.into_iter().filter(|c| {
        !c["type"]
            .as_str()
            .is_some_and(|t| KUBELET_CONDITIONS.contains(&t))
    }));
    patch
}

fn pod_status(pod: &RunningPod, host_ip: &str, now: jiff::Timestamp) -> Value {
    let now = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let condition = |kind: &str, status: bool, reason: Option<&str>| {
        let mut c = json!({
            "type": kind, "status": if status { "True" } else { "False" },
            "lastProbeTime": null, "lastTransitionTime": now,
        });
        if let Some(reason) = reason.filter(|_| !status) {
            c["reason"] = json!(reason);
        }
        c
    };
    let init_done = pod
        .init_containers
        .iter()
        .all(|c| matches!(c.state, ContainerState::Terminated { exit_code: 0, .. }));
    let all_ready = !pod.containers.is_empty() && pod.containers.iter().all(|c| c.ready);
    let mut status = json!({
        "phase": pod.phase.as_str(),
        "hostIP": host_ip,
        "hostIPs": [{ "ip": host_ip }],
        "startTime": pod.started_at,
        "conditions": [
            condition("PodReadyToStartContainers", !pod.ip.is_empty(), None),
            condition("Initialized", init_done, Some("ContainersNotInitialized")),
            condition("ContainersReady", all_ready, Some("ContainersNotReady")),
            condition("Ready", all_ready, Some("ContainersNotReady")),
            condition("PodScheduled", true, None),
        ],
        "containerStatuses": pod.containers.iter().map(container_json).collect::<Vec<_>>(),
    });
    if !pod.init_containers.is_empty() {
        status["initContainerStatuses"] = json!(pod
            .init_containers
            .iter()
            .map(container_json)
            .collect::<Vec<_>>());
    }
    if !pod.ip.is_empty() {
        status["podIP"] = json!(pod.ip);
        status["podIPs"] = json!([{ "ip": pod.ip }]);
    }
    if let Some(message) = &pod.message {
        status["message"] = json!(message);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_report_keeps_conditions_it_does_not_own_and_transition_times_that_held() {
        let patch = json!({ "status": { "conditions": [
            { "type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:10:00Z" },
            { "type": "ContainersReady", "status": "False",
              "lastTransitionTime": "2026-01-01T00:10:00Z" },
        ] } });
        let current = json!({ "status": { "conditions": [
            { "type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z" },
            { "type": "ContainersReady", "status": "True",
              "lastTransitionTime": "2026-01-01T00:00:00Z" },
            { "type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI" },
        ] } });
        let kept = keeping_conditions(patch, &current);
        let conditions = kept["status"]["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 3);
        assert_eq!(
            conditions[0]["lastTransitionTime"], "2026-01-01T00:00:00Z",
            "held"
        );
        assert_eq!(
            conditions[1]["lastTransitionTime"], "2026-01-01T00:10:00Z",
            "changed"
        );
        assert_eq!(conditions[2]["type"], "DisruptionTarget");
        let bare = keeping_conditions(json!({ "status": {} }), &current);
        assert_eq!(bare, json!({ "status": {} }));
    }
    use crate::runtime::PodPhase;

    fn wanted(uid: &str, terminating: bool) -> DesiredPod {
        desired(&json!({
            "metadata": { "uid": uid, "name": format!("pod-{uid}"), "namespace": "default",
                          "deletionTimestamp": if terminating { json!("x") } else { json!(null) },
                          "deletionGracePeriodSeconds": if terminating { json!(5) } else { json!(null) } },
            "spec": { "containers": [{ "name": "app", "image": "busybox" }] },
        }))
        .unwrap()
    }

    fn runs(uid: &str, ip: &str) -> RunningPod {
        RunningPod {
            uid: uid.into(),
            namespace: "default".into(),
            name: format!("pod-{uid}"),
            ip: ip.into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            phase: PodPhase::Running,
            init_containers: vec![],
            containers: vec![],
            message: None,
        }
    }

    #[test]
    fn new_pods_start_and_changed_ones_are_reported_once() {
        let none = BTreeMap::new();
        let ops = sync(&[wanted("a", false)], &[], &none, "h");
        assert!(matches!(&ops[..], [PodOp::Start(plan)] if plan.uid == "a"));
        let running = runs("a", "10.0.0.2");
        let ops = sync(
            &[wanted("a", false)],
            std::slice::from_ref(&running),
            &none,
            "h",
        );
        assert_eq!(ops, [PodOp::Report { uid: "a".into() }]);
        let reported = BTreeMap::from([("a".to_string(), fingerprint(&running, "h"))]);
        assert!(sync(
            &[wanted("a", false)],
            std::slice::from_ref(&running),
            &reported,
            "h"
        )
        .is_empty());
        let mut restarted = running;
        restarted.phase = PodPhase::Failed;
        let ops = sync(&[wanted("a", false)], &[restarted], &reported, "h");
        assert_eq!(
            ops,
            [PodOp::Report { uid: "a".into() }],
            "a change is reported"
        );
    }

    #[test]
    fn terminating_pods_stop_within_their_grace_then_their_deletion_is_confirmed() {
        let none = BTreeMap::new();
        let ops = sync(&[wanted("a", true)], &[runs("a", "10.0.0.2")], &none, "h");
        assert_eq!(
            ops,
            [PodOp::Stop {
                uid: "a".into(),
                grace: Some(Duration::from_secs(5))
            }]
        );
        let ops = sync(&[wanted("a", true)], &[], &none, "h");
        assert!(matches!(&ops[..], [PodOp::ConfirmDeletion { uid, .. }] if uid == "a"));
    }

    #[test]
    fn pods_the_api_no_longer_has_are_stopped() {
        assert_eq!(
            sync(&[], &[runs("gone", "10.0.0.9")], &BTreeMap::new(), "h"),
            [PodOp::Stop {
                uid: "gone".into(),
                grace: None
            }]
        );
    }

    #[test]
    fn statuses_carry_container_states_and_readiness() {
        let mut pod = runs("a", "10.0.0.2");
        pod.containers.push(RunningContainer {
            name: "app".into(),
            image: "kubia".into(),
            image_id: "sha256:x".into(),
            id: "rudder://c".into(),
            state: ContainerState::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: "back-off 10s".into(),
            },
            last_state: Some(ContainerState::Terminated {
                exit_code: 1,
                signal: None,
                reason: "Error".into(),
                message: String::new(),
                started_at: "s".into(),
                finished_at: "f".into(),
            }),
            restart_count: 2,
            ready: false,
            started: false,
        });
        let status = &running_status(&pod, "192.0.2.1", jiff::Timestamp::UNIX_EPOCH)["status"];
        let c = &status["containerStatuses"][0];
        assert_eq!(c["restartCount"], 2);
        assert_eq!(c["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(c["lastState"]["terminated"]["exitCode"], 1);
        assert_eq!(status["conditions"][3]["type"], "Ready");
        assert_eq!(status["conditions"][3]["status"], "False");
        assert_eq!(status["podIP"], "10.0.0.2");
    }

    #[test]
    fn api_pods_read_as_desired_pods() {
        let desired = wanted("u", true);
        assert!(desired.terminating);
        assert_eq!(desired.grace, Some(Duration::from_secs(5)));
        assert_eq!(
            desired.plan.containers(),
            [("app".to_string(), "busybox".to_string())]
        );
        assert!(super::desired(&json!({ "metadata": {} })).is_none());
    }
}
