//! [`MetaOnly`]: an object of any kind with only its metadata kept, so one informer per kind
//! can follow every kind the API serves at the cost of their metadata (what the garbage
//! collector's ownership graph needs).

use std::marker::PhantomData;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};

/// An object of kind `K`, decoded for its `metadata` only (everything else is skipped, and
/// so are its managed fields).
pub struct MetaOnly<K> {
    pub metadata: ObjectMeta,
    kind: PhantomData<fn() -> K>,
}

impl<K> MetaOnly<K> {
    pub fn new(metadata: ObjectMeta) -> Self {
        Self {
            metadata,
            kind: PhantomData,
        }
    }
}

impl<K> Clone for MetaOnly<K> {
    fn clone(&self) -> Self {
        Self::new(self.metadata.clone())
    }
}

impl<K> std::fmt::Debug for MetaOnly<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaOnly")
            .field("metadata", &self.metadata)
            .finish()
    }
}

impl<K: k8s_openapi::Resource> k8s_openapi::Resource for MetaOnly<K> {
    const API_VERSION: &'static str = K::API_VERSION;
    const GROUP: &'static str = K::GROUP;
    const KIND: &'static str = K::KIND;
    const VERSION: &'static str = K::VERSION;
    const URL_PATH_SEGMENT: &'static str = K::URL_PATH_SEGMENT;
    type Scope = K::Scope;
}

impl<K: k8s_openapi::Resource> k8s_openapi::Metadata for MetaOnly<K> {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl<'de, K> Deserialize<'de> for MetaOnly<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Partial {
            #[serde(default)]
            metadata: ObjectMeta,
        }
        let mut metadata = Partial::deserialize(deserializer)?.metadata;
        // Nothing that follows metadata alone reads who manages which field; and the
        // references are kept without the room decoding left in their list.
        metadata.managed_fields = None;
        if let Some(owners) = metadata.owner_references.as_mut() {
            owners.shrink_to_fit();
        }
        Ok(Self::new(metadata))
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::Resource;

    use super::*;
    use crate::pods::cached::Pod;

    #[test]
    fn only_the_metadata_is_kept_and_the_kind_is_the_objects() {
        let pod: MetaOnly<Pod> = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "web-1", "namespace": "default", "uid": "u1",
                          "managedFields": [{ "manager": "kubectl", "operation": "Apply" }],
                          "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                "name": "web", "uid": "rs1" }] },
            "spec": { "containers": [{ "name": "c", "image": "kubia" }] },
            "status": { "phase": "Running" }
        }))
        .unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("web-1"));
        assert_eq!(pod.metadata.managed_fields, None);
        assert_eq!(
            pod.metadata.owner_references.as_ref().unwrap()[0].uid,
            "rs1"
        );
        assert_eq!(
            (
                <MetaOnly<Pod>>::KIND,
                <MetaOnly<Pod>>::API_VERSION,
                <MetaOnly<Pod>>::URL_PATH_SEGMENT
            ),
            ("Pod", "v1", "pods")
        );
    }
}
