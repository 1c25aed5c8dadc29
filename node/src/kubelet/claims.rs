//! A pod's PersistentVolumeClaims, on a node whose runtime mounts volumes: each claim must be
//! Bound and its volume one this node can mount (hostPath, or local); the pod's plan then
//! carries the volume's host path in the claim's place, so the runtime mounts it as it
//! mounts any hostPath (making a `DirectoryOrCreate` one, as the local-path provisioner's
//! are, on first use). Until then the pod is not started: it stays Pending, and the kubelet
//! reports why (`FailedMount`), as Kubernetes' volume manager does.
//!
//! ```text
//!  volume with persistentVolumeClaim (or ephemeral: claim <pod>-<volume>)
//!    ─ read the claim ─ missing / being deleted / not Bound ─► ClaimError: the pod waits
//!    ─ read its volume ─ missing / not bound back to this claim ─► ClaimError
//!    ─ host_source (pure) ─ hostPath as is, local.path as a Directory ─► the plan's volume
//! ```

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, PersistentVolume, PersistentVolumeClaim, PodSpec,
};
use rudder_proto::client::{ApiClient, ClientError};

use crate::runtime::PodPlan;

/// Why a pod's claim cannot be mounted yet, in the words of Kubernetes' volume manager.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("error processing PVC {namespace}/{claim}: persistentvolumeclaim {claim:?} not found")]
    NotFound { namespace: String, claim: String },
    #[error("error processing PVC {namespace}/{claim}: PVC is being deleted")]
    Deleting { namespace: String, claim: String },
    #[error(
        "error processing PVC {namespace}/{claim}: PVC is not bound (phase {phase:?}); it is \
         bound by the PersistentVolume controller once a volume is found or provisioned"
    )]
    NotBound {
        namespace: String,
        claim: String,
        phase: String,
    },
    #[error("error processing PVC {namespace}/{claim}: persistentvolume {volume:?} not found")]
    VolumeNotFound {
        namespace: String,
        claim: String,
        volume: String,
    },
    #[error(
        "error processing PVC {namespace}/{claim}: found PV object {volume:?} but its \
         pv.Spec.ClaimRef does not point to this claim (uid {claim_uid:?})"
    )]
    BoundElsewhere {
        namespace: String,
        claim: String,
        volume: String,
        claim_uid: String,
    },
    #[error(
        "error processing PVC {namespace}/{claim}: persistentvolume {volume:?} is neither a \
         hostPath nor a local volume, the only kinds this node mounts"
    )]
    Unsupported {
        namespace: String,
        claim: String,
        volume: String,
    },
    #[error("error processing PVC {namespace}/{claim}: {source}")]
    Api {
        namespace: String,
        claim: String,
        #[source]
        source: Box<ClientError>,
    },
    #[error(
        "error processing PVC {namespace}/{claim}: the server sent a {kind} that does not \
         decode: {source}"
    )]
    Decode {
        namespace: String,
        claim: String,
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// The claim each of the pod's volumes uses: `(volume name, claim name, read only)`.
pub fn claim_volumes(pod_name: &str, spec: &PodSpec) -> Vec<(String, String, bool)> {
    spec.volumes
        .iter()
        .flatten()
        .filter_map(|volume| {
            if let Some(claim) = &volume.persistent_volume_claim {
                let read_only = claim.read_only.unwrap_or(false);
                Some((volume.name.clone(), claim.claim_name.clone(), read_only))
            } else if volume.ephemeral.is_some() {
                Some((
                    volume.name.clone(),
                    format!("{pod_name}-{}", volume.name),
                    false,
                ))
            } else {
                None
            }
        })
        .collect()
}

/// The host path `volume` (bound, as the PersistentVolume controller binds it, to `claim`)
/// is mounted from.
pub fn host_source(
    claim: &PersistentVolumeClaim,
    volume: &PersistentVolume,
) -> Result<HostPathVolumeSource, ClaimError> {
    let namespace = claim.metadata.namespace.clone().unwrap_or_default();
    let claim_name = claim.metadata.name.clone().unwrap_or_default();
    let volume_name = volume.metadata.name.clone().unwrap_or_default();
    let spec = volume.spec.clone().unwrap_or_default();
    let claim_uid = claim.metadata.uid.clone().unwrap_or_default();
    let points_back = spec
        .claim_ref
        .as_ref()
        .is_some_and(|r| r.uid.as_deref() == Some(claim_uid.as_str()));
    if !points_back {
        return Err(ClaimError::BoundElsewhere {
            namespace,
            claim: claim_name,
            volume: volume_name,
            claim_uid,
        });
    }
    if let Some(host) = spec.host_path {
        return Ok(host);
    }
    if let Some(local) = spec.local {
        // A local volume is a disk or directory an administrator made: it must exist.
        return Ok(HostPathVolumeSource {
            path: local.path,
            type_: Some("Directory".into()),
        });
    }
    Err(ClaimError::Unsupported {
        namespace,
        claim: claim_name,
        volume: volume_name,
    })
}

/// Puts `source` in the place of the pod volume `volume`, and makes every mount of it read
/// only when the claim is mounted read only.
pub fn substitute(spec: &mut PodSpec, volume: &str, source: HostPathVolumeSource, read_only: bool) {
    for entry in spec.volumes.iter_mut().flatten() {
        if entry.name == volume {
            entry.persistent_volume_claim = None;
            entry.ephemeral = None;
            entry.host_path = Some(source.clone());
        }
    }
    if !read_only {
        return;
    }
    let containers = spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut());
    for container in containers {
        for mount in container.volume_mounts.iter_mut().flatten() {
            if mount.name == volume {
                mount.read_only = Some(true);
            }
        }
    }
}

/// Reads each of the plan's claims and its volume, and puts the volume's host path in the
/// claim's place; the first claim that cannot be mounted yet is the error.
pub async fn resolve(client: &ApiClient, plan: &mut PodPlan) -> Result<(), ClaimError> {
    for (volume, claim_name, read_only) in claim_volumes(&plan.name, &plan.spec) {
        let namespace = plan.namespace.clone();
        let api = |source: ClientError| ClaimError::Api {
            namespace: namespace.clone(),
            claim: claim_name.clone(),
            source: Box::new(source),
        };
        let decode = |kind: &'static str| {
            let (namespace, claim) = (namespace.clone(), claim_name.clone());
            move |source: serde_json::Error| ClaimError::Decode {
                namespace,
                claim,
                kind,
                source,
            }
        };
        let claim = match client
            .get_object("persistentvolumeclaims", &namespace, &claim_name)
            .await
        {
            Ok(claim) => claim,
            Err(error) if error.is_not_found() => {
                return Err(ClaimError::NotFound {
                    namespace,
                    claim: claim_name,
                })
            }
            Err(error) => return Err(api(error)),
        };
        let claim: PersistentVolumeClaim =
            serde_json::from_value(claim).map_err(decode("PersistentVolumeClaim"))?;
        if claim.metadata.deletion_timestamp.is_some() {
            return Err(ClaimError::Deleting {
                namespace,
                claim: claim_name,
            });
        }
        let phase = claim
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        let volume_name = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .unwrap_or_default();
        if phase != "Bound" || volume_name.is_empty() {
            return Err(ClaimError::NotBound {
                namespace,
                claim: claim_name,
                phase,
            });
        }
        let bound = match client
            .get_object("persistentvolumes", "", &volume_name)
            .await
        {
            Ok(bound) => bound,
            Err(error) if error.is_not_found() => {
                return Err(ClaimError::VolumeNotFound {
                    namespace,
                    claim: claim_name,
                    volume: volume_name,
                })
            }
            Err(error) => return Err(api(error)),
        };
        let bound: PersistentVolume =
            serde_json::from_value(bound).map_err(decode("PersistentVolume"))?;
        let source = host_source(&claim, &bound)?;
        substitute(&mut plan.spec, &volume, source, read_only);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn spec() -> PodSpec {
        serde_json::from_value(json!({
            "containers": [{ "name": "app", "volumeMounts": [
                { "name": "data", "mountPath": "/data" },
                { "name": "cache", "mountPath": "/cache" }] }],
            "initContainers": [{ "name": "init", "volumeMounts": [
                { "name": "data", "mountPath": "/data" }] }],
            "volumes": [
                { "name": "data", "persistentVolumeClaim": { "claimName": "data-web-0",
                                                             "readOnly": true } },
                { "name": "cache", "emptyDir": {} },
                { "name": "scratch", "ephemeral": { "volumeClaimTemplate": {
                    "spec": { "accessModes": ["ReadWriteOnce"] } } } }
            ]
        }))
        .expect("a test spec decodes")
    }

    fn claim() -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": { "name": "data-web-0", "namespace": "default", "uid": "claim-uid" },
            "spec": { "volumeName": "pvc-claim-uid" }, "status": { "phase": "Bound" } }))
        .expect("a test claim decodes")
    }

    fn volume(change: impl FnOnce(&mut Value)) -> PersistentVolume {
        let mut value = json!({
            "metadata": { "name": "pvc-claim-uid" },
            "spec": { "claimRef": { "namespace": "default", "name": "data-web-0",
                                    "uid": "claim-uid" },
                      "hostPath": {
                          "path": "/var/lib/rudder/storage/pvc-claim-uid_default_data-web-0",
                          "type": "DirectoryOrCreate" } } });
        change(&mut value);
        serde_json::from_value(value).expect("a test volume decodes")
    }

    #[test]
    fn a_pods_claims_are_found_by_volume_and_ephemeral_ones_by_pod_and_volume_name() {
        assert_eq!(
            claim_volumes("web-0", &spec()),
            [
                ("data".to_string(), "data-web-0".to_string(), true),
                ("scratch".to_string(), "web-0-scratch".to_string(), false),
            ]
        );
    }

    #[test]
    fn a_bound_volume_is_mounted_from_its_host_path_or_local_directory() {
        let host = host_source(&claim(), &volume(|_| {})).expect("a hostPath volume");
        assert_eq!(
            (host.path.as_str(), host.type_.as_deref()),
            (
                "/var/lib/rudder/storage/pvc-claim-uid_default_data-web-0",
                Some("DirectoryOrCreate")
            )
        );
        let local = host_source(
            &claim(),
            &volume(|v| {
                v["spec"].as_object_mut().unwrap().remove("hostPath");
                v["spec"]["local"] = json!({ "path": "/mnt/disks/ssd1" });
            }),
        )
        .expect("a local volume");
        assert_eq!(
            (local.path.as_str(), local.type_.as_deref()),
            ("/mnt/disks/ssd1", Some("Directory"))
        );
        let nfs = host_source(
            &claim(),
            &volume(|v| {
                v["spec"].as_object_mut().unwrap().remove("hostPath");
                v["spec"]["nfs"] = json!({ "server": "nfs.local", "path": "/exports" });
            }),
        );
        assert!(
            matches!(nfs, Err(ClaimError::Unsupported { .. })),
            "{nfs:?}"
        );
        let other = host_source(
            &claim(),
            &volume(|v| v["spec"]["claimRef"]["uid"] = json!("someone-else")),
        );
        assert!(
            matches!(other, Err(ClaimError::BoundElsewhere { .. })),
            "{other:?}"
        );
    }

    #[test]
    fn the_claim_is_replaced_by_its_host_path_and_a_read_only_claim_mounts_read_only() {
        let mut spec = spec();
        let source = host_source(&claim(), &volume(|_| {})).expect("a source");
        substitute(&mut spec, "data", source, true);
        let data = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "data")
            .expect("the volume");
        assert!(data.persistent_volume_claim.is_none());
        assert_eq!(
            data.host_path.as_ref().map(|h| h.path.as_str()),
            Some("/var/lib/rudder/storage/pvc-claim-uid_default_data-web-0")
        );
        let read_only: Vec<(String, Option<bool>)> = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .flat_map(|c| c.volume_mounts.iter().flatten())
            .map(|m| (m.name.clone(), m.read_only))
            .collect();
        assert_eq!(
            read_only,
            [
                ("data".to_string(), Some(true)),
                ("data".to_string(), Some(true)),
                ("cache".to_string(), None),
            ]
        );
    }

    #[test]
    fn waiting_reasons_read_like_the_volume_managers() {
        let not_bound = ClaimError::NotBound {
            namespace: "default".into(),
            claim: "data-web-0".into(),
            phase: "Pending".into(),
        };
        assert!(not_bound
            .to_string()
            .starts_with("error processing PVC default/data-web-0: PVC is not bound"));
        let missing = ClaimError::NotFound {
            namespace: "default".into(),
            claim: "data-web-0".into(),
        };
        assert_eq!(
            missing.to_string(),
            "error processing PVC default/data-web-0: persistentvolumeclaim \"data-web-0\" not \
             found"
        );
    }
}
