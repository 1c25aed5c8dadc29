//! [`Validate`](super::Validate) for every kind the API serves: the kind's own fields, with
//! Kubernetes' rules, JSON paths and wording (`pkg/apis/{core,apps,batch}/validation`).
//!
//! - `containers`: containers, ports, env, volume mounts; `resources`: requests and
//!   limits; `probes`: probes and lifecycle hooks;
//! - `pod_spec`: pod specs and pod templates; `pod`: Pod itself (create and update);
//! - `workloads`: what pod controllers share, ReplicationController, ReplicaSet;
//! - `deployment`, `daemon_set`, `stateful_set`: the other apps kinds;
//! - `batch`: Job and CronJob, with `cron` for schedules;
//! - `service` and `endpoints`;
//! - `config`: ConfigMap and Secret;
//! - `cluster`: Namespace, Node, Event, Lease;
//! - `storage`: PersistentVolume and PersistentVolumeClaim; `storage_class`: StorageClass;
//! - `scheduling`: PriorityClass;
//! - `rbac`: Role, ClusterRole, RoleBinding, ClusterRoleBinding;
//! - `service_account`: ServiceAccount (nothing beyond its metadata);
//! - `disruption`: PodDisruptionBudget (and the status evictions and its controller write).
//!
//! Metadata is [`super::meta`]'s job. A field left out that the defaults fill in (a port's
//! protocol, a pod's restart policy, a strategy's type) is not an error here, so objects
//! validate the same before and after [`super::ApplyDefaults`].

mod batch;
mod cluster;
mod config;
mod containers;
mod cron;
mod daemon_set;
mod deployment;
mod disruption;
mod endpoint_slice;
mod endpoints;
mod pod;
mod pod_spec;
mod probes;
mod rbac;
mod resources;
mod scheduling;
mod service;
mod service_account;
mod stateful_set;
mod storage;
mod storage_class;
mod workloads;

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rudder_proto::objects::selector::LabelSelector;
use serde::Serialize;

use super::quantity::Quantity;
use super::selector::validate_selector;
use super::FieldError;

/// Kubernetes' `IsNegativeErrorMsg`.
const NOT_NEGATIVE: &str = "must be greater than or equal to 0";
/// Kubernetes' `FieldImmutableErrorMsg`.
const IMMUTABLE: &str = "field is immutable";
/// Protocols a port may use, in the order Kubernetes lists them.
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

/// `value` as users wrote it, for an error message: a string as itself, anything else as
/// compact JSON. Falls back to `Debug`, which cannot fail.
fn json<T: Serialize + fmt::Debug>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(other) => other.to_string(),
        Err(_) => format!("{value:?}"),
    }
}

/// A field at `path` that must not be negative.
fn non_negative(errs: &mut Vec<FieldError>, path: impl Into<String>, value: Option<i64>) {
    if let Some(value) = value.filter(|v| *v < 0) {
        errs.push(FieldError::invalid(path, value, NOT_NEGATIVE));
    }
}

/// A field at `path` that must be positive when set.
fn positive(errs: &mut Vec<FieldError>, path: impl Into<String>, value: Option<i64>) {
    if let Some(value) = value.filter(|v| *v <= 0) {
        errs.push(FieldError::invalid(path, value, "must be greater than 0"));
    }
}

/// Kubernetes' `ValidateImmutableField`: an Invalid error showing the new value.
fn immutable<T: PartialEq + Serialize + fmt::Debug>(
    errs: &mut Vec<FieldError>,
    path: impl Into<String>,
    new: &T,
    old: &T,
) {
    if new != old {
        errs.push(FieldError::invalid(path, json(new), IMMUTABLE));
    }
}

/// Each of `messages` as an Invalid error at `path` showing `value`.
fn each_invalid(errs: &mut Vec<FieldError>, path: &str, value: &str, messages: Vec<String>) {
    errs.extend(
        messages
            .into_iter()
            .map(|m| FieldError::invalid(path, value, m)),
    );
}

/// An enumerated string field: `None` is left to the defaults, `""` is missing, anything
/// else must be one of `allowed`.
fn one_of(
    errs: &mut Vec<FieldError>,
    path: impl Into<String>,
    value: Option<&str>,
    allowed: &[&str],
) {
    match value {
        None => {}
        Some("") => errs.push(FieldError::required(path, "")),
        Some(v) if allowed.contains(&v) => {}
        Some(v) => errs.push(FieldError::not_supported(path, v, allowed)),
    }
}

/// Kubernetes' `IsValidPortNum` at `path`.
fn port_number(errs: &mut Vec<FieldError>, path: impl Into<String>, port: i32) {
    if !(1..=65535).contains(&port) {
        errs.push(FieldError::invalid(
            path,
            port,
            "must be between 1 and 65535, inclusive",
        ));
    }
}

/// A port given as a number or as the name of a container port (`targetPort`, probes).
fn port_number_or_name(errs: &mut Vec<FieldError>, path: &str, port: &IntOrString) {
    match port {
        IntOrString::Int(number) => port_number(errs, path, *number),
        IntOrString::String(name) => each_invalid(errs, path, name, super::names::port_name(name)),
    }
}

/// A workload's selector, checked and parsed. Kubernetes requires one and refuses the empty
/// selector (it would adopt every pod in the namespace); both show up here as "missing",
/// since an absent selector deserializes as the empty one.
fn required_selector(
    errs: &mut Vec<FieldError>,
    selector: &metav1::LabelSelector,
    path: &str,
) -> Option<LabelSelector> {
    let empty = selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty);
    if empty {
        errs.push(FieldError::required(path, ""));
        return None;
    }
    match validate_selector(selector, path) {
        Ok(parsed) => Some(parsed),
        Err(problems) => {
            errs.extend(problems);
            None
        }
    }
}

/// Kubernetes' check that a controller's selector selects the pods its template makes.
fn selector_matches_template(
    errs: &mut Vec<FieldError>,
    selector: &LabelSelector,
    template_labels: Option<&BTreeMap<String, String>>,
    template_path: &str,
) {
    let empty = BTreeMap::new();
    let labels = template_labels.unwrap_or(&empty);
    if !selector.is_everything() && !selector.matches(labels) {
        errs.push(FieldError::invalid(
            format!("{template_path}.metadata.labels"),
            json(labels),
            "`selector` does not match template `labels`",
        ));
    }
}

/// A resource quantity at `path`, parsed; an unparseable one is reported and skipped.
fn quantity(errs: &mut Vec<FieldError>, path: &str, text: &str) -> Option<Quantity> {
    match Quantity::parse(text) {
        Ok(q) => Some(q),
        Err(e) => {
            errs.push(FieldError::invalid(path, text, e.to_string()));
            None
        }
    }
}

#[cfg(test)]
mod test_util {
    use serde::de::DeserializeOwned;

    use super::super::FieldError;

    /// A test object from JSON; panics (failing the test) if the JSON does not fit the type.
    pub fn from_json<T: DeserializeOwned>(value: serde_json::Value) -> T {
        serde_json::from_value(value).expect("test object deserializes")
    }

    /// `value` changed by `change`, then deserialized as a test object.
    pub fn edit<T: DeserializeOwned>(
        mut value: serde_json::Value,
        change: impl FnOnce(&mut serde_json::Value),
    ) -> T {
        change(&mut value);
        from_json(value)
    }

    /// The pod template of the nginx examples in the Kubernetes docs.
    pub fn nginx_template() -> serde_json::Value {
        serde_json::json!({
            "metadata": {"labels": {"app": "nginx"}},
            "spec": {"containers": [{
                "name": "nginx", "image": "nginx:1.14.2", "ports": [{"containerPort": 80}]
            }]}
        })
    }

    /// A web pod like the Kubernetes docs' examples, with volumes, a node selector and a
    /// toleration.
    pub fn web_pod() -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "containers": [{
                    "name": "nginx",
                    "image": "nginx:1.14.2",
                    "ports": [{"containerPort": 80}],
                    "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]
                }],
                "initContainers": [{"name": "init", "image": "busybox:1.36"}],
                "volumes": [
                    {"name": "cache", "emptyDir": {}},
                    {"name": "config", "configMap": {"name": "web-config"}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "web-data"}}
                ],
                "restartPolicy": "Always",
                "dnsPolicy": "ClusterFirst",
                "terminationGracePeriodSeconds": 30,
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "serviceAccountName": "default",
                "tolerations": [{
                    "key": "node.kubernetes.io/not-ready", "operator": "Exists",
                    "effect": "NoExecute", "tolerationSeconds": 300
                }]
            }
        })
    }

    pub fn paths(errs: &[FieldError]) -> Vec<&str> {
        errs.iter().map(|e| e.path.as_str()).collect()
    }

    /// The one error at `path`; fails the test when there is none, or more than one error.
    pub fn only<'a>(errs: &'a [FieldError], path: &str) -> &'a FieldError {
        assert_eq!(paths(errs), [path], "{errs:#?}");
        &errs[0]
    }
}

#[cfg(test)]
mod tests {
    use super::super::FieldErrorKind;
    use super::*;

    #[test]
    fn one_of_leaves_unset_to_the_defaults_and_requires_empty() {
        let mut errs = Vec::new();
        one_of(&mut errs, "p", None, &["A"]);
        one_of(&mut errs, "p", Some("A"), &["A"]);
        assert!(errs.is_empty());
        one_of(&mut errs, "p", Some(""), &["A"]);
        one_of(&mut errs, "p", Some("B"), &["A"]);
        assert_eq!(errs[0].kind, FieldErrorKind::Required);
        assert_eq!(
            errs[1].to_string(),
            "p: Unsupported value: \"B\": supported values: \"A\""
        );
    }

    #[test]
    fn immutable_shows_the_new_value_as_json() {
        let mut errs = Vec::new();
        immutable(
            &mut errs,
            "spec.selector",
            &Some("a".to_string()),
            &Some("a".to_string()),
        );
        assert!(errs.is_empty());
        immutable(&mut errs, "spec.selector", &Some("b".to_string()), &None);
        assert_eq!(
            errs[0].to_string(),
            "spec.selector: Invalid value: \"b\": field is immutable"
        );
    }

    #[test]
    fn port_number_or_name_checks_whichever_was_given() {
        let mut errs = Vec::new();
        port_number_or_name(&mut errs, "p", &IntOrString::Int(8080));
        port_number_or_name(&mut errs, "p", &IntOrString::String("http".into()));
        assert!(errs.is_empty());
        port_number_or_name(&mut errs, "p", &IntOrString::Int(0));
        port_number_or_name(&mut errs, "p", &IntOrString::String("8080".into()));
        assert_eq!(errs.len(), 2);
    }

    #[test]
    fn an_empty_selector_counts_as_missing() {
        let mut errs = Vec::new();
        assert!(required_selector(
            &mut errs,
            &metav1::LabelSelector::default(),
            "spec.selector"
        )
        .is_none());
        assert_eq!(errs[0].to_string(), "spec.selector: Required value");
    }
}
