//! What the leader-elected components (the controller manager, the scheduler) share on the
//! command line: the `--leader-elect-*` timers (one set per process: `rudder server` applies
//! them to both), and a component running on a thread of its own until told to stop.

use std::thread::JoinHandle;

use anyhow::Context;
use clap::Args;
use rudder_actors::leader::{ConfigError, ElectionConfig};
use tokio::sync::watch;

use crate::durations::parse_flag_duration;

#[derive(Args, Debug, Clone)]
pub struct ElectionFlags {
    /// How long a lease (controller manager, scheduler) lasts from its last renewal.
    #[arg(long, default_value = "15s")]
    leader_elect_lease_duration: String,
    /// How long a leader acts without renewing before it steps down.
    #[arg(long, default_value = "10s")]
    leader_elect_renew_deadline: String,
    /// How often a leader renews and the others look again.
    #[arg(long, default_value = "2s")]
    leader_elect_retry_period: String,
}

impl ElectionFlags {
    /// The timers for the Lease `kube-system/<lease>`, checked.
    pub fn config(&self, lease: &str) -> anyhow::Result<ElectionConfig> {
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
            ..ElectionConfig::for_lease("kube-system", lease)
        };
        election.validate()?;
        Ok(election)
    }
}

/// A leader-elected component on a thread of its own.
pub struct Running {
    what: &'static str,
    stop: watch::Sender<bool>,
    thread: JoinHandle<Result<(), ConfigError>>,
}

impl Running {
    /// Starts `what` with `spawn`, which gets the receiver that turns true on [`stop`].
    pub fn start(
        what: &'static str,
        spawn: impl FnOnce(
            watch::Receiver<bool>,
        ) -> std::io::Result<JoinHandle<Result<(), ConfigError>>>,
    ) -> anyhow::Result<Self> {
        let (stop, stopped) = watch::channel(false);
        let thread = spawn(stopped).with_context(|| format!("starting the {what}'s thread"))?;
        Ok(Self { what, stop, thread })
    }

    /// Stops it and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let what = self.what;
        match tokio::task::spawn_blocking(move || self.thread.join()).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::warn!(%error, "the {what} ended"),
            _ => tracing::warn!("the {what}'s thread panicked"),
        }
    }
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn until_interrupted() -> anyhow::Result<()> {
    Interrupts::catch()?.wait().await;
    Ok(())
}

/// Ctrl-C and SIGTERM, caught from [`Interrupts::catch`] on (before it, either ends the
/// process at once): a process that says it is ready catches them first.
pub struct Interrupts {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Interrupts {
    pub fn catch() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// The next Ctrl-C or SIGTERM; one that came while nobody waited is not lost.
    pub async fn wait(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => tracing::info!("interrupted; stopping"),
            _ = self.terminate.recv() => tracing::info!("terminated; stopping"),
        }
    }
}
