//! The ServiceAccount controller's shell: a namespace added or changed, or an account
//! deleted, asks for its namespace to be looked at; a worker reconciles it (reconcile.rs) and
//! creates what is missing under the leader's fence.
//!
//! ```text
//!  Event<Namespace> (added, updated) ─► name ─┐
//!  Event<ServiceAccount> (deleted) ─► namespace ┴─► WorkQueue ─► reconcile ─► create (fenced)
//! ```
//!
//! A create that finds the account already there (a cache behind our own create), the
//! namespace gone or being terminated has nothing left to do; any other failure is retried
//! with the key's backoff.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use rudder_proto::api::Fence;
use rudder_proto::client::{ApiClient, ClientError};

use super::reconcile::{reconcile, Action, ENSURED};
use crate::controllers::runtime::{Controller, Subscriptions, Watches};
use crate::informer::{Cache, Event, ObjectKey};
use crate::queue::WorkQueue;

#[derive(Clone)]
pub struct Caches {
    pub namespaces: Cache<Namespace>,
    pub accounts: Cache<ServiceAccount>,
}

/// The ServiceAccount controller: clones share the caches and the queue of namespace names.
#[derive(Clone)]
pub struct ServiceAccountController {
    client: Arc<ApiClient>,
    fence: Fence,
    caches: Caches,
    queue: WorkQueue<String>,
}

impl ServiceAccountController {
    /// The controller for the leader holding `fence`.
    pub fn new(client: Arc<ApiClient>, fence: Fence, caches: Caches) -> Self {
        Self {
            client,
            fence,
            caches,
            queue: WorkQueue::default(),
        }
    }
}

impl Controller for ServiceAccountController {
    type Key = String;
    const NAME: &'static str = "serviceaccount";

    fn queue(&self) -> &WorkQueue<String> {
        &self.queue
    }

    fn watch(&self, caches: &mut Subscriptions<'_, Self>) {
        caches.watch(&self.caches.namespaces);
        caches.watch(&self.caches.accounts);
    }

    async fn sync(&self, namespace: String) -> Result<Option<Duration>, ClientError> {
        let cached = self.caches.namespaces.get(&ObjectKey::new("", &namespace));
        let accounts = self.caches.accounts.in_namespace(&namespace);
        let api = self.client.fenced(&self.fence);
        let mut failed = None;
        for action in reconcile(cached.as_deref(), &accounts, ENSURED) {
            let Action::Create { namespace, name } = &action;
            match api
                .create_object("serviceaccounts", namespace, &action.body())
                .await
            {
                Ok(_) => tracing::info!(%namespace, %name, "ServiceAccount created"),
                Err(error) if nothing_left_to_do(&error) => {
                    tracing::debug!(%namespace, %name, %error, "ServiceAccount not created");
                }
                Err(error) => {
                    failed.get_or_insert(error);
                }
            }
        }
        failed.map_or(Ok(None), Err)
    }
}

/// Whether a failed create leaves nothing to do: the account exists (our cache is behind),
/// or the namespace is gone or being terminated (the `NamespaceTerminating` cause of the
/// refusal, which Kubernetes' controller ignores the same way). Any other `Forbidden` (a
/// refused fence: the worker reports it as the lost lease it is) is not one of them.
fn nothing_left_to_do(error: &ClientError) -> bool {
    match error.reason() {
        "AlreadyExists" | "NotFound" => true,
        _ => error.is_namespace_terminating(),
    }
}

/// A namespace added or changed (its phase, a relist) is looked at, as Kubernetes does.
impl Watches<Namespace> for ServiceAccountController {
    fn on_event(&self, event: &Event<Namespace>) {
        if let Event::Added(namespace) | Event::Updated { new: namespace, .. } = event {
            if let Some(name) = namespace.metadata.name.as_ref() {
                self.queue.add(name.clone());
            }
        }
    }
}

/// An account deleted may be one the namespace must have.
impl Watches<ServiceAccount> for ServiceAccountController {
    fn on_event(&self, event: &Event<ServiceAccount>) {
        if let Event::Deleted(account) = event {
            if let Some(namespace) = account.metadata.namespace.as_ref() {
                self.queue.add(namespace.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tonic::Code;

    fn refused(reason: &str, message: &str, causes: serde_json::Value) -> ClientError {
        let status = json!({ "kind": "Status", "reason": reason, "message": message,
                             "details": { "causes": causes } });
        ClientError::Api {
            code: Code::FailedPrecondition,
            reason: reason.into(),
            message: message.into(),
            status: status.to_string(),
        }
    }

    #[test]
    fn only_a_create_with_nothing_left_to_do_counts_as_done() {
        let terminating = refused(
            "Forbidden",
            "serviceaccounts \"default\" is forbidden: unable to create new content in \
             namespace team because it is being terminated",
            json!([{ "reason": "NamespaceTerminating", "field": "metadata.namespace",
                     "message": "namespace team is being terminated" }]),
        );
        assert!(nothing_left_to_do(&terminating));
        assert!(nothing_left_to_do(&refused(
            "AlreadyExists",
            "exists",
            json!([])
        )));
        assert!(nothing_left_to_do(&refused(
            "NotFound",
            "namespaces \"team\" not found",
            json!([])
        )));
        // The cause decides, not the words: a lost lease whose message happens to say
        // "being terminated" is reported.
        let fence = refused(
            "Forbidden",
            "fenced write refused: the lease is held by another (being terminated)",
            json!([]),
        );
        assert!(!nothing_left_to_do(&fence), "a lost lease is reported");
        assert!(!nothing_left_to_do(&refused("Invalid", "bad", json!([]))));
    }
}
