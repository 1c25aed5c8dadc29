//! `describe`: objects as kubectl prints them, with their Events (the text comes from
//! `rudder_printers::describe`).

use std::io::Write;

use clap::Args;
use serde_json::Value;

use crate::commands::get::{get_one, list_matching, Scope};
use crate::session::{Session, Target};
use rudder_printers::describe::describe;

#[derive(Args, Debug)]
pub struct DescribeArgs {
    /// Kind (pods, po, deploy, ...), optionally KIND/NAME.
    kind: String,
    /// Object names (default: all of the kind).
    names: Vec<String>,
    #[command(flatten)]
    scope: Scope,
    #[arg(short = 'l', long)]
    selector: Option<String>,
    #[command(flatten)]
    target: Target,
}

pub async fn describe_command(args: DescribeArgs) -> anyhow::Result<()> {
    let session = Session::connect(&args.target).await?;
    let (kind, mut names) = match args.kind.split_once('/') {
        Some((kind, name)) => (kind.to_string(), vec![name.to_string()]),
        None => (args.kind.clone(), Vec::new()),
    };
    names.extend(args.names.iter().cloned());
    let kind = session.kind(&kind)?.clone();
    let namespace = if kind.namespaced {
        args.scope.namespace()
    } else {
        String::new()
    };
    let objects = if names.is_empty() {
        let selector = args.selector.clone().unwrap_or_default();
        list_matching(
            &session,
            &kind,
            &args.scope.list_namespace(),
            &selector,
            "",
            500,
        )
        .await?
        .0
    } else {
        let mut objects = Vec::new();
        for name in &names {
            objects.push(get_one(&session, &kind, &namespace, name).await?);
        }
        objects
    };
    let events_kind = session.kind("events")?.clone();
    let now = jiff::Timestamp::now();
    let mut out = std::io::stdout().lock();
    for (index, object) in objects.iter().enumerate() {
        let name = object["metadata"]["name"].as_str().unwrap_or("");
        let object_namespace = object["metadata"]["namespace"].as_str().unwrap_or("");
        let fields = format!("involvedObject.name={name}");
        let events_namespace = if object_namespace.is_empty() {
            ""
        } else {
            object_namespace
        };
        let (events, _) =
            list_matching(&session, &events_kind, events_namespace, "", &fields, 500).await?;
        let uid = object["metadata"]["uid"].as_str().unwrap_or("");
        let events: Vec<Value> = events
            .into_iter()
            .filter(|e| {
                e["involvedObject"]["kind"] == kind.kind.as_str()
                    && e["involvedObject"]["uid"]
                        .as_str()
                        .is_none_or(|u| u.is_empty() || u == uid)
            })
            .collect();
        if index > 0 {
            writeln!(out)?;
            writeln!(out)?;
        }
        write!(out, "{}", describe(object, &events, now))?;
    }
    Ok(())
}
