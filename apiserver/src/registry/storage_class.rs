//! The DefaultStorageClass admission, as kube-apiserver's plugin does it: a new claim that
//! says nothing about its class (no `spec.storageClassName`, no beta class annotation) gets
//! the default class's name, the class marked `storageclass.kubernetes.io/is-default-class`
//! ([`storage::default_class`]: the newest if several are). With no default class the claim
//! is left without one. A claim that asks for `""` asked for no class, and keeps it. Only a
//! create is admitted: the PersistentVolume controller gives a class to older claims later.
//!
//! ```text
//!  create(claim) ─ has a class? ─ yes ─► as it is
//!                               └ no ──► range /registry/storageclasses/ ─► default_class
//!                                         ├─ Some(c) ─► spec.storageClassName = c
//!                                         └─ None ────► as it is
//! ```

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use rudder_proto::objects::storage;
use rudder_raftstore::kv::{KeyRange, RangeRequest};
use serde_json::Value;

use super::Registry;
use crate::error::ApiError;
use crate::object;

impl Registry {
    /// Gives `claim` (admitted, about to be created) the default class when it names none.
    /// Costs one linearizable range read, and only for such claims.
    pub(super) async fn admit_storage_class(&self, claim: &mut Value) -> Result<(), ApiError> {
        if has_class(claim)? {
            return Ok(());
        }
        let classes = self.storage_classes().await?;
        set_default_class(claim, &classes);
        Ok(())
    }

    /// Every stored StorageClass, in one linearizable read, so a class made just before the
    /// claim is found.
    async fn storage_classes(&self) -> Result<Vec<StorageClass>, ApiError> {
        let kind = self.kind("storageclasses")?;
        let (_, response) = self
            .range(RangeRequest {
                range: KeyRange::prefix(object::prefix(kind, "")),
                ..Default::default()
            })
            .await?;
        response
            .kvs
            .iter()
            .map(|kv| {
                serde_json::from_slice(&kv.value).map_err(|error| {
                    ApiError::internal(format!(
                        "stored StorageClass {} does not decode: {error}",
                        String::from_utf8_lossy(&kv.key)
                    ))
                })
            })
            .collect()
    }
}

/// Whether the admitted claim says which class it wants (`PersistentVolumeClaimHasClass`).
fn has_class(claim: &Value) -> Result<bool, ApiError> {
    let typed: PersistentVolumeClaim = serde_json::from_value(claim.clone()).map_err(|error| {
        ApiError::internal(format!(
            "the admitted claim {:?} does not decode: {error}",
            object::name(claim)
        ))
    })?;
    Ok(storage::claim_has_class(&typed))
}

/// Sets `spec.storageClassName` of `claim` to the default of `classes`, if there is one.
fn set_default_class(claim: &mut Value, classes: &[StorageClass]) {
    let Some(name) = storage::default_class(classes).and_then(|c| c.metadata.name.clone()) else {
        return;
    };
    match claim.get_mut("spec").and_then(Value::as_object_mut) {
        Some(spec) => {
            spec.insert("storageClassName".to_string(), Value::from(name));
        }
        None => claim["spec"] = serde_json::json!({ "storageClassName": name }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn class(name: &str, default: bool) -> StorageClass {
        let mut class = storage::default_storage_class();
        class.metadata.name = Some(name.to_string());
        if !default {
            class.metadata.annotations = None;
        }
        class
    }

    /// The claim's class after admission against `classes`.
    fn admitted(spec: Value, classes: &[StorageClass]) -> Value {
        let mut claim = json!({ "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                "metadata": { "name": "data", "namespace": "default" },
                                "spec": spec });
        if !has_class(&claim).expect("a claim decodes") {
            set_default_class(&mut claim, classes);
        }
        claim["spec"]["storageClassName"].clone()
    }

    #[test]
    fn a_claim_without_a_class_gets_the_default_and_one_with_a_class_keeps_it() {
        let classes = [class("slow", false), class("local-path", true)];
        let request = json!({ "accessModes": ["ReadWriteOnce"],
                              "resources": { "requests": { "storage": "1Gi" } } });
        assert_eq!(admitted(request.clone(), &classes), "local-path");
        let mut named = request.clone();
        named["storageClassName"] = json!("slow");
        assert_eq!(admitted(named, &classes), "slow");
        let mut none = request.clone();
        none["storageClassName"] = json!("");
        assert_eq!(admitted(none, &classes), "", "\"\" asks for no class");
        assert_eq!(
            admitted(request, &[class("slow", false)]),
            Value::Null,
            "no default class: left without one"
        );
    }
}
