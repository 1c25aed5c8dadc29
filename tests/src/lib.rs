//! `rudder-tests`: end-to-end tests against the real `rudder` binary. The process driver
//! lives in `rudder-chaos` (the chaos runner and the benchmarks use it too); this crate adds
//! what only tests need.

pub use rudder_chaos::client::{kv, maintenance, watch};
pub use rudder_chaos::cluster::{rudder_binary_beside_tests, ProcessCluster};

/// A real node's state for one test: its own root and image store in a temporary directory,
/// and its bridge removed when the test ends (pass or fail). Bridges are named after their
/// node, so tests running at once use different node names.
pub struct NodeScratch {
    pub dir: tempfile::TempDir,
    bridge: String,
}

impl NodeScratch {
    pub fn new(node_name: &str) -> Self {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(node_name.as_bytes());
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        Self {
            dir: tempfile::tempdir().expect("a scratch directory"),
            bridge: format!("rb{hex}"),
        }
    }

    /// `--root`, `--images` and `--port 0` for `rudder node`.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--root".into(),
            self.dir.path().join("state").display().to_string(),
            "--images".into(),
            self.dir.path().join("images").display().to_string(),
            "--port".into(),
            "0".into(),
        ]
    }
}

impl Drop for NodeScratch {
    /// Whatever a failed test left running under this node: its containers and shims are
    /// killed by the PIDs they recorded, then mounts, cgroups and the bridge go.
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let root = self.dir.path().display().to_string();
        let mut container_ids = Vec::new();
        let pods = self.dir.path().join("state/pods");
        for entry in std::fs::read_dir(pods).into_iter().flatten().flatten() {
            let Ok(bytes) = std::fs::read(entry.path().join("pod.json")) else {
                continue;
            };
            let record: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            for container in record["containers"].as_array().into_iter().flatten() {
                if let Some(pid) = container["pid"]
                    .as_i64()
                    .and_then(|p| i32::try_from(p).ok())
                {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                if let Some(id) = container["id"].as_str().filter(|id| !id.is_empty()) {
                    container_ids.push(id.to_string());
                }
            }
        }
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            if cmdline.contains("shim") && cmdline.contains(&root) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> = mountinfo
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .filter(|point| point.starts_with(&root))
            .collect();
        mounts.sort_by_key(|point| std::cmp::Reverse(point.len()));
        for point in mounts {
            let _ = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH);
        }
        let hierarchies = std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|h| h.path())
            // cgroup v2: one hierarchy at the root.
            .chain([std::path::PathBuf::from("/sys/fs/cgroup")]);
        for hierarchy in hierarchies {
            for id in &container_ids {
                let _ = std::fs::remove_dir(hierarchy.join("rudder").join(id));
            }
        }
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}
