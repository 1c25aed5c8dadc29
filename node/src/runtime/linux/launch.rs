//! One attempt of one container: its bundle under `<pod dir>/containers/<id>/` (an overlayfs
//! rootfs over the image's layers, `config.json` from spec.rs), its log file, and the shim
//! that creates and starts it. `unmount_rootfs` undoes the overlay when the attempt ends.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Container;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::record::{ContainerRecord, PodRecord};
use super::shared::LinuxConfig;
use super::shim::{self, ShimArgs, ShimError};
use super::shim_attach::AttachModes;
use super::spec::{self, ImageDefaults, Placement, SpecError};
use super::volumes::{host_mounts, VolumeError};
use crate::image::store::{ImageError, ImageStore};

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("the image has no layers")]
    NoLayers,
    #[error("creating {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mounting the overlay rootfs: {0}")]
    Mount(nix::errno::Errno),
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("writing config.json: {0}")]
    WriteConfig(std::io::Error),
    #[error(transparent)]
    Shim(#[from] ShimError),
}

/// What one attempt runs: which pod, which container, which image, under which id.
pub struct Attempt<'a> {
    pub pod: &'a PodRecord,
    pub pod_dir: &'a Path,
    pub container: &'a Container,
    pub record: &'a ContainerRecord,
    pub manifest: &'a str,
    pub id: &'a str,
}

/// An attempt's bundle directory.
pub fn attempt_dir(pod_dir: &Path, id: &str) -> PathBuf {
    pod_dir.join("containers").join(id)
}

/// The file of a container's output for its `restart`-th run.
pub fn log_path(pod_dir: &Path, container: &str, restart: u32) -> PathBuf {
    pod_dir
        .join("logs")
        .join(container)
        .join(format!("{restart}.log"))
}

/// Rootfs, bundle and shim for one attempt: the container's pid.
pub fn launch(
    config: &LinuxConfig,
    images: &ImageStore,
    attempt: &Attempt,
) -> Result<i32, LaunchError> {
    let Attempt {
        pod,
        pod_dir,
        container,
        record,
        manifest,
        id,
    } = *attempt;
    let image = images.config(manifest)?;
    let layers = images.layers(manifest)?;
    let image_config = image.config().clone().unwrap_or_default();
    let defaults = ImageDefaults {
        entrypoint: image_config.entrypoint().clone().unwrap_or_default(),
        cmd: image_config.cmd().clone().unwrap_or_default(),
        env: image_config.env().clone().unwrap_or_default(),
        working_dir: image_config.working_dir().clone().unwrap_or_default(),
    };
    let bundle = attempt_dir(pod_dir, id);
    let rootfs = bundle.join("rootfs");
    for dir in ["upper", "work", "rootfs"] {
        create_dir(&bundle.join(dir))?;
    }
    mount_rootfs(&layers, &bundle)?;
    let mounts = host_mounts(pod_dir, &pod.spec, container)?;
    let fields = [
        ("metadata.name", pod.name.clone()),
        ("metadata.namespace", pod.namespace.clone()),
        ("metadata.uid", pod.uid.clone()),
        ("status.podIP", pod.ip.clone()),
        ("spec.nodeName", String::new()),
    ];
    let cgroups_path = format!("/rudder/{id}");
    let netns = config.network.netns_path(&pod.uid);
    let placement = Placement {
        hostname: &pod.name,
        rootfs: &rootfs,
        netns: &netns,
        cgroups_path: &cgroups_path,
        mounts,
        fields: &fields,
    };
    let config_json = spec::config(container, &defaults, &placement)?;
    let bytes = serde_json::to_vec_pretty(&config_json).expect("a JSON value always encodes");
    std::fs::write(bundle.join("config.json"), bytes).map_err(LaunchError::WriteConfig)?;
    let log = log_path(
        pod_dir,
        &record.name,
        record.restart_count + u32::from(record.attempts > 0),
    );
    if let Some(parent) = log.parent() {
        create_dir(parent)?;
    }
    let args = ShimArgs {
        state_root: config.root.join("containers"),
        id: id.to_string(),
        bundle: bundle.clone(),
        log,
        exit_file: bundle.join("exit.json"),
        cgroups_path,
        modes: AttachModes {
            stdin: container.stdin == Some(true),
            stdin_once: container.stdin_once == Some(true),
            tty: container.tty == Some(true),
        },
    };
    Ok(shim::spawn(&config.shim_binary, &args)?)
}

fn create_dir(path: &Path) -> Result<(), LaunchError> {
    std::fs::create_dir_all(path).map_err(|source| LaunchError::CreateDir {
        path: path.to_path_buf(),
        source,
    })
}

/// overlayfs: the image's layers (read-only, shared) under this attempt's upper directory.
fn mount_rootfs(layers: &[PathBuf], bundle: &Path) -> Result<(), LaunchError> {
    if layers.is_empty() {
        return Err(LaunchError::NoLayers);
    }
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|l| l.display().to_string())
        .collect();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        bundle.join("upper").display(),
        bundle.join("work").display()
    );
    mount(
        Some("overlay"),
        &bundle.join("rootfs"),
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(LaunchError::Mount)
}

/// Undoes an attempt's overlay (nothing to do when it is not mounted).
pub fn unmount_rootfs(bundle: &Path) {
    let rootfs = bundle.join("rootfs");
    match umount2(&rootfs, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => tracing::warn!(rootfs = %rootfs.display(), error = %e, "unmounting"),
    }
}
