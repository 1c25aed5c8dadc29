//! The controller manager: embedded in every `rudder server` (active on the master holding
//! the controller lease, standby on the others) and on its own as `rudder
//! controller-manager --server ...`. Both take the same flags.

use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use rudder_actors::leader::{ConfigError, ElectionConfig};
use rudder_actors::manager::{spawn_in_system, ManagerConfig};
use rudder_actors::selection::Selection;
use rudder_proto::client::ApiClient;
use tokio::sync::watch;

use crate::durations::parse_flag_duration;
use crate::session::{Session, Target};

#[derive(Args, Debug, Clone)]
pub struct ControllerManagerFlags {
    /// Controllers to run while holding the controller lease: `*` (every one), `none`, or a
    /// list such as `*,-replicaset`.
    #[arg(long, default_value = "*")]
    controllers: String,
    /// How long the controller lease lasts from its last renewal.
    #[arg(long, default_value = "15s")]
    leader_elect_lease_duration: String,
    /// How long the leader acts without renewing before it steps down.
    #[arg(long, default_value = "10s")]
    leader_elect_renew_deadline: String,
    /// How often the leader renews and the others look again.
    #[arg(long, default_value = "2s")]
    leader_elect_retry_period: String,
    /// Objects synced at a time per controller.
    #[arg(long, default_value_t = 4)]
    concurrent_syncs: usize,
}

impl ControllerManagerFlags {
    fn config(&self, name: &str) -> anyhow::Result<ManagerConfig> {
        let election = ElectionConfig {
            lease_duration: parse_flag_duration(
                "--leader-elect-lease-duration",
                &self.leader_elect_lease_duration,
                "",
            )?,
            renew_deadline: parse_flag_duration(
                "--leader-elect-renew-deadline",
                &self.leader_elect_renew_deadline,
                "",
            )?,
            retry_period: parse_flag_duration(
                "--leader-elect-retry-period",
                &self.leader_elect_retry_period,
                "",
            )?,
            ..ElectionConfig::default()
        };
        election.validate()?;
        Ok(ManagerConfig {
            election,
            workers: self.concurrent_syncs.max(1),
            controllers: Selection::parse(&self.controllers)?,
            ..ManagerConfig::new(name)
        })
    }
}

/// A controller manager running on its own thread.
pub struct RunningManager {
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<Result<(), ConfigError>>,
}

impl RunningManager {
    fn start(client: ApiClient, config: ManagerConfig) -> anyhow::Result<Self> {
        let (stop, stopped) = watch::channel(false);
        let thread = spawn_in_system(Arc::new(client), config, stopped)
            .context("starting the controller manager's thread")?;
        Ok(Self { stop, thread })
    }

    /// Stops every controller and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        match tokio::task::spawn_blocking(move || self.thread.join()).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::warn!(%error, "the controller manager ended"),
            _ => tracing::warn!("the controller manager's thread panicked"),
        }
    }
}

/// The controller manager of a master, talking to its own API at `endpoint`; `None` when
/// `--controllers none`.
pub fn start_embedded(
    flags: &ControllerManagerFlags,
    name: &str,
    endpoint: String,
) -> anyhow::Result<Option<RunningManager>> {
    let config = flags.config(name)?;
    if config.controllers.is_empty() {
        return Ok(None);
    }
    RunningManager::start(ApiClient::new(vec![endpoint]), config).map(Some)
}

#[derive(Args, Debug)]
pub struct ControllerManagerArgs {
    /// Who acts, as operators see it in the lease (a per-process suffix is added).
    #[arg(long, default_value = "controller-manager")]
    name: String,
    #[command(flatten)]
    flags: ControllerManagerFlags,
    #[command(flatten)]
    target: Target,
}

/// `rudder controller-manager`: runs until interrupted.
pub async fn run(args: ControllerManagerArgs) -> anyhow::Result<()> {
    let config = args.flags.config(&args.name)?;
    anyhow::ensure!(
        !config.controllers.is_empty(),
        "--controllers none leaves nothing to run"
    );
    let session = Session::connect(&args.target).await?;
    let manager = RunningManager::start(session.client, config)?;
    println!(
        "rudder controller-manager {} campaigning for the controller lease",
        args.name
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; stopping"),
        _ = terminate.recv() => tracing::info!("terminated; stopping"),
    }
    manager.stop().await;
    Ok(())
}
