//! [`while_leading`]: campaigns for a Lease and runs something for each term of leadership:
//! started with the term's fence when this member leads, stopped when it stops leading (or
//! the fence changes: a new term), before anything is started again. The controller
//! manager and the scheduler both run this way.
//!
//! ```text
//!  Elector ── Leading { fence } ──► start(fence)   (if not already running for that fence)
//!          ── Following ─────────► stop(running)
//!  shutdown ─► stop(running), then the lease released (a successor takes it at once)
//! ```

use std::sync::Arc;
use std::thread::JoinHandle;

use prometheus_client::metrics::gauge::Gauge;
use rudder_proto::api::Fence;
use rudder_proto::client::ApiClient;
use tokio::sync::watch;

use super::{unique_identity, ConfigError, ElectionConfig, Elector, Leadership};
use crate::system::{self, OnIdle};

/// Who campaigns and for which Lease.
#[derive(Debug, Clone)]
pub struct Campaign {
    /// The member's name; a per-process suffix makes the holder identity unique.
    pub name: String,
    pub election: ElectionConfig,
    /// The campaigner in logs and the thread's name ("controller-manager", "scheduler").
    pub what: &'static str,
    /// Set to 1 while a term runs here, 0 otherwise (a metric).
    pub leading: Gauge,
}

/// What runs during one term of leadership.
pub trait Term {
    /// Stops everything the term started.
    fn stop(self);
}

/// Starts an actix system on a thread of its own and runs [`while_leading`] there; returns
/// the thread (it ends when `shutdown` turns true). The thread runs `on_idle` each time it
/// parks.
pub fn spawn_while_leading<T, S>(
    client: Arc<ApiClient>,
    campaign: Campaign,
    on_idle: OnIdle,
    shutdown: watch::Receiver<bool>,
    start: S,
) -> std::io::Result<JoinHandle<Result<(), ConfigError>>>
where
    T: Term,
    S: FnMut(Fence) -> T + Send + 'static,
{
    std::thread::Builder::new()
        .name(campaign.what.into())
        .spawn(move || {
            system::with_idle(on_idle).block_on(while_leading(client, campaign, shutdown, start))
        })
}

/// Campaigns for the Lease until `shutdown` turns true (or its sender is dropped): `start`
/// runs at the start of each term with the term's fence, and what it returns is stopped when
/// the term ends. Controllers are actix actors: await this inside an actix `System`.
pub async fn while_leading<T: Term>(
    client: Arc<ApiClient>,
    campaign: Campaign,
    mut shutdown: watch::Receiver<bool>,
    mut start: impl FnMut(Fence) -> T,
) -> Result<(), ConfigError> {
    let Campaign {
        name,
        election,
        what,
        leading,
    } = campaign;
    let identity = unique_identity(&name);
    tracing::info!(%identity, lease = %election.lease_name, "{what} campaigning");
    let elector = Elector::start(client, identity, election)?;
    let mut leadership = elector.subscribe();
    let mut running: Option<(Fence, T)> = None;
    loop {
        let now = leadership.borrow().clone();
        match now {
            Leadership::Leading { fence } => {
                if running.as_ref().is_some_and(|(f, _)| *f != fence) {
                    if let Some((_, term)) = running.take() {
                        term.stop();
                    }
                }
                if running.is_none() {
                    tracing::info!(epoch = fence.epoch, holder = %fence.holder, "{what} leading: starting");
                    running = Some((fence.clone(), start(fence)));
                }
            }
            Leadership::Following { holder } => {
                if let Some((_, term)) = running.take() {
                    tracing::info!(?holder, "{what} no longer leading: stopping");
                    term.stop();
                }
            }
        }
        leading.set(i64::from(running.is_some()));
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
    if let Some((_, term)) = running.take() {
        term.stop();
    }
    leading.set(0);
    // A clean shutdown: the successor need not wait out the lease.
    elector.release().await;
    Ok(())
}
