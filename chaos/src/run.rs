//! `rudder chaos run`: a real cluster, the KV workload, the seed's faults, then the checks.
//!
//! The cluster is started fresh (Rudder's members, or Debian's etcd as a reference), the
//! workload runs for the whole length, the faults of [`schedule::draw`] are injected one at
//! a time and each healed, the workload stops after the quiet end, and the recorded history
//! is checked. The cluster's processes are ended when the run ends, by their PIDs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::check::linear;
use crate::cluster::{ClusterError, ProcessCluster};
use crate::inject::inject;
use crate::report::{Plan, Report, Target};
use crate::schedule;
use crate::workload::kv::KvWorkload;

/// Where the runner finds the members' programs.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub rudder: PathBuf,
    pub etcd: PathBuf,
}

/// Runs `plan`, telling `progress` what it does; the report of what happened.
pub async fn run(
    plan: &Plan,
    binaries: &Binaries,
    check_budget: Duration,
    mut progress: impl FnMut(&str),
) -> Result<Report, ClusterError> {
    let length = Duration::from_millis(plan.length_ms);
    let schedule = schedule::draw(plan.seed, length, &plan.faults);
    progress(&format!(
        "seed {}: {} faults over {:.0}s",
        plan.seed,
        schedule.len(),
        length.as_secs_f64()
    ));
    let mut cluster = match plan.target {
        Target::Rudder => {
            let flags = match plan.planted.is_empty() {
                true => vec![],
                false => vec![format!(
                    "--failpoints={}",
                    plan.planted
                        .iter()
                        .map(|failpoint| format!("{failpoint}=return"))
                        .collect::<Vec<_>>()
                        .join(";")
                )],
            };
            ProcessCluster::start_rudder(&binaries.rudder, plan.masters, &flags)?
        }
        Target::Etcd => ProcessCluster::start_etcd(&binaries.etcd, plan.masters).await?,
    };
    let leader = cluster.leader().await?;
    progress(&format!(
        "{} {:?} members up, {} leads",
        plan.masters, plan.target, cluster.members[leader].name
    ));

    let workload = KvWorkload {
        clients: plan.clients,
        keys: plan.keys,
        prefix: "chaos/".into(),
        seed: plan.seed,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let running = tokio::spawn({
        let (endpoints, stop) = (cluster.endpoints(), stop.clone());
        async move { workload.run(endpoints, stop).await }
    });
    let injected = inject(&mut cluster, &schedule, start, &mut progress).await;
    // Whatever happened, the workload stops and the members are healed (inject heals each
    // fault it starts) before anything is returned.
    tokio::time::sleep_until((start + length).into()).await;
    stop.store(true, Ordering::Relaxed);
    let history = running.await.unwrap_or_default();
    let injected = injected?;
    drop(cluster);

    progress(&format!("checking {} operations", history.len()));
    let checked = Instant::now();
    let outcome = linear::check(&history, check_budget);
    progress(&format!(
        "checked in {:.1}s",
        checked.elapsed().as_secs_f64()
    ));
    Ok(Report::new(
        plan.clone(),
        schedule,
        injected,
        &history,
        &outcome,
    ))
}
