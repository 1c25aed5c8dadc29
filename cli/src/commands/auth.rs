//! `rudder auth can-i VERB RESOURCE [NAME]` (or `VERB /PATH`): asks the cluster whether
//! the caller — or, with `--as`, another user — may do it, as `kubectl auth can-i` does.
//! Prints `yes` or `no` (with the reason when there is one) and exits 0 only for yes.
//!
//! Without `--as` the question is a SelfSubjectAccessReview, which every authenticated
//! user may send; with `--as` (and `--as-group`) it is a SubjectAccessReview, which needs
//! the right to create those (`admin` and up).

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::get::Scope;
use crate::session::{Session, Target};

#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Whether an action is allowed: `rudder auth can-i create pods`, `rudder auth can-i
    /// get pods/web -n team --as jane`, `rudder auth can-i get /metrics`.
    CanI(CanIArgs),
}

#[derive(Args, Debug)]
pub struct CanIArgs {
    /// The verb: get, list, watch, create, update, patch, delete, deletecollection (or a
    /// special verb: bind, escalate, impersonate).
    verb: String,
    /// The resource (`pods`, `deployments.apps`, `pods/web`), or a path (`/metrics`).
    resource: String,
    /// The object's name.
    name: Option<String>,
    /// The subresource: `log`, `exec`, `status`, ...
    #[arg(long)]
    subresource: Option<String>,
    /// Ask for this user instead of the caller.
    #[arg(long = "as")]
    as_user: Option<String>,
    /// With --as: a group of that user (repeat for more).
    #[arg(long = "as-group", requires = "as_user")]
    as_groups: Vec<String>,
    /// Print nothing; only the exit code answers.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    scope: Scope,
    #[command(flatten)]
    target: Target,
}

pub async fn run(command: AuthCommand) -> anyhow::Result<()> {
    match command {
        AuthCommand::CanI(args) => can_i(args).await,
    }
}

async fn can_i(args: CanIArgs) -> anyhow::Result<()> {
    let session = Session::connect(&args.target).await?;
    let attributes = if args.resource.starts_with('/') {
        json!({ "nonResourceAttributes": { "verb": args.verb, "path": args.resource } })
    } else {
        let (resource, name) = match args.resource.split_once('/') {
            Some((resource, name)) => (resource, Some(name.to_string())),
            None => (args.resource.as_str(), args.name.clone()),
        };
        let kind = session.kind(resource)?;
        let namespace = if kind.namespaced && !args.scope.all_namespaces {
            args.scope.namespace()
        } else {
            String::new()
        };
        json!({ "resourceAttributes": {
            "verb": args.verb,
            "group": kind.group,
            "resource": kind.resource,
            "subresource": args.subresource.clone().unwrap_or_default(),
            "namespace": namespace,
            "name": name.unwrap_or_default(),
        } })
    };
    let (resource, review) = question(attributes, args.as_user.as_deref(), &args.as_groups);
    let answered = session.client.create_object(resource, "", &review).await?;
    let (allowed, line) = answer(&answered);
    if !args.quiet {
        println!("{line}");
    }
    if !allowed {
        std::process::exit(1);
    }
    Ok(())
}

/// The review to send: for the caller, or for `user` in `groups`.
fn question(mut spec: Value, user: Option<&str>, groups: &[String]) -> (&'static str, Value) {
    let (resource, kind) = match user {
        None => ("selfsubjectaccessreviews", "SelfSubjectAccessReview"),
        Some(user) => {
            spec["user"] = json!(user);
            spec["groups"] = json!(groups);
            ("subjectaccessreviews", "SubjectAccessReview")
        }
    };
    let review = json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": kind,
        "metadata": {},
        "spec": spec,
    });
    (resource, review)
}

/// Whether the answered review allows, and kubectl's line for it: `yes`, `no`, or
/// `no - REASON`.
fn answer(review: &Value) -> (bool, String) {
    let allowed = review["status"]["allowed"].as_bool().unwrap_or(false);
    let reason = review["status"]["reason"].as_str().unwrap_or("");
    let line = match (allowed, reason) {
        (true, _) => "yes".to_string(),
        (false, "") => "no".to_string(),
        (false, reason) => format!("no - {reason}"),
    };
    (allowed, line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asking_for_another_user_is_a_subject_access_review_with_its_groups() {
        let spec = json!({ "resourceAttributes": { "verb": "get" } });
        let (resource, review) = question(spec.clone(), None, &[]);
        assert_eq!(resource, "selfsubjectaccessreviews");
        assert!(review["spec"].get("user").is_none());
        let (resource, review) = question(spec, Some("jane"), &["devs".into()]);
        assert_eq!(resource, "subjectaccessreviews");
        assert_eq!(review["spec"]["user"], "jane");
        assert_eq!(review["spec"]["groups"], json!(["devs"]));
    }

    #[test]
    fn the_answer_reads_as_kubectl_prints_it() {
        assert_eq!(
            answer(&json!({ "status": { "allowed": true } })),
            (true, "yes".into())
        );
        assert_eq!(
            answer(&json!({ "status": { "allowed": false } })),
            (false, "no".into())
        );
        assert_eq!(
            answer(&json!({ "status": { "allowed": false, "reason": "RBAC: [x]" } })),
            (false, "no - RBAC: [x]".into())
        );
    }
}
