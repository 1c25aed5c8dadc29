//! `rudder cluster-info`, `rudder version`, and `rudder cluster status|members`: the control
//! plane as an operator checks it (every master's Raft role, term, revision and lag, and the
//! headline figures of its `/metrics`: leader changes seen, log fsync p99, watches, memory,
//! and whether it runs the controllers or the scheduler now).

use clap::{Args, Subcommand};
use rudder_proto::etcdserverpb::cluster_client::ClusterClient;
use rudder_proto::etcdserverpb::{MemberListRequest, StatusRequest, StatusResponse};
use rudder_proto::metrics::{quantile, sample};

use crate::session::{Session, Target};
use rudder_printers::table::render;

#[derive(Args, Debug)]
pub struct InfoArgs {
    #[command(flatten)]
    target: Target,
}

pub async fn cluster_info(args: InfoArgs) -> anyhow::Result<()> {
    let session = Session::connect(&args.target).await?;
    println!(
        "Rudder control plane is running at {}",
        session.client.current_endpoint()
    );
    println!(
        "Masters (API and etcd v3 API on each): {}",
        session.masters.join(", ")
    );
    println!("\nTo further debug and diagnose cluster problems, use 'rudder cluster status'.");
    Ok(())
}

pub async fn version(args: InfoArgs) -> anyhow::Result<()> {
    println!("Client Version: {}", env!("CARGO_PKG_VERSION"));
    match Session::connect(&args.target).await {
        Ok(session) => println!("Server Version: {}", session.server_version),
        Err(error) => eprintln!("Server Version: unknown ({error:#})"),
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Every master's Raft role, term, revision, applied index, lag behind the leader, and
    /// headline figures from its metrics.
    Status(InfoArgs),
    /// The members of the control plane.
    Members(InfoArgs),
}

pub async fn run(command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Status(args) => status(args).await,
        ClusterCommand::Members(args) => members(args).await,
    }
}

async fn status(args: InfoArgs) -> anyhow::Result<()> {
    let session = Session::connect(&args.target).await?;
    let mut statuses: Vec<(String, Result<StatusResponse, String>)> = Vec::new();
    let tls = session.client.tls();
    let scrapes = futures::future::join_all(
        session
            .masters
            .iter()
            .map(|master| rudder_chaos::client::scrape_with(master, tls.as_ref())),
    )
    .await;
    for master in &session.masters {
        let status = async {
            let mut client = rudder_chaos::client::maintenance_with(master, tls.as_ref()).await?;
            client
                .status(StatusRequest {})
                .await
                .map(|r| r.into_inner())
                .map_err(|e| e.message().to_string())
        }
        .await;
        statuses.push((master.clone(), status));
    }
    let leader_index = statuses
        .iter()
        .filter_map(|(_, s)| s.as_ref().ok())
        .find(|s| s.header.as_ref().is_some_and(|h| h.member_id == s.leader))
        .map(|s| s.raft_index);
    let mut rows = vec![vec![
        "ENDPOINT".to_string(),
        "ID".into(),
        "ROLE".into(),
        "TERM".into(),
        "REVISION".into(),
        "RAFT INDEX".into(),
        "APPLIED".into(),
        "LAG".into(),
        "DB SIZE".into(),
        "LEADER CHANGES".into(),
        "FSYNC P99".into(),
        "WATCHES".into(),
        "MEMORY".into(),
        "RUNS".into(),
    ]];
    for ((endpoint, status), scraped) in statuses.iter().zip(&scrapes) {
        match status {
            Ok(status) => {
                let header = status.header.unwrap_or_default();
                let role = if status.is_learner {
                    "learner"
                } else if header.member_id == status.leader {
                    "leader"
                } else {
                    "follower"
                };
                let lag = leader_index
                    .map(|leader| leader.saturating_sub(status.raft_applied_index).to_string())
                    .unwrap_or_else(|| "?".into());
                rows.push(vec![
                    endpoint.clone(),
                    format!("{:x}", header.member_id),
                    role.into(),
                    header.raft_term.to_string(),
                    header.revision.to_string(),
                    status.raft_index.to_string(),
                    status.raft_applied_index.to_string(),
                    lag,
                    human_bytes(status.db_size),
                ]);
                let row = rows.last_mut().expect("just pushed");
                match scraped {
                    Ok(text) => row.extend(headline(text)),
                    Err(_) => row.extend(["?"; 5].map(String::from)),
                }
            }
            Err(error) => rows.push(vec![
                endpoint.clone(),
                "?".into(),
                format!("unreachable ({error})"),
            ]),
        }
    }
    print!("{}", render(&rows));
    // Every member reports the cluster's alarms: each once.
    let mut alarms: Vec<&str> = statuses
        .iter()
        .filter_map(|(_, status)| status.as_ref().ok())
        .flat_map(|status| status.errors.iter().map(|error| error.trim()))
        .filter(|error| error.contains("alarm:"))
        .collect();
    alarms.sort_unstable();
    alarms.dedup();
    for alarm in alarms {
        println!(
            "{alarm}: the store refuses writes that add data; free space (`etcdctl \
             compact`, then `etcdctl defrag --cluster`) and disarm it (`etcdctl alarm disarm`)"
        );
    }
    Ok(())
}

async fn members(args: InfoArgs) -> anyhow::Result<()> {
    let session = Session::connect(&args.target).await?;
    let endpoint = session.client.current_endpoint();
    let channel = rudder_chaos::client::channel_with(endpoint, session.client.tls().as_ref())
        .await
        .map_err(anyhow::Error::msg)?;
    let response = ClusterClient::new(channel)
        .member_list(MemberListRequest { linearizable: true })
        .await?
        .into_inner();
    let mut rows = vec![vec![
        "NAME".to_string(),
        "ID".into(),
        "LEARNER".into(),
        "PEER ADDRESS".into(),
        "CLIENT ADDRESS".into(),
    ]];
    for member in response.members {
        rows.push(vec![
            member.name,
            format!("{:x}", member.id),
            member.is_learner.to_string(),
            member.peer_ur_ls.join(","),
            member.client_ur_ls.join(","),
        ]);
    }
    print!("{}", render(&rows));
    Ok(())
}

/// The figures `rudder cluster status` shows from a master's metrics: leader changes it saw,
/// its log fsync's p99 since it started, the watches its API serves, its resident memory,
/// and which leader-elected components it runs now.
fn headline(metrics: &str) -> [String; 5] {
    let value = |name: &str| sample(metrics, name, &[]);
    let whole = |value: Option<f64>| value.map_or("?".into(), |v| format!("{v:.0}"));
    let watches: f64 = metrics
        .lines()
        .filter(|line| line.starts_with("rudder_apiserver_watches{"))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .fold(0.0, |sum, open| sum + open);
    let fsync = quantile(metrics, "rudder_raft_log_fsync_duration_seconds", 0.99)
        .map_or("-".into(), |seconds| format!("{:.1}ms", seconds * 1000.0));
    let memory = value("process_resident_memory_bytes")
        .map_or("?".into(), |bytes| human_bytes(bytes as i64));
    let runs: Vec<&str> = [
        ("rudder_controller_manager_is_leader", "controllers"),
        ("rudder_scheduler_is_leader", "scheduler"),
    ]
    .into_iter()
    .filter(|(name, _)| value(name) == Some(1.0))
    .map(|(_, what)| what)
    .collect();
    [
        whole(value("rudder_raft_leader_changes_seen_total")),
        fsync,
        whole(Some(watches)),
        memory,
        if runs.is_empty() {
            "-".into()
        } else {
            runs.join(",")
        },
    ]
}

fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.0} {}", UNITS[unit])
}
