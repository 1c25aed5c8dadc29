//! `cordon NODE` and `uncordon NODE`: mark a node unschedulable (no new pods are placed on
//! it; those running stay) or schedulable again, as kubectl does: `node/NAME cordoned`, or
//! `node/NAME already cordoned` when there was nothing to change. `drain` cordons first.

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};

use crate::session::{Session, Target};

#[derive(Args, Debug)]
pub struct CordonArgs {
    /// The node.
    node: String,
    #[command(flatten)]
    target: Target,
}

pub async fn cordon(args: CordonArgs) -> anyhow::Result<()> {
    let session = Session::connect(&args.target).await?;
    println!("{}", set_unschedulable(&session, &args.node, true).await?);
    Ok(())
}

pub async fn uncordon(args: CordonArgs) -> anyhow::Result<()> {
    let session = Session::connect(&args.target).await?;
    println!("{}", set_unschedulable(&session, &args.node, false).await?);
    Ok(())
}

/// What (un)cordoning a node as it is now does.
#[derive(Debug, Clone, PartialEq)]
enum Change {
    /// It already is as asked.
    Already,
    /// This merge patch makes it so.
    Patch(Value),
}

/// kubectl's `CordonHelper.UpdateIfRequired`: `spec.unschedulable` set when cordoning,
/// removed (Go's `omitempty` false) when uncordoning; nothing when it already is so.
fn change(node: &Value, unschedulable: bool) -> Change {
    let current = node["spec"]["unschedulable"].as_bool().unwrap_or(false);
    if current == unschedulable {
        return Change::Already;
    }
    let value = if unschedulable {
        Value::Bool(true)
    } else {
        Value::Null
    };
    Change::Patch(json!({ "spec": { "unschedulable": value } }))
}

/// kubectl's line for the outcome: `node/n1 cordoned`, `node/n1 already uncordoned`.
fn outcome(node: &str, unschedulable: bool, already: bool) -> String {
    let verb = if unschedulable {
        "cordoned"
    } else {
        "uncordoned"
    };
    let already = if already { "already " } else { "" };
    format!("node/{node} {already}{verb}")
}

/// Sets node `name`'s `spec.unschedulable` as asked (if it is not so already); returns
/// kubectl's line saying what happened.
pub(crate) async fn set_unschedulable(
    session: &Session,
    name: &str,
    unschedulable: bool,
) -> anyhow::Result<String> {
    let node = session.client.get_object("nodes", "", name).await?;
    match change(&node, unschedulable) {
        Change::Already => Ok(outcome(name, unschedulable, true)),
        Change::Patch(patch) => {
            session
                .client
                .patch_object("nodes", "", name, &patch, false)
                .await
                .with_context(|| {
                    let verb = if unschedulable { "cordon" } else { "uncordon" };
                    format!("unable to {verb} node {name:?}")
                })?;
            Ok(outcome(name, unschedulable, false))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cordoning_sets_unschedulable_and_uncordoning_removes_it() {
        let schedulable = json!({ "metadata": { "name": "n1" }, "spec": {} });
        let cordoned = json!({ "metadata": { "name": "n1" }, "spec": { "unschedulable": true } });
        assert_eq!(
            change(&schedulable, true),
            Change::Patch(json!({ "spec": { "unschedulable": true } }))
        );
        assert_eq!(change(&cordoned, true), Change::Already);
        assert_eq!(
            change(&cordoned, false),
            Change::Patch(json!({ "spec": { "unschedulable": null } }))
        );
        assert_eq!(change(&schedulable, false), Change::Already);
    }

    #[test]
    fn the_lines_are_kubectls() {
        assert_eq!(outcome("n1", true, false), "node/n1 cordoned");
        assert_eq!(outcome("n1", true, true), "node/n1 already cordoned");
        assert_eq!(outcome("n1", false, false), "node/n1 uncordoned");
        assert_eq!(outcome("n1", false, true), "node/n1 already uncordoned");
    }
}
