//! The kubelet's decision, pure: the pods the API says belong here against the pods the
//! runtime runs → the operations that bring them together.

use serde_json::{json, Value};

use crate::runtime::{PodPlan, RunningPod};

/// A pod bound to this node, as far as syncing is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredPod {
    pub plan: PodPlan,
    /// It has a deletionTimestamp: stop it, then confirm the deletion.
    pub terminating: bool,
    /// The API already shows it Running at this address.
    pub reported_ip: Option<String>,
}

/// One step the kubelet takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodOp {
    Start(PodPlan),
    Stop {
        uid: String,
    },
    /// Tell the API the pod runs (phase, address, conditions, container states).
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
/// then confirmed; new ones started; running ones reported once.
pub fn sync(desired: &[DesiredPod], running: &[RunningPod]) -> Vec<PodOp> {
    let mut ops = Vec::new();
    for pod in desired {
        let runs = running.iter().find(|r| r.uid == pod.plan.uid);
        match (pod.terminating, runs) {
            (false, None) => ops.push(PodOp::Start(pod.plan.clone())),
            (false, Some(running)) if pod.reported_ip.as_deref() != Some(&running.ip) => {
                ops.push(PodOp::Report {
                    uid: pod.plan.uid.clone(),
                })
            }
            (false, Some(_)) => {}
            (true, Some(_)) => ops.push(PodOp::Stop {
                uid: pod.plan.uid.clone(),
            }),
            (true, None) => ops.push(PodOp::ConfirmDeletion {
                namespace: pod.plan.namespace.clone(),
                name: pod.plan.name.clone(),
                uid: pod.plan.uid.clone(),
            }),
        }
    }
    for running in running {
        if !desired.iter().any(|d| d.plan.uid == running.uid) {
            ops.push(PodOp::Stop {
                uid: running.uid.clone(),
            });
        }
    }
    ops
}

/// A pod object from the API as a [`DesiredPod`]; `None` if it has no uid.
pub fn desired(pod: &Value) -> Option<DesiredPod> {
    let meta = &pod["metadata"];
    let uid = meta["uid"].as_str().filter(|u| !u.is_empty())?;
    let containers = pod["spec"]["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or("").to_string(),
                        c["image"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let reported_ip = (pod["status"]["phase"] == "Running")
        .then(|| pod["status"]["podIP"].as_str().map(str::to_string))
        .flatten();
    Some(DesiredPod {
        plan: PodPlan {
            uid: uid.into(),
            namespace: meta["namespace"].as_str().unwrap_or("default").into(),
            name: meta["name"].as_str().unwrap_or("").into(),
            containers,
        },
        terminating: !meta["deletionTimestamp"].is_null(),
        reported_ip,
    })
}

/// The status of a running pod, as a merge patch of `status`.
pub fn running_status(pod: &RunningPod, host_ip: &str, now: jiff::Timestamp) -> Value {
    let now = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let condition = |kind: &str| json!({ "type": kind, "status": "True", "lastProbeTime": null, "lastTransitionTime": now });
    let containers: Vec<Value> = pod
        .containers
        .iter()
        .map(|c| {
            json!({
                "name": c.name, "image": c.image, "imageID": c.image, "containerID": c.id,
                "ready": true, "started": true, "restartCount": 0,
                "state": { "running": { "startedAt": pod.started_at } },
            })
        })
        .collect();
    json!({ "status": {
        "phase": "Running",
        "podIP": pod.ip,
        "podIPs": [{ "ip": pod.ip }],
        "hostIP": host_ip,
        "hostIPs": [{ "ip": host_ip }],
        "startTime": pod.started_at,
        "conditions": [
            condition("PodReadyToStartContainers"), condition("Initialized"),
            condition("ContainersReady"), condition("Ready"), condition("PodScheduled"),
        ],
        "containerStatuses": containers,
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(uid: &str, terminating: bool, reported_ip: Option<&str>) -> DesiredPod {
        DesiredPod {
            plan: PodPlan {
                uid: uid.into(),
                namespace: "default".into(),
                name: format!("pod-{uid}"),
                containers: vec![("app".into(), "busybox".into())],
            },
            terminating,
            reported_ip: reported_ip.map(str::to_string),
        }
    }

    fn runs(uid: &str, ip: &str) -> RunningPod {
        RunningPod {
            uid: uid.into(),
            namespace: "default".into(),
            name: format!("pod-{uid}"),
            ip: ip.into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            containers: vec![],
        }
    }

    #[test]
    fn new_pods_start_and_running_ones_are_reported_once() {
        let ops = sync(&[wanted("a", false, None)], &[]);
        assert!(matches!(&ops[..], [PodOp::Start(plan)] if plan.uid == "a"));
        let ops = sync(&[wanted("a", false, None)], &[runs("a", "10.0.0.2")]);
        assert_eq!(ops, [PodOp::Report { uid: "a".into() }]);
        let ops = sync(
            &[wanted("a", false, Some("10.0.0.2"))],
            &[runs("a", "10.0.0.2")],
        );
        assert!(ops.is_empty());
    }

    #[test]
    fn terminating_pods_stop_then_their_deletion_is_confirmed() {
        let ops = sync(&[wanted("a", true, None)], &[runs("a", "10.0.0.2")]);
        assert_eq!(ops, [PodOp::Stop { uid: "a".into() }]);
        let ops = sync(&[wanted("a", true, None)], &[]);
        assert!(matches!(&ops[..], [PodOp::ConfirmDeletion { uid, .. }] if uid == "a"));
    }

    #[test]
    fn pods_the_api_no_longer_has_are_stopped() {
        assert_eq!(
            sync(&[], &[runs("gone", "10.0.0.9")]),
            [PodOp::Stop { uid: "gone".into() }]
        );
    }

    #[test]
    fn api_pods_read_as_desired_pods() {
        let pod = json!({
            "metadata": { "uid": "u", "name": "p", "namespace": "ns", "deletionTimestamp": "x" },
            "spec": { "containers": [{ "name": "c", "image": "i" }] },
            "status": { "phase": "Running", "podIP": "10.0.0.2" }
        });
        let desired = desired(&pod).unwrap();
        assert!(desired.terminating);
        assert_eq!(desired.reported_ip.as_deref(), Some("10.0.0.2"));
        assert_eq!(
            desired.plan.containers,
            [("c".to_string(), "i".to_string())]
        );
        assert!(super::desired(&json!({ "metadata": {} })).is_none());
    }
}
