//! `rudder chaos run`: a real cluster, the KV workload, the seed's faults, then the checks.
//!
//! The cluster is started fresh (Rudder's members, or Debian's etcd as a reference), the
//! workload runs for the whole length, the faults of [`schedule::draw`] are injected one at
//! a time and each healed, the workload stops after the quiet end (pushed back if a fault
//! ran late), and the recorded history is checked. A run that does not pass keeps the
//! members' logs beside its report. The cluster's processes are ended when the run ends,
//! by their PIDs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::check::{linear, once, watch};
use crate::cluster::{ClusterError, ProcessCluster};
use crate::history;
use crate::inject::{inject, restart_crashed, Injection};
use crate::report::{Observed, Plan, Report, Target, Verdict};
use crate::schedule::{self, QUIET};
use crate::workload::kv::KvWorkload;
use crate::workload::watchers::{self, Finish};

/// The workload's keys.
const PREFIX: &str = "chaos/";
/// Watchers beside the workload.
const WATCHERS: usize = 2;

/// Where the runner finds the members' programs.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub rudder: PathBuf,
    pub etcd: PathBuf,
}

/// Runs `plan`, telling `progress` what it does; the report of what happened. A run that
/// does not pass copies the members' logs into `logs_to`.
pub async fn run(
    plan: &Plan,
    binaries: &Binaries,
    check_budget: Duration,
    logs_to: &Path,
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
    let mut cluster = start(plan, binaries).await?;
    let leader = cluster.leader().await?;
    progress(&format!(
        "{} {:?} members up, {} leads",
        plan.masters, plan.target, cluster.members[leader].name
    ));

    let workload = KvWorkload {
        clients: plan.clients,
        keys: plan.keys,
        prefix: PREFIX.into(),
        seed: plan.seed,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let running = tokio::spawn({
        let (endpoints, stop) = (cluster.endpoints(), stop.clone());
        async move { workload.run_from(endpoints, stop, start).await }
    });
    // Watching every change of the workload's keys from the first.
    let finish = Finish::default();
    let watching = tokio::spawn(watchers::run(
        WATCHERS,
        PREFIX,
        cluster.endpoints(),
        1,
        finish.clone(),
    ));
    let mut injection = Injection::default();
    let mut incidents = Vec::new();
    if let Err(error) = inject(
        &mut cluster,
        &schedule,
        start,
        &mut injection,
        &mut progress,
    )
    .await
    {
        incidents.push(format!("the faults stopped early: {error}"));
    }
    // The quiet end, after the last fault even if it ran late; then the last look for
    // members that ended by themselves.
    let end = length.max(injection.last_end + QUIET);
    tokio::time::sleep_until((start + end).into()).await;
    if let Err(error) = restart_crashed(&mut cluster, start, &mut injection, &mut progress).await {
        incidents.push(format!(
            "a member that ended could not be restarted: {error}"
        ));
    }
    stop.store(true, Ordering::Relaxed);
    let ended_ms = start.elapsed().as_millis() as u64;
    let kv = match running.await {
        Ok(kv) => kv,
        Err(error) => {
            incidents.push(format!("the workload failed: {error}"));
            Default::default()
        }
    };
    let history = kv.operations;

    // The store's own record, once the members agree where the writes ended; the watchers
    // must reach it too.
    let reference = match history::settled(&cluster, PREFIX, Duration::from_secs(30)).await {
        Ok(through) => {
            finish.through.store(through.max(1), Ordering::Relaxed);
            // Every member has it all now; any will do.
            let member = cluster.endpoints().first().cloned().unwrap_or_default();
            history::changes(&member, PREFIX, through).await
        }
        Err(why) => Err(why),
    };
    let watchers = match tokio::time::timeout(Duration::from_secs(20), watching).await {
        Ok(Ok(watchers)) => Ok(watchers),
        Ok(Err(error)) => Err(format!("the watchers failed: {error}")),
        Err(_) => {
            finish.stop.store(true, Ordering::Relaxed);
            Err("the watchers did not reach the last write within 20 s".into())
        }
    };

    progress(&format!("checking {} operations", history.len()));
    let checked = Instant::now();
    let outcome = linear::check(&history, check_budget);
    let watches = reference.clone().and_then(|reference| {
        let watchers = watchers?;
        let events = watchers.iter().map(|w| w.events.len()).sum();
        Ok((watchers.len(), events, watch::check(&reference, &watchers)))
    });
    let once = reference.map(|reference| {
        let seen = once::puts_of(reference);
        (kv.writes.len(), once::check(&kv.writes, &seen))
    });
    progress(&format!(
        "checked in {:.1}s",
        checked.elapsed().as_secs_f64()
    ));
    let report = Report::new(
        plan.clone(),
        schedule,
        Observed {
            injected: injection.faults,
            crashes: injection.crashes,
            incidents,
            ended_ms,
            history: &history,
            linearizability: &outcome,
            watches,
            once,
        },
    );
    if report.verdict != Verdict::Pass {
        keep_logs(&cluster, logs_to, &mut progress);
    }
    Ok(report)
}

async fn start(plan: &Plan, binaries: &Binaries) -> Result<ProcessCluster, ClusterError> {
    match plan.target {
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
            ProcessCluster::start_rudder(&binaries.rudder, plan.masters, &flags)
        }
        Target::Etcd => ProcessCluster::start_etcd(&binaries.etcd, plan.masters).await,
    }
}

/// Copies each member's log to `dir/<name>.log`, saying where.
fn keep_logs(cluster: &ProcessCluster, dir: &Path, progress: &mut impl FnMut(&str)) {
    let copied = std::fs::create_dir_all(dir).and_then(|()| {
        for member in &cluster.members {
            std::fs::copy(member.log_path(), dir.join(format!("{}.log", member.name)))?;
        }
        Ok(())
    });
    match copied {
        Ok(()) => progress(&format!("the members' logs are in {}", dir.display())),
        Err(error) => progress(&format!("could not keep the members' logs: {error}")),
    }
}
