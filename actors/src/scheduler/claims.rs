//! VolumeBinding's PreBind writes, in the shell: before a pod is bound to the node chosen for
//! it, each static volume reserved for one of its claims gets its claimRef, and each claim to
//! be provisioned there is annotated `volume.kubernetes.io/selected-node: <node>`, under the
//! scheduler's fence and each at the resourceVersion the decision read (`bindAPIUpdate`). A
//! claim or volume that changed meanwhile makes the write (and so the bind) fail: the pod is
//! tried again on what they say now. What the writes left is returned, so that the wait for
//! the PersistentVolume controller (`volumes::check_bindings`) knows when the watch has
//! caught up with them.
//!
//! ```text
//!  PreBind { reserve, select, waits } ─► update each volume (CAS) ─► patch each claim (CAS)
//!                                      ─► the waits, each with the resourceVersion written
//! ```

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use rudder_proto::client::{ClientError, Fenced};
use rudder_proto::objects::storage::SELECTED_NODE_ANNOTATION;
use serde_json::{json, Value};

use super::volumes::{ClaimWait, PreBind};
use crate::informer::ObjectKey;

/// Why a PreBind write failed.
#[derive(Debug, thiserror::Error)]
pub enum PreBindError {
    #[error("reserving persistentvolume {volume:?} for its claim: {source}")]
    Reserve {
        volume: String,
        #[source]
        source: ClientError,
    },
    #[error("annotating persistentvolumeclaim {claim} with its selected node: {source}")]
    Select {
        claim: String,
        #[source]
        source: ClientError,
    },
    #[error("encoding persistentvolume {volume:?} for the API: {source}")]
    Encode {
        volume: String,
        #[source]
        source: serde_json::Error,
    },
}

impl PreBindError {
    /// The API's refusal, if the API refused.
    pub fn api_error(&self) -> Option<&ClientError> {
        match self {
            Self::Reserve { source, .. } | Self::Select { source, .. } => Some(source),
            Self::Encode { .. } => None,
        }
    }

    /// Whether the scheduler's lease is lost (the write was refused for its fence).
    pub fn is_fence_refused(&self) -> bool {
        self.api_error().is_some_and(ClientError::is_fence_refused)
    }
}

/// Writes `plan`; returns its waits with the resourceVersions the writes left.
pub async fn pre_bind(api: &Fenced<'_>, plan: &PreBind) -> Result<Vec<ClaimWait>, PreBindError> {
    let mut waits = plan.waits.clone();
    for volume in &plan.reserve {
        let name = volume.metadata.name.as_deref().unwrap_or_default();
        let version = reserve(api, volume).await?;
        for wait in waits
            .iter_mut()
            .filter(|w| w.volume.as_deref() == Some(name))
        {
            wait.written = version;
        }
        tracing::debug!(volume = %name, "volume reserved for its claim");
    }
    for claim in &plan.select {
        let key = ObjectKey::of(&claim.metadata);
        let version = select(api, claim)
            .await
            .map_err(|source| PreBindError::Select {
                claim: key.to_string(),
                source,
            })?;
        for wait in waits
            .iter_mut()
            .filter(|w| w.volume.is_none() && w.claim == key)
        {
            wait.written = version;
        }
        tracing::debug!(claim = %key, "claim's node selected");
    }
    Ok(waits)
}

/// Replaces the volume (its spec and metadata; the status is the controller's) at the
/// resourceVersion it carries; returns the one written.
async fn reserve(api: &Fenced<'_>, volume: &PersistentVolume) -> Result<u64, PreBindError> {
    let name = volume.metadata.name.as_deref().unwrap_or_default();
    let mut body = serde_json::to_value(volume).map_err(|source| PreBindError::Encode {
        volume: name.to_string(),
        source,
    })?;
    if let Some(fields) = body.as_object_mut() {
        fields.remove("status");
    }
    let written = api
        .update_object("persistentvolumes", "", name, &body, false)
        .await
        .map_err(|source| PreBindError::Reserve {
            volume: name.to_string(),
            source,
        })?;
    Ok(version_of(&written))
}

/// Annotates the claim with the node it carries in its selected-node annotation, at the
/// resourceVersion it carries; returns the one written.
async fn select(api: &Fenced<'_>, claim: &PersistentVolumeClaim) -> Result<u64, ClientError> {
    let namespace = claim.metadata.namespace.as_deref().unwrap_or_default();
    let name = claim.metadata.name.as_deref().unwrap_or_default();
    let node = claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SELECTED_NODE_ANNOTATION));
    let patch = json!({ "metadata": {
        "resourceVersion": claim.metadata.resource_version,
        "annotations": { SELECTED_NODE_ANNOTATION: node },
    } });
    let written = api
        .patch_object("persistentvolumeclaims", namespace, name, &patch, false)
        .await?;
    Ok(version_of(&written))
}

fn version_of(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
