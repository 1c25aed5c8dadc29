//! `drain NODE`: cordon the node, then evict (or, with `--disable-eviction`, delete) every
//! pod on it and wait until each is gone, as `kubectl drain` does: evictions honour the
//! pods' PodDisruptionBudgets (a refused one is retried every 5 s), and drain refuses to
//! start while the node has pods whose loss cannot be undone — pods no controller manages
//! (unless `--force`), DaemonSet pods (unless `--ignore-daemonsets`; they are never
//! evicted), pods with emptyDir data (unless `--delete-emptydir-data`). Mirror pods are left
//! alone. `--timeout` bounds the whole wait.
//!
//! ```text
//!  cordon ─► list pods (spec.nodeName=NODE) ─► plan (pure): evict / skip / warn / refuse
//!        ─► each pod at once: evict ─ 429 ─► wait 5 s, again ─ ok ─► wait until gone
//!        ─► node/NODE drained
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use rudder_proto::api as pb;
use rudder_proto::client::ClientError;
use rudder_proto::objects::selector::LabelSelector;
use serde_json::Value;
use tokio::time::Instant;

use crate::commands::cordon::set_unschedulable;
use crate::commands::get::list_matching;
use crate::durations::parse_flag_duration;
use crate::session::{Session, Target};

/// How long a refused eviction waits before it is tried again (kubectl's).
const EVICTION_RETRY: Duration = Duration::from_secs(5);
/// How often a pod being deleted is looked at (kubectl's).
const DELETION_POLL: Duration = Duration::from_secs(1);
/// The annotation of a static pod's mirror, which the API cannot delete for good.
const MIRROR_POD: &str = "kubernetes.io/config.mirror";

const DAEMON_SET_FATAL: &str = "DaemonSet-managed Pods (use --ignore-daemonsets to ignore)";
const DAEMON_SET_WARNING: &str = "ignoring DaemonSet-managed Pods";
const LOCAL_STORAGE_FATAL: &str =
    "Pods with local storage (use --delete-emptydir-data to override)";
const LOCAL_STORAGE_WARNING: &str = "deleting Pods with local storage";
const UNMANAGED_FATAL: &str =
    "cannot delete Pods that declare no controller (use --force to override)";
const UNMANAGED_WARNING: &str = "deleting Pods that declare no controller";

#[derive(Args, Debug)]
pub struct DrainArgs {
    /// The node.
    node: String,
    /// Continue even if there are pods not managed by a ReplicationController, ReplicaSet,
    /// Job, DaemonSet or StatefulSet.
    #[arg(long)]
    force: bool,
    /// Ignore DaemonSet-managed pods.
    #[arg(long)]
    ignore_daemonsets: bool,
    /// Continue even if there are pods using emptyDir (local data that will be deleted when
    /// the node is drained).
    #[arg(long)]
    delete_emptydir_data: bool,
    /// Period of time in seconds given to each pod to terminate gracefully. If negative, the
    /// default value specified in the pod will be used.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    grace_period: i64,
    /// The length of time to wait before giving up (e.g. 90s, 5m); zero means infinite.
    #[arg(long, default_value = "0s")]
    timeout: String,
    /// Force drain to use delete, even if eviction is supported. This will bypass checking
    /// PodDisruptionBudgets, use with caution.
    #[arg(long)]
    disable_eviction: bool,
    /// Label selector to filter pods on the node.
    #[arg(long)]
    pod_selector: Option<String>,
    #[command(flatten)]
    target: Target,
}

/// The flags that decide what may go.
#[derive(Debug, Clone, Copy, Default)]
struct Filters {
    force: bool,
    ignore_daemonsets: bool,
    delete_emptydir_data: bool,
}

/// kubectl's `PodDeleteStatus` reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Okay,
    Skip,
    Warning,
    Error,
}

/// What drain does with one pod: delete (evict) it or not, and what to say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Verdict {
    delete: bool,
    reason: Reason,
    message: String,
}

impl Verdict {
    fn okay() -> Self {
        Self {
            delete: true,
            reason: Reason::Okay,
            message: String::new(),
        }
    }

    fn skip() -> Self {
        Self {
            delete: false,
            reason: Reason::Skip,
            message: String::new(),
        }
    }

    fn warning(delete: bool, message: &str) -> Self {
        Self {
            delete,
            reason: Reason::Warning,
            message: message.into(),
        }
    }

    fn error(message: &str) -> Self {
        Self {
            delete: false,
            reason: Reason::Error,
            message: message.into(),
        }
    }
}

/// Whether the DaemonSet a pod names could be read: it exists, it does not (the server's
/// message), or reading it failed (the message).
#[derive(Debug, Clone, PartialEq, Eq)]
enum DaemonSetLookup {
    Found,
    NotFound(String),
    Failed(String),
}

/// A pod's key: `namespace/name`, as kubectl lists pods in its messages.
fn key(pod: &Value) -> String {
    format!(
        "{}/{}",
        pod["metadata"]["namespace"].as_str().unwrap_or_default(),
        pod["metadata"]["name"].as_str().unwrap_or_default()
    )
}

fn is_finished(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

/// The owner reference marked `controller: true`: (kind, name).
fn controller(pod: &Value) -> Option<(&str, &str)> {
    pod["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|owner| owner["controller"] == Value::Bool(true))
        .map(|owner| {
            (
                owner["kind"].as_str().unwrap_or_default(),
                owner["name"].as_str().unwrap_or_default(),
            )
        })
}

/// The DaemonSet controlling `pod`, when that decides its fate: (namespace, name).
fn daemon_set_of(pod: &Value) -> Option<(String, String)> {
    match controller(pod) {
        Some(("DaemonSet", name)) if !is_finished(pod) => Some((
            pod["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            name.to_string(),
        )),
        _ => None,
    }
}

/// kubectl's filters, in its order, stopping at the first that keeps the pod: DaemonSet
/// pods, mirror pods, pods with local storage, pods no controller manages. As in kubectl,
/// the verdict is the last filter's: a warning of an earlier filter that let the pod go is
/// dropped when a later one has nothing to say. Pure.
fn verdict(
    pod: &Value,
    filters: Filters,
    daemon_sets: &BTreeMap<(String, String), DaemonSetLookup>,
) -> Verdict {
    let daemon_set = daemon_set_verdict(pod, filters, daemon_sets);
    if !daemon_set.delete {
        return daemon_set;
    }
    let mirror = mirror_verdict(pod);
    if !mirror.delete {
        return mirror;
    }
    let local_storage = local_storage_verdict(pod, filters);
    if !local_storage.delete {
        return local_storage;
    }
    unmanaged_verdict(pod, filters)
}

fn daemon_set_verdict(
    pod: &Value,
    filters: Filters,
    daemon_sets: &BTreeMap<(String, String), DaemonSetLookup>,
) -> Verdict {
    let Some(owner) = daemon_set_of(pod) else {
        return Verdict::okay();
    };
    match daemon_sets.get(&owner) {
        // An orphan of a deleted DaemonSet goes with --force.
        Some(DaemonSetLookup::NotFound(message)) if filters.force => {
            Verdict::warning(true, message)
        }
        Some(DaemonSetLookup::NotFound(message) | DaemonSetLookup::Failed(message)) => {
            Verdict::error(message)
        }
        None => Verdict::error("the pod's DaemonSet was not looked up"),
        Some(DaemonSetLookup::Found) if !filters.ignore_daemonsets => {
            Verdict::error(DAEMON_SET_FATAL)
        }
        Some(DaemonSetLookup::Found) => Verdict::warning(false, DAEMON_SET_WARNING),
    }
}

fn mirror_verdict(pod: &Value) -> Verdict {
    if pod["metadata"]["annotations"].get(MIRROR_POD).is_some() {
        Verdict::skip()
    } else {
        Verdict::okay()
    }
}

fn local_storage_verdict(pod: &Value, filters: Filters) -> Verdict {
    let has_empty_dir = pod["spec"]["volumes"]
        .as_array()
        .is_some_and(|volumes| volumes.iter().any(|v| v.get("emptyDir").is_some()));
    if !has_empty_dir || is_finished(pod) {
        return Verdict::okay();
    }
    if !filters.delete_emptydir_data {
        return Verdict::error(LOCAL_STORAGE_FATAL);
    }
    Verdict::warning(true, LOCAL_STORAGE_WARNING)
}

fn unmanaged_verdict(pod: &Value, filters: Filters) -> Verdict {
    if is_finished(pod) || controller(pod).is_some() {
        return Verdict::okay();
    }
    if filters.force {
        return Verdict::warning(true, UNMANAGED_WARNING);
    }
    Verdict::error(UNMANAGED_FATAL)
}

/// What draining the node's pods takes: the pods to evict, the warnings (kubectl's
/// `WARNING:` line) and the reasons it cannot start.
#[derive(Debug, Clone, Default, PartialEq)]
struct Plan {
    evict: Vec<Value>,
    warnings: String,
    errors: Vec<String>,
}

/// Messages with the pods they concern, in the order first met.
fn grouped<'a>(items: impl Iterator<Item = (&'a str, String)>) -> Vec<(&'a str, Vec<String>)> {
    let mut groups: Vec<(&str, Vec<String>)> = Vec::new();
    for (message, pod) in items {
        match groups.iter_mut().find(|(m, _)| *m == message) {
            Some((_, pods)) => pods.push(pod),
            None => groups.push((message, vec![pod])),
        }
    }
    groups
}

/// kubectl's `GetPodsForDeletion` over the pods listed. Pure.
fn plan(
    pods: &[Value],
    filters: Filters,
    daemon_sets: &BTreeMap<(String, String), DaemonSetLookup>,
) -> Plan {
    let verdicts: Vec<(Verdict, &Value)> = pods
        .iter()
        .map(|pod| (verdict(pod, filters, daemon_sets), pod))
        .collect();
    let of = |reason: Reason| {
        verdicts
            .iter()
            .filter(move |(v, _)| v.reason == reason)
            .map(|(v, pod)| (v.message.as_str(), key(pod)))
    };
    let warnings = grouped(of(Reason::Warning))
        .into_iter()
        .map(|(message, pods)| format!("{message}: {}", pods.join(", ")))
        .collect::<Vec<_>>()
        .join("; ");
    let errors = grouped(of(Reason::Error))
        .into_iter()
        .map(|(message, pods)| {
            let message = if message.is_empty() {
                "unexpected error"
            } else {
                message
            };
            if message.to_lowercase().starts_with("cannot delete") {
                format!("{message}: {}", pods.join(", "))
            } else {
                format!("cannot delete {message}: {}", pods.join(", "))
            }
        })
        .collect();
    Plan {
        evict: verdicts
            .iter()
            .filter(|(v, _)| v.delete)
            .map(|(_, pod)| (*pod).clone())
            .collect(),
        warnings,
        errors,
    }
}

/// apimachinery's `NewAggregate(...).Error()`: one error as itself, several in brackets.
fn aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// A duration as Go prints one (`30s`, `1m30s`, `1h0m0s`, `500ms`), for kubectl's messages.
fn go_duration(duration: Duration) -> String {
    let total = duration.as_secs();
    let millis = duration.subsec_millis();
    if total == 0 {
        return format!("{millis}ms");
    }
    let seconds = if millis == 0 {
        format!("{}s", total % 60)
    } else {
        let fraction = format!("{millis:03}");
        format!("{}.{}s", total % 60, fraction.trim_end_matches('0'))
    };
    match (total / 3600, total % 3600 / 60) {
        (0, 0) => seconds,
        (0, minutes) => format!("{minutes}m{seconds}"),
        (hours, minutes) => format!("{hours}h{minutes}m{seconds}"),
    }
}

/// `--timeout`: `None` for zero (no limit).
fn parse_timeout(value: &str) -> anyhow::Result<Option<Duration>> {
    let digits = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    if !digits.is_empty() && digits.bytes().all(|b| b == b'0') {
        return Ok(None);
    }
    parse_flag_duration("--timeout", value, "s").map(Some)
}

/// What a server error says, without the CLI's `Error from server (...)` framing (kubectl
/// prints the Status message).
fn server_message(error: &ClientError) -> String {
    match error {
        ClientError::Api { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

pub async fn drain(args: DrainArgs) -> anyhow::Result<()> {
    let timeout = parse_timeout(&args.timeout)?;
    let pod_selector = args.pod_selector.clone().unwrap_or_default();
    if LabelSelector::parse(&pod_selector).is_err() {
        bail!("--pod-selector=<pod_selector> must be a valid label selector");
    }
    let session = Session::connect(&args.target).await?;
    let node = args.node.as_str();
    // The node must exist (kubectl resolves it first); a failed cordon is reported and the
    // drain goes on, as kubectl's does.
    session.client.get_object("nodes", "", node).await?;
    match set_unschedulable(&session, node, true).await {
        Ok(line) => println!("{line}"),
        Err(error) => eprintln!("error: {error:#}"),
    }
    let filters = Filters {
        force: args.force,
        ignore_daemonsets: args.ignore_daemonsets,
        delete_emptydir_data: args.delete_emptydir_data,
    };
    let drainer = Drainer {
        session: &session,
        node,
        filters,
        pod_selector: &pod_selector,
        grace: (args.grace_period >= 0).then_some(args.grace_period),
        timeout,
        deadline: timeout.map(|t| Instant::now() + t),
        evict: !args.disable_eviction,
    };
    match drainer.run().await {
        Ok(()) => {
            println!("node/{node} drained");
            Ok(())
        }
        Err(fatal) => {
            eprintln!("error: unable to drain node {node:?}, aborting command...\n");
            eprintln!("There are pending nodes to be drained:\n {node}");
            Err(fatal)
        }
    }
}

/// One node's drain.
struct Drainer<'a> {
    session: &'a Session,
    node: &'a str,
    filters: Filters,
    pod_selector: &'a str,
    grace: Option<i64>,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    evict: bool,
}

impl Drainer<'_> {
    /// kubectl's `deleteOrEvictPodsSimple`.
    async fn run(&self) -> anyhow::Result<()> {
        let plan = self.plan().await?;
        if !plan.errors.is_empty() {
            bail!("{}", aggregate(&plan.errors));
        }
        if !plan.warnings.is_empty() {
            eprintln!("WARNING: {}", plan.warnings);
        }
        let outcome = if self.evict {
            self.evict_all(&plan.evict).await
        } else {
            self.delete_all(&plan.evict).await
        };
        let Err(error) = outcome else {
            return Ok(());
        };
        // What is still there, as kubectl lists it before giving up.
        if let Ok(pending) = self.plan().await {
            if !pending.evict.is_empty() {
                eprintln!(
                    "There are pending pods in node {:?} when an error occurred: {error}",
                    self.node
                );
                for pod in &pending.evict {
                    eprintln!(
                        "pod/{}",
                        pod["metadata"]["name"].as_str().unwrap_or_default()
                    );
                }
            }
        }
        Err(error)
    }

    /// The node's pods (matching `--pod-selector`), judged.
    async fn plan(&self) -> anyhow::Result<Plan> {
        let pods_kind = self.session.kind("pods")?.clone();
        let fields = format!("spec.nodeName={}", self.node);
        let (pods, _) = list_matching(
            self.session,
            &pods_kind,
            "",
            self.pod_selector,
            &fields,
            500,
        )
        .await?;
        let mut daemon_sets = BTreeMap::new();
        for owner in pods.iter().filter_map(daemon_set_of) {
            if daemon_sets.contains_key(&owner) {
                continue;
            }
            let (namespace, name) = &owner;
            let found = self
                .session
                .client
                .get_object("daemonsets", namespace, name)
                .await;
            let lookup = match found {
                Ok(_) => DaemonSetLookup::Found,
                Err(error) if error.is_not_found() => {
                    DaemonSetLookup::NotFound(server_message(&error))
                }
                Err(error) => DaemonSetLookup::Failed(server_message(&error)),
            };
            daemon_sets.insert(owner, lookup);
        }
        Ok(plan(&pods, self.filters, &daemon_sets))
    }

    /// Time left before `--timeout`; `None` without one.
    fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }

    fn timed_out(&self) -> bool {
        self.remaining().is_some_and(|left| left.is_zero())
    }

    fn timeout_text(&self) -> String {
        self.timeout.map(go_duration).unwrap_or_default()
    }

    /// kubectl's `evictPods`: every pod at once; the errors together.
    async fn evict_all(&self, pods: &[Value]) -> anyhow::Result<()> {
        let outcomes = futures::future::join_all(pods.iter().map(|pod| self.evict_one(pod))).await;
        let errors: Vec<String> = outcomes.into_iter().filter_map(Result::err).collect();
        if errors.is_empty() {
            Ok(())
        } else {
            bail!("{}", aggregate(&errors))
        }
    }

    /// Evicts one pod, again every 5 s while its disruption budget refuses, then waits
    /// until it is gone.
    async fn evict_one(&self, pod: &Value) -> Result<(), String> {
        let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        loop {
            println!("evicting pod {namespace}/{name}");
            if self.timed_out() {
                let timeout = self.timeout_text();
                return Err(format!(
                    "error when evicting pods/{name:?} -n {namespace:?}: global timeout \
                     reached: {timeout}"
                ));
            }
            let request = pb::EvictRequest {
                namespace: namespace.into(),
                name: name.into(),
                grace_period_seconds: self.grace,
                ..Default::default()
            };
            match self.session.client.evict(request).await {
                Ok(_) => break,
                // Gone already: nothing to wait for.
                Err(error) if error.is_not_found() => return Ok(()),
                Err(error) if error.is_too_many_requests() => {
                    eprintln!(
                        "error when evicting pods/{name:?} -n {namespace:?} (will retry after \
                         5s): {}",
                        server_message(&error)
                    );
                    let pause = self
                        .remaining()
                        .map_or(EVICTION_RETRY, |left| left.min(EVICTION_RETRY));
                    tokio::time::sleep(pause).await;
                }
                Err(error) => {
                    return Err(format!(
                        "error when evicting pods/{name:?} -n {namespace:?}: {}",
                        server_message(&error)
                    ))
                }
            }
        }
        self.wait_until_gone(pod, "evicted").await.map_err(|error| {
            format!(
                "error when waiting for pod {name:?} in namespace {namespace:?} to terminate: \
                 {error}"
            )
        })
    }

    /// kubectl's `deletePods`: every pod deleted, then waited for.
    async fn delete_all(&self, pods: &[Value]) -> anyhow::Result<()> {
        for pod in pods {
            let request = pb::DeleteRequest {
                resource: "pods".into(),
                namespace: pod["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
                name: pod["metadata"]["name"].as_str().unwrap_or_default().into(),
                grace_period_seconds: self.grace,
                ..Default::default()
            };
            match self.session.client.delete_object(request).await {
                Ok(_) => {}
                Err(error) if error.is_not_found() => {}
                Err(error) => return Err(error.into()),
            }
        }
        let waits = pods.iter().map(|pod| self.wait_until_gone(pod, "deleted"));
        let errors: Vec<String> = futures::future::join_all(waits)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect();
        match errors.first() {
            None => Ok(()),
            Some(first) => bail!("{first}"),
        }
    }

    /// Waits until `pod` is gone (or another pod took its name: a different uid), checking
    /// every second; prints `pod/NAME <verb>` then.
    async fn wait_until_gone(&self, pod: &Value, verb: &str) -> Result<(), String> {
        let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let uid = &pod["metadata"]["uid"];
        loop {
            match self
                .session
                .client
                .get_object("pods", namespace, name)
                .await
            {
                Err(error) if error.is_not_found() => break,
                Ok(current) if current["metadata"]["uid"] != *uid => break,
                Ok(_) => {}
                Err(error) => return Err(server_message(&error)),
            }
            if self.timed_out() {
                return Err(format!("global timeout reached: {}", self.timeout_text()));
            }
            let pause = self
                .remaining()
                .map_or(DELETION_POLL, |left| left.min(DELETION_POLL));
            tokio::time::sleep(pause).await;
        }
        println!("pod/{name} {verb}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(name: &str, owner: Option<&str>, extra: Value) -> Value {
        let owners: Vec<Value> = owner
            .into_iter()
            .map(|kind| json!({ "kind": kind, "name": "owner", "controller": true }))
            .collect();
        let mut pod = json!({
            "metadata": { "name": name, "namespace": "default", "ownerReferences": owners },
            "spec": { "nodeName": "n1" },
            "status": { "phase": "Running" }
        });
        if let (Some(pod), Some(extra)) = (pod.as_object_mut(), extra.as_object()) {
            for (field, value) in extra {
                pod.insert(field.clone(), value.clone());
            }
        }
        pod
    }

    fn found() -> BTreeMap<(String, String), DaemonSetLookup> {
        BTreeMap::from([(
            ("default".to_string(), "owner".to_string()),
            DaemonSetLookup::Found,
        )])
    }

    fn names(plan: &Plan) -> Vec<&str> {
        plan.evict
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap())
            .collect()
    }

    fn with_empty_dir(name: &str) -> Value {
        pod(
            name,
            Some("ReplicaSet"),
            json!({ "spec": { "volumes": [{ "name": "cache", "emptyDir": {} }] } }),
        )
    }

    #[test]
    fn drain_refuses_what_cannot_come_back_unless_told_and_says_so_like_kubectl() {
        let pods = [
            pod("web", Some("ReplicaSet"), json!({})),
            pod("lone", None, json!({})),
            pod("agent", Some("DaemonSet"), json!({})),
            with_empty_dir("cache"),
            pod("lone-2", None, json!({})),
        ];
        let refused = plan(&pods, Filters::default(), &found());
        assert_eq!(
            refused.errors,
            [
                "cannot delete Pods that declare no controller (use --force to override): \
                 default/lone, default/lone-2",
                "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): \
                 default/agent",
                "cannot delete Pods with local storage (use --delete-emptydir-data to \
                 override): default/cache",
            ]
        );
        let all = Filters {
            force: true,
            ignore_daemonsets: true,
            delete_emptydir_data: true,
        };
        let allowed = plan(&pods, all, &found());
        assert!(allowed.errors.is_empty());
        assert_eq!(names(&allowed), ["web", "lone", "cache", "lone-2"]);
        // The local-storage warning is dropped by the next filter, as in kubectl.
        assert_eq!(
            allowed.warnings,
            "deleting Pods that declare no controller: default/lone, default/lone-2; ignoring \
             DaemonSet-managed Pods: default/agent"
        );
    }

    #[test]
    fn mirror_and_finished_pods_and_orphans_of_deleted_daemon_sets() {
        let mirror = pod(
            "static-web",
            None,
            json!({ "metadata": { "name": "static-web", "namespace": "default",
                                  "annotations": { "kubernetes.io/config.mirror": "x" } } }),
        );
        let finished = pod("done", None, json!({ "status": { "phase": "Succeeded" } }));
        let orphan = pod("agent", Some("DaemonSet"), json!({}));
        let gone = BTreeMap::from([(
            ("default".to_string(), "owner".to_string()),
            DaemonSetLookup::NotFound("daemonsets.apps \"owner\" not found".into()),
        )]);
        let pods = [mirror, finished, orphan];
        let plain = plan(&pods, Filters::default(), &gone);
        assert_eq!(names(&plain), ["done"]);
        assert_eq!(
            plain.errors,
            ["cannot delete daemonsets.apps \"owner\" not found: default/agent"]
        );
        let forced = Filters {
            force: true,
            ..Filters::default()
        };
        let forced = plan(&pods, forced, &gone);
        assert_eq!(names(&forced), ["done", "agent"]);
        // kubectl's orphan warning is dropped by the filters after it, as in kubectl.
        assert_eq!(forced.warnings, "");
    }

    #[test]
    fn errors_aggregate_and_durations_print_as_go_prints_them() {
        assert_eq!(aggregate(&["a".into()]), "a");
        assert_eq!(aggregate(&["a".into(), "b".into()]), "[a, b]");
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(parse_timeout("0s").unwrap(), None);
        assert_eq!(parse_timeout("0").unwrap(), None);
        assert_eq!(parse_timeout("2m").unwrap(), Some(Duration::from_secs(120)));
        assert!(parse_timeout("soon").is_err());
    }
}
