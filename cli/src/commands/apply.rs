//! `apply -f`: create or update objects from manifests, remembering what was applied
//! (the last-applied annotation) for the next three-way merge. Also the two object writes
//! the other verbs share ([`create`], [`patch_object`]).

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use rudder_proto::api as pb;
use rudder_proto::client::ClientError;
use serde_json::{json, Value};

use crate::commands::get::{get_one, Scope};
use crate::manifest::{self, merge_diff, LAST_APPLIED};
use crate::session::{display_name, Session, Target};

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// Manifest file, directory, or `-` for stdin (repeatable).
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    scope: Scope,
    #[command(flatten)]
    target: Target,
}

/// `apply -f`: creates what does not exist, and patches what does with the difference
/// between the last applied manifest and this one (kubectl's client-side apply), so fields
/// other writers own (replicas set by `scale`, labels added by `label`) survive unless the
/// manifest itself changes them. A manifest carrying a resourceVersion is applied only to
/// that version (a stale one is a conflict).
pub async fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let session = Session::connect(&args.target).await?;
    let documents = manifest::read_all(&args.files)?;
    let mut failures = 0;
    for document in documents {
        match apply_one(&session, &args.scope, document.object).await {
            Ok(line) => println!("{line}"),
            Err(error) => {
                failures += 1;
                eprintln!("error: {}: {error:#}", document.source);
            }
        }
    }
    if failures > 0 {
        bail!("{failures} manifest(s) could not be applied");
    }
    Ok(())
}

async fn apply_one(session: &Session, scope: &Scope, mut object: Value) -> anyhow::Result<String> {
    let kind = session.kind_of_document(&object)?.clone();
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    if name.is_empty() {
        bail!(
            "{} has no metadata.name: apply needs a name (use create for generateName)",
            kind.kind
        );
    }
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    let namespace = namespace_of(&kind, &object, scope);
    let mut applied = object.clone();
    if let Some(meta) = applied["metadata"].as_object_mut() {
        meta.remove("resourceVersion");
        if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.remove(LAST_APPLIED);
        }
    }
    let applied_text = applied.to_string();
    match get_one(session, &kind, &namespace, &name).await {
        Err(error) if error.is_not_found() => {
            annotate(&mut object, LAST_APPLIED, &applied_text);
            create(session, &kind, &namespace, &object).await?;
            Ok(format!("{} created", display_name(&kind, &name)))
        }
        Err(error) => Err(error.into()),
        Ok(live) => {
            let last: Value = live["metadata"]["annotations"][LAST_APPLIED]
                .as_str()
                .and_then(|text| serde_json::from_str(text).ok())
                .unwrap_or_else(|| json!({}));
            let mut patch = merge_diff(&last, &applied);
            // Nothing to send (as kubectl): a write would change nothing of the user's, and
            // its resourceVersion could still move meanwhile (a controller writing status),
            // which must not read as "configured".
            let recorded = live["metadata"]["annotations"][LAST_APPLIED].as_str()
                == Some(applied_text.as_str());
            if patch == json!({}) && recorded && object["metadata"]["resourceVersion"].is_null() {
                return Ok(format!("{} unchanged", display_name(&kind, &name)));
            }
            annotate(&mut patch, LAST_APPLIED, &applied_text);
            if let Some(version) = object["metadata"]["resourceVersion"].as_str() {
                patch["metadata"]["resourceVersion"] = Value::from(version);
            }
            let before = live["metadata"]["resourceVersion"].clone();
            let after = patch_object(session, &kind, &namespace, &name, &patch, false).await?;
            let verb = if after["metadata"]["resourceVersion"] == before {
                "unchanged"
            } else {
                "configured"
            };
            Ok(format!("{} {verb}", display_name(&kind, &name)))
        }
    }
}

pub(crate) fn namespace_of(kind: &pb::Kind, object: &Value, scope: &Scope) -> String {
    if !kind.namespaced {
        return String::new();
    }
    object["metadata"]["namespace"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| scope.namespace())
}

fn annotate(object: &mut Value, key: &str, value: &str) {
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    if !object["metadata"]["annotations"].is_object() {
        object["metadata"]["annotations"] = json!({});
    }
    object["metadata"]["annotations"][key] = Value::from(value);
}

pub async fn create(
    session: &Session,
    kind: &pb::Kind,
    namespace: &str,
    object: &Value,
) -> Result<Value, ClientError> {
    session
        .client
        .create_object(&kind.resource, namespace, object)
        .await
}

pub async fn patch_object(
    session: &Session,
    kind: &pb::Kind,
    namespace: &str,
    name: &str,
    patch: &Value,
    status: bool,
) -> Result<Value, ClientError> {
    session
        .client
        .patch_object(&kind.resource, namespace, name, patch, status)
        .await
}
