//! The keyspace's image ([`MvccImage`]), and the keyspace taken under the lock in a moment
//! ([`Frozen`]: each version, with the values the keyspace holds shared, not copied) to be
//! read after it: serialized as its image is, each forgotten value read back as it goes (a
//! snapshot of 10,000 pods no longer holds every value of their history at once), or
//! hashed.

use serde::ser::{Error as _, SerializeSeq, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};

use super::version::{History, Kept, Rev, Version};
use crate::error::KvError;
use crate::kv::{Alarm, KeyspaceHash, Lease, Revision};

/// Everything the keyspace holds, for Raft snapshots and for `snapshot save`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MvccImage {
    pub revision: Revision,
    pub compact_revision: Revision,
    pub versions: Vec<(Rev, Version)>,
    pub leases: Vec<Lease>,
    pub alarms: Vec<Alarm>,
}

/// The keyspace at one revision, its forgotten values still in the history.
#[derive(Debug, Clone)]
pub struct Frozen {
    pub(super) revision: Revision,
    pub(super) compact_revision: Revision,
    pub(super) versions: Vec<(Rev, Kept)>,
    pub(super) leases: Vec<Lease>,
    pub(super) alarms: Vec<Alarm>,
}

impl Frozen {
    /// Serializes to the same bytes as the [`MvccImage`](super::MvccImage) of the same
    /// keyspace, reading forgotten values from `history` (which must show the keyspace as
    /// it was when frozen: a database snapshot taken under the same lock).
    pub fn streamed<'a>(&'a self, history: &'a dyn History) -> impl Serialize + 'a {
        Streamed {
            frozen: self,
            history,
        }
    }

    /// Everything it holds as an image, forgotten values read back from `history`.
    pub fn image(&self, history: &dyn History) -> Result<MvccImage, KvError> {
        let versions = self
            .versions
            .iter()
            .map(|(rev, kept)| {
                let kv = kept.read(*rev, history)?;
                Ok((
                    *rev,
                    Version {
                        kind: kept.kind,
                        kv,
                    },
                ))
            })
            .collect::<Result<_, KvError>>()?;
        Ok(MvccImage {
            revision: self.revision,
            compact_revision: self.compact_revision,
            versions,
            leases: self.leases.clone(),
            alarms: self.alarms.clone(),
        })
    }

    /// A CRC-32 over every retained version up to `at` (0 = its revision), like etcd's
    /// HashKV: equal on replicas that applied the same history and compacted at the same
    /// revision. `at` must be readable (`Mvcc::check_readable`, under the same lock).
    pub fn hash(&self, at: Revision, history: &dyn History) -> Result<KeyspaceHash, KvError> {
        let at = if at == 0 { self.revision } else { at };
        let mut hasher = crc32fast::Hasher::new();
        for (rev, kept) in self.versions.iter().take_while(|(rev, _)| rev.main <= at) {
            hasher.update(&rev.to_bytes());
            hasher.update(&[kept.is_put() as u8]);
            let kv = &kept.read(*rev, history)?;
            for field in [&kv.key[..], &kv.value[..]] {
                hasher.update(&(field.len() as u64).to_be_bytes());
                hasher.update(field);
            }
            for number in [kv.create_revision, kv.version, kv.lease] {
                hasher.update(&number.to_be_bytes());
            }
        }
        Ok(KeyspaceHash {
            hash: hasher.finalize(),
            revision: at,
            compact_revision: self.compact_revision,
        })
    }
}

struct Streamed<'a> {
    frozen: &'a Frozen,
    history: &'a dyn History,
}

/// The versions as a sequence of `(Rev, Version)`, as `MvccImage::versions` serializes.
struct Versions<'a>(&'a Streamed<'a>);

impl Serialize for Streamed<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Field for field as `MvccImage` declares them.
        let frozen = self.frozen;
        let mut image = serializer.serialize_struct("MvccImage", 5)?;
        image.serialize_field("revision", &frozen.revision)?;
        image.serialize_field("compact_revision", &frozen.compact_revision)?;
        image.serialize_field("versions", &Versions(self))?;
        image.serialize_field("leases", &frozen.leases)?;
        image.serialize_field("alarms", &frozen.alarms)?;
        image.end()
    }
}

impl Serialize for Versions<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Streamed { frozen, history } = self.0;
        let mut versions = serializer.serialize_seq(Some(frozen.versions.len()))?;
        for (rev, kept) in &frozen.versions {
            let kv = kept.read(*rev, *history).map_err(S::Error::custom)?;
            let kind = kept.kind;
            versions.serialize_element(&(*rev, Version { kind, kv }))?;
        }
        versions.end()
    }
}
