//! `drain`'s pure part: which of a node's pods go, what drain says about them, and how it
//! reads an eviction's refusal, in kubectl v1.32's words (`k8s.io/kubectl/pkg/drain` and
//! `pkg/cmd/drain` at v0.32). No I/O: the shell (`drain.rs`) lists, looks up, evicts and
//! waits, and prints what these functions return.

use std::collections::BTreeMap;
use std::time::Duration;

use rudder_proto::client::ClientError;
use serde_json::Value;

use crate::durations::parse_flag_duration;

/// How long a refused eviction waits before it is tried again (kubectl's).
pub const EVICTION_RETRY: Duration = Duration::from_secs(5);
/// How often a pod being deleted is looked at (kubectl's).
pub const DELETION_POLL: Duration = Duration::from_secs(1);
/// The annotation of a static pod's mirror, which the API cannot delete for good.
const MIRROR_POD: &str = "kubernetes.io/config.mirror";

const DAEMON_SET_FATAL: &str = "DaemonSet-managed Pods (use --ignore-daemonsets to ignore)";
const DAEMON_SET_WARNING: &str = "ignoring DaemonSet-managed Pods";
const LOCAL_STORAGE_FATAL: &str =
    "Pods with local storage (use --delete-emptydir-data to override)";
const LOCAL_STORAGE_WARNING: &str = "deleting Pods with local storage";
/// kubectl v1.32 prefixes every refusal with "cannot delete", this one included, so it says
/// "cannot delete cannot delete Pods that declare no controller ..." (kubectl 1.36 dropped
/// the inner words, commit f60ea778a); v1.32's text is the one printed here.
const UNMANAGED_FATAL: &str =
    "cannot delete Pods that declare no controller (use --force to override)";
const UNMANAGED_WARNING: &str = "deleting Pods that declare no controller";

/// The flags that decide what may go.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filters {
    pub force: bool,
    pub ignore_daemonsets: bool,
    pub delete_emptydir_data: bool,
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
pub enum DaemonSetLookup {
    Found,
    NotFound(String),
    Failed(String),
}

/// The DaemonSets the pods name, by (namespace, name), as looked up.
pub type DaemonSets = BTreeMap<(String, String), DaemonSetLookup>;

/// A pod's key: `namespace/name`, as kubectl lists pods in its messages.
fn key(pod: &Value) -> String {
    format!("{}/{}", namespace_of(pod), name_of(pod))
}

pub fn namespace_of(pod: &Value) -> &str {
    pod["metadata"]["namespace"].as_str().unwrap_or_default()
}

pub fn name_of(pod: &Value) -> &str {
    pod["metadata"]["name"].as_str().unwrap_or_default()
}

pub fn uid_of(pod: &Value) -> &str {
    pod["metadata"]["uid"].as_str().unwrap_or_default()
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
pub fn daemon_set_of(pod: &Value) -> Option<(String, String)> {
    match controller(pod) {
        Some(("DaemonSet", name)) if !is_finished(pod) => {
            Some((namespace_of(pod).to_string(), name.to_string()))
        }
        _ => None,
    }
}

/// kubectl's filters, in its order, stopping at the first that keeps the pod: DaemonSet
/// pods, mirror pods, pods with local storage, pods no controller manages. As in kubectl,
/// the verdict is the last filter's: a warning of an earlier filter that let the pod go is
/// dropped when a later one has nothing to say.
fn verdict(pod: &Value, filters: Filters, daemon_sets: &DaemonSets) -> Verdict {
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

fn daemon_set_verdict(pod: &Value, filters: Filters, daemon_sets: &DaemonSets) -> Verdict {
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
/// `Warning:` line) and the reasons it cannot start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub evict: Vec<Value>,
    pub warnings: String,
    pub errors: Vec<String>,
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

/// kubectl's `GetPodsForDeletion` over the pods listed.
pub fn plan(pods: &[Value], filters: Filters, daemon_sets: &DaemonSets) -> Plan {
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
            format!("cannot delete {message}: {}", pods.join(", "))
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

/// apimachinery's `NewAggregate(...).Error()`: one error as itself, several (each once) in
/// brackets.
pub fn aggregate(errors: &[String]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for error in errors {
        if !seen.contains(&error.as_str()) {
            seen.push(error);
        }
    }
    match seen[..] {
        [one] => one.to_string(),
        _ => format!("[{}]", seen.join(", ")),
    }
}

/// A duration as Go prints one (`30s`, `1m30s`, `1h0m0s`, `500ms`), for kubectl's messages.
pub fn go_duration(duration: Duration) -> String {
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
pub fn parse_timeout(value: &str) -> anyhow::Result<Option<Duration>> {
    let digits = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    if !digits.is_empty() && digits.bytes().all(|b| b == b'0') {
        return Ok(None);
    }
    parse_flag_duration("--timeout", value, "s").map(Some)
}

/// What a server error says, without the CLI's `Error from server (...)` framing (kubectl
/// prints the `Status`'s message: a `StatusError`'s `Error()`).
pub fn server_message(error: &ClientError) -> String {
    match error {
        ClientError::Api { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// What drain does once an eviction request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterEviction {
    /// The pod is gone: nothing to evict or wait for.
    Gone,
    /// Refused for now: print this line, wait [`EVICTION_RETRY`], try again. kubectl retries
    /// a budget's 429; a budget that kept changing (504) is retried too (kubectl gives up).
    Retry(String),
    /// A precondition failed (drain sends the pod's uid): a pod of another uid under its
    /// name, or none, means the pod drain meant is gone; look.
    LookAgain,
    /// This pod's eviction fails with this error.
    Fail(String),
}

/// kubectl's reading of an eviction's error for pod `namespace/name`.
pub fn after_eviction_error(namespace: &str, name: &str, error: &ClientError) -> AfterEviction {
    if error.is_not_found() {
        AfterEviction::Gone
    } else if error.is_too_many_requests() || error.is_timeout() {
        AfterEviction::Retry(format!(
            "error when evicting pods/{name:?} -n {namespace:?} (will retry after {}): {}",
            go_duration(EVICTION_RETRY),
            server_message(error)
        ))
    } else if error.is_conflict() {
        AfterEviction::LookAgain
    } else {
        AfterEviction::Fail(eviction_failed(namespace, name, &server_message(error)))
    }
}

/// kubectl's error for a pod whose eviction failed with `error`.
pub fn eviction_failed(namespace: &str, name: &str, error: &str) -> String {
    format!("error when evicting pods/{name:?} -n {namespace:?}: {error}")
}

/// kubectl's error for a pod whose eviction was still refused when `--timeout` ran out.
pub fn eviction_timed_out(namespace: &str, name: &str, timeout: Duration) -> String {
    eviction_failed(
        namespace,
        name,
        &format!("global timeout reached: {}", go_duration(timeout)),
    )
}

/// What waiting for a pod's deletion says when `--timeout` runs out (Go's
/// `context.DeadlineExceeded`, which kubectl's poll returns).
pub const DEADLINE_EXCEEDED: &str = "context deadline exceeded";

/// kubectl's error for an evicted pod that was not seen gone.
pub fn wait_failed(namespace: &str, name: &str, error: &str) -> String {
    format!("error when waiting for pod {name:?} in namespace {namespace:?} to terminate: {error}")
}

/// Why draining a node failed, as kubectl carries it to its exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Errors kubectl aggregates (the plan's refusals, the evictions' errors, a failed
    /// list): one line each when it exits.
    Aggregate(Vec<String>),
    /// One error kubectl does not aggregate (a deletion's, a wait's): `text` as its `%s`
    /// shows it, `exit` as the last line (`error: ...`, or the server's
    /// `Error from server (...): ...`).
    Single { text: String, exit: String },
}

impl Failure {
    /// A failure that is not the server's: `error: ...` when kubectl exits.
    pub fn single(text: impl Into<String>) -> Self {
        let text = text.into();
        Self::Single {
            exit: format!("error: {text}"),
            text,
        }
    }

    /// The server's refusal: its message, and kubectl's `Error from server (...)` line.
    pub fn server(error: &ClientError) -> Self {
        Self::Single {
            text: server_message(error),
            exit: error.to_string(),
        }
    }

    /// The error's text, as Go's `%v` of it prints it.
    pub fn text(&self) -> String {
        match self {
            Self::Aggregate(errors) => aggregate(errors),
            Self::Single { text, .. } => text.clone(),
        }
    }

    /// kubectl's `CheckErr` of it: an aggregate one line per error, with no prefix.
    fn exit_lines(&self) -> String {
        match self {
            Self::Aggregate(errors) => errors.join("\n"),
            Self::Single { exit, .. } => exit.clone(),
        }
    }
}

/// kubectl's stderr once a drain failed, before the failure's own lines: the pods the node
/// still has (when evicting or deleting failed).
pub fn pending_pods(node: &str, failure: &Failure, pending: &[Value]) -> String {
    if pending.is_empty() {
        return String::new();
    }
    let mut text = format!(
        "There are pending pods in node {node:?} when an error occurred: {}\n",
        failure.text()
    );
    for pod in pending {
        text.push_str(&format!("pod/{}\n", name_of(pod)));
    }
    text
}

/// kubectl's stderr once draining `node` failed with `failure`, through its exit.
pub fn failure_report(node: &str, failure: &Failure) -> String {
    format!(
        "error: unable to drain node {node:?} due to error: {}, continuing command...\nThere \
         are pending nodes to be drained:\n {node}\n{}\n",
        failure.text(),
        failure.exit_lines()
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tonic::Code;

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

    fn found() -> DaemonSets {
        BTreeMap::from([(
            ("default".to_string(), "owner".to_string()),
            DaemonSetLookup::Found,
        )])
    }

    fn names(plan: &Plan) -> Vec<&str> {
        plan.evict.iter().map(name_of).collect()
    }

    fn with_empty_dir(name: &str) -> Value {
        pod(
            name,
            Some("ReplicaSet"),
            json!({ "spec": { "volumes": [{ "name": "cache", "emptyDir": {} }] } }),
        )
    }

    #[test]
    fn drain_refuses_what_cannot_come_back_unless_told_and_says_so_like_kubectl_1_32() {
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
                "cannot delete cannot delete Pods that declare no controller (use --force to \
                 override): default/lone, default/lone-2",
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
        assert_eq!(aggregate(&["a".into(), "a".into()]), "a");
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

    fn refused(reason: &str, message: &str) -> ClientError {
        ClientError::Api {
            code: Code::Unknown,
            reason: reason.into(),
            message: message.into(),
            status: String::new(),
        }
    }

    #[test]
    fn budget_refusals_are_retried_a_changed_pod_is_looked_at_and_the_rest_fail() {
        let violates = "Cannot evict pod as it would violate the pod's disruption budget.";
        assert_eq!(
            after_eviction_error("default", "web-0", &refused("TooManyRequests", violates)),
            AfterEviction::Retry(format!(
                "error when evicting pods/\"web-0\" -n \"default\" (will retry after 5s): \
                 {violates}"
            ))
        );
        let contended = "Timeout: couldn't update PodDisruptionBudget \"web\" due to conflicts";
        assert!(matches!(
            after_eviction_error("default", "web-0", &refused("Timeout", contended)),
            AfterEviction::Retry(line) if line.ends_with(contended)
        ));
        assert_eq!(
            after_eviction_error("default", "web-0", &refused("NotFound", "gone")),
            AfterEviction::Gone
        );
        assert_eq!(
            after_eviction_error("default", "web-0", &refused("Conflict", "the UID ...")),
            AfterEviction::LookAgain
        );
        let failed = "error when evicting pods/\"web-0\" -n \"default\": two budgets";
        assert_eq!(
            after_eviction_error("default", "web-0", &refused("", "two budgets")),
            AfterEviction::Fail(failed.into())
        );
        assert_eq!(
            eviction_timed_out("default", "web-0", Duration::from_secs(120)),
            "error when evicting pods/\"web-0\" -n \"default\": global timeout reached: 2m0s"
        );
    }

    #[test]
    fn a_failed_drain_reports_as_kubectl_1_32_does() {
        let refused = Failure::Aggregate(vec![
            "cannot delete A: default/a".into(),
            "cannot delete B: default/b".into(),
        ]);
        assert_eq!(
            failure_report("h-0", &refused),
            "error: unable to drain node \"h-0\" due to error: [cannot delete A: default/a, \
             cannot delete B: default/b], continuing command...\nThere are pending nodes to be \
             drained:\n h-0\ncannot delete A: default/a\ncannot delete B: default/b\n"
        );
        let waited = Failure::single(DEADLINE_EXCEEDED);
        assert_eq!(
            failure_report("h-0", &waited),
            "error: unable to drain node \"h-0\" due to error: context deadline exceeded, \
             continuing command...\nThere are pending nodes to be drained:\n h-0\nerror: \
             context deadline exceeded\n"
        );
        let pending = [pod("web-0", Some("ReplicaSet"), json!({}))];
        assert_eq!(
            pending_pods("h-0", &waited, &pending),
            "There are pending pods in node \"h-0\" when an error occurred: context deadline \
             exceeded\npod/web-0\n"
        );
        assert_eq!(pending_pods("h-0", &waited, &[]), "");
    }
}
