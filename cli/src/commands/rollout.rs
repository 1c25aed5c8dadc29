//! `rollout status|history|undo|pause|resume|restart deployment/NAME`, as kubectl does them.
//!
//! The decisions are pure over the Deployment and its ReplicaSets (`rollout_state`,
//! `history`, `undo_template`); the verbs read, patch and (for `status`) follow the
//! Deployment until its rollout ends.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::commands::apply::patch_object;
use crate::commands::get::{get_one, list_matching, Scope};
use crate::session::{display_name, Session, Target};

const REVISION: &str = "deployment.kubernetes.io/revision";
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
const POD_TEMPLATE_HASH: &str = "pod-template-hash";

#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// Follow a rollout until it finishes (or exceeds its progress deadline).
    Status(RolloutArgs),
    /// The revisions of a rollout (--revision N: that revision's pod template).
    History(HistoryArgs),
    /// Roll back to the previous revision (or --to-revision N).
    Undo(UndoArgs),
    /// Stop rolling out changes to the template.
    Pause(RolloutArgs),
    /// Roll out changes again.
    Resume(RolloutArgs),
    /// Replace every pod (a new rollout of the same template).
    Restart(RolloutArgs),
}

#[derive(Args, Debug)]
pub struct RolloutArgs {
    /// deployment/NAME (or deployment NAME).
    kind: String,
    name: Option<String>,
    /// status: print the state once instead of following it.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    watch: bool,
    #[command(flatten)]
    scope: Scope,
    #[command(flatten)]
    target: Target,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    #[command(flatten)]
    common: RolloutArgs,
    #[arg(long)]
    revision: Option<i64>,
}

#[derive(Args, Debug)]
pub struct UndoArgs {
    #[command(flatten)]
    common: RolloutArgs,
    /// The revision to go back to (0: the previous one).
    #[arg(long, default_value_t = 0)]
    to_revision: i64,
}

/// Where a rollout stands (kubectl's `DeploymentStatusViewer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutState {
    Waiting(String),
    Done(String),
    /// `Progressing=False, ProgressDeadlineExceeded`.
    Failed(String),
}

pub fn rollout_state(deployment: &Value) -> RolloutState {
    let name = deployment["metadata"]["name"].as_str().unwrap_or("");
    let generation = deployment["metadata"]["generation"].as_i64().unwrap_or(0);
    let status = &deployment["status"];
    if status["observedGeneration"].as_i64().unwrap_or(0) < generation {
        return RolloutState::Waiting(
            "Waiting for deployment spec update to be observed...".into(),
        );
    }
    let timed_out = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded");
    if timed_out {
        return RolloutState::Failed(format!(
            "deployment {name:?} exceeded its progress deadline"
        ));
    }
    let count = |field: &str| status[field].as_i64().unwrap_or(0);
    let (updated, total, available) = (
        count("updatedReplicas"),
        count("replicas"),
        count("availableReplicas"),
    );
    let wanted = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    let waiting = |what: String| {
        RolloutState::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {what}..."
        ))
    };
    if updated < wanted {
        return waiting(format!(
            "{updated} out of {wanted} new replicas have been updated"
        ));
    }
    if total > updated {
        return waiting(format!(
            "{} old replicas are pending termination",
            total - updated
        ));
    }
    if available < updated {
        return waiting(format!(
            "{available} of {updated} updated replicas are available"
        ));
    }
    RolloutState::Done(format!("deployment {name:?} successfully rolled out"))
}

/// The Deployment's ReplicaSets (those it controls) by revision.
pub fn revisions(deployment: &Value, sets: &[Value]) -> BTreeMap<i64, Value> {
    let uid = &deployment["metadata"]["uid"];
    sets.iter()
        .filter(|s| {
            s["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|o| o["uid"] == *uid && o["controller"] == true)
        })
        .filter_map(|s| {
            let revision = s["metadata"]["annotations"][REVISION]
                .as_str()?
                .parse()
                .ok()?;
            Some((revision, s.clone()))
        })
        .collect()
}

/// kubectl's history table.
pub fn history(kind_name: &str, revisions: &BTreeMap<i64, Value>) -> String {
    let mut out = format!("{kind_name}\nREVISION  CHANGE-CAUSE\n");
    for (revision, set) in revisions {
        let cause = set["metadata"]["annotations"][CHANGE_CAUSE]
            .as_str()
            .unwrap_or("<none>");
        out.push_str(&format!("{revision:<10}{cause}\n"));
    }
    out
}

/// What `undo` does.
#[derive(Debug, Clone, PartialEq)]
pub enum Undo {
    /// Put this template (of `revision`) back.
    To { revision: i64, template: Value },
    /// The Deployment already has that template.
    Skip { revision: i64 },
}

/// The template to go back to: `to_revision`, or 0 for the one before the latest.
pub fn undo_template(
    deployment: &Value,
    revisions: &BTreeMap<i64, Value>,
    to_revision: i64,
) -> anyhow::Result<Undo> {
    if deployment["spec"]["paused"] == true {
        bail!("you cannot rollback a paused deployment; resume it first with 'rudder rollout resume' and try again");
    }
    let revision = if to_revision == 0 {
        let mut newest = revisions.keys().rev();
        newest.next();
        *newest
            .next()
            .context("no rollout history found for this deployment")?
    } else {
        to_revision
    };
    let set = revisions
        .get(&revision)
        .with_context(|| format!("unable to find specified revision {revision} in history"))?;
    let mut template = set["spec"]["template"].clone();
    if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
        labels.remove(POD_TEMPLATE_HASH);
    }
    if template == deployment["spec"]["template"] {
        return Ok(Undo::Skip { revision });
    }
    Ok(Undo::To { revision, template })
}

pub async fn rollout(command: RolloutCommand) -> anyhow::Result<()> {
    match command {
        RolloutCommand::Status(args) => status(args).await,
        RolloutCommand::History(args) => show_history(args).await,
        RolloutCommand::Undo(args) => undo(args).await,
        RolloutCommand::Pause(args) => set_paused(args, true).await,
        RolloutCommand::Resume(args) => set_paused(args, false).await,
        RolloutCommand::Restart(args) => restart(args).await,
    }
}

/// The session, the Deployment's kind and its name; only Deployments roll out here.
async fn deployment_of(
    args: &RolloutArgs,
) -> anyhow::Result<(Session, rudder_proto::api::Kind, String)> {
    let session = Session::connect(&args.target).await?;
    let (kind, name) = match (args.kind.split_once('/'), &args.name) {
        (Some((kind, name)), _) => (kind.to_string(), name.to_string()),
        (None, Some(name)) => (args.kind.clone(), name.clone()),
        (None, None) => bail!("name the object: deployment NAME or deployment/NAME"),
    };
    let kind = session.kind(&kind)?.clone();
    if kind.kind != "Deployment" {
        bail!(
            "{} has no rollouts here: rollout works on deployments",
            kind.resource
        );
    }
    Ok((session, kind, name))
}

async fn status(args: RolloutArgs) -> anyhow::Result<()> {
    let (session, kind, name) = deployment_of(&args).await?;
    let namespace = args.scope.namespace();
    let mut last = String::new();
    loop {
        let deployment = get_one(&session, &kind, &namespace, &name).await?;
        match rollout_state(&deployment) {
            RolloutState::Done(message) => {
                println!("{message}");
                return Ok(());
            }
            RolloutState::Failed(message) => bail!("{message}"),
            RolloutState::Waiting(message) => {
                if message != last {
                    println!("{message}");
                    last = message;
                }
                if !args.watch {
                    return Ok(());
                }
            }
        }
        follow_until_changed(&session, &kind, &namespace, &name, &deployment).await?;
    }
}

/// Waits for the next change of the Deployment after the revision `seen` was read at.
async fn follow_until_changed(
    session: &Session,
    kind: &rudder_proto::api::Kind,
    namespace: &str,
    name: &str,
    seen: &Value,
) -> anyhow::Result<()> {
    let request = rudder_proto::api::WatchRequest {
        resource: kind.resource.clone(),
        namespace: namespace.into(),
        field_selector: format!("metadata.name={name}"),
        resource_version: seen["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .into(),
        allow_bookmarks: false,
        ..Default::default()
    };
    let mut stream = session
        .client
        .open(|mut c| {
            let request = request.clone();
            async move { c.watch(request).await }
        })
        .await?;
    // Any event (or a broken stream) means: read it again.
    let _ = stream.message().await;
    Ok(())
}

async fn show_history(args: HistoryArgs) -> anyhow::Result<()> {
    let (session, kind, name) = deployment_of(&args.common).await?;
    let namespace = args.common.scope.namespace();
    let deployment = get_one(&session, &kind, &namespace, &name).await?;
    let revisions = replica_sets_by_revision(&session, &namespace, &deployment).await?;
    match args.revision {
        None => print!("{}", history(&display_name(&kind, &name), &revisions)),
        Some(revision) => {
            let set = revisions
                .get(&revision)
                .with_context(|| format!("unable to find the specified revision {revision}"))?;
            println!("{} with revision #{revision}", display_name(&kind, &name));
            print!(
                "{}",
                serde_yaml::to_string(&json!({ "Pod Template": set["spec"]["template"] }))?
            );
        }
    }
    Ok(())
}

async fn replica_sets_by_revision(
    session: &Session,
    namespace: &str,
    deployment: &Value,
) -> anyhow::Result<BTreeMap<i64, Value>> {
    let sets_kind = session.kind("replicasets")?.clone();
    let (sets, _) = list_matching(session, &sets_kind, namespace, "", "", 500).await?;
    Ok(revisions(deployment, &sets))
}

async fn undo(args: UndoArgs) -> anyhow::Result<()> {
    let (session, kind, name) = deployment_of(&args.common).await?;
    let namespace = args.common.scope.namespace();
    let deployment = get_one(&session, &kind, &namespace, &name).await?;
    let revisions = replica_sets_by_revision(&session, &namespace, &deployment).await?;
    match undo_template(&deployment, &revisions, args.to_revision)? {
        Undo::Skip { revision } => {
            println!(
                "{} skipped rollback (current template already matches revision {revision})",
                display_name(&kind, &name)
            );
        }
        Undo::To { template, .. } => {
            let patch = json!({
                "metadata": { "resourceVersion": deployment["metadata"]["resourceVersion"] },
                "spec": { "template": template }
            });
            patch_object(&session, &kind, &namespace, &name, &patch, false).await?;
            println!("{} rolled back", display_name(&kind, &name));
        }
    }
    Ok(())
}

async fn set_paused(args: RolloutArgs, paused: bool) -> anyhow::Result<()> {
    let (session, kind, name) = deployment_of(&args).await?;
    let namespace = args.scope.namespace();
    let deployment = get_one(&session, &kind, &namespace, &name).await?;
    let shown = display_name(&kind, &name);
    if (deployment["spec"]["paused"] == true) == paused {
        bail!(
            "{shown} is {}",
            if paused {
                "already paused"
            } else {
                "not paused"
            }
        );
    }
    patch_object(
        &session,
        &kind,
        &namespace,
        &name,
        &json!({ "spec": { "paused": paused } }),
        false,
    )
    .await?;
    println!("{shown} {}", if paused { "paused" } else { "resumed" });
    Ok(())
}

async fn restart(args: RolloutArgs) -> anyhow::Result<()> {
    let (session, kind, name) = deployment_of(&args).await?;
    let namespace = args.scope.namespace();
    let deployment = get_one(&session, &kind, &namespace, &name).await?;
    if deployment["spec"]["paused"] == true {
        bail!("can't restart paused deployment (run rollout resume first)");
    }
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let patch = json!({ "spec": { "template": { "metadata": { "annotations": {
        "kubectl.kubernetes.io/restartedAt": now
    } } } } });
    patch_object(&session, &kind, &namespace, &name, &patch, false).await?;
    println!("{} restarted", display_name(&kind, &name));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(status: Value) -> Value {
        json!({ "metadata": { "name": "web", "generation": 2, "uid": "d" },
                "spec": { "replicas": 3, "template": { "metadata": { "labels": { "app": "web" } } } },
                "status": status })
    }

    fn set(revision: i64, image: &str, cause: Option<&str>) -> Value {
        let mut annotations = json!({ REVISION: revision.to_string() });
        if let Some(cause) = cause {
            annotations[CHANGE_CAUSE] = json!(cause);
        }
        json!({ "metadata": { "name": format!("web-{revision}"), "annotations": annotations,
                              "ownerReferences": [{ "uid": "d", "controller": true }] },
                "spec": { "template": { "metadata": { "labels": { "app": "web", "pod-template-hash": "h" } },
                                        "spec": { "containers": [{ "image": image }] } } } })
    }

    #[test]
    fn status_reads_like_kubectl_at_each_stage() {
        let stage = |s: Value| rollout_state(&deployment(s));
        assert_eq!(
            stage(json!({ "observedGeneration": 1 })),
            RolloutState::Waiting("Waiting for deployment spec update to be observed...".into())
        );
        let waiting = |m: &str| {
            RolloutState::Waiting(format!(
                "Waiting for deployment \"web\" rollout to finish: {m}..."
            ))
        };
        assert_eq!(
            stage(json!({ "observedGeneration": 2, "updatedReplicas": 1, "replicas": 4 })),
            waiting("1 out of 3 new replicas have been updated")
        );
        assert_eq!(
            stage(json!({ "observedGeneration": 2, "updatedReplicas": 3, "replicas": 4 })),
            waiting("1 old replicas are pending termination")
        );
        assert_eq!(
            stage(
                json!({ "observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 2 })
            ),
            waiting("2 of 3 updated replicas are available")
        );
        assert_eq!(
            stage(
                json!({ "observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 3 })
            ),
            RolloutState::Done("deployment \"web\" successfully rolled out".into())
        );
        let stuck = json!({ "observedGeneration": 2, "conditions": [{ "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded" }] });
        assert_eq!(
            stage(stuck),
            RolloutState::Failed("deployment \"web\" exceeded its progress deadline".into())
        );
    }

    #[test]
    fn history_lists_the_deployments_own_revisions_in_order() {
        let mut foreign = set(9, "x", None);
        foreign["metadata"]["ownerReferences"][0]["uid"] = json!("other");
        let sets = [
            set(2, "web:v2", Some("kubectl set image")),
            set(1, "web:v1", None),
            foreign,
        ];
        let table = history(
            "deployment.apps/web",
            &revisions(&deployment(json!({})), &sets),
        );
        assert_eq!(table, "deployment.apps/web\nREVISION  CHANGE-CAUSE\n1         <none>\n2         kubectl set image\n");
    }

    #[test]
    fn undo_goes_to_the_previous_revision_without_its_hash_label() {
        let sets = revisions(
            &deployment(json!({})),
            &[set(1, "web:v1", None), set(2, "web:v2", None)],
        );
        let current = deployment(json!({}));
        let Undo::To { revision, template } = undo_template(&current, &sets, 0).unwrap() else {
            panic!("expected a rollback");
        };
        assert_eq!(revision, 1);
        assert_eq!(template["spec"]["containers"][0]["image"], "web:v1");
        assert!(template["metadata"]["labels"]
            .get(POD_TEMPLATE_HASH)
            .is_none());
        assert!(undo_template(&current, &sets, 7)
            .unwrap_err()
            .to_string()
            .contains("unable to find specified revision 7"));
        let mut at_v1 = current.clone();
        at_v1["spec"]["template"] = template;
        assert_eq!(
            undo_template(&at_v1, &sets, 1).unwrap(),
            Undo::Skip { revision: 1 }
        );
        let mut paused = current;
        paused["spec"]["paused"] = json!(true);
        assert!(undo_template(&paused, &sets, 0)
            .unwrap_err()
            .to_string()
            .contains("paused"));
    }

    #[test]
    fn undo_without_history_says_so() {
        let sets = revisions(&deployment(json!({})), &[set(1, "web:v1", None)]);
        let error = undo_template(&deployment(json!({})), &sets, 0).unwrap_err();
        assert!(error.to_string().contains("no rollout history"), "{error}");
    }
}
