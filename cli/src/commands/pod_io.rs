//! `rudder logs` and `rudder exec`: find the pod's node through the API, then stream from
//! that node's endpoint (the kubelet port in its NodeStatus), as kubectl goes through the
//! kubelet.

use std::io::Write;

use anyhow::{bail, Context};
use clap::Args;
use rudder_proto::node::kubelet_client::KubeletClient;
use rudder_proto::node::{exec_output, ExecRequest, LogsRequest};
use rudder_proto::objects::kubelet::kubelet_endpoint;

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
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    #[command(flatten)]
    target: Target,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    pod: String,
    /// The container (default: the pod's first).
    #[arg(short = 'c', long)]
    container: Option<String>,
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
    #[command(flatten)]
    target: Target,
}

/// The pod's node endpoint: `http://<InternalIP>:<kubelet port>`.
async fn node_endpoint(session: &Session, namespace: &str, pod: &str) -> anyhow::Result<String> {
    let object = session.client.get_object("pods", namespace, pod).await?;
    let node = object["spec"]["nodeName"].as_str().unwrap_or_default();
    if node.is_empty() {
        bail!("pod {pod:?} is not on a node yet (it has no spec.nodeName)");
    }
    let node_object = session.client.get_object("nodes", "", node).await?;
    kubelet_endpoint(&node_object)
        .with_context(|| format!("node {node:?} publishes no kubelet endpoint"))
}

async fn connect(endpoint: String) -> anyhow::Result<KubeletClient<tonic::transport::Channel>> {
    KubeletClient::connect(endpoint.clone())
        .await
        .with_context(|| format!("connecting to the node at {endpoint}"))
}

fn from_node(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", status.message())
}

pub async fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let session = Session::connect(&args.target).await?;
    let namespace = args.namespace.unwrap_or_else(|| "default".into());
    let endpoint = node_endpoint(&session, &namespace, &args.pod).await?;
    let mut client = connect(endpoint).await?;
    let mut stream = client
        .logs(LogsRequest {
            namespace,
            pod: args.pod,
            container: args.container.unwrap_or_default(),
            follow: args.follow,
            previous: args.previous,
            ..LogsRequest::default()
        })
        .await
        .map_err(from_node)?
        .into_inner();
    let mut stdout = std::io::stdout();
    while let Some(chunk) = stream.message().await.map_err(from_node)? {
        stdout.write_all(&chunk.data)?;
        stdout.flush()?;
    }
    Ok(())
}

/// Runs the command; exits with its exit code, as kubectl does.
pub async fn exec(args: ExecArgs) -> anyhow::Result<()> {
    let session = Session::connect(&args.target).await?;
    let namespace = args.namespace.unwrap_or_else(|| "default".into());
    let endpoint = node_endpoint(&session, &namespace, &args.pod).await?;
    let mut client = connect(endpoint).await?;
    let mut stream = client
        .exec(ExecRequest {
            namespace,
            pod: args.pod,
            container: args.container.unwrap_or_default(),
            command: args.command,
        })
        .await
        .map_err(from_node)?
        .into_inner();
    let mut code = None;
    while let Some(output) = stream.message().await.map_err(from_node)? {
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
    match code {
        Some(0) => Ok(()),
        Some(code) => {
            eprintln!("command terminated with exit code {code}");
            std::process::exit(code);
        }
        None => bail!("the node ended the exec without an exit code"),
    }
}
