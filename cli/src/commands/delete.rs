//! `delete`: by name, from files, by selector or `--all`, with grace period and cascade.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use rudder_proto::api as pb;

use crate::commands::get::{names_matching, Scope};
use crate::manifest;
use crate::session::{Session, Target};

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
            names_matching(&session, &kind, &args.scope.namespace(), &selector).await?
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
