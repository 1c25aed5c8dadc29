//! The kind-specific parts of `describe` besides Pod, after kubectl's describers: Deployment,
//! ReplicaSet/ReplicationController, Service, Node and Secret. Only the essentials; strategies'
//! details, pod template volumes and the like are left to `get -o yaml`.

use serde_json::Value;

use super::cells::node_roles;
use super::describe_pod::container_ports;
use super::describe_writer::{controlled_by, present, Writer};
use super::fields::{
    array_at, at, bool_at, count_at, format_labels, label_selector, rfc1123z, string_map, text_at,
    text_or, time_at,
};
use super::network::service_type;
use super::workloads::desired_replicas;

/// Selector, the Replicas line, strategy, the pod template and the conditions.
pub(crate) fn deployment(w: &mut Writer, deployment: &Value) {
    let selector = label_selector(at(deployment, &["spec", "selector"]))
        .unwrap_or_else(|_| "<invalid>".into());
    w.field(0, "Selector", &selector);
    let status = |field: &str| count_at(deployment, &["status", field]);
    let replicas = format!(
        "{} desired | {} updated | {} total | {} available | {} unavailable",
        desired_replicas(deployment),
        status("updatedReplicas"),
        status("replicas"),
        status("availableReplicas"),
        status("unavailableReplicas"),
    );
    w.field(0, "Replicas", &replicas);
    let strategy = text_or(deployment, &["spec", "strategy", "type"], "RollingUpdate");
    w.field(0, "StrategyType", strategy);
    let min_ready = count_at(deployment, &["spec", "minReadySeconds"]);
    w.field(0, "MinReadySeconds", &min_ready.to_string());
    pod_template(w, deployment);
    workload_conditions(w, deployment);
}

/// Selector, `Replicas: N current / M desired`, the owner, the pod template, the conditions.
pub(crate) fn replica_set(w: &mut Writer, replica_set: &Value) {
    let selector = at(replica_set, &["spec", "selector"]);
    // A ReplicationController's selector is a plain label map, a ReplicaSet's a LabelSelector.
    let selector = match selector.and_then(|s| s.get("matchLabels").or(s.get("matchExpressions"))) {
        Some(_) => label_selector(selector).unwrap_or_else(|_| "<invalid>".into()),
        None => format_labels(&string_map(replica_set, &["spec", "selector"])),
    };
    w.field(0, "Selector", &selector);
    if let Some(owner) = controlled_by(replica_set) {
        w.field(0, "Controlled By", &owner);
    }
    let replicas = format!(
        "{} current / {} desired",
        count_at(replica_set, &["status", "replicas"]),
        desired_replicas(replica_set)
    );
    w.field(0, "Replicas", &replicas);
    pod_template(w, replica_set);
    workload_conditions(w, replica_set);
}

/// kubectl's `DescribePodTemplate`, reduced to labels, images and ports.
fn pod_template(w: &mut Writer, workload: &Value) {
    let template = at(workload, &["spec", "template"]).unwrap_or(&Value::Null);
    w.heading(0, "Pod Template");
    w.labels(1, "Labels", template, &["metadata", "labels"]);
    w.heading(1, "Containers");
    for container in array_at(template, &["spec", "containers"]) {
        // kubectl indents template container names by one more space than their section.
        w.raw_line(1, &format!(" {}:", text_at(container, &["name"])));
        w.field(2, "Image", text_at(container, &["image"]));
        container_ports(w, 2, container);
    }
}

/// `Type Status Reason` of a workload's conditions, if it has any.
fn workload_conditions(w: &mut Writer, workload: &Value) {
    let conditions = array_at(workload, &["status", "conditions"]);
    if conditions.is_empty() {
        return;
    }
    w.heading(0, "Conditions");
    w.cells(1, &["Type", "Status", "Reason"]);
    w.cells(1, &["----", "------", "------"]);
    for c in conditions {
        let kind = format!("{} ", text_at(c, &["type"]));
        let status = format!("{} ", text_at(c, &["status"]));
        w.cells(1, &[&kind, &status, text_at(c, &["reason"])]);
    }
}

/// Selector, Type, IPs, external addresses, and each port with its target and node port.
pub(crate) fn service(w: &mut Writer, service: &Value) {
    w.field(
        0,
        "Selector",
        &format_labels(&string_map(service, &["spec", "selector"])),
    );
    let kind = service_type(service);
    w.field(0, "Type", kind);
    let mut ips: Vec<&str> = array_at(service, &["spec", "clusterIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if ips.is_empty() {
        ips.extend(present(service, &["spec", "clusterIP"]));
    }
    w.field(0, "IP", ips.first().copied().unwrap_or("<none>"));
    if ips.len() > 1 {
        w.field(0, "IPs", &ips.join(","));
    }
    let external: Vec<&str> = array_at(service, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if !external.is_empty() {
        w.field(0, "External IPs", &external.join(","));
    }
    let ingress: Vec<&str> = array_at(service, &["status", "loadBalancer", "ingress"])
        .iter()
        .filter_map(|i| present(i, &["ip"]).or_else(|| present(i, &["hostname"])))
        .collect();
    if !ingress.is_empty() {
        w.field(0, "LoadBalancer Ingress", &ingress.join(", "));
    }
    if kind == "ExternalName" {
        w.field(
            0,
            "External Name",
            text_at(service, &["spec", "externalName"]),
        );
    }
    for port in array_at(service, &["spec", "ports"]) {
        let name = present(port, &["name"]).unwrap_or("<unset>");
        let protocol = text_or(port, &["protocol"], "TCP");
        let number = count_at(port, &["port"]);
        w.cells(0, &["Port:", name, &format!("{number}/{protocol}")]);
        // The API server defaults targetPort to the port; it may also name a container port.
        let target = match at(port, &["targetPort"]) {
            Some(Value::String(name)) => name.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => number.to_string(),
        };
        w.field(0, "TargetPort", &format!("{target}/{protocol}"));
        let node_port = count_at(port, &["nodePort"]);
        if node_port != 0 {
            w.cells(0, &["NodePort:", name, &format!("{node_port}/{protocol}")]);
        }
    }
    w.field(
        0,
        "Session Affinity",
        text_or(service, &["spec", "sessionAffinity"], "None"),
    );
}

/// Roles, taints, conditions, addresses, capacity and the kubelet's system info.
pub(crate) fn node(w: &mut Writer, node: &Value) {
    w.field(0, "Roles", &node_roles(node));
    let taints: Vec<String> = array_at(node, &["spec", "taints"])
        .iter()
        .map(|t| match present(t, &["value"]) {
            Some(value) => format!(
                "{}={value}:{}",
                text_at(t, &["key"]),
                text_at(t, &["effect"])
            ),
            None => format!("{}:{}", text_at(t, &["key"]), text_at(t, &["effect"])),
        })
        .collect();
    w.multiline(0, "Taints", &taints);
    let unschedulable = bool_at(node, &["spec", "unschedulable"]) == Some(true);
    w.field(0, "Unschedulable", &unschedulable.to_string());
    let conditions = array_at(node, &["status", "conditions"]);
    if !conditions.is_empty() {
        w.heading(0, "Conditions");
        let header = [
            "Type",
            "Status",
            "LastHeartbeatTime",
            "LastTransitionTime",
            "Reason",
            "Message",
        ];
        w.cells(1, &header);
        w.cells(
            1,
            &[
                "----",
                "------",
                "-----------------",
                "------------------",
                "------",
                "-------",
            ],
        );
        for c in conditions {
            let time =
                |field: &str| time_at(c, &[field]).map_or_else(|| "<unknown>".into(), rfc1123z);
            let cells = [
                format!("{} ", text_at(c, &["type"])),
                format!("{} ", text_at(c, &["status"])),
                format!("{} ", time("lastHeartbeatTime")),
                format!("{} ", time("lastTransitionTime")),
                format!("{} ", text_at(c, &["reason"])),
                text_at(c, &["message"]).to_owned(),
            ];
            let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
            w.cells(1, &cells);
        }
    }
    w.heading(0, "Addresses");
    for address in array_at(node, &["status", "addresses"]) {
        let kind = format!("{}:", text_at(address, &["type"]));
        w.cells(1, &[&kind, text_at(address, &["address"])]);
    }
    for (title, field) in [("Capacity", "capacity"), ("Allocatable", "allocatable")] {
        let resources = string_map(node, &["status", field]);
        if resources.is_empty() {
            continue;
        }
        w.heading(0, title);
        for (name, quantity) in resources {
            w.field(1, &name, &quantity);
        }
    }
    let info = at(node, &["status", "nodeInfo"]).unwrap_or(&Value::Null);
    if info.is_object() {
        w.heading(0, "System Info");
        for (key, field) in [
            ("Kernel Version", "kernelVersion"),
            ("OS Image", "osImage"),
            ("Operating System", "operatingSystem"),
            ("Architecture", "architecture"),
            ("Container Runtime Version", "containerRuntimeVersion"),
            ("Kubelet Version", "kubeletVersion"),
        ] {
            w.field(1, key, text_at(info, &[field]));
        }
    }
    if let Some(cidr) = present(node, &["spec", "podCIDR"]) {
        w.field(0, "PodCIDR", cidr);
    }
}

/// Type, then each data key with its size in bytes; the values stay secret.
pub(crate) fn secret(w: &mut Writer, secret: &Value) {
    w.field(0, "Type", text_or(secret, &["type"], "Opaque"));
    w.line(0, "");
    w.line(0, "Data");
    w.line(0, "====");
    for (key, encoded) in string_map(secret, &["data"]) {
        w.field(0, &key, &format!("{} bytes", decoded_len(&encoded)));
    }
}

/// The length of base64 `encoded` once decoded.
fn decoded_len(encoded: &str) -> usize {
    let unpadded = encoded.trim().trim_end_matches('=');
    unpadded.len() * 3 / 4
}
