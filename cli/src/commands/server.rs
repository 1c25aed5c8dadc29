//! `rudder server`: one store member.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use rudder_actors::informer::SharedInformers;
use rudder_apiserver::allocation::{self, ServiceRanges};
use rudder_apiserver::audit::AuditLog;
use rudder_apiserver::cluster_config::ClusterConfig;
use rudder_apiserver::encryption::SharedKeyring;
use rudder_apiserver::join::JoinAuthority;
use rudder_apiserver::service_account_tokens::TokenKey;
use rudder_apiserver::{Master, Security};
use rudder_proto::authn::BearerTokens;
use rudder_proto::client::ApiClient;
use rudder_proto::metrics::Metrics;

use crate::commands::controller_manager::{self, ControllerManagerFlags};
use crate::commands::leader_elected::{ElectionFlags, Interrupts};
use crate::commands::scheduler::{self, SchedulerFlags};
use crate::commands::server_security::{self, SecurityFlags, ServerTls};
use crate::durations::parse_flag_duration;
use rudder_raftstore::compaction::Retention;
use rudder_raftstore::server::RaftOptions;
use rudder_raftstore::store::DEFAULT_QUOTA_BYTES;
use rudder_raftstore::validate::Limits;
use rudder_raftstore::{MemberConfig, StoreOptions};

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// This member's name; must appear in --initial-cluster when bootstrapping.
    #[arg(long)]
    name: String,
    /// Where the member keeps its data; restarting on the same directory resumes.
    #[arg(long)]
    data_dir: PathBuf,
    /// Address for clients (the etcd v3 API).
    #[arg(long, default_value = "127.0.0.1:2379")]
    listen_client: SocketAddr,
    /// Address for the other members (Raft traffic).
    #[arg(long, default_value = "127.0.0.1:2380")]
    listen_peer: SocketAddr,
    /// Members of a new cluster: name=peer-address,... (this member included).
    #[arg(long, value_delimiter = ',')]
    initial_cluster: Vec<String>,
    /// Tells this new cluster from any other listed with the same --initial-cluster (say, a
    /// rebuilt cluster beside a member of the old one): members refuse every peer message
    /// from another cluster. Read only when bootstrapping.
    #[arg(long, default_value = "")]
    initial_cluster_token: String,
    /// Join a running cluster through any of its members: its peer address, or with --token
    /// its client address (the token is presented there; the answer names the peer
    /// address).
    #[arg(long, conflicts_with = "initial_cluster")]
    join: Option<String>,
    /// A join token for a master (`rudder token create --role master`), presented once to
    /// the master --join names: this master gets the cluster's CA, keyring and signing key
    /// into DATA_DIR/pki, which later starts use with or without --token (it is taken).
    /// That keyring is a copy: rotate keys in it as in every master's.
    #[arg(long, requires = "join", conflicts_with = "pki")]
    token: Option<String>,
    /// The keyring Secrets are encrypted with before they enter the store, the same file on
    /// every master (`rudder encryption-keys new FILE`); changes to it are taken within
    /// seconds. Default: DATA_DIR/encryption.keys, made by the first master of a new
    /// one-master cluster.
    #[arg(long)]
    encryption_keys: Option<PathBuf>,
    /// The cluster's PKI directory (`rudder ca init DIR`; a copy on every master): the
    /// client port then speaks TLS only, with a certificate this master issues itself, and
    /// takes only clients with a certificate from the cluster CA (health checks aside); the
    /// peer port speaks TLS too and takes only masters. Its keyring is the default
    /// --encryption-keys. Without it both ports speak plaintext, on loopback only.
    #[arg(long)]
    pki: Option<PathBuf>,
    /// More names and addresses for this master's certificate (how clients reach it).
    #[arg(long, value_delimiter = ',')]
    tls_san: Vec<String>,
    /// How long this master's certificate is valid, and those it signs for nodes that
    /// join; each is renewed after two thirds.
    #[arg(long, default_value = "8760h", hide = true)]
    certificate_lifetime: String,
    /// Bearer tokens a client without a certificate may present (`Authorization: Bearer`,
    /// kubectl's --token), in kube-apiserver's format: `token,user,uid[,"group1,group2"]`
    /// per line. Needs --pki.
    #[arg(long, value_name = "FILE", requires = "pki")]
    token_auth_file: Option<PathBuf>,
    /// Record every write (and with --audit-log-reads every read) in FILE, one JSON line
    /// each: Kubernetes' audit Events at the Metadata level (who, what, which object, the
    /// code; never a body).
    #[arg(long, value_name = "FILE")]
    audit_log_path: Option<PathBuf>,
    /// Record reads (get, list, watch) in the audit log too.
    #[arg(long, requires = "audit_log_path")]
    audit_log_reads: bool,
    /// Serve plaintext (no --pki) on addresses other than loopback: anyone who reaches them
    /// can read and write everything.
    #[arg(long)]
    insecure: bool,
    /// Raft heartbeat interval, milliseconds.
    #[arg(long, default_value_t = 30)]
    heartbeat_interval_ms: u64,
    /// Election timeout, milliseconds: a follower that heard no leader for this long, and
    /// then a random fifth to whole of it again, asks the others whether to elect (at least
    /// 3 heartbeats).
    #[arg(long, default_value_t = 150)]
    election_timeout_ms: u64,
    /// Build a Raft snapshot after this many applied entries.
    #[arg(long, default_value_t = 10_000)]
    snapshot_count: u64,
    /// Log entries kept behind a snapshot for slightly-behind followers.
    #[arg(long, default_value_t = 1_000)]
    snapshot_catchup_entries: u64,
    /// Largest request in bytes.
    #[arg(long, default_value_t = 1536 * 1024)]
    max_request_bytes: usize,
    /// Most operations in one transaction branch.
    #[arg(long, default_value_t = 128)]
    max_txn_ops: usize,
    /// Most watches on one client stream.
    #[arg(long, default_value_t = 10_000)]
    max_watchers_per_stream: usize,
    /// Largest gRPC message accepted on the client port, bytes.
    #[arg(long, default_value_t = 2 * 1024 * 1024)]
    max_grpc_message_bytes: usize,
    /// Most concurrent streams per client connection.
    #[arg(long, default_value_t = 4096)]
    max_concurrent_streams: u32,
    /// The space quota of this member's keyspace, as etcd's: a write that would take it
    /// past this raises the NOSPACE alarm, and then the cluster takes no write that adds
    /// data until space is freed (compact, defragment) and the alarm disarmed (`etcdctl
    /// alarm disarm`). 0: etcd's default, 2 GiB; negative: no quota.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    quota_backend_bytes: i64,
    /// How long a request waits for a leader before failing, milliseconds.
    #[arg(long, default_value_t = 7000)]
    request_timeout_ms: u64,
    /// Automatic compaction: `periodic` keeps --auto-compaction-retention of time (e.g. 10m,
    /// 1h), `revision` keeps that many revisions, `off` never compacts by itself.
    #[arg(long, value_enum, default_value = "periodic")]
    auto_compaction_mode: CompactionMode,
    /// What automatic compaction keeps: a duration (periodic) or a revision count (revision).
    #[arg(long, default_value = "10m")]
    auto_compaction_retention: String,
    /// Interval of watch progress notifications, milliseconds.
    #[arg(long, default_value_t = 600_000)]
    watch_progress_interval_ms: u64,
    #[command(flatten)]
    controller_manager: ControllerManagerFlags,
    /// Run the embedded scheduler (active while this master holds the scheduler lease).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    scheduler: bool,
    #[command(flatten)]
    scheduler_flags: SchedulerFlags,
    #[command(flatten)]
    election: ElectionFlags,
    /// The range Services' cluster IPs come from (the first address is the API's
    /// `default/kubernetes` Service, the tenth the cluster DNS).
    #[arg(long, default_value = allocation::DEFAULT_SERVICE_CIDR)]
    service_cidr: String,
    /// The range node ports come from (NodePort and LoadBalancer Services).
    #[arg(long, default_value = allocation::DEFAULT_NODE_PORTS)]
    service_node_port_range: String,
    /// The addresses LoadBalancer Services get as EXTERNAL-IP; routed only on this cluster's
    /// nodes.
    #[arg(long, default_value = allocation::DEFAULT_LB_POOL)]
    lb_pool: String,
    /// Fault injection for tests: failpoints to turn on, in the `fail` crate's syntax
    /// (`NAME=ACTIONS;...`, e.g. `leader-steps-down-late=return(3000)`).
    #[arg(long, hide = true)]
    failpoints: Option<String>,
    /// Fault injection for chaos runs: on SIGUSR1 the failpoints in this file are applied
    /// (the syntax of --failpoints, `;` or a line between entries; `NAME=off` turns one
    /// off). Without this flag SIGUSR1 is not caught.
    #[arg(long, hide = true)]
    failpoints_file: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum CompactionMode {
    Periodic,
    Revision,
    Off,
}

fn retention(mode: CompactionMode, value: &str) -> anyhow::Result<Retention> {
    match mode {
        CompactionMode::Off => Ok(Retention::Off),
        CompactionMode::Revision => match value.parse::<i64>() {
            Ok(count) if count > 0 => Ok(Retention::Revisions(count)),
            _ => bail!("--auto-compaction-retention {value:?} must be a positive revision count in revision mode"),
        },
        CompactionMode::Periodic => parse_duration(value).map(Retention::Period),
    }
}

/// `500ms`, `30s`, `10m`, `1h`, or a bare number of hours (as etcd reads it).
fn parse_duration(value: &str) -> anyhow::Result<Duration> {
    parse_flag_duration("--auto-compaction-retention", value, "h")
}

/// Configures each `NAME=ACTIONS` of `--failpoints`. Actions that block the thread they run
/// on (`sleep`, `delay`, `pause`, `yield`) are refused: failpoints here run on async tasks,
/// which must not block a runtime worker; a failpoint that waits takes `return(MS)`.
fn turn_on_failpoints(list: &str) -> anyhow::Result<()> {
    for entry in list
        .split([';', '\n'])
        .filter(|entry| !entry.trim().is_empty())
    {
        let Some((name, actions)) = entry.split_once('=') else {
            bail!("--failpoints entry {entry:?} is not NAME=ACTIONS");
        };
        if let Some(blocking) = ["sleep", "delay", "pause", "yield"]
            .into_iter()
            .find(|task| actions.contains(task))
        {
            bail!(
                "--failpoints entry {entry:?}: `{blocking}` would block an async worker \
                 thread; use return(MS) where the failpoint waits"
            );
        }
        rudder_proto::failpoints::configure(name.trim(), actions.trim())
            .map_err(|why| anyhow::anyhow!("--failpoints entry {entry:?}: {why}"))?;
        tracing::warn!(
            failpoint = name.trim(),
            actions = actions.trim(),
            "failpoint on (fault injection)"
        );
    }
    Ok(())
}

fn parse_initial_cluster(entries: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    entries
        .iter()
        .map(|entry| match entry.split_once('=') {
            Some((name, addr)) if !name.is_empty() && !addr.is_empty() => {
                let addr = addr.trim_start_matches("http://").trim_end_matches('/');
                Ok((name.to_owned(), addr.to_owned()))
            }
            _ => bail!("--initial-cluster entry {entry:?} is not name=host:port"),
        })
        .collect()
}

/// On each SIGUSR1, the failpoints in `path` ([`turn_on_failpoints`]); what goes wrong is
/// logged, and the member goes on.
fn apply_failpoints_file_on_sigusr1(path: PathBuf) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut signals = signal(SignalKind::user_defined1()).context("catching SIGUSR1")?;
    tokio::spawn(async move {
        while signals.recv().await.is_some() {
            let applied = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))
                .and_then(|list| turn_on_failpoints(&list));
            if let Err(error) = applied {
                tracing::error!(error = format!("{error:#}"), "failpoints file not applied");
            }
        }
    });
    Ok(())
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    if let Some(failpoints) = &args.failpoints {
        turn_on_failpoints(failpoints)?;
    }
    if let Some(path) = &args.failpoints_file {
        if !rudder_proto::failpoints::COMPILED_IN {
            bail!(
                "--failpoints-file: {}",
                rudder_proto::failpoints::NOT_COMPILED_IN
            );
        }
        apply_failpoints_file_on_sigusr1(path.clone())?;
    }
    let metrics = Metrics::for_process();
    let config = MemberConfig {
        name: args.name.clone(),
        data_dir: args.data_dir.clone(),
        listen_client: args.listen_client,
        listen_peer: args.listen_peer,
        initial_cluster: parse_initial_cluster(&args.initial_cluster)?,
        initial_cluster_token: args.initial_cluster_token.clone(),
        join: args.join.clone(),
        raft: RaftOptions {
            heartbeat_interval: Duration::from_millis(args.heartbeat_interval_ms),
            election_timeout: Duration::from_millis(args.election_timeout_ms),
            snapshot_entries: args.snapshot_count,
            keep_entries: args.snapshot_catchup_entries,
        },
        store: StoreOptions {
            limits: Limits {
                max_request_bytes: args.max_request_bytes,
                max_txn_ops: args.max_txn_ops,
                max_watchers_per_stream: args.max_watchers_per_stream,
                max_grpc_message_bytes: args.max_grpc_message_bytes,
                max_concurrent_streams: args.max_concurrent_streams,
            },
            request_timeout: Duration::from_millis(args.request_timeout_ms),
            watch_progress_interval: Duration::from_millis(args.watch_progress_interval_ms),
            quorum_lost_after: 2 * Duration::from_millis(args.election_timeout_ms),
            quota_bytes: match args.quota_backend_bytes {
                0 => Some(DEFAULT_QUOTA_BYTES),
                negative if negative < 0 => None,
                bytes => Some(bytes as u64),
            },
        },
        auto_compaction: retention(args.auto_compaction_mode, &args.auto_compaction_retention)?,
        metrics: metrics.clone(),
        peer_tls: None,
    };
    let ranges = ServiceRanges::parse(
        &args.service_cidr,
        &args.service_node_port_range,
        &args.lb_pool,
    )
    .map_err(anyhow::Error::msg)?;
    let cluster_config = ClusterConfig::new(
        &ranges,
        Some(args.controller_manager.cluster_cidr().to_owned()),
    );
    // A token stands for --pki and --join: the keys it gets, the peer address it is told;
    // once joined, the data directory keeps both, and the token is not needed again.
    let joined_before = super::join::joined_master(&args.data_dir).filter(|_| args.pki.is_none());
    let (pki, join) = match (joined_before, &args.token) {
        // Where to join: what the flags say (--initial-cluster, a --join without --token),
        // else where the join was made.
        (Some((pki, peer)), token) => {
            let join = match (&args.join, token) {
                (Some(given), None) => Some(given.clone()),
                _ if !args.initial_cluster.is_empty() => None,
                _ => Some(peer),
            };
            (Some(pki), join)
        }
        (None, Some(token)) => {
            let address = args.join.as_deref().unwrap_or_default();
            let (pki, peer) =
                super::join::master_pki(&args.data_dir, address, token, &args.name).await?;
            (Some(pki), Some(peer))
        }
        (None, None) => (args.pki.clone(), args.join.clone()),
    };
    if pki.is_none() {
        // Before anything is made: a refused start leaves nothing behind.
        server_security::check_plaintext("client", args.listen_client, args.insecure)?;
        server_security::check_plaintext("peer", args.listen_peer, args.insecure)?;
    }
    let (keys_path, keyring) = server_security::keyring(&SecurityFlags {
        data_dir: &args.data_dir,
        encryption_keys: args.encryption_keys.as_deref(),
        pki: pki.as_deref(),
        alone: join.is_none() && args.initial_cluster.len() <= 1,
    })?;
    let certificate_lifetime =
        parse_flag_duration("--certificate-lifetime", &args.certificate_lifetime, "h")?;
    let tls = match &pki {
        Some(pki) => {
            let lifetime = certificate_lifetime;
            let listening = [args.listen_client, args.listen_peer];
            // Pods reach the API as the `kubernetes` Service (its address, its names), and
            // check the certificate against the CA their token volume holds.
            let mut names = args.tls_san.clone();
            names.push(ranges.kubernetes_ip().to_string());
            names.extend(
                ["kubernetes", "kubernetes.default", "kubernetes.default.svc"].map(String::from),
            );
            names.push("kubernetes.default.svc.cluster.local".into());
            let tls = ServerTls::start(pki, &args.name, listening, &names, lifetime)?;
            tls.renew_before_expiry();
            Some(tls)
        }
        None => {
            tracing::warn!(
                "NO TLS: the client and peer ports speak plaintext and trust every caller; give --pki \
                 DIR (made by `rudder ca init DIR`) to secure it"
            );
            None
        }
    };
    let config = MemberConfig {
        peer_tls: tls.as_ref().map(ServerTls::peer).transpose()?,
        join,
        ..config
    };
    let audit = match &args.audit_log_path {
        Some(path) => Some(
            AuditLog::open(path, args.audit_log_reads)
                .with_context(|| format!("opening the audit log {}", path.display()))?,
        ),
        None => None,
    };
    let tokens = match &args.token_auth_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the token file {}", path.display()))?;
            let tokens = BearerTokens::parse(&text)
                .with_context(|| format!("the token file {}", path.display()))?;
            tracing::info!(tokens = tokens.len(), "bearer tokens taken");
            Some(Arc::new(tokens))
        }
        None => None,
    };
    let audit_log = audit.clone();
    let signing_key_pem = pki
        .as_deref()
        .map(super::ca::load_service_account_key)
        .transpose()?;
    let security = Security {
        keys: SharedKeyring::new(keyring),
        client_tls: tls.as_ref().map(|tls| tls.config.clone()),
        audit,
        tokens,
        // Nodes take only masters' certificates: the one this master dials its peers with.
        kubelet_tls: config.peer_tls.as_ref().map(|peer| peer.client.clone()),
        token_key: match &signing_key_pem {
            Some(pem) => {
                let key = TokenKey::from_pem(pem)
                    .map_err(anyhow::Error::msg)
                    .context("the ServiceAccount token key of the PKI directory")?;
                Some(Arc::new(key))
            }
            None => None,
        },
        join: match (&tls, signing_key_pem) {
            (Some(tls), Some(pem)) => Some(JoinAuthority {
                ca: tls.ca().clone(),
                service_account_key_pem: pem,
                node_certificate_lifetime: certificate_lifetime,
                master_names: tls.names().to_vec(),
            }),
            _ => None,
        },
    };
    let mut master = Master::start(config, ranges, security)
        .await
        .with_context(|| {
            format!(
                "starting member {} with data in {:?}",
                args.name, args.data_dir
            )
        })?;
    master.publish_cluster_config(cluster_config);
    master.follow_keyring(keys_path);
    // Caught before the ready line: a stop asked for once it is out is an orderly one.
    let mut interrupts = Interrupts::catch()?;
    // Machine-readable line for scripts and tests that start members on port 0.
    let member = &master.member;
    println!(
        "rudder server {} ready: client {} peer {} id {:x}",
        args.name, member.client_addr, member.peer_addr, member.id
    );
    let endpoint = server_security::own_endpoint(member.client_addr);
    let client_of = |user: &str| -> anyhow::Result<ApiClient> {
        let tls = tls.as_ref().map(|tls| tls.client(user)).transpose()?;
        Ok(ApiClient::with_tls(vec![endpoint.clone()], tls))
    };
    // The controller manager and the scheduler follow the same pods and nodes: once, on
    // the master's runtime (each runs on a thread of its own).
    let informers = SharedInformers::on(tokio::runtime::Handle::current());
    let controllers = controller_manager::start_embedded(
        &args.controller_manager,
        &args.election,
        &args.name,
        client_of("system:kube-controller-manager")?,
        &metrics,
        &informers,
    )?;
    let scheduler = if args.scheduler {
        Some(scheduler::start_embedded(
            &args.scheduler_flags,
            &args.election,
            &args.name,
            client_of("system:kube-scheduler")?,
            &metrics,
            &informers,
        )?)
    } else {
        None
    };
    tokio::select! {
        () = interrupts.wait() => {}
        reason = member.failed() => {
            tracing::error!(%reason, "member stopped after a fatal error");
            // Out at once, as a crash would be, with exit code 1: nothing more may reach a
            // disk that failed. An orderly exit would run the C++ destructors under
            // RocksDB's still-running background threads, which aborts the process
            // ("pthread lock: Invalid argument", SIGABRT); a chaos run's disk faults
            // showed it.
            eprintln!("error: member stopped: {reason}");
            // SAFETY: `_exit` ends the process here; no code runs after it, so nothing can
            // observe a broken invariant.
            unsafe { libc::_exit(1) }
        }
    }
    // Both at once: each gives its lease up, which may wait out a store without quorum.
    tokio::join!(
        async {
            if let Some(scheduler) = scheduler {
                scheduler.stop().await;
            }
        },
        async {
            if let Some(controllers) = controllers {
                controllers.stop().await;
            }
        }
    );
    master.shutdown().await;
    if let Some(audit) = &audit_log {
        // Every record in the file before the process ends.
        audit.flush().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failpoints_name_their_actions_and_blocking_ones_are_refused() {
        let error = turn_on_failpoints("no-equals-sign").unwrap_err();
        assert!(error.to_string().contains("is not NAME=ACTIONS"), "{error}");
        let error = turn_on_failpoints("x-test-blocking=sleep(100)").unwrap_err();
        assert!(error.to_string().contains("`sleep` would block"), "{error}");
        let turned_on = turn_on_failpoints("x-test-returning=return(5)");
        let seen = rudder_proto::failpoints::eval("x-test-returning", |value| value);
        rudder_proto::failpoints::remove("x-test-returning");
        match rudder_proto::failpoints::COMPILED_IN {
            true => {
                turned_on.unwrap();
                assert_eq!(seen, Some(Some("5".to_string())));
            }
            false => {
                let error = turned_on.unwrap_err().to_string();
                assert!(error.contains("--features chaos"), "{error}");
            }
        }
    }

    #[test]
    fn retention_reads_like_etcd() {
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("10x")
            .unwrap_err()
            .to_string()
            .contains("unknown unit"));
        assert!(parse_duration("0s").is_err());
        assert_eq!(
            retention(CompactionMode::Revision, "1000").unwrap(),
            Retention::Revisions(1000)
        );
        assert!(retention(CompactionMode::Revision, "-5").is_err());
        assert_eq!(
            retention(CompactionMode::Off, "whatever").unwrap(),
            Retention::Off
        );
    }

    #[test]
    fn initial_cluster_entries_need_a_name_and_an_address() {
        let parsed = parse_initial_cluster(&["m1=http://127.0.0.1:2380".into()]).unwrap();
        assert_eq!(parsed, [("m1".to_string(), "127.0.0.1:2380".to_string())]);
        assert!(parse_initial_cluster(&["m1".into()]).is_err());
        assert!(parse_initial_cluster(&["=127.0.0.1:1".into()]).is_err());
    }
}
