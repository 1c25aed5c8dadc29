//! `rudder shim create|exec`: the per-container helper the node starts (not for people).
//! Runs before the CLI starts any thread: libcontainer forks.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use rudder_node::runtime::linux::shim::{self, ShimArgs};
use rudder_node::runtime::linux::shim_attach::AttachModes;

#[derive(Subcommand, Debug)]
pub enum ShimCommand {
    /// Create and start one container, wait for it, record its end.
    Create(CreateArgs),
    /// Run a command inside a running container.
    Exec(ExecArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[arg(long)]
    state_root: PathBuf,
    #[arg(long)]
    id: String,
    #[arg(long)]
    bundle: PathBuf,
    #[arg(long)]
    log: PathBuf,
    #[arg(long)]
    exit_file: PathBuf,
    #[arg(long)]
    cgroups_path: String,
    /// Keep the container's standard input open for attaching clients.
    #[arg(long)]
    stdin: bool,
    /// Its input ends when the first attached client with stdin goes.
    #[arg(long)]
    stdin_once: bool,
    /// Run it on a terminal.
    #[arg(long)]
    tty: bool,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    #[arg(long)]
    state_root: PathBuf,
    #[arg(long)]
    id: String,
    /// Stdio is a terminal: make it the command's controlling terminal.
    #[arg(long)]
    tty: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// Never returns: the shim's exit code is the result.
pub fn run(command: ShimCommand) -> ! {
    match command {
        ShimCommand::Create(args) => shim::create(ShimArgs {
            state_root: args.state_root,
            id: args.id,
            bundle: args.bundle,
            log: args.log,
            exit_file: args.exit_file,
            cgroups_path: args.cgroups_path,
            modes: AttachModes {
                stdin: args.stdin,
                stdin_once: args.stdin_once,
                tty: args.tty,
            },
        }),
        ShimCommand::Exec(args) => {
            match shim::exec(&args.state_root, &args.id, args.command, args.tty) {
                Ok(code) => std::process::exit(code),
                Err(error) => {
                    eprintln!("error: {error}");
                    std::process::exit(126);
                }
            }
        }
    }
}
