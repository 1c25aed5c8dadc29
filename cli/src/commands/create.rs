//! `create -f`, `create namespace`, `create deployment`.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::commands::apply::{create, namespace_of};
use crate::commands::get::Scope;
use crate::manifest::{self};
use crate::session::{display_name, Session, Target};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_are_named_after_their_image() {
        assert_eq!(container_name("luksa/kubia"), "kubia");
        assert_eq!(container_name("registry:5000/team/web_app:v1"), "web-app");
    }
}
