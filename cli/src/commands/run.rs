//! `run NAME --image=...`: a Pod, a ReplicationController (`--generator=run/v1`, as in
//! the seeds) or a Deployment.

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};

use crate::commands::apply::create;
use crate::commands::get::Scope;
use crate::session::{display_name, Session, Target};

#[derive(Args, Debug)]
pub struct RunArgs {
    name: String,
    #[arg(long)]
    image: String,
    /// Port the container listens on.
    #[arg(long)]
    port: Option<i64>,
    /// Replicas (for the run/v1 and deployment generators).
    #[arg(long, default_value_t = 1)]
    replicas: i64,
    /// What to create: run-pod/v1 (a Pod, the default), run/v1 (a ReplicationController,
    /// as in the seeds), deployment/apps.v1 (a Deployment).
    #[arg(long, default_value = "run-pod/v1")]
    generator: String,
    /// Labels (key=value,...); default run=NAME.
    #[arg(short = 'l', long)]
    labels: Option<String>,
    /// Environment variables for the container (NAME=value, repeatable).
    #[arg(long)]
    env: Vec<String>,
    #[command(flatten)]
    scope: Scope,
    #[command(flatten)]
    target: Target,
    /// Command and arguments for the container (after --).
    #[arg(last = true)]
    command: Vec<String>,
}

pub async fn run_command(args: RunArgs) -> anyhow::Result<()> {
    let session = Session::connect(&args.target).await?;
    let labels: Value = match &args.labels {
        None => json!({ "run": args.name }),
        Some(text) => {
            let mut labels = serde_json::Map::new();
            for pair in text.split(',') {
                let (key, value) = pair
                    .split_once('=')
                    .with_context(|| format!("label {pair:?} is not key=value"))?;
                labels.insert(key.trim().into(), value.trim().into());
            }
            Value::Object(labels)
        }
    };
    let mut container = json!({ "name": args.name, "image": args.image });
    if let Some(port) = args.port {
        container["ports"] = json!([{ "containerPort": port }]);
    }
    if !args.env.is_empty() {
        let env: Vec<Value> = args
            .env
            .iter()
            .map(|e| {
                let (name, value) = e.split_once('=').unwrap_or((e, ""));
                json!({ "name": name, "value": value })
            })
            .collect();
        container["env"] = Value::from(env);
    }
    if !args.command.is_empty() {
        container["command"] = json!(args.command);
    }
    let pod_spec = json!({ "containers": [container] });
    let object = match args.generator.as_str() {
        "run-pod/v1" => json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": args.name, "labels": labels },
            "spec": pod_spec,
        }),
        "run/v1" => json!({
            "apiVersion": "v1", "kind": "ReplicationController",
            "metadata": { "name": args.name, "labels": labels },
            "spec": {
                "replicas": args.replicas, "selector": labels,
                "template": { "metadata": { "labels": labels }, "spec": pod_spec }
            }
        }),
        "deployment/apps.v1" => json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": args.name, "labels": labels },
            "spec": {
                "replicas": args.replicas, "selector": { "matchLabels": labels },
                "template": { "metadata": { "labels": labels }, "spec": pod_spec }
            }
        }),
        other => bail!("unknown generator {other:?}: use run-pod/v1, run/v1 or deployment/apps.v1"),
    };
    let kind = session.kind_of_document(&object)?.clone();
    create(&session, &kind, &args.scope.namespace(), &object).await?;
    println!("{} created", display_name(&kind, &args.name));
    Ok(())
}
