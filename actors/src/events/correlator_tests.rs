//! The correlator's tables (correlator.rs), kept apart so that file stays one idea.

use super::*;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).expect("a valid time")
}

fn pod(name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some("web".into()),
        name: Some(name.into()),
        uid: Some(format!("uid-{name}")),
        resource_version: Some("7".into()),
        field_path: None,
    }
}

fn occurrence(object: &str, reason: &str, message: &str) -> Occurrence {
    Occurrence {
        involved: pod(object),
        type_: EventType::Warning,
        reason: reason.into(),
        message: message.into(),
    }
}

/// One row of a scenario: at `seconds`, `object` reports `message` (reason `Failed`);
/// expected: "create" / "patch" / "drop", the count and the message written.
type Step = (i64, Str, Str, Str, i32, Str);
type Str = &'static str;

fn summary(decision: &Decision) -> (&'static str, i32, String) {
    match decision {
        Decision::Create(event) => (
            "create",
            event.count.unwrap_or_default(),
            event.message.clone().unwrap_or_default(),
        ),
        Decision::Patch { count, message, .. } => ("patch", *count, message.clone()),
        Decision::Drop => ("drop", 0, String::new()),
    }
}

/// Runs `steps` through one correlator, each with a fresh suffix, checking every step.
fn run(correlator: &mut Correlator, steps: &[Step]) -> Vec<Decision> {
    let mut decisions = Vec::new();
    for (i, &(seconds, object, message, kind, count, written)) in steps.iter().enumerate() {
        let suffix = 0x100 + u64::try_from(i).expect("few steps");
        let decision =
            correlator.correlate(occurrence(object, "Failed", message), at(seconds), suffix);
        assert_eq!(
            summary(&decision),
            (kind, count, written.to_string()),
            "step {i}: {object} at {seconds}s says {message:?}"
        );
        decisions.push(decision);
    }
    decisions
}

fn correlator() -> Correlator {
    Correlator::new("replicaset-controller", "")
}

#[test]
fn first_occurrence_creates_an_event_with_count_one() {
    let mut correlator = Correlator::new("default-scheduler", "master-1");
    let decision = correlator.correlate(occurrence("web-1", "Failed", "boom"), at(0), 0x1f);
    let Decision::Create(event) = decision else {
        panic!("expected a create");
    };
    let expected = Event {
        metadata: ObjectMeta {
            name: Some("web-1.1f".into()),
            namespace: Some("web".into()),
            ..ObjectMeta::default()
        },
        involved_object: pod("web-1"),
        type_: Some("Warning".into()),
        reason: Some("Failed".into()),
        message: Some("boom".into()),
        count: Some(1),
        first_timestamp: Some(Time(at(0))),
        last_timestamp: Some(Time(at(0))),
        source: Some(EventSource {
            component: Some("default-scheduler".into()),
            host: Some("master-1".into()),
        }),
        reporting_component: Some("default-scheduler".into()),
        reporting_instance: Some("master-1".into()),
        ..Event::default()
    };
    assert_eq!(event, expected);
}

#[test]
fn events_about_cluster_scoped_objects_go_to_default_without_a_host() {
    let mut correlator = correlator();
    let mut node = occurrence("node-1", "NodeNotReady", "down");
    node.involved.namespace = None;
    node.involved.kind = Some("Node".into());
    let Decision::Create(event) = correlator.correlate(node, at(0), 1) else {
        panic!("expected a create");
    };
    assert_eq!(event.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(event.involved_object.namespace, None);
    assert_eq!(event.source.and_then(|s| s.host), None);
    assert_eq!(event.reporting_instance, None);
}

#[test]
fn the_same_occurrence_again_patches_the_first_event() {
    let mut correlator = correlator();
    let steps: &[Step] = &[
        (0, "web-1", "boom", "create", 1, "boom"),
        (5, "web-1", "boom", "patch", 2, "boom"),
        (9, "web-1", "boom", "patch", 3, "boom"),
        // Another object, or another message, is another event.
        (9, "web-2", "boom", "create", 1, "boom"),
        (9, "web-1", "bang", "create", 1, "bang"),
    ];
    let decisions = run(&mut correlator, steps);
    let Decision::Patch {
        namespace,
        name,
        last_timestamp,
        event,
        ..
    } = &decisions[1]
    else {
        panic!("expected a patch");
    };
    assert_eq!((namespace.as_str(), name.as_str()), ("web", "web-1.100"));
    assert_eq!(*last_timestamp, at(5));
    // The event to create if the patch finds it expired: the first one, counted on.
    assert_eq!(event.metadata.name.as_deref(), Some("web-1.100"));
    assert_eq!(event.first_timestamp, Some(Time(at(0))));
    assert_eq!(event.last_timestamp, Some(Time(at(5))));
    assert_eq!(event.count, Some(2));
}

#[test]
fn similar_occurrences_with_distinct_messages_are_combined() {
    let mut correlator = correlator();
    let combined = |m: &str| [COMBINED_PREFIX, m].concat();
    let steps: &[Step] = &[
        (0, "web-1", "m1", "create", 1, "m1"),
        (1, "web-1", "m2", "create", 1, "m2"),
        (2, "web-1", "m3", "create", 1, "m3"),
        (3, "web-1", "m4", "create", 1, "m4"),
        (4, "web-1", "m5", "create", 1, "m5"),
        (5, "web-1", "m6", "create", 1, "m6"),
        (6, "web-1", "m7", "create", 1, "m7"),
        (7, "web-1", "m8", "create", 1, "m8"),
        (8, "web-1", "m9", "create", 1, "m9"),
    ];
    run(&mut correlator, steps);
    // As in client-go, the tenth distinct message starts the combined event, and each
    // later new message patches it.
    let tenth = correlator.correlate(occurrence("web-1", "Failed", "m10"), at(9), 0xa);
    assert_eq!(summary(&tenth), ("create", 1, combined("m10")));
    let eleventh = correlator.correlate(occurrence("web-1", "Failed", "m11"), at(10), 0xb);
    assert_eq!(summary(&eleventh), ("patch", 2, combined("m11")));
    let Decision::Patch { name, .. } = &eleventh else {
        panic!("expected a patch");
    };
    assert_eq!(name, "web-1.a");
    // Another reason is another group.
    let other = correlator.correlate(occurrence("web-1", "Killed", "m12"), at(10), 0xc);
    assert_eq!(summary(&other), ("create", 1, "m12".to_string()));
}

#[test]
fn the_aggregation_window_resets_after_ten_quiet_minutes() {
    const COMBINED_M10: &str = "(combined from similar events): m10";
    let mut correlator = correlator();
    let steps: &[Step] = &[
        (0, "web-1", "m1", "create", 1, "m1"),
        (1, "web-1", "m2", "create", 1, "m2"),
        (2, "web-1", "m3", "create", 1, "m3"),
        (3, "web-1", "m4", "create", 1, "m4"),
        (4, "web-1", "m5", "create", 1, "m5"),
        (5, "web-1", "m6", "create", 1, "m6"),
        (6, "web-1", "m7", "create", 1, "m7"),
        (7, "web-1", "m8", "create", 1, "m8"),
        // The window slides: ten minutes from m1 have passed, but not since m8.
        (605, "web-1", "m9", "create", 1, "m9"),
        (606, "web-1", "m10", "create", 1, COMBINED_M10),
        // Over ten quiet minutes: the group starts afresh, each message on its own.
        (1207, "web-1", "m11", "create", 1, "m11"),
        (1208, "web-1", "m12", "create", 1, "m12"),
    ];
    run(&mut correlator, steps);
}

#[test]
fn the_spam_filter_drops_past_the_burst_and_admits_after_a_refill() {
    let mut correlator = correlator();
    let mut steps: Vec<Step> = vec![(0, "web-1", "boom", "create", 1, "boom")];
    for count in 2..=25 {
        steps.push((0, "web-1", "boom", "patch", count, "boom"));
    }
    steps.extend_from_slice(&[
        (0, "web-1", "boom", "drop", 0, ""),
        // Each object has its own budget.
        (0, "web-2", "boom", "create", 1, "boom"),
        (299, "web-1", "boom", "drop", 0, ""),
        // Five minutes earn one token back. The dropped occurrences were counted, as in
        // client-go, so the count says how often it happened.
        (300, "web-1", "boom", "patch", 28, "boom"),
        (300, "web-1", "boom", "drop", 0, ""),
        (900, "web-1", "boom", "patch", 30, "boom"),
        (900, "web-1", "boom", "patch", 31, "boom"),
        (900, "web-1", "boom", "drop", 0, ""),
    ]);
    run(&mut correlator, &steps);
}

#[test]
fn caches_stay_within_their_bound_and_forget_the_least_recently_used() {
    let mut correlator = correlator();
    let names: Vec<String> = (0..=CACHE_ENTRIES).map(|i| format!("pod-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let suffix = u64::try_from(i).expect("a small index");
        let decision = correlator.correlate(occurrence(name, "Failed", "boom"), at(0), suffix);
        assert!(matches!(decision, Decision::Create(_)), "{name}");
    }
    assert_eq!(correlator.log.len(), CACHE_ENTRIES);
    assert_eq!(correlator.groups.len(), CACHE_ENTRIES);
    assert_eq!(correlator.spam.len(), CACHE_ENTRIES);
    // pod-0 was the least recently used: forgotten, so its event is created anew; the
    // most recent is still patched.
    let again = correlator.correlate(occurrence("pod-0", "Failed", "boom"), at(1), 1 << 20);
    assert_eq!(summary(&again), ("create", 1, "boom".to_string()));
    let last = &names[CACHE_ENTRIES];
    let recent = correlator.correlate(occurrence(last, "Failed", "boom"), at(1), 1 << 21);
    assert_eq!(summary(&recent), ("patch", 2, "boom".to_string()));
    assert_eq!(correlator.log.len(), CACHE_ENTRIES);
}
