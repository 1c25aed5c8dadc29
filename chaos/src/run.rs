//! `rudder chaos run`: a real cluster, the KV workload, the seed's faults, then the checks.
//!
//! The cluster is started fresh (Rudder's members, or Debian's etcd as a reference; each
//! member in a network namespace of its own when the faults include partitions), the
//! workload runs for the whole length, the faults of [`schedule::for_run`] are injected one at
//! a time and each healed, the workload stops after the quiet end (pushed back if a fault
//! ran late), and the recorded history is checked. A run that does not pass keeps the
//! members' logs beside its report. The cluster's processes are ended when the run ends,
//! by their PIDs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rudder_proto::client::ApiClient;

use crate::check::watch::Change;
use crate::check::{kube, linear, once, serializable, watch};
use crate::cluster::{ClusterError, ProcessCluster};
use crate::inject::{inject, restart_crashed, Injection};
use crate::live::Live;
use crate::nodes::{self, NodeGroup, NODE_MONITOR_GRACE};
use crate::report::{
    KubeOutcome, ObjectsOutcome, Observed, Plan, Report, Target, Verdict, WatchOutcome,
};
use crate::schedule::{FaultKind, QUIET};
use crate::workload::kv::KvWorkload;
use crate::workload::objects::ObjectsWorkload;
use crate::workload::pods::{Asked, Outcome, PodsWorkload};
use crate::workload::watchers::{self, Finish};
use crate::{durability, history};

/// The workload's keys.
const PREFIX: &str = "chaos/";
/// The pods workload's hollow nodes: processes, and nodes in each (a node loss kills one
/// process).
const NODE_GROUPS: usize = 3;
const NODES_PER_GROUP: u32 = 2;
/// Watchers beside the workload.
const WATCHERS: usize = 2;
/// The objects workload's clients, and the ConfigMaps they share.
const OBJECT_CLIENTS: u32 = 4;
const CONFIG_MAPS: usize = 3;
/// Both stores run with the same raft timing (Rudder's defaults), heartbeat and election
/// timeout in milliseconds, so that the checks, `progress` above all, compare like with
/// like: with etcd's own (100 ms, 1 s) a 1 s pause of its leader sometimes ends in an
/// election and sometimes not, and a killed leader is replaced only after 1 to 2 s.
const RAFT_TIMING_MS: (u64, u64) = (30, 150);

/// The bugs `--plant` may plant in Rudder's members: each its name, the failpoints that
/// make it (`NAME=ACTIONS;...`, as `rudder server --failpoints` takes them), and what it
/// breaks.
pub const PLANTABLE: &[(&str, &str, &str)] = &[
    (
        "stale-reads",
        "stale-reads=return",
        "linearizable reads served from a replica without asking the leader",
    ),
    (
        "lost-watch-events",
        "lost-watch-events=2%return",
        "about one revision in fifty left out of each watch",
    ),
    (
        "write-applied-twice",
        "write-applied-twice=1%return",
        "about one write batch in a hundred applied twice (its retry lost the request ids)",
    ),
    (
        "scheduler-ignores-pod-limit",
        "scheduler-ignores-pod-limit=return",
        "the scheduler forgets a node's pod limit (its allocatable pods), so pods that \
         wait for room are put on full nodes (needs --workload kv,pods)",
    ),
    (
        "fence-ignored",
        "fence-ignored=return;leader-steps-down-late=return(3000)",
        "the API server lets fenced writes through without looking at the lease, and a \
         deposed scheduler or controller manager goes on acting for 3 s: its writes land under \
         an old epoch (needs --workload kv,pods)",
    ),
    (
        "double-bind",
        "bind-ignores-assigned=return;scheduler-binds-again=10%return",
        "the API server binds a pod that is already bound, and the scheduler binds about \
         one pod in ten a second time, to another node: the pod moves (needs --workload \
         kv,pods)",
    ),
    (
        "update-ignores-resource-version",
        "update-ignores-resource-version=return",
        "the API server replaces an object without comparing the resourceVersion the update \
         carries: a compare-and-swap from a value since replaced wins (needs --workload \
         kv,objects)",
    ),
    (
        "fsync-errors-ignored",
        "fsync-errors-ignored=return",
        "a failed fsync of the log reported as done: the member runs on, acknowledging \
         entries whose fsync failed (a disk fault that fails an fsync shows it)",
    ),
];

/// The leader-elected components' timing with the pods workload: a lease, a renew
/// deadline, a retry period. A master paused for longer than about 2.25 s loses its
/// components' leases.
const LEADER_ELECTION: [&str; 3] = [
    "--leader-elect-lease-duration=2s",
    "--leader-elect-renew-deadline=1500ms",
    "--leader-elect-retry-period=250ms",
];

/// The planted bugs that only the pods workload shows.
pub const PLANTED_IN_PODS: &[&str] = &[
    "scheduler-ignores-pod-limit",
    "fence-ignored",
    "double-bind",
];
/// The planted bugs that only the objects workload shows.
pub const PLANTED_IN_OBJECTS: &[&str] = &["update-ignores-resource-version"];

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
    live: Arc<Live>,
    mut progress: impl FnMut(&str),
) -> Result<Report, ClusterError> {
    let length = Duration::from_millis(plan.length_ms);
    let schedule = plan.schedule();
    live.faults_planned.store(schedule.len(), Ordering::Relaxed);
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
    if let Some(network) = cluster.network() {
        progress(&format!(
            "each member in a network namespace of its own on {network}"
        ));
    }

    let pods = match plan.pods {
        true => Some(start_pods(&mut cluster, plan.seed, &live, &mut progress).await?),
        false => None,
    };
    let workload = KvWorkload {
        clients: plan.clients,
        keys: plan.keys,
        prefix: PREFIX.into(),
        seed: plan.seed,
        live: live.clone(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let running = tokio::spawn({
        let (endpoints, stop) = (cluster.endpoints(), stop.clone());
        async move { workload.run_from(endpoints, stop, start).await }
    });
    let changing = pods.map(|(pods, client)| tokio::spawn(pods.run(client, stop.clone(), start)));
    let objects = plan.objects.then(|| {
        let workload = ObjectsWorkload {
            clients: OBJECT_CLIENTS,
            config_maps: CONFIG_MAPS,
            seed: plan.seed,
            live: live.clone(),
        };
        let (endpoints, stop) = (cluster.endpoints(), stop.clone());
        tokio::spawn(async move { workload.run(endpoints, stop, start).await })
    });
    // Watching every change of the workload's keys from the first.
    let finish = Finish::default();
    let mut watching = tokio::spawn(watchers::run(
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
        &live,
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
    let (mut kv, workload_failed) = match running.await {
        Ok(kv) => (kv, None),
        Err(error) => {
            let why = format!("the workload failed: {error}");
            incidents.push(why.clone());
            (Default::default(), Some(why))
        }
    };
    let history = kv.operations;
    let asked = match changing {
        Some(changing) => Some(
            changing
                .await
                .map_err(|error| format!("the pods workload failed: {error}")),
        ),
        None => None,
    };
    // The whole cluster crashed at the end: whatever was acknowledged must survive it (the
    // at-most-once check below reads the record after it), and the replicas must converge.
    progress("killing every member at once, then restarting them on their data");
    let crashed = durability::crash_everyone(&mut cluster).await;
    if let Err(error) = &crashed {
        incidents.push(format!("the whole cluster could not be restarted: {error}"));
    }
    let objects = match objects {
        Some(running) => Some(match running.await {
            Ok(history) => Ok(ObjectsOutcome::judge(&history, check_budget)),
            Err(error) => Err(format!("the objects workload failed: {error}")),
        }),
        None => None,
    };
    let kubernetes = match asked {
        Some(asked) => Some(judge_pods(&cluster, asked, &mut progress).await),
        None => None,
    };

    // The store's own record through the last write the members agree on; the watchers
    // must reach it too. A write the client gave up on may still land after that (the
    // member it asked retries for its own timeout): everything past it is left out of the
    // comparison, on both sides.
    let marked = history::mark_end(&cluster, PREFIX, Duration::from_secs(30)).await;
    if let Ok((value, revision)) = &marked {
        // The runner's own write, acknowledged: checked at most once like the clients'.
        let answer = once::Answer::Applied {
            revision: *revision,
        };
        kv.writes.insert(value.clone(), answer);
    }
    let settled = match marked {
        Ok(_) => history::settled(&cluster, PREFIX, Duration::from_secs(30)).await,
        Err(why) => Err(why),
    };
    let reference = match settled {
        Ok(through) => {
            finish.through.store(through.max(1), Ordering::Relaxed);
            let member = cluster.endpoints().first().cloned().unwrap_or_default();
            history::changes(&member, PREFIX, through)
                .await
                .map(|changes| (through, changes))
        }
        Err(why) => Err(why),
    };
    if reference.is_err() {
        finish.stop.store(true, Ordering::Relaxed);
    }
    let joined = match tokio::time::timeout(Duration::from_secs(20), &mut watching).await {
        Ok(joined) => joined,
        // Each ends within one silence once told to stop; what they saw is still checked.
        Err(_) => {
            finish.stop.store(true, Ordering::Relaxed);
            watching.await
        }
    };
    let watchers = joined.map_err(|error| format!("the watchers failed: {error}"));

    let replicas = match crashed {
        Ok(()) => durability::hashes(&cluster, Duration::from_secs(30)).await,
        Err(error) => Err(format!("the whole cluster could not be restarted: {error}")),
    };
    progress(&format!("checking {} operations", history.len()));
    let checked = Instant::now();
    let outcome = linear::check(&history, check_budget);
    let watches = match (&reference, watchers) {
        (Err(why), _) => Err(why.clone()),
        (_, Err(why)) => Err(why),
        (Ok((through, changes)), Ok(watchers)) => Ok(compare_watchers(*through, changes, watchers)),
    };
    let serializable = match (&reference, &workload_failed) {
        (_, Some(why)) | (Err(why), None) => Err(why.clone()),
        (Ok((_, changes)), None) => Ok((
            kv.serializable.len(),
            serializable::check(&kv.serializable, changes),
        )),
    };
    let once = match (reference, workload_failed) {
        (_, Some(why)) => Err(why),
        (Err(why), None) => Err(why),
        (Ok((through, changes)), None) => {
            let seen = once::puts_of(up_to(through, changes));
            Ok((kv.writes.len(), once::check(&kv.writes, &seen)))
        }
    };
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
            serializable,
            objects,
            replicas,
            kubernetes,
        },
    );
    if report.verdict != Verdict::Pass {
        keep_logs(&cluster, logs_to, &mut progress);
    }
    Ok(report)
}

/// The pods workload's nodes, started and Ready, and its objects made: the workload and
/// its client.
async fn start_pods(
    cluster: &mut ProcessCluster,
    seed: u64,
    live: &Arc<Live>,
    progress: &mut impl FnMut(&str),
) -> Result<(PodsWorkload, ApiClient), ClusterError> {
    let binary = cluster
        .members
        .first()
        .and_then(|member| member.rudder_binary())
        .ok_or(ClusterError::NotRudder)?
        .to_owned();
    let masters = cluster.endpoints();
    cluster.nodes = nodes::start_groups(
        &binary,
        cluster.dir.path(),
        &masters,
        NODE_GROUPS,
        NODES_PER_GROUP,
    )?;
    let nodes: Vec<String> = cluster
        .nodes
        .iter()
        .flat_map(NodeGroup::node_names)
        .collect();
    let client = ApiClient::new(cluster.endpoints());
    let pods = PodsWorkload {
        seed,
        live: live.clone(),
    };
    pods.set_up(&client, &nodes, Duration::from_secs(60))
        .await
        .map_err(ClusterError::PodsWorkload)?;
    progress(&format!(
        "{} hollow nodes Ready in {NODE_GROUPS} processes; the pods workload's objects made",
        nodes.len()
    ));
    Ok((pods, client))
}

/// The Kubernetes invariants over the store's record of the objects, with what the pods
/// workload asked.
async fn judge_pods(
    cluster: &ProcessCluster,
    asked: Result<Vec<Asked>, String>,
    progress: &mut impl FnMut(&str),
) -> Result<KubeOutcome, String> {
    let asked = asked?;
    let leader = cluster.leader().await.map_err(|e| e.to_string())?;
    let (through, record) = history::objects(&cluster.members[leader].client_addr).await?;
    // What each master logged of the fenced writes it made (logs span restarts), through
    // the record's end: the masters go on writing while it is read.
    let fenced: Vec<kube::FencedWrite> = cluster
        .members
        .iter()
        .flat_map(|member| kube::fenced_writes(&member.log_since(0)))
        .filter(|write| write.revision <= through)
        .collect();
    progress(&format!(
        "checking {} changes of pods, ReplicaSets, Deployments, Nodes and Leases",
        record.len()
    ));
    Ok(KubeOutcome {
        judged: kube::check(&record, &fenced),
        asked: asked.len(),
        done: asked.iter().filter(|a| a.outcome == Outcome::Done).count(),
    })
}

/// The changes at or before revision `through`.
fn up_to(through: i64, changes: Vec<Change>) -> Vec<Change> {
    changes
        .into_iter()
        .filter(|change| change.revision <= through)
        .collect()
}

/// The watchers against the record through `through`: what each saw past it is cut, and
/// one that never reached it (or was lost) fell short.
fn compare_watchers(
    through: i64,
    changes: &[Change],
    watchers: Vec<Result<watch::Watcher, String>>,
) -> WatchOutcome {
    let reference = up_to(through, changes.to_vec());
    let mut fell_short = Vec::new();
    let mut cut = Vec::new();
    for watcher in watchers {
        match watcher {
            Err(why) => fell_short.push(why),
            Ok(mut watcher) => {
                if watcher.through < through {
                    fell_short.push(format!(
                        "{} reached revision {} of {through}",
                        watcher.name, watcher.through
                    ));
                }
                watcher.events.retain(|event| event.revision <= through);
                watcher.through = watcher.through.min(through);
                cut.push(watcher);
            }
        }
    }
    WatchOutcome {
        watchers: cut.len(),
        events: cut.iter().map(|w| w.events.len()).sum(),
        violations: watch::check(&reference, &cut),
        fell_short,
    }
}

async fn start(plan: &Plan, binaries: &Binaries) -> Result<ProcessCluster, ClusterError> {
    let (heartbeat_ms, election_ms) = RAFT_TIMING_MS;
    // Partitions and lossy links need each member in a network namespace of its own.
    let apart = [FaultKind::Partition, FaultKind::Loss, FaultKind::Delay]
        .iter()
        .any(|kind| plan.faults.contains(kind));
    match plan.target {
        Target::Rudder => {
            let mut flags = vec![
                format!("--heartbeat-interval-ms={heartbeat_ms}"),
                format!("--election-timeout-ms={election_ms}"),
            ];
            if plan.pods {
                flags.push(format!("--node-monitor-grace-period={NODE_MONITOR_GRACE}"));
                // Leases short enough that a killed master's scheduler or controller
                // manager is replaced within a run (Kubernetes' 15 s would outlast most).
                flags.extend(LEADER_ELECTION.map(String::from));
            }
            if !plan.planted.is_empty() {
                flags.push(format!(
                    "--failpoints={}",
                    plan.planted
                        .iter()
                        .map(|bug| {
                            PLANTABLE
                                .iter()
                                .find(|(name, _, _)| name == bug)
                                .map_or(format!("{bug}=return"), |(_, failpoints, _)| {
                                    failpoints.to_string()
                                })
                        })
                        .collect::<Vec<_>>()
                        .join(";")
                ));
            }
            match apart {
                true => ProcessCluster::start_rudder_apart(&binaries.rudder, plan.masters, &flags),
                false => ProcessCluster::start_rudder(&binaries.rudder, plan.masters, &flags),
            }
        }
        Target::Etcd => {
            let flags = [
                format!("--heartbeat-interval={heartbeat_ms}"),
                format!("--election-timeout={election_ms}"),
            ];
            match apart {
                true => {
                    ProcessCluster::start_etcd_apart(&binaries.etcd, plan.masters, &flags).await
                }
                false => ProcessCluster::start_etcd(&binaries.etcd, plan.masters, &flags).await,
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn change(revision: i64) -> Change {
        Change {
            revision,
            key: "chaos/k0".into(),
            value: Some(format!("v{revision}")),
        }
    }

    fn watcher(name: &str, through: i64, revisions: &[i64]) -> watch::Watcher {
        watch::Watcher {
            name: name.into(),
            prefix: PREFIX.into(),
            from: 1,
            through,
            events: revisions.iter().map(|r| change(*r)).collect(),
        }
    }

    #[test]
    fn a_write_landing_after_the_settled_revision_is_left_out_on_both_sides() {
        let record: Vec<Change> = [1, 2, 3, 4].map(change).to_vec();
        // The record was read through 3; a late write at 4 reached the watcher and the
        // record alike.
        let outcome = compare_watchers(3, &record, vec![Ok(watcher("w", 4, &[1, 2, 3, 4]))]);
        assert_eq!(outcome.violations, vec![]);
        assert_eq!(outcome.fell_short, Vec::<String>::new());
        assert_eq!(outcome.events, 3);
    }

    #[test]
    fn a_watcher_short_of_the_last_write_or_lost_fails() {
        let record: Vec<Change> = [1, 2, 3].map(change).to_vec();
        let outcome = compare_watchers(
            3,
            &record,
            vec![
                Ok(watcher("w0", 2, &[1, 2])),
                Err("watcher 1 failed: panicked".into()),
            ],
        );
        assert_eq!(
            outcome.fell_short,
            vec![
                "w0 reached revision 2 of 3".to_string(),
                "watcher 1 failed: panicked".to_string()
            ]
        );
        // What it vouches for is still checked: a missed change shows.
        let missed = compare_watchers(3, &record, vec![Ok(watcher("w", 3, &[1, 3]))]);
        assert_eq!(missed.violations.len(), 1, "{:?}", missed.violations);
    }
}
