//! The members' own network, for partition faults: each member in a network namespace of
//! its own with `eth0` on a bridge this run creates (`10.250.K.0/24`, the runner at `.1`),
//! and a partition as nftables rules in the members' namespaces that drop what a member
//! receives from the members it is cut from, counting what they drop.
//!
//! Why namespaces and not a proxy on the peer links: the rules act on real packets, so a
//! partition looks the same to Rudder and to etcd (whose peers dial each other in both
//! directions, over connections a proxy could not tell apart), and one-way cuts are exact.
//! Traffic never leaves the machine: the bridge has no other port, and its range is routed
//! only to it. Needs root; the namespaces and bridge are [`rudder_node`]'s pod network code.
//!
//! `K` is a slot that runs on one machine take turns with (an flock under `/run`, released
//! if the run dies); a run that takes a slot first clears what a dead one left in it.
//! [`ruleset`] and [`dropped_packets`] are pure.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use rudder_node::proxy::nft;
use rudder_node::runtime::linux::machine_network::delete_links;
use rudder_node::runtime::linux::network::{in_namespace, Cidr, NetworkError, NodeNetwork};

/// Where slots, their locks and the members' namespaces live.
const RUN_DIR: &str = "/run/rudder-chaos";
/// The nftables table a partition writes in a member's namespace.
const TABLE: &str = "rudder-chaos";
/// The most members a run has (`rudder chaos run --masters` allows 3 to 7).
const MOST_MEMBERS: usize = 7;

#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error(
        "partition faults put each member in a network namespace of its own, which needs \
         root: run `rudder chaos run` as root, or leave partition out of --faults"
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
    /// A bridge and `members` namespaces on it.
    pub fn create(members: usize) -> Result<Self, PartitionError> {
        if !nix::unistd::geteuid().is_root() {
            return Err(PartitionError::NotRoot);
        }
        std::fs::create_dir_all(RUN_DIR).map_err(|source| PartitionError::Io {
            action: format!("creating {RUN_DIR}"),
            source,
        })?;
        let (slot, lock) = take_slot()?;
        let network = NodeNetwork {
            bridge: format!("rchaos{slot}"),
            pod_cidr: Cidr::parse(&format!("10.250.{slot}.0/24"))?,
            netns_dir: Path::new(RUN_DIR).join(slot.to_string()),
            unreachable: Vec::new(),
            service_ranges: Vec::new(),
        };
        let mut made = Self {
            slot,
            network,
            places: Vec::new(),
            _lock: lock,
        };
        // What a run that died in this slot left behind.
        made.clear()?;
        made.network.ensure_bridge()?;
        // A pod bridge forwards (pods reach other nodes); this one must not: what a member
        // sends anywhere but the bridge's range dies here.
        let forwarding = format!("/proc/sys/net/ipv4/conf/{}/forwarding", made.network.bridge);
        std::fs::write(&forwarding, "0").map_err(|source| PartitionError::Io {
            action: format!("writing {forwarding}"),
            source,
        })?;
        for index in 0..members {
            let ip = Ipv4Addr::new(10, 250, slot, 10 + index as u8);
            let netns = made.network.add_pod(&made.member_name(index), ip)?;
            made.places.push(Place { ip, netns });
        }
        Ok(made)
    }

    pub fn places(&self) -> &[Place] {
        &self.places
    }

    /// E.g. `bridge rchaos7, 10.250.7.0/24`: what a run says it made (and removes).
    pub fn describe(&self) -> String {
        let cidr = self.network.pod_cidr;
        format!(
            "bridge {}, {}/{}",
            self.network.bridge, cidr.network, cidr.prefix
        )
    }

    /// Drops, in each member's namespace, what `cuts` says it no longer receives (`(from,
    /// to)`: `to` hears nothing from `from`). Replaces whatever partition was there.
    pub fn cut(&self, cuts: &BTreeSet<(usize, usize)>) -> Result<(), PartitionError> {
        for (index, place) in self.places.iter().enumerate() {
            let from: Vec<Ipv4Addr> = cuts
                .iter()
                .filter(|(_, to)| *to == index)
                .map(|(from, _)| self.places[*from].ip)
                .collect();
            let script = ruleset(&from);
            self.in_member(index, place, move || nft::apply(&script))?;
        }
        Ok(())
    }

    /// Removes the partition; returns how many packets it dropped, over every member.
    pub fn heal(&self) -> Result<u64, PartitionError> {
        let mut dropped = 0;
        for (index, place) in self.places.iter().enumerate() {
            let listing = self.in_member(index, place, || nft::list(TABLE))?;
            dropped += dropped_packets(&listing);
            self.in_member(index, place, || nft::apply(&ruleset(&[])))?;
        }
        Ok(dropped)
    }

    fn in_member<T: Send + 'static>(
        &self,
        index: usize,
        place: &Place,
        work: impl FnOnce() -> Result<T, nft::NftError> + Send + 'static,
    ) -> Result<T, PartitionError> {
        in_namespace(&place.netns, move || Ok(work()))?.map_err(|source| PartitionError::Rules {
            member: self.member_name(index),
            source,
        })
    }

    fn member_name(&self, index: usize) -> String {
        format!("chaos{}-m{}", self.slot, index + 1)
    }

    /// Removes every namespace this slot may hold, and its bridge. Idempotent.
    fn clear(&self) -> Result<(), PartitionError> {
        for index in 0..MOST_MEMBERS {
            self.network.remove_pod(&self.member_name(index))?;
        }
        delete_links(std::slice::from_ref(&self.network.bridge))?;
        Ok(())
    }
}

impl Drop for MemberNetwork {
    /// Run after the members are killed (a namespace outlives nothing that uses it).
    fn drop(&mut self) {
        if let Err(error) = self.clear() {
            eprintln!("removing the chaos run's network: {error}");
        }
        let _ = std::fs::remove_dir(&self.network.netns_dir);
    }
}

/// The first free slot, from one that depends on this process (so parallel runs rarely
/// try the same ones first).
fn take_slot() -> Result<(u8, nix::fcntl::Flock<File>), PartitionError> {
    let first = std::process::id() as usize;
    for offset in 0..256 {
        let slot = ((first + offset) % 256) as u8;
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
        if let Ok(lock) = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        {
            return Ok((slot, lock));
        }
    }
    Err(PartitionError::NoSlot)
}

/// A member's table, replacing the one there: dropping (and counting) everything from
/// `from`; with none, no table at all.
pub fn ruleset(from: &[Ipv4Addr]) -> String {
    // Declaring the table first makes deleting it safe when it is not there.
    let mut script = format!("table ip {TABLE}\ndelete table ip {TABLE}\n");
    if !from.is_empty() {
        let addresses: Vec<String> = from.iter().map(Ipv4Addr::to_string).collect();
        script.push_str(&format!(
            "table ip {TABLE} {{\n\tchain input {{\n\t\ttype filter hook input priority -10; \
             policy accept;\n\t\tip saddr {{ {} }} counter drop\n\t}}\n}}\n",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ruleset_drops_and_counts_what_comes_from_the_cut_members_only() {
        let script = ruleset(&[Ipv4Addr::new(10, 250, 3, 11), Ipv4Addr::new(10, 250, 3, 12)]);
        assert!(script.starts_with("table ip rudder-chaos\ndelete table ip rudder-chaos\n"));
        assert!(
            script.contains("ip saddr { 10.250.3.11, 10.250.3.12 } counter drop"),
            "{script}"
        );
        assert!(script.contains("hook input"), "{script}");
        assert_eq!(
            ruleset(&[]),
            "table ip rudder-chaos\ndelete table ip rudder-chaos\n"
        );
    }

    #[test]
    fn dropped_packets_add_up_over_the_counters_listed() {
        let listing = "table ip rudder-chaos {\n\tchain input {\n\t\ttype filter hook input \
                       priority -10; policy accept;\n\t\tip saddr { 10.250.3.11 } counter \
                       packets 17 bytes 1020 drop\n\t\tip saddr 10.250.3.12 counter packets 3 \
                       bytes 180 drop\n\t}\n}\n";
        assert_eq!(dropped_packets(listing), 20);
        assert_eq!(dropped_packets(""), 0);
    }
}
