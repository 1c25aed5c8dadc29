//! Verbs that create or configure objects: `apply -f`, `create -f`, `create namespace`,
//! `create deployment`, `run`, `expose`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
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

fn namespace_of(kind: &pb::Kind, object: &Value, scope: &Scope) -> String {
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

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(subcommand)]
    what: Option<CreateWhat>,
    /// Manifest file, directory, or `-` for stdin (repeatable).
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    scope: Scope,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand, Debug)]
enum CreateWhat {
    /// A namespace.
    #[command(alias = "ns")]
    Namespace { name: String },
    /// A Deployment running one image.
    #[command(alias = "deploy")]
    Deployment {
        name: String,
        #[arg(long)]
        image: String,
        #[arg(long, default_value_t = 1)]
        replicas: i64,
        /// Container port to declare.
        #[arg(long)]
        port: Option<i64>,
    },
}

pub async fn create_command(args: CreateArgs) -> anyhow::Result<()> {
    let session = Session::connect(&args.target).await?;
    let namespace = args.scope.namespace();
    let objects: Vec<(String, Value)> = match &args.what {
        Some(CreateWhat::Namespace { name }) => vec![(
            "-".into(),
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } }),
        )],
        Some(CreateWhat::Deployment {
            name,
            image,
            replicas,
            port,
        }) => {
            let labels = json!({ "app": name });
            let mut container = json!({ "name": container_name(image), "image": image });
            if let Some(port) = port {
                container["ports"] = json!([{ "containerPort": port }]);
            }
            vec![(
                "-".into(),
                json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": { "name": name, "labels": labels },
                    "spec": {
                        "replicas": replicas,
                        "selector": { "matchLabels": labels },
                        "template": { "metadata": { "labels": labels }, "spec": { "containers": [container] } }
                    }
                }),
            )]
        }
        None if args.files.is_empty() => {
            bail!("give -f FILE, or what to create: namespace NAME, deployment NAME --image IMAGE")
        }
        None => manifest::read_all(&args.files)?
            .into_iter()
            .map(|d| (d.source, d.object))
            .collect(),
    };
    let mut failures = 0;
    for (source, object) in objects {
        let outcome = async {
            let kind = session.kind_of_document(&object)?.clone();
            let namespace = namespace_of(
                &kind,
                &object,
                &Scope {
                    namespace: Some(namespace.clone()),
                    all_namespaces: false,
                },
            );
            let created = create(&session, &kind, &namespace, &object).await?;
            anyhow::Ok(format!(
                "{} created",
                display_name(&kind, created["metadata"]["name"].as_str().unwrap_or(""))
            ))
        }
        .await;
        match outcome {
            Ok(line) => println!("{line}"),
            Err(error) => {
                failures += 1;
                if source == "-" {
                    eprintln!("{error:#}");
                } else {
                    eprintln!("error: {source}: {error:#}");
                }
            }
        }
    }
    if failures > 0 {
        bail!("{failures} object(s) could not be created");
    }
    Ok(())
}

/// kubectl names a container after its image: `luksa/kubia:v1` → `kubia`.
fn container_name(image: &str) -> String {
    let base = image.rsplit('/').next().unwrap_or(image);
    let base = base.split([':', '@']).next().unwrap_or(base);
    base.to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_are_named_after_their_image() {
        assert_eq!(container_name("luksa/kubia"), "kubia");
        assert_eq!(container_name("registry:5000/team/web_app:v1"), "web-app");
    }
}
