//! `rudder node reset`: removes everything a real node made on this machine, as `kubeadm
//! reset` does: its pods' processes (containers and shims), mounts, cgroups, veths and
//! network namespaces, its bridge, its proxy's nftables table, and its state directory.
//! What nodes share (the service device and its routes, the cluster range's unreachable
//! route) goes with the last node.
//!
//! The node must be stopped first: a running kubelet would start its pods again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::machine_lock::{lock, MACHINE_LOCK};
use super::machine_network::{
    any_link_named_like, delete_links, delete_unreachable_routes_covering, link_range,
};
use super::network::{interface_name, SERVICE_DEVICE};
use super::record::PodRecord;

/// How long killed processes get to be gone before their cgroups are removed.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// What a reset removed, a line each (for the operator).
pub type Removed = Vec<String>;

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error(transparent)]
    Network(#[from] super::network::NetworkError),
    #[error("removing {}: {source}", path.display())]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("taking {path} (held while a node sets its bridge up): {source}")]
    Lock {
        path: &'static str,
        source: std::io::Error,
    },
    #[error("removing the proxy's table {table}: {source}")]
    Table {
        table: String,
        source: crate::proxy::nft::NftError,
    },
}

/// Resets node `name` whose state is under `root`.
pub fn reset(name: &str, root: &Path) -> Result<Removed, ResetError> {
    let mut removed = Vec::new();
    let records = pod_records(root);

    // Processes first: containers by the PIDs their records hold, then every shim that
    // serves a container of this root.
    let mut pids: Vec<i32> = records
        .iter()
        .flat_map(|r| r.containers.iter().filter_map(|c| c.pid))
        .collect();
    pids.extend(shims_of(root));
    for pid in &pids {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    let deadline = Instant::now() + EXIT_WAIT;
    while pids
        .iter()
        .any(|pid| Path::new(&format!("/proc/{pid}")).exists())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !pids.is_empty() {
        removed.push(format!("{} processes (containers and shims)", pids.len()));
    }

    // Mounts under the root, deepest first: rootfs overlays, volumes, network namespaces.
    let mounts = mounts_under(root);
    for point in &mounts {
        let _ = nix::mount::umount2(point.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    if !mounts.is_empty() {
        removed.push(format!("{} mounts", mounts.len()));
    }

    // Cgroups of every container attempt the records name.
    let ids: Vec<&str> = records
        .iter()
        .flat_map(|r| r.containers.iter().map(|c| c.id.as_str()))
        .filter(|id| !id.is_empty())
        .collect();
    let mut cgroups = 0;
    for hierarchy in cgroup_hierarchies() {
        for id in &ids {
            if std::fs::remove_dir(hierarchy.join("rudder").join(id)).is_ok() {
                cgroups += 1;
            }
        }
    }
    if cgroups > 0 {
        removed.push(format!("{cgroups} cgroups"));
    }

    // The pods' veths (their namespaces went with the mounts and processes), the bridge
    // (its range noted first: the cluster's unreachable route covers it).
    let bridge = interface_name("rb", name);
    // From here to the end of the shared part, no node on this machine sets its bridge up.
    let shared = lock().map_err(|source| ResetError::Lock {
        path: MACHINE_LOCK,
        source,
    })?;
    let pod_range = link_range(&bridge)?;
    let mut links: Vec<String> = records
        .iter()
        .map(|r| interface_name("rv", &r.uid))
        .collect();
    links.push(bridge.clone());
    for link in delete_links(&links)? {
        removed.push(format!("link {link}"));
    }

    let table = format!("rudder-{bridge}");
    crate::proxy::nft::apply(&crate::proxy::script::remove(&table)).map_err(|source| {
        ResetError::Table {
            table: table.clone(),
            source,
        }
    })?;
    removed.push(format!("nftables table ip {table}"));

    // The last node takes what nodes share: the service device (with its routes) and the
    // cluster range's unreachable route.
    if !any_link_named_like("rb")? {
        for link in delete_links(&[SERVICE_DEVICE.to_string()])? {
            removed.push(format!("link {link} (no other node is left)"));
        }
        if let Some(range) = pod_range {
            for route in delete_unreachable_routes_covering(range)? {
                removed.push(format!("{route} (no other node is left)"));
            }
        }
    }
    drop(shared);

    if root.exists() {
        std::fs::remove_dir_all(root).map_err(|source| ResetError::Remove {
            path: root.to_path_buf(),
            source,
        })?;
        removed.push(format!("state directory {}", root.display()));
    }
    Ok(removed)
}

fn pod_records(root: &Path) -> Vec<PodRecord> {
    std::fs::read_dir(root.join("pods"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| std::fs::read(entry.path().join("pod.json")).ok())
        .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
        .collect()
}

/// `rudder shim` processes serving containers under `root`.
fn shims_of(root: &Path) -> Vec<i32> {
    let root = root.display().to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_string_lossy().parse::<i32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline);
            (cmdline.contains("shim") && cmdline.contains(&root)).then_some(pid)
        })
        .collect()
}

fn mounts_under(root: &Path) -> Vec<String> {
    let root = root.display().to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<String> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| point.starts_with(&root))
        .map(str::to_owned)
        .collect();
    mounts.sort_by_key(|point| std::cmp::Reverse(point.len()));
    mounts.dedup();
    mounts
}

/// Every cgroup hierarchy (v1: one per controller) and the v2 root.
fn cgroup_hierarchies() -> Vec<PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .chain([PathBuf::from("/sys/fs/cgroup")])
        .collect()
}
