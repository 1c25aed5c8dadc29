//! A pod's volumes on the host: configMap, secret and projected files written before anything runs, and
//! each container's volume mounts (plus the pod's `/etc` files) as host paths for its spec.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, PodSpec};

use super::super::PodPlan;
use super::spec::HostMount;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {volume}: bad file path {path:?}")]
    BadFilePath { volume: String, path: String },
    #[error("volumeMount {mount}: no volume of that name")]
    NoSuchVolume { mount: String },
    #[error("hostPath {path} does not exist")]
    NoHostPath { path: String },
    #[error(
        "volume {volume}: only emptyDir, hostPath, configMap, secret, projected and \
         persistentVolumeClaim (of hostPath or local volumes, which the kubelet resolves \
         first) volumes run on this node"
    )]
    Unsupported { volume: String },
    #[error("volumeMount {mount}: bad subPath {sub_path:?}")]
    BadSubPath { mount: String, sub_path: String },
    #[error("volumeMount {mount} subPath {sub_path:?}: a symlink is on its path")]
    SymlinkInSubPath { mount: String, sub_path: String },
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError {
    let path = path.to_path_buf();
    move |source| VolumeError::Io {
        action,
        path,
        source,
    }
}

/// configMap, secret and projected volumes as files under `<pod dir>/volumes/<volume>/`.
pub fn write_volume_files(dir: &Path, plan: &PodPlan) -> Result<(), VolumeError> {
    for (volume, files) in &plan.volume_files {
        let root = dir.join("volumes").join(volume);
        for (path, bytes) in files {
            if path.split('/').any(|part| part == ".." || part.is_empty()) {
                return Err(VolumeError::BadFilePath {
                    volume: volume.clone(),
                    path: path.clone(),
                });
            }
            let file = root.join(path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
            }
            std::fs::write(&file, bytes).map_err(io("writing", &file))?;
        }
    }
    Ok(())
}

/// The container's volume mounts as host paths, after the pod's `/etc/hosts` and
/// `/etc/resolv.conf` (in `dir`, the pod's directory). Creates what is missing: emptyDir
/// directories, `DirectoryOrCreate` host paths, subPath directories.
pub fn host_mounts(
    dir: &Path,
    pod: &PodSpec,
    container: &Container,
) -> Result<Vec<HostMount>, VolumeError> {
    let mut mounts = vec![
        HostMount {
            host_path: dir.join("hosts"),
            container_path: "/etc/hosts".into(),
            read_only: false,
        },
        HostMount {
            host_path: dir.join("resolv.conf"),
            container_path: "/etc/resolv.conf".into(),
            read_only: false,
        },
    ];
    for mount in container.volume_mounts.iter().flatten() {
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .ok_or_else(|| VolumeError::NoSuchVolume {
                mount: mount.name.clone(),
            })?;
        let mut host_path = if let Some(host) = &volume.host_path {
            let path = PathBuf::from(&host.path);
            if host.type_.as_deref() == Some("DirectoryOrCreate") {
                std::fs::create_dir_all(&path).map_err(io("creating hostPath", &path))?;
            } else if !path.exists() {
                return Err(VolumeError::NoHostPath {
                    path: host.path.clone(),
                });
            }
            path
        } else if volume.empty_dir.is_some()
            || volume.config_map.is_some()
            || volume.secret.is_some()
            || volume.projected.is_some()
        {
            let path = dir.join("volumes").join(&volume.name);
            std::fs::create_dir_all(&path).map_err(io("creating", &path))?;
            path
        } else {
            return Err(VolumeError::Unsupported {
                volume: volume.name.clone(),
            });
        };
        if let Some(sub) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            let bad = || VolumeError::BadSubPath {
                mount: mount.name.clone(),
                sub_path: sub.to_string(),
            };
            if sub.split('/').any(|p| p == "..") || sub.starts_with('/') {
                return Err(bad());
            }
            host_path = beneath(&host_path, sub)?.ok_or_else(|| VolumeError::SymlinkInSubPath {
                mount: mount.name.clone(),
                sub_path: sub.to_string(),
            })?;
        }
        let read_only = mount.read_only.unwrap_or(false)
            || volume.config_map.is_some()
            || volume.secret.is_some();
        mounts.push(HostMount {
            host_path,
            container_path: mount.mount_path.clone(),
            read_only,
        });
    }
    Ok(mounts)
}

/// `root/sub` for a subPath: created as directories where missing, never through a
/// symlink (a container could otherwise point one at the host's `/`): `None` if one is on
/// the path.
fn beneath(root: &Path, sub: &str) -> Result<Option<PathBuf>, VolumeError> {
    let mut path = root.to_path_buf();
    for part in sub.split('/').filter(|p| !p.is_empty() && *p != ".") {
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => return Ok(None),
            Ok(_) => {}
            Err(_) => std::fs::create_dir(&path).map_err(io("creating subPath", &path))?,
        }
    }
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> (PodSpec, Container) {
        let spec: PodSpec = serde_json::from_value(spec).unwrap();
        let container = spec.containers[0].clone();
        (spec, container)
    }

    #[test]
    fn empty_dirs_and_sub_paths_are_made_under_the_pod_and_config_maps_are_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let (spec, container) = pod(serde_json::json!({
            "volumes": [{ "name": "cache", "emptyDir": {} }, { "name": "conf", "configMap": { "name": "c" } }],
            "containers": [{ "name": "app", "volumeMounts": [
                { "name": "cache", "mountPath": "/cache", "subPath": "a/b" },
                { "name": "conf", "mountPath": "/conf" }
            ] }]
        }));
        let mounts = host_mounts(dir.path(), &spec, &container).unwrap();
        let paths: Vec<_> = mounts
            .iter()
            .map(|m| (m.container_path.as_str(), m.read_only))
            .collect();
        assert_eq!(
            paths,
            [
                ("/etc/hosts", false),
                ("/etc/resolv.conf", false),
                ("/cache", false),
                ("/conf", true)
            ]
        );
        assert_eq!(mounts[2].host_path, dir.path().join("volumes/cache/a/b"));
        assert!(mounts[2].host_path.is_dir());
    }

    #[test]
    fn a_sub_path_through_a_symlink_or_upwards_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("volumes/cache")).unwrap();
        std::os::unix::fs::symlink("/", dir.path().join("volumes/cache/up")).unwrap();
        for (sub, expected) in [
            ("up/etc", "a symlink is on its path"),
            ("../x", "bad subPath"),
            ("/etc", "bad subPath"),
        ] {
            let (spec, container) = pod(serde_json::json!({
                "volumes": [{ "name": "cache", "emptyDir": {} }],
                "containers": [{ "name": "app", "volumeMounts": [{ "name": "cache", "mountPath": "/c", "subPath": sub }] }]
            }));
            let error = host_mounts(dir.path(), &spec, &container)
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{sub}: {error}");
        }
    }

    #[test]
    fn volume_files_may_not_climb_out_of_their_volume() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = PodPlan {
            uid: "u".into(),
            namespace: "default".into(),
            name: "p".into(),
            spec: PodSpec::default(),
            volume_files: Default::default(),
        };
        plan.volume_files.insert(
            "conf".into(),
            [("../../etc/passwd".to_string(), b"x".to_vec())].into(),
        );
        let error = write_volume_files(dir.path(), &plan).unwrap_err();
        assert!(matches!(error, VolumeError::BadFilePath { .. }), "{error}");
        plan.volume_files.insert(
            "conf".into(),
            [("sub/app.conf".to_string(), b"x".to_vec())].into(),
        );
        write_volume_files(dir.path(), &plan).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("volumes/conf/sub/app.conf")).unwrap(),
            b"x"
        );
    }
}
