//! The Pod part of `describe`, after kubectl's `describePod`: node, status, the containers with
//! their states, and the conditions. Volumes, probes and environment are left to `get -o yaml`.

use serde_json::Value;

use super::describe_writer::{controlled_by, present, Writer};
use super::fields::{
    age_of, array_at, at, bool_at, count_at, is_deleting, text_at, text_or, time_at,
};

/// Node, Start Time, Status, IP, Controlled By, the (init) containers and the conditions.
pub(crate) fn pod(w: &mut Writer, pod: &Value, now: jiff::Timestamp) {
    let node = match (
        present(pod, &["spec", "nodeName"]),
        present(pod, &["status", "hostIP"]),
    ) {
        (Some(node), Some(host)) => format!("{node}/{host}"),
        (Some(node), None) => node.to_owned(),
        (None, _) => "<none>".into(),
    };
    w.field(0, "Node", &node);
    if time_at(pod, &["status", "startTime"]).is_some() {
        w.time(0, "Start Time", pod, &["status", "startTime"]);
    }
    if is_deleting(pod) {
        let since = age_of(time_at(pod, &["metadata", "deletionTimestamp"]), now);
        w.field(0, "Status", &format!("Terminating (lasts {since})"));
    } else {
        w.field(0, "Status", text_or(pod, &["status", "phase"], "Pending"));
    }
    for (key, field) in [("Reason", "reason"), ("Message", "message")] {
        if let Some(text) = present(pod, &["status", field]) {
            w.field(0, key, text);
        }
    }
    w.field(0, "IP", text_or(pod, &["status", "podIP"], "<none>"));
    if let Some(owner) = controlled_by(pod) {
        w.field(0, "Controlled By", &owner);
    }
    let init = array_at(pod, &["spec", "initContainers"]);
    if !init.is_empty() {
        containers(
            w,
            "Init Containers",
            init,
            array_at(pod, &["status", "initContainerStatuses"]),
        );
    }
    let statuses = array_at(pod, &["status", "containerStatuses"]);
    containers(
        w,
        "Containers",
        array_at(pod, &["spec", "containers"]),
        statuses,
    );
    let conditions = array_at(pod, &["status", "conditions"]);
    if !conditions.is_empty() {
        w.heading(0, "Conditions");
        w.cells(1, &["Type", "Status"]);
        for c in conditions {
            // kubectl's "%v \t%v \n" leaves a space after each cell; it widens the column.
            let kind = format!("{} ", text_at(c, &["type"]));
            w.cells(1, &[&kind, text_at(c, &["status"])]);
        }
    }
}

/// kubectl's `describeContainers`: image, ports and, once the kubelet reports it, the state.
fn containers(w: &mut Writer, title: &str, specs: &[Value], statuses: &[Value]) {
    w.heading(0, title);
    for spec in specs {
        let name = text_at(spec, &["name"]);
        let status = statuses.iter().find(|s| text_at(s, &["name"]) == name);
        w.heading(1, name);
        if let Some(id) = status.and_then(|s| present(s, &["containerID"])) {
            w.field(2, "Container ID", id);
        }
        w.field(2, "Image", text_at(spec, &["image"]));
        if let Some(id) = status.and_then(|s| present(s, &["imageID"])) {
            w.field(2, "Image ID", id);
        }
        container_ports(w, 2, spec);
        let Some(status) = status else { continue };
        container_state(w, "State", at(status, &["state"]));
        if at(status, &["lastState", "terminated"]).is_some_and(Value::is_object) {
            container_state(w, "Last State", at(status, &["lastState"]));
        }
        let ready = bool_at(status, &["ready"]) == Some(true);
        w.field(2, "Ready", if ready { "True" } else { "False" });
        w.field(
            2,
            "Restart Count",
            &count_at(status, &["restartCount"]).to_string(),
        );
    }
}

/// `Port: 8080/TCP`, `Ports: 80/TCP, 443/TCP` or `Port: <none>`.
pub(crate) fn container_ports(w: &mut Writer, level: usize, container: &Value) {
    let ports: Vec<String> = array_at(container, &["ports"])
        .iter()
        .map(|p| {
            let port = count_at(p, &["containerPort"]);
            format!("{port}/{}", text_or(p, &["protocol"], "TCP"))
        })
        .collect();
    match ports.len() {
        0 => w.field(level, "Port", "<none>"),
        1 => w.field(level, "Port", &ports[0]),
        _ => w.field(level, "Ports", &ports.join(", ")),
    }
}

/// kubectl's `describeStatus`: Running/Waiting/Terminated with their reason and times.
fn container_state(w: &mut Writer, title: &str, state: Option<&Value>) {
    let state = state.unwrap_or(&Value::Null);
    let part = |name: &str| at(state, &[name]).filter(|s| s.is_object());
    if let Some(running) = part("running") {
        w.field(2, title, "Running");
        w.time(3, "Started", running, &["startedAt"]);
    } else if let Some(waiting) = part("waiting") {
        w.field(2, title, "Waiting");
        if let Some(reason) = present(waiting, &["reason"]) {
            w.field(3, "Reason", reason);
        }
    } else if let Some(terminated) = part("terminated") {
        w.field(2, title, "Terminated");
        for (key, field) in [("Reason", "reason"), ("Message", "message")] {
            if let Some(text) = present(terminated, &[field]) {
                w.field(3, key, text);
            }
        }
        w.field(
            3,
            "Exit Code",
            &count_at(terminated, &["exitCode"]).to_string(),
        );
        let signal = count_at(terminated, &["signal"]);
        if signal > 0 {
            w.field(3, "Signal", &signal.to_string());
        }
        w.time(3, "Started", terminated, &["startedAt"]);
        w.time(3, "Finished", terminated, &["finishedAt"]);
    } else {
        w.field(2, title, "Waiting");
    }
}
