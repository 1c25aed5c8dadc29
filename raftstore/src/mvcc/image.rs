//! A snapshot's image of the keyspace, taken under the lock in a moment ([`Frozen`]: each
//! version, with the values the keyspace holds shared, not copied) and serialized after it
//! as [`MvccImage`](super::MvccImage) is, reading each forgotten value back as it goes: a
//! snapshot of 10,000 pods no longer holds every value of their history at once.

use serde::ser::{Error as _, SerializeSeq, SerializeStruct};
use serde::{Serialize, Serializer};

use super::version::{History, Kept, Rev, Version};
use crate::kv::{Alarm, Lease, Revision};

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

    /// How many versions it holds.
    pub fn version_count(&self) -> usize {
        self.versions.len()
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
