use std::time::Duration;

use super::*;
use crate::inject::Crash;
use crate::schedule::{draw, Victim};

fn plan() -> Plan {
    Plan {
        seed: 7,
        target: Target::Rudder,
        masters: 3,
        length_ms: 20_000,
        faults: vec![FaultKind::Kill, FaultKind::Pause],
        clients: 2,
        keys: 1,
        planted: vec![],
        pods: false,
        objects: false,
    }
}

fn operation(client: u32, invoked: u64, completed: Option<u64>, op: Op) -> Operation {
    Operation::on_k(client, invoked, completed, op)
}

/// Client 0 puts "a"; client 1 reads after that put was answered.
fn history(read_saw: Option<&str>) -> Vec<Operation> {
    vec![
        operation(0, 0, Some(10), Op::Put { value: "a".into() }),
        operation(
            1,
            20,
            Some(30),
            Op::Get {
                seen: read_saw.map(String::from),
            },
        ),
        operation(0, 40, None, Op::Put { value: "b".into() }),
    ]
}

fn injected_for(schedule: &[PlannedFault]) -> Vec<Injected> {
    schedule
        .iter()
        .map(|planned| Injected {
            kind: planned.kind,
            victim: planned.victim,
            member: "m1".into(),
            was_leader: planned.victim == Victim::Leader,
            started_ms: planned.at.as_millis() as u64,
            ended_ms: planned.ends().as_millis() as u64,
            split: planned.split,
            sides: None,
            dropped_packets: planned.split.map(|_| 40),
            disk: planned.disk,
            disk_effect: planned.disk.map(|_| crate::disk::DiskEffect::Stopped {
                exit: "exit status: 1".into(),
                after_ms: 5,
            }),
            with: None,
            second: false,
            loss_percent: planned.loss_percent,
            delay_ms: planned.delay_ms,
            delayed_packets: planned.delay_ms.map(|_| 30),
            lease: None,
        })
        .collect()
}

fn observed<'a>(
    injected: Vec<Injected>,
    history: &'a [Operation],
    outcome: &'a linear::Outcome,
) -> Observed<'a> {
    Observed {
        injected,
        crashes: vec![],
        incidents: vec![],
        ended_ms: 20_000,
        history,
        linearizability: outcome,
        watches: Ok(WatchOutcome {
            watchers: 2,
            events: 10,
            ..Default::default()
        }),
        once: Ok((5, vec![])),
        serializable: Ok((3, vec![])),
        objects: None,
        replicas: Ok(vec![crate::durability::MemberHash {
            member: "m1".into(),
            hash: 1,
            revision: 9,
        }]),
        kubernetes: None,
    }
}

/// `history` and one answered put after each fault, so every recovery window has one.
fn spread(history: &[Operation], injected: &[Injected]) -> Vec<Operation> {
    let mut spread = history.to_vec();
    for (n, fault) in injected.iter().enumerate() {
        let at = fault.ended_ms * 1_000_000 + 1;
        let mut answered = operation(
            2,
            at,
            Some(at),
            Op::Put {
                value: format!("after-{n}"),
            },
        );
        answered.key = "after".into();
        spread.push(answered);
    }
    spread
}

/// A run of `history` (spread over the run) under the seed's faults.
fn report(history: &[Operation]) -> Report {
    let schedule = draw(7, Duration::from_secs(20), &plan().faults);
    let injected = injected_for(&schedule);
    let spread = spread(history, &injected);
    let outcome = linear::check(&spread, Duration::from_secs(5));
    Report::new(plan(), schedule, observed(injected, &spread, &outcome))
}

#[test]
fn a_run_that_read_what_was_written_passes() {
    let report = report(&history(Some("a")));
    assert_eq!(report.verdict, Verdict::Pass, "{}", summary(&report));
    assert_eq!(
        report.operations,
        Operations {
            // The three above and one answered after each of the five faults.
            total: 8,
            answered: 7,
            unanswered: 1,
            swaps_won: 0
        }
    );
}

#[test]
fn a_stale_read_fails_the_run_and_names_the_key_and_the_operation() {
    let report = report(&history(None));
    assert_eq!(report.verdict, Verdict::Fail);
    let text = summary(&report);
    assert!(text.contains("FAIL     linearizability"), "{text}");
    assert!(text.contains("key \"k\""), "{text}");
    assert!(text.contains("client 1's get (saw None)"), "{text}");
    assert!(text.ends_with("FAIL\n"), "{text}");
}

#[test]
fn a_run_that_heard_nothing_or_missed_a_fault_fails() {
    let silent = vec![operation(0, 0, None, Op::Put { value: "a".into() })];
    let schedule = draw(7, Duration::from_secs(20), &plan().faults);
    let outcome = linear::check(&silent, Duration::from_secs(5));
    let heard_nothing = Report::new(
        plan(),
        schedule.clone(),
        observed(injected_for(&schedule), &silent, &outcome),
    );
    assert_eq!(heard_nothing.verdict, Verdict::Fail);

    let schedule = draw(7, Duration::from_secs(20), &plan().faults);
    let mut injected = injected_for(&schedule);
    injected.pop();
    let history = history(Some("a"));
    let outcome = linear::check(&history, Duration::from_secs(5));
    let short = Report::new(plan(), schedule, observed(injected, &history, &outcome));
    assert_eq!(short.verdict, Verdict::Fail);
}

#[test]
fn a_cluster_that_never_answers_after_a_fault_fails_the_run() {
    let schedule = draw(7, Duration::from_secs(20), &plan().faults);
    let injected = injected_for(&schedule);
    // Answers only before the first fault.
    let history = history(Some("a"));
    let outcome = linear::check(&history, Duration::from_secs(5));
    let report = Report::new(plan(), schedule, observed(injected, &history, &outcome));
    assert_eq!(report.verdict, Verdict::Fail);
    let text = summary(&report);
    assert!(text.contains("FAIL     progress"), "{text}");
    assert!(text.contains("nothing answered from"), "{text}");
}

#[test]
fn a_member_that_ended_by_itself_fails_the_run() {
    let schedule = draw(7, Duration::from_secs(20), &plan().faults);
    let history = history(Some("a"));
    let outcome = linear::check(&history, Duration::from_secs(5));
    let mut seen = observed(injected_for(&schedule), &history, &outcome);
    seen.crashes.push(Crash {
        member: "m2".into(),
        found_ms: 4_000,
        exit: "signal: 6 (SIGABRT)".into(),
    });
    let report = Report::new(plan(), schedule, seen);
    assert_eq!(report.verdict, Verdict::Fail);
    assert!(summary(&report).contains("m2 ended by itself (signal: 6 (SIGABRT))"));
}

#[test]
fn undecided_is_unknown_never_pass_and_a_failure_outranks_it() {
    let check = |verdict| Check {
        name: "c".into(),
        verdict,
        detail: String::new(),
    };
    assert_eq!(
        verdict(&[check(Verdict::Pass), check(Verdict::Unknown)]),
        Verdict::Unknown
    );
    assert_eq!(
        verdict(&[check(Verdict::Unknown), check(Verdict::Fail)]),
        Verdict::Fail
    );
    assert_eq!(verdict(&[check(Verdict::Pass)]), Verdict::Pass);
}

#[test]
fn a_report_reads_back_as_written() {
    let report = report(&history(Some("a")));
    let json = serde_json::to_string_pretty(&report).unwrap();
    assert!(json.contains("\"verdict\": \"PASS\""), "{json}");
    assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), report);
}

#[test]
fn a_watcher_that_missed_an_event_or_a_write_applied_twice_fails_the_run() {
    let schedule = draw(7, Duration::from_secs(20), &plan().faults);
    let history = spread(&history(Some("a")), &injected_for(&schedule));
    let outcome = linear::check(&history, Duration::from_secs(5));
    let fine = observed(injected_for(&schedule), &history, &outcome);
    assert_eq!(
        Report::new(plan(), schedule.clone(), fine).verdict,
        Verdict::Pass
    );

    let mut missed = observed(injected_for(&schedule), &history, &outcome);
    missed.watches = Ok(WatchOutcome {
        watchers: 1,
        events: 0,
        violations: vec![watch::Violation::Missed {
            watcher: "watcher 0".into(),
            revision: 7,
            key: "k".into(),
        }],
        fell_short: vec![],
    });
    let report = Report::new(plan(), schedule.clone(), missed);
    assert_eq!(report.verdict, Verdict::Fail);
    assert!(
        summary(&report).contains("FAIL     watches"),
        "{}",
        summary(&report)
    );

    let mut twice = observed(injected_for(&schedule), &history, &outcome);
    twice.once = Ok((
        1,
        vec![once::Violation::AppliedTwice {
            value: "c1-1".into(),
            revisions: vec![4, 9],
        }],
    ));
    let report = Report::new(plan(), schedule.clone(), twice);
    assert_eq!(report.verdict, Verdict::Fail);
    assert!(
        summary(&report).contains("AppliedTwice"),
        "{}",
        summary(&report)
    );

    let mut stuck = observed(injected_for(&schedule), &history, &outcome);
    stuck.watches = Ok(WatchOutcome {
        watchers: 2,
        events: 4,
        violations: vec![],
        fell_short: vec!["watcher 1 reached revision 3 of 9".into()],
    });
    let report = Report::new(plan(), schedule.clone(), stuck);
    assert_eq!(report.verdict, Verdict::Fail, "{}", summary(&report));

    let mut unread = observed(injected_for(&schedule), &history, &outcome);
    unread.once = Err("the members never agreed".into());
    let report = Report::new(plan(), schedule, unread);
    assert_eq!(report.verdict, Verdict::Unknown, "{}", summary(&report));
}

#[test]
fn a_partition_that_dropped_no_packet_fails_the_faults_check() {
    let mut plan = plan();
    plan.faults = vec![
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Disk,
    ];
    let schedule = draw(7, Duration::from_secs(20), &plan.faults);
    let mut injected = injected_for(&schedule);
    let history = spread(&history(Some("a")), &injected);
    let outcome = linear::check(&history, Duration::from_secs(5));
    let cutting = Report::new(
        plan.clone(),
        schedule.clone(),
        observed(injected.clone(), &history, &outcome),
    );
    assert_eq!(cutting.verdict, Verdict::Pass, "{}", summary(&cutting));
    assert!(summary(&cutting).contains("partitions and losses dropped"));

    let partition = injected
        .iter_mut()
        .find(|fault| fault.kind == FaultKind::Partition)
        .expect("a 20 s schedule of every kind has a partition");
    partition.dropped_packets = Some(0);
    partition.sides = Some("m1 | m2 m3".into());
    let vacuous = Report::new(plan, schedule, observed(injected, &history, &outcome));
    assert_eq!(vacuous.verdict, Verdict::Fail);
    let text = summary(&vacuous);
    assert!(text.contains("FAIL     faults"), "{text}");
    assert!(text.contains("(m1 | m2 m3) dropped no packet"), "{text}");
}

#[test]
fn a_delay_that_held_no_packet_fails_the_faults_check() {
    let mut plan = plan();
    plan.faults = vec![FaultKind::Delay, FaultKind::Pause];
    let schedule = draw(7, Duration::from_secs(20), &plan.faults);
    let mut injected = injected_for(&schedule);
    let history = spread(&history(Some("a")), &injected);
    let outcome = linear::check(&history, Duration::from_secs(5));
    let holding = observed(injected.clone(), &history, &outcome);
    let report = Report::new(plan.clone(), schedule.clone(), holding);
    assert_eq!(report.verdict, Verdict::Pass, "{}", summary(&report));
    assert!(
        summary(&report).contains("delays held"),
        "{}",
        summary(&report)
    );

    let delay = injected
        .iter_mut()
        .find(|fault| fault.kind == FaultKind::Delay)
        .expect("a 20 s schedule of delays and pauses has a delay");
    delay.delayed_packets = Some(0);
    let vacuous = Report::new(plan, schedule, observed(injected, &history, &outcome));
    assert_eq!(vacuous.verdict, Verdict::Fail);
    let text = summary(&vacuous);
    assert!(text.contains("FAIL     faults"), "{text}");
    assert!(text.contains("delayed no packet"), "{text}");
}

#[test]
fn a_serializable_read_off_the_record_or_none_at_all_does_not_pass() {
    let schedule = draw(7, Duration::from_secs(20), &plan().faults);
    let injected = injected_for(&schedule);
    let history = spread(&history(Some("a")), &injected);
    let outcome = linear::check(&history, Duration::from_secs(5));
    let read = crate::check::serializable::SerializableRead {
        client: 4,
        key: "k".into(),
        revision: 12,
        seen: Some(("b".into(), 9)),
    };
    let mut off = observed(injected.clone(), &history, &outcome);
    off.serializable = Ok((
        40,
        vec![crate::check::serializable::Violation {
            read,
            recorded: Some(("a".into(), 11)),
        }],
    ));
    let report = Report::new(plan(), schedule.clone(), off);
    assert_eq!(report.verdict, Verdict::Fail);
    let text = summary(&report);
    assert!(text.contains("FAIL     serializable reads"), "{text}");
    assert!(
        text.contains("client 4 read \"k\" at revision 12"),
        "{text}"
    );

    let mut none = observed(injected, &history, &outcome);
    none.serializable = Ok((0, vec![]));
    let report = Report::new(plan(), schedule, none);
    assert_eq!(
        report.verdict,
        Verdict::Unknown,
        "nothing read, nothing checked"
    );
}

#[test]
fn a_member_that_ran_on_through_a_failed_disk_fails_the_faults_check() {
    let mut plan = plan();
    plan.faults = vec![FaultKind::Disk];
    let schedule = draw(7, Duration::from_secs(20), &plan.faults);
    let mut injected = injected_for(&schedule);
    let history = spread(&history(Some("a")), &injected);
    let outcome = linear::check(&history, Duration::from_secs(5));
    let stopped = Report::new(
        plan.clone(),
        schedule.clone(),
        observed(injected.clone(), &history, &outcome),
    );
    assert_eq!(stopped.verdict, Verdict::Pass, "{}", summary(&stopped));
    injected[0].disk_effect = Some(crate::disk::DiskEffect::KeptRunning);
    let ran_on = Report::new(plan, schedule, observed(injected, &history, &outcome));
    assert_eq!(ran_on.verdict, Verdict::Fail);
    let text = summary(&ran_on);
    assert!(text.contains("FAIL     faults"), "{text}");
    assert!(text.contains("kept running through a failed log"), "{text}");
}
