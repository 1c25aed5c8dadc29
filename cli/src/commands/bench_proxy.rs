//! `rudder bench proxy`: the node proxy's rule sync. For each count of Services, the nft
//! script is made (`ruleset::full_sync`) and applied (`nft -f -`) in a private network
//! namespace of its own (needs root; nothing of the machine's is touched): once as a new
//! table, then again with one Service's endpoints changed — which today is a full sync
//! too, as the proxy does. Throughput through a cluster IP, programming latency and DNS are
//! not measured here yet.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use rudder_node::proxy::model::{Backend, Protocol, ServicePort};
use rudder_node::proxy::nft;
use rudder_node::proxy::ruleset::{full_sync, ProxyConfig};
use rudder_proto::objects::cidr::Ipv4Cidr;

#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// Counts of Services to sync, each a run of its own.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    services: Vec<usize>,
    /// Ready endpoints per Service.
    #[arg(long, default_value_t = 3)]
    endpoints: usize,
    /// Syncs per measurement (the median is shown).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

/// One count's medians.
struct Row {
    services: usize,
    script_bytes: usize,
    make: Duration,
    first_apply: Duration,
    one_changed: Duration,
}

pub async fn run(args: ProxyArgs) -> anyhow::Result<()> {
    // A thread of its own enters the private namespace, so that no runtime thread does.
    let rows = tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || measure(&args))
            .join()
            .map_err(|_| anyhow::anyhow!("the measuring thread panicked"))?
    })
    .await??;
    println!(
        "| Services | script KiB | make script ms | first apply ms | one changed (full sync) ms |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for row in rows {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} |",
            row.services,
            row.script_bytes / 1024,
            ms(row.make),
            ms(row.first_apply),
            ms(row.one_changed)
        );
    }
    Ok(())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn measure(args: &ProxyArgs) -> anyhow::Result<Vec<Row>> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .context("entering a private network namespace (run as root)")?;
    let config = ProxyConfig {
        table: "rudder-bench".into(),
        bridge: "rbbench".into(),
        bridge_prefix: "rb".into(),
        cluster_cidr: Ipv4Cidr::parse("10.244.0.0/16").map_err(anyhow::Error::msg)?,
        service_ranges: vec![Ipv4Cidr::parse("10.96.0.0/12").map_err(anyhow::Error::msg)?],
        node_ips: vec![Ipv4Addr::new(10, 244, 0, 1), Ipv4Addr::LOCALHOST],
        local_targets: Vec::new(),
    };
    let rounds = args.rounds.max(1);
    let mut rows = Vec::new();
    for &count in &args.services {
        let mut ports = services(count, args.endpoints);
        let (mut makes, mut firsts, mut changes) = (Vec::new(), Vec::new(), Vec::new());
        let mut script_bytes = 0;
        for round in 0..rounds {
            nft::apply(&rudder_node::proxy::ruleset::remove(&config.table))?;
            let started = Instant::now();
            let script = full_sync(&config, &ports);
            makes.push(started.elapsed());
            script_bytes = script.len();
            let started = Instant::now();
            nft::apply(&script).with_context(|| format!("applying {count} Services"))?;
            firsts.push(started.elapsed());
            // One Service's endpoints change: the next sync (make and apply).
            let changed = &mut ports[round % count.max(1)];
            if let Some(first) = changed.endpoints.first_mut() {
                first.port = first.port.wrapping_add(1);
            }
            let started = Instant::now();
            let script = full_sync(&config, &ports);
            nft::apply(&script)?;
            changes.push(started.elapsed());
        }
        nft::apply(&rudder_node::proxy::ruleset::remove(&config.table))?;
        rows.push(Row {
            services: count,
            script_bytes,
            make: median(makes),
            first_apply: median(firsts),
            one_changed: median(changes),
        });
    }
    Ok(rows)
}

/// `count` ClusterIP Services with `endpoints` ready endpoints each.
fn services(count: usize, endpoints: usize) -> Vec<ServicePort> {
    (0..count)
        .map(|i| {
            let octets =
                |base: u8, n: usize| Ipv4Addr::new(10, base, (n / 250) as u8, (n % 250) as u8 + 1);
            ServicePort {
                id: format!("bench/svc-{i}/TCP/http"),
                protocol: Protocol::Tcp,
                cluster_ip: Some(octets(96, i)),
                port: 80,
                node_port: None,
                external_ips: Vec::new(),
                affinity_seconds: None,
                external_local: false,
                internal_local: false,
                endpoints: (0..endpoints)
                    .map(|e| Backend {
                        ip: octets(244, (i * endpoints + e) % 60_000),
                        port: 8080,
                        local: false,
                    })
                    .collect(),
            }
        })
        .collect()
}
