//! The real runtime: pods as libcontainer containers, one worker thread per pod.
//!
//! ```text
//!  start(plan) ─► record.rs: pod.json ─► worker.rs thread:
//!     sandbox.rs: netns + veth + IP (network.rs), /etc files (resolv.rs: the pod's DNS);
//!       volumes.rs: volume files
//!     loop every 100 ms (or when woken):
//!        init containers one by one, then the containers:
//!          image_policy.rs: store or pull ─► launch.rs: overlayfs rootfs, config.json
//!            (spec.rs, volumes.rs' mounts) ─► rudder shim (shim.rs; its loop while the
//!            container runs: shim_relay.rs; with stdin or a terminal, its attach point:
//!            shim_attach.rs)
//!          exit file seen ─► restart.rs: restart by policy, after crash-loop backoff
//!        probes: probe_schedule.rs says which are due and what results mean, probe.rs runs
//!        record saved when changed; status published; kubelet notified
//!  stop(uid) ─► SIGTERM, grace, SIGKILL ─► shims clean up cgroups ─► unmount, netns, files
//! ```
//!
//! The decisions (restart.rs, image_policy.rs, probe_schedule.rs, record.rs' status) are
//! pure and take `now`; worker.rs is the shell that reads clocks and files and acts.
//! A restarted kubelet reads every `pod.json` and carries on: the shims kept the containers
//! running and wrote the exit files of those that ended meanwhile.
//!
//! `rudder node reset` (reset.rs) takes a stopped node's leftovers apart; what the nodes of
//! one machine take apart together is machine_network.rs, the lock they take turns with
//! machine_lock.rs.

mod image_policy;
mod launch;
pub mod machine_lock;
pub mod machine_network;
pub mod network;
pub mod probe;
mod probe_schedule;
mod record;
pub mod reset;
pub mod resolv;
mod restart;
mod sandbox;
mod shared;
pub mod shim;
pub mod shim_attach;
mod shim_relay;
pub mod spec;
mod usage;
mod volumes;
mod worker;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::address_pool::AddressPool;
use super::{Notify, PodPlan, RunningContainer, RunningPod, Runtime, RuntimeError};
use crate::image::store::ImageStore;
use network::NetworkError;
use record::{pod_dir, save, PodRecord};
pub use shared::LinuxConfig;
use shared::{boot_id, lock, PodSlot, Shared};
use volumes::write_volume_files;
use worker::Worker;

use super::ContainerState;

/// Why the runtime could not open the node's state.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("creating {}: {source}", path.display())]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Network(#[from] NetworkError),
}

pub struct LinuxRuntime {
    shared: Arc<Shared>,
}

fn box_error(
    e: impl std::error::Error + Send + Sync + 'static,
) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(e)
}

impl LinuxRuntime {
    /// Opens the node's state, re-adopting the pods a previous kubelet left (their
    /// containers keep running), and prepares the bridge.
    pub fn open(config: LinuxConfig, images: ImageStore) -> Result<Self, OpenError> {
        for dir in ["pods", "containers"] {
            let path = config.root.join(dir);
            std::fs::create_dir_all(&path).map_err(|source| OpenError::State { path, source })?;
        }
        config.network.ensure_bridge()?;
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
        for record in record::load_all(&runtime.shared.config.root) {
            tracing::info!(pod = %record.name, uid = %record.uid, "adopting a pod left running");
            runtime.spawn_worker(record);
        }
        Ok(runtime)
    }

    fn spawn_worker(&self, record: PodRecord) {
        lock(&self.shared.addresses).insert(record.uid.clone(), record.ip.clone());
        let slot = Arc::new(PodSlot {
            status: Mutex::new(record.status(&BTreeMap::new())),
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
    fn usage(&self) -> Result<crate::usage::MachineUsage, RuntimeError> {
        usage::usage(&self.pods()).ok_or(RuntimeError::Unsupported("stats"))
    }

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
        let record = PodRecord::new(plan, ip.to_string(), now, boot_id());
        let prepared = write_volume_files(&dir, plan)
            .map_err(box_error)
            .and_then(|()| save(&dir, &record).map_err(box_error));
        if let Err(source) = prepared {
            lock(&self.shared.addresses).remove(&plan.uid);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(RuntimeError::Start {
                pod: format!("{}/{}", plan.namespace, plan.name),
                source,
            });
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
            c.restart_count
                .checked_sub(1)
                .ok_or_else(|| RuntimeError::NoPreviousAttempt {
                    pod: pod.into(),
                    container: c.name.clone(),
                })?
        } else {
            c.restart_count
        };
        let dir = pod_dir(&self.shared.config.root, &uid);
        Ok(launch::log_path(&dir, &c.name, restart))
    }

    fn exec_command(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        argv: &[String],
        terminal: bool,
    ) -> Result<std::process::Command, RuntimeError> {
        let (_, c) = self.find(namespace, pod, container)?;
        if !matches!(c.state, ContainerState::Running { .. }) {
            return Err(RuntimeError::NotRunning {
                pod: pod.into(),
                container: c.name,
            });
        }
        let id = c.id.trim_start_matches("rudder://");
        let config = &self.shared.config;
        Ok(shim::exec_command(
            &config.shim_binary,
            &config.root.join("containers"),
            id,
            argv,
            terminal,
        ))
    }

    fn attach(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<std::os::unix::net::UnixStream, RuntimeError> {
        let (uid, c) = self.find(namespace, pod, container)?;
        if !matches!(c.state, ContainerState::Running { .. }) {
            return Err(RuntimeError::NotRunning {
                pod: pod.into(),
                container: c.name,
            });
        }
        let id = c.id.trim_start_matches("rudder://");
        let bundle = launch::attempt_dir(&pod_dir(&self.shared.config.root, &uid), id);
        shim_attach::connect(&bundle).map_err(|error| match error.kind() {
            // Its shim keeps no attach point.
            std::io::ErrorKind::NotFound => RuntimeError::NotAttachable {
                pod: pod.into(),
                container: c.name,
            },
            std::io::ErrorKind::ConnectionRefused => RuntimeError::Connect {
                source: format!(
                    "the attach point of container {:?} in pod {pod:?} does not answer (its \
                     shim is gone?)",
                    c.name
                )
                .into(),
            },
            _ => RuntimeError::Connect {
                source: Box::new(error),
            },
        })
    }

    fn connect_to_pod(
        &self,
        namespace: &str,
        pod: &str,
        port: u16,
    ) -> Result<std::net::TcpStream, RuntimeError> {
        let uid = self
            .pods()
            .into_iter()
            .find(|p| p.namespace == namespace && p.name == pod)
            .map(|p| p.uid)
            .ok_or_else(|| RuntimeError::PodNotHere {
                namespace: namespace.into(),
                pod: pod.into(),
            })?;
        self.shared
            .config
            .network
            .connect_in_pod(&uid, port)
            .map_err(|source| RuntimeError::Connect {
                source: Box::new(source),
            })
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
            .ok_or_else(|| RuntimeError::PodNotHere {
                namespace: namespace.into(),
                pod: pod.into(),
            })?;
        let found = running
            .containers
            .iter()
            .chain(&running.init_containers)
            .find(|c| container.is_empty() || c.name == container)
            .cloned()
            .ok_or_else(|| RuntimeError::NoSuchContainer {
                pod: pod.into(),
                container: container.into(),
            })?;
        Ok((running.uid, found))
    }
}
