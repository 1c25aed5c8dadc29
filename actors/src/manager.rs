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
//! Controllers are actix actors: [`run`] must be awaited inside an actix `System`
//! ([`spawn_in_system`] starts one on a thread of its own).

use std::sync::Arc;

use actix::prelude::*;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use rudder_proto::api::Fence;
use rudder_proto::client::ApiClient;
use tokio::sync::watch;

use crate::controllers::deployment::actor::{self as deployment, DeploymentController};
use crate::controllers::job::actor::{self as job, JobController};
use crate::controllers::replicaset::actor::{Caches, ReplicaSetController};
use crate::controllers::Stop;
use crate::informer::{by_owner_uid, Informer, Query};
use crate::leader::{unique_identity, ConfigError, ElectionConfig, Elector, Leadership};
use crate::selection::Selection;

/// How the controller manager runs.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Who acts (the master's `--name`); a per-process suffix makes the lease holder unique.
    pub name: String,
    pub election: ElectionConfig,
    /// Syncs at a time per controller.
    pub workers: usize,
    pub controllers: Selection,
}

impl ManagerConfig {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            election: ElectionConfig::default(),
            workers: 4,
            controllers: Selection::all(),
        }
    }
}

/// Runs the controller manager until `shutdown` turns true (or its sender is dropped).
pub async fn run(
    client: Arc<ApiClient>,
    config: ManagerConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConfigError> {
    let identity = unique_identity(&config.name);
    tracing::info!(%identity, lease = %config.election.lease_name, "controller manager campaigning");
    let elector = Elector::start(client.clone(), identity, config.election.clone())?;
    let mut leadership = elector.subscribe();
    let mut running: Option<Running> = None;
    loop {
        let now = leadership.borrow().clone();
        match now {
            Leadership::Leading { fence } => {
                if running.as_ref().is_some_and(|r| r.fence != fence) {
                    if let Some(old) = running.take() {
                        old.stop();
                    }
                }
                if running.is_none() {
                    tracing::info!(epoch = fence.epoch, holder = %fence.holder, "leading: starting the controllers");
                    running = Some(Running::start(client.clone(), fence, &config));
                }
            }
            Leadership::Following { holder } => {
                if let Some(r) = running.take() {
                    tracing::info!(?holder, "no longer leading: stopping the controllers");
                    r.stop();
                }
            }
        }
        tokio::select! {
            changed = leadership.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
    }
    if let Some(r) = running.take() {
        r.stop();
    }
    elector.stop().await;
    Ok(())
}

/// Starts an actix system on a thread of its own and runs the controller manager there;
/// returns the thread (it ends when `shutdown` turns true).
pub fn spawn_in_system(
    client: Arc<ApiClient>,
    config: ManagerConfig,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<std::thread::JoinHandle<Result<(), ConfigError>>> {
    std::thread::Builder::new()
        .name("controller-manager".into())
        .spawn(move || actix::System::new().block_on(run(client, config, shutdown)))
}

/// The informers and controllers of one term of leadership.
struct Running {
    fence: Fence,
    pods: Informer<Pod>,
    replica_sets: Informer<ReplicaSet>,
    controllers: Informer<ReplicationController>,
    deployments: Informer<Deployment>,
    replica_set_controller: Option<Addr<ReplicaSetController>>,
    deployment_controller: Option<Addr<DeploymentController>>,
    jobs: Informer<Job>,
    job_controller: Option<Addr<JobController>>,
}

impl Running {
    fn start(client: Arc<ApiClient>, fence: Fence, config: &ManagerConfig) -> Self {
        let pods = Informer::start(client.clone(), Query::all::<Pod>(), vec![by_owner_uid()]);
        let replica_sets = Informer::start(client.clone(), Query::all::<ReplicaSet>(), vec![]);
        let controllers = Informer::start(
            client.clone(),
            Query::all::<ReplicationController>(),
            vec![],
        );
        let caches = Caches {
            pods: pods.cache().clone(),
            replica_sets: replica_sets.cache().clone(),
            controllers: controllers.cache().clone(),
        };
        let deployments = Informer::start(client.clone(), Query::all::<Deployment>(), vec![]);
        let deployment_caches = deployment::Caches {
            deployments: deployments.cache().clone(),
            replica_sets: replica_sets.cache().clone(),
            pods: pods.cache().clone(),
        };
        let deployment_controller = config.controllers.is_enabled("deployment").then(|| {
            DeploymentController::new(
                client.clone(),
                fence.clone(),
                deployment_caches,
                config.workers,
            )
            .start()
        });
        let jobs = Informer::start(client.clone(), Query::all::<Job>(), vec![]);
        let job_caches = job::Caches {
            jobs: jobs.cache().clone(),
            pods: pods.cache().clone(),
        };
        let job_controller = config.controllers.is_enabled("job").then(|| {
            JobController::new(client.clone(), fence.clone(), job_caches, config.workers).start()
        });
        let replica_set_controller = config.controllers.is_enabled("replicaset").then(|| {
            ReplicaSetController::new(client, fence.clone(), caches, config.workers).start()
        });
        Self {
            fence,
            pods,
            replica_sets,
            controllers,
            deployments,
            replica_set_controller,
            deployment_controller,
            jobs,
            job_controller,
        }
    }

    fn stop(self) {
        if let Some(controller) = &self.replica_set_controller {
            controller.do_send(Stop);
        }
        if let Some(controller) = &self.deployment_controller {
            controller.do_send(Stop);
        }
        if let Some(controller) = &self.job_controller {
            controller.do_send(Stop);
        }
        self.deployments.stop();
        self.jobs.stop();
        self.pods.stop();
        self.replica_sets.stop();
        self.controllers.stop();
    }
}
