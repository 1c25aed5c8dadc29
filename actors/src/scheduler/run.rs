//! Where the scheduler runs: it campaigns for the Lease `kube-system/rudder-scheduler` and,
//! while it leads, runs the pod, node and namespace informers (and the claim, volume and
//! storage class ones VolumeBinding reads) and the [`Scheduler`] actor with the
//! lease's fence on every bind; when it stops leading it stops them before campaigning
//! again. The informers come from [`SchedulerConfig::informers`]: in a master, the ones the
//! controller manager follows too. [`spawn_in_system`] runs it in an actix `System` on a thread of its own.

use std::sync::Arc;

use actix::prelude::*;
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use rudder_proto::api::Fence;
use rudder_proto::client::ApiClient;
use tokio::sync::watch;

use super::actor::{Caches, Scheduler, Settings};
use super::decide::Options;
use super::metrics::SchedulerMetrics;
use crate::controllers::Stop;
use crate::events::Recorder;
use crate::informer::{SharedCache, SharedInformers};
use crate::leader::{spawn_while_leading, Campaign, ConfigError, ElectionConfig, Term};
use crate::pods::cached::Pod;
use crate::system::OnIdle;

/// The scheduler's Lease in `kube-system`.
pub const LEASE_NAME: &str = "rudder-scheduler";
/// The component events name (kube-scheduler's).
pub const COMPONENT: &str = "default-scheduler";

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Who acts (the master's `--name`); a per-process suffix makes the lease holder unique.
    pub name: String,
    pub election: ElectionConfig,
    /// Binds in flight at once.
    pub binds_in_flight: usize,
    /// `percentageOfNodesToScore`; `None`: adaptive.
    pub percentage_of_nodes_to_score: Option<u32>,
    /// Where decisions, binds and the queue are measured.
    pub metrics: SchedulerMetrics,
    /// The informers this process's components share (a master's controller manager
    /// follows the same pods and nodes).
    pub informers: SharedInformers,
    /// What its thread runs each time it has nothing to do (the binary's allocator gives
    /// memory back there).
    pub on_idle: OnIdle,
}

impl SchedulerConfig {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            election: ElectionConfig::for_lease("kube-system", LEASE_NAME),
            binds_in_flight: 64,
            percentage_of_nodes_to_score: None,
            metrics: SchedulerMetrics::default(),
            informers: SharedInformers::default(),
            on_idle: || {},
        }
    }
}

/// Starts the scheduler on a thread of its own (in an actix system); returns the thread (it
/// ends when `shutdown` turns true).
pub fn spawn_in_system(
    client: Arc<ApiClient>,
    config: SchedulerConfig,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<std::thread::JoinHandle<Result<(), ConfigError>>> {
    let campaign = Campaign {
        name: config.name.clone(),
        election: config.election.clone(),
        what: "scheduler",
        leading: config.metrics.leading.clone(),
    };
    let starter = client.clone();
    spawn_while_leading(client, campaign, config.on_idle, shutdown, move |fence| {
        Running::start(starter.clone(), fence, &config)
    })
}

/// The caches and the actor of one term of leadership.
struct Running {
    /// The term's holds on the shared informers (each stops when nobody holds it).
    caches: Held,
    scheduler: Addr<Scheduler>,
}

/// What the scheduler follows, shared with the other components of the process.
struct Held {
    pods: SharedCache<Pod>,
    nodes: SharedCache<Node>,
    namespaces: SharedCache<Namespace>,
    claims: SharedCache<PersistentVolumeClaim>,
    volumes: SharedCache<PersistentVolume>,
    classes: SharedCache<StorageClass>,
    budgets: SharedCache<PodDisruptionBudget>,
}

impl Running {
    fn start(client: Arc<ApiClient>, fence: Fence, config: &SchedulerConfig) -> Self {
        let shared = &config.informers;
        let held = Held {
            pods: shared.all(&client, vec![]),
            nodes: shared.all(&client, vec![]),
            namespaces: shared.all(&client, vec![]),
            claims: shared.all(&client, vec![]),
            volumes: shared.all(&client, vec![]),
            classes: shared.all(&client, vec![]),
            budgets: shared.all(&client, vec![]),
        };
        let caches = Caches {
            pods: held.pods.cache().clone(),
            nodes: held.nodes.cache().clone(),
            namespaces: held.namespaces.cache().clone(),
            claims: held.claims.cache().clone(),
            volumes: held.volumes.cache().clone(),
            classes: held.classes.cache().clone(),
            budgets: held.budgets.cache().clone(),
        };
        let recorder = Recorder::new(client.clone(), COMPONENT, &config.name);
        let settings = Settings {
            binds_in_flight: config.binds_in_flight.max(1),
            options: Options {
                percentage_of_nodes_to_score: config.percentage_of_nodes_to_score,
                ..Options::default()
            },
            metrics: config.metrics.clone(),
        };
        let scheduler = Scheduler::new(client, fence, recorder, caches, settings).start();
        Self {
            caches: held,
            scheduler,
        }
    }
}

impl Term for Running {
    /// Stops the actor, then lets go of the caches.
    fn stop(self) {
        self.scheduler.do_send(Stop);
        drop(self.caches);
    }
}
