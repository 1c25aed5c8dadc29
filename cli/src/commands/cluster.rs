//! `rudder cluster-info`, `rudder version`, and `rudder cluster status|members`: the control
//! plane as an operator checks it (every master's Raft role, term, revision and lag).

use clap::{Args, Subcommand};
use rudder_proto::etcdserverpb::cluster_client::ClusterClient;
use rudder_proto::etcdserverpb::{MemberListRequest, StatusRequest, StatusResponse};

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
    /// Every master's Raft role, term, revision, applied index and lag behind the leader.
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
    for master in &session.masters {
        let status = async {
            let mut client = rudder_chaos::client::maintenance(master)
                .await
                .map_err(|e| e.to_string())?;
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
    ]];
    for (endpoint, status) in &statuses {
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
            }
            Err(error) => rows.push(vec![
                endpoint.clone(),
                "?".into(),
                format!("unreachable ({error})"),
            ]),
        }
    }
    print!("{}", render(&rows));
    Ok(())
}

async fn members(args: InfoArgs) -> anyhow::Result<()> {
    let session = Session::connect(&args.target).await?;
    let channel = rudder_chaos::client::channel(session.client.current_endpoint()).await?;
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
