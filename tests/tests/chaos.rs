//! `rudder chaos run` as an operator runs it: a fresh cluster under the KV workload and the
//! seed's kills, pauses, partitions and disk faults passes; `replay` runs the same schedule
//! again; a planted bug fails the run loudly; Debian's etcd, as the reference, passes too.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rudder_chaos::delay::LinkDelay;
use rudder_chaos::disk::{DiskEffect, DiskFault};
use rudder_chaos::network::{MemberNetwork, Place};
use rudder_chaos::partition::Split;
use rudder_chaos::report::{Report, Verdict};
use rudder_chaos::schedule::{FaultKind, Victim};
use rudder_node::runtime::linux::network::in_namespace;
use rudder_tests::{browser, rudder_binary_beside_tests};

fn chaos(args: &[&str]) -> Output {
    Command::new(rudder_binary_beside_tests())
        .arg("chaos")
        .args(args)
        .output()
        .expect("rudder chaos runs")
}

/// `rudder chaos run` for `duration` with `seed`, reporting into `dir`, with `more` flags.
fn run_in(dir: &Path, duration: &str, seed: &str, more: &[&str]) -> Output {
    let fixed = [
        "run",
        "--duration",
        duration,
        "--seed",
        seed,
        "--report-dir",
        dir.to_str().unwrap(),
    ];
    chaos(&[&fixed[..], more].concat())
}

/// [`run_in`] for 10 s with seed 11.
fn run_10s(dir: &Path, more: &[&str]) -> Output {
    run_in(dir, "10s", "11", more)
}

fn report_in(dir: &Path) -> Report {
    let text = std::fs::read_to_string(dir.join("report.json")).expect("a report.json");
    serde_json::from_str(&text).expect("a report")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_run_under_kills_and_pauses_passes_and_its_replay_runs_the_same_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let run = run_10s(&first, &["--workload", "kv,objects"]);
    let said = text(&run);
    assert!(run.status.success(), "{said}");
    assert!(
        String::from_utf8_lossy(&run.stderr).starts_with("seed 11\n"),
        "the seed comes first: {said}"
    );
    let report = report_in(&first);
    assert_eq!(report.verdict, Verdict::Pass);
    let page = std::fs::read_to_string(first.join("report.html")).expect("a report.html");
    assert!(page.contains("<svg") && page.contains("PASS"), "{page}");
    assert_timeline_renders(&first.join("report.html"), dir.path());
    assert!(report.operations.answered > 100, "{:?}", report.operations);
    let names = [
        "linearizability",
        "watches",
        "at-most-once",
        "serializable reads",
        "objects linearizability",
    ];
    for name in names {
        assert!(
            report
                .checks
                .iter()
                .any(|check| check.name == name && check.verdict == Verdict::Pass),
            "{name} checked and passed: {:?}",
            report.checks
        );
    }
    let kinds: Vec<FaultKind> = report.injected.iter().map(|fault| fault.kind).collect();
    assert!(
        kinds.contains(&FaultKind::Kill) && kinds.contains(&FaultKind::Pause),
        "both kinds injected: {:?}",
        report.injected
    );

    let again = dir.path().join("again");
    let replay = chaos(&[
        "replay",
        first.to_str().unwrap(),
        "--report-dir",
        again.to_str().unwrap(),
    ]);
    assert!(replay.status.success(), "{}", text(&replay));
    let replayed = report_in(&again);
    assert_eq!(replayed.plan, report.plan);
    // Drawn again from the seed: the same faults, in the same order, at the same victims
    // (who leads when a fault starts may differ).
    assert_eq!(replayed.schedule, report.schedule);
    let faults = |report: &Report| -> Vec<_> {
        report
            .injected
            .iter()
            .map(|fault| (fault.kind, fault.victim))
            .collect()
    };
    assert_eq!(faults(&replayed), faults(&report));
}

/// A 20 s run of partitions only, with seed 6: its five partitions have every shape
/// (isolated, one-way, in a minority, half of a bridge), some around the leader and some
/// around a follower.
fn partitioned_20s(dir: &Path, target: &str) -> (Report, String) {
    let run = run_in(
        dir,
        "20s",
        "6",
        &["--target", target, "--faults", "partition"],
    );
    let said = text(&run);
    assert!(run.status.success(), "{said}");
    (report_in(dir), said)
}

/// Every shape of partition happened, around the leader and a follower, and each dropped
/// real packets; the recovery after each was measured.
fn assert_partitions_cut(report: &Report, said: &str) {
    assert_eq!(report.verdict, Verdict::Pass, "{said}");
    let mut shapes: Vec<Split> = report.injected.iter().filter_map(|f| f.split).collect();
    shapes.sort_by_key(|split| split.name());
    shapes.dedup();
    assert_eq!(shapes.len(), Split::ALL.len(), "{:?}", report.injected);
    for fault in &report.injected {
        assert_eq!(fault.kind, FaultKind::Partition);
        assert!(fault.dropped_packets.unwrap_or(0) > 0, "{fault:?}");
        assert!(fault.sides.is_some(), "{fault:?}");
    }
    let leaders = report.injected.iter().filter(|f| f.was_leader).count();
    assert!(
        leaders > 0 && leaders < report.injected.len(),
        "{:?}",
        report.injected
    );
    let measured: usize = report.recovery.iter().map(|r| r.count).sum();
    assert_eq!(measured, report.injected.len(), "{:?}", report.recovery);
}

/// The run named its bridge (`bridge rchaosK, 10.249.K.0/24`); once it has ended, neither
/// the bridge nor a member's namespace is left. (Unless another run took the slot since:
/// then its lock is held and the check is that run's to make.)
fn assert_network_removed(said: &str) {
    let bridge = said
        .split_whitespace()
        .find(|word| word.starts_with("rchaos"))
        .map(|word| word.trim_end_matches(','))
        .unwrap_or_else(|| panic!("the run names its bridge: {said}"));
    let slot = bridge.trim_start_matches("rchaos");
    let lock = std::fs::File::open(format!("/run/rudder-chaos/slot-{slot}.lock")).unwrap();
    let Ok(_held) = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
    else {
        eprintln!("slot {slot} is taken by another run since: not checked");
        return;
    };
    assert!(
        !Path::new(&format!("/sys/class/net/{bridge}")).exists(),
        "{bridge} is left"
    );
    assert!(
        !Path::new(&format!("/run/rudder-chaos/{slot}")).exists(),
        "the members' namespaces are left"
    );
}

#[test]
fn partitions_of_every_shape_cut_packets_and_the_run_passes_with_its_recovery_measured() {
    let dir = tempfile::tempdir().unwrap();
    let (report, said) = partitioned_20s(dir.path(), "rudder");
    assert_partitions_cut(&report, &said);
    assert!(said.contains("one-way: "), "{said}");
    assert_network_removed(&said);
}

#[test]
fn lossy_links_drop_a_share_of_packets_and_the_run_passes() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_in(dir.path(), "12s", "3", &["--faults", "loss,pause"]);
    let said = text(&run);
    assert!(run.status.success(), "{said}");
    assert!(
        said.contains("of the packets on its links dropped"),
        "{said}"
    );
    let report = report_in(dir.path());
    let losses: Vec<_> = report
        .injected
        .iter()
        .filter(|fault| fault.kind == FaultKind::Loss)
        .collect();
    assert!(!losses.is_empty(), "{said}");
    for loss in losses {
        let percent = loss.loss_percent.expect("a loss says its share");
        assert!((10..=40).contains(&percent), "{loss:?}");
        assert!(loss.dropped_packets.unwrap_or(0) > 0, "{loss:?}");
    }
    assert_network_removed(&said);
}

/// How long a TCP connect from the member at `from` to a listener of the member at `to`
/// takes (one round trip: SYN, SYN-ACK).
fn connect_time(from: &Place, listener: &std::net::TcpListener) -> Duration {
    let to = listener.local_addr().unwrap();
    in_namespace(&from.netns, move || {
        let began = Instant::now();
        std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5)).expect("connects");
        Ok(began.elapsed())
    })
    .unwrap()
}

#[test]
fn a_delay_holds_each_packet_on_the_victims_links_for_its_time() {
    let network = MemberNetwork::create(2).expect("the members' network (as root)");
    let (victim, other) = (&network.places()[0], &network.places()[1]);
    let ip = victim.ip;
    let listener = in_namespace(&victim.netns, move || {
        Ok(std::net::TcpListener::bind((ip, 0)).expect("a listener"))
    })
    .unwrap();
    let before = connect_time(other, &listener);
    assert!(before < Duration::from_millis(50), "{before:?} undelayed");
    let delaying = LinkDelay::start(&victim.netns, &[other.ip], Duration::from_millis(150))
        .expect("the delay in place");
    let delayed = connect_time(other, &listener);
    let held = delaying.end().expect("the delay ends");
    // The SYN held on the way in, the SYN-ACK on the way out.
    assert!(delayed >= Duration::from_millis(300), "{delayed:?} delayed");
    assert!(delayed < Duration::from_secs(2), "{delayed:?} delayed");
    assert!(held >= 2, "{held} packets held");
    let after = connect_time(other, &listener);
    assert!(
        after < Duration::from_millis(50),
        "{after:?} after the delay ended"
    );
}

#[test]
fn slow_links_hold_every_packet_and_the_run_passes() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_in(dir.path(), "12s", "3", &["--faults", "delay,pause"]);
    let said = text(&run);
    assert!(run.status.success(), "{said}");
    assert!(said.contains("each packet on its links held"), "{said}");
    let report = report_in(dir.path());
    let delays: Vec<_> = report
        .injected
        .iter()
        .filter(|fault| fault.kind == FaultKind::Delay)
        .collect();
    assert!(!delays.is_empty(), "{said}");
    for delay in delays {
        let ms = delay.delay_ms.expect("a delay says how long");
        assert!((50..=300).contains(&ms), "{delay:?}");
        assert!(delay.delayed_packets.unwrap_or(0) > 0, "{delay:?}");
    }
    assert_network_removed(&said);
}

#[test]
fn etcd_as_the_reference_passes_under_the_same_partitions() {
    if !Path::new("/usr/bin/etcd").exists() {
        eprintln!("skipped: no /usr/bin/etcd (`scripts/dev.sh test` installs etcd-server)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (report, said) = partitioned_20s(dir.path(), "etcd");
    assert_partitions_cut(&report, &said);
    assert_network_removed(&said);
}

#[test]
fn disk_faults_stop_the_member_or_slow_it_and_lose_no_acknowledged_write() {
    // Seed 7: the log's fsync and write fail on the leader and on a follower; a
    // follower's fsyncs are slow.
    let dir = tempfile::tempdir().unwrap();
    let run = run_in(dir.path(), "20s", "7", &["--faults", "disk"]);
    let said = text(&run);
    assert!(run.status.success(), "{said}");
    let report = report_in(dir.path());
    assert_eq!(report.verdict, Verdict::Pass, "{said}");
    let mut kinds: Vec<DiskFault> = report.injected.iter().filter_map(|f| f.disk).collect();
    kinds.sort_by_key(|disk| disk.name());
    kinds.dedup();
    assert_eq!(kinds.len(), DiskFault::ALL.len(), "{:?}", report.injected);
    for fault in &report.injected {
        match (fault.disk, &fault.disk_effect) {
            (Some(disk), Some(DiskEffect::Stopped { exit, .. })) if disk.stops_the_member() => {
                assert!(!exit.contains("status: 0"), "{fault:?}");
            }
            (Some(DiskFault::SlowFsync), Some(DiskEffect::SlowFsyncs { count })) => {
                assert!(*count > 0, "{fault:?}");
            }
            _ => panic!("{fault:?}"),
        }
    }
    assert!(report.injected.iter().any(|f| f.was_leader), "{said}");
    assert!(report.injected.iter().any(|f| !f.was_leader), "{said}");
    // The recovery table over this run's report, as a nightly prints it over many.
    let table = text(&chaos(&["recovery", dir.path().to_str().unwrap()]));
    assert!(table.starts_with("1 runs (rudder)"), "{table}");
    assert!(
        table.contains("FAULT") && table.contains("MEDIAN"),
        "{table}"
    );
    assert!(table.contains("disk (slow fsync) of "), "{table}");
}

#[test]
fn a_planted_ignored_fsync_error_fails_the_run_when_the_disk_fails() {
    // Seed 3: two fsync failures in 10 s; the member carries on through them.
    let dir = tempfile::tempdir().unwrap();
    let run = run_in(
        dir.path(),
        "10s",
        "3",
        &["--faults", "disk", "--plant", "fsync-errors-ignored"],
    );
    let said = text(&run);
    assert!(!run.status.success(), "{said}");
    assert!(said.contains("FAIL     faults"), "{said}");
    assert!(
        said.contains("kept running through a failed log write or fsync"),
        "{said}"
    );
}

#[test]
fn five_members_take_two_faults_at_once_and_pass() {
    // Seed 16, 15 s: a pause, a failed fsync and a kill, each on two of the five members.
    let dir = tempfile::tempdir().unwrap();
    let run = run_in(
        dir.path(),
        "15s",
        "16",
        &["--masters", "5", "--faults", "kill,pause,disk"],
    );
    let said = text(&run);
    assert!(run.status.success(), "{said}");
    let report = report_in(dir.path());
    assert_eq!(report.verdict, Verdict::Pass, "{said}");
    assert_eq!(report.injected.len(), 2 * report.schedule.len(), "{said}");
    for pair in report.injected.chunks(2) {
        let (first, second) = (&pair[0], &pair[1]);
        assert!(!first.second && second.second, "{pair:?}");
        assert_eq!(first.with.as_deref(), Some(second.member.as_str()));
        assert_eq!(second.with.as_deref(), Some(first.member.as_str()));
        assert_ne!(first.member, second.member);
        assert_eq!(first.started_ms, second.started_ms);
    }
    let stopped = report
        .injected
        .iter()
        .filter(|f| matches!(f.disk_effect, Some(DiskEffect::Stopped { .. })))
        .count();
    assert_eq!(stopped, 2, "both members' disks failed them: {said}");
    assert!(said.contains("3 of them on two members at once"), "{said}");
}

#[test]
fn disk_faults_are_refused_against_etcd() {
    let said = text(&chaos(&[
        "run",
        "--target",
        "etcd",
        "--faults",
        "kill,disk",
    ]));
    assert!(
        said.contains("disk faults are failpoints in Rudder's log store"),
        "{said}"
    );
}

/// The report page as headless Chromium shows it: the timeline's fault bands (kills in
/// red, pauses in orange) and its answer bars (blue) are on the screen.
fn assert_timeline_renders(page: &Path, scratch: &Path) {
    let Some(shot) = browser::screenshot(page, 1280, 1000, scratch) else {
        eprintln!(
            "skipped: no {} (`scripts/dev.sh test` installs chromium)",
            browser::CHROMIUM
        );
        return;
    };
    for (what, rgb) in [
        ("a kill's band", [0xb3, 0x26, 0x1e]),
        ("a pause's band", [0xe0, 0x8a, 0x00]),
        ("the answers' bars", [0x4a, 0x78, 0xc2]),
    ] {
        let pixels = browser::pixels_of(&shot, rgb, 8);
        assert!(
            pixels > 50,
            "{what} is not on the page ({pixels} pixels): {}",
            shot.display()
        );
    }
}

/// A 10 s run with `bug` planted in every member: it must fail; what it said.
fn planted(bug: &str, dir: &Path) -> String {
    let run = run_10s(dir, &["--plant", bug]);
    let said = text(&run);
    assert!(
        !run.status.success(),
        "a planted bug must fail the run: {said}"
    );
    assert!(said.contains("rudder chaos replay"), "{said}");
    said
}

#[test]
fn a_planted_stale_read_fails_the_run_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let said = planted("stale-reads", dir.path());
    assert!(said.contains("FAIL     linearizability"), "{said}");
    let report = report_in(dir.path());
    assert_eq!(report.verdict, Verdict::Fail);
    assert_eq!(report.plan.planted, ["stale-reads"]);
    assert!(
        dir.path().join("m1.log").exists(),
        "a run that fails keeps the members' logs beside its report"
    );
}

#[test]
fn a_planted_lost_watch_event_fails_the_watch_check() {
    let dir = tempfile::tempdir().unwrap();
    let said = planted("lost-watch-events", dir.path());
    assert!(said.contains("FAIL     watches"), "{said}");
    assert!(
        said.contains("Missed {"),
        "a watcher missed a change: {said}"
    );
}

#[test]
fn a_planted_double_application_fails_the_at_most_once_check() {
    let dir = tempfile::tempdir().unwrap();
    let said = planted("write-applied-twice", dir.path());
    assert!(said.contains("FAIL     at-most-once"), "{said}");
}

#[test]
fn a_planted_update_that_skips_its_compare_fails_the_objects_check() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_10s(
        dir.path(),
        &[
            "--workload",
            "kv,objects",
            "--plant",
            "update-ignores-resource-version",
        ],
    );
    let said = text(&run);
    assert!(
        !run.status.success(),
        "a planted bug must fail the run: {said}"
    );
    assert!(said.contains("FAIL     objects linearizability"), "{said}");
    assert!(
        said.contains("PASS     linearizability"),
        "the KV history is not the one hurt: {said}"
    );
}

/// The pods workload beside the KV one for 25 s with seed 145, whose schedule pauses the
/// controller manager's master, kills the scheduler's master and loses a node process for
/// 12 s; `more` flags.
fn pods_25s(dir: &Path, more: &[&str]) -> Output {
    let pods = ["--workload", "kv,pods", "--faults", "kill,pause,node-loss"];
    run_in(dir, "25s", "145", &[&pods[..], more].concat())
}

#[test]
fn pods_keep_kubernetes_invariants_through_node_loss_and_a_scheduler_leader_kill() {
    let dir = tempfile::tempdir().unwrap();
    let run = pods_25s(dir.path(), &[]);
    let said = text(&run);
    assert!(run.status.success(), "{said}");
    assert!(said.contains("hollow nodes Ready"), "{said}");
    let report = report_in(dir.path());
    assert!(report.plan.pods);
    let check = |name: &str| {
        report
            .checks
            .iter()
            .find(|check| check.name == name)
            .unwrap_or_else(|| panic!("no {name} check: {said}"))
            .clone()
    };
    let kubernetes = check("kubernetes");
    assert_eq!(kubernetes.verdict, Verdict::Pass, "{said}");
    // Non-vacuous: pods were bound, and a killed master's component was replaced.
    assert!(!kubernetes.detail.contains(" 0 bound"), "{said}");
    assert!(!kubernetes.detail.contains("; 0 takeovers"), "{said}");
    assert!(!kubernetes.detail.contains("; 0 fenced writes"), "{said}");
    assert!(
        !kubernetes.detail.contains(" 0 StatefulSet pods judged"),
        "{said}"
    );
    let durability = check("durability");
    assert_eq!(durability.verdict, Verdict::Pass, "{said}");
    assert!(
        durability
            .detail
            .contains("3 members hash the keyspace alike"),
        "{said}"
    );
    // The faults struck what the schedule aimed at, each confirmed by its lease.
    let aimed = |victim: Victim, kind: FaultKind| {
        report
            .injected
            .iter()
            .any(|fault| fault.victim == victim && fault.kind == kind && fault.lease.is_some())
    };
    assert!(aimed(Victim::Scheduler, FaultKind::Kill), "{said}");
    assert!(aimed(Victim::ControllerManager, FaultKind::Pause), "{said}");
    let lost = report
        .injected
        .iter()
        .find(|fault| fault.kind == FaultKind::NodeLoss)
        .expect("a node process lost");
    assert!(lost.member.starts_with('n'), "{lost:?}");
    assert!(
        said.contains(&format!("node-loss {} (nodes ", lost.member)),
        "{said}"
    );
}

#[test]
fn a_planted_scheduler_that_forgets_the_pod_limit_over_fills_a_node_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let run = pods_25s(dir.path(), &["--plant", "scheduler-ignores-pod-limit"]);
    let said = text(&run);
    assert!(
        !run.status.success(),
        "a planted bug must fail the run: {said}"
    );
    assert!(said.contains("FAIL     kubernetes"), "{said}");
    assert!(said.contains("is over its allocatable: pods"), "{said}");
}

#[test]
fn a_planted_double_bind_moves_a_pod_between_nodes_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let run = pods_25s(dir.path(), &["--plant", "double-bind"]);
    let said = text(&run);
    assert!(
        !run.status.success(),
        "a planted bug must fail the run: {said}"
    );
    assert!(said.contains("FAIL     kubernetes"), "{said}");
    assert!(said.contains("bound once"), "{said}");
}

#[test]
fn a_planted_fence_that_lets_a_deposed_leader_write_fails_the_run() {
    // Seed 242 pauses the controller manager's master for 2.8 s at 2 s: its lease (2 s)
    // goes to another master, and the planted late step-down keeps it acting after.
    let dir = tempfile::tempdir().unwrap();
    let pods = ["--workload", "kv,pods", "--faults", "kill,pause,node-loss"];
    let run = run_in(
        dir.path(),
        "25s",
        "242",
        &[&pods[..], &["--plant", "fence-ignored"]].concat(),
    );
    let said = text(&run);
    assert!(
        !run.status.success(),
        "a planted bug must fail the run: {said}"
    );
    assert!(said.contains("FAIL     kubernetes"), "{said}");
    assert!(said.contains("fenced at revision"), "{said}");
    assert!(
        said.contains("landed while the lease was held by"),
        "{said}"
    );
}

#[test]
fn etcd_as_the_reference_passes_the_same_checks() {
    if !Path::new("/usr/bin/etcd").exists() {
        eprintln!("skipped: no /usr/bin/etcd (`scripts/dev.sh test` installs etcd-server)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = run_10s(dir.path(), &["--target", "etcd"]);
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(report_in(dir.path()).verdict, Verdict::Pass);
}

#[test]
fn bad_options_are_refused_saying_what_there_is() {
    let unknown_fault = text(&chaos(&["run", "--faults", "kill,jitter"]));
    assert!(
        unknown_fault.contains(
            "unknown fault \"jitter\": the faults are kill, pause, partition, disk, \
             node-loss, loss, delay"
        ),
        "{unknown_fault}"
    );
    let unknown_bug = text(&chaos(&["run", "--plant", "lost-writes"]));
    assert!(
        unknown_bug.contains("the bugs that can be planted are stale-reads, lost-watch-events"),
        "{unknown_bug}"
    );
    let no_nodes = text(&chaos(&["run", "--faults", "kill,node-loss"]));
    assert!(
        no_nodes.contains("node-loss kills worker nodes, which only the pods workload starts"),
        "{no_nodes}"
    );
    let pods_on_etcd = text(&chaos(&[
        "run",
        "--workload",
        "kv,pods",
        "--target",
        "etcd",
    ]));
    assert!(
        pods_on_etcd.contains("the objects and pods workloads need Rudder's masters"),
        "{pods_on_etcd}"
    );
    let unseen = text(&chaos(&["run", "--plant", "scheduler-ignores-pod-limit"]));
    assert!(
        unseen.contains("shows only with pods: add --workload kv,pods"),
        "{unseen}"
    );
    let unseen = text(&chaos(&[
        "run",
        "--plant",
        "update-ignores-resource-version",
    ]));
    assert!(
        unseen.contains("shows only with objects: add --workload kv,objects"),
        "{unseen}"
    );
    let unknown = text(&chaos(&["run", "--workload", "kv,secrets"]));
    assert!(
        unknown.contains("unknown workload \"secrets\": the workloads are kv"),
        "{unknown}"
    );
    let too_few = text(&chaos(&["run", "--masters", "1"]));
    assert!(too_few.contains("a cluster of 3 to 7 members"), "{too_few}");
    let too_short = text(&chaos(&["run", "--duration", "5s", "--seed", "1"]));
    assert!(
        too_short.contains("--duration 5s is too short"),
        "{too_short}"
    );
    let not_a_report = tempfile::NamedTempFile::new().unwrap();
    let replay = text(&chaos(&["replay", not_a_report.path().to_str().unwrap()]));
    assert!(
        replay.contains("is not a chaos run's report.json"),
        "{replay}"
    );
}

/// The pids of `parent`'s children, from /proc.
fn children_of(parent: u32) -> Vec<i32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": the comm may hold spaces, so read after its ')'.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        if after.split_whitespace().nth(1) == Some(&parent.to_string()) {
            children.push(pid);
        }
    }
    children
}

#[test]
fn a_run_stopped_by_sigint_stops_its_members_and_says_how_to_run_it_again() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut runner = Command::new(rudder_binary_beside_tests())
        .args(["chaos", "run", "--duration", "60s", "--seed", "5"])
        .arg("--report-dir")
        .arg(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = std::io::BufReader::new(runner.stderr.take().unwrap());
    let mut lines = String::new();
    // Its members are up once it says who leads.
    while !lines.contains(" leads") {
        let mut line = String::new();
        if said.read_line(&mut line).unwrap() == 0 {
            let _ = runner.kill();
            panic!("the run ended before its members were up: {lines}");
        }
        lines += &line;
    }
    let members = children_of(runner.id());
    assert_eq!(members.len(), 3, "{members:?}");
    let pid = nix::unistd::Pid::from_raw(runner.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut said, &mut rest).unwrap();
    let status = runner.wait().unwrap();
    assert!(!status.success());
    assert!(
        rest.contains("stopped by SIGINT") && rest.contains("--seed 5"),
        "{rest}"
    );
    for member in members {
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(member), None).is_err();
        assert!(gone, "member {member} outlived its run");
    }
    assert!(!dir.path().join("report.json").exists());
}
