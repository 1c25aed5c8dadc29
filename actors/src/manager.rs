//! The controller manager: it campaigns for the controller lease and, while it leads, runs
//! the informers and every enabled controller with the lease's fence on their writes; when
//! it stops leading it stops them all before it campaigns again, so a deposed leader's
//! controllers never act beside the new leader's (and their late writes are refused by the
//! fence anyway).
//!
//! ```text
//!  Elector ── Leading { fence } ──► start informers + controllers (fenced)
//!          ── Following ─────────► stop every controller, then the informers
//! ```
//!
//! Controllers are actix actors: [`spawn_in_system`] runs them in an actix `System` on a
//! thread of its own.

use std::sync::Arc;

use actix::prelude::*;
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Namespace, Node, PersistentVolume, PersistentVolumeClaim,
    ReplicationController, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::StorageClass;
use rudder_proto::api::Fence;
use rudder_proto::client::ApiClient;
use tokio::sync::watch;

use crate::controllers::cronjob::actor::{self as cronjob, CronJobController};
use crate::controllers::daemonset::actor::{self as daemonset, DaemonSetController};
use crate::controllers::deployment::actor::{self as deployment, DeploymentController};
use crate::controllers::disruption::actor::{self as disruption, DisruptionController};
use crate::controllers::endpoints::actor::{self as endpoints, EndpointsController};
use crate::controllers::garbagecollector::actor::{GarbageCollector, GraphSources};
use crate::controllers::job::actor::{self as job, JobController};
use crate::controllers::metrics::ControllerMetrics;
use crate::controllers::namespace::actor::NamespaceController;
use crate::controllers::nodeipam::actor::{NodeIpamController, Ranges};
use crate::controllers::nodeipam::allocate::{Cidr, DEFAULT_NODE_MASK};
use crate::controllers::nodelifecycle::actor::{
    self as nodelifecycle, LifecycleSettings, NodeLifecycleController,
};
use crate::controllers::nodelifecycle::health::NODE_LEASE_NAMESPACE;
use crate::controllers::podgc::actor::{self as podgc, PodGcController, PodGcSettings};
use crate::controllers::replicaset::actor::{Caches, ReplicaSetController};
use crate::controllers::runtime::{Controller, ControllerActor};
use crate::controllers::serviceaccount::actor::{self as serviceaccount, ServiceAccountController};
use crate::controllers::statefulset::actor::{self as statefulset, StatefulSetController};
use crate::controllers::volume::actor::{self as volume, VolumeController};
use crate::controllers::Stop;
use crate::events::Recorder;
use crate::informer::{ApiObject, Cache, Index, Informer, MetaOnly, Query, SharedInformers};
use crate::leader::{spawn_while_leading, Campaign, ConfigError, ElectionConfig, Term};
use crate::pods::cached::Pod;
use crate::selection::Selection;
use crate::system::OnIdle;

/// The pod network of the whole cluster unless `--cluster-cidr` says otherwise.
pub const DEFAULT_CLUSTER_CIDR: &str = "10.244.0.0/16";

/// How the controller manager runs.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Who acts (the master's `--name`); a per-process suffix makes the lease holder unique.
    pub name: String,
    pub election: ElectionConfig,
    /// Syncs at a time per controller.
    pub workers: usize,
    pub controllers: Selection,
    pub node_lifecycle: LifecycleSettings,
    /// Where nodes' pod ranges come from; `None`: nodes bring their own.
    pub pod_ranges: Option<Ranges>,
    /// PodGC's threshold of finished pods, quarantine and period.
    pub pod_gc: PodGcSettings,
    /// Where the controllers' queues and syncs are measured.
    pub metrics: ControllerMetrics,
    /// The informers this process's components share (a master's scheduler follows the
    /// same pods and nodes).
    pub informers: SharedInformers,
    /// What its thread runs each time it has nothing to do (the binary's allocator gives
    /// memory back there).
    pub on_idle: OnIdle,
}

impl ManagerConfig {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            election: ElectionConfig::default(),
            workers: 4,
            controllers: Selection::all(),
            node_lifecycle: LifecycleSettings::default(),
            pod_ranges: Some(Ranges {
                cluster: Cidr::parse(DEFAULT_CLUSTER_CIDR).expect("the default cluster CIDR"),
                node_mask: DEFAULT_NODE_MASK,
            }),
            pod_gc: PodGcSettings::default(),
            metrics: ControllerMetrics::default(),
            informers: SharedInformers::default(),
            on_idle: || {},
        }
    }
}

/// Starts the controller manager on a thread of its own (in an actix system); returns the
/// thread (it ends when `shutdown` turns true).
pub fn spawn_in_system(
    client: Arc<ApiClient>,
    config: ManagerConfig,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<std::thread::JoinHandle<Result<(), ConfigError>>> {
    let campaign = Campaign {
        name: config.name.clone(),
        election: config.election.clone(),
        what: "controller-manager",
        leading: config.metrics.leading.clone(),
    };
    let starter = client.clone();
    spawn_while_leading(client, campaign, config.on_idle, shutdown, move |fence| {
        Running::start(starter.clone(), fence, &config)
    })
}

/// The informers and controllers of one term of leadership.
struct Running {
    /// Every controller started, to be told to [`Stop`].
    controllers: Vec<Recipient<Stop>>,
    /// Every informer started, to be stopped after the controllers.
    informers: Vec<Box<dyn Fn()>>,
    /// Where the informers of whole kinds come from, and this term's holds on them (let go
    /// after the controllers stop; an informer stops when nobody holds it).
    shared: SharedInformers,
    held: Vec<Box<dyn std::any::Any>>,
    metrics: ControllerMetrics,
}

impl Running {
    fn start(client: Arc<ApiClient>, fence: Fence, config: &ManagerConfig) -> Self {
        let mut running = Self {
            controllers: Vec::new(),
            informers: Vec::new(),
            shared: config.informers.clone(),
            held: Vec::new(),
            metrics: config.metrics.clone(),
        };
        // No index: every controller finds its pods by namespace and selector, then checks
        // the controller reference (an index per pod would be memory nobody reads).
        let pods = running.inform::<Pod>(&client, vec![]);
        let replica_sets = running.inform::<ReplicaSet>(&client, vec![]);
        let controllers = running.inform::<ReplicationController>(&client, vec![]);
        let deployments = running.inform::<Deployment>(&client, vec![]);
        let jobs = running.inform::<Job>(&client, vec![]);
        let nodes = running.inform::<Node>(&client, vec![]);
        let daemon_sets = running.inform::<DaemonSet>(&client, vec![]);
        let revisions = running.inform::<ControllerRevision>(&client, vec![]);
        let stateful_sets = running.inform::<StatefulSet>(&client, vec![]);
        let claims = running.inform::<PersistentVolumeClaim>(&client, vec![]);
        let node_leases = running.inform_query::<Lease>(
            &client,
            Query::all::<Lease>().in_namespace(NODE_LEASE_NAMESPACE),
        );
        let workers = config.workers;
        if config.controllers.is_enabled("disruption") {
            let caches = disruption::Caches {
                budgets: running.inform::<PodDisruptionBudget>(&client, vec![]),
                pods: pods.clone(),
                replica_sets: replica_sets.clone(),
                controllers: controllers.clone(),
                stateful_sets: stateful_sets.clone(),
                deployments: deployments.clone(),
            };
            let recorder = Recorder::new(client.clone(), "controllermanager", "");
            running.run(
                DisruptionController::new(client.clone(), fence.clone(), caches, recorder),
                workers,
            );
        }
        if config.controllers.is_enabled("endpoints") {
            let caches = endpoints::Caches {
                services: running.inform::<Service>(&client, vec![]),
                pods: pods.clone(),
                endpoints: running.inform::<Endpoints>(&client, vec![]),
                slices: running.inform::<EndpointSlice>(&client, vec![]),
            };
            running.run(
                EndpointsController::new(client.clone(), fence.clone(), caches),
                workers,
            );
        }
        if config.controllers.is_enabled("replicaset") {
            let caches = Caches {
                pods: pods.clone(),
                replica_sets: replica_sets.clone(),
                controllers,
            };
            running.run(
                ReplicaSetController::new(
                    client.clone(),
                    fence.clone(),
                    caches,
                    Recorder::new(client.clone(), "replicaset-controller", ""),
                ),
                workers,
            );
        }
        if config.controllers.is_enabled("deployment") {
            let caches = deployment::Caches {
                deployments,
                replica_sets,
                pods: pods.clone(),
            };
            running.run(
                DeploymentController::new(
                    client.clone(),
                    fence.clone(),
                    caches,
                    Recorder::new(client.clone(), "deployment-controller", ""),
                ),
                workers,
            );
        }
        if config.controllers.is_enabled("nodelifecycle") {
            let caches = nodelifecycle::Caches {
                nodes: nodes.clone(),
                leases: node_leases,
                pods: pods.clone(),
            };
            let settings = config.node_lifecycle;
            running.run(
                NodeLifecycleController::new(client.clone(), fence.clone(), caches, settings),
                1,
            );
        }
        if let Some(ranges) = config.pod_ranges {
            if config.controllers.is_enabled("nodeipam") {
                let controller =
                    NodeIpamController::new(client.clone(), fence.clone(), nodes.clone(), ranges);
                running.run(controller, 1);
            }
        }
        if config.controllers.is_enabled("podgc") {
            let caches = podgc::Caches {
                pods: pods.clone(),
                nodes: nodes.clone(),
            };
            let controller =
                PodGcController::new(client.clone(), fence.clone(), caches, config.pod_gc);
            running.run(controller, 1);
        }
        if config.controllers.is_enabled("serviceaccount") {
            let caches = serviceaccount::Caches {
                namespaces: running.inform::<Namespace>(&client, vec![]),
                accounts: running.inform::<ServiceAccount>(&client, vec![]),
            };
            let controller = ServiceAccountController::new(client.clone(), fence.clone(), caches);
            running.run(controller, workers);
        }
        if config.controllers.is_enabled("persistentvolume-binder") {
            let caches = volume::Caches {
                claims: claims.clone(),
                volumes: running.inform::<PersistentVolume>(&client, vec![]),
                classes: running.inform::<StorageClass>(&client, vec![]),
                nodes: nodes.clone(),
            };
            let recorder = Recorder::new(client.clone(), volume::COMPONENT, "");
            running.run(
                VolumeController::new(client.clone(), fence.clone(), caches, recorder),
                workers,
            );
        }
        if config.controllers.is_enabled("daemonset") {
            let caches = daemonset::Caches {
                daemon_sets,
                nodes,
                pods: pods.clone(),
                revisions: revisions.clone(),
            };
            running.run(
                DaemonSetController::new(
                    client.clone(),
                    fence.clone(),
                    caches,
                    Recorder::new(client.clone(), "daemonset-controller", ""),
                ),
                workers,
            );
        }
        if config.controllers.is_enabled("statefulset") {
            let caches = statefulset::Caches {
                stateful_sets,
                pods: pods.clone(),
                claims: claims.clone(),
                revisions: revisions.clone(),
            };
            running.run(
                StatefulSetController::new(
                    client.clone(),
                    fence.clone(),
                    caches,
                    Recorder::new(client.clone(), "statefulset-controller", ""),
                ),
                workers,
            );
        }
        if config.controllers.is_enabled("cronjob") {
            let caches = cronjob::Caches {
                cron_jobs: running.inform::<CronJob>(&client, vec![]),
                jobs: jobs.clone(),
            };
            let recorder = Recorder::new(client.clone(), "cronjob-controller", "");
            running.run(
                CronJobController::new(client.clone(), fence.clone(), caches, recorder),
                workers,
            );
        }
        if config.controllers.is_enabled("garbagecollector") {
            let sources = running.graph_sources(&client, &pods);
            running.run(
                GarbageCollector::new(client.clone(), fence.clone(), sources),
                workers,
            );
        }
        if config.controllers.is_enabled("namespace") {
            let namespaces = running.inform::<Namespace>(&client, vec![]);
            running.run(
                NamespaceController::new(client.clone(), fence.clone(), namespaces),
                workers,
            );
        }
        if config.controllers.is_enabled("job") {
            let caches = job::Caches { jobs, pods };
            let recorder = Recorder::new(client.clone(), "job-controller", "");
            running.run(JobController::new(client, fence, caches, recorder), workers);
        }
        running
    }

    /// The cache of every object of kind `K`, from the process's shared informers (started
    /// if no other component follows `K`).
    fn inform<K: ApiObject>(
        &mut self,
        client: &Arc<ApiClient>,
        indexes: Vec<Index<K>>,
    ) -> Cache<K> {
        let shared = self.shared.all::<K>(client, indexes);
        let cache = shared.cache().clone();
        self.held.push(Box::new(shared));
        cache
    }

    /// Starts a metadata-only informer over every object of kind `K`; returns its cache.
    fn inform_meta<K: ApiObject>(&mut self, client: &Arc<ApiClient>) -> Cache<MetaOnly<K>> {
        self.start_informer(client, Query::all::<K>(), vec![])
    }

    /// The garbage collector's view of every kind whose objects may own or be owned (all
    /// the API serves but Events, which nothing owns and which are many). Pods, the many,
    /// come from the cache the other controllers and the scheduler share: a metadata-only
    /// copy of them was 8 MB of a leading master's heap at 10,000 pods, and a second watch
    /// decoding every pod change (heaptrack, BENCHMARKS.md).
    fn graph_sources(&mut self, client: &Arc<ApiClient>, pods: &Cache<Pod>) -> GraphSources {
        let mut sources = GraphSources::default();
        sources.add(pods.clone());
        sources.add(self.inform_meta::<ReplicaSet>(client));
        sources.add(self.inform_meta::<ReplicationController>(client));
        sources.add(self.inform_meta::<Deployment>(client));
        sources.add(self.inform_meta::<DaemonSet>(client));
        sources.add(self.inform_meta::<StatefulSet>(client));
        sources.add(self.inform_meta::<ControllerRevision>(client));
        sources.add(self.inform_meta::<Job>(client));
        sources.add(self.inform_meta::<CronJob>(client));
        sources.add(self.inform_meta::<ConfigMap>(client));
        sources.add(self.inform_meta::<Secret>(client));
        sources.add(self.inform_meta::<Service>(client));
        sources.add(self.inform_meta::<Endpoints>(client));
        sources.add(self.inform_meta::<EndpointSlice>(client));
        sources.add(self.inform_meta::<PersistentVolumeClaim>(client));
        sources.add(self.inform_meta::<PersistentVolume>(client));
        sources.add(self.inform_meta::<Lease>(client));
        sources.add(self.inform_meta::<Namespace>(client));
        sources.add(self.inform_meta::<Node>(client));
        sources.add(self.inform_meta::<PriorityClass>(client));
        sources.add(self.inform_meta::<ServiceAccount>(client));
        sources.add(self.inform_meta::<PodDisruptionBudget>(client));
        sources.add(self.inform_meta::<StorageClass>(client));
        sources
    }

    /// Starts an informer over the objects `query` selects; returns its cache.
    fn inform_query<K: ApiObject>(&mut self, client: &Arc<ApiClient>, query: Query) -> Cache<K> {
        self.start_informer(client, query, vec![])
    }

    fn start_informer<K: ApiObject>(
        &mut self,
        client: &Arc<ApiClient>,
        query: Query,
        indexes: Vec<Index<K>>,
    ) -> Cache<K> {
        let informer = Informer::start(client.clone(), query, indexes);
        let cache = informer.cache().clone();
        self.informers.push(Box::new(move || informer.stop()));
        cache
    }

    /// Starts `controller` in an actor of its own.
    fn run<C: Controller>(&mut self, controller: C, workers: usize) {
        let actor = ControllerActor::new(controller, workers, &self.metrics).start();
        self.controllers.push(actor.recipient());
    }
}

impl Term for Running {
    /// Stops every controller, then the informers feeding them (a shared one once nobody
    /// else holds it).
    fn stop(self) {
        for controller in &self.controllers {
            controller.do_send(Stop);
        }
        for stop in &self.informers {
            stop();
        }
        drop(self.held);
    }
}
