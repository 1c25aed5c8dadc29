//! `rudder chaos run|replay`: inject real faults into a fresh local cluster under a recorded
//! workload and check the history (the runner is `rudder_chaos::run`). Exits 0 only on PASS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use rudder_chaos::live::{Live, LiveLine};
use rudder_chaos::report::{self, Plan, Report, Target, Verdict};
use rudder_chaos::run::{run, Binaries, PLANTABLE, PLANTED_IN_OBJECTS, PLANTED_IN_PODS};
use rudder_chaos::schedule::FaultKind;

use crate::durations::parse_flag_duration;

#[derive(Subcommand, Debug)]
pub enum ChaosCommand {
    /// Start a cluster, run the workload under the seed's faults, check, and write a report.
    Run(RunArgs),
    /// Run again what a report ran: the same seed, cluster, faults and workload.
    Replay(ReplayArgs),
    /// How soon writes recovered after each kind of fault, over the runs of the reports
    /// given (e.g. a nightly's `seed-*/report.json`): count, median, worst.
    Recovery(RecoveryArgs),
}

#[derive(Args, Debug)]
pub struct RecoveryArgs {
    /// Reports (report.json, or the directories holding them).
    #[arg(required = true)]
    reports: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Members of the cluster (3 to 7; faults come one at a time, so a quorum stays).
    #[arg(long, default_value_t = 3)]
    masters: usize,
    /// How long the workload runs, faults included (e.g. 60s, 2m).
    #[arg(long, default_value = "60s")]
    duration: String,
    /// The seed the schedule is drawn from (default: from the clock; printed first).
    #[arg(long)]
    seed: Option<u64>,
    /// Faults to inject: kill, pause, partition (around the victim: isolated, in a
    /// minority, half of a bridge, or one-way; needs root: each member gets a network
    /// namespace), disk (the log's fsync or write fails, which must stop the member, or
    /// its fsyncs are slow; Rudder only), loss (10-40% of the packets on the victim's links
    /// dropped at random, both ways; needs root, as partition), delay (every packet on the
    /// victim's links held 50-300 ms, both ways; needs root), node-loss (a worker node
    /// process killed with its nodes and pods; needs the pods workload).
    #[arg(long, value_delimiter = ',', default_value = "kill,pause")]
    faults: Vec<String>,
    /// The workloads: kv (puts, deletes, linearizable and serializable reads,
    /// compare-and-swaps, leases via the etcd API; always run), objects (ConfigMaps read,
    /// created, updated with their resourceVersion and deleted via the Rudder API), pods
    /// (ReplicaSets, Deployments and a StatefulSet scaled, the Deployments rolled out, on
    /// hollow nodes with the controllers and scheduler at work, judged by Kubernetes'
    /// invariants; about half the kills and pauses then strike the scheduler's or
    /// controller manager's master).
    #[arg(long, default_value = "kv")]
    workload: String,
    /// The cluster: Rudder's members, or Debian's etcd as a reference (kv workload).
    #[arg(long, value_enum, default_value = "rudder")]
    target: TargetArg,
    #[arg(long, default_value_t = 6)]
    clients: u32,
    #[arg(long, default_value_t = 3)]
    keys: usize,
    /// Plant a bug in the members to see the checks find it: stale-reads (linearizable
    /// reads served from a replica without asking the leader), lost-watch-events (about one
    /// revision in fifty left out of each watch), write-applied-twice, fsync-errors-ignored,
    /// scheduler-ignores-pod-limit (nodes over-filled), fence-ignored (a deposed leader's
    /// writes land) and double-bind (a bound pod bound again elsewhere) with the pods
    /// workload, update-ignores-resource-version (an update's
    /// compare skipped) with the objects workload.
    #[arg(long, value_delimiter = ',')]
    plant: Vec<String>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// A run's report.json, or the directory holding it.
    report: PathBuf,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args, Debug)]
struct CommonArgs {
    /// Where report.json and report.html go (created if missing).
    #[arg(long, default_value = "chaos-report")]
    report_dir: PathBuf,
    /// How long the linearizability search may take before a key is reported undecided.
    #[arg(long, default_value = "120s")]
    check_budget: String,
    /// The etcd binary for --target etcd.
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd_binary: PathBuf,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum TargetArg {
    Rudder,
    Etcd,
}

pub async fn run_command(command: ChaosCommand) -> anyhow::Result<()> {
    let (plan, common) = match command {
        ChaosCommand::Run(args) => (plan_of(&args)?, args.common),
        ChaosCommand::Replay(args) => (replayable(read_report(&args.report)?.plan)?, args.common),
        ChaosCommand::Recovery(args) => return print_recovery(&args.reports),
    };
    if let Some(needs) = needs_failpoints(&plan, rudder_proto::failpoints::COMPILED_IN) {
        bail!("{needs}; {}", rudder_proto::failpoints::NOT_COMPILED_IN);
    }
    let check_budget = parse_flag_duration("--check-budget", &common.check_budget, "s")?;
    let binaries = Binaries {
        rudder: std::env::current_exe().context("locating the rudder binary")?,
        etcd: common.etcd_binary.clone(),
    };
    if plan.target == Target::Etcd && !binaries.etcd.exists() {
        bail!(
            "no etcd at {} (Debian's `etcd-server` package; or --etcd-binary)",
            binaries.etcd.display()
        );
    }
    // Caught from before the first member starts (a handler exists only once made).
    let stopped = stop_signal()?;
    // The seed first: a run cut short can still be replayed by hand.
    eprintln!("seed {}", plan.seed);
    let live = Arc::new(Live::default());
    let length = std::time::Duration::from_millis(plan.length_ms);
    let live_line = LiveLine::start(live.clone(), length);
    let running = run(
        &plan,
        &binaries,
        check_budget,
        &common.report_dir,
        live,
        |line| live_line.println(line),
    );
    // A signal ends the run with its members (the cluster stops them as it goes).
    let report = tokio::select! {
        biased;
        signal = stopped => bail!(
            "stopped by {signal}: the members were stopped and no report was written; \
             `rudder chaos run --seed {}` runs the same schedule again",
            plan.seed
        ),
        report = running => report?,
    };
    drop(live_line);
    let path = write_report(&common.report_dir, &report)?;
    print!("{}", report::summary(&report));
    println!("report: {}", path.display());
    match report.verdict {
        Verdict::Pass => Ok(()),
        verdict => bail!(
            "the run did not pass ({verdict:?}): see the checks above; `rudder chaos replay {}` \
             runs it again",
            path.display()
        ),
    }
}

/// Catches SIGINT, SIGTERM and SIGHUP (a closed terminal) from now on: the first, by name.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = &'static str>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("catching SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("catching SIGTERM")?;
    let mut hangup = signal(SignalKind::hangup()).context("catching SIGHUP")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
            _ = hangup.recv() => "SIGHUP",
        }
    })
}

fn plan_of(args: &RunArgs) -> anyhow::Result<Plan> {
    let (mut pods, mut objects) = (false, false);
    for name in args.workload.split(',').map(str::trim) {
        match name {
            "kv" => {}
            "pods" => pods = true,
            "objects" => objects = true,
            other => bail!(
                "unknown workload {other:?}: the workloads are kv (always run), objects \
                 (ConfigMaps through the Rudder API) and pods (ReplicaSets, Deployments and \
                 a StatefulSet on hollow nodes)"
            ),
        }
    }
    if !(3..=7).contains(&args.masters) {
        bail!(
            "--masters {}: a cluster of 3 to 7 members (with fewer, every fault is an outage)",
            args.masters
        );
    }
    if args.clients == 0 || args.keys == 0 {
        bail!("--clients and --keys must each be at least 1");
    }
    let mut faults: Vec<FaultKind> = Vec::new();
    for name in &args.faults {
        let kind = FaultKind::parse(name.trim()).map_err(anyhow::Error::msg)?;
        // Each kind once: the kinds take turns, so a repeat would weigh them unevenly.
        if !faults.contains(&kind) {
            faults.push(kind);
        }
    }
    let length = parse_flag_duration("--duration", &args.duration, "s")?;
    if let Some(unknown) = unplantable(&args.plant) {
        bail!(
            "--plant {unknown:?}: the bugs that can be planted are {}",
            plantable()
        );
    }
    let target = match args.target {
        TargetArg::Rudder => Target::Rudder,
        TargetArg::Etcd => Target::Etcd,
    };
    if target == Target::Etcd && (pods || objects) {
        bail!("the objects and pods workloads need Rudder's masters: leave them out of --workload with --target etcd");
    }
    if faults.contains(&FaultKind::NodeLoss) && !pods {
        bail!("node-loss kills worker nodes, which only the pods workload starts: add --workload kv,pods");
    }
    if let Some(bug) = args
        .plant
        .iter()
        .find(|bug| PLANTED_IN_PODS.contains(&bug.as_str()) && !pods)
    {
        bail!("--plant {bug} shows only with pods: add --workload kv,pods");
    }
    if let Some(bug) = args
        .plant
        .iter()
        .find(|bug| PLANTED_IN_OBJECTS.contains(&bug.as_str()) && !objects)
    {
        bail!("--plant {bug} shows only with objects: add --workload kv,objects");
    }
    if target == Target::Etcd && !args.plant.is_empty() {
        bail!("--plant works on Rudder's members only");
    }
    if target == Target::Etcd && faults.contains(&FaultKind::Disk) {
        bail!(
            "disk faults are failpoints in Rudder's log store, which Debian's etcd does not \
             have: leave disk out of --faults with --target etcd"
        );
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| since.as_nanos() as u64)
            .unwrap_or(1)
    });
    let plan = Plan {
        seed,
        target,
        masters: args.masters,
        length_ms: length.as_millis() as u64,
        faults,
        clients: args.clients,
        keys: args.keys,
        planted: args.plant.clone(),
        pods,
        objects,
    };
    let schedule = plan.schedule();
    if let Some(missing) = plan
        .faults
        .iter()
        .find(|kind| !schedule.iter().any(|fault| fault.kind == **kind))
    {
        bail!(
            "--duration {} is too short for one {} with seed {seed}: give the run 15s or more",
            args.duration,
            missing.name()
        );
    }
    Ok(plan)
}

/// The recovery table over `reports`, with how many runs and of what target it covers.
fn print_recovery(reports: &[PathBuf]) -> anyhow::Result<()> {
    let reports: Vec<Report> = reports
        .iter()
        .map(|path| read_report(path))
        .collect::<anyhow::Result<_>>()?;
    let faults = reports.iter().flat_map(|report| &report.injected);
    let took = reports.iter().flat_map(|report| {
        // A report from before per-fault figures were kept has none: unknown, not "never".
        let known = report.recovered_ms.len() == report.injected.len();
        (0..report.injected.len()).map(move |n| match known {
            true => report.recovered_ms[n],
            false => None,
        })
    });
    let grouped = rudder_chaos::recovery::grouped(faults, took);
    let mut targets: Vec<String> = reports
        .iter()
        .map(|report| format!("{:?}", report.plan.target).to_lowercase())
        .collect();
    targets.sort();
    targets.dedup();
    println!(
        "{} runs ({}): from each fault to the first write asked after it and answered",
        reports.len(),
        targets.join(", ")
    );
    let mut rows = vec![["FAULT", "COUNT", "MEDIAN", "WORST", "NO WRITE ANSWERED"]
        .map(String::from)
        .to_vec()];
    for group in grouped {
        rows.push(vec![
            group.fault,
            group.count.to_string(),
            format!("{} ms", group.median_ms),
            format!("{} ms", group.worst_ms),
            group.never.to_string(),
        ]);
    }
    print!("{}", rudder_printers::table::render(&rows));
    Ok(())
}

/// A report's plan, if this build can plant the bugs it planted (a bug since renamed or
/// removed would run as a failpoint nothing checks, and the replay would pass unnoticed).
fn replayable(plan: Plan) -> anyhow::Result<Plan> {
    if let Some(unknown) = unplantable(&plan.planted) {
        bail!(
            "the report planted {unknown:?}, which this build cannot plant (it can plant {})",
            plantable()
        );
    }
    Ok(plan)
}

/// What of `plan` needs failpoints in the members, if the build (`chaos_build`: with the
/// `chaos` feature) has none: a planted bug, or disk faults.
fn needs_failpoints(plan: &Plan, chaos_build: bool) -> Option<String> {
    if chaos_build {
        return None;
    }
    if let Some(bug) = plan.planted.first() {
        return Some(format!("--plant {bug} switches on a failpoint"));
    }
    plan.faults
        .contains(&FaultKind::Disk)
        .then(|| "disk faults are failpoints in the log store".to_string())
}

/// The first of `bugs` this build cannot plant.
fn unplantable(bugs: &[String]) -> Option<&str> {
    bugs.iter()
        .map(String::as_str)
        .find(|bug| !PLANTABLE.iter().any(|(known, _, _)| known == bug))
}

/// The bugs this build can plant, for messages.
fn plantable() -> String {
    let known: Vec<&str> = PLANTABLE.iter().map(|(name, _, _)| *name).collect();
    known.join(", ")
}

fn read_report(path: &Path) -> anyhow::Result<Report> {
    let file = match path.is_dir() {
        true => path.join("report.json"),
        false => path.to_path_buf(),
    };
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("reading the report {}", file.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a chaos run's report.json (written by `rudder chaos run`)",
            file.display()
        )
    })
}

fn write_report(dir: &Path, report: &Report) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("report.json");
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    let page = dir.join("report.html");
    std::fs::write(&page, rudder_chaos::timeline::html(report))
        .with_context(|| format!("writing {}", page.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(faults: Vec<FaultKind>, planted: &[&str]) -> Plan {
        Plan {
            seed: 1,
            target: Target::Rudder,
            masters: 3,
            length_ms: 20_000,
            faults,
            clients: 6,
            keys: 3,
            planted: planted.iter().map(|bug| bug.to_string()).collect(),
            pods: false,
            objects: false,
        }
    }

    #[test]
    fn a_build_without_failpoints_refuses_plants_and_disk_faults_and_runs_the_rest() {
        let planted = plan(vec![FaultKind::Kill], &["stale-reads"]);
        let said = needs_failpoints(&planted, false).unwrap();
        assert!(said.contains("--plant stale-reads"), "{said}");
        let disk = plan(vec![FaultKind::Kill, FaultKind::Disk], &[]);
        let said = needs_failpoints(&disk, false).unwrap();
        assert!(said.contains("disk faults"), "{said}");
        let plain = plan(vec![FaultKind::Kill, FaultKind::Pause], &[]);
        assert_eq!(needs_failpoints(&plain, false), None);
        assert_eq!(needs_failpoints(&planted, true), None);
        assert_eq!(needs_failpoints(&disk, true), None);
    }
}
