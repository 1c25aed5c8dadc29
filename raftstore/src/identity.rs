//! Which cluster a member belongs to, and the check every peer message passes before Raft
//! or the store sees it.
//!
//! Every peer message carries an [`Envelope`]: the sender's cluster id, the sender's member
//! id, and the member it is meant for. A member refuses a message from another cluster, or
//! one meant for another member, before openraft sees it ([`admit`]): an address that once
//! was a member's and is now another cluster's (or another member's) must never receive log
//! entries or votes that are not its own. openraft trusts whatever reaches it: a follower
//! that accepts a stranger's AppendEntries silently takes the stranger's log. (etcd refuses
//! such messages the same way, by its `X-Etcd-Cluster-ID` header.)
//!
//! Identity comes from the initial cluster ([`InitialCluster`]): a seed hashes
//! `--initial-cluster-token` and every `name=peer-address` entry; a member's id hashes the
//! seed and its name; the cluster id is derived from the member ids exactly as the state
//! machine derives it when it applies the first membership entry ([`cluster_id_of`]), so
//! etcd's response headers show the same id. A joining member learns the cluster id from
//! the member that admits it. Both ids are kept in the data directory.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::types::NodeId;

/// FNV-1a, 64 bits: stable across releases and machines, which is all these ids need.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) -> &mut Self {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        self
    }

    /// A length-prefixed field, so that ("ab", "c") and ("a", "bc") differ.
    fn field(&mut self, bytes: &[u8]) -> &mut Self {
        self.write(&(bytes.len() as u64).to_be_bytes()).write(bytes)
    }
}

/// The cluster id every member derives alike from the first membership entry: its log
/// index and its members' ids in order. (The formula of every existing data directory:
/// never change it.)
pub fn cluster_id_of(
    first_membership_index: u64,
    members: impl IntoIterator<Item = NodeId>,
) -> u64 {
    let mut hash = Fnv::new();
    hash.write(&first_membership_index.to_be_bytes());
    for id in members {
        hash.write(&id.to_be_bytes());
    }
    hash.0
}

/// The members of a new cluster, as every one of them computes them without talking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialCluster {
    /// Member id → (name, peer address).
    pub members: BTreeMap<NodeId, (String, String)>,
    pub cluster_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitialClusterError {
    #[error("--initial-cluster names {name:?} twice: every member needs its own name")]
    DuplicateName { name: String },
    #[error("--initial-cluster gives {addr} to both {first:?} and {second:?}: every member needs its own peer address")]
    DuplicateAddress {
        addr: String,
        first: String,
        second: String,
    },
}

impl InitialCluster {
    /// The cluster `entries` (`name`, `peer address`) form under `token` (may be empty:
    /// the addresses then tell clusters apart, as long as no two share every address).
    pub fn new(token: &str, entries: &[(String, String)]) -> Result<Self, InitialClusterError> {
        let mut by_name: BTreeMap<&str, &str> = BTreeMap::new();
        let mut by_addr: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, addr) in entries {
            if by_name.insert(name, addr).is_some() {
                return Err(InitialClusterError::DuplicateName { name: name.clone() });
            }
            if let Some(first) = by_addr.insert(addr, name) {
                return Err(InitialClusterError::DuplicateAddress {
                    addr: addr.clone(),
                    first: first.to_owned(),
                    second: name.clone(),
                });
            }
        }
        let mut seed = Fnv::new();
        seed.field(b"rudder initial cluster")
            .field(token.as_bytes());
        for (name, addr) in &by_name {
            seed.field(name.as_bytes()).field(addr.as_bytes());
        }
        let seed = seed.0;
        let members: BTreeMap<NodeId, (String, String)> = by_name
            .iter()
            .map(|(name, addr)| {
                (
                    member_id(seed, name),
                    ((*name).to_owned(), (*addr).to_owned()),
                )
            })
            .collect();
        // openraft writes the initial membership at log index 0.
        let cluster_id = cluster_id_of(0, members.keys().copied());
        Ok(Self {
            members,
            cluster_id,
        })
    }

    /// The id of the member called `name`, if it is one.
    pub fn id_of(&self, name: &str) -> Option<NodeId> {
        self.members
            .iter()
            .find(|(_, (listed, _))| listed == name)
            .map(|(id, _)| *id)
    }
}

/// A member id: never 0 (openraft and etcd use 0 for "none"), below 2^63 (etcdctl prints
/// ids as signed in places).
fn member_id(seed: u64, name: &str) -> NodeId {
    let mut hash = Fnv::new();
    hash.write(&seed.to_be_bytes()).field(name.as_bytes());
    (hash.0 >> 1).max(1)
}

/// Who sent a peer message, from which cluster, and for whom. 0 means "not known": the
/// cluster of a member still joining, the member at an address a joining member was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Envelope {
    pub cluster_id: u64,
    pub from: NodeId,
    pub to: NodeId,
}

/// What a peer message asks of its receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// openraft's own: AppendEntries, Vote, InstallSnapshot.
    Raft,
    /// A client request forwarded to the leader, or a membership call.
    Forward,
    /// A new member asking who is there: it knows neither the cluster nor whom it asks.
    Hello,
    /// A new member asking to be added: it knows the cluster (from `Hello`), not whom it asks.
    Join,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this member has not joined a cluster yet")]
    NoCluster,
    #[error(
        "a message from member {from:x} of cluster {theirs:x} reached member {me:x} of cluster \
         {mine:x}: the sender lists a peer address that now belongs to another cluster (check \
         --initial-cluster, --initial-cluster-token and the members' peer addresses)"
    )]
    ForeignCluster {
        from: NodeId,
        theirs: u64,
        me: NodeId,
        mine: u64,
    },
    #[error(
        "a message from member {from:x} names no cluster; only a member asking to join may \
         (is the sender an older release?)"
    )]
    Unnamed { from: NodeId },
    #[error(
        "a message for member {to:x} reached member {me:x}: the sender lists an address that \
         now belongs to another member"
    )]
    WrongMember { to: NodeId, me: NodeId },
    #[error(
        "the member there is {from:x} of cluster {theirs:x}, not a member of this cluster \
         {mine:x}: update or remove the member listed at that address (`rudder member`), or, \
         for a member joining, give it a fresh --data-dir"
    )]
    AnsweredForAnotherCluster {
        from: NodeId,
        theirs: u64,
        mine: u64,
    },
}

/// Whether member `me` of cluster `mine` may act on a message in `envelope`.
pub fn admit(
    mine: Option<u64>,
    me: NodeId,
    envelope: Envelope,
    purpose: Purpose,
) -> Result<(), Refusal> {
    let mine = mine.ok_or(Refusal::NoCluster)?;
    let hello = purpose == Purpose::Hello;
    let joining = hello || purpose == Purpose::Join;
    if envelope.cluster_id == 0 && !hello {
        return Err(Refusal::Unnamed {
            from: envelope.from,
        });
    }
    if envelope.cluster_id != 0 && envelope.cluster_id != mine {
        return Err(Refusal::ForeignCluster {
            from: envelope.from,
            theirs: envelope.cluster_id,
            me,
            mine,
        });
    }
    if envelope.to != me && !(joining && envelope.to == 0) {
        return Err(Refusal::WrongMember {
            to: envelope.to,
            me,
        });
    }
    Ok(())
}

/// Whether a reply in `envelope` comes from this member's cluster (any, while joining).
pub fn admit_reply(mine: Option<u64>, envelope: Envelope) -> Result<(), Refusal> {
    match mine {
        Some(mine) if envelope.cluster_id != mine => Err(Refusal::AnsweredForAnotherCluster {
            from: envelope.from,
            theirs: envelope.cluster_id,
            mine,
        }),
        _ => Ok(()),
    }
}

/// This member's identity, shared by the side that sends peer messages and the side that
/// serves them; counts the messages it refused.
#[derive(Debug)]
pub struct Identity {
    member: NodeId,
    cluster: OnceLock<u64>,
    refused: AtomicU64,
}

impl Identity {
    /// `cluster` is `None` only for a member that has yet to join.
    pub fn new(member: NodeId, cluster: Option<u64>) -> Self {
        let cell = OnceLock::new();
        if let Some(cluster) = cluster {
            let _ = cell.set(cluster);
        }
        Self {
            member,
            cluster: cell,
            refused: AtomicU64::new(0),
        }
    }

    pub fn member(&self) -> NodeId {
        self.member
    }

    pub fn cluster(&self) -> Option<u64> {
        self.cluster.get().copied()
    }

    /// Takes the cluster id a joining member was admitted to. Only the first call counts.
    pub fn learn(&self, cluster: u64) {
        let _ = self.cluster.set(cluster);
    }

    /// The envelope of a message from this member to member `to` (0: whoever is there).
    pub fn envelope_to(&self, to: NodeId) -> Envelope {
        Envelope {
            cluster_id: self.cluster().unwrap_or(0),
            from: self.member,
            to,
        }
    }

    /// [`admit`] for this member, counting refusals.
    pub fn admit(&self, envelope: Envelope, purpose: Purpose) -> Result<(), Refusal> {
        let verdict = admit(self.cluster(), self.member, envelope, purpose);
        if verdict.is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        verdict
    }

    /// [`admit_reply`] for this member.
    pub fn admit_reply(&self, envelope: Envelope) -> Result<(), Refusal> {
        admit_reply(self.cluster(), envelope)
    }

    /// How many peer messages this member has refused since it started.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(name, addr)| ((*name).to_owned(), (*addr).to_owned()))
            .collect()
    }

    const THREE: &[(&str, &str)] = &[
        ("m1", "127.0.0.1:2380"),
        ("m2", "127.0.0.1:2381"),
        ("m3", "127.0.0.1:2382"),
    ];

    #[test]
    fn every_member_computes_the_same_cluster_in_any_order() {
        let forward = InitialCluster::new("", &entries(THREE)).unwrap();
        let mut reversed = entries(THREE);
        reversed.reverse();
        assert_eq!(InitialCluster::new("", &reversed).unwrap(), forward);
        assert_eq!(forward.members.len(), 3);
        let m2 = forward.id_of("m2").unwrap();
        assert_eq!(forward.members[&m2].1, "127.0.0.1:2381");
        assert_eq!(forward.id_of("m4"), None);
    }

    #[test]
    fn the_cluster_id_is_what_the_state_machine_derives_from_the_first_membership() {
        let cluster = InitialCluster::new("", &entries(THREE)).unwrap();
        assert_eq!(
            cluster.cluster_id,
            cluster_id_of(0, cluster.members.keys().copied())
        );
    }

    #[test]
    fn clusters_with_the_same_names_differ_by_addresses_and_by_token() {
        let base = InitialCluster::new("", &entries(THREE)).unwrap();
        let moved = InitialCluster::new(
            "",
            &entries(&[
                ("m1", "127.0.0.1:2380"),
                ("m2", "127.0.0.1:2381"),
                ("m3", "127.0.0.1:9999"),
            ]),
        )
        .unwrap();
        let tokened = InitialCluster::new("blue", &entries(THREE)).unwrap();
        for other in [&moved, &tokened] {
            assert_ne!(other.cluster_id, base.cluster_id);
            // No member id is shared either: a stranger's vote names nobody here.
            assert!(other
                .members
                .keys()
                .all(|id| !base.members.contains_key(id)));
        }
    }

    #[test]
    fn member_ids_are_never_zero_and_fit_a_signed_integer() {
        for name in ["", "m1", "a-very-long-member-name-indeed"] {
            let id = member_id(u64::MAX, name);
            assert!(id >= 1 && id <= i64::MAX as u64, "{name}: {id}");
        }
    }

    #[test]
    fn a_name_or_address_listed_twice_is_refused_by_name() {
        let error = InitialCluster::new("", &entries(&[("m1", "a:1"), ("m1", "a:2")]));
        assert_eq!(
            error.unwrap_err(),
            InitialClusterError::DuplicateName { name: "m1".into() }
        );
        let error = InitialCluster::new("", &entries(&[("m1", "a:1"), ("m2", "a:1")]));
        assert!(error.unwrap_err().to_string().contains("gives a:1 to both"));
    }

    fn envelope(cluster_id: u64, to: NodeId) -> Envelope {
        Envelope {
            cluster_id,
            from: 7,
            to,
        }
    }

    #[test]
    fn a_message_from_this_cluster_for_this_member_is_admitted() {
        for purpose in [
            Purpose::Raft,
            Purpose::Forward,
            Purpose::Hello,
            Purpose::Join,
        ] {
            assert_eq!(admit(Some(10), 3, envelope(10, 3), purpose), Ok(()));
        }
    }

    #[test]
    fn a_message_from_another_cluster_is_refused_whatever_it_asks() {
        for purpose in [
            Purpose::Raft,
            Purpose::Forward,
            Purpose::Hello,
            Purpose::Join,
        ] {
            let refusal = admit(Some(10), 3, envelope(11, 3), purpose).unwrap_err();
            assert_eq!(
                refusal,
                Refusal::ForeignCluster {
                    from: 7,
                    theirs: 11,
                    me: 3,
                    mine: 10
                }
            );
        }
    }

    #[test]
    fn a_message_for_another_member_is_refused() {
        for purpose in [Purpose::Raft, Purpose::Forward] {
            assert_eq!(
                admit(Some(10), 3, envelope(10, 4), purpose),
                Err(Refusal::WrongMember { to: 4, me: 3 })
            );
            assert_eq!(
                admit(Some(10), 3, envelope(10, 0), purpose),
                Err(Refusal::WrongMember { to: 0, me: 3 })
            );
        }
        // A joining member may ask whoever is at the address it was given: who is there,
        // then, knowing the cluster, to be added.
        assert_eq!(admit(Some(10), 3, envelope(0, 0), Purpose::Hello), Ok(()));
        assert_eq!(admit(Some(10), 3, envelope(10, 0), Purpose::Join), Ok(()));
        assert_eq!(
            admit(Some(10), 3, envelope(0, 4), Purpose::Hello),
            Err(Refusal::WrongMember { to: 4, me: 3 })
        );
    }

    #[test]
    fn only_a_member_saying_hello_may_name_no_cluster() {
        // A Join without the cluster would add a member that refuses the leader's entries.
        for purpose in [Purpose::Raft, Purpose::Forward, Purpose::Join] {
            assert_eq!(
                admit(Some(10), 3, envelope(0, 3), purpose),
                Err(Refusal::Unnamed { from: 7 })
            );
        }
    }

    #[test]
    fn a_member_that_has_not_joined_admits_nothing() {
        for purpose in [
            Purpose::Raft,
            Purpose::Forward,
            Purpose::Hello,
            Purpose::Join,
        ] {
            assert_eq!(
                admit(None, 3, envelope(10, 3), purpose),
                Err(Refusal::NoCluster)
            );
        }
    }

    #[test]
    fn replies_must_come_from_this_cluster_once_it_is_known() {
        assert_eq!(admit_reply(Some(10), envelope(10, 3)), Ok(()));
        assert!(admit_reply(Some(10), envelope(11, 3)).is_err());
        // A joining member takes the cluster of whoever admits it.
        assert_eq!(admit_reply(None, envelope(11, 3)), Ok(()));
    }

    #[test]
    fn the_shared_identity_learns_once_and_counts_refusals() {
        let identity = Identity::new(3, None);
        assert_eq!(identity.envelope_to(0), envelope_from(0, 3, 0));
        assert!(identity.admit(envelope(10, 3), Purpose::Raft).is_err());
        identity.learn(10);
        identity.learn(11);
        assert_eq!(identity.cluster(), Some(10));
        assert_eq!(identity.admit(envelope(10, 3), Purpose::Raft), Ok(()));
        assert!(identity.admit(envelope(11, 3), Purpose::Raft).is_err());
        assert_eq!(identity.refused(), 2);
    }

    fn envelope_from(cluster_id: u64, from: NodeId, to: NodeId) -> Envelope {
        Envelope {
            cluster_id,
            from,
            to,
        }
    }
}
