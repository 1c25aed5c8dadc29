//! The Pod row of `kubectl get pods`: kubectl's `printPod`, including its STATUS rules.

use serde_json::Value;

use super::fields::{
    age_at, age_of, array_at, at, bool_at, count_at, is_deleting, name_of, str_at, text_at,
    text_or, time_at,
};

/// NAME READY STATUS RESTARTS AGE, then the wide IP NODE NOMINATED NODE READINESS GATES.
pub(crate) fn cells(pod: &Value, now: jiff::Timestamp) -> Vec<String> {
    let summary = summarize(pod);
    let restarts = match summary.last_restart {
        Some(at) if summary.restarts != 0 => {
            format!("{} ({} ago)", summary.restarts, age_of(Some(at), now))
        }
        _ => summary.restarts.to_string(),
    };
    vec![
        name_of(pod),
        format!("{}/{}", summary.ready, summary.total),
        summary.reason,
        restarts,
        age_at(pod, &["metadata", "creationTimestamp"], now),
        pod_ip(pod),
        text_or(pod, &["spec", "nodeName"], "<none>").to_owned(),
        text_or(pod, &["status", "nominatedNodeName"], "<none>").to_owned(),
        readiness_gates(pod),
    ]
}

/// What `printPod` derives from the container statuses.
struct Summary {
    ready: usize,
    total: usize,
    reason: String,
    restarts: i64,
    last_restart: Option<jiff::Timestamp>,
}

/// kubectl's rules: start from the phase (or `status.reason`), let a stuck init container
/// (`Init:1/2`, `Init:ErrImagePull`) or a waiting/terminated container (`CrashLoopBackOff`,
/// `OOMKilled`, `Completed`) override it, and show `Terminating` while being deleted.
/// Sidecars (init containers with `restartPolicy: Always`) count as containers.
fn summarize(pod: &Value) -> Summary {
    let init_specs = array_at(pod, &["spec", "initContainers"]);
    let is_sidecar = |name: &str| {
        init_specs
            .iter()
            .any(|c| text_at(c, &["name"]) == name && is_restartable(c))
    };
    let sidecars = init_specs.iter().filter(|c| is_restartable(c)).count();
    let mut summary = Summary {
        ready: 0,
        total: array_at(pod, &["spec", "containers"]).len() + sidecars,
        reason: String::new(),
        restarts: 0,
        last_restart: None,
    };
    // The API server sets phase Pending on create; a stored pod without one is still pending.
    let phase = text_or(pod, &["status", "phase"], "Pending");
    summary.reason = text_or(pod, &["status", "reason"], phase).to_owned();
    let conditions = array_at(pod, &["status", "conditions"]);
    if conditions.iter().any(|c| {
        text_at(c, &["type"]) == "PodScheduled" && text_at(c, &["reason"]) == "SchedulingGated"
    }) {
        summary.reason = "SchedulingGated".into();
    }

    let mut sidecar_restarts = 0;
    let mut last_sidecar_restart = None;
    let mut initializing = false;
    let init_statuses = array_at(pod, &["status", "initContainerStatuses"]);
    for (i, status) in init_statuses.iter().enumerate() {
        let restarts = count_at(status, &["restartCount"]);
        let finished = time_at(status, &["lastState", "terminated", "finishedAt"]);
        summary.restarts += restarts;
        summary.last_restart = later(summary.last_restart, finished);
        let sidecar = is_sidecar(text_at(status, &["name"]));
        if sidecar {
            sidecar_restarts += restarts;
            last_sidecar_restart = later(last_sidecar_restart, finished);
        }
        let terminated = state(status, "terminated");
        let waiting_reason = terminated
            .is_none()
            .then(|| state(status, "waiting").map(|w| text_at(w, &["reason"])))
            .flatten()
            .unwrap_or("");
        if terminated.is_some_and(|t| count_at(t, &["exitCode"]) == 0) {
            continue;
        }
        if sidecar && bool_at(status, &["started"]) == Some(true) {
            if bool_at(status, &["ready"]) == Some(true) {
                summary.ready += 1;
            }
            continue;
        }
        summary.reason = if let Some(t) = terminated {
            match str_at(t, &["reason"]).filter(|r| !r.is_empty()) {
                Some(reason) => format!("Init:{reason}"),
                None => exit_reason("Init:", t),
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    let initialized = conditions
        .iter()
        .find(|c| text_at(c, &["type"]) == "Initialized")
        .is_some_and(|c| text_at(c, &["status"]) == "True");
    if !initializing || initialized {
        summary.restarts = sidecar_restarts;
        summary.last_restart = last_sidecar_restart;
        let mut has_running = false;
        // kubectl walks the statuses backwards, so the first container's reason wins.
        for status in array_at(pod, &["status", "containerStatuses"]).iter().rev() {
            summary.restarts += count_at(status, &["restartCount"]);
            let finished = time_at(status, &["lastState", "terminated", "finishedAt"]);
            summary.last_restart = later(summary.last_restart, finished);
            let waiting = state(status, "waiting").map_or("", |w| text_at(w, &["reason"]));
            if !waiting.is_empty() {
                summary.reason = waiting.to_owned();
            } else if let Some(t) = state(status, "terminated") {
                summary.reason = match str_at(t, &["reason"]).filter(|r| !r.is_empty()) {
                    Some(reason) => reason.to_owned(),
                    None => exit_reason("", t),
                };
            } else if bool_at(status, &["ready"]) == Some(true)
                && state(status, "running").is_some()
            {
                has_running = true;
                summary.ready += 1;
            }
        }
        // A finished container next to a running one does not make the pod Completed.
        if summary.reason == "Completed" && has_running {
            let ready = conditions
                .iter()
                .any(|c| text_at(c, &["type"]) == "Ready" && text_at(c, &["status"]) == "True");
            summary.reason = if ready { "Running" } else { "NotReady" }.into();
        }
    }

    if is_deleting(pod) && text_at(pod, &["status", "reason"]) == "NodeLost" {
        summary.reason = "Unknown".into();
    } else if is_deleting(pod) && !matches!(phase, "Succeeded" | "Failed") {
        summary.reason = "Terminating".into();
    }
    summary
}

/// `state.<which>` of a container status when it is set (an object).
fn state<'a>(status: &'a Value, which: &str) -> Option<&'a Value> {
    at(status, &["state", which]).filter(|s| s.is_object())
}

/// `Signal:9` or `ExitCode:1` for a container that terminated without a reason.
fn exit_reason(prefix: &str, terminated: &Value) -> String {
    match count_at(terminated, &["signal"]) {
        0 => format!("{prefix}ExitCode:{}", count_at(terminated, &["exitCode"])),
        signal => format!("{prefix}Signal:{signal}"),
    }
}

/// An init container with `restartPolicy: Always` is a sidecar.
fn is_restartable(container: &Value) -> bool {
    text_at(container, &["restartPolicy"]) == "Always"
}

fn later(a: Option<jiff::Timestamp>, b: Option<jiff::Timestamp>) -> Option<jiff::Timestamp> {
    a.max(b)
}

/// The first of `status.podIPs`; `status.podIP` for writers that only set that.
fn pod_ip(pod: &Value) -> String {
    let first = array_at(pod, &["status", "podIPs"])
        .first()
        .map_or("", |ip| text_at(ip, &["ip"]));
    let ip = if first.is_empty() {
        text_at(pod, &["status", "podIP"])
    } else {
        first
    };
    if ip.is_empty() { "<none>" } else { ip }.to_owned()
}

/// `true/total` readiness gates whose condition is True, `<none>` without gates.
fn readiness_gates(pod: &Value) -> String {
    let gates = array_at(pod, &["spec", "readinessGates"]);
    if gates.is_empty() {
        return "<none>".into();
    }
    let conditions = array_at(pod, &["status", "conditions"]);
    let passing = gates
        .iter()
        .filter(|gate| {
            let wanted = text_at(gate, &["conditionType"]);
            conditions
                .iter()
                .find(|c| text_at(c, &["type"]) == wanted)
                .is_some_and(|c| text_at(c, &["status"]) == "True")
        })
        .count();
    format!("{passing}/{}", gates.len())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::now;
    use super::*;
    use serde_json::json;

    fn pod(status: Value) -> Value {
        json!({
            "metadata": {"name": "kubia-4jfyf", "namespace": "default",
                         "creationTimestamp": "2024-06-01T09:00:00Z"},
            "spec": {"nodeName": "node-1", "containers": [{"name": "kubia"}, {"name": "log"}]},
            "status": status
        })
    }

    fn running(name: &str, restarts: i64) -> Value {
        json!({"name": name, "ready": true, "restartCount": restarts,
               "state": {"running": {"startedAt": "2024-06-01T09:00:05Z"}}})
    }

    fn status_of(pod: &Value) -> String {
        cells(pod, now())[2].clone()
    }

    #[test]
    fn a_running_pod_shows_ready_counts_and_age() {
        let p = pod(json!({"phase": "Running", "podIP": "10.1.0.5",
                           "containerStatuses": [running("kubia", 0), running("log", 0)]}));
        assert_eq!(
            cells(&p, now()),
            [
                "kubia-4jfyf",
                "2/2",
                "Running",
                "0",
                "3h",
                "10.1.0.5",
                "node-1",
                "<none>",
                "<none>"
            ]
        );
    }

    #[test]
    fn a_pod_without_status_is_pending() {
        let p = json!({"metadata": {"name": "new"}, "spec": {"containers": [{"name": "a"}]}});
        let row = cells(&p, now());
        assert_eq!(row[..4], ["new", "0/1", "Pending", "0"]);
        assert_eq!(row[5..], ["<none>", "<none>", "<none>", "<none>"]);
    }

    #[test]
    fn a_waiting_container_reason_becomes_the_status() {
        let p = pod(json!({"phase": "Running", "containerStatuses": [
            {"name": "kubia", "restartCount": 4,
             "state": {"waiting": {"reason": "CrashLoopBackOff"}},
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-06-01T11:58:00Z"}}},
            running("log", 0)]}));
        let row = cells(&p, now());
        assert_eq!(row[1..4], ["1/2", "CrashLoopBackOff", "4 (2m ago)"]);
    }

    #[test]
    fn the_first_containers_reason_wins() {
        let p = pod(json!({"phase": "Pending", "containerStatuses": [
            {"name": "kubia", "state": {"waiting": {"reason": "ErrImagePull"}}},
            {"name": "log", "state": {"waiting": {"reason": "ContainerCreating"}}}]}));
        assert_eq!(status_of(&p), "ErrImagePull");
    }

    #[test]
    fn a_terminated_container_shows_its_reason_or_exit_code() {
        let oom = pod(json!({"phase": "Running", "containerStatuses": [{
            "name": "kubia", "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]}));
        assert_eq!(status_of(&oom), "OOMKilled");
        let code = pod(json!({"phase": "Failed", "containerStatuses": [
            {"name": "kubia", "state": {"terminated": {"exitCode": 3}}}]}));
        assert_eq!(status_of(&code), "ExitCode:3");
        let signal = pod(json!({"phase": "Failed", "containerStatuses": [
            {"name": "kubia", "state": {"terminated": {"exitCode": 0, "signal": 9}}}]}));
        assert_eq!(status_of(&signal), "Signal:9");
    }

    #[test]
    fn a_completed_pod_shows_completed() {
        let p = pod(json!({"phase": "Succeeded", "containerStatuses": [
            {"name": "kubia", "state": {"terminated": {"reason": "Completed", "exitCode": 0}}},
            {"name": "log", "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]}));
        assert_eq!(cells(&p, now())[1..3], ["0/2", "Completed"]);
    }

    #[test]
    fn completed_next_to_a_running_container_reads_running_or_not_ready() {
        let statuses = json!([running("kubia", 0),
            {"name": "log", "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]);
        let ready = pod(json!({"phase": "Running", "containerStatuses": statuses,
                               "conditions": [{"type": "Ready", "status": "True"}]}));
        assert_eq!(status_of(&ready), "Running");
        let not_ready = pod(json!({"phase": "Running", "containerStatuses": statuses}));
        assert_eq!(status_of(&not_ready), "NotReady");
    }

    #[test]
    fn status_reason_overrides_the_phase() {
        let p = pod(json!({"phase": "Failed", "reason": "Evicted"}));
        assert_eq!(status_of(&p), "Evicted");
    }

    #[test]
    fn a_deleted_pod_is_terminating_unless_finished() {
        let mut p = pod(json!({"phase": "Running", "containerStatuses": [running("kubia", 0)]}));
        p["metadata"]["deletionTimestamp"] = json!("2024-06-01T11:59:00Z");
        assert_eq!(status_of(&p), "Terminating");
        p["status"]["phase"] = json!("Succeeded");
        assert_eq!(status_of(&p), "Succeeded");
        p["status"]["reason"] = json!("NodeLost");
        assert_eq!(status_of(&p), "Unknown");
    }

    #[test]
    fn init_containers_show_progress_and_failures() {
        let mut p = pod(json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "migrate", "state": {"terminated": {"exitCode": 0}}},
            {"name": "seed", "state": {"running": {}}}]}));
        p["spec"]["initContainers"] = json!([{"name": "migrate"}, {"name": "seed"}]);
        assert_eq!(status_of(&p), "Init:1/2");
        p["status"]["initContainerStatuses"][1]["state"] =
            json!({"waiting": {"reason": "ImagePullBackOff"}});
        assert_eq!(status_of(&p), "Init:ImagePullBackOff");
        p["status"]["initContainerStatuses"][1]["state"] = json!({"terminated": {"exitCode": 2}});
        assert_eq!(status_of(&p), "Init:ExitCode:2");
        p["status"]["initContainerStatuses"][1]["state"] =
            json!({"terminated": {"exitCode": 1, "reason": "Error"}});
        assert_eq!(status_of(&p), "Init:Error");
    }

    #[test]
    fn sidecars_count_as_containers() {
        let mut p = pod(json!({"phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [{"name": "proxy", "started": true, "ready": true,
                                       "restartCount": 1, "state": {"running": {}}}],
            "containerStatuses": [running("kubia", 2), running("log", 0)]}));
        p["spec"]["initContainers"] = json!([{"name": "proxy", "restartPolicy": "Always"}]);
        assert_eq!(cells(&p, now())[1..4], ["3/3", "Running", "3"]);
    }

    #[test]
    fn restarts_without_a_known_time_are_a_bare_count() {
        let p = pod(json!({"phase": "Running",
                           "containerStatuses": [running("kubia", 2), running("log", 1)]}));
        assert_eq!(cells(&p, now())[3], "3");
    }

    #[test]
    fn scheduling_gates_show_scheduling_gated() {
        let p = pod(json!({"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False",
                            "reason": "SchedulingGated"}]}));
        assert_eq!(status_of(&p), "SchedulingGated");
    }

    #[test]
    fn wide_cells_prefer_pod_ips_and_count_readiness_gates() {
        let mut p = pod(json!({"phase": "Running", "podIP": "10.0.0.9",
            "podIPs": [{"ip": "10.0.0.9"}, {"ip": "fd00::9"}], "nominatedNodeName": "node-2",
            "conditions": [{"type": "example.com/lb", "status": "True"},
                           {"type": "example.com/dns", "status": "False"}]}));
        p["spec"]["readinessGates"] =
            json!([{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]);
        assert_eq!(
            cells(&p, now())[5..],
            ["10.0.0.9", "node-1", "node-2", "1/2"]
        );
    }

    #[test]
    fn malformed_statuses_do_not_panic() {
        for status in [
            json!(null),
            json!("Running"),
            json!({"containerStatuses": "x", "initContainerStatuses": [7, null]}),
            json!({"containerStatuses": [{"state": {"waiting": 3, "terminated": "x"}}]}),
            json!({"containerStatuses": [{"restartCount": "9", "lastState": {"terminated": 1}}]}),
        ] {
            assert_eq!(cells(&pod(status), now()).len(), 9);
        }
    }
}
