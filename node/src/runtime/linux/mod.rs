//! The real runtime: pods as libcontainer containers, one worker thread per pod.
//!
//! ```text
//!  start(plan) ─► worker thread: sandbox (netns + veth + IP, volumes, /etc/hosts)
//!     loop every 100 ms (or when woken):
//!        init containers one by one, then the containers:
//!          image from the store ─► overlayfs rootfs ─► config.json (spec.rs) ─► rudder shim
//!          exit file seen ─► restart by policy, after crash-loop backoff (lifecycle.rs)
//!        probes (probe.rs): startup, liveness (restart), readiness (Ready)
//!        record saved to <root>/pods/<uid>/pod.json; status published; kubelet notified
//!  stop(uid) ─► SIGTERM, grace, SIGKILL ─► shims clean up cgroups ─► unmount, netns, files
//! ```
//!
//! A restarted kubelet reads every `pod.json` and carries on: the shims kept the containers
//! running and wrote the exit files of those that ended meanwhile.

pub mod network;
pub mod probe;
pub mod shim;
pub mod spec;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, PodSpec};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::address_pool::AddressPool;
use super::lifecycle::{pod_phase, Backoff, ProbeState, RestartPolicy};
use super::{ContainerState, Notify, PodPlan, RunningContainer, RunningPod, Runtime, RuntimeError};
use crate::image::pull::{pull, PullConfig};
use crate::image::reference::Reference;
use crate::image::store::ImageStore;
use network::NodeNetwork;
use shim::{ExitRecord, ShimArgs};
use spec::{HostMount, ImageDefaults, Placement};

/// How a node runs real containers.
#[derive(Debug, Clone)]
pub struct LinuxConfig {
    /// The node's state: `pods/`, `containers/` (libcontainer's), `netns/`.
    pub root: PathBuf,
    /// The `rudder` binary (its `shim` subcommand).
    pub shim_binary: PathBuf,
    pub network: NodeNetwork,
    pub backoff: Backoff,
    /// Which registries images may be pulled from.
    pub pull: PullConfig,
}

pub struct LinuxRuntime {
    shared: Arc<Shared>,
}

struct Shared {
    config: LinuxConfig,
    images: ImageStore,
    pool: AddressPool,
    pods: Mutex<BTreeMap<String, Arc<PodSlot>>>,
    /// Pod uid → its address, from `start` until its worker has cleaned up (a pod's status
    /// shows its address only once its sandbox exists; allocation cannot wait for that).
    addresses: Mutex<BTreeMap<String, String>>,
    notify: Mutex<Option<Notify>>,
}

/// A pod's worker, as the runtime sees it.
struct PodSlot {
    status: Mutex<RunningPod>,
    /// `Some(grace)` once a stop was asked for.
    stop: Mutex<Option<Option<Duration>>>,
    wake: Condvar,
}

/// What a pod's worker keeps on disk (`pod.json`) to carry on after a kubelet restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PodRecord {
    uid: String,
    namespace: String,
    name: String,
    spec: PodSpec,
    ip: String,
    started_at: String,
    sandbox_ready: bool,
    containers: Vec<ContainerRecord>,
    /// The boot this record's processes belong to (`/proc/sys/kernel/random/boot_id`).
    #[serde(default)]
    boot_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ContainerRecord {
    name: String,
    init: bool,
    image: String,
    image_id: String,
    /// How many attempts were made (the next attempt's number).
    attempts: u32,
    /// The current or last attempt's id.
    id: String,
    /// The current attempt's process, while it runs.
    pid: Option<i32>,
    restart_count: u32,
    state: ContainerState,
    last_state: Option<ContainerState>,
    /// When the next attempt may start (unix milliseconds); `None`: now.
    next_start_ms: Option<i64>,
    /// Failed image lookups in a row.
    image_failures: u32,
    /// Set when the container ended for good (its policy does not restart it).
    done: bool,
    /// Crashes in a row without a long run between them: the backoff's exponent.
    #[serde(default)]
    crash_streak: u32,
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_string())
        .unwrap_or_default()
}

fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn waiting(reason: &str, message: impl Into<String>) -> ContainerState {
    ContainerState::Waiting {
        reason: reason.into(),
        message: message.into(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LinuxRuntime {
    /// Opens the node's state, re-adopting the pods a previous kubelet left (their
    /// containers keep running), and prepares the bridge.
    pub fn open(config: LinuxConfig, images: ImageStore) -> Result<Self, RuntimeError> {
        for dir in ["pods", "containers"] {
            std::fs::create_dir_all(config.root.join(dir))
                .map_err(|e| RuntimeError::Failed(format!("creating {dir}: {e}")))?;
        }
        config
            .network
            .ensure_bridge()
            .map_err(|e| RuntimeError::Failed(e.to_string()))?;
        let cidr = config.network.pod_cidr;
        let shared = Arc::new(Shared {
            pool: AddressPool::parse(&format!("{}/{}", cidr.network, cidr.prefix))
                .unwrap_or_default(),
            images,
            config,
            pods: Mutex::default(),
            addresses: Mutex::default(),
            notify: Mutex::default(),
        });
        let runtime = Self { shared };
        for record in runtime.records_on_disk() {
            tracing::info!(pod = %record.name, uid = %record.uid, "adopting a pod left running");
            runtime.spawn_worker(record);
        }
        Ok(runtime)
    }

    fn records_on_disk(&self) -> Vec<PodRecord> {
        let dir = self.shared.config.root.join("pods");
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let bytes = std::fs::read(entry.path().join("pod.json")).ok()?;
                serde_json::from_slice(&bytes).ok()
            })
            .collect()
    }

    fn spawn_worker(&self, record: PodRecord) {
        lock(&self.shared.addresses).insert(record.uid.clone(), record.ip.clone());
        let slot = Arc::new(PodSlot {
            status: Mutex::new(status_of(&record)),
            stop: Mutex::new(None),
            wake: Condvar::new(),
        });
        lock(&self.shared.pods).insert(record.uid.clone(), slot.clone());
        let shared = self.shared.clone();
        std::thread::Builder::new()
            .name(format!("pod-{}", record.name))
            .spawn(move || Worker::new(shared, slot, record).run())
            .expect("spawning a pod worker thread");
    }
}

impl Runtime for LinuxRuntime {
    fn start(&self, plan: &PodPlan, now: jiff::Timestamp) -> Result<(), RuntimeError> {
        let ip = {
            let pods = lock(&self.shared.pods);
            if pods.contains_key(&plan.uid) {
                return Ok(());
            }
            let mut addresses = lock(&self.shared.addresses);
            let used: Vec<String> = addresses.values().cloned().collect();
            let cidr = self.shared.config.network.pod_cidr;
            let ip = self.shared.pool.first_free(&used).ok_or_else(|| {
                RuntimeError::AddressesExhausted {
                    cidr: format!("{}/{}", cidr.network, cidr.prefix),
                }
            })?;
            addresses.insert(plan.uid.clone(), ip.to_string());
            ip
        };
        let dir = pod_dir(&self.shared.config.root, &plan.uid);
        if let Err(error) = write_volume_files(&dir, plan) {
            lock(&self.shared.addresses).remove(&plan.uid);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(RuntimeError::Failed(error));
        }
        let container = |c: &Container, init: bool| ContainerRecord {
            name: c.name.clone(),
            init,
            image: c.image.clone().unwrap_or_default(),
            image_id: String::new(),
            attempts: 0,
            id: String::new(),
            pid: None,
            restart_count: 0,
            state: waiting(
                if init {
                    "PodInitializing"
                } else {
                    "ContainerCreating"
                },
                "",
            ),
            last_state: None,
            next_start_ms: None,
            image_failures: 0,
            done: false,
            crash_streak: 0,
        };
        let record = PodRecord {
            uid: plan.uid.clone(),
            namespace: plan.namespace.clone(),
            name: plan.name.clone(),
            ip: ip.to_string(),
            started_at: rfc3339(now),
            sandbox_ready: false,
            boot_id: boot_id(),
            containers: plan
                .spec
                .init_containers
                .iter()
                .flatten()
                .map(|c| container(c, true))
                .chain(plan.spec.containers.iter().map(|c| container(c, false)))
                .collect(),
            spec: plan.spec.clone(),
        };
        if let Err(error) = save(&dir, &record) {
            lock(&self.shared.addresses).remove(&plan.uid);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(RuntimeError::Failed(error));
        }
        self.spawn_worker(record);
        Ok(())
    }

    fn stop(&self, uid: &str, grace: Option<Duration>) -> Result<(), RuntimeError> {
        let slot = lock(&self.shared.pods)
            .get(uid)
            .cloned()
            .ok_or_else(|| RuntimeError::UnknownPod { uid: uid.into() })?;
        let mut stop = lock(&slot.stop);
        // A shorter grace period than one asked for before wins.
        *stop = Some(match (*stop, grace) {
            (Some(Some(before)), Some(now)) => Some(before.min(now)),
            (Some(before), None) => before,
            (_, grace) => grace,
        });
        slot.wake.notify_all();
        Ok(())
    }

    fn pods(&self) -> Vec<RunningPod> {
        lock(&self.shared.pods)
            .values()
            .map(|slot| lock(&slot.status).clone())
            .collect()
    }

    fn set_notify(&self, notify: Notify) {
        *lock(&self.shared.notify) = Some(notify);
    }

    fn log_file(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<PathBuf, RuntimeError> {
        let (uid, c) = self.find(namespace, pod, container)?;
        let restart = if previous {
            c.restart_count.checked_sub(1).ok_or_else(|| {
                RuntimeError::NotFound(format!(
                    "previous terminated container {:?} in pod {pod:?} not found",
                    c.name
                ))
            })?
        } else {
            c.restart_count
        };
        Ok(pod_dir(&self.shared.config.root, &uid)
            .join("logs")
            .join(&c.name)
            .join(format!("{restart}.log")))
    }

    fn exec_command(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        argv: &[String],
    ) -> Result<std::process::Command, RuntimeError> {
        let (_, c) = self.find(namespace, pod, container)?;
        if !matches!(c.state, ContainerState::Running { .. }) {
            return Err(RuntimeError::NotFound(format!(
                "container {:?} in pod {pod:?} is not running",
                c.name
            )));
        }
        let id = c.id.trim_start_matches("rudder://");
        let config = &self.shared.config;
        Ok(shim::exec_command(
            &config.shim_binary,
            &config.root.join("containers"),
            id,
            argv,
        ))
    }
}

impl LinuxRuntime {
    /// A pod's container by name (empty: its first app container): (pod uid, status).
    fn find(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<(String, RunningContainer), RuntimeError> {
        let running = self
            .pods()
            .into_iter()
            .find(|p| p.namespace == namespace && p.name == pod)
            .ok_or_else(|| {
                RuntimeError::NotFound(format!("pod {namespace}/{pod} is not on this node"))
            })?;
        let found = running
            .containers
            .iter()
            .chain(&running.init_containers)
            .find(|c| container.is_empty() || c.name == container)
            .cloned()
            .ok_or_else(|| {
                RuntimeError::NotFound(format!("container {container:?} is not in pod {pod:?}"))
            })?;
        Ok((running.uid, found))
    }
}

fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("pods").join(uid)
}

fn save(dir: &Path, record: &PodRecord) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let temp = dir.join("pod.json.tmp");
    let bytes = serde_json::to_vec(record).map_err(|e| e.to_string())?;
    std::fs::write(&temp, bytes)
        .and_then(|()| std::fs::rename(&temp, dir.join("pod.json")))
        .map_err(|e| format!("saving {}: {e}", dir.display()))
}

/// configMap and secret volumes as files, before anything runs.
fn write_volume_files(dir: &Path, plan: &PodPlan) -> Result<(), String> {
    for (volume, files) in &plan.volume_files {
        let root = dir.join("volumes").join(volume);
        for (path, bytes) in files {
            if path.split('/').any(|part| part == ".." || part.is_empty()) {
                return Err(format!("volume {volume}: bad file path {path:?}"));
            }
            let file = root.join(path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            std::fs::write(&file, bytes).map_err(|e| format!("writing {}: {e}", file.display()))?;
        }
    }
    Ok(())
}

/// The pod's status from its record (phase by the lifecycle rules).
fn status_of(record: &PodRecord) -> RunningPod {
    status_with(record, &BTreeMap::new())
}

fn status_with(record: &PodRecord, ready: &BTreeMap<String, (bool, bool)>) -> RunningPod {
    let view = |c: &ContainerRecord| {
        let running = matches!(c.state, ContainerState::Running { .. });
        let (is_ready, started) = ready.get(&c.name).copied().unwrap_or((running, running));
        RunningContainer {
            name: c.name.clone(),
            image: c.image.clone(),
            image_id: c.image_id.clone(),
            id: if c.id.is_empty() {
                String::new()
            } else {
                format!("rudder://{}", c.id)
            },
            state: c.state.clone(),
            last_state: c.last_state.clone(),
            restart_count: c.restart_count,
            ready: running && is_ready,
            started: running && started,
        }
    };
    let init: Vec<_> = record
        .containers
        .iter()
        .filter(|c| c.init)
        .map(view)
        .collect();
    let containers: Vec<_> = record
        .containers
        .iter()
        .filter(|c| !c.init)
        .map(view)
        .collect();
    RunningPod {
        uid: record.uid.clone(),
        namespace: record.namespace.clone(),
        name: record.name.clone(),
        ip: if record.sandbox_ready {
            record.ip.clone()
        } else {
            String::new()
        },
        started_at: record.started_at.clone(),
        phase: pod_phase(
            RestartPolicy::parse(record.spec.restart_policy.as_deref()),
            &init,
            &containers,
        ),
        init_containers: init,
        containers,
        message: None,
    }
}

/// Probe bookkeeping of one running attempt (not persisted: a restarted kubelet probes
/// afresh).
struct Probes {
    attempt_id: String,
    started: Instant,
    startup: ProbeState,
    liveness: ProbeState,
    readiness: ProbeState,
    last_run: BTreeMap<&'static str, Instant>,
}

/// How long a container's process may be gone before its shim writes the exit record.
const EXIT_RECORD_PATIENCE: Duration = Duration::from_secs(10);

struct Worker {
    shared: Arc<Shared>,
    slot: Arc<PodSlot>,
    record: PodRecord,
    dir: PathBuf,
    probes: BTreeMap<String, Probes>,
    sandbox_error: Option<String>,
    /// Attempt id → when its process was first seen gone without an exit record.
    exit_missing_since: BTreeMap<String, Instant>,
}

impl Worker {
    fn new(shared: Arc<Shared>, slot: Arc<PodSlot>, record: PodRecord) -> Self {
        let dir = pod_dir(&shared.config.root, &record.uid);
        Self {
            shared,
            slot,
            record,
            dir,
            probes: BTreeMap::new(),
            sandbox_error: None,
            exit_missing_since: BTreeMap::new(),
        }
        .adopting()
    }

    /// A pod read back from disk: containers of an earlier boot are gone (their pids may
    /// name other processes now, their mounts and network are gone); running ones get probe
    /// state (readiness proven again, startup taken as passed).
    fn adopting(mut self) -> Self {
        let boot = boot_id();
        if self.record.boot_id != boot {
            let policy = RestartPolicy::parse(self.record.spec.restart_policy.as_deref());
            self.record.boot_id = boot;
            self.record.sandbox_ready = false;
            for c in &mut self.record.containers {
                if c.pid.take().is_none() {
                    continue;
                }
                let terminated = ContainerState::Terminated {
                    exit_code: 255,
                    signal: None,
                    reason: "Unknown".into(),
                    message: "the node restarted".into(),
                    started_at: String::new(),
                    finished_at: rfc3339(jiff::Timestamp::now()),
                };
                let restarts = if c.init {
                    policy.restarts_init(255)
                } else {
                    policy.restarts(255)
                };
                if restarts {
                    c.last_state = Some(terminated);
                    c.state = waiting("ContainerCreating", "");
                    c.next_start_ms = None;
                } else {
                    c.state = terminated;
                    c.done = true;
                }
            }
        }
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(3600))
            .unwrap_or_else(Instant::now);
        for c in &self.record.containers {
            if c.pid.is_none() || c.init {
                continue;
            }
            let readiness = self
                .container_spec(c)
                .is_some_and(|spec| spec.readiness_probe.is_some());
            self.probes.insert(
                c.name.clone(),
                Probes {
                    attempt_id: c.id.clone(),
                    started: long_ago,
                    startup: ProbeState::new(true),
                    liveness: ProbeState::new(true),
                    readiness: ProbeState::new(!readiness),
                    last_run: BTreeMap::new(),
                },
            );
        }
        self
    }

    fn config(&self) -> &LinuxConfig {
        &self.shared.config
    }

    fn run(mut self) {
        loop {
            let stop = *lock(&self.slot.stop);
            if let Some(grace) = stop {
                self.terminate(grace);
                lock(&self.shared.pods).remove(&self.record.uid);
                lock(&self.shared.addresses).remove(&self.record.uid);
                self.notify();
                return;
            }
            let before = serde_json::to_value(&self.record).ok();
            if !self.record.sandbox_ready {
                self.make_sandbox();
            }
            if self.record.sandbox_ready {
                self.step_containers();
                self.run_probes();
            }
            if serde_json::to_value(&self.record).ok() != before {
                if let Err(e) = save(&self.dir, &self.record) {
                    tracing::warn!(pod = %self.record.name, error = %e, "saving pod record");
                }
            }
            self.publish();
            let stop = lock(&self.slot.stop);
            if stop.is_none() {
                let _ = self
                    .slot
                    .wake
                    .wait_timeout(stop, Duration::from_millis(100));
            }
        }
    }

    fn notify(&self) {
        if let Some(notify) = lock(&self.shared.notify).clone() {
            notify();
        }
    }

    /// Publishes the status; tells the kubelet when it changed.
    fn publish(&self) {
        let ready: BTreeMap<String, (bool, bool)> = self
            .probes
            .iter()
            .map(|(name, p)| (name.clone(), (p.readiness.passing, p.startup.passing)))
            .collect();
        let mut status = status_with(&self.record, &ready);
        status.message = self.sandbox_error.clone();
        let changed = {
            let mut current = lock(&self.slot.status);
            let changed = *current != status;
            *current = status;
            changed
        };
        if changed {
            self.notify();
        }
    }

    fn make_sandbox(&mut self) {
        let network = &self.shared.config.network;
        let netns = network.netns_path(&self.record.uid);
        let making = Instant::now();
        let made = match self.record.ip.parse::<Ipv4Addr>() {
            Ok(ip) => network
                .add_pod(&self.record.uid, ip)
                .map_err(|e| e.to_string()),
            Err(_) => Err(format!("bad pod address {:?}", self.record.ip)),
        }
        .and_then(|_| self.write_etc_files());
        match made {
            Ok(()) => {
                tracing::debug!(pod = %self.record.name, netns = %netns.display(), elapsed = ?making.elapsed(), "sandbox ready");
                self.record.sandbox_ready = true;
                self.sandbox_error = None;
            }
            Err(error) => {
                tracing::warn!(pod = %self.record.name, %error, "creating the pod sandbox");
                self.sandbox_error = Some(format!("creating the pod sandbox: {error}"));
            }
        }
    }

    fn write_etc_files(&self) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
        let hosts = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{}\n",
            self.record.ip, self.record.name
        );
        let resolv = format!(
            "search {}.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n",
            self.record.namespace
        );
        std::fs::write(self.dir.join("hosts"), hosts)
            .and_then(|()| std::fs::write(self.dir.join("resolv.conf"), resolv))
            .and_then(|()| std::fs::write(self.dir.join("hostname"), &self.record.name))
            .map_err(|e| format!("writing /etc files: {e}"))
    }

    /// Init containers one at a time, in order; then every container.
    fn step_containers(&mut self) {
        let policy = RestartPolicy::parse(self.record.spec.restart_policy.as_deref());
        for index in 0..self.record.containers.len() {
            // An init container waits for the ones before it to succeed; the app
            // containers (listed after them) for all of them.
            let blocked = self.record.containers[..index]
                .iter()
                .filter(|before| before.init)
                .any(|before| {
                    !(before.done
                        && matches!(
                            before.state,
                            ContainerState::Terminated { exit_code: 0, .. }
                        ))
                });
            if blocked {
                continue;
            }
            self.step_container(index, policy);
        }
    }

    fn step_container(&mut self, index: usize, policy: RestartPolicy) {
        let c = &self.record.containers[index];
        if let Some(pid) = c.pid {
            let exit_file = self.attempt_dir(&c.id).join("exit.json");
            if let Some(exit) = ExitRecord::read(&exit_file) {
                self.exit_missing_since.remove(&c.id);
                self.ended(index, exit, policy);
            } else if !shim::alive(pid) {
                // The process is gone: its shim is cleaning up and then writes the exit
                // record. Only if none comes (the shim was killed) is the end unknown.
                let since = *self
                    .exit_missing_since
                    .entry(c.id.clone())
                    .or_insert_with(Instant::now);
                if since.elapsed() > EXIT_RECORD_PATIENCE {
                    self.exit_missing_since.remove(&c.id);
                    let exit = ExitRecord {
                        exit_code: 255,
                        signal: None,
                        oom_killed: false,
                        finished_at: rfc3339(jiff::Timestamp::now()),
                    };
                    self.ended(index, exit, policy);
                }
            }
            return;
        }
        if c.done {
            return;
        }
        if c.next_start_ms.is_some_and(|t| now_ms() < t) {
            return;
        }
        self.start_attempt(index);
    }

    fn attempt_dir(&self, id: &str) -> PathBuf {
        self.dir.join("containers").join(id)
    }

    fn log_path(&self, name: &str, restart: u32) -> PathBuf {
        self.dir
            .join("logs")
            .join(name)
            .join(format!("{restart}.log"))
    }

    /// The container's attempt ended: unmount its rootfs; restart it (after backoff) or not.
    fn ended(&mut self, index: usize, exit: ExitRecord, policy: RestartPolicy) {
        let backoff = self.config().backoff;
        let id = self.record.containers[index].id.clone();
        let attempt_dir = self.attempt_dir(&id);
        unmount_rootfs(&attempt_dir);
        let _ = std::fs::remove_dir_all(&attempt_dir);
        let pod = format!(
            "{}_{}({})",
            self.record.name, self.record.namespace, self.record.uid
        );
        let c = &mut self.record.containers[index];
        self.probes.remove(&c.name);
        let started_at = match &c.state {
            ContainerState::Running { started_at } => started_at.clone(),
            _ => String::new(),
        };
        let reason = if exit.oom_killed {
            "OOMKilled"
        } else if exit.exit_code == 0 {
            "Completed"
        } else {
            "Error"
        };
        let terminated = ContainerState::Terminated {
            exit_code: exit.exit_code,
            signal: exit.signal,
            reason: reason.into(),
            message: String::new(),
            started_at: started_at.clone(),
            finished_at: exit.finished_at.clone(),
        };
        tracing::info!(pod = %pod, container = %c.name, exit_code = exit.exit_code, reason, "container ended");
        c.pid = None;
        let restarts = if c.init {
            policy.restarts_init(exit.exit_code)
        } else {
            policy.restarts(exit.exit_code)
        };
        if !restarts {
            c.state = terminated;
            c.done = true;
            return;
        }
        // Kubernetes: the first restart is immediate, then 10 s, 20 s, ... A container that
        // ran longer than twice the cap starts over.
        let ran_long = started_at.parse::<jiff::Timestamp>().is_ok_and(|t| {
            let ran = jiff::Timestamp::now().duration_since(t);
            ran.as_secs() > i64::try_from(backoff.max.as_secs() * 2).unwrap_or(i64::MAX)
        });
        if ran_long {
            c.crash_streak = 0;
        }
        let delay = match c.crash_streak {
            0 => Duration::ZERO,
            streak => backoff.delay(streak - 1),
        };
        c.crash_streak += 1;
        c.last_state = Some(terminated.clone());
        c.next_start_ms = Some(now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        c.state = if delay.is_zero() {
            terminated
        } else {
            waiting(
                "CrashLoopBackOff",
                format!(
                    "back-off {}s restarting failed container={} pod={pod}",
                    delay.as_secs(),
                    c.name
                ),
            )
        };
    }

    fn start_attempt(&mut self, index: usize) {
        let backoff = self.config().backoff;
        let c = self.record.containers[index].clone();
        let Some(spec) = self.container_spec(&c) else {
            return;
        };
        let manifest = match self.image(&c.image, &spec) {
            Ok(manifest) => manifest,
            Err(failure) => {
                let c = &mut self.record.containers[index];
                let (reason, message) = image_failure(&c.image, failure, c.image_failures);
                c.state = waiting(reason, message);
                let delay = backoff.delay(c.image_failures);
                c.image_failures += 1;
                c.next_start_ms =
                    Some(now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                return;
            }
        };
        let attempt = c.attempts;
        let id = container_id(&self.record.uid, &c.name, attempt);
        let launching = Instant::now();
        let started = self.launch(&spec, &c, &manifest, &id);
        tracing::debug!(pod = %self.record.name, container = %c.name, elapsed = ?launching.elapsed(), "launched");
        let c = &mut self.record.containers[index];
        c.image_failures = 0;
        c.attempts += 1;
        c.id = id.clone();
        c.image_id = manifest.clone();
        match started {
            Ok(pid) => {
                if attempt > 0 {
                    c.restart_count += 1;
                }
                c.pid = Some(pid);
                c.next_start_ms = None;
                c.state = ContainerState::Running {
                    started_at: rfc3339(jiff::Timestamp::now()),
                };
                let name = c.name.clone();
                self.probes.insert(
                    name,
                    Probes {
                        attempt_id: id,
                        started: Instant::now(),
                        startup: ProbeState::new(spec.startup_probe.is_none()),
                        liveness: ProbeState::new(true),
                        readiness: ProbeState::new(spec.readiness_probe.is_none()),
                        last_run: BTreeMap::new(),
                    },
                );
            }
            Err(error) => {
                let attempt_dir = self.dir.join("containers").join(&id);
                let shim_log =
                    std::fs::read_to_string(attempt_dir.join("shim.log")).unwrap_or_default();
                let detail: Vec<&str> = shim_log.lines().rev().take(20).collect();
                tracing::warn!(pod = %self.record.name, container = %c.name, %error, shim_log = %detail.into_iter().rev().collect::<Vec<_>>().join(" | "), "starting container");
                unmount_rootfs(&attempt_dir);
                let _ = std::fs::remove_dir_all(&attempt_dir);
                let delay = backoff.delay(c.restart_count);
                c.state = waiting("RunContainerError", error);
                c.next_start_ms =
                    Some(now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
            }
        }
    }

    /// The image's manifest digest by the container's pull policy: from the store, or
    /// pulled (when the node pulls from its registry).
    fn image(&self, image: &str, container: &Container) -> Result<String, ImageFailure> {
        let reference =
            Reference::parse(image).map_err(|e| ImageFailure::Invalid(e.to_string()))?;
        let store = &self.shared.images;
        let pulls = &self.shared.config.pull;
        let policy = container.image_pull_policy.as_deref().unwrap_or(
            if reference.digest.is_none() && reference.tag.as_deref() == Some("latest") {
                "Always"
            } else {
                "IfNotPresent"
            },
        );
        let local = store.resolve(image).ok();
        match (policy, pulls.allows(&reference.registry), local) {
            ("Never", _, Some(manifest)) => Ok(manifest),
            ("Never", _, None) => Err(ImageFailure::NeverPull),
            // The store is this node's only source for a registry it does not pull from.
            (_, false, Some(manifest)) => Ok(manifest),
            (_, false, None) => Err(ImageFailure::NotHere(reference.registry)),
            ("IfNotPresent", true, Some(manifest)) => Ok(manifest),
            (_, true, _) => {
                tracing::info!(pod = %self.record.name, %image, "pulling image");
                pull(store, image, pulls).map_err(|e| ImageFailure::Pull(e.to_string()))
            }
        }
    }

    fn container_spec(&self, c: &ContainerRecord) -> Option<Container> {
        let spec = &self.record.spec;
        if c.init {
            spec.init_containers
                .iter()
                .flatten()
                .find(|s| s.name == c.name)
                .cloned()
        } else {
            spec.containers.iter().find(|s| s.name == c.name).cloned()
        }
    }

    /// Rootfs, bundle and shim for one attempt: the container's pid.
    fn launch(
        &self,
        container: &Container,
        record: &ContainerRecord,
        manifest: &str,
        id: &str,
    ) -> Result<i32, String> {
        let images = &self.shared.images;
        let image = images.config(manifest).map_err(|e| e.to_string())?;
        let layers = images.layers(manifest).map_err(|e| e.to_string())?;
        let config = image.config().clone().unwrap_or_default();
        let defaults = ImageDefaults {
            entrypoint: config.entrypoint().clone().unwrap_or_default(),
            cmd: config.cmd().clone().unwrap_or_default(),
            env: config.env().clone().unwrap_or_default(),
            working_dir: config.working_dir().clone().unwrap_or_default(),
        };
        let bundle = self.attempt_dir(id);
        let rootfs = bundle.join("rootfs");
        for dir in ["upper", "work", "rootfs"] {
            std::fs::create_dir_all(bundle.join(dir))
                .map_err(|e| format!("creating {}: {e}", bundle.join(dir).display()))?;
        }
        mount_rootfs(&layers, &bundle)?;
        let mounts = self.mounts(container)?;
        let fields = [
            ("metadata.name", self.record.name.clone()),
            ("metadata.namespace", self.record.namespace.clone()),
            ("metadata.uid", self.record.uid.clone()),
            ("status.podIP", self.record.ip.clone()),
            ("spec.nodeName", String::new()),
        ];
        let cgroups_path = format!("/rudder/{id}");
        let netns = self.config().network.netns_path(&self.record.uid);
        let placement = Placement {
            hostname: &self.record.name,
            rootfs: &rootfs,
            netns: &netns,
            cgroups_path: &cgroups_path,
            mounts,
            fields: &fields,
        };
        let config_json =
            spec::config(container, &defaults, &placement).map_err(|e| e.to_string())?;
        std::fs::write(
            bundle.join("config.json"),
            serde_json::to_vec_pretty(&config_json).map_err(|e| e.to_string())?,
        )
        .map_err(|e| format!("writing config.json: {e}"))?;
        let log = self.log_path(
            &record.name,
            record.restart_count + u32::from(record.attempts > 0),
        );
        if let Some(parent) = log.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        let args = ShimArgs {
            state_root: self.config().root.join("containers"),
            id: id.to_string(),
            bundle: bundle.clone(),
            log,
            exit_file: bundle.join("exit.json"),
            cgroups_path,
        };
        shim::spawn(&self.config().shim_binary, &args)
    }

    /// The container's volume mounts as host paths, plus the pod's /etc files.
    fn mounts(&self, container: &Container) -> Result<Vec<HostMount>, String> {
        let mut mounts = vec![
            HostMount {
                host_path: self.dir.join("hosts"),
                container_path: "/etc/hosts".into(),
                read_only: false,
            },
            HostMount {
                host_path: self.dir.join("resolv.conf"),
                container_path: "/etc/resolv.conf".into(),
                read_only: false,
            },
        ];
        for mount in container.volume_mounts.iter().flatten() {
            let volume = self
                .record
                .spec
                .volumes
                .iter()
                .flatten()
                .find(|v| v.name == mount.name)
                .ok_or_else(|| format!("volumeMount {}: no volume of that name", mount.name))?;
            let mut host_path = if let Some(host) = &volume.host_path {
                let path = PathBuf::from(&host.path);
                if host.type_.as_deref() == Some("DirectoryOrCreate") {
                    std::fs::create_dir_all(&path)
                        .map_err(|e| format!("hostPath {}: {e}", host.path))?;
                } else if !path.exists() {
                    return Err(format!("hostPath {} does not exist", host.path));
                }
                path
            } else if volume.empty_dir.is_some()
                || volume.config_map.is_some()
                || volume.secret.is_some()
            {
                let path = self.dir.join("volumes").join(&volume.name);
                std::fs::create_dir_all(&path).map_err(|e| e.to_string())?;
                path
            } else {
                return Err(format!(
                    "volume {}: only emptyDir, hostPath, configMap and secret volumes run on this node",
                    volume.name
                ));
            };
            if let Some(sub) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
                if sub.split('/').any(|p| p == "..") || sub.starts_with('/') {
                    return Err(format!("volumeMount {}: bad subPath {sub:?}", mount.name));
                }
                host_path = beneath(&host_path, sub)
                    .map_err(|e| format!("volumeMount {} subPath {sub:?}: {e}", mount.name))?;
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

    fn run_probes(&mut self) {
        let names: Vec<String> = self.probes.keys().cloned().collect();
        for name in names {
            let Some(container) = self
                .record
                .containers
                .iter()
                .find(|c| c.name == name && !c.init)
            else {
                continue;
            };
            let Some(spec) = self.container_spec(container) else {
                continue;
            };
            let Some(pid) = container.pid else { continue };
            let mut kill_it = false;
            let probes = self.probes.get_mut(&name).expect("listed above");
            let target = probe::ProbeTarget {
                pod_ip: &self.record.ip,
                container: &spec,
                shim_binary: &self.shared.config.shim_binary,
                state_root: &self.shared.config.root.join("containers"),
                container_id: &probes.attempt_id,
            };
            let kinds: [(&'static str, &Option<k8s_openapi::api::core::v1::Probe>); 3] = [
                ("startup", &spec.startup_probe),
                ("liveness", &spec.liveness_probe),
                ("readiness", &spec.readiness_probe),
            ];
            for (kind, probe) in kinds {
                let Some(probe) = probe else { continue };
                if kind != "startup" && !probes.startup.passing {
                    continue;
                }
                if kind == "startup" && probes.startup.passing {
                    continue;
                }
                let (delay, period, _, success, failure) = probe::timing(probe);
                if probes.started.elapsed() < delay {
                    continue;
                }
                if probes
                    .last_run
                    .get(kind)
                    .is_some_and(|t| t.elapsed() < period)
                {
                    continue;
                }
                probes.last_run.insert(kind, Instant::now());
                let ok = probe::run(&target, probe);
                let state = match kind {
                    "startup" => &mut probes.startup,
                    "liveness" => &mut probes.liveness,
                    _ => &mut probes.readiness,
                };
                let (success, failure) = if kind == "readiness" {
                    (success, failure)
                } else {
                    (1, failure)
                };
                let flipped = state.record(ok, success, failure);
                let startup_failed =
                    kind == "startup" && !state.passing && state.failures() >= failure;
                if startup_failed || (flipped && !state.passing && kind == "liveness") {
                    tracing::info!(pod = %self.record.name, container = %name, kind, "probe failed; restarting the container");
                    kill_it = true;
                }
            }
            if kill_it {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }

    /// SIGTERM to every running container, SIGKILL after `grace`, then everything the pod
    /// had is freed.
    fn terminate(&mut self, grace: Option<Duration>) {
        let grace = grace.unwrap_or_else(|| {
            Duration::from_secs(
                self.record
                    .spec
                    .termination_grace_period_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .unwrap_or(30),
            )
        });
        let running: Vec<(i32, PathBuf)> = self
            .record
            .containers
            .iter()
            .filter_map(|c| Some((c.pid?, self.attempt_dir(&c.id).join("exit.json"))))
            .collect();
        for (pid, _) in &running {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
        }
        let all_ended = |deadline: Instant| {
            while Instant::now() < deadline {
                if running.iter().all(|(_, exit)| exit.exists()) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            running.iter().all(|(_, exit)| exit.exists())
        };
        if !all_ended(Instant::now() + grace) {
            for (pid, exit) in &running {
                if !exit.exists() {
                    let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
                }
            }
            if !all_ended(Instant::now() + Duration::from_secs(10)) {
                tracing::warn!(pod = %self.record.name, "containers did not end 10 s after SIGKILL");
            }
        }
        for c in &self.record.containers {
            if !c.id.is_empty() {
                unmount_rootfs(&self.attempt_dir(&c.id));
            }
        }
        if let Err(error) = self.shared.config.network.remove_pod(&self.record.uid) {
            tracing::warn!(pod = %self.record.name, %error, "removing the pod network");
        }
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(pod = %self.record.name, %error, "removing the pod's files");
        }
        tracing::info!(pod = %self.record.name, "pod stopped and cleaned up");
    }
}

/// `root/sub` for a subPath: created as directories where missing, never through a
/// symlink (a container could otherwise point one at the host's `/`).
fn beneath(root: &Path, sub: &str) -> Result<PathBuf, String> {
    let mut path = root.to_path_buf();
    for part in sub.split('/').filter(|p| !p.is_empty() && *p != ".") {
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err("a symlink is on its path".into())
            }
            Ok(_) => {}
            Err(_) => std::fs::create_dir(&path).map_err(|e| e.to_string())?,
        }
    }
    Ok(path)
}

/// `<uid prefix>-<container>-<attempt>`: unique on the node, valid for libcontainer.
fn container_id(uid: &str, name: &str, attempt: u32) -> String {
    let short: String = uid
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect();
    format!("{short}-{name}-{attempt}")
}

/// Why a container has no image.
#[derive(Debug)]
enum ImageFailure {
    Invalid(String),
    NeverPull,
    /// Not in the store, and the node does not pull from this registry.
    NotHere(String),
    Pull(String),
}

/// Kubernetes' reasons: the first pull failure is ErrImagePull, then ImagePullBackOff.
fn image_failure(image: &str, failure: ImageFailure, failures: u32) -> (&'static str, String) {
    let why = match failure {
        ImageFailure::Invalid(reason) => return ("InvalidImageName", reason),
        ImageFailure::NeverPull => {
            return (
                "ErrImageNeverPull",
                format!("Container image {image:?} is not present with pull policy of Never"),
            )
        }
        ImageFailure::NotHere(registry) => format!(
            "image {image:?} is not in this node's image store, and the node does not pull \
             from {registry} (rudder node --registries); import it with `rudder image import`"
        ),
        ImageFailure::Pull(reason) => format!("pulling image {image:?}: {reason}"),
    };
    if failures == 0 {
        ("ErrImagePull", why)
    } else {
        (
            "ImagePullBackOff",
            format!("Back-off pulling image {image:?}: {why}"),
        )
    }
}

/// overlayfs: the image's layers (read-only, shared) under this attempt's upper directory.
fn mount_rootfs(layers: &[PathBuf], bundle: &Path) -> Result<(), String> {
    if layers.is_empty() {
        return Err("the image has no layers".into());
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
    .map_err(|e| format!("mounting the overlay rootfs: {e}"))
}

fn unmount_rootfs(bundle: &Path) {
    let rootfs = bundle.join("rootfs");
    match umount2(&rootfs, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => tracing::warn!(rootfs = %rootfs.display(), error = %e, "unmounting"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_are_short_unique_and_plain() {
        let id = container_id("3f1c2a9e-0000-4000-8000-000000000001", "kubia", 2);
        assert_eq!(id, "3f1c2a9e0000-kubia-2");
    }

    #[test]
    fn a_missing_image_is_err_image_pull_then_back_off() {
        let failure = || ImageFailure::NotHere("docker.io".into());
        let (reason, message) = image_failure("nope", failure(), 0);
        assert_eq!(reason, "ErrImagePull");
        assert!(message.contains("rudder image import"), "{message}");
        let (reason, message) = image_failure("nope", failure(), 1);
        assert_eq!(reason, "ImagePullBackOff");
        assert!(message.starts_with("Back-off pulling image"), "{message}");
    }
}
