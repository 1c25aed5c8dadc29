//! [`ApiObject`]: what an informer can follow: every k8s-openapi kind with standard metadata,
//! and any other type that decodes as one (`MetaOnly`, `pods::cached::Pod`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;

/// What an informer can follow: a type that names its kind as k8s-openapi's `Resource` does,
/// has standard metadata, and decodes from the API's JSON.
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
