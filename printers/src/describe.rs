//! `rudder describe`: an object as indented `Key: value` lines, then its Events.
//!
//! Like kubectl's describers, the text is first written as tab-separated cells and then aligned
//! by the tabwriter rules (two spaces of padding), so values line up within each section.

use serde_json::Value;

use super::describe_writer::Writer;
use super::fields::{
    age_of, at, count_at, is_cluster_scoped, one_line, string_map, text_at, text_or, time_at,
};
use super::{describe_kinds, describe_pod, yaml};

/// Annotations kubectl leaves out of `describe`: a copy of the whole object.
const SKIPPED_ANNOTATIONS: &[&str] = &["kubectl.kubernetes.io/last-applied-configuration"];
/// Longer annotations are printed on their own lines and clipped, as kubectl does.
const MAX_ANNOTATION_LEN: usize = 140;

/// The description of `object` with `events` (Events whose involvedObject is `object`).
pub fn describe(object: &Value, events: &[Value], now: jiff::Timestamp) -> String {
    let kind = text_at(object, &["kind"]);
    let mut w = Writer::default();
    w.field(
        0,
        "Name",
        text_or(object, &["metadata", "name"], "<unknown>"),
    );
    if !is_cluster_scoped(kind) {
        w.field(
            0,
            "Namespace",
            text_or(object, &["metadata", "namespace"], "<none>"),
        );
    }
    w.labels(0, "Labels", object, &["metadata", "labels"]);
    annotations(&mut w, object);
    w.time(
        0,
        "CreationTimestamp",
        object,
        &["metadata", "creationTimestamp"],
    );
    match kind {
        "Pod" => describe_pod::pod(&mut w, object, now),
        "Deployment" => describe_kinds::deployment(&mut w, object),
        "ReplicaSet" | "ReplicationController" => describe_kinds::replica_set(&mut w, object),
        "Service" => describe_kinds::service(&mut w, object),
        "Node" => describe_kinds::node(&mut w, object),
        "Secret" => describe_kinds::secret(&mut w, object),
        "Namespace" => w.field(0, "Status", text_or(object, &["status", "phase"], "Active")),
        _ => yaml::generic(&mut w, object),
    }
    describe_events(&mut w, events, now);
    w.finish()
}

/// kubectl's `printAnnotationsMultiline`: `key: value` sorted; long or multi-line values on
/// their own lines, clipped to 140 characters.
fn annotations(w: &mut Writer, object: &Value) {
    let annotations = string_map(object, &["metadata", "annotations"]);
    let shown: Vec<_> = annotations
        .iter()
        .filter(|(k, _)| !SKIPPED_ANNOTATIONS.contains(&k.as_str()))
        .collect();
    if shown.is_empty() {
        w.field(0, "Annotations", "<none>");
        return;
    }
    for (i, (key, value)) in shown.into_iter().enumerate() {
        let label = if i == 0 { "Annotations:" } else { "" };
        let value = value.trim_end_matches('\n');
        if key.len() + value.len() + 2 > MAX_ANNOTATION_LEN || value.contains('\n') {
            w.cells(0, &[label, &format!("{key}:")]);
            for part in value.split('\n') {
                w.cells(
                    0,
                    &["", &format!("  {}", clip(part, MAX_ANNOTATION_LEN - 2))],
                );
            }
        } else {
            w.cells(0, &[label, &format!("{key}: {value}")]);
        }
    }
}

/// The first `max` characters of `s`, with `...` when something was cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let kept: String = s.chars().take(max).collect();
    format!("{kept}...")
}

/// kubectl's `DescribeEvents`: `Events: <none>`, or a Type/Reason/Age/From/Message table,
/// oldest first, with `(xN over M)` for repeated events.
fn describe_events(w: &mut Writer, events: &[Value], now: jiff::Timestamp) {
    // After a table or a nested section, `Events:` should not take its columns; after
    // top-level fields it lines up with them, as in kubectl.
    if w.ends_indented() {
        w.flush();
    }
    if events.is_empty() {
        w.field(0, "Events", "<none>");
        return;
    }
    // kubectl sorts by lastTimestamp; newer events only carry eventTime, so fall back to it.
    let last_seen = |e: &Value| {
        time_at(e, &["lastTimestamp"])
            .or_else(|| time_at(e, &["eventTime"]))
            .or_else(|| time_at(e, &["firstTimestamp"]))
    };
    let mut sorted: Vec<&Value> = events.iter().collect();
    sorted.sort_by_key(|e| last_seen(e));
    w.heading(0, "Events");
    w.cells(1, &["Type", "Reason", "Age", "From", "Message"]);
    w.cells(1, &["----", "------", "----", "----", "-------"]);
    for event in sorted {
        let first = match time_at(event, &["eventTime"]) {
            Some(t) => age_of(Some(t), now),
            None => age_of(time_at(event, &["firstTimestamp"]), now),
        };
        let count = count_at(event, &["count"]);
        let series = at(event, &["series"]).filter(|s| s.is_object());
        let interval = match series {
            Some(series) => format!(
                "{} (x{} over {first})",
                age_of(time_at(series, &["lastObservedTime"]), now),
                count_at(series, &["count"])
            ),
            None if count > 1 => format!(
                "{} (x{count} over {first})",
                age_of(time_at(event, &["lastTimestamp"]), now)
            ),
            None => first,
        };
        let from = match text_at(event, &["source", "component"]) {
            "" => text_at(event, &["reportingComponent"]),
            component => component,
        };
        w.cells(
            1,
            &[
                text_at(event, &["type"]),
                text_at(event, &["reason"]),
                &interval,
                from,
                &one_line(text_at(event, &["message"])),
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{kv, now};
    use super::*;
    use serde_json::json;

    fn kubia_pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "kubia-4jfyf", "namespace": "default",
                "creationTimestamp": "2016-04-29T14:12:33Z",
                "labels": {"app": "kubia", "pod-template-hash": "5d4f"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                     "name": "kubia-5d4f", "controller": true}]
            },
            "spec": {"nodeName": "node-1",
                     "containers": [{"name": "kubia", "image": "luksa/kubia",
                                     "ports": [{"containerPort": 8080}]}]},
            "status": {
                "phase": "Running", "hostIP": "10.0.0.1", "podIP": "10.1.0.5",
                "startTime": "2016-04-29T14:12:34Z",
                "conditions": [{"type": "Ready", "status": "True"},
                               {"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [{"name": "kubia", "ready": true, "restartCount": 0,
                                       "state": {"running": {"startedAt":
                                                             "2016-04-29T14:12:40Z"}}}]
            }
        })
    }

    fn pod_body() -> String {
        [
            kv(20, "Name:", "kubia-4jfyf"),
            kv(20, "Namespace:", "default"),
            kv(20, "Labels:", "app=kubia"),
            kv(20, "", "pod-template-hash=5d4f"),
            kv(20, "Annotations:", "<none>"),
            kv(20, "CreationTimestamp:", "Fri, 29 Apr 2016 14:12:33 +0000"),
            kv(20, "Node:", "node-1/10.0.0.1"),
            kv(20, "Start Time:", "Fri, 29 Apr 2016 14:12:34 +0000"),
            kv(20, "Status:", "Running"),
            kv(20, "IP:", "10.1.0.5"),
            kv(20, "Controlled By:", "ReplicaSet/kubia-5d4f"),
            "Containers:\n".into(),
            "  kubia:\n".into(),
            kv(20, "    Image:", "luksa/kubia"),
            kv(20, "    Port:", "8080/TCP"),
            kv(20, "    State:", "Running"),
            kv(20, "      Started:", "Fri, 29 Apr 2016 14:12:40 +0000"),
            kv(20, "    Ready:", "True"),
            kv(20, "    Restart Count:", "0"),
            "Conditions:\n".into(),
            kv(17, "  Type", "Status"),
            kv(17, "  Ready", "True"),
            kv(17, "  PodScheduled", "True"),
        ]
        .concat()
    }

    #[test]
    fn a_pod_without_events_ends_with_events_none() {
        let text = describe(&kubia_pod(), &[], now());
        assert_eq!(text, pod_body() + "Events:  <none>\n");
    }

    #[test]
    fn a_pod_with_events_ends_with_an_events_table_oldest_first() {
        let events = [
            json!({"type": "Warning", "reason": "BackOff", "count": 5,
                   "message": "Back-off restarting failed container\n",
                   "source": {"component": "kubelet", "host": "node-1"},
                   "firstTimestamp": "2024-06-01T11:50:00Z",
                   "lastTimestamp": "2024-06-01T11:59:00Z"}),
            json!({"type": "Normal", "reason": "Scheduled", "count": 1,
                   "message": "Successfully assigned default/kubia-4jfyf to node-1",
                   "source": {"component": "default-scheduler"},
                   "firstTimestamp": "2024-06-01T11:55:00Z",
                   "lastTimestamp": "2024-06-01T11:55:00Z"}),
        ];
        let row = |cells: [&str; 5]| {
            format!(
                "{:<11}{:<11}{:<19}{:<19}{}\n",
                cells[0], cells[1], cells[2], cells[3], cells[4]
            )
        };
        let expected = pod_body()
            + "Events:\n"
            + &row(["  Type", "Reason", "Age", "From", "Message"])
            + &row(["  ----", "------", "----", "----", "-------"])
            + &row([
                "  Normal",
                "Scheduled",
                "5m",
                "default-scheduler",
                "Successfully assigned default/kubia-4jfyf to node-1",
            ])
            + &row([
                "  Warning",
                "BackOff",
                "60s (x5 over 10m)",
                "kubelet",
                "Back-off restarting failed container",
            ]);
        assert_eq!(describe(&kubia_pod(), &events, now()), expected);
    }

    #[test]
    fn new_style_events_show_their_series_and_reporting_component() {
        let event = json!({"type": "Normal", "reason": "Pulling", "message": "pulling",
                           "reportingComponent": "kubelet",
                           "eventTime": "2024-06-01T11:40:00.000000Z",
                           "series": {"count": 3, "lastObservedTime": "2024-06-01T11:58:00Z"}});
        let text = describe(&json!({"kind": "Widget"}), &[event], now());
        let expected = "  Normal  Pulling  2m (x3 over 20m)  kubelet  pulling\n";
        assert!(text.contains(expected), "{text}");
    }

    #[test]
    fn events_after_top_level_fields_share_their_column() {
        let lease = json!({"kind": "Lease", "metadata": {"name": "node-1"}});
        let text = describe(&lease, &[], now());
        let expected = [
            kv(20, "Annotations:", "<none>"),
            kv(20, "CreationTimestamp:", "<unknown>"),
            kv(20, "Events:", "<none>"),
        ]
        .concat();
        assert!(text.ends_with(&expected), "{text}");
    }

    #[test]
    fn annotations_go_one_per_line_and_long_ones_on_their_own_lines() {
        let long = "x".repeat(150);
        let object = json!({"kind": "Widget", "metadata": {"name": "w", "annotations": {
            "b": "2", "a": "1", "kubectl.kubernetes.io/last-applied-configuration": "{}",
            "long": long}}});
        let text = describe(&object, &[], now());
        let expected = [
            kv(20, "Annotations:", "a: 1"),
            kv(20, "", "b: 2"),
            kv(20, "", "long:"),
            kv(20, "", &format!("  {}...", "x".repeat(138))),
        ]
        .concat();
        assert!(text.contains(&expected), "{text}");
        assert!(!text.contains("last-applied"));
    }

    #[test]
    fn cluster_scoped_kinds_have_no_namespace_line() {
        let node = json!({"kind": "Node", "metadata": {"name": "n", "namespace": "x"}});
        assert!(!describe(&node, &[], now()).contains("Namespace:"));
        let widget = json!({"kind": "Widget", "metadata": {"name": "w"}});
        let text = describe(&widget, &[], now());
        assert!(text.contains(&kv(20, "Namespace:", "<none>")), "{text}");
    }
    #[test]
    fn tabs_and_newlines_in_values_do_not_break_the_layout() {
        let object = json!({"kind": "Widget", "metadata": {"name": "a\tb\nc"}});
        assert!(describe(&object, &[], now()).starts_with(&kv(20, "Name:", "a b c")));
    }

    #[test]
    fn malformed_objects_and_events_do_not_panic() {
        let kinds = [
            "Pod",
            "Deployment",
            "ReplicaSet",
            "ReplicationController",
            "Service",
            "Node",
            "Secret",
            "Namespace",
            "Lease",
            "Widget",
        ];
        let bodies = [
            json!({}),
            json!({"metadata": 1, "spec": "x", "status": [1], "data": 2}),
            json!({"metadata": {"labels": [1], "annotations": {"a": {"b": 1}},
                                "ownerReferences": "x", "creationTimestamp": 5},
                   "spec": {"containers": [1, null, {"ports": "80"}], "ports": [{"port": "x"}],
                            "selector": {"matchExpressions": [{}]}, "taints": [3],
                            "template": {"spec": {"containers": "none"}}},
                   "status": {"containerStatuses": [{"name": null, "state": {"running": 1}}],
                              "conditions": [null, {"type": 1}], "capacity": {"cpu": 4},
                              "addresses": [null], "nodeInfo": "x"}}),
        ];
        let events = [
            json!(null),
            json!({"count": "many", "series": 3}),
            json!([1]),
        ];
        for kind in kinds {
            for body in &bodies {
                let mut object = body.clone();
                object["kind"] = json!(kind);
                assert!(describe(&object, &events, now()).starts_with("Name:"));
            }
        }
        assert!(describe(&json!(null), &[], now()).starts_with("Name:"));
        assert!(describe(&json!("pod"), &[], now()).contains("Events:"));
    }
}
