//! The worker nodes of a chaos run with the pods workload: hollow `rudder node` processes
//! (simulated kubelets, as Kubemark's: pods "run" without containers), a few nodes each, so
//! that a node-loss fault kills one process — its nodes and their pods with it — while the
//! others stay. Killed by PID, restarted on the same state directory; dropping a group
//! kills its process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::cluster_error::ClusterError;

/// What each hollow node offers: few pods, so the scheduler meets full nodes in a short run
/// (the allocatable check is tested, not idle); CPU and memory to spare beyond that.
pub const PODS_PER_NODE: u32 = 4;
const CPUS_PER_NODE: u32 = 2;
const MEMORY_MIB_PER_NODE: u64 = 4096;
/// A node's heartbeat (its Lease renewed every second, valid for 5): short, so that a
/// lost node is noticed within a run (the masters get a node-monitor grace period to
/// match, [`NODE_MONITOR_GRACE`]).
const LEASE_RENEW_MS: u32 = 1_000;
const LEASE_SECONDS: u32 = 5;
/// The masters' `--node-monitor-grace-period` in a run with nodes.
pub const NODE_MONITOR_GRACE: &str = "6s";

/// One `rudder node --hollow` process and its nodes, `NAME-0` ... `NAME-(count-1)`.
pub struct NodeGroup {
    pub name: String,
    pub count: u32,
    binary: PathBuf,
    /// Its state, and beside it `<root>.log`, its stderr (appended across restarts).
    root: PathBuf,
    masters: Vec<String>,
    child: Option<Child>,
}

impl NodeGroup {
    /// Starts group `name` of `count` hollow nodes against `masters` (client addresses),
    /// its state under `dir`.
    pub fn start(
        binary: &Path,
        dir: &Path,
        name: &str,
        count: u32,
        masters: &[String],
    ) -> Result<Self, ClusterError> {
        let mut group = Self {
            name: name.into(),
            count,
            binary: binary.into(),
            root: dir.join(format!("node-{name}")),
            masters: masters.to_vec(),
            child: None,
        };
        group.spawn()?;
        Ok(group)
    }

    fn spawn(&mut self) -> Result<(), ClusterError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(ClusterError::Scratch)?;
        let child = Command::new(&self.binary)
            .args(["node", "--hollow", "--name", &self.name])
            .args(["--count", &self.count.to_string()])
            .args(["--max-pods", &PODS_PER_NODE.to_string()])
            .args(["--hollow-cpus", &CPUS_PER_NODE.to_string()])
            .args(["--hollow-memory-mib", &MEMORY_MIB_PER_NODE.to_string()])
            .args(["--lease-renew-ms", &LEASE_RENEW_MS.to_string()])
            .args(["--lease-duration-seconds", &LEASE_SECONDS.to_string()])
            .args(["--status-update-ms", "2000", "--port", "0"])
            .arg("--root")
            .arg(&self.root)
            .args(["--server", &self.masters.join(",")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|source| ClusterError::Spawn {
                program: self.binary.clone(),
                source,
            })?;
        self.child = Some(child);
        Ok(())
    }

    /// Its nodes' names.
    pub fn node_names(&self) -> Vec<String> {
        (0..self.count)
            .map(|i| format!("{}-{i}", self.name))
            .collect()
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.with_extension("log")
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// How the process ended if it ended by itself; reaps it.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        Some(status)
    }

    /// SIGKILL, then reap: the nodes stop renewing their leases and reporting their pods.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same state: the nodes come back under their names.
    pub fn restart(&mut self) -> Result<(), ClusterError> {
        self.kill();
        self.spawn()
    }
}

impl Drop for NodeGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `groups` hollow node processes of `per_group` nodes each (`n1-0`, `n1-1`, ...,
/// `n2-0`, ...) against `masters` (client addresses), their state under `dir`.
pub fn start_groups(
    binary: &Path,
    dir: &Path,
    masters: &[String],
    groups: usize,
    per_group: u32,
) -> Result<Vec<NodeGroup>, ClusterError> {
    (1..=groups)
        .map(|g| NodeGroup::start(binary, dir, &format!("n{g}"), per_group, masters))
        .collect()
}
