//! `rudder`: the one binary. `rudder server` runs a master (store + API), `rudder up` a
//! local cluster, and the operator verbs (`get`, `apply`, `scale`, …) talk gRPC to any
//! master, failing over between them. `rudder config kubeconfig` points kubectl at the
//! same masters' Kubernetes HTTP API.
//!
//! - `commands/<verb>.rs`: each verb (clap arguments + the calls it makes).
//! - `session.rs`: which masters, discovery, kind names; `manifest.rs`: reading -f files.
//! - `allocator.rs`: mimalloc, and the runtimes' threads giving memory back as they idle.
//! - kubectl's tables, AGE and `describe` are `rudder-printers` (shared with the HTTP API).

mod allocator;
mod commands;
mod durations;
mod manifest;

mod session;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rudder",
    version = version(),
    about = "Rudder: a Kubernetes-style orchestrator with an embedded Raft store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// This build's version; a chaos build says it has failpoints.
fn version() -> &'static str {
    match rudder_proto::failpoints::COMPILED_IN {
        true => concat!(
            env!("CARGO_PKG_VERSION"),
            " (chaos build: failpoints compiled in)"
        ),
        false => env!("CARGO_PKG_VERSION"),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run one master: the replicated store and its etcd-compatible client API.
    Server(Box<commands::server::ServerArgs>),
    /// Run the controllers on their own (every master also runs them, one active at a time).
    ControllerManager(commands::controller_manager::ControllerManagerArgs),
    /// Run the scheduler on its own (every master also runs one, one active at a time).
    Scheduler(commands::scheduler::SchedulerArgs),
    /// Run this machine as a worker node that runs the pods bound to it, or
    /// --hollow --count N simulated nodes. Its credential is a certificate
    /// (--client-certificate), or it joins once with a join token (--token, from `rudder
    /// token create --role node`).
    Node(Box<commands::node::NodeArgs>),
    /// Run a node's service network on its own: the proxy's rules, cluster DNS and the API
    /// relay (for a node started with `rudder node --proxy false`).
    Proxy(commands::proxy::ProxyArgs),
    /// The node's per-container helper (started by `rudder node`).
    #[command(subcommand, hide = true)]
    Shim(commands::shim::ShimCommand),
    /// The node's image store: import OCI layouts, list images.
    #[command(subcommand)]
    Image(commands::image::ImageCommand),
    /// Start a local HA cluster of masters on loopback (resumes if its data exists).
    Up(commands::up::UpArgs),
    /// Benchmarks: store load (`kv`), leader failover time (`failover`), the API (`api`),
    /// pod startup (`pod-startup`), the scheduler (`schedule`), the controllers (`controllers`).
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
    /// Chaos runs: a fresh cluster under a recorded workload and real faults (kill, pause),
    /// checked for linearizability; `run` and `replay REPORT`. Exits 0 only on PASS.
    #[command(subcommand)]
    Chaos(commands::chaos::ChaosCommand),
    /// Show objects: a table (or -o wide|yaml|json|name); -w follows changes.
    Get(commands::get::GetArgs),
    /// Show objects in detail, with their events.
    Describe(commands::describe::DescribeArgs),
    /// Create or update objects from manifests (-f file, directory or -).
    Apply(commands::apply::ApplyArgs),
    /// Create objects from manifests, or a namespace / deployment.
    Create(commands::create::CreateArgs),
    /// Run an image: a Pod (default), a ReplicationController (--generator=run/v1) or a
    /// Deployment.
    Run(commands::run::RunArgs),
    /// Create a Service for the pods of an rc, rs, deployment or pod.
    Expose(commands::expose::ExposeArgs),
    /// Print a container's output (-f follows, -p the previous attempt's).
    Logs(commands::pod_io::LogsArgs),
    /// Run a command in a container: rudder exec POD [-c C] -- CMD ...
    Exec(commands::pod_io::ExecArgs),
    /// Join a running container's own process: rudder attach POD [-c C] [-i]
    Attach(commands::pod_io::AttachArgs),
    /// Set the replica count of an rc, rs, deployment or statefulset.
    Scale(commands::scale::ScaleArgs),
    /// Manage a deployment's rollout: status, history, undo, pause, resume, restart.
    #[command(subcommand)]
    Rollout(commands::rollout::RolloutCommand),
    /// Delete objects by name, manifest (-f), label selector (-l) or --all.
    Delete(commands::delete::DeleteArgs),
    /// Set (key=value) or remove (key-) labels.
    Label(commands::label::MetadataArgs),
    /// Set (key=value) or remove (key-) annotations.
    Annotate(commands::label::MetadataArgs),
    /// Mark a node unschedulable (its pods stay).
    Cordon(commands::cordon::CordonArgs),
    /// Mark a node schedulable again.
    Uncordon(commands::cordon::CordonArgs),
    /// Cordon a node, then evict its pods as their disruption budgets allow.
    Drain(commands::drain::DrainArgs),
    /// Where the control plane is.
    ClusterInfo(commands::cluster::InfoArgs),
    /// Client and server versions.
    Version(commands::cluster::InfoArgs),
    /// The control plane's members and their Raft state.
    #[command(subcommand)]
    Cluster(commands::cluster::ClusterCommand),
    /// CPU and memory in use: `top nodes`, `top pods` (as kubectl top).
    Top(commands::top::TopArgs),
    /// Store backups as etcd snapshot files: save, status, restore (into a new cluster).
    #[command(subcommand)]
    Snapshot(commands::snapshot::SnapshotCommand),
    /// The cluster's CA and PKI directory: init, issue.
    #[command(subcommand)]
    Ca(commands::ca::CaCommand),
    /// The keyring Secrets are encrypted with at rest: new, add, use, rotate, remove, list,
    /// reencrypt.
    #[command(subcommand)]
    EncryptionKeys(commands::encryption_keys::EncryptionKeysCommand),
    /// Join tokens for new masters and nodes: create, list, delete.
    #[command(subcommand)]
    Token(commands::token::TokenCommand),
    /// Ask the cluster's authorization: `rudder auth can-i VERB RESOURCE [--as USER]`.
    #[command(subcommand)]
    Auth(commands::auth::AuthCommand),
    /// Client configuration: `rudder config kubeconfig` for kubectl and client libraries.
    #[command(subcommand)]
    Config(commands::config::ConfigCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // A shim's stderr is a container's exec output or its own log: only real errors there.
    let default_filter = match cli.command {
        Command::Shim(_) => "error",
        // hickory logs every DNS query at info.
        _ => "info,openraft=warn,h2=warn,tower=warn,hickory_server=warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: logs kept in files stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // The shim forks (libcontainer): it must run before any thread exists.
    let cli = match cli.command {
        Command::Shim(command) => commands::shim::run(command),
        command => Cli { command },
    };
    // Actors run on actix's own runtime, outside the CLI's tokio runtime.
    let command = match cli.command {
        Command::Node(args) => {
            if let Err(error) = commands::node::run(*args) {
                eprintln!("error: {error:#}");
                std::process::exit(1);
            }
            return Ok(());
        }
        Command::Proxy(args) => {
            if let Err(error) = commands::proxy::run(args) {
                eprintln!("error: {error:#}");
                std::process::exit(1);
            }
            return Ok(());
        }
        other => other,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(allocator::give_back_when_idle)
        .build()?;
    let outcome = runtime.block_on(async {
        use commands::label::MetadataField;
        match command {
            Command::Server(args) => commands::server::run(*args).await,
            Command::Node(_) | Command::Proxy(_) | Command::Shim(_) => {
                unreachable!("handled before the runtime starts")
            }
            Command::Image(command) => commands::image::run(command),
            Command::Config(command) => commands::config::run(command),
            Command::Ca(command) => commands::ca::run(command),
            Command::EncryptionKeys(command) => commands::encryption_keys::run(command).await,
            Command::Up(args) => commands::up::run(args).await,
            Command::ControllerManager(args) => commands::controller_manager::run(args).await,
            Command::Scheduler(args) => commands::scheduler::run(args).await,
            Command::Bench(command) => commands::bench::run(command).await,
            Command::Chaos(command) => commands::chaos::run_command(command).await,
            Command::Get(args) => commands::get::run(args).await,
            Command::Describe(args) => commands::describe::describe_command(args).await,
            Command::Apply(args) => commands::apply::apply(args).await,
            Command::Create(args) => commands::create::create_command(args).await,
            Command::Run(args) => commands::run::run_command(args).await,
            Command::Expose(args) => commands::expose::expose(args).await,
            Command::Scale(args) => commands::scale::scale(args).await,
            Command::Rollout(command) => commands::rollout::rollout(command).await,
            Command::Logs(args) => commands::pod_io::logs(args).await,
            Command::Exec(args) => commands::pod_io::exec(args).await,
            Command::Attach(args) => commands::pod_io::attach(args).await,
            Command::Delete(args) => commands::delete::delete(args).await,
            Command::Label(args) => {
                commands::label::edit_metadata(args, MetadataField::Labels).await
            }
            Command::Annotate(args) => {
                commands::label::edit_metadata(args, MetadataField::Annotations).await
            }
            Command::Cordon(args) => commands::cordon::cordon(args).await,
            Command::Uncordon(args) => commands::cordon::uncordon(args).await,
            Command::Drain(args) => commands::drain::drain(args).await,
            Command::ClusterInfo(args) => commands::cluster::cluster_info(args).await,
            Command::Version(args) => commands::cluster::version(args).await,
            Command::Cluster(command) => commands::cluster::run(command).await,
            Command::Snapshot(command) => commands::snapshot::run(command).await,
            Command::Top(command) => commands::top::run(command).await,
            Command::Auth(command) => commands::auth::run(command).await,
            Command::Token(command) => commands::token::run(command).await,
        }
    });
    if let Err(error) = outcome {
        // Server errors already read like kubectl's ("Error from server (NotFound): ...").
        let text = format!("{error:#}");
        if text.starts_with("Error from server") {
            eprintln!("{text}");
        } else {
            eprintln!("error: {text}");
        }
        std::process::exit(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// A chaos build says so in its version, in the words programs that start it look for.
    #[test]
    fn the_version_says_whether_the_build_has_failpoints() {
        let says = version().contains(rudder_proto::failpoints::IN_VERSION);
        assert_eq!(says, rudder_proto::failpoints::COMPILED_IN, "{}", version());
    }

    /// Every command's flags are well formed and none is defined twice (the flags every
    /// verb shares are global, so a subcommand must not define them again).
    #[test]
    fn the_commands_and_their_flags_are_well_formed() {
        Cli::command().debug_assert();
    }
}
