//! Delays on a member's links: every packet between the member and the other members,
//! both ways, held by the runner for the fault's delay and then let through.
//!
//! How: rules in the member's network namespace ([`crate::network`]) queue those packets
//! to the runner (netfilter's NFQUEUE), whose thread in that namespace receives each,
//! holds it, and accepts it when its delay is up. Why not `tc qdisc ... netem delay`, the
//! usual way: this machine's kernel has no `netem`, nor nftables' `queue` statement; it has
//! the xtables NFQUEUE target, which `iptables-legacy` writes rules for. The rules say
//! `--queue-bypass`: should the runner's thread be gone, packets pass undelayed rather
//! than stop. Packets are held in order and all for the same time, so none overtakes
//! another; at the end the held ones go first, then the rules, so that what is sent after
//! the fault does not overtake them by much (the few packets queued in between pass at
//! once). [`rules`] is pure.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rudder_node::runtime::linux::network::{in_namespace, NetworkError};

/// The netfilter queue a member's delayed packets go to (queues are per namespace).
const QUEUE: u16 = 7;
/// The most packets the kernel keeps queued for the runner; past it they pass undelayed
/// (fail-open), not dropped.
const QUEUE_MOST: u32 = 65_536;
/// How often the runner looks for packets whose delay is up, at most.
const TICK: Duration = Duration::from_millis(1);
/// How many answers one read of the queue takes at most, errors included.
const FAILURES_READ_PAST: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum DelayError {
    #[error("entering the member's network namespace: {0}")]
    Namespace(#[from] NetworkError),
    #[error("the netfilter queue: {action}: {source}")]
    Queue {
        action: &'static str,
        source: std::io::Error,
    },
    #[error(
        "iptables-legacy {rule}: {why} (delays need Debian's iptables package: \
         scripts/dev.sh up installs it)"
    )]
    Rule { rule: String, why: String },
    #[error("the delaying thread ended unexpectedly")]
    Gone,
}

/// A delay in place on one member's links; [`LinkDelay::end`] ends it (and so does
/// dropping it, for a run cut short).
pub struct LinkDelay {
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<Result<u64, DelayError>>>,
}

impl LinkDelay {
    /// Delays every packet between the member in the namespace at `netns` and `peers`, both
    /// ways, by `delay`; returns once the rules are in place.
    pub fn start(netns: &Path, peers: &[Ipv4Addr], delay: Duration) -> Result<Self, DelayError> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready, in_place) = mpsc::channel();
        let worker = std::thread::spawn({
            let (netns, peers, stop) = (netns.to_path_buf(), peers.to_vec(), stop.clone());
            move || delay_in(netns, peers, delay, stop, ready)
        });
        match in_place.recv() {
            Ok(Ok(())) => Ok(Self {
                stop,
                worker: Some(worker),
            }),
            Ok(Err(error)) => Err(error),
            // The thread ended before it said: its own error says why.
            Err(_) => Err(worker.join().map_or(DelayError::Gone, |ended| {
                ended.err().unwrap_or(DelayError::Gone)
            })),
        }
    }

    /// Removes the rules and lets every held packet through; how many packets were
    /// delayed.
    pub fn end(mut self) -> Result<u64, DelayError> {
        self.stop.store(true, Ordering::Relaxed);
        let worker = self.worker.take().ok_or(DelayError::Gone)?;
        worker.join().unwrap_or(Err(DelayError::Gone))
    }
}

impl Drop for LinkDelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// The iptables-legacy arguments that queue what the member exchanges with `peers`.
pub fn rules(peers: &[Ipv4Addr], queue: u16) -> Vec<Vec<String>> {
    let queue = queue.to_string();
    peers
        .iter()
        .flat_map(|peer| [("INPUT", "-s", *peer), ("OUTPUT", "-d", *peer)])
        .map(|(chain, side, peer)| {
            let rule = ["-w", "-A", chain, side, &peer.to_string(), "-j", "NFQUEUE"];
            let target = ["--queue-num", &queue, "--queue-bypass"];
            rule.iter()
                .chain(&target)
                .map(|arg| arg.to_string())
                .collect()
        })
        .collect()
}

/// Removes them (the member's namespace holds no other iptables rules), from both chains
/// even when one fails; the first failure.
fn remove_rules() -> Result<(), DelayError> {
    let flushed =
        ["INPUT", "OUTPUT"].map(|chain| iptables(&["-w".into(), "-F".into(), chain.into()]));
    flushed.into_iter().collect()
}

fn iptables(args: &[String]) -> Result<(), DelayError> {
    let failed = |why: String| DelayError::Rule {
        rule: args.join(" "),
        why,
    };
    let output = Command::new("iptables-legacy")
        .args(args)
        .output()
        .map_err(|error| failed(error.to_string()))?;
    match output.status.success() {
        true => Ok(()),
        false => Err(failed(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        )),
    }
}

/// The delaying thread: enters the namespace, binds the queue, puts the rules in, says so
/// on `ready`, then holds and releases packets until `stop`.
fn delay_in(
    netns: PathBuf,
    peers: Vec<Ipv4Addr>,
    delay: Duration,
    stop: Arc<AtomicBool>,
    ready: mpsc::Sender<Result<(), DelayError>>,
) -> Result<u64, DelayError> {
    let ran = in_namespace(&netns, move || {
        let mut queue = match open_queue() {
            Ok(queue) => queue,
            Err(error) => return Ok(Err(error)),
        };
        let placed = rules(&peers, QUEUE)
            .iter()
            .try_for_each(|rule| iptables(rule));
        if let Err(error) = placed {
            // What the rules put in meanwhile queued goes through, not down with the queue.
            let _ = remove_rules();
            let mut queued = VecDeque::new();
            let _ = receive(&mut queue, &mut queued, Duration::ZERO);
            let _ = release(&mut queue, queued.drain(..).map(|(_, packet)| packet));
            return Ok(Err(error));
        }
        let _ = ready.send(Ok(()));
        Ok(hold_and_release(queue, delay, &stop))
    });
    ran?
}

fn open_queue() -> Result<nfq::Queue, DelayError> {
    let failed = |action| move |source| DelayError::Queue { action, source };
    let mut queue = nfq::Queue::open().map_err(failed("opening"))?;
    queue.bind(QUEUE).map_err(failed("binding"))?;
    // The packets' metadata only: the runner needs their ids, not their bytes.
    queue
        .set_copy_range(QUEUE, 0)
        .map_err(failed("setting the copy range"))?;
    queue
        .set_fail_open(QUEUE, true)
        .map_err(failed("setting fail-open"))?;
    queue
        .set_queue_max_len(QUEUE, QUEUE_MOST)
        .map_err(failed("setting the queue's length"))?;
    queue.set_nonblocking(true);
    Ok(queue)
}

/// Holds each packet `delay`, in order, until `stop` (or an error); then lets every held
/// packet through, removes the rules, and lets through what was queued meanwhile. How many
/// packets it held.
fn hold_and_release(
    mut queue: nfq::Queue,
    delay: Duration,
    stop: &AtomicBool,
) -> Result<u64, DelayError> {
    let mut held: VecDeque<(Instant, nfq::Message)> = VecDeque::new();
    let mut delayed = 0;
    let holding = hold(&mut queue, &mut held, &mut delayed, delay, stop);
    // Whatever ended the holding, nothing held is kept: a packet left in the queue when
    // its socket closes is dropped by the kernel.
    let released = release_all(&mut queue, &mut held);
    let flushed = remove_rules();
    let received = receive(&mut queue, &mut held, Duration::ZERO);
    let drained = release_all(&mut queue, &mut held);
    holding
        .and(released)
        .and(flushed)
        .and(received)
        .and(drained)?;
    Ok(delayed)
}

/// Holds each packet `delay` and lets it through in order, until `stop`.
fn hold(
    queue: &mut nfq::Queue,
    held: &mut VecDeque<(Instant, nfq::Message)>,
    delayed: &mut u64,
    delay: Duration,
    stop: &AtomicBool,
) -> Result<(), DelayError> {
    while !stop.load(Ordering::Relaxed) {
        *delayed += receive(queue, held, delay)?;
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| *due <= now) {
            let due = held.pop_front().map(|(_, packet)| packet);
            release(queue, due)?;
        }
        let next = held
            .front()
            .map_or(TICK, |(due, _)| due.saturating_duration_since(now));
        std::thread::sleep(next.min(TICK));
    }
    Ok(())
}

/// Takes every packet the kernel has queued so far onto `held`, each due `delay` from now;
/// how many. An error the socket reports (a late answer to a verdict the kernel could not
/// apply, say) does not stop the reading: the packets behind it are taken too, and the
/// first error is returned with them in `held`.
fn receive(
    queue: &mut nfq::Queue,
    held: &mut VecDeque<(Instant, nfq::Message)>,
    delay: Duration,
) -> Result<u64, DelayError> {
    let mut received = 0;
    let mut first_failure = None;
    // Bounded, so that a socket that only ever errs cannot hold the thread.
    for _ in 0..FAILURES_READ_PAST {
        match queue.recv() {
            Ok(packet) => {
                held.push_back((Instant::now() + delay, packet));
                received += 1;
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(source) => {
                first_failure.get_or_insert(DelayError::Queue {
                    action: "receiving",
                    source,
                });
            }
        }
    }
    first_failure.map_or(Ok(received), Err)
}

/// Lets everything in `held` through now, in order.
fn release_all(
    queue: &mut nfq::Queue,
    held: &mut VecDeque<(Instant, nfq::Message)>,
) -> Result<(), DelayError> {
    release(queue, held.drain(..).map(|(_, packet)| packet))
}

/// Lets `packets` through, in order; past a failure, tries the rest and says the first.
fn release(
    queue: &mut nfq::Queue,
    packets: impl IntoIterator<Item = nfq::Message>,
) -> Result<(), DelayError> {
    let mut first_failure = None;
    for mut packet in packets {
        packet.set_verdict(nfq::Verdict::Accept);
        if let Err(source) = queue.verdict(packet) {
            first_failure.get_or_insert(DelayError::Queue {
                action: "letting a packet through",
                source,
            });
        }
    }
    first_failure.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_peer_is_queued_both_ways() {
        let peers = [Ipv4Addr::new(10, 249, 3, 11), Ipv4Addr::new(10, 249, 3, 12)];
        let rules: Vec<String> = rules(&peers, 7).iter().map(|rule| rule.join(" ")).collect();
        assert_eq!(
            rules,
            [
                "-w -A INPUT -s 10.249.3.11 -j NFQUEUE --queue-num 7 --queue-bypass",
                "-w -A OUTPUT -d 10.249.3.11 -j NFQUEUE --queue-num 7 --queue-bypass",
                "-w -A INPUT -s 10.249.3.12 -j NFQUEUE --queue-num 7 --queue-bypass",
                "-w -A OUTPUT -d 10.249.3.12 -j NFQUEUE --queue-num 7 --queue-bypass",
            ]
        );
    }
}
