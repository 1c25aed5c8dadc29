//! `rudder`: the one binary. `rudder server` runs a store member, `rudder up` a local cluster;
//! later verbs (`node`, `get`, `apply`, …) arrive with their issues.
//! Each verb lives in `commands/<verb>.rs`.

mod commands;
mod output;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rudder",
    version,
    about = "Rudder: a Kubernetes-style orchestrator with an embedded Raft store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one master: the replicated store and its etcd-compatible client API.
    Server(Box<commands::server::ServerArgs>),
    /// Start a local HA cluster of masters on loopback (resumes if its data exists).
    Up(commands::up::UpArgs),
    /// Benchmarks: store load (`kv`) and leader failover time (`failover`).
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn,h2=warn,tower=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Server(args) => commands::server::run(*args).await,
            Command::Up(args) => commands::up::run(args).await,
            Command::Bench(command) => commands::bench::run(command).await,
        }
    })
}
