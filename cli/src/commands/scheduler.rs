//! The scheduler: embedded in every `rudder server` (active on the master holding the
//! scheduler lease, standby on the others; off with `--scheduler=false`) and on its own as
//! `rudder scheduler --server ...`.

use std::sync::Arc;

use clap::Args;
use rudder_actors::informer::SharedInformers;
use rudder_actors::scheduler::metrics::SchedulerMetrics;
use rudder_actors::scheduler::run::{spawn_in_system, SchedulerConfig, LEASE_NAME};
use rudder_proto::client::ApiClient;
use rudder_proto::metrics::Metrics;

use super::leader_elected::{until_interrupted, ElectionFlags, Running};
use super::metrics_endpoint;
use crate::session::{Session, Target};

#[derive(Args, Debug, Clone)]
pub struct SchedulerFlags {
    /// Binds sent at once; each is one store write.
    #[arg(long, default_value_t = 64)]
    binds_in_flight: usize,
    /// Percentage of nodes to find feasible before scoring (kube-scheduler's
    /// `percentageOfNodesToScore`); 0: adaptive, from 50% down to 5% as the cluster grows.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    percentage_of_nodes_to_score: u32,
}

impl SchedulerFlags {
    fn config(&self, name: &str, election: &ElectionFlags) -> anyhow::Result<SchedulerConfig> {
        Ok(SchedulerConfig {
            election: election.config(LEASE_NAME)?,
            binds_in_flight: self.binds_in_flight.max(1),
            percentage_of_nodes_to_score: Some(self.percentage_of_nodes_to_score)
                .filter(|p| *p > 0),
            on_idle: crate::allocator::give_back_when_idle,
            ..SchedulerConfig::new(name)
        })
    }
}

fn start(client: ApiClient, config: SchedulerConfig) -> anyhow::Result<Running> {
    let client = Arc::new(client);
    Running::start("scheduler", move |stopped| {
        spawn_in_system(client, config, stopped)
    })
}

/// The scheduler of a master, talking to its own API through `client`, measured in the
/// master's `metrics`.
pub fn start_embedded(
    flags: &SchedulerFlags,
    election: &ElectionFlags,
    name: &str,
    client: ApiClient,
    metrics: &Metrics,
    informers: &SharedInformers,
) -> anyhow::Result<Running> {
    let config = SchedulerConfig {
        metrics: SchedulerMetrics::registered(metrics),
        informers: informers.clone(),
        ..flags.config(name, election)?
    };
    start(client, config)
}

#[derive(Args, Debug)]
pub struct SchedulerArgs {
    /// Who acts, as operators see it in the lease (a per-process suffix is added).
    #[arg(long, default_value = "scheduler")]
    name: String,
    #[command(flatten)]
    flags: SchedulerFlags,
    #[command(flatten)]
    election: ElectionFlags,
    /// Where to serve `GET /metrics` (`0`: nowhere).
    #[arg(long, default_value = metrics_endpoint::SCHEDULER)]
    metrics_bind_address: String,
    #[command(flatten)]
    target: Target,
}

/// `rudder scheduler`: runs until interrupted.
pub async fn run(args: SchedulerArgs) -> anyhow::Result<()> {
    let metrics = Metrics::for_process();
    let config = SchedulerConfig {
        metrics: SchedulerMetrics::registered(&metrics),
        ..args.flags.config(&args.name, &args.election)?
    };
    if let Some(bound) = metrics_endpoint::serve(&args.metrics_bind_address, metrics).await? {
        println!("rudder scheduler: metrics at http://{bound}/metrics");
    }
    let session = Session::connect(&args.target).await?;
    let scheduler = start(session.client, config)?;
    println!(
        "rudder scheduler {} campaigning for the scheduler lease",
        args.name
    );
    until_interrupted().await?;
    scheduler.stop().await;
    Ok(())
}
