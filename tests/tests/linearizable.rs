//! The store is linearizable through leader kills and pauses — with real processes,
//! through the etcd API, checked by `rudder_chaos::check::linear` (the search the chaos
//! runner uses): clients put, read and compare-and-swap a few keys, each operation recorded
//! with when it was sent and when (if ever) it was answered; then one order of them all must
//! explain every answer. Reads are etcd's default, linearizable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rudder_chaos::check::linear::{check, Op};
use rudder_chaos::workload::kv::KvWorkload;
use rudder_tests::faults::inject_faults;
use rudder_tests::{rudder_binary_beside_tests, ProcessCluster};

const KEYS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn puts_reads_and_swaps_under_leader_kills_and_pauses_are_linearizable() {
    let mut cluster = ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 3, &[])
        .expect("three members start");
    let workload = KvWorkload {
        clients: 6,
        keys: KEYS,
        prefix: "lin/".into(),
        seed: 1,
        live: Default::default(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn({
        let (endpoints, stop) = (cluster.endpoints(), stop.clone());
        async move { workload.run(endpoints, stop).await }
    });
    let faults = inject_faults(&mut cluster, Duration::from_secs(20)).await;
    stop.store(true, Ordering::Relaxed);
    let history = running.await.unwrap().operations;
    let answered = history.iter().filter(|op| op.completed.is_some()).count();
    let unanswered = history.len() - answered;
    let swapped = history
        .iter()
        .filter(|op| matches!(op.op, Op::Cas { swapped: true, .. }) && op.completed.is_some())
        .count();
    println!(
        "{} operations: {answered} answered ({swapped} swaps won), {unanswered} unanswered; {faults:?}",
        history.len()
    );
    assert!(
        answered > 300,
        "the load made progress: {answered} answered"
    );
    assert!(swapped > 20, "swaps succeeded too: {swapped}");
    assert!(
        faults.kills >= 3 && faults.pauses >= 1,
        "the run exercised its faults: {faults:?}"
    );
    let checked = Instant::now();
    let outcome = check(&history, Duration::from_secs(60));
    println!("checked in {:?}: {outcome:?}", checked.elapsed());
    assert!(
        outcome.violations.is_empty(),
        "not linearizable: {:#?}",
        outcome.violations
    );
    assert!(
        outcome.undecided.is_empty(),
        "undecided within the budget: {:?}",
        outcome.undecided
    );
    assert_eq!(outcome.linearizable_keys, KEYS);
}
