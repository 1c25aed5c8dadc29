//! `rudder get` (tables, `-o wide|yaml|json|name`, `-w` that survives a master's death),
//! and the lookups other verbs share ([`get_one`], [`list_matching`], [`Scope`]).

use std::io::Write;

use anyhow::Context;
use clap::{Args, ValueEnum};
use rudder_proto::api as pb;
use rudder_proto::client::ClientError;
use serde_json::{json, Value};
use tokio_stream::StreamExt;

use crate::session::{display_name, Session, Target};
use rudder_printers::table::{headers, render, row, TableOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Wide,
    Yaml,
    Json,
    Name,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// Kind(s) (pods, po, deploy, svc,... comma-separated), optionally KIND/NAME.
    kind: String,
    /// Names of objects to show (default: all).
    names: Vec<String>,
    #[arg(short = 'o', long, value_enum)]
    output: Option<Format>,
    #[command(flatten)]
    scope: Scope,
    /// Label selector, e.g. app=web,tier!=db.
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Field selector, e.g. status.phase=Running,spec.nodeName=n1.
    #[arg(long)]
    field_selector: Option<String>,
    /// After listing, watch for changes (survives the loss of a master).
    #[arg(short = 'w', long)]
    watch: bool,
    /// Watch without listing first.
    #[arg(long)]
    watch_only: bool,
    /// With --watch: print the event type (ADDED, MODIFIED, DELETED) first.
    #[arg(long)]
    output_watch_events: bool,
    /// Leave out the header line.
    #[arg(long)]
    no_headers: bool,
    /// With -o yaml|json: keep metadata.managedFields (server-side apply's), which are
    /// left out by default, as kubectl does.
    #[arg(long)]
    show_managed_fields: bool,
    /// Page size when listing (0: everything in one response).
    #[arg(long, default_value_t = 500)]
    chunk_size: i64,
    #[command(flatten)]
    target: Target,
}

/// `-n` / `-A`, shared by the verbs.
#[derive(Args, Debug, Clone, Default)]
pub struct Scope {
    /// Namespace (default: "default").
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,
}

impl Scope {
    /// The namespace of named objects.
    pub fn namespace(&self) -> String {
        self.namespace.clone().unwrap_or_else(|| "default".into())
    }

    /// The namespace to list ("" = all).
    pub fn list_namespace(&self) -> String {
        if self.all_namespaces {
            String::new()
        } else {
            self.namespace()
        }
    }
}

pub async fn run(args: GetArgs) -> anyhow::Result<()> {
    let session = Session::connect(&args.target).await?;
    let (kinds, mut names) = match args.kind.split_once('/') {
        Some((kind, name)) => (kind.to_string(), vec![name.to_string()]),
        None => (args.kind.clone(), Vec::new()),
    };
    names.extend(args.names.iter().cloned());
    // kubectl's `all` category: the workloads and their services.
    const ALL: &str = "pods,services,daemonsets,deployments,replicasets,replicationcontrollers,\
                       statefulsets,jobs,cronjobs";
    let kinds: Vec<pb::Kind> = kinds
        .split(',')
        .flat_map(|k| {
            if k == "all" {
                ALL.split(',').collect()
            } else {
                vec![k]
            }
        })
        .map(|k| session.kind(k).cloned())
        .collect::<anyhow::Result<_>>()?;
    if args.watch || args.watch_only {
        let kind = kinds.first().context("name a kind to watch")?;
        return watch(&session, &args, kind, &names).await;
    }
    let mut shown = Vec::new();
    let mut missing = Vec::new();
    for kind in &kinds {
        if names.is_empty() {
            let (items, _) = list_all(&session, &args, kind).await?;
            shown.push((kind.clone(), items));
        } else {
            let mut items = Vec::new();
            for name in &names {
                match get_one(&session, kind, &args.scope.namespace(), name).await {
                    Ok(object) => items.push(object),
                    Err(error) if error.is_not_found() => missing.push(error),
                    Err(error) => return Err(error.into()),
                }
            }
            shown.push((kind.clone(), items));
        }
    }
    print_objects(&args, &shown, names.len() == 1 && kinds.len() == 1)?;
    if shown.iter().all(|(_, items)| items.is_empty()) && missing.is_empty() {
        match args.scope.all_namespaces || !kinds.iter().any(|k| k.namespaced) {
            true => eprintln!("No resources found"),
            false => eprintln!(
                "No resources found in {} namespace.",
                args.scope.namespace()
            ),
        }
    }
    if let Some(first) = missing.first() {
        for error in &missing[1..] {
            eprintln!("{error}");
        }
        return Err(first.clone().into());
    }
    Ok(())
}

pub async fn get_one(
    session: &Session,
    kind: &pb::Kind,
    namespace: &str,
    name: &str,
) -> Result<Value, ClientError> {
    session
        .client
        .get_object(&kind.resource, namespace, name)
        .await
}

/// Every matching object (page by page) and the revision to watch from.
async fn list_all(
    session: &Session,
    args: &GetArgs,
    kind: &pb::Kind,
) -> anyhow::Result<(Vec<Value>, String)> {
    list_matching(
        session,
        kind,
        &args.scope.list_namespace(),
        args.selector.as_deref().unwrap_or(""),
        args.field_selector.as_deref().unwrap_or(""),
        args.chunk_size,
    )
    .await
}

/// The names of the objects of `kind` in `namespace` matching the label `selector`.
pub async fn names_matching(
    session: &Session,
    kind: &pb::Kind,
    namespace: &str,
    selector: &str,
) -> anyhow::Result<Vec<String>> {
    let (objects, _) = list_matching(session, kind, namespace, selector, "", 500).await?;
    Ok(objects
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
        .collect())
}

pub async fn list_matching(
    session: &Session,
    kind: &pb::Kind,
    namespace: &str,
    labels: &str,
    fields: &str,
    chunk_size: i64,
) -> anyhow::Result<(Vec<Value>, String)> {
    let mut items = Vec::new();
    let mut continue_token = String::new();
    loop {
        let request = pb::ListRequest {
            resource: kind.resource.clone(),
            namespace: namespace.into(),
            label_selector: labels.into(),
            field_selector: fields.into(),
            limit: chunk_size,
            continue_token: continue_token.clone(),
            resource_version: String::new(),
        };
        let page = session.client.list(request).await?;
        for item in &page.items {
            items.push(serde_json::from_slice(item).context("the server sent invalid JSON")?);
        }
        if page.continue_token.is_empty() {
            return Ok((items, page.resource_version));
        }
        continue_token = page.continue_token;
    }
}

fn table_options(args: &GetArgs) -> TableOptions {
    TableOptions {
        wide: args.output == Some(Format::Wide),
        with_namespace: args.scope.all_namespaces,
    }
}

/// `object` as -o yaml|json prints it: without its managed fields unless asked for.
fn as_printed(args: &GetArgs, object: &Value) -> Value {
    let mut object = object.clone();
    if !args.show_managed_fields {
        if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove("managedFields");
        }
    }
    object
}

fn print_objects(
    args: &GetArgs,
    shown: &[(pb::Kind, Vec<Value>)],
    single: bool,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match args.output {
        Some(Format::Yaml) | Some(Format::Json) => {
            let all: Vec<Value> = shown
                .iter()
                .flat_map(|(_, items)| items.iter())
                .map(|item| as_printed(args, item))
                .collect();
            let document = if single && all.len() == 1 {
                all[0].clone()
            } else {
                json!({ "apiVersion": "v1", "kind": "List", "items": all, "metadata": { "resourceVersion": "" } })
            };
            if args.output == Some(Format::Yaml) {
                write!(out, "{}", serde_yaml::to_string(&document)?)?;
            } else {
                writeln!(out, "{}", serde_json::to_string_pretty(&document)?)?;
            }
        }
        Some(Format::Name) => {
            for (kind, items) in shown {
                for item in items {
                    writeln!(
                        out,
                        "{}",
                        display_name(kind, item["metadata"]["name"].as_str().unwrap_or(""))
                    )?;
                }
            }
        }
        None | Some(Format::Wide) => {
            let now = jiff::Timestamp::now();
            let options = table_options(args);
            let mut first = true;
            for (kind, items) in shown.iter().filter(|(_, items)| !items.is_empty()) {
                if !first {
                    writeln!(out)?;
                }
                first = false;
                let mut rows = Vec::new();
                if !args.no_headers {
                    rows.push(headers(&kind.kind, options));
                }
                for item in items {
                    let mut cells = row(&kind.kind, item, options, now);
                    if shown.len() > 1 {
                        if let Some(name) = cells.get_mut(usize::from(options.with_namespace)) {
                            *name = display_name(kind, name);
                        }
                    }
                    rows.push(cells);
                }
                write!(out, "{}", render(&rows))?;
            }
        }
    }
    Ok(())
}

/// Lists (unless --watch-only), then follows changes from the list's revision. A broken
/// stream (a master died) resumes on another master from the last revision seen, so no
/// event is lost or repeated; an expired revision lists again.
async fn watch(
    session: &Session,
    args: &GetArgs,
    kind: &pb::Kind,
    names: &[String],
) -> anyhow::Result<()> {
    let options = table_options(args);
    let mut header_printed = args.no_headers;
    let wanted = |object: &Value| {
        names.is_empty()
            || names
                .iter()
                .any(|n| Some(n.as_str()) == object["metadata"]["name"].as_str())
    };
    let mut revision = if args.watch_only {
        // Changes from now on: the revision of a one-item list.
        let request = pb::ListRequest {
            resource: kind.resource.clone(),
            namespace: args.scope.list_namespace(),
            limit: 1,
            ..Default::default()
        };
        let page = session.client.list(request).await?;
        page.resource_version
    } else {
        let (items, listed_at) = list_all(session, args, kind).await?;
        for item in items.iter().filter(|i| wanted(i)) {
            print_event(args, kind, options, "ADDED", item, &mut header_printed)?;
        }
        listed_at
    };
    loop {
        let request = pb::WatchRequest {
            resource: kind.resource.clone(),
            namespace: args.scope.list_namespace(),
            label_selector: args.selector.clone().unwrap_or_default(),
            field_selector: args.field_selector.clone().unwrap_or_default(),
            resource_version: revision.clone(),
            allow_bookmarks: true,
            bookmark_interval_ms: 5_000,
        };
        let mut stream = session.client.watch(request).await?;
        loop {
            match stream.next().await {
                Some(Ok(event)) => {
                    let object: Value = serde_json::from_slice(&event.object)
                        .context("the server sent an invalid watch event")?;
                    match event.r#type.as_str() {
                        "ERROR" => {
                            if object["code"] == 410 {
                                // Compacted past our revision: list again, then go on.
                                eprintln!("watch expired ({}); listing again", object["message"]);
                                let (items, listed_at) = list_all(session, args, kind).await?;
                                for item in items.iter().filter(|i| wanted(i)) {
                                    print_event(
                                        args,
                                        kind,
                                        options,
                                        "ADDED",
                                        item,
                                        &mut header_printed,
                                    )?;
                                }
                                revision = listed_at;
                                break;
                            }
                            if object["code"] == 503 {
                                // This master lost the quorum: go on through another.
                                session.client.skip_current();
                                break;
                            }
                            anyhow::bail!("watch failed: {}", object["message"]);
                        }
                        kind_of_event => {
                            if let Some(version) = object["metadata"]["resourceVersion"].as_str() {
                                revision = version.to_string();
                            }
                            if kind_of_event != "BOOKMARK" && wanted(&object) {
                                print_event(
                                    args,
                                    kind,
                                    options,
                                    kind_of_event,
                                    &object,
                                    &mut header_printed,
                                )?;
                            }
                        }
                    }
                }
                // The master went away (or the stream broke): resume elsewhere, from the
                // last revision seen, so nothing is missed or repeated.
                Some(Err(_)) | None => {
                    session.client.skip_current();
                    break;
                }
            }
        }
    }
}

fn print_event(
    args: &GetArgs,
    kind: &pb::Kind,
    options: TableOptions,
    event: &str,
    object: &Value,
    header_printed: &mut bool,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let prefix = if args.output_watch_events && !event.is_empty() {
        format!("{event} ")
    } else {
        String::new()
    };
    match args.output {
        Some(Format::Json) => writeln!(out, "{prefix}{}", as_printed(args, object))?,
        Some(Format::Yaml) => write!(
            out,
            "---\n{}",
            serde_yaml::to_string(&as_printed(args, object))?
        )?,
        Some(Format::Name) => writeln!(
            out,
            "{prefix}{}",
            display_name(kind, object["metadata"]["name"].as_str().unwrap_or(""))
        )?,
        None | Some(Format::Wide) => {
            let mut rows = Vec::new();
            if !*header_printed {
                let mut header = headers(&kind.kind, options);
                if args.output_watch_events {
                    header.insert(0, "EVENT".into());
                }
                rows.push(header);
                *header_printed = true;
            }
            let mut cells = row(&kind.kind, object, options, jiff::Timestamp::now());
            if args.output_watch_events {
                cells.insert(
                    0,
                    if event.is_empty() {
                        "ADDED".into()
                    } else {
                        event.into()
                    },
                );
            }
            rows.push(cells);
            write!(out, "{}", render(&rows))?;
        }
    }
    out.flush()?;
    Ok(())
}
