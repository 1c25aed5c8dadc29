//! `rudder logs`, `rudder exec` and `rudder attach`: through the masters' `Kubelet` service, which finds the
//! pod's node and streams from it (as kubectl goes through kube-apiserver): the CLI needs
//! to reach the masters only, and fails over between them like every other verb.

use std::io::{Read, Write};
use std::sync::Arc;

use anyhow::bail;
use clap::Args;
use futures::StreamExt;
use rudder_proto::client::Connection;
use rudder_proto::node::kubelet_client::KubeletClient;
use rudder_proto::node::{exec_output, ExecInput, ExecRequest, LogsRequest};
use tokio::sync::{mpsc, watch};

use crate::session::{Session, Target};

#[derive(Args, Debug)]
pub struct LogsArgs {
    pod: String,
    /// The container (default: the pod's first).
    #[arg(short = 'c', long)]
    container: Option<String>,
    /// Keep streaming new output.
    #[arg(short = 'f', long)]
    follow: bool,
    /// The previous attempt's output (after a restart).
    #[arg(short = 'p', long)]
    previous: bool,
    /// Only the last this many lines (then more, with -f).
    #[arg(long)]
    tail: Option<u64>,
    /// Only the lines written in the last DURATION (5s, 2m, 3h).
    #[arg(long)]
    since: Option<String>,
    /// Each line's time before it.
    #[arg(long)]
    timestamps: bool,
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    #[command(flatten)]
    target: Target,
}

/// `rudder attach`'s arguments, and `rudder exec`'s before its command: which container,
/// and whether this terminal's input goes to it.
#[derive(Args, Debug)]
pub struct AttachArgs {
    pod: String,
    /// The container (default: the pod's first).
    #[arg(short = 'c', long)]
    container: Option<String>,
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Pass this terminal's standard input to the container (until it ends). An attach
    /// needs a container made with `stdin: true`.
    #[arg(short = 'i', long)]
    stdin: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    #[command(flatten)]
    on: AttachArgs,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

impl AttachArgs {
    fn request(self, command: Vec<String>) -> (Target, ExecRequest) {
        let request = ExecRequest {
            namespace: self.namespace.unwrap_or_else(|| "default".into()),
            pod: self.pod,
            container: self.container.unwrap_or_default(),
            command,
            stdin: self.stdin,
            tty: false,
        };
        (self.target, request)
    }
}

/// The `Kubelet` service of a master, which forwards to the pod's node.
fn kubelet(channel: Connection) -> KubeletClient<Connection> {
    KubeletClient::new(channel)
}

/// This process's standard input, read on a thread of its own, as exec inputs (the last
/// closes the command's input). Nothing is taken from it until `opened` says a master
/// started the command: an attempt on a master that failed takes none of it with it.
#[derive(Clone)]
struct SharedStdin {
    inputs: Arc<tokio::sync::Mutex<mpsc::Receiver<ExecInput>>>,
    opened: watch::Receiver<bool>,
}

fn read_stdin(opened: watch::Receiver<bool>) -> SharedStdin {
    let (sender, receiver) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let input = match stdin.read(&mut buffer) {
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(0) | Err(_) => ExecInput::close_stdin(),
                Ok(n) => ExecInput::stdin(buffer[..n].to_vec()),
            };
            let last = input.input == ExecInput::close_stdin().input;
            if sender.blocking_send(input).is_err() || last {
                return;
            }
        }
    });
    SharedStdin {
        inputs: Arc::new(tokio::sync::Mutex::new(receiver)),
        opened,
    }
}

/// The stdin inputs that follow an exec's request (none without `-i`), once it started.
fn stdin_inputs(stdin: Option<SharedStdin>) -> impl futures::Stream<Item = ExecInput> {
    futures::stream::unfold(stdin, |stdin| async move {
        let mut shared = stdin?;
        shared.opened.wait_for(|opened| *opened).await.ok()?;
        let next = shared.inputs.lock().await.recv().await?;
        Some((next, Some(shared)))
    })
}

/// A stream that broke after it began: the node's or the master's word for why.
fn broken(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", status.message())
}

pub async fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let since_seconds = match &args.since {
        Some(since) => {
            let since = crate::durations::parse_flag_duration("--since", since, "s")?;
            Some(i64::try_from(since.as_secs()).unwrap_or(i64::MAX))
        }
        None => None,
    };
    let session = Session::connect(&args.target).await?;
    let namespace = args.namespace.unwrap_or_else(|| "default".into());
    let request = LogsRequest {
        namespace,
        pod: args.pod,
        container: args.container.unwrap_or_default(),
        follow: args.follow,
        previous: args.previous,
        tail_lines: args.tail.map(|lines| lines.min(i64::MAX as u64) as i64),
        timestamps: args.timestamps,
        since_seconds: since_seconds.map(|seconds| seconds.max(1)),
        ..LogsRequest::default()
    };
    let mut stream = session
        .client
        .open_on(|channel| {
            let request = request.clone();
            async move { kubelet(channel).logs(request).await }
        })
        .await?;
    let mut stdout = std::io::stdout();
    while let Some(chunk) = stream.message().await.map_err(broken)? {
        stdout.write_all(&chunk.data)?;
        stdout.flush()?;
    }
    Ok(())
}

/// Runs the command; exits with its exit code, as kubectl does.
pub async fn exec(args: ExecArgs) -> anyhow::Result<()> {
    let (target, request) = args.on.request(args.command);
    let code = relay(&target, request, Verb::Exec).await?;
    match code {
        Some(0) => Ok(()),
        Some(code) => {
            eprintln!("command terminated with exit code {code}");
            std::process::exit(code);
        }
        None => bail!("the node ended the exec without an exit code"),
    }
}

/// Shows the container's output from now on and, with `-i`, types this terminal's input at
/// it, until the container ends or the input does and the container with it.
pub async fn attach(args: AttachArgs) -> anyhow::Result<()> {
    let (target, request) = args.request(Vec::new());
    relay(&target, request, Verb::Attach).await?;
    Ok(())
}

#[derive(Clone, Copy)]
enum Verb {
    Exec,
    Attach,
}

/// Starts `request` on a master (failing over between them), passes this terminal's input
/// to it with `stdin`, and writes its output here: the exit code, if the node sent one.
async fn relay(target: &Target, request: ExecRequest, verb: Verb) -> anyhow::Result<Option<i32>> {
    let session = Session::connect(target).await?;
    let (opened, gate) = watch::channel(false);
    let stdin = request.stdin.then(|| read_stdin(gate));
    let mut stream = session
        .client
        .open_on(|channel| {
            let start = ExecInput::start(request.clone());
            let inputs = futures::stream::once(async { start }).chain(stdin_inputs(stdin.clone()));
            async move {
                match verb {
                    Verb::Exec => kubelet(channel).exec(inputs).await,
                    Verb::Attach => kubelet(channel).attach(inputs).await,
                }
            }
        })
        .await?;
    // Started: only this attempt's inputs are left to take the terminal's.
    let _ = opened.send(true);
    let mut code = None;
    while let Some(output) = stream.message().await.map_err(broken)? {
        match output.output {
            Some(exec_output::Output::Stdout(bytes)) => {
                std::io::stdout().write_all(&bytes)?;
                std::io::stdout().flush()?;
            }
            Some(exec_output::Output::Stderr(bytes)) => std::io::stderr().write_all(&bytes)?,
            Some(exec_output::Output::ExitCode(c)) => code = Some(c),
            None => {}
        }
    }
    Ok(code)
}
