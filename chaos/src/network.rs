//! The members' own network, for partition, loss and delay faults ([`crate::delay`]): each member in a network namespace of
//! its own with `eth0` on a bridge this run creates (`10.249.K.0/24`, the runner at `.1`),
//! and a partition as nftables rules in the members' namespaces that drop what a member
//! receives from the members it is cut from, counting what they drop.
//!
//! Why namespaces and not a proxy on the peer links: the rules act on real packets, so a
//! partition looks the same to Rudder and to etcd (whose peers dial each other in both
//! directions, over connections a proxy could not tell apart), and one-way cuts are exact.
//! Traffic never leaves the machine: the network is closed ([`NodeNetwork::closed`]): the
//! members have no route but the bridge's range, the bridge forwards nothing and hands
//! nothing to the machine's ip hooks. Needs root; the namespaces and bridge are
//! [`rudder_node`]'s pod network code.
//!
//! `K` is a slot that runs on one machine take turns with (an flock under `/run`, released
//! if the run dies), skipping ranges the machine routes elsewhere; each run first clears
//! what dead runs left in free slots, their members included. [`ruleset`],
//! [`dropped_packets`] and [`routed_ranges`] are pure.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rudder_node::proxy::nft;
use rudder_node::runtime::linux::machine_network::delete_links;
use rudder_node::runtime::linux::network::{in_namespace, Cidr, NetworkError, NodeNetwork};

use crate::delay::LinkDelay;

/// Where slots, their locks and the members' namespaces live.
const RUN_DIR: &str = "/run/rudder-chaos";
/// The nftables table a partition writes in a member's namespace.
const TABLE: &str = "rudder-chaos";
/// The most members a run has (`rudder chaos run --masters` allows 3 to 7).
const MOST_MEMBERS: usize = 7;

#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error(
        "partition, loss and delay faults put each member in a network namespace of its \
         own, which needs root: run `rudder chaos run` as root, or leave them out of --faults"
    )]
    NotRoot,
    #[error("every one of the 256 network slots under {RUN_DIR} is taken by another run")]
    NoSlot,
    #[error("{action}: {source}")]
    Io {
        action: String,
        source: std::io::Error,
    },
    #[error("setting up the members' network: {0}")]
    Network(#[from] NetworkError),
    #[error("delaying packets: {0}")]
    Delay(#[from] crate::delay::DelayError),
    #[error("member {member}: {source}")]
    Rules {
        member: String,
        source: nft::NftError,
    },
}

/// One member's place on the bridge.
#[derive(Debug, Clone)]
pub struct Place {
    pub ip: Ipv4Addr,
    pub netns: PathBuf,
}

/// The bridge and the members' namespaces of one run; dropping it removes them.
pub struct MemberNetwork {
    slot: u8,
    network: NodeNetwork,
    places: Vec<Place>,
    _lock: nix::fcntl::Flock<File>,
}

impl MemberNetwork {
    /// A bridge and `members` (at most 7) namespaces on it.
    pub fn create(members: usize) -> Result<Self, PartitionError> {
        assert!(members <= MOST_MEMBERS, "at most {MOST_MEMBERS} members");
        if !nix::unistd::geteuid().is_root() {
            return Err(PartitionError::NotRoot);
        }
        std::fs::create_dir_all(RUN_DIR).map_err(|source| PartitionError::Io {
            action: format!("creating {RUN_DIR}"),
            source,
        })?;
        sweep_dead_runs();
        let (slot, lock) = take_slot()?;
        let mut made = Self {
            slot,
            network: slot_network(slot)?,
            places: Vec::new(),
            _lock: lock,
        };
        made.network.ensure_bridge()?;
        for index in 0..members {
            let ip = Ipv4Addr::new(10, 249, slot, 10 + index as u8);
            let netns = made.network.add_pod(&member_name(slot, index), ip)?;
            made.places.push(Place { ip, netns });
        }
        Ok(made)
    }

    pub fn places(&self) -> &[Place] {
        &self.places
    }

    /// E.g. `bridge rchaos7, 10.249.7.0/24`: what a run says it made (and removes).
    pub fn describe(&self) -> String {
        let cidr = self.network.pod_cidr;
        format!(
            "bridge {}, {}/{}",
            self.network.bridge, cidr.network, cidr.prefix
        )
    }

    /// Drops, in each member's namespace, what `cuts` says it no longer receives (`(from,
    /// to)`: `to` hears nothing from `from`). Replaces whatever partition was there; one
    /// that cannot be made whole is healed, not left half-made.
    pub fn cut(&self, cuts: &BTreeSet<(usize, usize)>) -> Result<(), PartitionError> {
        self.drop_on(cuts, None)
    }

    /// Like [`MemberNetwork::cut`], dropping only about `percent` of those packets, each
    /// at random: lossy links.
    pub fn lose(
        &self,
        links: &BTreeSet<(usize, usize)>,
        percent: u8,
    ) -> Result<(), PartitionError> {
        self.drop_on(links, Some(percent))
    }

    fn drop_on(
        &self,
        cuts: &BTreeSet<(usize, usize)>,
        loss: Option<u8>,
    ) -> Result<(), PartitionError> {
        let made = self
            .places
            .iter()
            .enumerate()
            .try_for_each(|(index, place)| {
                let from: Vec<Ipv4Addr> = cuts
                    .iter()
                    .filter(|(_, to)| *to == index)
                    .map(|(from, _)| self.places[*from].ip)
                    .collect();
                let script = ruleset(&from, loss);
                self.in_member(index, place, move || nft::apply(&script))
            });
        if made.is_err() {
            let _ = self.heal();
        }
        made
    }

    /// Holds every packet between member `victim` and the others, both ways, for `delay`,
    /// until the [`LinkDelay`] returned ends.
    pub fn delay(&self, victim: usize, delay: Duration) -> Result<LinkDelay, PartitionError> {
        let peers: Vec<Ipv4Addr> = (self.places.iter().enumerate())
            .filter(|(index, _)| *index != victim)
            .map(|(_, place)| place.ip)
            .collect();
        Ok(LinkDelay::start(&self.places[victim].netns, &peers, delay)?)
    }

    /// Removes the partition from every member (also when one of them fails: the first
    /// failure is returned after); returns how many packets it dropped.
    pub fn heal(&self) -> Result<u64, PartitionError> {
        let mut dropped = 0;
        let mut first_failure = None;
        for (index, place) in self.places.iter().enumerate() {
            match self.in_member(index, place, || nft::list(TABLE)) {
                Ok(listing) => dropped += dropped_packets(&listing),
                Err(error) => {
                    first_failure.get_or_insert(error);
                }
            }
            if let Err(error) = self.in_member(index, place, || nft::apply(&ruleset(&[], None))) {
                first_failure.get_or_insert(error);
            }
        }
        match first_failure {
            Some(error) => Err(error),
            None => Ok(dropped),
        }
    }

    fn in_member<T: Send + 'static>(
        &self,
        index: usize,
        place: &Place,
        work: impl FnOnce() -> Result<T, nft::NftError> + Send + 'static,
    ) -> Result<T, PartitionError> {
        in_namespace(&place.netns, move || Ok(work()))?.map_err(|source| PartitionError::Rules {
            member: member_name(self.slot, index),
            source,
        })
    }
}

impl Drop for MemberNetwork {
    /// Run after the members are killed (a namespace outlives nothing that uses it).
    fn drop(&mut self) {
        if let Err(error) = clear(&self.network, self.slot) {
            eprintln!("removing the chaos run's network: {error}");
        }
    }
}

fn member_name(slot: u8, index: usize) -> String {
    format!("chaos{slot}-m{}", index + 1)
}

/// The network of `slot`: its bridge, its range, where its namespaces are mounted.
fn slot_network(slot: u8) -> Result<NodeNetwork, PartitionError> {
    Ok(NodeNetwork {
        bridge: format!("rchaos{slot}"),
        pod_cidr: Cidr::parse(&format!("10.249.{slot}.0/24"))?,
        netns_dir: Path::new(RUN_DIR).join(slot.to_string()),
        unreachable: Vec::new(),
        service_ranges: Vec::new(),
        closed: true,
    })
}

/// Removes every namespace `slot` may hold, first killing what still runs in them (a dead
/// run's members), and its bridge. Idempotent.
fn clear(network: &NodeNetwork, slot: u8) -> Result<(), PartitionError> {
    for index in 0..MOST_MEMBERS {
        let netns = network.netns_path(&member_name(slot, index));
        kill_processes_in(&netns);
        network.remove_pod(&member_name(slot, index))?;
    }
    delete_links(std::slice::from_ref(&network.bridge))?;
    let _ = std::fs::remove_dir(&network.netns_dir);
    Ok(())
}

/// SIGKILL to every process whose network namespace is the one mounted at `netns`.
fn kill_processes_in(netns: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(namespace) = std::fs::metadata(netns).map(|m| m.ino()) else {
        return;
    };
    let processes = std::fs::read_dir("/proc").into_iter().flatten().flatten();
    for process in processes {
        let Some(pid) = process
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let inside =
            std::fs::metadata(process.path().join("ns/net")).is_ok_and(|m| m.ino() == namespace);
        if inside {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Clears the slots that a run which died without cleaning up left behind (their locks are
/// free, their bridge or namespaces are not), so nothing of a dead run outlives the next.
fn sweep_dead_runs() {
    for slot in 0..=255u8 {
        let left = Path::new(RUN_DIR).join(slot.to_string()).exists()
            || Path::new(&format!("/sys/class/net/rchaos{slot}")).exists();
        if !left {
            continue;
        }
        let Ok(Some(_lock)) = lock_slot(slot) else {
            continue;
        };
        if let Ok(network) = slot_network(slot) {
            if let Err(error) = clear(&network, slot) {
                eprintln!("clearing what a dead chaos run left in slot {slot}: {error}");
            }
        }
    }
}

/// The first free slot whose range the machine routes nowhere else, from one that depends
/// on this process (so parallel runs rarely try the same ones first).
fn take_slot() -> Result<(u8, nix::fcntl::Flock<File>), PartitionError> {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let routed = routed_ranges(&routes);
    let first = std::process::id() as usize;
    for offset in 0..256 {
        let slot = ((first + offset) % 256) as u8;
        let range = Cidr::parse(&format!("10.249.{slot}.0/24"))?;
        // Ours from a dead run is swept already; anything else routed there is not ours.
        if routed.iter().any(|r| r.covers(range) || range.covers(*r)) {
            continue;
        }
        if let Some(lock) = lock_slot(slot)? {
            return Ok((slot, lock));
        }
    }
    Err(PartitionError::NoSlot)
}

/// The slot's lock if no other run holds it.
fn lock_slot(slot: u8) -> Result<Option<nix::fcntl::Flock<File>>, PartitionError> {
    let path = Path::new(RUN_DIR).join(format!("slot-{slot}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| PartitionError::Io {
            action: format!("opening {}", path.display()),
            source,
        })?;
    Ok(nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).ok())
}

/// The ranges `/proc/net/route` routes (its text), the default route left out.
pub fn routed_ranges(routes: &str) -> Vec<Cidr> {
    routes
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask ...: little-endian hex.
            let destination = u32::from_str_radix(fields.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(fields.get(7)?, 16).ok()?;
            let prefix = mask.count_ones() as u8;
            (prefix > 0).then(|| Cidr {
                network: Ipv4Addr::from(u32::from_be(destination)),
                prefix,
            })
        })
        .collect()
}

/// A member's table, replacing the one there: dropping (and counting) everything from
/// `from`, or with `loss` that percentage of it at random; with none, no table at all.
pub fn ruleset(from: &[Ipv4Addr], loss: Option<u8>) -> String {
    // Declaring the table first makes deleting it safe when it is not there.
    let mut script = format!("table ip {TABLE}\ndelete table ip {TABLE}\n");
    if !from.is_empty() {
        let addresses: Vec<String> = from.iter().map(Ipv4Addr::to_string).collect();
        let sample = match loss {
            Some(percent) => format!("numgen random mod 100 < {percent} "),
            None => String::new(),
        };
        script.push_str(&format!(
            "table ip {TABLE} {{\n\tchain input {{\n\t\ttype filter hook input priority -10; \
             policy accept;\n\t\tip saddr {{ {} }} {sample}counter drop\n\t}}\n}}\n",
            addresses.join(", ")
        ));
    }
    script
}

/// The packets the counters in `listing` (`nft list table`'s text) counted.
pub fn dropped_packets(listing: &str) -> u64 {
    let words: Vec<&str> = listing.split_whitespace().collect();
    words
        .windows(3)
        .filter(|w| w[0] == "counter" && w[1] == "packets")
        .filter_map(|w| w[2].parse::<u64>().ok())
        .sum()
}

/// Each member's client and peer address: in its namespace, its own address and the usual
/// ports; on loopback, what `loopback` gives.
pub(crate) fn addresses<E>(
    network: Option<&MemberNetwork>,
    size: usize,
    mut loopback: impl FnMut() -> Result<(String, String), E>,
) -> Result<Vec<(String, String)>, E> {
    match network {
        Some(network) => Ok(network
            .places()
            .iter()
            .map(|place| (format!("{}:2379", place.ip), format!("{}:2380", place.ip)))
            .collect()),
        None => (0..size).map(|_| loopback()).collect(),
    }
}

/// Where members' loopback ports come from: below the kernel's ephemeral range (32768 up,
/// Linux's default), so that a member restarted on its ports does not find one taken by an
/// outgoing connection or another process's bind to port 0 meanwhile; and clear of the
/// ranges `rudder up`'s tests take (10000-12700 and 10000 and 20000 above).
const MEMBER_PORTS: std::ops::Range<u16> = 23_000..30_000;

/// A free loopback port for a member: one of [`MEMBER_PORTS`] that binds now, released
/// (the member binds it right after), tried from a place that depends on this process and
/// on earlier picks, so that parallel runs rarely try the same ones.
pub(crate) fn free_port() -> std::io::Result<String> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static PICKS: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(MEMBER_PORTS.end - MEMBER_PORTS.start);
    for _ in 0..span {
        let pick = PICKS.fetch_add(1, Ordering::Relaxed);
        let offset = (std::process::id().wrapping_mul(7919) + pick.wrapping_mul(131)) % span;
        let port = MEMBER_PORTS.start + offset as u16;
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return Ok(listener.local_addr()?.to_string());
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no free loopback port in {MEMBER_PORTS:?}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ruleset_drops_and_counts_what_comes_from_the_cut_members_only() {
        let script = ruleset(
            &[Ipv4Addr::new(10, 249, 3, 11), Ipv4Addr::new(10, 249, 3, 12)],
            None,
        );
        assert!(script.starts_with("table ip rudder-chaos\ndelete table ip rudder-chaos\n"));
        assert!(
            script.contains("ip saddr { 10.249.3.11, 10.249.3.12 } counter drop"),
            "{script}"
        );
        assert!(script.contains("hook input"), "{script}");
        assert_eq!(
            ruleset(&[], None),
            "table ip rudder-chaos\ndelete table ip rudder-chaos\n"
        );
        let lossy = ruleset(&[Ipv4Addr::new(10, 249, 3, 11)], Some(25));
        assert!(
            lossy.contains("ip saddr { 10.249.3.11 } numgen random mod 100 < 25 counter drop"),
            "{lossy}"
        );
    }

    #[test]
    fn routed_ranges_are_read_from_proc_net_route_without_the_default_route() {
        let routes =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                      eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                      eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                      rb1\t0000F90A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        let ranges: Vec<(Ipv4Addr, u8)> = routed_ranges(routes)
            .iter()
            .map(|r| (r.network, r.prefix))
            .collect();
        assert_eq!(
            ranges,
            [
                (Ipv4Addr::new(192, 0, 2, 0), 24),
                (Ipv4Addr::new(10, 249, 0, 0), 16)
            ]
        );
    }

    #[test]
    fn dropped_packets_add_up_over_the_counters_listed() {
        let listing = "table ip rudder-chaos {\n\tchain input {\n\t\ttype filter hook input \
                       priority -10; policy accept;\n\t\tip saddr { 10.249.3.11 } counter \
                       packets 17 bytes 1020 drop\n\t\tip saddr 10.249.3.12 counter packets 3 \
                       bytes 180 drop\n\t}\n}\n";
        assert_eq!(dropped_packets(listing), 20);
        assert_eq!(dropped_packets(""), 0);
    }
}
