//! Rows of the workload kinds: ReplicationController, ReplicaSet, Deployment, DaemonSet,
//! StatefulSet, ControllerRevision, Job and CronJob, and of the PodDisruptionBudgets that
//! guard them, after kubectl's `print<Kind>` functions.

use serde_json::Value;

use super::age::human_age;
use super::fields::{
    age_at, array_at, at, bool_at, container_cells, count_at, format_label_selector, format_labels,
    int_at, label_selector, name_of, string_map, text_at, text_or, time_at,
};

/// `spec.replicas`, 1 (the API server's default) when unset.
pub(crate) fn desired_replicas(object: &Value) -> i64 {
    int_at(object, &["spec", "replicas"]).unwrap_or(1)
}

/// NAME DESIRED CURRENT READY AGE, wide CONTAINERS IMAGES SELECTOR (a label map).
pub(crate) fn replication_controller(rc: &Value, now: jiff::Timestamp) -> Vec<String> {
    let selector = format_labels(&string_map(rc, &["spec", "selector"]));
    replicas_row(rc, selector, now)
}

/// NAME DESIRED CURRENT READY AGE, wide CONTAINERS IMAGES SELECTOR (a label selector).
pub(crate) fn replica_set(rs: &Value, now: jiff::Timestamp) -> Vec<String> {
    let selector = format_label_selector(at(rs, &["spec", "selector"]));
    replicas_row(rs, selector, now)
}

fn replicas_row(object: &Value, selector: String, now: jiff::Timestamp) -> Vec<String> {
    let (names, images) = template_containers(object);
    vec![
        name_of(object),
        desired_replicas(object).to_string(),
        count_at(object, &["status", "replicas"]).to_string(),
        count_at(object, &["status", "readyReplicas"]).to_string(),
        age_at(object, &["metadata", "creationTimestamp"], now),
        names,
        images,
        selector,
    ]
}

/// NAME READY UP-TO-DATE AVAILABLE AGE, wide CONTAINERS IMAGES SELECTOR.
pub(crate) fn deployment(deployment: &Value, now: jiff::Timestamp) -> Vec<String> {
    let (names, images) = template_containers(deployment);
    // Unlike the other kinds, kubectl prints a Deployment's empty selector as nothing.
    let selector = label_selector(at(deployment, &["spec", "selector"]))
        .unwrap_or_else(|_| "<invalid>".into());
    vec![
        name_of(deployment),
        format!(
            "{}/{}",
            count_at(deployment, &["status", "readyReplicas"]),
            desired_replicas(deployment)
        ),
        count_at(deployment, &["status", "updatedReplicas"]).to_string(),
        count_at(deployment, &["status", "availableReplicas"]).to_string(),
        age_at(deployment, &["metadata", "creationTimestamp"], now),
        names,
        images,
        selector,
    ]
}

/// NAME DESIRED CURRENT READY UP-TO-DATE AVAILABLE NODE SELECTOR AGE, wide CONTAINERS IMAGES
/// SELECTOR.
pub(crate) fn daemon_set(ds: &Value, now: jiff::Timestamp) -> Vec<String> {
    let (names, images) = template_containers(ds);
    let status = |field: &str| count_at(ds, &["status", field]).to_string();
    vec![
        name_of(ds),
        status("desiredNumberScheduled"),
        status("currentNumberScheduled"),
        status("numberReady"),
        status("updatedNumberScheduled"),
        status("numberAvailable"),
        format_labels(&string_map(
            ds,
            &["spec", "template", "spec", "nodeSelector"],
        )),
        age_at(ds, &["metadata", "creationTimestamp"], now),
        names,
        images,
        format_label_selector(at(ds, &["spec", "selector"])),
    ]
}

/// NAME READY AGE, wide CONTAINERS IMAGES.
pub(crate) fn stateful_set(sts: &Value, now: jiff::Timestamp) -> Vec<String> {
    let (names, images) = template_containers(sts);
    vec![
        name_of(sts),
        format!(
            "{}/{}",
            count_at(sts, &["status", "readyReplicas"]),
            desired_replicas(sts)
        ),
        age_at(sts, &["metadata", "creationTimestamp"], now),
        names,
        images,
    ]
}

/// NAME CONTROLLER REVISION AGE; CONTROLLER is the controlling owner as
/// `daemonset.apps/fluentd`, `<none>` without one.
pub(crate) fn controller_revision(revision: &Value, now: jiff::Timestamp) -> Vec<String> {
    let controller = array_at(revision, &["metadata", "ownerReferences"])
        .iter()
        .find(|owner| bool_at(owner, &["controller"]) == Some(true))
        .map_or_else(|| "<none>".into(), controller_name);
    vec![
        name_of(revision),
        controller,
        count_at(revision, &["revision"]).to_string(),
        age_at(revision, &["metadata", "creationTimestamp"], now),
    ]
}

/// kubectl's `formatResourceName` of an owner reference: `kind.group/name` in lower case, the
/// group left out for the core API.
fn controller_name(owner: &Value) -> String {
    let name = text_at(owner, &["name"]);
    let kind = text_at(owner, &["kind"]);
    let group = match text_at(owner, &["apiVersion"]).split_once('/') {
        Some((group, _version)) => group,
        None => "",
    };
    match (kind, group) {
        ("", "") => name.to_owned(),
        (kind, "") => format!("{}/{name}", kind.to_lowercase()),
        (kind, group) => format!("{}/{name}", format!("{kind}.{group}").to_lowercase()),
    }
}

/// NAME COMPLETIONS DURATION AGE, wide CONTAINERS IMAGES SELECTOR.
pub(crate) fn job(job: &Value, now: jiff::Timestamp) -> Vec<String> {
    let succeeded = count_at(job, &["status", "succeeded"]);
    let completions = match int_at(job, &["spec", "completions"]) {
        Some(completions) => format!("{succeeded}/{completions}"),
        None => match int_at(job, &["spec", "parallelism"]).unwrap_or(0) {
            parallelism if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
            _ => format!("{succeeded}/1"),
        },
    };
    // A running job's DURATION keeps growing; a finished one's is fixed.
    let duration = match time_at(job, &["status", "startTime"]) {
        None => String::new(),
        Some(start) => {
            let end = time_at(job, &["status", "completionTime"]).unwrap_or(now);
            human_age(start, end)
        }
    };
    let (names, images) = template_containers(job);
    vec![
        name_of(job),
        completions,
        duration,
        age_at(job, &["metadata", "creationTimestamp"], now),
        names,
        images,
        format_label_selector(at(job, &["spec", "selector"])),
    ]
}

/// NAME SCHEDULE TIMEZONE SUSPEND ACTIVE LAST SCHEDULE AGE, wide CONTAINERS IMAGES SELECTOR.
pub(crate) fn cron_job(cron_job: &Value, now: jiff::Timestamp) -> Vec<String> {
    let job_spec = at(cron_job, &["spec", "jobTemplate", "spec"]).unwrap_or(&Value::Null);
    let (names, images) = container_cells(array_at(job_spec, &["template", "spec", "containers"]));
    let suspend = match bool_at(cron_job, &["spec", "suspend"]) {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let last_schedule = match time_at(cron_job, &["status", "lastScheduleTime"]) {
        Some(last) => human_age(last, now),
        None => "<none>".into(),
    };
    vec![
        name_of(cron_job),
        text_at(cron_job, &["spec", "schedule"]).to_owned(),
        text_or(cron_job, &["spec", "timeZone"], "<none>").to_owned(),
        suspend.to_owned(),
        array_at(cron_job, &["status", "active"]).len().to_string(),
        last_schedule,
        age_at(cron_job, &["metadata", "creationTimestamp"], now),
        names,
        images,
        format_label_selector(at(job_spec, &["selector"])),
    ]
}

/// NAME MIN AVAILABLE MAX UNAVAILABLE ALLOWED DISRUPTIONS AGE; a bound left out is `N/A`.
pub(crate) fn pod_disruption_budget(pdb: &Value, now: jiff::Timestamp) -> Vec<String> {
    let bound = |field: &str| match at(pdb, &["spec", field]) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        _ => "N/A".to_owned(),
    };
    vec![
        name_of(pdb),
        bound("minAvailable"),
        bound("maxUnavailable"),
        count_at(pdb, &["status", "disruptionsAllowed"]).to_string(),
        age_at(pdb, &["metadata", "creationTimestamp"], now),
    ]
}

/// The container names and images of `spec.template`.
fn template_containers(object: &Value) -> (String, String) {
    container_cells(array_at(
        object,
        &["spec", "template", "spec", "containers"],
    ))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::now;
    use super::*;
    use serde_json::json;

    fn template() -> Value {
        json!({"metadata": {"labels": {"app": "kubia"}},
               "spec": {"containers": [{"name": "kubia", "image": "luksa/kubia:v1"}]}})
    }

    fn meta(name: &str) -> Value {
        json!({"name": name, "namespace": "default", "creationTimestamp": "2024-06-01T11:58:00Z"})
    }

    #[test]
    fn a_replication_controller_row() {
        let rc = json!({"metadata": meta("kubia"),
                        "spec": {"replicas": 3, "selector": {"app": "kubia"},
                                 "template": template()},
                        "status": {"replicas": 3, "readyReplicas": 2}});
        assert_eq!(
            replication_controller(&rc, now()),
            [
                "kubia",
                "3",
                "3",
                "2",
                "2m",
                "kubia",
                "luksa/kubia:v1",
                "app=kubia"
            ]
        );
    }

    #[test]
    fn a_replica_set_row() {
        let rs = json!({"metadata": meta("kubia-5d4f"),
                        "spec": {"replicas": 3, "template": template(),
                                 "selector": {"matchExpressions": [
                                     {"key": "app", "operator": "In", "values": ["kubia"]}]}},
                        "status": {"replicas": 3, "readyReplicas": 3}});
        assert_eq!(
            replica_set(&rs, now()),
            [
                "kubia-5d4f",
                "3",
                "3",
                "3",
                "2m",
                "kubia",
                "luksa/kubia:v1",
                "app in (kubia)"
            ]
        );
    }

    #[test]
    fn unset_replicas_default_to_one_and_counts_to_zero() {
        let rs = json!({"metadata": {"name": "r"}});
        assert_eq!(replica_set(&rs, now())[1..4], ["1", "0", "0"]);
        assert_eq!(replica_set(&rs, now())[7], "<none>");
    }

    #[test]
    fn a_deployment_row_shows_ready_over_desired() {
        let d = json!({"metadata": meta("kubia"),
                       "spec": {"replicas": 3, "template": template(),
                                "selector": {"matchLabels": {"app": "kubia"}}},
                       "status": {"readyReplicas": 2, "updatedReplicas": 3,
                                  "availableReplicas": 2}});
        assert_eq!(
            deployment(&d, now()),
            [
                "kubia",
                "2/3",
                "3",
                "2",
                "2m",
                "kubia",
                "luksa/kubia:v1",
                "app=kubia"
            ]
        );
    }

    #[test]
    fn deployment_selectors_print_empty_or_invalid_like_kubectl() {
        let empty = json!({"spec": {}});
        assert_eq!(deployment(&empty, now())[7], "");
        let bad = json!({"spec": {"selector": {"matchExpressions": [{"key": "a"}]}}});
        assert_eq!(deployment(&bad, now())[7], "<invalid>");
    }

    #[test]
    fn a_daemon_set_row() {
        let mut t = template();
        t["spec"]["nodeSelector"] = json!({"disk": "ssd"});
        let ds = json!({"metadata": meta("ssd-monitor"),
                        "spec": {"template": t, "selector": {"matchLabels": {"app": "ssd"}}},
                        "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2,
                                   "numberReady": 1, "updatedNumberScheduled": 2,
                                   "numberAvailable": 1}});
        assert_eq!(
            daemon_set(&ds, now()),
            [
                "ssd-monitor",
                "2",
                "2",
                "1",
                "2",
                "1",
                "disk=ssd",
                "2m",
                "kubia",
                "luksa/kubia:v1",
                "app=ssd"
            ]
        );
    }

    #[test]
    fn a_stateful_set_row() {
        let sts = json!({"metadata": meta("kubia"),
                         "spec": {"replicas": 2, "template": template()},
                         "status": {"readyReplicas": 1}});
        assert_eq!(
            stateful_set(&sts, now()),
            ["kubia", "1/2", "2m", "kubia", "luksa/kubia:v1"]
        );
    }

    #[test]
    fn a_disruption_budget_row_shows_its_bounds_and_allowed_disruptions() {
        let pdb = json!({"metadata": meta("zk-pdb"),
                         "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "zk"}}},
                         "status": {"disruptionsAllowed": 1}});
        assert_eq!(
            pod_disruption_budget(&pdb, now()),
            ["zk-pdb", "2", "N/A", "1", "2m"]
        );
        let percent = json!({"spec": {"maxUnavailable": "25%"}});
        assert_eq!(
            pod_disruption_budget(&percent, now())[1..4],
            ["N/A", "25%", "0"]
        );
    }

    #[test]
    fn a_controller_revision_names_its_controller() {
        let cr = json!({"metadata": {"name": "fluentd-6f7b", "creationTimestamp":
                                     "2024-06-01T11:58:00Z",
                                     "ownerReferences": [
                                         {"apiVersion": "v1", "kind": "Pod", "name": "x"},
                                         {"apiVersion": "apps/v1", "kind": "DaemonSet",
                                          "name": "fluentd", "controller": true}]},
                        "revision": 2});
        assert_eq!(
            controller_revision(&cr, now()),
            ["fluentd-6f7b", "daemonset.apps/fluentd", "2", "2m"]
        );
        let core = json!({"apiVersion": "v1", "kind": "ReplicationController", "name": "rc"});
        assert_eq!(controller_name(&core), "replicationcontroller/rc");
        assert_eq!(
            controller_revision(&json!({}), now())[1..3],
            ["<none>", "0"]
        );
    }

    #[test]
    fn a_finished_job_row() {
        let j = json!({"metadata": meta("batch-job"),
                       "spec": {"completions": 5, "template": template(),
                                "selector": {"matchLabels": {"job-name": "batch-job"}}},
                       "status": {"succeeded": 5, "startTime": "2024-06-01T11:00:00Z",
                                  "completionTime": "2024-06-01T11:02:30Z"}});
        assert_eq!(
            job(&j, now()),
            [
                "batch-job",
                "5/5",
                "2m30s",
                "2m",
                "kubia",
                "luksa/kubia:v1",
                "job-name=batch-job"
            ]
        );
    }

    #[test]
    fn job_completions_without_a_count_follow_parallelism() {
        let running = json!({"spec": {"parallelism": 2},
                             "status": {"succeeded": 1, "startTime": "2024-06-01T11:59:50Z"}});
        assert_eq!(job(&running, now())[1..3], ["1/1 of 2", "10s"]);
        assert_eq!(job(&json!({}), now())[1..3], ["0/1", ""]);
    }

    #[test]
    fn a_cron_job_row() {
        let cj = json!({"metadata": meta("batch-every-15"),
                        "spec": {"schedule": "0,15,30,45 * * * *", "suspend": false,
                                 "jobTemplate": {"spec": {"template": template()}}},
                        "status": {"active": [{"name": "j"}],
                                   "lastScheduleTime": "2024-06-01T11:45:00Z"}});
        assert_eq!(
            cron_job(&cj, now()),
            [
                "batch-every-15",
                "0,15,30,45 * * * *",
                "<none>",
                "False",
                "1",
                "15m",
                "2m",
                "kubia",
                "luksa/kubia:v1",
                "<none>"
            ]
        );
        let bare = cron_job(&json!({"spec": {"timeZone": "Etc/UTC"}}), now());
        assert_eq!(bare[2..6], ["Etc/UTC", "<unset>", "0", "<none>"]);
    }
}
