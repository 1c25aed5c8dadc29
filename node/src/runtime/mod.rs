//! Container runtimes behind one trait: the kubelet's pod logic is the same whether pods run
//! as real containers ([`linux`]: libcontainer through `rudder shim`) or are simulated
//! ([`fake`], hollow nodes).
//!
//! The trait is asynchronous in spirit: `start` and `stop` hand work to the pod's worker and
//! return at once; the kubelet learns what happened from `pods()` (and the notifier, which
//! tells it to look now).

pub mod address_pool;
pub mod fake;
pub mod lifecycle;
pub mod linux;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::PodSpec;
use serde::{Deserialize, Serialize};

/// A pod as the runtime runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningPod {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// Empty until its sandbox has an address.
    pub ip: String,
    /// RFC 3339, when the kubelet started working on it.
    pub started_at: String,
    pub phase: PodPhase,
    pub init_containers: Vec<RunningContainer>,
    pub containers: Vec<RunningContainer>,
    /// A pod-level problem (its sandbox could not be made), for the status message.
    pub message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl PodPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            PodPhase::Pending => "Pending",
            PodPhase::Running => "Running",
            PodPhase::Succeeded => "Succeeded",
            PodPhase::Failed => "Failed",
        }
    }
}

/// One container's status, in Kubernetes' terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningContainer {
    pub name: String,
    pub image: String,
    /// The image's digest, once it is known.
    pub image_id: String,
    /// `rudder://<id>` of the current (or last) attempt; empty before the first.
    pub id: String,
    pub state: ContainerState,
    pub last_state: Option<ContainerState>,
    pub restart_count: u32,
    pub ready: bool,
    pub started: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Waiting {
        reason: String,
        message: String,
    },
    Running {
        started_at: String,
    },
    Terminated {
        exit_code: i32,
        signal: Option<i32>,
        /// Completed, Error, OOMKilled, ...
        reason: String,
        message: String,
        started_at: String,
        finished_at: String,
    },
}

/// What the runtime needs to run a pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodPlan {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub spec: PodSpec,
    /// The files of configMap and secret volumes, read from the API by the kubelet:
    /// volume name → relative path → content.
    pub volume_files: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

impl PodPlan {
    /// (container name, image) of the app containers, in spec order.
    pub fn containers(&self) -> Vec<(String, String)> {
        self.spec
            .containers
            .iter()
            .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("no pod address is left in {cidr}")]
    AddressesExhausted { cidr: String },
    #[error("pod {uid} is not running here")]
    UnknownPod { uid: String },
    /// The pod could not be prepared (its files, its record): the runtime's own error.
    #[error("starting pod {pod}: {source}")]
    Start {
        pod: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("this node's runtime does not support {0} (a hollow node?)")]
    Unsupported(&'static str),
    #[error("pod {namespace}/{pod} is not on this node")]
    PodNotHere { namespace: String, pod: String },
    #[error("container {container:?} is not in pod {pod:?}")]
    NoSuchContainer { pod: String, container: String },
    #[error("container {container:?} in pod {pod:?} is not running")]
    NotRunning { pod: String, container: String },
    /// Made without stdin and tty: its shim keeps no attach point (an attach follows its
    /// output instead).
    #[error("container {container:?} in pod {pod:?} was made without stdin and tty")]
    NotAttachable { pod: String, container: String },
    #[error("previous terminated container {container:?} in pod {pod:?} not found")]
    NoPreviousAttempt { pod: String, container: String },
    /// A port-forward's connection inside the pod failed (nothing listens there, or the
    /// pod's network namespace is gone).
    #[error("{source}")]
    Connect {
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Called by a runtime when a pod's state changed, so the kubelet looks now.
pub type Notify = Arc<dyn Fn() + Send + Sync>;

/// Runs pods. `start` and `stop` return at once; the work happens in the pod's worker.
pub trait Runtime: Send + Sync + 'static {
    /// Starts the pod (idempotent: a pod already known is left as it is).
    fn start(&self, plan: &PodPlan, now: jiff::Timestamp) -> Result<(), RuntimeError>;
    /// Stops the pod: SIGTERM, `grace` (the pod's own when `None`), SIGKILL, then its
    /// address, cgroups, mounts and files are freed and it leaves `pods()`. Idempotent.
    fn stop(&self, uid: &str, grace: Option<Duration>) -> Result<(), RuntimeError>;
    /// Every pod here now, with its containers' states (a restarted kubelet adopts these).
    fn pods(&self) -> Vec<RunningPod>;
    /// Where to say that something changed.
    fn set_notify(&self, _notify: Notify) {}
    /// Whether pods' volumes are mounted from the host: then the kubelet waits for a pod's
    /// PersistentVolumeClaims to be bound and gives the runtime their volumes' host paths
    /// before starting it. A hollow node's runtime mounts nothing, and its pods start
    /// without waiting for their claims.
    fn mounts_volumes(&self) -> bool {
        true
    }
    /// The file holding a container's output (`container` empty: the pod's first one;
    /// `previous`: the attempt before the current one).
    fn log_file(
        &self,
        _namespace: &str,
        _pod: &str,
        _container: &str,
        _previous: bool,
    ) -> Result<std::path::PathBuf, RuntimeError> {
        Err(RuntimeError::Unsupported("logs"))
    }
    /// A command that runs `argv` in a running container, stdout and stderr piped; with
    /// `terminal`, one to give a terminal as its stdio instead.
    fn exec_command(
        &self,
        _namespace: &str,
        _pod: &str,
        _container: &str,
        _argv: &[String],
        _terminal: bool,
    ) -> Result<std::process::Command, RuntimeError> {
        Err(RuntimeError::Unsupported("exec"))
    }
    /// A connection to the attach point of a running container made with `stdin: true` or
    /// `tty: true` (linux/shim_attach.rs), for `attach -i -t`; `NotAttachable` for one made
    /// without.
    fn attach(
        &self,
        _namespace: &str,
        _pod: &str,
        _container: &str,
    ) -> Result<std::os::unix::net::UnixStream, RuntimeError> {
        Err(RuntimeError::Unsupported("attach"))
    }
    /// What the machine and the pods' running containers use now (`rudder top`).
    fn usage(&self) -> Result<crate::usage::MachineUsage, RuntimeError> {
        Err(RuntimeError::Unsupported("stats"))
    }
    /// A connection to `port` on the pod's own localhost, opened inside its network
    /// namespace (as Kubernetes' port-forward connects), for `kubectl port-forward`.
    fn connect_to_pod(
        &self,
        _namespace: &str,
        _pod: &str,
        _port: u16,
    ) -> Result<std::net::TcpStream, RuntimeError> {
        Err(RuntimeError::Unsupported("port-forward"))
    }
}
