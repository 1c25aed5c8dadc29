//! `create -f`, `create namespace`, `create deployment`, `create token` (a ServiceAccount's
//! token, printed alone, as `kubectl create token` prints it).

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
    /// A token for a ServiceAccount (printed, nothing is stored).
    Token {
        /// The ServiceAccount.
        name: String,
        /// How long it lives (`10m`, `2h`; at least 10 minutes; default: an hour).
        #[arg(long)]
        duration: Option<String>,
        /// Who may accept it (repeatable; default: the API).
        #[arg(long = "audience")]
        audiences: Vec<String>,
        /// Bind it to a pod (`Pod`): it dies with the pod.
        #[arg(long, requires = "bound_object_name")]
        bound_object_kind: Option<String>,
        #[arg(long, requires = "bound_object_kind")]
        bound_object_name: Option<String>,
        #[arg(long, requires = "bound_object_kind")]
        bound_object_uid: Option<String>,
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
        Some(CreateWhat::Token {
            name,
            duration,
            audiences,
            bound_object_kind,
            bound_object_name,
            bound_object_uid,
        }) => {
            let bound = bound_object_kind
                .as_deref()
                .zip(bound_object_name.as_deref());
            let request = token_request(duration.as_deref(), audiences, bound, bound_object_uid)?;
            let answer = session
                .client
                .create_token(&namespace, name, &request)
                .await?;
            println!("{}", answer["status"]["token"].as_str().unwrap_or_default());
            return Ok(());
        }
        None if args.files.is_empty() => {
            bail!(
                "give -f FILE, or what to create: namespace NAME, deployment NAME --image \
                 IMAGE, token SERVICEACCOUNT"
            )
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

/// The TokenRequest `create token` sends (as `kubectl create token` builds it).
fn token_request(
    duration: Option<&str>,
    audiences: &[String],
    bound: Option<(&str, &str)>,
    bound_uid: &Option<String>,
) -> anyhow::Result<Value> {
    let mut spec = json!({ "audiences": audiences });
    if let Some(duration) = duration {
        let duration = crate::durations::parse_flag_duration("--duration", duration, "s")?;
        spec["expirationSeconds"] = json!(duration.as_secs());
    }
    if let Some((kind, name)) = bound {
        spec["boundObjectRef"] = json!({ "apiVersion": "v1", "kind": kind, "name": name });
        if let Some(uid) = bound_uid {
            spec["boundObjectRef"]["uid"] = json!(uid);
        }
    }
    Ok(json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec }))
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
