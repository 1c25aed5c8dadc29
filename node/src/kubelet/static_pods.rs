//! Static pods, pure: pods from manifest files in the node's `--manifests` directory, run by
//! the kubelet without the API, and the *mirror pods* that show them in the API (as in
//! Kubernetes: named `<name>-<node>`, annotated `kubernetes.io/config.mirror`; deleting a
//! mirror pod does not stop its static pod, the kubelet makes a new mirror).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
pub const SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";
pub const HASH_ANNOTATION: &str = "kubernetes.io/config.hash";

/// Whether an API pod is a mirror pod (shown for a static pod, not run from the API).
pub fn is_mirror(pod: &Value) -> bool {
    !pod["metadata"]["annotations"][MIRROR_ANNOTATION].is_null()
}

/// The static pods of a manifest directory (`.yaml`, `.yml`, `.json`; YAML files may hold
/// several documents), as the kubelet runs them, and a message per file that could not be
/// read. A missing directory holds no pods.
pub fn read_manifests(dir: &Path, node: &str) -> (Vec<Value>, Vec<String>) {
    let mut pods = Vec::new();
    let mut problems = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        })
        .collect();
    files.sort();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) => {
                problems.push(format!("{}: {e}", file.display()));
                continue;
            }
        };
        for (index, document) in documents(&text).into_iter().enumerate() {
            match document.and_then(|manifest| static_pod(&manifest, node)) {
                Ok(pod) => pods.push(pod),
                Err(reason) => problems.push(format!(
                    "{} (document {}): {reason}",
                    file.display(),
                    index + 1
                )),
            }
        }
    }
    (pods, problems)
}

fn documents(text: &str) -> Vec<Result<Value, String>> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|document| Value::deserialize(document).map_err(|e| format!("not YAML or JSON: {e}")))
        .filter(|d| !matches!(d, Ok(Value::Null)))
        .collect()
}

/// A manifest as the static pod this node runs: named `<name>-<node>`, bound here, with a
/// uid that is the hash of its manifest and node (the same file gives the same pod after a
/// restart; an edited file, a new pod).
pub fn static_pod(manifest: &Value, node: &str) -> Result<Value, String> {
    if manifest["kind"] != "Pod" {
        return Err(format!("kind {} is not Pod", manifest["kind"]));
    }
    let name = manifest["metadata"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or("metadata.name is missing")?;
    if manifest["spec"]["containers"]
        .as_array()
        .is_none_or(|c| c.is_empty())
    {
        return Err("spec.containers is empty".into());
    }
    let mut hasher = Sha256::new();
    hasher.update(node.as_bytes());
    hasher.update(manifest.to_string().as_bytes());
    let hex: String = hasher
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    let uid = format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    let mut pod = manifest.clone();
    let meta = &mut pod["metadata"];
    meta["name"] = json!(format!("{name}-{node}"));
    if meta["namespace"].as_str().is_none_or(str::is_empty) {
        meta["namespace"] = json!("default");
    }
    meta["uid"] = json!(uid);
    let mut annotations = meta["annotations"].as_object().cloned().unwrap_or_default();
    annotations.insert(HASH_ANNOTATION.into(), json!(uid));
    annotations.insert(SOURCE_ANNOTATION.into(), json!("file"));
    meta["annotations"] = Value::Object(annotations);
    pod["spec"]["nodeName"] = json!(node);
    Ok(pod)
}

/// The mirror pod to create in the API for a static pod.
pub fn mirror_pod(static_pod: &Value) -> Value {
    let mut mirror = static_pod.clone();
    let meta = mirror["metadata"]
        .as_object_mut()
        .expect("a pod has metadata");
    let uid = meta.remove("uid").unwrap_or_default();
    meta.remove("resourceVersion");
    meta.remove("creationTimestamp");
    if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
        annotations.insert(MIRROR_ANNOTATION.into(), uid);
    }
    mirror.as_object_mut().map(|m| m.remove("status"));
    mirror
}

/// The static pod a mirror pod stands for (its `config.mirror` annotation).
pub fn mirrored_uid(mirror: &Value) -> Option<&str> {
    mirror["metadata"]["annotations"][MIRROR_ANNOTATION].as_str()
}

/// A mirror pod to delete for good (namespace, name, its API uid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleMirror {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// What the API's mirror pods need to match the static pods (uid → pod): mirrors of no
/// current static pod, or being deleted through the API, go; a static pod without a mirror
/// (none of its namespace and name) gets one: (static uid, mirror to create).
pub fn mirror_changes<'a>(
    mirrors: impl IntoIterator<Item = &'a Value>,
    static_pods: &BTreeMap<String, Value>,
) -> (Vec<StaleMirror>, Vec<(String, Value)>) {
    let mirrors: Vec<&Value> = mirrors.into_iter().collect();
    let stale = mirrors
        .iter()
        .filter(|mirror| {
            let current = mirrored_uid(mirror).is_some_and(|uid| static_pods.contains_key(uid));
            !current || !mirror["metadata"]["deletionTimestamp"].is_null()
        })
        .map(|mirror| {
            let meta = &mirror["metadata"];
            let text = |field: &str| meta[field].as_str().unwrap_or_default().to_string();
            StaleMirror {
                namespace: text("namespace"),
                name: text("name"),
                uid: text("uid"),
            }
        })
        .collect();
    let missing = static_pods
        .iter()
        .filter(|(_, pod)| {
            !mirrors.iter().any(|m| {
                m["metadata"]["namespace"] == pod["metadata"]["namespace"]
                    && m["metadata"]["name"] == pod["metadata"]["name"]
            })
        })
        .map(|(uid, pod)| (uid.clone(), mirror_pod(pod)))
        .collect();
    (stale, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Value {
        json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "web" },
                "spec": { "containers": [{ "name": "c", "image": "luksa/kubia" }] } })
    }

    #[test]
    fn a_static_pod_is_named_for_its_node_bound_there_and_keyed_by_its_content() {
        let pod = static_pod(&manifest(), "n1").unwrap();
        assert_eq!(pod["metadata"]["name"], "web-n1");
        assert_eq!(pod["metadata"]["namespace"], "default");
        assert_eq!(pod["spec"]["nodeName"], "n1");
        let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
        assert_eq!(uid.len(), 36);
        assert_eq!(
            static_pod(&manifest(), "n1").unwrap()["metadata"]["uid"],
            uid.as_str()
        );
        let mut edited = manifest();
        edited["spec"]["containers"][0]["image"] = json!("other");
        assert_ne!(
            static_pod(&edited, "n1").unwrap()["metadata"]["uid"],
            uid.as_str()
        );
        assert_ne!(
            static_pod(&manifest(), "n2").unwrap()["metadata"]["uid"],
            uid.as_str()
        );
    }

    #[test]
    fn mirrors_carry_the_annotation_and_no_uid() {
        let pod = static_pod(&manifest(), "n1").unwrap();
        let mirror = mirror_pod(&pod);
        assert!(mirror["metadata"]["uid"].is_null());
        assert!(is_mirror(&mirror));
        assert_eq!(mirrored_uid(&mirror), pod["metadata"]["uid"].as_str());
        assert!(!is_mirror(&pod));
    }

    #[test]
    fn mirrors_follow_the_static_pods() {
        let pod = static_pod(&manifest(), "n1").unwrap();
        let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
        let statics = BTreeMap::from([(uid.clone(), pod.clone())]);
        let (stale, missing) = mirror_changes([], &statics);
        assert!(stale.is_empty());
        assert_eq!(missing, [(uid.clone(), mirror_pod(&pod))]);

        let mut mirror = mirror_pod(&pod);
        mirror["metadata"]["uid"] = json!("api-uid");
        let (stale, missing) = mirror_changes([&mirror], &statics);
        assert!(stale.is_empty() && missing.is_empty(), "in step");

        let mut deleting = mirror.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("t");
        let (stale, missing) = mirror_changes([&deleting], &statics);
        assert_eq!(stale[0].uid, "api-uid");
        assert!(missing.is_empty(), "a new mirror once the old one is gone");

        let (stale, missing) = mirror_changes([&mirror], &BTreeMap::new());
        assert_eq!(
            stale,
            [StaleMirror {
                namespace: "default".into(),
                name: "web-n1".into(),
                uid: "api-uid".into()
            }]
        );
        assert!(missing.is_empty());
    }

    #[test]
    fn manifests_are_read_from_yaml_and_json_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            serde_yaml::to_string(&manifest()).unwrap(),
        )
        .unwrap();
        let mut other = manifest();
        other["metadata"]["name"] = json!("api");
        std::fs::write(dir.path().join("b.json"), other.to_string()).unwrap();
        std::fs::write(
            dir.path().join("c.yaml"),
            "kind: Service\nmetadata: {name: x}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let (pods, problems) = read_manifests(dir.path(), "n1");
        let names: Vec<_> = pods.iter().map(|p| p["metadata"]["name"].clone()).collect();
        assert_eq!(names, [json!("web-n1"), json!("api-n1")]);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("c.yaml") && problems[0].contains("not Pod"),
            "{problems:?}"
        );
        let (pods, problems) = read_manifests(&dir.path().join("missing"), "n1");
        assert!(pods.is_empty() && problems.is_empty());
    }
}
