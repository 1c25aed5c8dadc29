//! The RBAC policy kept current from the registry: each of the four kinds listed, then
//! watched from the list's revision; a watch that ends (a compacted revision, a store
//! that lost its leader) is listed again. The authorizer decides nothing until each kind
//! has been listed once and the default roles and bindings are in the policy (a new
//! cluster's master writes them at start).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use super::defaults;
use super::rbac::{Policy, RbacObject, RBAC_RESOURCES};
use crate::list::ListOptions;
use crate::registry::Registry;
use crate::watch::WatchOptions;

/// How long to wait before listing again after a failed list or an ended watch.
const RETRY: Duration = Duration::from_millis(200);

/// The policy as last read, and whether it is loaded.
pub struct PolicyCache {
    policy: RwLock<Arc<Policy>>,
    /// Counts the policy's changes (loading waits on it for the default objects).
    changes: watch::Sender<u64>,
    /// Whether each RBAC kind has been listed once and the default roles and bindings
    /// are in (until then nothing is decided: a master's first requests would be refused
    /// what every user may do).
    loaded: watch::Sender<bool>,
}

impl PolicyCache {
    pub fn new() -> Self {
        Self {
            policy: RwLock::new(Arc::new(Policy::default())),
            changes: watch::channel(0).0,
            loaded: watch::channel(false).0,
        }
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Changes the policy (a copy, if a decision holds the current one).
    pub fn change(&self, change: impl FnOnce(&mut Policy)) {
        let mut policy = self
            .policy
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        change(Arc::make_mut(&mut policy));
        drop(policy);
        self.changes.send_modify(|count| *count += 1);
    }

    pub fn mark_loaded(&self) {
        self.loaded.send_replace(true);
    }

    /// Waits until the policy is loaded, then until it changes, each time `changed` is
    /// awaited (false once the cache is gone).
    pub async fn until_loaded(&self) {
        let mut loaded = self.loaded.subscribe();
        let _ = loaded.wait_for(|loaded| *loaded).await;
    }

    /// The policy's changes, to wait on.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Whether the policy is loaded, or becomes so within `limit`.
    pub async fn loaded_within(&self, limit: Duration) -> bool {
        let mut loaded = self.loaded.subscribe();
        tokio::time::timeout(limit, loaded.wait_for(|loaded| *loaded))
            .await
            .is_ok_and(|loaded| loaded.is_ok())
    }

    /// Keeps the policy current from `registry` until `stopped`.
    pub async fn follow(self: Arc<Self>, registry: Registry, stopped: watch::Receiver<bool>) {
        let (listed, mut all_listed) = watch::channel(0usize);
        let followers = RBAC_RESOURCES.map(|resource| {
            follow_one(
                self.clone(),
                registry.clone(),
                resource,
                listed.clone(),
                stopped.clone(),
            )
        });
        let loaded = {
            let cache = self.clone();
            let mut changes = cache.changes.subscribe();
            async move {
                let listed = all_listed
                    .wait_for(|count| *count == RBAC_RESOURCES.len())
                    .await
                    .is_ok();
                let defaults_in = listed
                    && changes
                        .wait_for(|_| defaults::all_in(&cache.policy()))
                        .await
                        .is_ok();
                if defaults_in {
                    cache.mark_loaded();
                }
                // Keeps the sender side's count meaningful for as long as the followers
                // run.
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = futures::future::join_all(followers) => {}
            _ = loaded => {}
        }
    }
}

impl Default for PolicyCache {
    fn default() -> Self {
        Self::new()
    }
}

async fn follow_one(
    authorizer: Arc<PolicyCache>,
    registry: Registry,
    resource: &'static str,
    listed: watch::Sender<usize>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut counted = false;
    loop {
        if *stopped.borrow() {
            return;
        }
        match registry.list(resource, &ListOptions::default()).await {
            Ok(list) => {
                let objects = decoded(resource, list.items);
                authorizer.change(|policy| policy.replace_all(resource, objects));
                if !counted {
                    counted = true;
                    listed.send_modify(|count| *count += 1);
                }
                let options = WatchOptions {
                    resource_version: list.revision.to_string(),
                    ..WatchOptions::default()
                };
                match registry.watch(resource, &options).await {
                    Ok(mut events) => loop {
                        let event = tokio::select! {
                            event = events.recv() => event,
                            _ = stopped.changed() => return,
                        };
                        let Some(event) = event else { break };
                        let object = (*event.object).clone();
                        match event.kind {
                            "ADDED" | "MODIFIED" => {
                                if let Some(object) = decode(resource, object) {
                                    authorizer.change(|policy| policy.upsert(object));
                                }
                            }
                            "DELETED" => {
                                if let Some(object) = decode(resource, object) {
                                    authorizer.change(|policy| policy.remove(&object));
                                }
                            }
                            "ERROR" => break,
                            _ => {}
                        }
                    },
                    Err(error) => tracing::debug!(%error, resource, "watching RBAC objects"),
                }
            }
            Err(error) => tracing::debug!(%error, resource, "listing RBAC objects"),
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = stopped.changed() => return,
        }
    }
}

fn decode(resource: &str, object: serde_json::Value) -> Option<RbacObject> {
    RbacObject::decode(resource, object)
        .map_err(|error| tracing::warn!(%error, "an RBAC object the policy leaves out"))
        .ok()
}

fn decoded(resource: &str, items: Vec<serde_json::Value>) -> Vec<RbacObject> {
    items
        .into_iter()
        .filter_map(|item| decode(resource, item))
        .collect()
}
