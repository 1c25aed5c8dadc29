//! `expose KIND NAME`: a Service selecting what the object's pods carry.

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};

use crate::commands::apply::create;
use crate::commands::get::{get_one, Scope};
use crate::session::{Session, Target};

#[derive(Args, Debug)]
pub struct ExposeArgs {
    /// What to expose: rc, rs, deploy or pod (or KIND/NAME).
    kind: String,
    /// The object to expose (unless given as KIND/NAME).
    object: Option<String>,
    /// The service's port (default: the first container port).
    #[arg(long)]
    port: Option<i64>,
    /// The port on the pods (name or number; default: --port).
    #[arg(long)]
    target_port: Option<String>,
    /// ClusterIP, NodePort, LoadBalancer.
    #[arg(long = "type", default_value = "ClusterIP")]
    service_type: String,
    /// The service's name (default: the exposed object's).
    #[arg(long)]
    name: Option<String>,
    #[arg(long, default_value = "TCP")]
    protocol: String,
    #[command(flatten)]
    scope: Scope,
    #[command(flatten)]
    target: Target,
}

pub async fn expose(args: ExposeArgs) -> anyhow::Result<()> {
    let session = Session::connect(&args.target).await?;
    let (kind, name) = match (args.kind.split_once('/'), &args.object) {
        (Some((kind, name)), _) => (kind.to_string(), name.to_string()),
        (None, Some(name)) => (args.kind.clone(), name.clone()),
        (None, None) => bail!(
            "name the object to expose: rudder expose {} NAME",
            args.kind
        ),
    };
    let kind = session.kind(&kind)?.clone();
    let namespace = args.scope.namespace();
    let object = get_one(&session, &kind, &namespace, &name).await?;
    let selector = match kind.kind.as_str() {
        "ReplicationController" => object["spec"]["selector"].clone(),
        "ReplicaSet" | "Deployment" | "DaemonSet" | "StatefulSet" => {
            if object["spec"]["selector"]["matchExpressions"].is_array() {
                bail!(
                    "{} {name} selects pods with matchExpressions, which a Service cannot",
                    kind.kind
                );
            }
            object["spec"]["selector"]["matchLabels"].clone()
        }
        "Pod" => object["metadata"]["labels"].clone(),
        "Service" => object["spec"]["selector"].clone(),
        other => bail!("cannot expose a {other}: expose rc, rs, deploy, ds, sts, pod or svc"),
    };
    if selector.as_object().is_none_or(|s| s.is_empty()) {
        bail!(
            "{} {name} has no labels to select its pods by: add labels first",
            kind.kind
        );
    }
    let template = if kind.kind == "Pod" {
        &object["spec"]
    } else {
        &object["spec"]["template"]["spec"]
    };
    let first_port = template["containers"][0]["ports"][0]["containerPort"].as_i64();
    let port = args
        .port
        .or(first_port)
        .context("no port to expose: give --port (the object declares no container port)")?;
    let target_port: Value = match &args.target_port {
        Some(text) => text
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(text.as_str())),
        None => Value::from(port),
    };
    let service_name = args.name.clone().unwrap_or(name.clone());
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": service_name, "labels": object["metadata"]["labels"].clone() },
        "spec": {
            "type": args.service_type,
            "selector": selector,
            "ports": [{ "port": port, "targetPort": target_port, "protocol": args.protocol }],
        }
    });
    let services = session.kind("services")?.clone();
    create(&session, &services, &namespace, &service).await?;
    println!("service/{service_name} exposed");
    Ok(())
}
