//! The rules of aggregated ClusterRoles written where users read them (Kubernetes'
//! clusterrole-aggregation controller): each time the policy changes, an aggregated role
//! whose stored `rules` are not what it gathers gets them. The authorizer decides from what
//! the roles gather either way; this makes `kubectl get clusterrole admin -o yaml` show it.
//! Every master does it: they gather in the same (name) order, so they write the same
//! rules, and a write that finds another master's first changes nothing.

use serde_json::json;
use tokio::sync::watch;

use crate::authz::Authorizer;
use crate::registry::{Part, Registry, Target, WriteOptions};

/// Writes aggregated roles' rules until `stopped` (a master's task).
pub async fn write_back(cache: Authorizer, registry: Registry, mut stopped: watch::Receiver<bool>) {
    // Before the policy is whole, a role would gather less than it should.
    tokio::select! {
        _ = cache.until_loaded() => {}
        _ = stopped.changed() => return,
    }
    let mut changes = cache.changes();
    loop {
        for (name, rules) in cache.policy().stale_aggregations() {
            let target = Target {
                resource: "clusterroles",
                namespace: "",
                name: &name,
            };
            let patch = json!({ "rules": rules }).to_string();
            let written = registry
                .patch(
                    &target,
                    patch.as_bytes(),
                    Part::Object,
                    &WriteOptions::default(),
                )
                .await;
            if let Err(error) = written {
                tracing::debug!(%error, role = name, "writing an aggregated role's rules");
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = stopped.changed() => return,
        }
    }
}
