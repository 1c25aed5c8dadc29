//! `scale KIND NAME --replicas=N`.

use anyhow::bail;
use clap::Args;
use serde_json::json;

use crate::commands::apply::patch_object;
use crate::commands::get::{get_one, Scope};
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

fn kind_and_name(kind: &str, name: Option<&str>) -> anyhow::Result<(String, String)> {
    match (kind.split_once('/'), name) {
        (Some((kind, name)), _) => Ok((kind.into(), name.into())),
        (None, Some(name)) => Ok((kind.into(), name.into())),
        (None, None) => bail!("name the object: {kind} NAME or {kind}/NAME"),
    }
}
