//! `rudder up`: a local HA control plane on loopback — the first thing a new user runs —
//! with `--nodes N` worker nodes and `--hollow-nodes N` simulated ones.
//! Each master is its own `rudder server` process (so one can be killed and restarted like a
//! real machine); `up` waits until all are ready, puts one API endpoint in front of them
//! (`api_endpoint.rs`), writes the CLI config and a kubeconfig, prints the endpoints, and
//! keeps the cluster up as an HA cluster should: a process that exits (a master killed with
//! `kill -9`) is reported and restarted with backoff while the others go on serving. Only Ctrl-C (or SIGTERM) stops every process it started. Running it again on
//! the same `--data-dir` resumes the same cluster.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use rudder_proto::tls::{ClusterCa, Issued};

use super::api_endpoint::ApiEndpoint;
use super::ca;
use super::config::kubeconfig;
use super::config::{KubeconfigCredentials, KubeconfigUser};
use super::leader_elected::Interrupts;
use crate::session::{config_path, write_config, CliConfig};

/// How long a master may take to report ready (a first start opens RocksDB and elects).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a master gets to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The first wait before restarting a process that exited; doubled while it keeps exiting.
const FIRST_RESTART_DELAY: Duration = Duration::from_millis(500);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);
/// A process up this long before it exited is restarted after the first delay again.
const STABLE_UPTIME: Duration = Duration::from_secs(60);

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Where every master keeps its data (one subdirectory each) and its log.
    #[arg(long, default_value = "./rudder-data")]
    data_dir: PathBuf,
    /// Number of masters (3 or 5 tolerate one or two failures).
    #[arg(long, default_value_t = 3)]
    masters: u16,
    /// Client port of the first master; master i listens on base + 10000·i (peer port + 1).
    #[arg(long, default_value_t = 2379)]
    base_port: u16,
    /// Where to write the CLI config (default: $RUDDER_CONFIG, else ~/.rudder/config).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Worker nodes to start (`rudder node` processes running real containers, keeping their
    /// state in DATA_DIR/node-i; images come from /var/lib/rudder/images, filled by `rudder
    /// image import`, or from a registry on loopback). Default: one when run as root (a node
    /// needs root for namespaces and cgroups), none otherwise.
    #[arg(long)]
    nodes: Option<u16>,
    /// Hollow (simulated) nodes to start, all in one `rudder node --hollow` process; they run
    /// pods bound to them in a fake runtime.
    #[arg(long, default_value_t = 0)]
    hollow_nodes: u32,
    /// The cluster's one API address on loopback, in front of every master (what the
    /// kubeconfig DATA_DIR/kubeconfig names); 0 picks a free port.
    #[arg(long, default_value_t = 6443)]
    api_port: u16,
    /// Extra flags for every `rudder server` (e.g. "--election-timeout-ms=150").
    #[arg(long, allow_hyphen_values = true)]
    server_flag: Vec<String>,
}

fn addr(port: u32) -> anyhow::Result<SocketAddr> {
    let port = u16::try_from(port).context("--base-port and --masters give a port above 65535")?;
    Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

/// One process `up` started: a master, or a node, and how to start it again.
struct Process {
    name: String,
    client: SocketAddr,
    child: Child,
    /// The `rudder` arguments it was started with.
    args: Vec<String>,
    log: PathBuf,
    started: tokio::time::Instant,
    /// The wait before the next restart.
    restart_delay: Duration,
}

impl Process {
    /// Starts `rudder ARGS` with stderr appended to `log` (stdout piped when `piped`).
    fn spawn(
        binary: &std::path::Path,
        name: String,
        client: SocketAddr,
        args: Vec<String>,
        log: PathBuf,
        piped: bool,
    ) -> anyhow::Result<Self> {
        let child = spawn_rudder(binary, &args, &log, piped)
            .with_context(|| format!("starting {name} ({binary:?} {})", args[0]))?;
        Ok(Self {
            name,
            client,
            child,
            args,
            log,
            started: tokio::time::Instant::now(),
            restart_delay: FIRST_RESTART_DELAY,
        })
    }

    /// Starts the process again, as it was started the first time.
    fn respawn(&mut self, binary: &std::path::Path) -> anyhow::Result<()> {
        self.child = spawn_rudder(binary, &self.args, &self.log, false)?;
        self.started = tokio::time::Instant::now();
        Ok(())
    }
}

fn spawn_rudder(
    binary: &std::path::Path,
    args: &[String],
    log: &std::path::Path,
    piped: bool,
) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening the log {log:?}"))?;
    let stdout = if piped { Stdio::piped() } else { Stdio::null() };
    Ok(Command::new(binary)
        .args(args)
        // Its processes use the certificates it gives them, never a user's token.
        .env_remove("RUDDER_TOKEN")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?)
}

/// The wait before restarting a process that exited after `uptime`, its last wait having
/// been `previous`: doubling while it keeps failing, back to the first after a stable run.
fn next_restart_delay(previous: Duration, uptime: Duration) -> Duration {
    if uptime >= STABLE_UPTIME {
        FIRST_RESTART_DELAY
    } else {
        (previous * 2).min(MAX_RESTART_DELAY)
    }
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.masters >= 1, "--masters must be at least 1");
    let binary = std::env::current_exe().context("finding the rudder binary")?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data directory {:?}", args.data_dir))?;
    let port =
        |i: u16, offset: u32| addr(u32::from(args.base_port) + 10_000 * u32::from(i) + offset);
    let mut initial = Vec::new();
    for i in 0..args.masters {
        initial.push(format!("m{}={}", i + 1, port(i, 1)?));
    }
    let resuming = args.data_dir.join("m1").exists();
    // The cluster's CA and Secret-encryption keyring, made with it; every process gets
    // a certificate of its own.
    let pki = std::fs::canonicalize(&args.data_dir)
        .with_context(|| format!("resolving {:?}", args.data_dir))?
        .join("pki");
    let older_keyring = args.data_dir.join("encryption.keys");
    if resuming && !pki.join(ca::CA_CERT).exists() && older_keyring.exists() {
        // A cluster from before TLS kept its keyring beside the masters: it moves into the
        // PKI directory, which keeps it (a new one could not open the cluster's Secrets).
        std::fs::create_dir_all(&pki).with_context(|| format!("creating {pki:?}"))?;
        std::fs::rename(&older_keyring, pki.join(ca::KEYRING))
            .with_context(|| format!("moving {older_keyring:?} into {pki:?}"))?;
        println!("moved the Secret-encryption keyring into {}", pki.display());
    }
    if resuming && !pki.join(ca::KEYRING).exists() {
        bail!(
            "{} holds a cluster but no Secret-encryption keyring ({}): restore it, or for a \
             cluster from before Secrets were encrypted, make one with `rudder \
             encryption-keys new {}`",
            args.data_dir.display(),
            pki.join(ca::KEYRING).display(),
            pki.join(ca::KEYRING).display()
        );
    }
    if !pki.join(ca::CA_CERT).exists() {
        ca::init(&pki)?;
    }
    // A cluster `rudder up` made before ServiceAccount tokens: its masters share this
    // directory, so the key made here is everyone's.
    ca::service_account_key(&pki)?;
    let cluster_ca = ca::load(&pki)?;
    let admin = Credential::issue(
        &cluster_ca,
        &pki,
        "admin",
        "kubernetes-admin",
        "system:masters",
    )?;
    println!(
        "{} {} masters on loopback (data in {:?})...",
        if resuming { "resuming" } else { "starting" },
        args.masters,
        args.data_dir
    );
    let mut masters = Vec::new();
    for i in 0..args.masters {
        let name = format!("m{}", i + 1);
        let mut server_args: Vec<String> = [
            "server",
            "--name",
            &name,
            "--data-dir",
            &args.data_dir.join(&name).display().to_string(),
            "--listen-client",
            &port(i, 0)?.to_string(),
            "--listen-peer",
            &port(i, 1)?.to_string(),
            "--initial-cluster",
            &initial.join(","),
            "--pki",
            &pki.display().to_string(),
        ]
        .map(String::from)
        .to_vec();
        server_args.extend(args.server_flag.iter().cloned());
        let log = args.data_dir.join(format!("{name}.log"));
        masters.push(Process::spawn(
            &binary,
            name,
            port(i, 0)?,
            server_args,
            log,
            true,
        )?);
    }
    let ready = wait_until_ready(&mut masters, &args.data_dir).await;
    if let Err(error) = ready {
        stop(masters).await;
        return Err(error);
    }
    let endpoints: Vec<String> = masters.iter().map(|m| m.client.to_string()).collect();
    let api = match ApiEndpoint::start(
        SocketAddr::from((Ipv4Addr::LOCALHOST, args.api_port)),
        masters.iter().map(|m| m.client).collect(),
        Some(rudder_proto::dial::probe_config(cluster_ca.cert_pem())?),
    )
    .await
    {
        Ok(api) => api,
        Err(error) => {
            stop(masters).await;
            return Err(error);
        }
    };
    let config = config_path(args.config.as_ref());
    write_config(
        &config,
        &CliConfig {
            servers: endpoints.clone(),
            api_endpoint: Some(api.addr.to_string()),
            certificate_authority: Some(pki.join(ca::CA_CERT)),
            client_certificate: Some(admin.cert.clone()),
            client_key: Some(admin.key.clone()),
        },
    )?;
    let kubeconfig_path = args.data_dir.join("kubeconfig");
    let credentials = KubeconfigCredentials {
        ca_pem: cluster_ca.cert_pem().to_string(),
        user: KubeconfigUser::Certificate {
            cert_pem: admin.issued.cert_pem.clone(),
            key_pem: admin.issued.key_pem.clone(),
        },
    };
    ca::write_private(
        &kubeconfig_path,
        &kubeconfig(&format!("https://{}", api.addr), Some(&credentials)),
    )
    .with_context(|| format!("writing the kubeconfig {kubeconfig_path:?}"))?;
    let nodes = match start_nodes(&args, &binary, &endpoints, &cluster_ca, &pki) {
        Ok(nodes) => nodes,
        Err(error) => {
            stop(masters).await;
            return Err(error);
        }
    };
    println!("rudder is up: {} masters", masters.len());
    for master in &masters {
        println!(
            "  {:<4} API + etcd v3 at {}   (pid {}, log {:?})",
            master.name,
            master.client,
            master.child.id().unwrap_or(0),
            args.data_dir.join(format!("{}.log", master.name))
        );
    }
    for node in &nodes {
        println!(
            "  {:<4} node   (pid {}, log {:?})",
            node.name,
            node.child.id().unwrap_or(0),
            args.data_dir.join(format!("{}.log", node.name))
        );
    }
    masters.extend(nodes);
    println!(
        "  API  the cluster's endpoint at {} (any master behind it)",
        api.addr
    );
    println!("CLI config written to {config:?}: try `rudder get nodes`, `rudder cluster status`");
    println!(
        "kubeconfig written to {kubeconfig_path:?}; for kubectl: export KUBECONFIG={}",
        std::fs::canonicalize(&kubeconfig_path)
            .unwrap_or(kubeconfig_path.clone())
            .display()
    );
    // Caught for the rest of the run, between the waits below too: a stop asked for while
    // a master is being restarted is not lost.
    let mut interrupts = Interrupts::catch()?;
    println!("press Ctrl-C to stop");
    loop {
        let exited = tokio::select! {
            () = interrupts.wait() => break,
            exited = wait_for_any_exit(&mut masters) => exited,
        };
        let process = &mut masters[exited.index];
        let uptime = process.started.elapsed();
        let delay = process.restart_delay;
        process.restart_delay = next_restart_delay(delay, uptime);
        eprintln!(
            "{} exited ({}) after {:.1} s; restarting it in {:.1} s, the others keep serving \
             (see {:?})",
            process.name,
            exited.status,
            uptime.as_secs_f64(),
            delay.as_secs_f64(),
            process.log
        );
        tokio::select! {
            () = interrupts.wait() => break,
            _ = tokio::time::sleep(delay) => {}
        }
        match process.respawn(&binary) {
            Ok(()) => eprintln!(
                "{} restarted (pid {})",
                process.name,
                process.child.id().unwrap_or(0)
            ),
            Err(error) => eprintln!("{} could not be restarted: {error:#}", process.name),
        }
    }
    println!("stopping...");
    drop(api);
    stop(masters).await;
    println!("stopped; run `rudder up` again to resume");
    Ok(())
}

/// Starts the `--nodes` and `--hollow-nodes` processes against `endpoints`.
fn start_nodes(
    args: &UpArgs,
    binary: &std::path::Path,
    endpoints: &[String],
    cluster_ca: &ClusterCa,
    pki: &Path,
) -> anyhow::Result<Vec<Process>> {
    let nodes = match args.nodes {
        Some(count) => count,
        None if nix::unistd::Uid::effective().is_root() => 1,
        None => {
            println!(
                "no node started: a node runs containers and needs root (namespaces, cgroups, \
                 its pod network); run `sudo rudder up`, or pass --nodes 0 to start masters only"
            );
            0
        }
    };
    let mut runs: Vec<(String, Vec<String>)> = (1..=nodes)
        .map(|i| {
            let name = format!("node-{i}");
            let flags = vec![
                "--name".into(),
                name.clone(),
                "--root".into(),
                args.data_dir.join(&name).display().to_string(),
                "--port".into(),
                "0".into(),
            ];
            (name, flags)
        })
        .collect();
    if args.hollow_nodes > 0 {
        let flags = vec![
            "--name".into(),
            "hollow".into(),
            "--hollow".into(),
            "--count".into(),
            args.hollow_nodes.to_string(),
        ];
        runs.push(("hollow".into(), flags));
    }
    let client = endpoints
        .first()
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let mut started = Vec::new();
    for (name, flags) in runs {
        let mut node_args = vec!["node".to_string()];
        node_args.extend(flags);
        node_args.extend(["--server".to_string(), endpoints.join(",")]);
        // A node's credential names it, and the node rules let it touch only its own
        // objects. The hollow nodes share one process and one credential, which can name
        // none of them: it is the cluster's (they are a simulation, as Kubemark's).
        let (user, group) = if name == "hollow" {
            ("rudder:hollow-nodes".to_string(), "system:masters")
        } else {
            (format!("system:node:{name}"), "system:nodes")
        };
        let credential = Credential::issue(cluster_ca, pki, &name, &user, group)?;
        node_args.extend(credential.flags(pki));
        let log = args.data_dir.join(format!("{name}.log"));
        started.push(Process::spawn(binary, name, client, node_args, log, false)?);
    }
    Ok(started)
}

async fn wait_until_ready(
    masters: &mut [Process],
    data_dir: &std::path::Path,
) -> anyhow::Result<()> {
    let mut waiting = Vec::new();
    for master in masters.iter_mut() {
        let stdout = master.child.stdout.take().context("master stdout")?;
        let name = master.name.clone();
        waiting.push(tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("rudder server") && line.contains(" ready: ") {
                    // Keep draining so the master never blocks on a full pipe.
                    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                    return Ok(());
                }
            }
            bail!("master {name} exited before it was ready")
        }));
    }
    for (task, master) in waiting.into_iter().zip(masters.iter()) {
        match tokio::time::timeout(READY_TIMEOUT, task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => {
                return Err(error.context(format!(
                    "see {:?}",
                    data_dir.join(format!("{}.log", master.name))
                )))
            }
            Ok(Err(error)) => return Err(error.into()),
            Err(_) => bail!(
                "master {} was not ready within {} s; see {:?}",
                master.name,
                READY_TIMEOUT.as_secs(),
                data_dir.join(format!("{}.log", master.name))
            ),
        }
    }
    Ok(())
}

/// A certificate `rudder up` gave one of its processes, in the PKI directory.
struct Credential {
    cert: PathBuf,
    key: PathBuf,
    issued: Issued,
}

impl Credential {
    /// A certificate for `user` in `group` (a node's serves its kubelet port too), written
    /// as `<pki>/<stem>.crt|.key`
    /// (issued afresh at each start).
    fn issue(
        ca: &ClusterCa,
        pki: &Path,
        stem: &str,
        user: &str,
        group: &str,
    ) -> anyhow::Result<Self> {
        let issued = ca.issue(&ca::request_for(user, Some(group)))?;
        let (cert, key) = (
            pki.join(format!("{stem}.crt")),
            pki.join(format!("{stem}.key")),
        );
        ca::write_issued(&issued, &cert, &key)?;
        Ok(Self { cert, key, issued })
    }

    /// The flags that make a process use it.
    fn flags(&self, pki: &Path) -> Vec<String> {
        [
            "--certificate-authority".to_string(),
            pki.join(ca::CA_CERT).display().to_string(),
            "--client-certificate".to_string(),
            self.cert.display().to_string(),
            "--client-key".to_string(),
            self.key.display().to_string(),
        ]
        .to_vec()
    }
}

/// Which process exited, and how.
struct Exited {
    index: usize,
    status: String,
}

/// The first process to exit.
async fn wait_for_any_exit(processes: &mut [Process]) -> Exited {
    let waits = processes.iter_mut().enumerate().map(|(index, p)| {
        Box::pin(async move {
            let status = match p.child.wait().await {
                Ok(status) => status.to_string(),
                Err(error) => format!("lost: {error}"),
            };
            Exited { index, status }
        })
    });
    futures::future::select_all(waits).await.0
}

/// SIGTERM to every master, then SIGKILL to any that has not stopped in time (one
/// deadline for all: they stop side by side).
async fn stop(masters: Vec<Process>) {
    for master in &masters {
        if let Some(pid) = master.child.id().and_then(|pid| i32::try_from(pid).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
    let stopping = masters.into_iter().map(|mut master| async move {
        if tokio::time::timeout_at(deadline, master.child.wait())
            .await
            .is_err()
        {
            eprintln!("master {} did not stop in time; killing it", master.name);
            let _ = master.child.kill().await;
        }
    });
    futures::future::join_all(stopping).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_while_a_process_keeps_failing_and_reset_after_a_stable_run() {
        let quick = Duration::from_secs(1);
        let mut delay = FIRST_RESTART_DELAY;
        let mut delays = Vec::new();
        for _ in 0..8 {
            delays.push(delay.as_millis());
            delay = next_restart_delay(delay, quick);
        }
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        assert_eq!(
            next_restart_delay(MAX_RESTART_DELAY, STABLE_UPTIME),
            FIRST_RESTART_DELAY
        );
    }
}
