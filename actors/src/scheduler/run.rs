//! Where the scheduler runs: it campaigns for the Lease `kube-system/rudder-scheduler` and,
//! while it leads, runs the pod, node and namespace informers (and the claim, volume and
//! storage class ones VolumeBinding reads) and the [`Scheduler`] actor with the
//! lease's fence on every bind; when it stops leading it stops them before campaigning
//! again. [`spawn_in_system`] runs it in an actix `System` on a thread of its own.

use std::sync::Arc;

use actix::prelude::*;
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod};
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
use crate::informer::{Informer, Query};
use crate::leader::{spawn_while_leading, Campaign, ConfigError, ElectionConfig, Term};

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
}

impl SchedulerConfig {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            election: ElectionConfig::for_lease("kube-system", LEASE_NAME),
            binds_in_flight: 64,
            percentage_of_nodes_to_score: None,
            metrics: SchedulerMetrics::default(),
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
    spawn_while_leading(client, campaign, shutdown, move |fence| {
        Running::start(starter.clone(), fence, &config)
    })
}

/// The informers and the actor of one term of leadership.
struct Running {
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    namespaces: Informer<Namespace>,
    claims: Informer<PersistentVolumeClaim>,
    volumes: Informer<PersistentVolume>,
    classes: Informer<StorageClass>,
    budgets: Informer<PodDisruptionBudget>,
    scheduler: Addr<Scheduler>,
}

impl Running {
    fn start(client: Arc<ApiClient>, fence: Fence, config: &SchedulerConfig) -> Self {
        let pods = Informer::start(client.clone(), Query::all::<Pod>(), vec![]);
        let nodes = Informer::start(client.clone(), Query::all::<Node>(), vec![]);
        let namespaces = Informer::start(client.clone(), Query::all::<Namespace>(), vec![]);
        let claims = Informer::start(
            client.clone(),
            Query::all::<PersistentVolumeClaim>(),
            vec![],
        );
        let volumes = Informer::start(client.clone(), Query::all::<PersistentVolume>(), vec![]);
        let classes = Informer::start(client.clone(), Query::all::<StorageClass>(), vec![]);
        let budgets = Informer::start(client.clone(), Query::all::<PodDisruptionBudget>(), vec![]);
        let caches = Caches {
            pods: pods.cache().clone(),
            nodes: nodes.cache().clone(),
            namespaces: namespaces.cache().clone(),
            claims: claims.cache().clone(),
            volumes: volumes.cache().clone(),
            classes: classes.cache().clone(),
            budgets: budgets.cache().clone(),
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
            pods,
            nodes,
            namespaces,
            claims,
            volumes,
            classes,
            budgets,
            scheduler,
        }
    }
}

impl Term for Running {
    fn stop(self) {
        self.scheduler.do_send(Stop);
        self.pods.stop();
        self.nodes.stop();
        self.namespaces.stop();
        self.claims.stop();
        self.volumes.stop();
        self.classes.stop();
        self.budgets.stop();
    }
}
