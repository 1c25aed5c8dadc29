//! `label` and `annotate`: add, change (`--overwrite`) or remove (`key-`) metadata.

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Map, Value};

use crate::commands::apply::patch_object;
use crate::commands::get::{get_one, names_matching, Scope};
use crate::session::{display_name, Session, Target};

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
    /// Change only if the object is still at this resourceVersion (as kubectl; without it
    /// the change applies over whatever else changed the object meanwhile).
    #[arg(long)]
    resource_version: Option<String>,
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
        names_matching(&session, &kind, &args.scope.namespace(), &selector).await?
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
        let mut patch = json!({ "metadata": { key: edits } });
        if let Some(version) = &args.resource_version {
            patch["metadata"]["resourceVersion"] = json!(version);
        }
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
