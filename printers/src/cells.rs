//! Rows of the core kinds Node, Namespace, Event, ConfigMap, Secret, ServiceAccount and Lease,
//! after kubectl's `print<Kind>` functions.

use std::collections::BTreeSet;

use serde_json::Value;

use super::fields::{
    age_at, age_of, array_at, at, count_at, len_at, name_of, one_line, string_map, text_at,
    text_or, time_at,
};

/// NAME STATUS ROLES AGE VERSION, wide INTERNAL-IP EXTERNAL-IP OS-IMAGE KERNEL-VERSION
/// CONTAINER-RUNTIME.
pub(crate) fn node(node: &Value, now: jiff::Timestamp) -> Vec<String> {
    let info = |field: &str| text_or(node, &["status", "nodeInfo", field], "<unknown>").to_owned();
    vec![
        name_of(node),
        node_status(node),
        node_roles(node),
        age_at(node, &["metadata", "creationTimestamp"], now),
        text_at(node, &["status", "nodeInfo", "kubeletVersion"]).to_owned(),
        node_address(node, "InternalIP"),
        node_address(node, "ExternalIP"),
        info("osImage"),
        info("kernelVersion"),
        info("containerRuntimeVersion"),
    ]
}

/// `Ready`, `NotReady` or `Unknown` from the Ready condition, `,SchedulingDisabled` when
/// cordoned.
fn node_status(node: &Value) -> String {
    let ready = array_at(node, &["status", "conditions"])
        .iter()
        .rev() // kubectl keeps the last condition of a type
        .find(|c| text_at(c, &["type"]) == "Ready");
    let mut status = match ready.map(|c| text_at(c, &["status"])) {
        Some("True") => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }
    .to_owned();
    if at(node, &["spec", "unschedulable"]).and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

/// The roles from `node-role.kubernetes.io/<role>` and `kubernetes.io/role=<role>` labels,
/// sorted and comma-joined; `<none>` without any.
pub(crate) fn node_roles(node: &Value) -> String {
    let roles: BTreeSet<String> = string_map(node, &["metadata", "labels"])
        .into_iter()
        .filter_map(
            |(key, value)| match key.strip_prefix("node-role.kubernetes.io/") {
                Some(role) if !role.is_empty() => Some(role.to_owned()),
                Some(_) => None,
                None => (key == "kubernetes.io/role" && !value.is_empty()).then_some(value),
            },
        )
        .collect();
    if roles.is_empty() {
        return "<none>".into();
    }
    roles.into_iter().collect::<Vec<_>>().join(",")
}

/// The first address of `kind` (`InternalIP`, `ExternalIP`), `<none>` without one.
fn node_address(node: &Value, kind: &str) -> String {
    array_at(node, &["status", "addresses"])
        .iter()
        .find(|a| text_at(a, &["type"]) == kind)
        .map_or("<none>", |a| text_at(a, &["address"]))
        .to_owned()
}

/// NAME STATUS AGE.
pub(crate) fn namespace(namespace: &Value, now: jiff::Timestamp) -> Vec<String> {
    vec![
        name_of(namespace),
        // The API server marks a namespace Active when it is created.
        text_or(namespace, &["status", "phase"], "Active").to_owned(),
        age_at(namespace, &["metadata", "creationTimestamp"], now),
    ]
}

/// LAST SEEN TYPE REASON OBJECT, wide SUBOBJECT SOURCE, MESSAGE, wide FIRST SEEN COUNT NAME.
pub(crate) fn event(event: &Value, now: jiff::Timestamp) -> Vec<String> {
    let first_seen = match time_at(event, &["firstTimestamp"]) {
        Some(first) => age_of(Some(first), now),
        None => age_at(event, &["eventTime"], now),
    };
    let mut last_seen = match time_at(event, &["lastTimestamp"]) {
        Some(last) => age_of(Some(last), now),
        None => first_seen.clone(),
    };
    let mut count = count_at(event, &["count"]);
    if let Some(series) = at(event, &["series"]).filter(|s| s.is_object()) {
        last_seen = age_at(series, &["lastObservedTime"], now);
        count = count_at(series, &["count"]);
    } else if count == 0 {
        // Events of the events.k8s.io API leave a singleton's count unset.
        count = 1;
    }
    let kind = text_at(event, &["involvedObject", "kind"]).to_lowercase();
    let object = match text_at(event, &["involvedObject", "name"]) {
        "" => kind,
        name => format!("{kind}/{name}"),
    };
    vec![
        last_seen,
        text_at(event, &["type"]).to_owned(),
        text_at(event, &["reason"]).to_owned(),
        object,
        text_at(event, &["involvedObject", "fieldPath"]).to_owned(),
        event_source(event),
        one_line(text_at(event, &["message"])),
        first_seen,
        count.to_string(),
        name_of(event),
    ]
}

/// kubectl's `formatEventSource`: `component, host`, falling back to the reporting
/// controller and instance of newer events.
fn event_source(event: &Value) -> String {
    let component = text_or(event, &["source", "component"], "");
    let component = if component.is_empty() {
        text_at(event, &["reportingComponent"])
    } else {
        component
    };
    let host = text_or(event, &["source", "host"], "");
    let host = if host.is_empty() {
        text_at(event, &["reportingInstance"])
    } else {
        host
    };
    if host.is_empty() {
        component.to_owned()
    } else {
        format!("{component}, {host}")
    }
}

/// NAME DATA AGE; DATA counts `data` and `binaryData` keys.
pub(crate) fn config_map(config_map: &Value, now: jiff::Timestamp) -> Vec<String> {
    let data = len_at(config_map, &["data"]) + len_at(config_map, &["binaryData"]);
    vec![
        name_of(config_map),
        data.to_string(),
        age_at(config_map, &["metadata", "creationTimestamp"], now),
    ]
}

/// NAME TYPE DATA AGE.
pub(crate) fn secret(secret: &Value, now: jiff::Timestamp) -> Vec<String> {
    vec![
        name_of(secret),
        // Opaque is the API server's default type.
        text_or(secret, &["type"], "Opaque").to_owned(),
        len_at(secret, &["data"]).to_string(),
        age_at(secret, &["metadata", "creationTimestamp"], now),
    ]
}

/// NAME SECRETS AGE; SECRETS counts the references in `secrets`.
pub(crate) fn service_account(account: &Value, now: jiff::Timestamp) -> Vec<String> {
    vec![
        name_of(account),
        array_at(account, &["secrets"]).len().to_string(),
        age_at(account, &["metadata", "creationTimestamp"], now),
    ]
}

/// NAME HOLDER AGE.
pub(crate) fn lease(lease: &Value, now: jiff::Timestamp) -> Vec<String> {
    vec![
        name_of(lease),
        text_at(lease, &["spec", "holderIdentity"]).to_owned(),
        age_at(lease, &["metadata", "creationTimestamp"], now),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{meta, now};
    use super::*;
    use serde_json::json;

    #[test]
    fn a_ready_control_plane_node_row() {
        let n = json!({
            "metadata": {"name": "master", "creationTimestamp": "2024-05-19T12:00:00Z",
                         "labels": {"node-role.kubernetes.io/control-plane": "",
                                    "node-role.kubernetes.io/master": ""}},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"},
                               {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"},
                              {"type": "Hostname", "address": "master"}],
                "nodeInfo": {"kubeletVersion": "v1.34.0", "osImage": "Debian 12",
                             "kernelVersion": "6.1.0", "containerRuntimeVersion": "youki://0.5"}
            }
        });
        assert_eq!(
            node(&n, now()),
            [
                "master",
                "Ready",
                "control-plane,master",
                "13d",
                "v1.34.0",
                "10.0.0.1",
                "<none>",
                "Debian 12",
                "6.1.0",
                "youki://0.5"
            ]
        );
    }

    #[test]
    fn node_status_follows_the_ready_condition_and_cordoning() {
        let mut n = json!({"metadata": {"name": "n"},
                           "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        assert_eq!(node(&n, now())[1], "NotReady");
        n["spec"] = json!({"unschedulable": true});
        assert_eq!(node(&n, now())[1], "NotReady,SchedulingDisabled");
        n["status"] = json!({});
        assert_eq!(node(&n, now())[1], "Unknown,SchedulingDisabled");
    }

    #[test]
    fn node_roles_also_come_from_the_legacy_role_label() {
        let n = json!({"metadata": {"labels": {"kubernetes.io/role": "worker",
                                               "node-role.kubernetes.io/": ""}}});
        assert_eq!(node_roles(&n), "worker");
        assert_eq!(node_roles(&json!({})), "<none>");
    }

    #[test]
    fn a_node_without_info_shows_unknown_in_wide_columns() {
        let row = node(&json!({"metadata": {"name": "n"}}), now());
        assert_eq!(
            row[4..],
            [
                "",
                "<none>",
                "<none>",
                "<unknown>",
                "<unknown>",
                "<unknown>"
            ]
        );
    }

    #[test]
    fn a_namespace_row() {
        let ns = json!({"metadata": meta("kube-system"), "status": {"phase": "Terminating"}});
        assert_eq!(namespace(&ns, now()), ["kube-system", "Terminating", "13d"]);
        assert_eq!(namespace(&json!({}), now())[1], "Active");
    }

    #[test]
    fn an_event_row_names_the_involved_object() {
        let e = json!({
            "metadata": {"name": "kubia-4jfyf.17a", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "kubia-4jfyf",
                               "fieldPath": "spec.containers{kubia}"},
            "type": "Normal", "reason": "Pulled",
            "message": "Successfully pulled image \"luksa/kubia\"\n",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": "2024-06-01T11:50:00Z", "lastTimestamp": "2024-06-01T11:59:00Z",
            "count": 3
        });
        assert_eq!(
            event(&e, now()),
            [
                "60s",
                "Normal",
                "Pulled",
                "pod/kubia-4jfyf",
                "spec.containers{kubia}",
                "kubelet, node-1",
                "Successfully pulled image \"luksa/kubia\"",
                "10m",
                "3",
                "kubia-4jfyf.17a"
            ]
        );
    }

    #[test]
    fn new_style_events_use_event_time_series_and_reporting_fields() {
        let single = json!({"eventTime": "2024-06-01T11:59:30.123456Z",
                            "involvedObject": {"kind": "Node"},
                            "reportingComponent": "scheduler"});
        let row = event(&single, now());
        assert_eq!(row[0], "29s");
        assert_eq!(row[3], "node");
        assert_eq!(row[5], "scheduler");
        assert_eq!(row[8], "1");
        let series = json!({"eventTime": "2024-06-01T11:00:00Z",
                            "series": {"count": 5, "lastObservedTime": "2024-06-01T11:58:00Z"}});
        let row = event(&series, now());
        assert_eq!(
            (row[0].as_str(), row[7].as_str(), row[8].as_str()),
            ("2m", "60m", "5")
        );
        assert_eq!(event(&json!({}), now())[0], "<unknown>");
    }

    #[test]
    fn config_map_and_secret_rows_count_their_keys() {
        let cm = json!({"metadata": meta("game"), "data": {"a": "1", "b": "2"},
                        "binaryData": {"c": "AA=="}});
        assert_eq!(config_map(&cm, now()), ["game", "3", "13d"]);
        let s = json!({"metadata": meta("tls"), "type": "kubernetes.io/tls",
                       "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(secret(&s, now()), ["tls", "kubernetes.io/tls", "2", "13d"]);
        assert_eq!(secret(&json!({}), now())[1..3], ["Opaque", "0"]);
    }

    #[test]
    fn a_service_account_row_counts_its_secrets() {
        let sa = json!({"metadata": meta("build-robot"),
                        "secrets": [{"name": "build-robot-token"}, {"name": "other"}]});
        assert_eq!(service_account(&sa, now()), ["build-robot", "2", "13d"]);
        assert_eq!(
            service_account(&json!({"metadata": meta("default")}), now())[1],
            "0"
        );
    }

    #[test]
    fn a_lease_row_shows_its_holder() {
        let l = json!({"metadata": meta("node-1"), "spec": {"holderIdentity": "node-1"}});
        assert_eq!(lease(&l, now()), ["node-1", "node-1", "13d"]);
        assert_eq!(lease(&json!({}), now())[1], "");
    }
}
