//! What the runtime and its pod workers share: the node's configuration, the image store,
//! the address pool and one slot per pod (its published status and the stop request).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::super::address_pool::AddressPool;
use super::super::lifecycle::Backoff;
use super::super::{Notify, RunningPod};
use super::network::NodeNetwork;
use super::resolv::NodeDns;
use crate::image::pull::PullConfig;
use crate::image::store::ImageStore;

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
    /// What pods' `/etc/resolv.conf` is made of.
    pub dns: NodeDns,
}

pub(super) struct Shared {
    pub config: LinuxConfig,
    pub images: ImageStore,
    pub pool: AddressPool,
    pub pods: Mutex<BTreeMap<String, std::sync::Arc<PodSlot>>>,
    /// Pod uid → its address, from `start` until its worker has cleaned up (a pod's status
    /// shows its address only once its sandbox exists; allocation cannot wait for that).
    pub addresses: Mutex<BTreeMap<String, String>>,
    pub notify: Mutex<Option<Notify>>,
}

/// A pod's worker, as the runtime sees it.
pub(super) struct PodSlot {
    pub status: Mutex<RunningPod>,
    /// `Some(grace)` once a stop was asked for.
    pub stop: Mutex<Option<Option<Duration>>>,
    pub wake: Condvar,
}

/// The boot this machine is in (`/proc/sys/kernel/random/boot_id`): processes recorded in an
/// earlier one are gone.
pub(super) fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_string())
        .unwrap_or_default()
}

/// A lock that outlives a panicked holder (a worker's state stays usable).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
