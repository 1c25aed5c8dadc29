//! The cluster under test: real member processes, Rudder's or etcd's, on loopback or (for
//! partition faults) each in a network namespace of its own ([`crate::network`]).
//!
//! Rudder members start on port 0 (addresses read from each member's ready line): the first
//! bootstraps, the others `--join` it. etcd members need their peer URLs up front, so they
//! get free loopback ports picked just before they start. In namespaces every member has an
//! address of its own and the usual ports (2379, 2380). Members are killed by PID (SIGKILL
//! for crash tests) and restarted on the same data directory, addresses and namespace;
//! dropping the cluster kills every process it started, also when a test fails, and then
//! removes its network.
//!
//! One file though long: a member and the cluster share how a member is started (the
//! first start, every restart, Rudder's and etcd's), and its errors are already apart
//! ([`crate::cluster_error`]).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rudder_proto::etcdserverpb::StatusRequest;
use tempfile::TempDir;

use crate::client::maintenance;
use crate::delay::LinkDelay;
use crate::disk;
use crate::network::{addresses, free_port, MemberNetwork};
use crate::nodes::NodeGroup;

pub use crate::cluster_error::ClusterError;

/// Which store the processes run.
#[derive(Debug, Clone)]
pub enum Flavor {
    Rudder { binary: PathBuf },
    Etcd { binary: PathBuf },
}

/// One member process.
pub struct MemberProcess {
    pub name: String,
    pub data_dir: PathBuf,
    pub client_addr: String,
    pub peer_addr: String,
    pub id: u64,
    flavor: Flavor,
    /// Flags given again on every restart (Rudder: its tuning flags; etcd: all of them).
    restart_args: Vec<String>,
    /// The network namespace it runs in (`None`: the machine's, on loopback).
    netns: Option<PathBuf>,
    child: Option<Child>,
}

impl MemberProcess {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The `rudder` program it runs (`None`: an etcd member).
    pub fn rudder_binary(&self) -> Option<&Path> {
        match &self.flavor {
            Flavor::Rudder { binary } => Some(binary),
            Flavor::Etcd { .. } => None,
        }
    }

    /// How the process ended if it ended by itself (a crash, an exit): `None` while it runs
    /// or after [`MemberProcess::kill`]. Reaps it.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        Some(status)
    }

    /// The member's log (its stderr) so far.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.with_extension("log")
    }

    /// How long its log is now, for [`MemberProcess::log_since`].
    pub fn log_len(&self) -> u64 {
        std::fs::metadata(self.log_path()).map_or(0, |m| m.len())
    }

    /// What it logged after the first `offset` bytes (empty if it cannot be read). Only
    /// that part is read: callers poll it.
    pub fn log_since(&self, offset: u64) -> String {
        use std::io::{Read, Seek, SeekFrom};
        let mut tail = Vec::new();
        if let Ok(mut log) = std::fs::File::open(self.log_path()) {
            if log.seek(SeekFrom::Start(offset)).is_ok() {
                let _ = log.read_to_end(&mut tail);
            }
        }
        String::from_utf8_lossy(&tail).into_owned()
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILL without waiting for the end ([`MemberProcess::kill`] reaps it).
    pub fn sigkill(&self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
    }

    /// SIGTERM: the member stops gracefully (a leader hands over first); see
    /// [`MemberProcess::exited`] for when it is gone.
    pub fn terminate(&self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }

    /// SIGSTOP: the process stays, and answers nothing, until [`MemberProcess::resume`]
    /// (a long GC pause or a stalled VM, as Jepsen's "pause" fault).
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Writes `failpoints` to the member's failpoints file and tells it to apply them
    /// (SIGUSR1; Rudder members only, which [`ProcessCluster`] starts with that file).
    pub fn set_failpoints(&self, failpoints: &str) -> Result<(), ClusterError> {
        std::fs::write(disk::failpoints_file(&self.data_dir), failpoints)
            .map_err(ClusterError::Failpoints)?;
        self.signal(nix::sys::signal::Signal::SIGUSR1);
        Ok(())
    }

    /// SIGCONT after [`MemberProcess::pause`].
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        if let Some(pid) = self.pid() {
            // The child is ours and not reaped yet, so the pid cannot name another process.
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
        }
    }

    /// Restarts on the same data directory and addresses.
    pub async fn restart(&mut self) -> Result<(), ClusterError> {
        self.kill();
        let again = match &self.flavor {
            Flavor::Rudder { binary } => start_rudder(
                binary,
                &self.name,
                &self.data_dir,
                (&self.client_addr, &self.peer_addr),
                &self.restart_args,
                self.netns.as_deref(),
            )?,
            Flavor::Etcd { binary } => {
                start_etcd(
                    binary,
                    &self.name,
                    &self.data_dir,
                    (&self.client_addr, &self.peer_addr),
                    &self.restart_args,
                    self.netns.as_deref(),
                )
                .await?
            }
        };
        let mut again = again;
        self.child = again.child.take();
        self.id = again.id;
        // `again` is dropped with no child left to kill.
        Ok(())
    }
}

impl Drop for MemberProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How long a starting or restarted Rudder member may take to say it is ready.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// Starts a member with its stderr appended to `<data_dir>.log` (a restart keeps what the
/// member said before it, for a post-mortem).
/// Starts `command` with its stderr appended to the member's log, in `netns` if given.
fn spawn_logged(
    mut command: Command,
    binary: &Path,
    data_dir: &Path,
    netns: Option<&Path>,
) -> Result<Child, ClusterError> {
    if let Some(netns) = netns {
        let (binary, data_dir) = (binary.to_owned(), data_dir.to_owned());
        return rudder_node::runtime::linux::network::in_namespace(netns, move || {
            Ok(spawn_logged(command, &binary, &data_dir, None))
        })
        .map_err(|error| ClusterError::Partition(error.into()))?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.with_extension("log"))
        .map_err(ClusterError::Scratch)?;
    command
        .stderr(log)
        .spawn()
        .map_err(|source| ClusterError::Spawn {
            program: binary.into(),
            source,
        })
}

/// Runs `binary ARGS PATH` to its end: a `rudder` command that makes what a cluster starts
/// from; `member` is the member it is for, named if it fails.
fn run_to_end(binary: &Path, member: &str, args: &[&str], path: &Path) -> Result<(), ClusterError> {
    let ran = Command::new(binary)
        .args(args)
        .arg(path)
        .output()
        .map_err(|source| ClusterError::Spawn {
            program: binary.to_owned(),
            source,
        })?;
    if ran.status.success() {
        return Ok(());
    }
    Err(ClusterError::NotReady {
        name: member.into(),
        detail: format!(
            "rudder {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&ran.stderr)
        ),
    })
}

/// The members' log filter: the caller's `RUST_LOG` or the usual, and the fenced writes.
fn member_log_filter() -> String {
    let usual = std::env::var("RUST_LOG")
        .unwrap_or_else(|_| "info,openraft=warn,h2=warn,tower=warn,hickory_server=warn".into());
    format!("{usual},rudder::fenced=debug")
}

/// Whether the `rudder` at `binary` is a chaos build (it says so in `--version`); asked
/// once per binary.
fn has_failpoints(binary: &Path) -> bool {
    static ASKED: std::sync::Mutex<Vec<(PathBuf, bool)>> = std::sync::Mutex::new(Vec::new());
    let mut asked = ASKED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, has)) = asked.iter().find(|(path, _)| path == binary) {
        return *has;
    }
    let has = Command::new(binary)
        .arg("--version")
        .output()
        .is_ok_and(|said| {
            String::from_utf8_lossy(&said.stdout).contains(rudder_proto::failpoints::IN_VERSION)
        });
    asked.push((binary.to_path_buf(), has));
    has
}

fn start_rudder(
    binary: &Path,
    name: &str,
    data_dir: &Path,
    (client, peer): (&str, &str),
    cluster_flags: &[String],
    netns: Option<&Path>,
) -> Result<MemberProcess, ClusterError> {
    let mut command = Command::new(binary);
    command
        .args(["server", "--name", name, "--data-dir"])
        .arg(data_dir);
    // Disk faults' failpoints, where the binary has them (a build without refuses the flag).
    if has_failpoints(binary) {
        command
            .arg("--failpoints-file")
            .arg(disk::failpoints_file(data_dir));
    }
    command
        // The fenced writes it makes, for the Kubernetes checks (`check::kube`).
        .env("RUST_LOG", member_log_filter())
        .args(["--listen-client", client, "--listen-peer", peer])
        .args(cluster_flags)
        .stdout(Stdio::piped());
    let mut child = spawn_logged(command, binary, data_dir, netns)?;
    let stdout = child.stdout.take().expect("stdout is piped");
    // Read on a thread of its own, so a member that never gets ready (its WAL's recovery
    // stuck, say) fails the start in time instead of hanging it; killing it ends the read.
    let (sender, first_line) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let waited = first_line.recv_timeout(READY_WITHIN);
    let line = waited.clone().unwrap_or_default();
    // "rudder server NAME ready: client ADDR peer ADDR id HEX"
    let words: Vec<&str> = line.split_whitespace().collect();
    let id = (words.len() == 10 && words[3] == "ready:")
        .then(|| u64::from_str_radix(words[9], 16).ok())
        .flatten();
    let Some(id) = id else {
        // How it ended says more than an empty log (a signal, say).
        let ended = match child.try_wait() {
            Ok(Some(status)) => format!("it ended: {status}"),
            _ if waited.is_err() => format!(
                "it was not ready within {} s: killed",
                READY_WITHIN.as_secs()
            ),
            _ => "it was still running: killed".into(),
        };
        let _ = child.kill();
        let _ = child.wait();
        let log = std::fs::read_to_string(data_dir.with_extension("log")).unwrap_or_default();
        // The log holds every start of this member: its end is this one's.
        let tail_from = log.len().saturating_sub(8 * 1024);
        let tail_from = (tail_from..log.len())
            .find(|i| log.is_char_boundary(*i))
            .unwrap_or(log.len());
        return Err(ClusterError::NotReady {
            name: name.into(),
            detail: format!(
                "{ended}; its first line {line:?}; the end of its log:\n{}",
                &log[tail_from..]
            ),
        });
    };
    Ok(MemberProcess {
        name: name.into(),
        data_dir: data_dir.into(),
        client_addr: words[5].into(),
        peer_addr: words[7].into(),
        id,
        flavor: Flavor::Rudder {
            binary: binary.into(),
        },
        restart_args: Vec::new(),
        netns: netns.map(Path::to_owned),
        child: Some(child),
    })
}

async fn start_etcd(
    binary: &Path,
    name: &str,
    data_dir: &Path,
    (client, peer): (&str, &str),
    cluster_flags: &[String],
    netns: Option<&Path>,
) -> Result<MemberProcess, ClusterError> {
    let mut command = Command::new(binary);
    command
        .args(["--name", name, "--data-dir"])
        .arg(data_dir)
        .arg(format!("--listen-client-urls=http://{client}"))
        .arg(format!("--advertise-client-urls=http://{client}"))
        .arg(format!("--listen-peer-urls=http://{peer}"))
        .arg(format!("--initial-advertise-peer-urls=http://{peer}"))
        .args(cluster_flags)
        .stdout(Stdio::null());
    let child = spawn_logged(command, binary, data_dir, netns)?;
    let mut member = MemberProcess {
        name: name.into(),
        data_dir: data_dir.into(),
        client_addr: client.into(),
        peer_addr: peer.into(),
        id: 0,
        flavor: Flavor::Etcd {
            binary: binary.into(),
        },
        restart_args: cluster_flags.to_vec(),
        netns: netns.map(Path::to_owned),
        child: Some(child),
    };
    // etcd answers Status once it serves; until then, poll.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut client) = maintenance(client).await {
            if let Ok(status) = client.status(StatusRequest {}).await {
                member.id = status.into_inner().header.map(|h| h.member_id).unwrap_or(0);
                return Ok(member);
            }
        }
        if tokio::time::Instant::now() > deadline {
            member.kill();
            return Err(ClusterError::NotReady {
                name: name.into(),
                detail: "no Status answer in 30 s".into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub struct ProcessCluster {
    pub dir: TempDir,
    pub members: Vec<MemberProcess>,
    /// Worker nodes (hollow), when the run has pods ([`crate::nodes::start_groups`]),
    /// killed with the members.
    pub nodes: Vec<NodeGroup>,
    /// The members' namespaces and bridge, when they have their own network.
    network: Option<MemberNetwork>,
}

impl Drop for ProcessCluster {
    /// With `RUDDER_KEEP_CLUSTER_DIR` set, the data directories and member logs are kept
    /// (and their path printed) for a post-mortem; otherwise they go with the cluster.
    fn drop(&mut self) {
        for group in &mut self.nodes {
            group.kill();
        }
        for member in &mut self.members {
            member.kill();
        }
        // Nothing runs in the namespaces any more.
        self.network = None;
        if std::env::var_os("RUDDER_KEEP_CLUSTER_DIR").is_some() {
            // Swap in an empty placeholder (never panic in drop: this may run while unwinding).
            if let Ok(placeholder) = TempDir::new() {
                let dir = std::mem::replace(&mut self.dir, placeholder);
                eprintln!("kept the cluster's data and logs in {:?}", dir.keep());
            }
        }
    }
}

impl ProcessCluster {
    /// `size` Rudder members: the first bootstraps a one-member cluster, the others join it.
    pub fn start_rudder(
        binary: &Path,
        size: usize,
        extra_flags: &[String],
    ) -> Result<Self, ClusterError> {
        let dir = TempDir::new().map_err(ClusterError::Scratch)?;
        Self::start_rudder_in(dir, binary, size, extra_flags, None)
    }

    /// Like [`Self::start_rudder`], each member in a network namespace of its own, so that
    /// [`Self::partition`] can cut them apart.
    pub fn start_rudder_apart(
        binary: &Path,
        size: usize,
        extra_flags: &[String],
    ) -> Result<Self, ClusterError> {
        let dir = TempDir::new().map_err(ClusterError::Scratch)?;
        let network = MemberNetwork::create(size)?;
        Self::start_rudder_in(dir, binary, size, extra_flags, Some(network))
    }

    /// Like [`Self::start_rudder`], the first member restored from `snapshot` (an etcd
    /// snapshot file) with `rudder snapshot restore`: a new cluster on the snapshot's
    /// keyspace, which the members that join get from the first.
    pub fn start_rudder_restored(
        binary: &Path,
        size: usize,
        snapshot: &Path,
        extra_flags: &[String],
    ) -> Result<Self, ClusterError> {
        let dir = TempDir::new().map_err(ClusterError::Scratch)?;
        let snapshot = snapshot.display().to_string();
        let restore = ["snapshot", "restore", snapshot.as_str(), "--data-dir"];
        run_to_end(binary, "m1", &restore, &dir.path().join("m1"))?;
        Self::start_rudder_in(dir, binary, size, extra_flags, None)
    }

    fn start_rudder_in(
        dir: TempDir,
        binary: &Path,
        size: usize,
        extra_flags: &[String],
        network: Option<MemberNetwork>,
    ) -> Result<Self, ClusterError> {
        // Ports of their own, below the ephemeral range: a member restarted on them finds
        // them free (see `free_port`).
        let addresses = addresses(network.as_ref(), size, || {
            let port = || free_port().map_err(ClusterError::Scratch);
            Ok::<_, ClusterError>((port()?, port()?))
        })?;
        let netns = |n: usize| network.as_ref().map(|net| net.places()[n].netns.as_path());
        // The members' one keyring for Secrets, made as a user makes it.
        let keys = dir.path().join("encryption.keys");
        if !keys.exists() {
            run_to_end(binary, "m1", &["encryption-keys", "new"], &keys)?;
        }
        let mut extra_flags = extra_flags.to_vec();
        extra_flags.extend(["--encryption-keys".to_string(), keys.display().to_string()]);
        if network.is_some() {
            // Off loopback, on the run's own bridge (its range ends on this machine): the
            // workload's clients speak plaintext, as etcd's members here do.
            extra_flags.push("--insecure".to_string());
        }
        let extra_flags = extra_flags.as_slice();
        let mut bootstrap = vec![
            "--initial-cluster".to_string(),
            format!("m1={}", addresses[0].1),
        ];
        bootstrap.extend_from_slice(extra_flags);
        let first = start_rudder(
            binary,
            "m1",
            &dir.path().join("m1"),
            (&addresses[0].0, &addresses[0].1),
            &bootstrap,
            netns(0),
        )?;
        let mut join = vec!["--join".to_string(), first.peer_addr.clone()];
        join.extend_from_slice(extra_flags);
        let mut members = vec![first];
        for (n, (client, peer)) in addresses.iter().enumerate().skip(1) {
            let name = format!("m{}", n + 1);
            members.push(start_rudder(
                binary,
                &name,
                &dir.path().join(&name),
                (client, peer),
                &join,
                netns(n),
            )?);
        }
        for member in &mut members {
            member.restart_args = extra_flags.to_vec();
        }
        Ok(Self {
            dir,
            members,
            nodes: Vec::new(),
            network,
        })
    }

    /// `size` etcd members forming a new cluster, fsync on (etcd's default), each also
    /// given `extra_flags`.
    pub async fn start_etcd(
        binary: &Path,
        size: usize,
        extra_flags: &[String],
    ) -> Result<Self, ClusterError> {
        Self::start_etcd_in(binary, size, extra_flags, None).await
    }

    /// Like [`Self::start_etcd`], each member in a network namespace of its own, so that
    /// [`Self::partition`] can cut them apart.
    pub async fn start_etcd_apart(
        binary: &Path,
        size: usize,
        extra_flags: &[String],
    ) -> Result<Self, ClusterError> {
        let network = MemberNetwork::create(size)?;
        Self::start_etcd_in(binary, size, extra_flags, Some(network)).await
    }

    async fn start_etcd_in(
        binary: &Path,
        size: usize,
        extra_flags: &[String],
        network: Option<MemberNetwork>,
    ) -> Result<Self, ClusterError> {
        let dir = TempDir::new().map_err(ClusterError::Scratch)?;
        let ports = addresses(network.as_ref(), size, || {
            let port = || free_port().map_err(ClusterError::Scratch);
            Ok::<_, ClusterError>((port()?, port()?))
        })?;
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{}=http://{peer}", i + 1))
            .collect();
        let mut flags = vec![
            format!("--initial-cluster={}", initial.join(",")),
            "--initial-cluster-state=new".into(),
            "--initial-cluster-token=rudder-bench".into(),
        ];
        flags.extend_from_slice(extra_flags);
        let starting: Vec<_> = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                let name = format!("m{}", i + 1);
                let data_dir = dir.path().join(&name);
                let (binary, flags, client, peer) = (
                    binary.to_owned(),
                    flags.clone(),
                    client.clone(),
                    peer.clone(),
                );
                let netns = network.as_ref().map(|net| net.places()[i].netns.clone());
                tokio::spawn(async move {
                    let addresses = (client.as_str(), peer.as_str());
                    start_etcd(
                        &binary,
                        &name,
                        &data_dir,
                        addresses,
                        &flags,
                        netns.as_deref(),
                    )
                    .await
                })
            })
            .collect();
        // Every start is awaited, so that none is left running when another failed.
        let mut members = Vec::new();
        let mut failed = None;
        for task in starting {
            match task.await.expect("etcd start task") {
                Ok(member) => members.push(member),
                Err(error) => failed = failed.or(Some(error)),
            }
        }
        let cluster = Self {
            dir,
            members,
            nodes: Vec::new(),
            network,
        };
        match failed {
            // Dropping the cluster kills what started, then removes its network.
            Some(error) => Err(error),
            None => Ok(cluster),
        }
    }

    /// Cuts the links `cuts` names (`(from, to)` by member index: `to` hears nothing from
    /// `from`), replacing any partition there was. Only for members started apart.
    pub fn partition(&self, cuts: &BTreeSet<(usize, usize)>) -> Result<(), ClusterError> {
        let network = self
            .network
            .as_ref()
            .ok_or(ClusterError::NotPartitionable)?;
        Ok(network.cut(cuts)?)
    }

    /// Makes the links `links` names lossy (`(from, to)`: `to` drops about `percent` of what
    /// it receives from `from`), replacing any partition there was; [`Self::heal`] ends it.
    pub fn lose(&self, links: &BTreeSet<(usize, usize)>, percent: u8) -> Result<(), ClusterError> {
        let network = self
            .network
            .as_ref()
            .ok_or(ClusterError::NotPartitionable)?;
        Ok(network.lose(links, percent)?)
    }

    /// Holds every packet between member `member` and the others, both ways, for `delay`,
    /// until the [`LinkDelay`] returned ends. Only for members started apart.
    pub fn delay(&self, member: usize, delay: Duration) -> Result<LinkDelay, ClusterError> {
        let network = self
            .network
            .as_ref()
            .ok_or(ClusterError::NotPartitionable)?;
        Ok(network.delay(member, delay)?)
    }

    /// The members' own network, described (`None`: they run on loopback).
    pub fn network(&self) -> Option<String> {
        self.network.as_ref().map(MemberNetwork::describe)
    }

    /// Ends the partition; returns how many packets it dropped.
    pub fn heal(&self) -> Result<u64, ClusterError> {
        let network = self
            .network
            .as_ref()
            .ok_or(ClusterError::NotPartitionable)?;
        Ok(network.heal()?)
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.is_running())
            .map(|m| m.client_addr.clone())
            .collect()
    }

    /// The index of the member that leads, waiting up to 10 s: of what the running members
    /// say, the leader named at the highest Raft term, confirmed by that member itself (a
    /// leader just resumed from a pause still names itself, at its old term). Each member
    /// gets 500 ms to answer: a paused one never does.
    pub async fn leader(&self) -> Result<usize, ClusterError> {
        let limit = Duration::from_secs(10);
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let mut said = Vec::new();
            for (i, member) in self.members.iter().enumerate() {
                if !member.is_running() {
                    continue;
                }
                let status = tokio::time::timeout(Duration::from_millis(500), async {
                    let mut client = maintenance(&member.client_addr).await.ok()?;
                    client.status(StatusRequest {}).await.ok()
                })
                .await;
                if let Ok(Some(status)) = status {
                    let status = status.into_inner();
                    said.push((i, status.raft_term, status.leader));
                }
            }
            let newest = said.iter().map(|(_, term, _)| *term).max();
            let leader = said.iter().find_map(|(i, term, leader)| {
                // The leader itself, answering at the newest term.
                (Some(*term) == newest && self.members[*i].id == *leader).then_some(*i)
            });
            if let Some(leader) = leader {
                return Ok(leader);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ClusterError::NoLeader(limit));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The `rudder` binary built beside a test executable (`target/<profile>/rudder`), or
/// `$RUDDER_BIN`.
pub fn rudder_binary_beside_tests() -> PathBuf {
    if let Some(path) = std::env::var_os("RUDDER_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let binary = profile_dir.join("rudder");
    assert!(
        binary.exists(),
        "{binary:?} is missing: build it with `cargo build -p rudder-cli`"
    );
    binary
}
