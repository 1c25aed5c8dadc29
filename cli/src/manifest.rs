//! Manifests from files, directories or stdin (YAML with `---` separators, or JSON), and the
//! merge patch `apply` sends. Pure apart from reading the files.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The annotation `apply` keeps the last applied manifest in (kubectl's own name, so
/// objects move between the tools).
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// One document and where it came from (for error messages).
#[derive(Debug, Clone)]
pub struct Document {
    pub source: String,
    pub object: Value,
}

/// Every document in `paths` (`-` is stdin; a directory means its .yaml/.yml/.json files,
/// in name order). `List` documents are flattened into their items.
pub fn read_all(paths: &[PathBuf]) -> anyhow::Result<Vec<Document>> {
    let mut documents = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading stdin")?;
            documents.extend(parse(&text, "stdin")?);
        } else if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading directory {path:?}"))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| is_manifest(p))
                .collect();
            files.sort();
            for file in files {
                documents.extend(read_file(&file)?);
            }
        } else {
            documents.extend(read_file(path)?);
        }
    }
    Ok(documents)
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

fn read_file(path: &Path) -> anyhow::Result<Vec<Document>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {path:?}: check the path given to -f"))?;
    parse(&text, &path.display().to_string())
}

/// The documents in one text; empty documents are skipped.
pub fn parse(text: &str, source: &str) -> anyhow::Result<Vec<Document>> {
    let mut documents = Vec::new();
    if text.trim_start().starts_with('{') {
        let object: Value =
            serde_json::from_str(text).with_context(|| format!("{source}: invalid JSON"))?;
        push(&mut documents, object, source)?;
        return Ok(documents);
    }
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let object = Value::deserialize(document)
            .with_context(|| format!("{source}: invalid YAML in document {}", index + 1))?;
        push(&mut documents, object, source)?;
    }
    Ok(documents)
}

fn push(documents: &mut Vec<Document>, object: Value, source: &str) -> anyhow::Result<()> {
    match object {
        Value::Null => Ok(()),
        Value::Object(_) if object["kind"] == "List" => {
            for item in object["items"].as_array().cloned().unwrap_or_default() {
                push(documents, item, source)?;
            }
            Ok(())
        }
        Value::Object(_) => {
            documents.push(Document {
                source: source.into(),
                object,
            });
            Ok(())
        }
        other => bail!(
            "{source}: a manifest must be a mapping (apiVersion, kind, metadata...), found {other}"
        ),
    }
}

/// The RFC 7386 merge patch that turns `old` into `new`: changed fields are set, fields
/// `new` dropped become null.
pub fn merge_diff(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let mut patch = Map::new();
            for key in old.keys() {
                if !new.contains_key(key) {
                    patch.insert(key.clone(), Value::Null);
                }
            }
            for (key, value) in new {
                match old.get(key) {
                    Some(previous) if previous == value => {}
                    Some(previous) if previous.is_object() && value.is_object() => {
                        patch.insert(key.clone(), merge_diff(previous, value));
                    }
                    _ => {
                        patch.insert(key.clone(), value.clone());
                    }
                }
            }
            Value::Object(patch)
        }
        (_, new) => new.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn multi_document_yaml_skips_empty_documents_and_flattens_lists() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\n\
                    kind: List\nitems:\n- {apiVersion: v1, kind: Secret, metadata: {name: b}}\n";
        let documents = parse(text, "t").unwrap();
        let names: Vec<_> = documents
            .iter()
            .map(|d| d.object["metadata"]["name"].clone())
            .collect();
        assert_eq!(names, [json!("a"), json!("b")]);
    }

    #[test]
    fn invalid_yaml_names_the_document() {
        let error = parse("a: 1\n---\nb: [unclosed\n", "f.yaml").unwrap_err();
        assert!(
            format!("{error:#}").contains("f.yaml: invalid YAML in document 2"),
            "{error:#}"
        );
    }

    #[test]
    fn merge_diffs_set_changes_and_null_removals() {
        let old = json!({ "spec": { "replicas": 1, "paused": true }, "data": { "a": "1" } });
        let new = json!({ "spec": { "replicas": 2 }, "data": { "a": "1" } });
        assert_eq!(
            merge_diff(&old, &new),
            json!({ "spec": { "replicas": 2, "paused": null } })
        );
    }
}
