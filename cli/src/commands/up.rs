//! `rudder up`: a local HA control plane on loopback, in one process — the first thing a new
//! user runs. Running it again on the same `--data-dir` resumes the same cluster.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use std::time::Duration;

use rudder_raftstore::compaction::Retention;
use rudder_raftstore::server::RaftOptions;
use rudder_raftstore::{MemberConfig, RunningMember, StoreOptions};

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Where every member keeps its data (one subdirectory each).
    #[arg(long, default_value = "./rudder-data")]
    data_dir: PathBuf,
    /// Number of masters (3 or 5 tolerate one or two failures).
    #[arg(long, default_value_t = 3)]
    masters: u16,
    /// Client port of the first master; master i listens on base + 10000·i (peer port + 1).
    #[arg(long, default_value_t = 2379)]
    base_port: u16,
}

fn addr(port: u32) -> anyhow::Result<SocketAddr> {
    let port = u16::try_from(port).context("--base-port and --masters give a port above 65535")?;
    Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.masters >= 1, "--masters must be at least 1");
    let port =
        |i: u16, offset: u32| addr(u32::from(args.base_port) + 10_000 * u32::from(i) + offset);
    let mut initial = Vec::new();
    for i in 0..args.masters {
        initial.push((format!("m{}", i + 1), port(i, 1)?.to_string()));
    }
    let mut starting = Vec::new();
    for i in 0..args.masters {
        let config = MemberConfig {
            name: format!("m{}", i + 1),
            data_dir: args.data_dir.join(format!("m{}", i + 1)),
            listen_client: port(i, 0)?,
            listen_peer: port(i, 1)?,
            initial_cluster: initial.clone(),
            join: None,
            raft: RaftOptions::default(),
            store: StoreOptions::default(),
            auto_compaction: Retention::Period(Duration::from_secs(600)),
        };
        starting.push(tokio::spawn(RunningMember::start(config)));
    }
    let mut members = Vec::new();
    for (i, task) in starting.into_iter().enumerate() {
        let member = task
            .await?
            .with_context(|| format!("starting master m{}", i + 1))?;
        members.push(member);
    }
    let endpoints: Vec<String> = members.iter().map(|m| m.client_addr.to_string()).collect();
    println!(
        "rudder is up: {} masters, data in {:?}",
        members.len(),
        args.data_dir
    );
    for member in &members {
        println!(
            "  m{:<3} client {}  peer {}",
            members.iter().position(|m| m.id == member.id).unwrap_or(0) + 1,
            member.client_addr,
            member.peer_addr
        );
    }
    println!(
        "etcd v3 clients work against it: etcdctl --endpoints={}",
        endpoints.join(",")
    );
    println!("press Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    println!("stopping...");
    for member in members {
        member.shutdown().await;
    }
    println!("stopped; run `rudder up` again to resume");
    Ok(())
}
