//! The objects the verbs write, built from what the client sent and what is stored: the
//! server-owned metadata of a new object, the replacement an update or patch makes, the
//! generation, and where a write goes. Pure: the clock and randomness come in as a [`Stamp`].

use k8s_openapi::api::core::v1::Service;
use rudder_raftstore::kv::Revision;
use serde_json::{json, Value};

use super::priority::keep_priority;
use super::WriteOptions;
use crate::allocation;
use crate::error::ApiError;
use crate::kinds::KindInfo;
use crate::object;
use crate::validation::FieldError;

/// Which part of an object a replacement may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Everything but `status` and server-owned metadata.
    Object,
    /// Only `status` (the status subresource).
    Status,
    /// Only a namespace's `spec.finalizers` (the finalize subresource).
    Finalize,
}

/// What a new object takes from the clock and from randomness, drawn by the verb.
#[derive(Debug, Clone)]
pub(crate) struct Stamp {
    pub now: jiff::Timestamp,
    pub uid: String,
    /// Picks the suffix of a name made from `generateName`.
    pub name_suffix: [u8; 5],
}

/// Sets the server-owned metadata of a new object: uid, creation time, a generated name,
/// its namespace, generation 1, and the kind's initial status.
pub(crate) fn prepare_for_create(
    info: &KindInfo,
    object: &mut Value,
    namespace: &str,
    stamp: &Stamp,
) {
    let meta = object::metadata_mut(object);
    let generate = meta
        .get("generateName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
        && !generate.is_empty()
    {
        meta.insert(
            "name".into(),
            Value::from(generated_name(&generate, stamp.name_suffix)),
        );
    }
    if info.namespaced {
        meta.insert("namespace".into(), Value::from(namespace));
    }
    meta.insert("uid".into(), Value::from(stamp.uid.as_str()));
    meta.insert(
        "creationTimestamp".into(),
        Value::from(object::timestamp(stamp.now)),
    );
    meta.insert("generation".into(), Value::from(1));
    for cleared in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "managedFields",
    ] {
        meta.remove(cleared);
    }
    if info.has_status && info.kind != "Node" {
        // Status is the controllers' and kubelets' to write; Kubernetes starts it empty
        // (nodes register with theirs).
        object["status"] = match info.kind {
            "Pod" | "PersistentVolume" | "PersistentVolumeClaim" => json!({ "phase": "Pending" }),
            "Namespace" => json!({ "phase": "Active" }),
            _ => json!({}),
        };
    }
    if info.kind == "Job" {
        select_own_pods(object, &stamp.uid);
    }
}

/// A Secret's `stringData` is write-only convenience: it is stored base64-encoded in `data`
/// (winning over the same key there), as Kubernetes does.
pub(crate) fn fold_string_data(info: &KindInfo, object: &mut Value) {
    use base64::Engine;
    if info.kind != "Secret" {
        return;
    }
    let Some(strings) = object
        .as_object_mut()
        .and_then(|map| map.remove("stringData"))
    else {
        return;
    };
    let Some(strings) = strings.as_object() else {
        return;
    };
    if !object["data"].is_object() {
        object["data"] = json!({});
    }
    for (key, value) in strings {
        let text = value.as_str().unwrap_or_default();
        object["data"][key] =
            Value::from(base64::engine::general_purpose::STANDARD.encode(text.as_bytes()));
    }
}

/// A Job without `manualSelector` selects its pods by its uid (Kubernetes' generated
/// selector), and its template labels them so.
fn select_own_pods(job: &mut Value, uid: &str) {
    if job["spec"]["manualSelector"] == Value::Bool(true) || !job["spec"].is_object() {
        return;
    }
    let name = object::name(job).to_string();
    job["spec"]["selector"] = json!({
        "matchLabels": { "batch.kubernetes.io/controller-uid": uid }
    });
    let template = &mut job["spec"]["template"];
    if !template.is_object() {
        return;
    }
    let labels = object::metadata_mut(template)
        .entry("labels")
        .or_insert_with(|| json!({}));
    if let Some(labels) = labels.as_object_mut() {
        labels.insert("batch.kubernetes.io/controller-uid".into(), uid.into());
        labels.insert("batch.kubernetes.io/job-name".into(), name.clone().into());
        labels.insert("controller-uid".into(), uid.into());
        labels.insert("job-name".into(), name.into());
    }
}

/// `generateName` plus five characters picked by `suffix` from Kubernetes' alphabet (no
/// vowels, no look-alikes), keeping the name within 63 characters.
fn generated_name(base: &str, suffix: [u8; 5]) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let base: String = base.chars().take(58).collect();
    let suffix: String = suffix
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    format!("{base}{suffix}")
}

/// The body of an update for the object named `name`: it takes that name when it has none,
/// and may not name another.
pub(crate) fn named(mut object: Value, name: &str) -> Result<Value, ApiError> {
    match object::name(&object) {
        "" => {
            object::metadata_mut(&mut object).insert("name".into(), name.into());
        }
        given if given != name => {
            return Err(ApiError::bad_field(
                "metadata.name",
                format!(
                    "the name of the object ({given}) does not match the name in the request \
                     ({name})"
                ),
            ))
        }
        _ => {}
    }
    Ok(object)
}

/// The patch formats Kubernetes serves (by the request's content type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json`: RFC 7386.
    Merge,
    /// `application/json-patch+json`: RFC 6902, a list of operations.
    Json,
    /// `application/strategic-merge-patch+json`: lists merge by the kinds' merge keys.
    Strategic,
}

/// `current` (an object of `kind`) with `patch` applied. A patch may not rename the object.
pub(crate) fn patched(
    patch_type: PatchType,
    kind: &str,
    current: &Value,
    patch: &Value,
) -> Result<Value, ApiError> {
    let patched = match patch_type {
        PatchType::Merge => {
            let mut patched = current.clone();
            json_patch::merge(&mut patched, patch);
            patched
        }
        PatchType::Strategic => crate::strategic_merge::apply(kind, current, patch)?,
        PatchType::Json => {
            let operations: json_patch::Patch =
                serde_json::from_value(patch.clone()).map_err(|error| {
                    ApiError::bad_request(format!(
                        "the JSON patch is not a list of operations: {error}"
                    ))
                })?;
            let mut patched = current.clone();
            json_patch::patch(&mut patched, &operations).map_err(|error| {
                ApiError::PatchNotApplicable {
                    message: format!("the JSON patch cannot be applied: {error}"),
                }
            })?;
            patched
        }
    };
    if object::name(&patched) != object::name(current) {
        return Err(ApiError::bad_field(
            "metadata.name",
            "a patch cannot rename an object: create a new one instead",
        ));
    }
    Ok(patched)
}

/// The object that replaces `current`, built from the client's `given` document.
pub(crate) fn candidate(
    info: &KindInfo,
    part: Part,
    current: &Value,
    given: &Value,
) -> Result<Value, ApiError> {
    match part {
        Part::Object => {
            let mut next = given.clone();
            if info.has_status {
                match given.get("status") {
                    None | Some(Value::Null) => next["status"] = current["status"].clone(),
                    Some(status) if *status == current["status"] => {}
                    Some(_) => {
                        return Err(ApiError::Invalid {
                            kind: info.qualified_kind(),
                            name: object::name(current).into(),
                            causes: vec![FieldError::forbidden(
                                "status",
                                "status can only be changed through update-status (the status \
                                 subresource); leave status out of updates",
                            )],
                        })
                    }
                }
            }
            fold_string_data(info, &mut next);
            if info.kind == "Pod" {
                keep_priority(&mut next, current);
            }
            if info.kind == "Service" {
                keep_allocations(&mut next, current);
            }
            let spec_is_object = matches!(next.get("spec"), None | Some(Value::Object(_)));
            if info.kind == "Namespace" && spec_is_object {
                // Only the finalize subresource changes them (as in Kubernetes). A `spec`
                // that is not an object is left for admission to refuse.
                next["spec"]["finalizers"] = current["spec"]["finalizers"].clone();
            }
            let meta = object::metadata_mut(&mut next);
            // Fields a client may leave out (they are carried forward; changing them is a
            // validation error).
            for carried in ["uid", "creationTimestamp"] {
                if meta.get(carried).is_none_or(Value::is_null) {
                    if let Some(value) = current["metadata"].get(carried) {
                        meta.insert(carried.into(), value.clone());
                    }
                }
            }
            // Fields only the server writes: deletion goes through the delete verb.
            for owned in [
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match current["metadata"].get(owned) {
                    Some(value) => meta.insert(owned.into(), value.clone()),
                    None => meta.remove(owned),
                };
            }
            meta.remove("resourceVersion");
            Ok(next)
        }
        Part::Status => {
            if !info.has_status {
                return Err(ApiError::bad_request(format!(
                    "{} have no status subresource",
                    info.qualified_resource()
                )));
            }
            let mut next = current.clone();
            next["status"] = given.get("status").cloned().unwrap_or(Value::Null);
            object::metadata_mut(&mut next).remove("resourceVersion");
            Ok(next)
        }
        Part::Finalize => {
            if info.kind != "Namespace" {
                return Err(ApiError::bad_request(format!(
                    "{} have no finalize subresource: only namespaces do",
                    info.qualified_resource()
                )));
            }
            let mut next = current.clone();
            let finalizers = given
                .get("spec")
                .and_then(|spec| spec.get("finalizers"))
                .cloned()
                .unwrap_or(Value::Null);
            if !matches!(next.get("spec"), None | Some(Value::Object(_))) {
                next["spec"] = Value::Object(Default::default());
            }
            next["spec"]["finalizers"] = finalizers;
            object::metadata_mut(&mut next).remove("resourceVersion");
            Ok(next)
        }
    }
}

/// What replaces `current` (as read, with its resourceVersion): `candidate` admitted as an
/// update of it, with its generation counted; `None` when that changes nothing.
/// Unknown fields are treated as `options` says; an RBAC object may grant only what its
/// requester holds (`authz::admit_write`).
pub(crate) fn revise(
    info: &KindInfo,
    current: &Value,
    candidate: Value,
    options: &WriteOptions,
) -> Result<Option<Value>, ApiError> {
    let mut stored = current.clone();
    object::metadata_mut(&mut stored).remove("resourceVersion");
    let mut next = info.admit_with(
        candidate,
        Some(&stored),
        options.field_validation,
        &options.warnings,
    )?;
    bump_generation(&mut next, &stored);
    if next == stored {
        return Ok(None);
    }
    crate::authz::admit_write(info, &next, Some(&stored))?;
    Ok(Some(next))
}

/// A Service's allocated values that the client left out are kept, and those its new type
/// has no use for are dropped ([`allocation::carry_forward`]). Only those fields are touched:
/// anything else in the body is left for admission to judge.
fn keep_allocations(next: &mut Value, current: &Value) {
    let (Ok(mut service), Ok(current)) = (
        serde_json::from_value::<Service>(next.clone()),
        serde_json::from_value::<Service>(current.clone()),
    ) else {
        return;
    };
    allocation::carry_forward(&mut service, &current);
    let Some(spec) = service.spec else { return };
    let Some(body) = next.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let mut set = |field: &str, value: Value| {
        if value.is_null() {
            body.remove(field);
        } else {
            body.insert(field.to_string(), value);
        }
    };
    set("clusterIP", json!(spec.cluster_ip));
    set("clusterIPs", json!(spec.cluster_ips));
    set("healthCheckNodePort", json!(spec.health_check_node_port));
    let ports = body.get_mut("ports").and_then(Value::as_array_mut);
    for (port, kept) in ports.into_iter().flatten().zip(spec.ports.iter().flatten()) {
        if let Some(port) = port.as_object_mut() {
            match kept.node_port {
                Some(node_port) => port.insert("nodePort".into(), json!(node_port)),
                None => port.remove("nodePort"),
            };
        }
    }
}

/// `metadata.generation` counts changes to what the user asked for (everything but
/// metadata and status).
fn bump_generation(next: &mut Value, stored: &Value) {
    let desired = |object: &Value| {
        let mut object = object.clone();
        if let Some(map) = object.as_object_mut() {
            map.remove("metadata");
            map.remove("status");
        }
        object
    };
    let generation = stored["metadata"]["generation"].as_i64().unwrap_or(1);
    let generation = if desired(next) != desired(stored) {
        generation + 1
    } else {
        generation
    };
    object::metadata_mut(next).insert("generation".into(), Value::from(generation));
}

/// Whether writing `next` completes its deletion: it is being deleted, its last finalizer
/// is gone, no kubelet still has to confirm it stopped, and (a namespace) it is empty.
pub(crate) fn completes_deletion(info: &KindInfo, next: &Value) -> bool {
    object::is_being_deleted(next)
        && object::finalizers(next).is_empty()
        && !waits_for_kubelet(info, next)
        && !holds_contents(info, next)
}

/// A namespace stays until the namespace controller has emptied it and removed its
/// `spec.finalizers` (through the finalize subresource).
pub(crate) fn holds_contents(info: &KindInfo, object: &Value) -> bool {
    info.kind == "Namespace"
        && object["spec"]["finalizers"]
            .as_array()
            .is_some_and(|finalizers| !finalizers.is_empty())
}

/// A pod bound to a node stays until its kubelet confirms it has stopped.
fn waits_for_kubelet(info: &KindInfo, object: &Value) -> bool {
    info.kind == "Pod"
        && object["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
        && object["metadata"]["deletionGracePeriodSeconds"].as_i64() != Some(0)
}

/// Sets (or updates) a pod condition.
pub(crate) fn set_condition(pod: &mut Value, kind: &str, status: &str, now: jiff::Timestamp) {
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    let condition = json!({
        "type": kind, "status": status, "lastProbeTime": null,
        "lastTransitionTime": object::timestamp(now),
    });
    match pod["status"]["conditions"].as_array_mut() {
        Some(conditions) => {
            conditions.retain(|c| c["type"] != kind);
            conditions.push(condition);
        }
        None => pod["status"]["conditions"] = json!([condition]),
    }
}

/// The namespace a write goes to: the body's, else the request's, else `default`; the two
/// must agree. Cluster-scoped kinds have none.
pub(crate) fn namespace_for(
    info: &KindInfo,
    requested: &str,
    object: &Value,
) -> Result<String, ApiError> {
    let given = object::namespace(object);
    if !info.namespaced {
        if !given.is_empty() {
            return Err(ApiError::bad_field(
                "metadata.namespace",
                format!(
                    "{} are not namespaced: remove metadata.namespace ({given:?})",
                    info.qualified_resource()
                ),
            ));
        }
        return Ok(String::new());
    }
    match (given, requested) {
        ("", "") => Ok("default".into()),
        ("", requested) => Ok(requested.into()),
        (given, "") => Ok(given.into()),
        (given, requested) if given == requested => Ok(given.into()),
        (given, requested) => Err(ApiError::bad_field(
            "metadata.namespace",
            format!(
                "the namespace of the provided object ({given}) does not match the namespace \
                 sent on the request ({requested})"
            ),
        )),
    }
}

/// The namespace of a read or delete: the request's, `default` when empty.
pub(crate) fn request_namespace(info: &KindInfo, namespace: &str) -> String {
    match (info.namespaced, namespace) {
        (false, _) => String::new(),
        (true, "") => "default".into(),
        (true, namespace) => namespace.into(),
    }
}

/// The resourceVersion a client sent, if any.
pub(crate) fn resource_version_of(object: &Value) -> Result<Option<Revision>, ApiError> {
    match object["metadata"]["resourceVersion"].as_str() {
        None | Some("") => Ok(None),
        Some(text) => text.parse::<Revision>().map(Some).map_err(|_| {
            ApiError::bad_field(
                "metadata.resourceVersion",
                format!("resourceVersion {text:?} is not a version this server gave out"),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::resolve;

    fn stamp() -> Stamp {
        Stamp {
            now: "2026-01-01T00:00:00Z".parse().unwrap(),
            uid: "u1".into(),
            name_suffix: [0, 1, 2, 3, 27],
        }
    }

    #[test]
    fn generated_names_keep_the_base_and_stay_short() {
        assert_eq!(generated_name("kubia-", [0, 1, 2, 3, 27]), "kubia-bcdfb");
        assert!(generated_name(&"x".repeat(80), [255; 5]).len() <= 63);
    }

    #[test]
    fn a_new_object_gets_server_metadata_and_an_empty_status() {
        let pods = resolve("pods").unwrap();
        let mut pod = json!({
            "metadata": { "generateName": "web-", "resourceVersion": "7", "uid": "mine" },
            "status": { "phase": "Running" },
        });
        prepare_for_create(pods, &mut pod, "ns1", &stamp());
        let meta = &pod["metadata"];
        assert_eq!(meta["name"], "web-bcdfb");
        assert_eq!(meta["namespace"], "ns1");
        assert_eq!(meta["uid"], "u1");
        assert_eq!(meta["creationTimestamp"], "2026-01-01T00:00:00Z");
        assert_eq!(meta["generation"], 1);
        assert!(meta.get("resourceVersion").is_none());
        assert_eq!(pod["status"], json!({ "phase": "Pending" }));
    }

    #[test]
    fn a_job_selects_its_pods_by_its_uid_unless_its_selector_is_manual() {
        let jobs = resolve("jobs").unwrap();
        let mut job = json!({ "metadata": { "name": "pi" }, "spec": { "template": {} } });
        prepare_for_create(jobs, &mut job, "default", &stamp());
        assert_eq!(
            job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
            "u1"
        );
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"]["job-name"],
            "pi"
        );
        let mut job = json!({
            "metadata": { "name": "pi" },
            "spec": { "manualSelector": true, "selector": { "matchLabels": {} } },
        });
        prepare_for_create(jobs, &mut job, "default", &stamp());
        assert_eq!(job["spec"]["selector"], json!({ "matchLabels": {} }));
    }

    #[test]
    fn string_data_is_stored_base64_encoded_in_data() {
        let secrets = resolve("secrets").unwrap();
        let mut secret = json!({ "data": { "a": "b2xk" }, "stringData": { "a": "new" } });
        fold_string_data(secrets, &mut secret);
        assert_eq!(secret, json!({ "data": { "a": "bmV3" } }));
        let config_maps = resolve("cm").unwrap();
        let mut config_map = json!({ "stringData": { "a": "new" } });
        fold_string_data(config_maps, &mut config_map);
        assert_eq!(config_map["stringData"]["a"], "new");
    }

    #[test]
    fn generation_counts_only_changes_to_the_desired_state() {
        let stored = json!({ "metadata": { "generation": 3 }, "spec": { "replicas": 1 } });
        let mut relabelled =
            json!({ "metadata": { "labels": { "a": "b" } }, "spec": { "replicas": 1 } });
        bump_generation(&mut relabelled, &stored);
        assert_eq!(relabelled["metadata"]["generation"], 3);
        let mut scaled = json!({ "metadata": {}, "spec": { "replicas": 2 } });
        bump_generation(&mut scaled, &stored);
        assert_eq!(scaled["metadata"]["generation"], 4);
    }

    #[test]
    fn a_body_and_a_request_must_agree_on_the_namespace() {
        let pods = resolve("pods").unwrap();
        let pod = json!({ "metadata": { "namespace": "a" } });
        assert_eq!(namespace_for(pods, "", &pod).unwrap(), "a");
        assert_eq!(namespace_for(pods, "", &json!({})).unwrap(), "default");
        assert!(namespace_for(pods, "b", &pod).is_err());
        let nodes = resolve("nodes").unwrap();
        assert!(namespace_for(nodes, "", &pod).is_err());
    }

    #[test]
    fn updates_keep_status_unless_it_is_changed() {
        let deployments = resolve("deploy").unwrap();
        let current =
            json!({ "metadata": { "uid": "u1" }, "spec": {}, "status": { "replicas": 2 } });
        let without = json!({ "metadata": {}, "spec": { "replicas": 3 } });
        let next = candidate(deployments, Part::Object, &current, &without).unwrap();
        assert_eq!(next["status"]["replicas"], 2);
        assert_eq!(next["metadata"]["uid"], "u1");
        let changed = json!({ "metadata": {}, "spec": {}, "status": { "replicas": 9 } });
        let error = candidate(deployments, Part::Object, &current, &changed).unwrap_err();
        assert!(error.to_string().contains("status: Forbidden"), "{error}");
    }

    #[test]
    fn a_status_update_changes_only_the_status() {
        let deployments = resolve("deploy").unwrap();
        let current = json!({ "metadata": { "resourceVersion": "4" }, "spec": { "replicas": 1 } });
        let given = json!({ "spec": { "replicas": 5 }, "status": { "replicas": 1 } });
        let next = candidate(deployments, Part::Status, &current, &given).unwrap();
        assert_eq!(
            next,
            json!({ "metadata": {}, "spec": { "replicas": 1 }, "status": { "replicas": 1 } })
        );
        let config_maps = resolve("cm").unwrap();
        assert!(candidate(config_maps, Part::Status, &current, &given).is_err());
    }

    #[test]
    fn an_update_takes_the_requested_name_and_a_patch_cannot_rename() {
        assert_eq!(named(json!({}), "a").unwrap()["metadata"]["name"], "a");
        assert!(named(json!({ "metadata": { "name": "b" } }), "a").is_err());
        let current = json!({ "metadata": { "name": "a" }, "data": { "k": "v" } });
        let merged = patched(
            PatchType::Merge,
            "ConfigMap",
            &current,
            &json!({ "data": { "k": null } }),
        )
        .unwrap();
        assert_eq!(merged["data"], json!({}));
        assert!(patched(
            PatchType::Merge,
            "ConfigMap",
            &current,
            &json!({ "metadata": { "name": "b" } })
        )
        .is_err());
    }

    #[test]
    fn a_deletion_completes_when_the_last_finalizer_goes_unless_a_kubelet_must_confirm() {
        let config_maps = resolve("cm").unwrap();
        let marked = json!({ "metadata": { "deletionTimestamp": "2026-01-01T00:00:00Z" } });
        assert!(completes_deletion(config_maps, &marked));
        let mut held = marked.clone();
        held["metadata"]["finalizers"] = json!(["example.com/hold"]);
        assert!(!completes_deletion(config_maps, &held));
        assert!(!completes_deletion(config_maps, &json!({ "metadata": {} })));
        let pods = resolve("pods").unwrap();
        let mut bound = marked.clone();
        bound["spec"] = json!({ "nodeName": "n1" });
        assert!(!completes_deletion(pods, &bound));
        bound["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        assert!(completes_deletion(pods, &bound));
    }

    #[test]
    fn setting_a_condition_replaces_the_one_of_its_type() {
        let mut pod = json!({ "status": { "conditions": [
            { "type": "PodScheduled", "status": "False" }, { "type": "Ready", "status": "True" },
        ] } });
        set_condition(&mut pod, "PodScheduled", "True", stamp().now);
        let conditions = pod["status"]["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[1]["type"], "PodScheduled");
        assert_eq!(conditions[1]["status"], "True");
        assert_eq!(conditions[1]["lastTransitionTime"], "2026-01-01T00:00:00Z");
    }

    #[test]
    fn a_resource_version_is_a_revision_or_absent() {
        let with = |version: &str| json!({ "metadata": { "resourceVersion": version } });
        assert_eq!(resource_version_of(&with("12")).unwrap(), Some(12));
        assert_eq!(resource_version_of(&with("")).unwrap(), None);
        assert_eq!(resource_version_of(&json!({})).unwrap(), None);
        assert!(resource_version_of(&with("abc")).is_err());
    }
}
