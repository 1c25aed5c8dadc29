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
//! another. [`rules`] is pure.

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

/// A delay in place on one member's links; [`LinkDelay::end`] ends it.
pub struct LinkDelay {
    stop: Arc<AtomicBool>,
    worker: JoinHandle<Result<u64, DelayError>>,
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
            Ok(Ok(())) => Ok(Self { stop, worker }),
            Ok(Err(error)) => Err(error),
            // The thread ended before it said: its own error says why.
            Err(_) => Err(worker.join().map_or(DelayError::Gone, |ended| {
                ended.err().unwrap_or(DelayError::Gone)
            })),
        }
    }

    /// Removes the rules and lets every held packet through; how many packets were
    /// delayed.
    pub fn end(self) -> Result<u64, DelayError> {
        self.stop.store(true, Ordering::Relaxed);
        self.worker.join().unwrap_or(Err(DelayError::Gone))
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

/// The arguments that remove them (the member's namespace holds no other such rules).
fn flush() -> Vec<Vec<String>> {
    ["INPUT", "OUTPUT"]
        .map(|chain| vec!["-w".to_string(), "-F".into(), chain.into()])
        .to_vec()
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
        let queue = match open_queue() {
            Ok(queue) => queue,
            Err(error) => return Ok(Err(error)),
        };
        let placed = rules(&peers, QUEUE)
            .iter()
            .try_for_each(|rule| iptables(rule));
        if let Err(error) = placed {
            let _ = flush().iter().try_for_each(|rule| iptables(rule));
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

/// Holds each packet `delay`, in order, until `stop`; then removes the rules and lets the
/// rest through. How many packets it held.
fn hold_and_release(
    mut queue: nfq::Queue,
    delay: Duration,
    stop: &AtomicBool,
) -> Result<u64, DelayError> {
    let failed = |action| move |source| DelayError::Queue { action, source };
    let mut held: VecDeque<(Instant, nfq::Message)> = VecDeque::new();
    let mut delayed = 0;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if stopping {
            flush().iter().try_for_each(|rule| iptables(rule))?;
        }
        loop {
            match queue.recv() {
                Ok(packet) => {
                    held.push_back((Instant::now() + delay, packet));
                    delayed += 1;
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(error) => {
                    let _ = flush().iter().try_for_each(|rule| iptables(rule));
                    return Err(failed("receiving")(error));
                }
            }
        }
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| stopping || *due <= now) {
            if let Some((_, mut packet)) = held.pop_front() {
                packet.set_verdict(nfq::Verdict::Accept);
                queue
                    .verdict(packet)
                    .map_err(failed("letting a packet through"))?;
            }
        }
        if stopping {
            return Ok(delayed);
        }
        let next = held
            .front()
            .map_or(TICK, |(due, _)| due.saturating_duration_since(now));
        std::thread::sleep(next.min(TICK));
    }
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
