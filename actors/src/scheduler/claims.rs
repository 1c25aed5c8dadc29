//! VolumeBinding's PreBind, in the shell: before a pod is bound to the node chosen for it,
//! each of its claims that waits for its first consumer (and has no node yet) is annotated
//! `volume.kubernetes.io/selected-node: <node>`, under the scheduler's fence and at the
//! resourceVersion the decision read. The PersistentVolume controller then binds the claim
//! to a volume on that node or provisions one there. A claim that changed meanwhile makes the
//! write (and so the bind) fail: the pod is tried again on what the claim says now.

use std::sync::Arc;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use rudder_proto::client::{ClientError, Fenced};
use rudder_proto::objects::storage::SELECTED_NODE_ANNOTATION;
use serde_json::json;

/// Annotates each of `claims` with `node` as its first consumer's node.
pub async fn select_node(
    api: &Fenced<'_>,
    claims: &[Arc<PersistentVolumeClaim>],
    node: &str,
) -> Result<(), ClientError> {
    for claim in claims {
        let namespace = claim.metadata.namespace.as_deref().unwrap_or_default();
        let name = claim.metadata.name.as_deref().unwrap_or_default();
        let patch = json!({ "metadata": {
            "resourceVersion": claim.metadata.resource_version,
            "annotations": { SELECTED_NODE_ANNOTATION: node },
        } });
        api.patch_object("persistentvolumeclaims", namespace, name, &patch, false)
            .await?;
        tracing::debug!(claim = %name, %namespace, %node, "claim's node selected");
    }
    Ok(())
}
