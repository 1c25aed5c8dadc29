//! Container runtimes behind one trait: the kubelet's pod logic is the same whether pods run
//! as real containers (libcontainer, to come) or are simulated ([`fake`], hollow nodes).

pub mod fake;

/// A pod as the runtime runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningPod {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub ip: String,
    /// RFC 3339, when its sandbox started.
    pub started_at: String,
    pub containers: Vec<RunningContainer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningContainer {
    pub name: String,
    pub image: String,
    pub id: String,
}

/// What the runtime needs to start a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPlan {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// (container name, image) in spec order.
    pub containers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    #[error("no pod address is left in {cidr}")]
    AddressesExhausted { cidr: String },
    #[error("pod {uid} is not running here")]
    UnknownPod { uid: String },
}

/// Runs pods. Calls may block (real runtimes make syscalls): the kubelet calls them off its
/// event loop.
pub trait Runtime: Send + Sync + 'static {
    /// Starts every container of `plan` (idempotent: a running pod is returned as it is).
    fn start(&self, plan: &PodPlan, now: jiff::Timestamp) -> Result<RunningPod, RuntimeError>;
    /// Stops and removes the pod, freeing its address.
    fn stop(&self, uid: &str) -> Result<(), RuntimeError>;
    /// Every pod running now (a restarted kubelet adopts these).
    fn pods(&self) -> Vec<RunningPod>;
}
