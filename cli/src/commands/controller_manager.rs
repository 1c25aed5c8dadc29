//! The controller manager: embedded in every `rudder server` (active on the master holding
//! the controller lease, standby on the others) and on its own as `rudder
//! controller-manager --server ...`. Both take the same flags.

use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use rudder_actors::controllers::metrics::ControllerMetrics;
use rudder_actors::controllers::nodeipam::actor::Ranges;
use rudder_actors::controllers::nodeipam::allocate::{Cidr, DEFAULT_NODE_MASK};
use rudder_actors::controllers::nodelifecycle::health::Grace;
use rudder_actors::controllers::podgc::reconcile::DEFAULT_TERMINATED_POD_GC_THRESHOLD;
use rudder_actors::informer::SharedInformers;
use rudder_actors::manager::{spawn_in_system, ManagerConfig, DEFAULT_CLUSTER_CIDR};
use rudder_actors::selection::Selection;
use rudder_proto::client::ApiClient;
use rudder_proto::metrics::Metrics;

use super::leader_elected::{until_interrupted, ElectionFlags, Running};
use super::metrics_endpoint;
use crate::durations::parse_flag_duration;
use crate::session::{Session, Target};

#[derive(Args, Debug, Clone)]
pub struct ControllerManagerFlags {
    /// Controllers to run while holding the controller lease: `*` (every one), `none`, or a
    /// list such as `*,-replicaset`. Without `garbagecollector` and `namespace` deletions
    /// never finish their cascade (dependents stay; namespaces stay Terminating).
    #[arg(long, default_value = "*")]
    controllers: String,
    /// Objects synced at a time per controller.
    #[arg(long, default_value_t = 4)]
    concurrent_syncs: usize,
    /// The pod network of the whole cluster: nodes registered without --pod-cidr get a
    /// block of it.
    #[arg(long, default_value = DEFAULT_CLUSTER_CIDR)]
    cluster_cidr: String,
    /// The size of each node's block of --cluster-cidr.
    #[arg(long, default_value_t = DEFAULT_NODE_MASK)]
    node_cidr_mask_size: u8,
    /// Give nodes without a pod range a block of --cluster-cidr.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    allocate_node_cidrs: bool,
    /// How long a node may go without renewing its Lease before it is marked Unknown.
    #[arg(long, default_value = "40s")]
    node_monitor_grace_period: String,
    /// How long a node that never reported Ready may take before it is marked Unknown.
    #[arg(long, default_value = "60s")]
    node_startup_grace_period: String,
    /// How often node health is looked at.
    #[arg(long, default_value = "5s")]
    node_monitor_period: String,
    /// Nodes whose pods are evicted per second in a healthy zone.
    #[arg(long, default_value_t = 0.1)]
    node_eviction_rate: f64,
    /// Finished pods (Succeeded or Failed) kept before the oldest are deleted; 0 keeps them
    /// all.
    #[arg(long, default_value_t = DEFAULT_TERMINATED_POD_GC_THRESHOLD)]
    terminated_pod_gc_threshold: u32,
}

impl ControllerManagerFlags {
    /// The pod network of the whole cluster (what the masters publish for nodes).
    pub fn cluster_cidr(&self) -> &str {
        &self.cluster_cidr
    }

    fn config(&self, name: &str, election: &ElectionFlags) -> anyhow::Result<ManagerConfig> {
        let defaults = ManagerConfig::new(name);
        let duration = |flag: &str, value: &str| parse_flag_duration(flag, value, "");
        anyhow::ensure!(
            self.node_eviction_rate >= 0.0 && self.node_eviction_rate.is_finite(),
            "--node-eviction-rate {} must be a rate of zero or more nodes per second",
            self.node_eviction_rate
        );
        let mut node_lifecycle = defaults.node_lifecycle;
        node_lifecycle.settings.grace = Grace {
            monitor: duration(
                "--node-monitor-grace-period",
                &self.node_monitor_grace_period,
            )?,
            startup: duration(
                "--node-startup-grace-period",
                &self.node_startup_grace_period,
            )?,
        };
        node_lifecycle.settings.rates.eviction_rate = self.node_eviction_rate;
        node_lifecycle.monitor_period =
            duration("--node-monitor-period", &self.node_monitor_period)?;
        let mut pod_gc = defaults.pod_gc;
        pod_gc.settings.terminated_pod_gc_threshold = self.terminated_pod_gc_threshold;
        let pod_ranges = if self.allocate_node_cidrs {
            let cluster = Cidr::parse(&self.cluster_cidr).context("--cluster-cidr")?;
            anyhow::ensure!(
                (cluster.prefix..=32).contains(&self.node_cidr_mask_size),
                "--node-cidr-mask-size {} must be between the cluster CIDR's prefix /{} and 32",
                self.node_cidr_mask_size,
                cluster.prefix
            );
            Some(Ranges {
                cluster,
                node_mask: self.node_cidr_mask_size,
            })
        } else {
            None
        };
        Ok(ManagerConfig {
            election: election.config(&defaults.election.lease_name)?,
            workers: self.concurrent_syncs.max(1),
            controllers: Selection::parse(&self.controllers)?,
            node_lifecycle,
            pod_ranges,
            pod_gc,
            on_idle: crate::allocator::give_back_when_idle,
            ..defaults
        })
    }
}

fn start(client: ApiClient, config: ManagerConfig) -> anyhow::Result<Running> {
    let client = Arc::new(client);
    Running::start("controller manager", move |stopped| {
        spawn_in_system(client, config, stopped)
    })
}

/// The controller manager of a master, talking to its own API through `client`, measured in
/// the master's `metrics`; `None` when `--controllers none`.
pub fn start_embedded(
    flags: &ControllerManagerFlags,
    election: &ElectionFlags,
    name: &str,
    client: ApiClient,
    metrics: &Metrics,
    informers: &SharedInformers,
) -> anyhow::Result<Option<Running>> {
    let mut config = flags.config(name, election)?;
    if config.controllers.is_empty() {
        return Ok(None);
    }
    config.metrics = ControllerMetrics::registered(metrics);
    config.informers = informers.clone();
    start(client, config).map(Some)
}

#[derive(Args, Debug)]
pub struct ControllerManagerArgs {
    /// Who acts, as operators see it in the lease (a per-process suffix is added).
    #[arg(long, default_value = "controller-manager")]
    name: String,
    #[command(flatten)]
    flags: ControllerManagerFlags,
    #[command(flatten)]
    election: ElectionFlags,
    /// Where to serve `GET /metrics` (`0`: nowhere).
    #[arg(long, default_value = metrics_endpoint::CONTROLLER_MANAGER)]
    metrics_bind_address: String,
    #[command(flatten)]
    target: Target,
}

/// `rudder controller-manager`: runs until interrupted.
pub async fn run(args: ControllerManagerArgs) -> anyhow::Result<()> {
    let mut config = args.flags.config(&args.name, &args.election)?;
    anyhow::ensure!(
        !config.controllers.is_empty(),
        "--controllers none leaves nothing to run"
    );
    let metrics = Metrics::for_process();
    config.metrics = ControllerMetrics::registered(&metrics);
    if let Some(bound) = metrics_endpoint::serve(&args.metrics_bind_address, metrics).await? {
        println!("rudder controller-manager: metrics at http://{bound}/metrics");
    }
    let session = Session::connect(&args.target).await?;
    let manager = start(session.client, config)?;
    println!(
        "rudder controller-manager {} campaigning for the controller lease",
        args.name
    );
    until_interrupted().await?;
    manager.stop().await;
    Ok(())
}
