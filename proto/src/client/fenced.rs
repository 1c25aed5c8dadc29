//! [`Fenced`]: [`ApiClient`]'s writes under a leader's fence, the same verbs with the fence
//! attached (a child of `client.rs`, sharing its private request builders).

use super::{decode, ApiClient, ClientError};
use crate::api;

/// [`ApiClient`]'s writes under a leader's fence ([`ApiClient::fenced`]). The verbs are the
/// client's own; a fence that no longer holds fails them with reason `Forbidden`
/// ([`ClientError::is_fence_refused`]).
#[derive(Clone, Copy)]
pub struct Fenced<'a> {
    pub(super) client: &'a ApiClient,
    pub(super) fence: &'a api::Fence,
}

impl Fenced<'_> {
    pub fn fence(&self) -> &api::Fence {
        self.fence
    }

    pub async fn create_object(
        &self,
        resource: &str,
        namespace: &str,
        object: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        self.client
            .create_under(Some(self.fence), resource, namespace, object)
            .await
    }

    /// See [`ApiClient::update_object`].
    pub async fn update_object(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        object: &serde_json::Value,
        status: bool,
    ) -> Result<serde_json::Value, ClientError> {
        self.client
            .update_under(Some(self.fence), resource, namespace, name, object, status)
            .await
    }

    /// See [`ApiClient::finalize_namespace`].
    pub async fn finalize_namespace(
        &self,
        namespace: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        self.client
            .finalize_under(Some(self.fence), namespace)
            .await
    }

    /// See [`ApiClient::patch_object`].
    pub async fn patch_object(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        patch: &serde_json::Value,
        status: bool,
    ) -> Result<serde_json::Value, ClientError> {
        self.client
            .patch_under(Some(self.fence), resource, namespace, name, patch, status)
            .await
    }

    /// Deletes as `request` says, with this fence in place of its own.
    pub async fn delete_object(
        &self,
        request: api::DeleteRequest,
    ) -> Result<api::DeleteResponse, ClientError> {
        let request = api::DeleteRequest {
            fence: Some(self.fence.clone()),
            ..request
        };
        self.client.delete_object(request).await
    }

    /// Binds pod `namespace/name` to `node` (compare-and-swap: only an unbound pod, and with
    /// `uid` not empty only that pod); returns the pod.
    pub async fn bind(
        &self,
        namespace: &str,
        name: &str,
        node: &str,
        uid: &str,
    ) -> Result<serde_json::Value, ClientError> {
        let request = api::BindRequest {
            namespace: namespace.into(),
            name: name.into(),
            node_name: node.into(),
            fence: Some(self.fence.clone()),
            uid: uid.into(),
        };
        let bound = self
            .client
            .write(
                request,
                |mut c, request| async move { c.bind(request).await },
            )
            .await?;
        decode(&bound.json)
    }
}
