//! The OpenAPI v3 documents of the served kinds, one per group version as kube-apiserver
//! serves them (`/openapi/v3` lists them, each at `/openapi/v3/<api|apis/G>/<V>?hash=...`).
//! kubectl reads them for `explain`, and to learn that the server validates fields (every
//! write names the `fieldValidation` parameter).
//!
//! Schemas are k8s-openapi's (its `schemars` feature), with the markers it leaves out added:
//! each kind's `x-kubernetes-group-version-kind`, and the `x-kubernetes-patch-strategy` and
//! `-merge-key` of every list strategic merge patch merges, from `strategic_merge`'s table
//! (one table for the patches served and the documents describing them). Built once.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};

use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

use super::discovery;
use crate::kinds::{KindInfo, KINDS};
use crate::strategic_merge::{list_strategy, replaces_map, retains_keys, ListStrategy};

/// One group version's document and the hash clients cache it by.
pub struct Document {
    pub json: bytes::Bytes,
    pub hash: String,
}

/// Every group version's document, by its path (`api/v1`, `apis/apps/v1`).
static DOCUMENTS: LazyLock<BTreeMap<String, Arc<Document>>> = LazyLock::new(|| {
    let mut group_versions: Vec<(&str, &str)> = Vec::new();
    for info in KINDS.iter() {
        if !group_versions.contains(&(info.group, info.version)) {
            group_versions.push((info.group, info.version));
        }
    }
    group_versions
        .into_iter()
        .map(|(group, version)| {
            let json = bytes::Bytes::from(document(group, version).to_string());
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            json.hash(&mut hasher);
            let hash = format!("{:016X}", hasher.finish());
            (path_of(group, version), Arc::new(Document { json, hash }))
        })
        .collect()
});

fn path_of(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: where each group version's document is.
pub fn index() -> Value {
    let paths: Map<String, Value> = DOCUMENTS
        .iter()
        .map(|(path, document)| {
            let url = format!("/openapi/v3/{path}?hash={}", document.hash);
            (path.clone(), json!({ "serverRelativeURL": url }))
        })
        .collect();
    json!({ "paths": paths })
}

/// Every group version's definitions in one map (for `/openapi/v2`, openapi_v2.rs). A
/// definition several group versions share is merged: each document marks only its own
/// kinds (PersistentVolumeClaim in apps/v1, for StatefulSets' claim templates, has no
/// group-version-kind), so the union keeps every marker.
pub fn all_definitions() -> Map<String, Value> {
    let mut all = Map::new();
    for schemas in definitions_by_group_version() {
        for (name, schema) in schemas {
            match all.get_mut(&name) {
                Some(kept) => merge_missing(kept, schema),
                None => {
                    all.insert(name, schema);
                }
            }
        }
    }
    all
}

/// Adds to `kept` what `other` has and it lacks, object keys at any depth (pure).
fn merge_missing(kept: &mut Value, other: Value) {
    let (Value::Object(kept), Value::Object(other)) = (kept, other) else {
        return;
    };
    for (key, value) in other {
        match kept.get_mut(&key) {
            Some(existing) => merge_missing(existing, value),
            None => {
                kept.insert(key, value);
            }
        }
    }
}

/// Each served group version's definitions.
fn definitions_by_group_version() -> Vec<Map<String, Value>> {
    let mut documents = Vec::new();
    for path in DOCUMENTS.keys() {
        let (group, version) = match path.split('/').collect::<Vec<_>>()[..] {
            ["api", version] => ("", version),
            ["apis", group, version] => (group, version),
            _ => continue,
        };
        if let Value::Object(schemas) = document(group, version)["components"]["schemas"].take() {
            documents.push(schemas);
        }
    }
    documents
}

/// `/openapi/v3/<path>`, if served.
pub fn document_at(path: &str) -> Option<Arc<Document>> {
    DOCUMENTS.get(path.trim_matches('/')).cloned()
}

fn document(group: &str, version: &str) -> Value {
    let kinds: Vec<&'static KindInfo> = KINDS
        .iter()
        .filter(|info| info.group == group && info.version == version)
        .collect();
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut roots = Vec::new();
    for info in &kinds {
        let reference = info.schema(&mut generator);
        roots.push((*info, type_name(reference.as_value())));
    }
    let mut schemas = generator.take_definitions(true);
    for (info, name) in &roots {
        let Some(name) = name else { continue };
        if let Some(Value::Object(schema)) = schemas.get_mut(name) {
            schema.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{ "group": info.group, "version": info.version, "kind": info.kind }]),
            );
        }
        for marker in patch_markers(info.kind, name, &schemas) {
            marker.apply(&mut schemas);
        }
    }
    let mut paths = Map::new();
    for (info, name) in &roots {
        let reference = match name {
            Some(name) => json!({ "$ref": format!("#/components/schemas/{name}") }),
            None => json!({ "type": "object" }),
        };
        add_paths(&mut paths, info, &reference);
    }
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": format!("v1.{}.0", discovery::KUBERNETES_MINOR) },
        "paths": paths,
        "components": { "schemas": schemas },
    })
}

/// The definition a `$ref` schema (or an `allOf` of one) names.
fn type_name(schema: &Value) -> Option<String> {
    let reference = schema
        .get("$ref")
        .or_else(|| schema.get("allOf")?.get(0)?.get("$ref"))?
        .as_str()?;
    reference
        .strip_prefix("#/components/schemas/")
        .map(str::to_owned)
}

/// A patch marker to put on a property of a definition.
#[derive(Debug, PartialEq, Eq)]
struct Marker {
    definition: String,
    property: String,
    strategy: &'static str,
    merge_key: Option<&'static str>,
}

impl Marker {
    fn apply(&self, schemas: &mut Map<String, Value>) {
        let property = schemas
            .get_mut(&self.definition)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(&self.property))
            .and_then(Value::as_object_mut);
        if let Some(property) = property {
            property.insert("x-kubernetes-patch-strategy".into(), json!(self.strategy));
            if let Some(key) = self.merge_key {
                property.insert("x-kubernetes-patch-merge-key".into(), json!(key));
            }
        }
    }
}

/// The markers of `kind`'s lists (and replaced maps), found by walking its definitions
/// from `root` with the field path `strategic_merge` knows them by.
fn patch_markers(kind: &str, root: &str, schemas: &Map<String, Value>) -> Vec<Marker> {
    let mut markers = Vec::new();
    let mut path = Vec::new();
    let mut walking = HashSet::new();
    walk(kind, root, schemas, &mut path, &mut walking, &mut markers);
    markers
}

fn walk<'a>(
    kind: &str,
    definition: &str,
    schemas: &'a Map<String, Value>,
    path: &mut Vec<&'a str>,
    walking: &mut HashSet<String>,
    markers: &mut Vec<Marker>,
) {
    // A definition that contains itself (JSON schema props) is walked once per branch.
    if !walking.insert(definition.to_owned()) {
        return;
    }
    let properties = schemas
        .get(definition)
        .and_then(|d| d.get("properties"))
        .and_then(Value::as_object);
    for (property, schema) in properties.into_iter().flatten() {
        path.push(property);
        let marker = |strategy, merge_key| Marker {
            definition: definition.to_owned(),
            property: property.clone(),
            strategy,
            merge_key,
        };
        if schema.get("type").and_then(Value::as_str) == Some("array") {
            let merge = if retains_keys(kind, path) {
                "merge,retainKeys"
            } else {
                "merge"
            };
            match list_strategy(kind, path) {
                Some(ListStrategy::MergeByKey(key)) => markers.push(marker(merge, Some(key))),
                Some(ListStrategy::MergeScalars) => markers.push(marker(merge, None)),
                None => {}
            }
            if let Some(element) = schema.get("items").and_then(type_name) {
                walk(kind, &element, schemas, path, walking, markers);
            }
        } else if let Some(inner) = type_name(schema) {
            if replaces_map(kind, path) {
                markers.push(marker("replace", None));
            } else if retains_keys(kind, path) {
                markers.push(marker("retainKeys", None));
            }
            walk(kind, &inner, schemas, path, walking, markers);
        }
        path.pop();
    }
    walking.remove(definition);
}

fn query(name: &str, kind: &str, description: &str) -> Value {
    json!({ "name": name, "in": "query", "description": description,
            "schema": { "type": kind }, "uniqueItems": true })
}

fn write_parameters() -> Vec<Value> {
    vec![
        query(
            "dryRun",
            "string",
            "When present (All), nothing is persisted.",
        ),
        query(
            "fieldManager",
            "string",
            "The name of the actor making the change.",
        ),
        query(
            "fieldValidation",
            "string",
            "Ignore, Warn or Strict: what the server does with unknown or duplicate fields.",
        ),
    ]
}

fn list_parameters() -> Vec<Value> {
    vec![
        query(
            "labelSelector",
            "string",
            "Only objects whose labels match.",
        ),
        query(
            "fieldSelector",
            "string",
            "Only objects whose fields match.",
        ),
        query(
            "limit",
            "integer",
            "At most this many objects; continue for more.",
        ),
        query("continue", "string", "The token of the previous page."),
        query(
            "resourceVersion",
            "string",
            "The version to list or watch from.",
        ),
        query("resourceVersionMatch", "string", "NotOlderThan or Exact."),
        query("watch", "boolean", "Follow changes instead of listing."),
        query("allowWatchBookmarks", "boolean", "Send BOOKMARK events."),
        query(
            "timeoutSeconds",
            "integer",
            "End the watch after this long.",
        ),
    ]
}

/// The operations at `info`'s paths, each marked with its kind and action.
fn add_paths(paths: &mut Map<String, Value>, info: &KindInfo, schema: &Value) {
    let prefix = format!("/{}", path_of(info.group, info.version));
    let gvk = json!({ "group": info.group, "version": info.version, "kind": info.kind });
    let scope = if info.namespaced { "Namespaced" } else { "" };
    let operation = |action: &str, verb: &str, parameters: Vec<Value>, body: Option<Value>| {
        let mut operation = json!({
            "operationId": format!("{verb}{scope}{}", info.kind),
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
            "parameters": parameters,
            "responses": { "200": { "description": "OK",
                                     "content": { "application/json": { "schema": schema } } } },
        });
        if let Some(body) = body {
            operation["requestBody"] = json!({ "required": true, "content": body });
        }
        operation
    };
    let object_body = || json!({ "application/json": { "schema": schema } });
    let patch_body = || {
        let any = json!({ "schema": { "type": "object" } });
        json!({ "application/json-patch+json": any, "application/merge-patch+json": any,
                "application/strategic-merge-patch+json": any })
    };
    let path_parameter = |name: &str| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } });
    let (collection, mut scope_parameters) = if info.namespaced {
        (
            format!("{prefix}/namespaces/{{namespace}}/{}", info.resource),
            vec![path_parameter("namespace")],
        )
    } else {
        (format!("{prefix}/{}", info.resource), Vec::new())
    };
    paths.insert(
        collection.clone(),
        json!({
            "parameters": scope_parameters,
            "get": operation("list", "list", list_parameters(), None),
            "post": operation("post", "create", write_parameters(), Some(object_body())),
            "delete": operation("deletecollection", "deleteCollection", list_parameters(), None),
        }),
    );
    if info.namespaced {
        paths.insert(
            format!("{prefix}/{}", info.resource),
            json!({ "get": operation("list", "listAllNamespaces", list_parameters(), None) }),
        );
    }
    scope_parameters.push(path_parameter("name"));
    let object = format!("{collection}/{{name}}");
    paths.insert(
        object.clone(),
        json!({
            "parameters": scope_parameters,
            "get": operation("get", "read", Vec::new(), None),
            "put": operation("put", "replace", write_parameters(), Some(object_body())),
            "patch": operation("patch", "patch", write_parameters(), Some(patch_body())),
            "delete": operation("delete", "delete", write_parameters(), None),
        }),
    );
    if info.has_status {
        paths.insert(
            format!("{object}/status"),
            json!({
                "parameters": scope_parameters,
                "get": operation("get", "read", Vec::new(), None),
                "put": operation("put", "replace", write_parameters(), Some(object_body())),
                "patch": operation("patch", "patch", write_parameters(), Some(patch_body())),
            }),
        );
    }
}

/// The definitions of the document at `path`, by name (for the tests).
#[cfg(test)]
fn definitions(path: &str) -> std::collections::HashMap<String, Value> {
    let document: Value = serde_json::from_slice(&document_at(path).unwrap().json).unwrap();
    document["components"]["schemas"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_lists_every_group_version_with_a_hash() {
        let index = index();
        let core = index["paths"]["api/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(core.starts_with("/openapi/v3/api/v1?hash="), "{core}");
        assert!(index["paths"]["apis/apps/v1"].is_object());
        assert!(document_at("/apis/apps/v1").is_some());
        assert!(document_at("apis/widgets/v1").is_none());
    }

    #[test]
    fn kinds_carry_their_group_version_kind_and_lists_their_patch_markers() {
        let core = definitions("api/v1");
        let pod = &core["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod["x-kubernetes-group-version-kind"],
            json!([{ "group": "", "version": "v1", "kind": "Pod" }])
        );
        let containers = &core["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        let ports = &core["io.k8s.api.core.v1.Container"]["properties"]["ports"];
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
        let finalizers =
            &core["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["finalizers"];
        assert_eq!(finalizers["x-kubernetes-patch-strategy"], "merge");
        let tolerations = &core["io.k8s.api.core.v1.PodSpec"]["properties"]["tolerations"];
        assert!(tolerations.get("x-kubernetes-patch-strategy").is_none());
        let service_ports = &core["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"];
        assert_eq!(service_ports["x-kubernetes-patch-merge-key"], "port");
        let volumes = &core["io.k8s.api.core.v1.PodSpec"]["properties"]["volumes"];
        assert_eq!(volumes["x-kubernetes-patch-strategy"], "merge,retainKeys");
        let apps = definitions("apis/apps/v1");
        let strategy = &apps["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
        assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
    }

    #[test]
    fn every_write_names_field_validation_for_kubectl() {
        let apps: Value =
            serde_json::from_slice(&document_at("apis/apps/v1").unwrap().json).unwrap();
        let patch =
            &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
        assert!(
            patch["requestBody"]["content"]["application/strategic-merge-patch+json"].is_object()
        );
    }

    #[test]
    fn merged_definitions_keep_what_every_group_version_says() {
        fn within(part: &Value, whole: &Value) -> bool {
            match (part, whole) {
                (Value::Object(part), Value::Object(whole)) => part
                    .iter()
                    .all(|(key, value)| whole.get(key).is_some_and(|w| within(value, w))),
                _ => part == whole,
            }
        }
        let all = all_definitions();
        for schemas in definitions_by_group_version() {
            for (name, schema) in schemas {
                assert!(within(&schema, &all[&name]), "{name} lost something");
            }
        }
        let claim = &all["io.k8s.api.core.v1.PersistentVolumeClaim"];
        assert_eq!(
            claim["x-kubernetes-group-version-kind"][0]["kind"],
            "PersistentVolumeClaim"
        );
    }
}
