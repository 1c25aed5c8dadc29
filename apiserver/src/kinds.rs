//! The kinds the API serves: their names (as `kubectl` resolves them), scope, and the typed
//! admission of an object of each kind (strict decoding, defaulting, validation).

use std::marker::PhantomData;
use std::sync::{Arc, LazyLock, Mutex};

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod,
    ReplicationController, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::validation::meta::{validate_object_meta, validate_object_meta_update};
use crate::validation::names::{
    dns1035_label, dns1123_label, dns1123_subdomain, path_segment_name,
};
use crate::validation::{ApplyDefaults, FieldError, Validate};

/// The verbs every served kind takes (discovery lists them; a role may grant them all).
pub const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// One kind: how users name it and what the server knows about it.
pub struct KindInfo {
    pub kind: &'static str,
    /// "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub api_version: &'static str,
    /// The plural resource name, also the key segment: `/registry/<resource>/...`.
    pub resource: &'static str,
    pub singular: String,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    /// Whether the kind has a `status` that only the status verb may write.
    pub has_status: bool,
    /// Field selectors beyond `metadata.name` and `metadata.namespace`.
    pub selectable_fields: &'static [&'static str],
    name_rule: fn(&str) -> Vec<String>,
    admission: Box<dyn Admission>,
}

impl std::fmt::Debug for KindInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KindInfo")
            .field("kind", &self.kind)
            .field("api_version", &self.api_version)
            .finish_non_exhaustive()
    }
}

impl KindInfo {
    /// `deployments.apps`, `pods`: how Kubernetes names the resource in messages.
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    /// `Deployment.apps`, `Pod`: how Kubernetes names the kind in validation messages.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// Strictly decodes `object` as this kind, fills in defaults and validates it (as a
    /// replacement of `old` when given). Returns the canonical JSON to store.
    pub fn admit(&self, object: Value, old: Option<&Value>) -> Result<Value, ApiError> {
        self.admit_with(object, old, FieldValidation::Strict, &Warnings::default())
    }

    /// [`KindInfo::admit`], with unknown fields treated as `validation` says (dropped ones
    /// warned of in `warnings` under `Warn`).
    pub fn admit_with(
        &self,
        object: Value,
        old: Option<&Value>,
        validation: FieldValidation,
        warnings: &Warnings,
    ) -> Result<Value, ApiError> {
        self.admission.admit(
            self,
            object,
            old,
            Unknown {
                validation,
                warnings,
            },
        )
    }

    /// The kind's schema: a reference to its definition, which `generator` now holds with
    /// every definition it refers to.
    pub fn schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        self.admission.schema(generator)
    }

    pub fn selects_field(&self, field: &str) -> bool {
        field == "metadata.name"
            || field == "metadata.namespace"
            || self.selectable_fields.contains(&field)
    }
}

/// What admission does with fields the kind does not have (`fieldValidation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Refuse the object, naming the field (kubectl asks for this).
    #[default]
    Strict,
    /// Drop them, and tell the client (kube-apiserver's default over HTTP).
    Warn,
    /// Drop them.
    Ignore,
}

impl FieldValidation {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        match text {
            "Strict" => Ok(Self::Strict),
            "Warn" => Ok(Self::Warn),
            "Ignore" => Ok(Self::Ignore),
            other => Err(ApiError::bad_field(
                "fieldValidation",
                format!("fieldValidation {other:?} is not one of Strict, Warn, Ignore"),
            )),
        }
    }
}

/// Warnings for the client (Kubernetes' `Warning: 299` headers), gathered while a write is
/// decided; shared, so the caller reads what admission added.
#[derive(Debug, Clone, Default)]
pub struct Warnings(Arc<Mutex<Vec<String>>>);

impl Warnings {
    pub fn push(&self, warning: String) {
        let mut warnings = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
    }

    pub fn take(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }
}

/// How admission treats unknown fields, and where it says what it dropped.
#[derive(Clone, Copy)]
struct Unknown<'a> {
    validation: FieldValidation,
    warnings: &'a Warnings,
}

/// Typed admission, hidden behind a trait object so the registry stays generic over kinds,
/// and the kind's type's schema (k8s-openapi's), for the OpenAPI documents.
trait Admission: Send + Sync {
    fn admit(
        &self,
        info: &KindInfo,
        object: Value,
        old: Option<&Value>,
        unknown: Unknown<'_>,
    ) -> Result<Value, ApiError>;
    fn schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema;
}

struct Typed<K>(PhantomData<fn() -> K>);

/// What every served kind implements.
trait ApiKind:
    k8s_openapi::Resource
    + k8s_openapi::Metadata<Ty = ObjectMeta>
    + Serialize
    + DeserializeOwned
    + Validate
    + ApplyDefaults
    + schemars::JsonSchema
{
}

impl<K> ApiKind for K where
    K: k8s_openapi::Resource
        + k8s_openapi::Metadata<Ty = ObjectMeta>
        + Serialize
        + DeserializeOwned
        + Validate
        + ApplyDefaults
        + schemars::JsonSchema
{
}

impl<K: ApiKind> Admission for Typed<K> {
    fn schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<K>()
    }

    fn admit(
        &self,
        info: &KindInfo,
        object: Value,
        old: Option<&Value>,
        unknown: Unknown<'_>,
    ) -> Result<Value, ApiError> {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let invalid = |causes: Vec<FieldError>| ApiError::Invalid {
            kind: info.qualified_kind(),
            name: name.clone(),
            causes,
        };
        let mut typed: K = decode(&object, unknown).map_err(|cause| invalid(vec![cause]))?;
        typed.apply_defaults();
        if old.is_none() {
            typed.admit_new();
        }
        let mut causes = match old {
            None => {
                let mut causes =
                    validate_object_meta(typed.metadata(), info.namespaced, info.name_rule);
                causes.extend(typed.validate());
                causes
            }
            Some(old) => {
                let old: K = serde_json::from_value(old.clone()).map_err(|error| {
                    ApiError::internal(format!("stored {} does not decode: {error}", info.kind))
                })?;
                let mut causes = validate_object_meta_update(
                    typed.metadata(),
                    old.metadata(),
                    info.namespaced,
                    info.name_rule,
                );
                causes.extend(typed.validate_update(&old));
                causes
            }
        };
        causes.dedup();
        if !causes.is_empty() {
            return Err(invalid(causes));
        }
        let mut canonical = serde_json::to_value(&typed)
            .map_err(|error| ApiError::internal(format!("encoding {}: {error}", info.kind)))?;
        // k8s-openapi writes apiVersion/kind itself; keep them exact.
        canonical["apiVersion"] = Value::from(K::API_VERSION);
        canonical["kind"] = Value::from(K::KIND);
        Ok(canonical)
    }
}

/// Decodes `object` as `K`, refusing wrong types (with the field's path); unknown fields are
/// refused (Kubernetes' strict field validation: a misspelt field is an error, not silently
/// lost), or dropped with a warning, or dropped, as `unknown` says.
fn decode<K: DeserializeOwned + Serialize>(
    object: &Value,
    unknown: Unknown<'_>,
) -> Result<K, FieldError> {
    let typed: K = serde_path_to_error::deserialize(object).map_err(|error| {
        let path = error.path().to_string();
        let path = if path == "." { String::new() } else { path };
        FieldError::invalid(path, "", error.inner().to_string())
    })?;
    let reencoded = serde_json::to_value(&typed)
        .map_err(|error| FieldError::invalid("", "", error.to_string()))?;
    let mut dropped = Vec::new();
    unknown_fields(object, &reencoded, "", &mut dropped);
    match unknown.validation {
        FieldValidation::Ignore => return Ok(typed),
        FieldValidation::Warn => {
            for path in dropped {
                unknown.warnings.push(format!("unknown field {path:?}"));
            }
            return Ok(typed);
        }
        FieldValidation::Strict => {}
    }
    match dropped.into_iter().next() {
        Some(path) => Err(FieldError {
            path: path.clone(),
            kind: crate::validation::FieldErrorKind::NotSupported {
                value: path.rsplit('.').next().unwrap_or(&path).to_string(),
                allowed: Vec::new(),
            },
            detail: "unknown field (strict decoding): check its spelling and indentation".into(),
        }),
        None => Ok(typed),
    }
}

/// The paths of the fields of `given` that decoding dropped (nulls may be dropped), in order.
fn unknown_fields(given: &Value, kept: &Value, path: &str, found: &mut Vec<String>) {
    match (given, kept) {
        (Value::Object(given), Value::Object(kept)) => {
            for (key, value) in given {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match kept.get(key) {
                    Some(kept_value) => unknown_fields(value, kept_value, &child, found),
                    None if value.is_null() || is_empty_container(value) => {}
                    None => found.push(child),
                }
            }
        }
        (Value::Array(given), Value::Array(kept)) => {
            for (i, (g, k)) in given.iter().zip(kept).enumerate() {
                unknown_fields(g, k, &format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

/// `{}` or `[]` that the typed form leaves out (optional fields with nothing in them).
fn is_empty_container(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.values().all(|v| v.is_null() || is_empty_container(v)),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

fn kind<K: ApiKind + 'static>(
    short_names: &'static [&'static str],
    namespaced: bool,
    has_status: bool,
    selectable_fields: &'static [&'static str],
    name_rule: fn(&str) -> Vec<String>,
) -> KindInfo {
    KindInfo {
        kind: K::KIND,
        group: K::GROUP,
        version: K::VERSION,
        api_version: K::API_VERSION,
        resource: K::URL_PATH_SEGMENT,
        singular: K::KIND.to_lowercase(),
        short_names,
        namespaced,
        has_status,
        selectable_fields,
        name_rule,
        admission: Box::new(Typed::<K>(PhantomData)),
    }
}

const POD_FIELDS: &[&str] = &[
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];
const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

/// Every kind, in the order `rudder get all`-style listings use.
pub static KINDS: LazyLock<Vec<KindInfo>> = LazyLock::new(|| {
    let subdomain = dns1123_subdomain;
    vec![
        kind::<Namespace>(&["ns"], false, true, &["status.phase"], dns1123_label),
        kind::<Node>(&["no"], false, true, &["spec.unschedulable"], subdomain),
        kind::<Pod>(&["po"], true, true, POD_FIELDS, subdomain),
        kind::<Service>(&["svc"], true, true, &[], dns1035_label),
        kind::<Endpoints>(&["ep"], true, false, &[], subdomain),
        kind::<EndpointSlice>(&[], true, false, &[], subdomain),
        kind::<ReplicationController>(&["rc"], true, true, &["status.replicas"], subdomain),
        kind::<ReplicaSet>(&["rs"], true, true, &["status.replicas"], subdomain),
        kind::<Deployment>(&["deploy"], true, true, &[], subdomain),
        kind::<DaemonSet>(&["ds"], true, true, &[], subdomain),
        kind::<StatefulSet>(&["sts"], true, true, &[], subdomain),
        kind::<ControllerRevision>(&[], true, false, &[], subdomain),
        kind::<Job>(&[], true, true, &["status.successful"], subdomain),
        kind::<CronJob>(&["cj"], true, true, &[], subdomain),
        kind::<ConfigMap>(&["cm"], true, false, &[], subdomain),
        kind::<Secret>(&[], true, false, &["type"], subdomain),
        kind::<ServiceAccount>(&["sa"], true, false, &[], subdomain),
        kind::<Event>(&["ev"], true, false, EVENT_FIELDS, subdomain),
        kind::<PersistentVolume>(&["pv"], false, true, &[], subdomain),
        kind::<PersistentVolumeClaim>(&["pvc"], true, true, &[], subdomain),
        kind::<StorageClass>(&["sc"], false, false, &[], subdomain),
        kind::<Lease>(&[], true, false, &[], subdomain),
        kind::<PriorityClass>(&["pc"], false, false, &[], subdomain),
        kind::<PodDisruptionBudget>(&["pdb"], true, true, &[], subdomain),
        kind::<Role>(&[], true, false, &[], path_segment_name),
        kind::<ClusterRole>(&[], false, false, &[], path_segment_name),
        kind::<RoleBinding>(&[], true, false, &[], path_segment_name),
        kind::<ClusterRoleBinding>(&[], false, false, &[], path_segment_name),
    ]
});

/// Resolves any name a user may give a kind: `pods`, `pod`, `Pod`, `po`, `deployments.apps`,
/// `deployment.apps`. Names are case-insensitive, as in kubectl.
pub fn resolve(name: &str) -> Option<&'static KindInfo> {
    let lower = name.to_ascii_lowercase();
    let (base, group) = match lower.split_once('.') {
        Some((base, group)) => (base.to_string(), Some(group.to_string())),
        None => (lower.clone(), None),
    };
    KINDS.iter().find(|info| {
        let names_match = info.resource == base
            || info.singular == base
            || info.short_names.contains(&base.as_str());
        let group_matches = match &group {
            None => true,
            Some(group) => group == info.group || (group == "core" && info.group.is_empty()),
        };
        names_match && group_matches
    })
}

/// The kind of a document by its `apiVersion` and `kind` fields.
pub fn by_api_version(api_version: &str, kind: &str) -> Option<&'static KindInfo> {
    KINDS
        .iter()
        .find(|info| info.api_version == api_version && info.kind == kind)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn unknown_fields_are_refused_dropped_with_a_warning_or_dropped() {
        let maps = resolve("configmaps").unwrap();
        let map = json!({ "apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": { "name": "c", "namespace": "default",
                                        "labelz": { "a": "b" } },
                          "dataa": { "k": "v" } });
        let strict = maps.admit(map.clone(), None).unwrap_err().to_string();
        assert!(strict.contains("dataa"), "{strict}");
        let warnings = Warnings::default();
        let warned = maps
            .admit_with(map.clone(), None, FieldValidation::Warn, &warnings)
            .unwrap();
        assert!(warned.get("dataa").is_none());
        assert_eq!(
            warnings.take(),
            [
                r#"unknown field "dataa""#,
                r#"unknown field "metadata.labelz""#
            ]
        );
        let ignored = maps
            .admit_with(map, None, FieldValidation::Ignore, &warnings)
            .unwrap();
        assert!(ignored["metadata"].get("labelz").is_none());
        assert!(warnings.take().is_empty());
        assert!(FieldValidation::parse("Loose").is_err());
    }

    #[test]
    fn kinds_resolve_by_every_name_kubectl_accepts() {
        for name in ["pods", "pod", "Pod", "po", "PODS"] {
            assert_eq!(resolve(name).map(|k| k.kind), Some("Pod"), "{name}");
        }
        assert_eq!(resolve("deploy").map(|k| k.kind), Some("Deployment"));
        assert_eq!(
            resolve("deployments.apps").map(|k| k.kind),
            Some("Deployment")
        );
        assert_eq!(
            resolve("rc").map(|k| k.resource),
            Some("replicationcontrollers")
        );
        assert_eq!(resolve("deployments.batch").map(|k| k.kind), None);
        assert!(resolve("gizmos").is_none());
    }

    #[test]
    fn service_accounts_resolve_by_every_name_and_are_namespaced() {
        for name in [
            "sa",
            "serviceaccount",
            "serviceaccounts",
            "ServiceAccount",
            "SA",
        ] {
            assert_eq!(
                resolve(name).map(|k| k.kind),
                Some("ServiceAccount"),
                "{name}"
            );
        }
        let accounts = resolve("sa").unwrap();
        assert_eq!(
            (accounts.resource, accounts.namespaced, accounts.has_status),
            ("serviceaccounts", true, false)
        );
        let account = json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": { "name": "default", "namespace": "default" },
            "secrets": [{ "name": "default-token" }]
        });
        let admitted = accounts.admit(account, None).unwrap();
        assert_eq!(admitted["secrets"][0]["name"], "default-token");
        let badly_named = json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": { "name": "Build_Robot", "namespace": "default" }
        });
        let error = accounts.admit(badly_named, None).unwrap_err().to_string();
        assert!(
            error.starts_with("ServiceAccount \"Build_Robot\" is invalid")
                && error.contains("metadata.name"),
            "{error}"
        );
    }

    #[test]
    fn disruption_budgets_are_namespaced_policy_objects_with_a_status() {
        let budgets = resolve("pdb").unwrap();
        assert_eq!(
            (budgets.kind, budgets.namespaced, budgets.has_status),
            ("PodDisruptionBudget", true, true)
        );
        assert_eq!(budgets.qualified_resource(), "poddisruptionbudgets.policy");
        assert_eq!(
            resolve("poddisruptionbudgets.policy").map(|k| k.kind),
            Some("PodDisruptionBudget")
        );
        let both = json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": { "name": "web", "namespace": "default" },
            "spec": { "minAvailable": 1, "maxUnavailable": 1,
                      "selector": { "matchLabels": { "app": "web" } } }
        });
        let error = budgets.admit(both, None).unwrap_err().to_string();
        assert!(
            error.starts_with("PodDisruptionBudget.policy \"web\" is invalid")
                && error.contains("cannot be both set"),
            "{error}"
        );
    }

    #[test]
    fn storage_classes_are_cluster_scoped_and_defaulted() {
        let classes = resolve("sc").unwrap();
        assert_eq!(
            (classes.kind, classes.resource, classes.namespaced),
            ("StorageClass", "storageclasses", false)
        );
        assert_eq!(
            classes.qualified_resource(),
            "storageclasses.storage.k8s.io"
        );
        let class = json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": { "name": "fast" }, "provisioner": "example.com/ssd"
        });
        let admitted = classes.admit(class, None).unwrap();
        assert_eq!(admitted["reclaimPolicy"], "Delete");
        assert_eq!(admitted["volumeBindingMode"], "Immediate");
        let nameless = json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": { "name": "fast" }
        });
        let error = classes.admit(nameless, None).unwrap_err().to_string();
        assert!(
            error.starts_with("StorageClass.storage.k8s.io \"fast\" is invalid")
                && error.contains("provisioner: Required value"),
            "{error}"
        );
    }

    #[test]
    fn priority_classes_are_cluster_scoped_and_defaulted() {
        let classes = resolve("pc").unwrap();
        assert_eq!(
            (classes.kind, classes.resource, classes.namespaced),
            ("PriorityClass", "priorityclasses", false)
        );
        assert_eq!(
            classes.qualified_resource(),
            "priorityclasses.scheduling.k8s.io"
        );
        let class = json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": { "name": "high" }, "value": 1000
        });
        let admitted = classes.admit(class, None).unwrap();
        assert_eq!(admitted["preemptionPolicy"], "PreemptLowerPriority");
        let reserved = json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": { "name": "system-high" }, "value": 1000
        });
        let error = classes.admit(reserved, None).unwrap_err().to_string();
        assert!(
            error.starts_with("PriorityClass.scheduling.k8s.io \"system-high\" is invalid"),
            "{error}"
        );
    }

    #[test]
    fn unknown_fields_are_refused_with_their_path() {
        let pods = resolve("pods").unwrap();
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "p", "namespace": "default" },
            "spec": { "containers": [{ "name": "c", "image": "busybox", "imagePullPolicyy": "x" }] }
        });
        let error = pods.admit(pod, None).unwrap_err().to_string();
        assert!(
            error.contains("spec.containers[0].imagePullPolicyy"),
            "{error}"
        );
    }

    #[test]
    fn wrong_types_are_refused_with_their_path() {
        let deployments = resolve("deployments").unwrap();
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web", "namespace": "default" },
            "spec": { "replicas": "three" }
        });
        let error = deployments.admit(deployment, None).unwrap_err().to_string();
        assert!(error.contains("spec.replicas"), "{error}");
    }

    #[test]
    fn nulls_and_empty_maps_are_not_unknown_fields() {
        let config_maps = resolve("cm").unwrap();
        let config_map = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "c", "namespace": "default", "labels": {}, "annotations": null },
            "data": { "a": "1" }
        });
        let admitted = config_maps.admit(config_map, None).unwrap();
        assert_eq!(admitted["data"]["a"], "1");
    }
}
