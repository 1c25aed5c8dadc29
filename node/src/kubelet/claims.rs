//! A pod's PersistentVolumeClaims, on a node whose runtime mounts volumes: each claim must be
//! Bound and its volume one this node can mount (hostPath, or local) and may use (its node
//! affinity admits this Node, as the API has it); the pod's plan then carries the volume's
//! host path in the claim's place, so the runtime mounts it as it mounts any hostPath. A
//! volume of the built-in local-path provisioner gets its directory made here on its first
//! mount, world-writable as k3s's provisioner makes it, and is then mounted as a `Directory`
//! that must exist. Until then the pod is not started: it stays Pending, and the kubelet
//! reports why (`FailedMount`), as Kubernetes' volume manager does.
//!
//! ```text
//!  volume with persistentVolumeClaim (or ephemeral: claim <pod>-<volume>)
//!    ─ read the claim ─ missing / being deleted / not Bound ─► ClaimError: the pod waits
//!    ─ read its volume ─ missing / not bound back to this claim ─► ClaimError
//!    ─ pinned by node affinity ─ read this Node ─ not admitted ─► ClaimError
//!    ─ host_source (pure) ─ hostPath as is, local.path as a Directory, a local-path
//!      provisioner's directory to make ─► make_directory ─► the plan's volume (substitute)
//! ```
//!
//! Pure: [`claim_volumes`], [`host_source`], [`check_node`], [`substitute`]. I/O: [`resolve`]
//! (API reads) and [`make_directory`] (the node's disk).

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, Node, PersistentVolume, PersistentVolumeClaim, PodSpec,
};
use rudder_actors::scheduling::volumes::fits_node;
use rudder_proto::client::{ApiClient, ClientError};
use rudder_proto::objects::storage::{
    LOCAL_PATH_PROVISIONER, LOCAL_PATH_ROOT, PROVISIONED_BY_ANNOTATION,
};

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
    #[error(
        "error processing PVC {namespace}/{claim}: persistentvolume {volume:?}'s node affinity \
         does not admit node {node:?}: its data lives on another node; delete the pod so \
         that the scheduler places it where the volume is"
    )]
    NodeAffinity {
        namespace: String,
        claim: String,
        volume: String,
        node: String,
    },
    #[error(
        "error processing PVC {namespace}/{claim}: making the volume's directory {path:?}: \
         {source}; check that the node's storage under {root} is mounted and writable",
        root = LOCAL_PATH_ROOT
    )]
    MakeDirectory {
        namespace: String,
        claim: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
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

/// Where a claim's volume is mounted from on this node.
#[derive(Debug, Clone, PartialEq)]
pub struct HostSource {
    pub host_path: HostPathVolumeSource,
    /// The directory to make before the mount (a local-path provisioner's volume, made on
    /// its first mount on this node); `None`: nothing to make.
    pub make: Option<PathBuf>,
}

/// The host path `volume` (bound, as the PersistentVolume controller binds it, to `claim`)
/// is mounted from.
pub fn host_source(
    claim: &PersistentVolumeClaim,
    volume: &PersistentVolume,
) -> Result<HostSource, ClaimError> {
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
        if let Some(dir) = local_path_directory(volume, &host.path) {
            // Made here, once, and from then on required: a directory that vanished (its
            // disk not mounted) is not silently made again empty by the runtime.
            return Ok(HostSource {
                host_path: HostPathVolumeSource {
                    path: host.path,
                    type_: Some("Directory".into()),
                },
                make: Some(dir),
            });
        }
        return Ok(HostSource {
            host_path: host,
            make: None,
        });
    }
    if let Some(local) = spec.local {
        // A local volume is a disk or directory an administrator made: it must exist.
        return Ok(HostSource {
            host_path: HostPathVolumeSource {
                path: local.path,
                type_: Some("Directory".into()),
            },
            make: None,
        });
    }
    Err(ClaimError::Unsupported {
        namespace,
        claim: claim_name,
        volume: volume_name,
    })
}

/// The directory of a volume the built-in local-path provisioner made: annotated so, and a
/// directory right under [`LOCAL_PATH_ROOT`] (anything else an annotation names is mounted
/// as the hostPath it is, never made world-writable here).
fn local_path_directory(volume: &PersistentVolume, path: &str) -> Option<PathBuf> {
    let provisioned = volume
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PROVISIONED_BY_ANNOTATION))
        .is_some_and(|p| p == LOCAL_PATH_PROVISIONER);
    let path = Path::new(path);
    let name = path.file_name()?.to_str()?;
    let under_root = path.parent() == Some(Path::new(LOCAL_PATH_ROOT));
    (provisioned && under_root && name != "." && name != "..").then(|| path.to_path_buf())
}

/// Whether `volume`'s node affinity admits `node` (`CheckNodeAffinity`, as the kubelet checks
/// it before a mount): a pod bound here by hand must not use another node's data.
pub fn check_node(
    claim: &PersistentVolumeClaim,
    volume: &PersistentVolume,
    node: &Node,
) -> Result<(), ClaimError> {
    if fits_node(volume, node) {
        return Ok(());
    }
    Err(ClaimError::NodeAffinity {
        namespace: claim.metadata.namespace.clone().unwrap_or_default(),
        claim: claim.metadata.name.clone().unwrap_or_default(),
        volume: volume.metadata.name.clone().unwrap_or_default(),
        node: node.metadata.name.clone().unwrap_or_default(),
    })
}

/// Whether the volume is pinned to some nodes (it has required node affinity).
fn is_pinned(volume: &PersistentVolume) -> bool {
    volume
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .is_some_and(|a| a.required.is_some())
}

/// Makes a local-path volume's directory, world-writable as k3s's provisioner makes it
/// (`mkdir -m 0777`) so that a container of any user may write to it; [`LOCAL_PATH_ROOT`] is
/// made as needed. A directory already there is left as it is.
pub fn make_directory(path: &Path) -> std::io::Result<()> {
    if let Some(root) = path.parent() {
        std::fs::create_dir_all(root)?;
    }
    match std::fs::DirBuilder::new().mode(0o777).create(path) {
        // The umask takes bits off the mode asked for: set it outright.
        Ok(()) => std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            if std::fs::metadata(path)?.is_dir() {
                Ok(())
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "a file that is not a directory is in its place",
                ))
            }
        }
        Err(error) => Err(error),
    }
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

/// Reads each of the plan's claims and its volume (and, for a volume pinned to some nodes,
/// this node, `node`), makes a local-path volume's directory, and puts the volume's host
/// path in the claim's place; the first claim that cannot be mounted yet is the error.
pub async fn resolve(client: &ApiClient, plan: &mut PodPlan, node: &str) -> Result<(), ClaimError> {
    let mut this_node: Option<Node> = None;
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
        if is_pinned(&bound) {
            if this_node.is_none() {
                let read = client.get_object("nodes", "", node).await.map_err(api)?;
                this_node = Some(serde_json::from_value(read).map_err(decode("Node"))?);
            }
            if let Some(this_node) = &this_node {
                check_node(&claim, &bound, this_node)?;
            }
        }
        if let Some(path) = &source.make {
            make_directory(path).map_err(|source| ClaimError::MakeDirectory {
                namespace: namespace.clone(),
                claim: claim_name.clone(),
                path: path.clone(),
                source,
            })?;
        }
        substitute(&mut plan.spec, &volume, source.host_path, read_only);
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
            (
                host.host_path.path.as_str(),
                host.host_path.type_.as_deref()
            ),
            (
                "/var/lib/rudder/storage/pvc-claim-uid_default_data-web-0",
                Some("DirectoryOrCreate")
            )
        );
        assert_eq!(
            host.make, None,
            "not the local-path provisioner's: mounted as it is"
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
            (
                local.host_path.path.as_str(),
                local.host_path.type_.as_deref()
            ),
            ("/mnt/disks/ssd1", Some("Directory"))
        );
        assert_eq!(local.make, None);
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
        substitute(&mut spec, "data", source.host_path, true);
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
    fn a_local_path_volume_is_made_once_then_required() {
        let provisioned = |path: &str, by: &str| {
            let (path, by) = (path.to_string(), by.to_string());
            volume(move |v| {
                v["metadata"]["annotations"] = json!({ "pv.kubernetes.io/provisioned-by": by });
                v["spec"]["hostPath"]["path"] = json!(path);
            })
        };
        let dir = "/var/lib/rudder/storage/pvc-claim-uid_default_data-web-0";
        let made = host_source(&claim(), &provisioned(dir, "rudder.io/local-path"))
            .expect("a local-path volume");
        assert_eq!(
            made,
            HostSource {
                host_path: HostPathVolumeSource {
                    path: dir.to_string(),
                    type_: Some("Directory".into()),
                },
                make: Some(PathBuf::from(dir)),
            }
        );
        for (why, path, by) in [
            ("another provisioner's", dir, "example.com/nfs"),
            (
                "outside the storage root",
                "/etc/cron.d",
                "rudder.io/local-path",
            ),
            (
                "the root itself",
                "/var/lib/rudder/storage",
                "rudder.io/local-path",
            ),
            (
                "climbing out of the root",
                "/var/lib/rudder/storage/..",
                "rudder.io/local-path",
            ),
        ] {
            let source = host_source(&claim(), &provisioned(path, by)).expect("a volume");
            assert_eq!(source.make, None, "{why}");
            assert_eq!(
                source.host_path.type_.as_deref(),
                Some("DirectoryOrCreate"),
                "{why}: mounted as it is"
            );
        }
    }

    #[test]
    fn a_volume_pinned_to_another_node_is_not_mounted_here() {
        let pinned = volume(|v| {
            v["spec"]["nodeAffinity"] = json!({ "required": { "nodeSelectorTerms": [{
                "matchExpressions": [{ "key": "kubernetes.io/hostname", "operator": "In",
                                       "values": ["n1"] }] }] } })
        });
        let node = |name: &str| -> Node {
            serde_json::from_value(json!({ "metadata": { "name": name,
                "labels": { "kubernetes.io/hostname": name } } }))
            .expect("a test node decodes")
        };
        assert!(is_pinned(&pinned));
        assert!(!is_pinned(&volume(|_| {})));
        assert!(check_node(&claim(), &pinned, &node("n1")).is_ok());
        let elsewhere = check_node(&claim(), &pinned, &node("n2"));
        assert!(
            matches!(&elsewhere, Err(ClaimError::NodeAffinity { node, .. }) if node == "n2"),
            "{elsewhere:?}"
        );
    }

    #[test]
    fn the_directory_is_made_world_writable_whatever_the_umask_and_left_alone_after() {
        let scratch = tempfile::tempdir().expect("a temporary directory");
        let path = scratch.path().join("storage").join("pvc-1");
        make_directory(&path).expect("made, with its root");
        let mode = std::fs::metadata(&path).expect("made").permissions().mode();
        assert_eq!(mode & 0o777, 0o777);
        std::fs::write(path.join("data"), b"kept").expect("a file in it");
        make_directory(&path).expect("there already");
        assert_eq!(std::fs::read(path.join("data")).expect("kept"), b"kept");
        let file = scratch.path().join("storage").join("pvc-2");
        std::fs::write(&file, b"").expect("a file");
        assert!(make_directory(&file).is_err(), "a file in its place");
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
