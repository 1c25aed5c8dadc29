//! The namespace controller's shell: a namespace event wakes its key; for a terminating
//! namespace a worker lists every namespaced kind the API serves (discovered once per term)
//! in it, deletes what is not already going, and once nothing is left removes the
//! namespace's finalizer, all under the leader's fence. While contents remain (pods
//! waiting for their kubelets, objects held by finalizers) it looks again shortly.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use rudder_proto::api::{self, DeleteRequest, Fence};
use rudder_proto::client::{ApiClient, ClientError};
use serde_json::{json, Value};

use super::reconcile::{reconcile, Step};
use crate::controllers::runtime::{Controller, Subscriptions, Watches};
use crate::informer::{Cache, Event, ObjectKey};
use crate::queue::WorkQueue;

/// How soon a namespace that still has contents is looked at again.
const CONTENTS_RETRY: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct NamespaceController {
    client: Arc<ApiClient>,
    fence: Fence,
    namespaces: Cache<Namespace>,
    queue: WorkQueue<ObjectKey>,
    /// The namespaced kinds the API serves (their resource names), discovered once.
    kinds: Arc<Mutex<Option<Vec<String>>>>,
}

impl NamespaceController {
    pub fn new(client: Arc<ApiClient>, fence: Fence, namespaces: Cache<Namespace>) -> Self {
        Self {
            client,
            fence,
            namespaces,
            queue: WorkQueue::default(),
            kinds: Arc::default(),
        }
    }

    async fn namespaced_kinds(&self) -> Result<Vec<String>, ClientError> {
        if let Some(kinds) = self.kinds.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(kinds);
        }
        let discovered = self
            .client
            .call(|mut c| async move { c.discover(api::DiscoverRequest {}).await })
            .await?;
        let kinds: Vec<String> = discovered
            .kinds
            .into_iter()
            .filter(|kind| kind.namespaced)
            .map(|kind| match kind.group.as_str() {
                "" => kind.resource,
                group => format!("{}.{group}", kind.resource),
            })
            .collect();
        *self.kinds.lock().unwrap_or_else(|p| p.into_inner()) = Some(kinds.clone());
        Ok(kinds)
    }

    /// Deletes what is in `namespace` and is not going already; returns how many objects
    /// are still in it.
    async fn delete_contents(&self, namespace: &str) -> Result<usize, ClientError> {
        let fenced = self.client.fenced(&self.fence);
        let mut remaining = 0;
        for resource in self.namespaced_kinds().await? {
            let listed = self
                .client
                .list(api::ListRequest {
                    resource: resource.clone(),
                    namespace: namespace.into(),
                    ..Default::default()
                })
                .await?;
            for item in &listed.items {
                remaining += 1;
                let object: Value = match serde_json::from_slice(item) {
                    Ok(object) => object,
                    Err(error) => {
                        // Counted (the namespace waits for it), but not deletable by name.
                        tracing::warn!(namespace, %resource, %error, "a listed object does not decode");
                        continue;
                    }
                };
                if object["metadata"]["deletionTimestamp"].is_string() {
                    continue;
                }
                let deleted = fenced
                    .delete_object(DeleteRequest {
                        resource: resource.clone(),
                        namespace: namespace.into(),
                        name: object["metadata"]["name"].as_str().unwrap_or("").into(),
                        precondition_uid: object["metadata"]["uid"].as_str().unwrap_or("").into(),
                        ..Default::default()
                    })
                    .await;
                match deleted {
                    Ok(_) => {}
                    Err(error) if error.is_not_found() || error.reason() == "Conflict" => {}
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(remaining)
    }
}

impl Controller for NamespaceController {
    type Key = ObjectKey;
    const NAME: &'static str = "namespace";

    fn queue(&self) -> &WorkQueue<ObjectKey> {
        &self.queue
    }

    fn watch(&self, caches: &mut Subscriptions<'_, Self>) {
        caches.watch(&self.namespaces);
    }

    async fn sync(&self, key: ObjectKey) -> Result<Option<Duration>, ClientError> {
        let Some(namespace) = self.namespaces.get(&key) else {
            return Ok(None);
        };
        if namespace.metadata.deletion_timestamp.is_none() {
            return Ok(None);
        }
        let remaining = self.delete_contents(&key.name).await?;
        let fenced = self.client.fenced(&self.fence);
        match reconcile(&namespace, remaining) {
            Step::Nothing => Ok(None),
            Step::Empty { remaining } => {
                tracing::debug!(namespace = %key.name, remaining, "namespace still has contents");
                Ok(Some(CONTENTS_RETRY))
            }
            Step::Finalize { keep } => {
                let finalized = json!({
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {
                        "name": key.name,
                        "resourceVersion": namespace.metadata.resource_version,
                    },
                    "spec": { "finalizers": keep },
                });
                match fenced.finalize_namespace(&finalized).await {
                    Ok(_) => {
                        tracing::info!(namespace = %key.name, "namespace emptied and finalized");
                        Ok(None)
                    }
                    Err(error) if error.is_not_found() => Ok(None),
                    Err(error) => Err(error),
                }
            }
            Step::Delete => {
                let deleted = fenced
                    .delete_object(DeleteRequest {
                        resource: "namespaces".into(),
                        name: key.name.clone(),
                        precondition_uid: namespace.metadata.uid.clone().unwrap_or_default(),
                        ..Default::default()
                    })
                    .await;
                match deleted {
                    Ok(_) => Ok(None),
                    Err(error) if error.is_not_found() || error.reason() == "Conflict" => Ok(None),
                    Err(error) => Err(error),
                }
            }
        }
    }
}

impl Watches<Namespace> for NamespaceController {
    fn on_event(&self, event: &Event<Namespace>) {
        if let Some(namespace) = event.latest() {
            if namespace.metadata.deletion_timestamp.is_some() {
                if let Some(key) = event.key() {
                    self.queue.add(key);
                }
            }
        }
    }
}
