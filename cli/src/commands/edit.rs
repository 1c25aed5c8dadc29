//! Verbs that change or remove existing objects: `scale`, `label`, `annotate`, `delete`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use rudder_proto::api as pb;
use serde_json::{json, Map, Value};

use crate::commands::apply::patch_object;
use crate::commands::get::{get_one, list_matching, Scope};
use crate::manifest;
use crate::session::{display_name, Session, Target};

#[derive(Args, Debug)]
pub struct ScaleArgs {
    /// rc, rs, deploy, sts (or KIND/NAME).
    kind: String,
    name: Option<String>,
    #[arg(long, allow_negative_numbers = true)]
    replicas: i64,
    /// Scale only if the current replica count is this (a precondition).
    #[arg(long)]
    current_replicas: Option<i64>,
    #[command(flatten)]
    scope: Scope,
    #[command(flatten)]
    target: Target,
}

pub async fn scale(args: ScaleArgs) -> anyhow::Result<()> {
    let session = Session::connect(&args.target).await?;
    let (kind, name) = kind_and_name(&args.kind, args.name.as_deref())?;
    let kind = session.kind(&kind)?.clone();
    if !matches!(
        kind.kind.as_str(),
        "ReplicationController" | "ReplicaSet" | "Deployment" | "StatefulSet"
    ) {
        bail!(
            "{} cannot be scaled: scale rc, rs, deploy or sts",
            kind.resource
        );
    }
    let namespace = args.scope.namespace();
    let mut patch = json!({ "spec": { "replicas": args.replicas } });
    if let Some(expected) = args.current_replicas {
        let current = get_one(&session, &kind, &namespace, &name).await?;
        let actual = current["spec"]["replicas"].as_i64().unwrap_or(1);
        if actual != expected {
            bail!("Expected replicas to be {expected}, was {actual}");
        }
        patch["metadata"] = json!({ "resourceVersion": current["metadata"]["resourceVersion"] });
    }
    patch_object(&session, &kind, &namespace, &name, &patch, false).await?;
    println!("{} scaled", display_name(&kind, &name));
    Ok(())
}

#[derive(Args, Debug)]
pub struct MetadataArgs {
    /// Kind (or KIND/NAME).
    kind: String,
    /// NAME (unless KIND/NAME), then key=value to set and key- to remove.
    arguments: Vec<String>,
    /// Replace values that are already set.
    #[arg(long)]
    overwrite: bool,
    /// Every object of the kind (in the namespace).
    #[arg(long)]
    all: bool,
    #[arg(short = 'l', long)]
    selector: Option<String>,
    #[command(flatten)]
    scope: Scope,
    #[command(flatten)]
    target: Target,
}

/// Which metadata map `label` / `annotate` edit.
#[derive(Debug, Clone, Copy)]
pub enum MetadataField {
    Labels,
    Annotations,
}

pub async fn edit_metadata(args: MetadataArgs, field: MetadataField) -> anyhow::Result<()> {
    let session = Session::connect(&args.target).await?;
    let (kind, mut arguments) = match args.kind.split_once('/') {
        Some((kind, name)) => {
            let mut rest = vec![name.to_string()];
            rest.extend(args.arguments.iter().cloned());
            (kind.to_string(), rest)
        }
        None => (args.kind.clone(), args.arguments.clone()),
    };
    let kind = session.kind(&kind)?.clone();
    let changes: Vec<String> = arguments
        .iter()
        .filter(|a| a.contains('=') || a.ends_with('-'))
        .cloned()
        .collect();
    arguments.retain(|a| !(a.contains('=') || a.ends_with('-')));
    if changes.is_empty() {
        bail!("give at least one key=value to set or key- to remove");
    }
    let names: Vec<String> = if args.all || args.selector.is_some() {
        let selector = args.selector.clone().unwrap_or_default();
        list_matching(&session, &kind, &args.scope.namespace(), &selector, "", 500)
            .await?
            .0
            .iter()
            .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
            .collect()
    } else {
        arguments
    };
    if names.is_empty() {
        bail!("name the objects to change (or use --all / -l)");
    }
    let (key, verb) = match field {
        MetadataField::Labels => ("labels", "labeled"),
        MetadataField::Annotations => ("annotations", "annotated"),
    };
    for name in names {
        let current = get_one(&session, &kind, &args.scope.namespace(), &name).await?;
        let mut edits = Map::new();
        for change in &changes {
            if let Some(removed) = change.strip_suffix('-').filter(|_| !change.contains('=')) {
                edits.insert(removed.into(), Value::Null);
                continue;
            }
            let (k, v) = change.split_once('=').context("key=value")?;
            if let Some(old) = current["metadata"][key][k].as_str() {
                if old != v && !args.overwrite {
                    bail!("'{k}' already has a value ({old}), and --overwrite is false");
                }
            }
            edits.insert(k.into(), Value::from(v));
        }
        let patch = json!({ "metadata": {
            key: edits,
            "resourceVersion": current["metadata"]["resourceVersion"],
        }});
        patch_object(
            &session,
            &kind,
            &args.scope.namespace(),
            &name,
            &patch,
            false,
        )
        .await?;
        println!("{} {verb}", display_name(&kind, &name));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Cascade {
    Background,
    Foreground,
    Orphan,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Kind (or KIND/NAME); not needed with -f.
    kind: Option<String>,
    names: Vec<String>,
    /// Delete what these manifests describe.
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Every object of the kind in the namespace.
    #[arg(long)]
    all: bool,
    /// Seconds a pod gets to stop (0 with --force: at once). Default: the pod's own.
    #[arg(long, allow_negative_numbers = true)]
    grace_period: Option<i64>,
    /// Delete at once without waiting for the kubelet's confirmation (with --grace-period=0).
    #[arg(long)]
    force: bool,
    /// What happens to dependents (objects this one owns).
    #[arg(long, value_enum, default_value = "background")]
    cascade: Cascade,
    /// Do not fail when the object does not exist.
    #[arg(long)]
    ignore_not_found: bool,
    #[command(flatten)]
    scope: Scope,
    #[command(flatten)]
    target: Target,
}

pub async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let session = Session::connect(&args.target).await?;
    let mut targets: Vec<(pb::Kind, String, String)> = Vec::new();
    if !args.files.is_empty() {
        for document in manifest::read_all(&args.files)? {
            let kind = session.kind_of_document(&document.object)?.clone();
            let name = document.object["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let namespace = document.object["metadata"]["namespace"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| args.scope.namespace());
            targets.push((kind, namespace, name));
        }
    } else {
        let given = args
            .kind
            .clone()
            .context("name a kind (rudder delete pod NAME) or give -f FILE")?;
        let (kind, names) = match given.split_once('/') {
            Some((kind, name)) => {
                let mut names = vec![name.to_string()];
                names.extend(args.names.iter().cloned());
                (kind.to_string(), names)
            }
            None => (given.clone(), args.names.clone()),
        };
        let kind = session.kind(&kind)?.clone();
        let names = if args.all || args.selector.is_some() {
            let selector = args.selector.clone().unwrap_or_default();
            list_matching(&session, &kind, &args.scope.namespace(), &selector, "", 500)
                .await?
                .0
                .iter()
                .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
                .collect()
        } else if names.is_empty() {
            bail!("name what to delete, or use --all or -l SELECTOR");
        } else {
            names
        };
        if names.is_empty() {
            println!("No resources found");
        }
        for name in names {
            targets.push((kind.clone(), args.scope.namespace(), name));
        }
    }
    let propagation = match args.cascade {
        Cascade::Background => "Background",
        Cascade::Foreground => "Foreground",
        Cascade::Orphan => "Orphan",
    };
    if args.grace_period == Some(0) && !args.force {
        bail!(
            "--grace-period=0 deletes without waiting for the pod to stop: add --force to confirm"
        );
    }
    let mut failures = 0;
    for (kind, namespace, name) in targets {
        let request = pb::DeleteRequest {
            resource: kind.resource.clone(),
            namespace,
            name: name.clone(),
            grace_period_seconds: args.grace_period,
            propagation_policy: propagation.into(),
            fence: None,
            ..Default::default()
        };
        let outcome = session.client.delete_object(request).await;
        match outcome {
            Ok(_) => println!("{} \"{name}\" deleted", kind.singular),
            Err(error) if error.is_not_found() && args.ignore_not_found => {}
            Err(error) => {
                failures += 1;
                eprintln!("{error}");
            }
        }
    }
    if failures > 0 {
        bail!("{failures} object(s) could not be deleted");
    }
    Ok(())
}

fn kind_and_name(kind: &str, name: Option<&str>) -> anyhow::Result<(String, String)> {
    match (kind.split_once('/'), name) {
        (Some((kind, name)), _) => Ok((kind.into(), name.into())),
        (None, Some(name)) => Ok((kind.into(), name.into())),
        (None, None) => bail!("name the object: {kind} NAME or {kind}/NAME"),
    }
}
