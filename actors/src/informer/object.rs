//! [`ApiObject`]: what an informer can follow, every k8s-openapi kind with standard metadata.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;

/// What an informer can follow: any k8s-openapi object kind.
pub trait ApiObject:
    k8s_openapi::Resource
    + k8s_openapi::Metadata<Ty = ObjectMeta>
    + DeserializeOwned
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<K> ApiObject for K where
    K: k8s_openapi::Resource
        + k8s_openapi::Metadata<Ty = ObjectMeta>
        + DeserializeOwned
        + Clone
        + Send
        + Sync
        + 'static
{
}
