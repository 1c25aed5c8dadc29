//! The controller manager: embedded in every `rudder server` (active on the master holding
//! the controller lease, standby on the others) and on its own as `rudder
//! controller-manager --server ...`. Both take the same flags.

use std::sync::Arc;

use clap::Args;
use rudder_actors::manager::{spawn_in_system, ManagerConfig};
use rudder_actors::selection::Selection;
use rudder_proto::client::ApiClient;

use super::leader_elected::{until_interrupted, ElectionFlags, Running};
use crate::session::{Session, Target};

#[derive(Args, Debug, Clone)]
pub struct ControllerManagerFlags {
    /// Controllers to run while holding the controller lease: `*` (every one), `none`, or a
    /// list such as `*,-replicaset`.
    #[arg(long, default_value = "*")]
    controllers: String,
    /// Objects synced at a time per controller.
    #[arg(long, default_value_t = 4)]
    concurrent_syncs: usize,
}

impl ControllerManagerFlags {
    fn config(&self, name: &str, election: &ElectionFlags) -> anyhow::Result<ManagerConfig> {
        let defaults = ManagerConfig::new(name);
        Ok(ManagerConfig {
            election: election.config(&defaults.election.lease_name)?,
            workers: self.concurrent_syncs.max(1),
            controllers: Selection::parse(&self.controllers)?,
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

/// The controller manager of a master, talking to its own API at `endpoint`; `None` when
/// `--controllers none`.
pub fn start_embedded(
    flags: &ControllerManagerFlags,
    election: &ElectionFlags,
    name: &str,
    endpoint: String,
) -> anyhow::Result<Option<Running>> {
    let config = flags.config(name, election)?;
    if config.controllers.is_empty() {
        return Ok(None);
    }
    start(ApiClient::new(vec![endpoint]), config).map(Some)
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
    #[command(flatten)]
    target: Target,
}

/// `rudder controller-manager`: runs until interrupted.
pub async fn run(args: ControllerManagerArgs) -> anyhow::Result<()> {
    let config = args.flags.config(&args.name, &args.election)?;
    anyhow::ensure!(
        !config.controllers.is_empty(),
        "--controllers none leaves nothing to run"
    );
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
