//! The request table ([`crate::sessions`]) in RocksDB's `sessions` column family, written in
//! the same batch as the entries whose application changed it.
//!
//! | key | value |
//! |---|---|
//! | `c` | the log clock (ms) |
//! | `s` + client (8 bytes BE) | the client's [`SessionMeta`] |
//! | `o` + client + highest seq + batch (8 bytes BE each) | the outcomes one apply batch recorded for the client |
//!
//! Outcomes go in one record per client per apply batch, not one key each: the apply path is
//! the store's one serial path, and a key per write doubled its RocksDB inserts. A record is
//! deleted once every request in it is below the client's floor (a range delete over the
//! "highest seq" part of the key); a record may outlive some of its outcomes, so loading
//! keeps only those at or above the floor — exactly what the table in memory kept.
//!
//! Those range deletes are pruned [`PRUNE_EVERY`] requests at a time, not at every rise of
//! a floor: each is a range tombstone RocksDB fragments at every flush and when it replays
//! its log at a restart, and one per client per apply batch (tens of thousands in a busy
//! minute) made a restarted member take minutes to open. Records below a floor are
//! harmless until then, since loading skips them.

use std::collections::BTreeMap;

use rocksdb::WriteBatch;
use serde::Serialize;

use crate::codec;
use crate::db::{Db, DbError, CF_SESSIONS};
use crate::sessions::{Remembered, Session, SessionMeta, SessionWrite, Sessions};

const CLOCK: &[u8] = b"c";

fn session_key(client: u64) -> Vec<u8> {
    [&b"s"[..], &client.to_be_bytes()].concat()
}

fn record_key(client: u64, highest_seq: u64, batch: u64) -> Vec<u8> {
    [
        &b"o"[..],
        &client.to_be_bytes(),
        &highest_seq.to_be_bytes(),
        &batch.to_be_bytes(),
    ]
    .concat()
}

/// Every record key of `client` whose highest seq is below `floor`: `[start, end)`.
fn records_below(client: u64, floor: u64) -> (Vec<u8>, Vec<u8>) {
    (record_key(client, 0, 0), record_key(client, floor, 0))
}

/// Every record key of `client`: `[start, end)`.
fn records_of(client: u64) -> (Vec<u8>, Vec<u8>) {
    let start = [&b"o"[..], &client.to_be_bytes()].concat();
    let end = match client.checked_add(1) {
        Some(next) => [&b"o"[..], &next.to_be_bytes()].concat(),
        None => b"p".to_vec(),
    };
    (start, end)
}

/// A client's records are pruned once its floor has passed another multiple of this.
pub const PRUNE_EVERY: u64 = 1024;

/// Where each client's records were last pruned, by this process (after a restart, the
/// first rise of each floor prunes again: one tombstone per client).
#[derive(Debug, Clone, Default)]
pub struct Pruned(std::collections::HashMap<u64, u64>);

impl Pruned {
    /// The prune boundary for `client` at `floor`, if it has moved since the last prune.
    fn due(&mut self, client: u64, floor: u64) -> Option<u64> {
        let boundary = floor / PRUNE_EVERY * PRUNE_EVERY;
        let last = self.0.entry(client).or_insert(0);
        (boundary > *last).then(|| {
            *last = boundary;
            boundary
        })
    }

    fn forget(&mut self, client: u64) {
        self.0.remove(&client);
    }
}

/// One record: `(seq, part, outcome)` of each request a batch recorded for one client.
type Record = Vec<(u64, u32, Remembered)>;

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, DbError> {
    codec::encode(value).map_err(|source| DbError::Encode {
        what: "sessions",
        source,
    })
}

/// Adds to `batch` what `writes` changed in `table` (which already holds the result);
/// `batch_id` is unique to this apply batch (its last log index).
pub fn persist(
    db: &Db,
    batch: &mut WriteBatch,
    writes: &[SessionWrite],
    table: &Sessions,
    batch_id: u64,
    pruned: &mut Pruned,
) -> Result<(), DbError> {
    let cf = db.cf(CF_SESSIONS);
    // Deletes first, in order; then, per client, the last floor, the new outcomes still in
    // the table, the last meta; then the clock. A session forgotten and seen again within
    // one batch is stored as it ends up.
    let mut clock = None;
    let mut metas = BTreeMap::new();
    let mut below: BTreeMap<u64, u64> = BTreeMap::new();
    let mut recorded: BTreeMap<u64, Vec<(u64, u32)>> = BTreeMap::new();
    for write in writes {
        match write {
            SessionWrite::Clock(ms) => clock = Some(*ms),
            SessionWrite::Meta(client, meta) => {
                metas.insert(*client, meta);
            }
            SessionWrite::Outcome(id) => recorded
                .entry(id.client)
                .or_default()
                .push((id.seq, id.part)),
            SessionWrite::ForgetBelow(client, seq) => {
                let floor = below.entry(*client).or_insert(*seq);
                *floor = (*floor).max(*seq);
            }
            SessionWrite::ForgetOutcomes(client) => {
                let (start, end) = records_of(*client);
                batch.delete_range_cf(cf, start, end);
            }
            SessionWrite::ForgetSession(client) => {
                pruned.forget(*client);
                metas.remove(client);
                batch.delete_cf(cf, session_key(*client));
                let (start, end) = records_of(*client);
                batch.delete_range_cf(cf, start, end);
            }
        }
    }
    // No outcome below a floor is recorded after the floor rose, and a record's key carries
    // its highest seq: these deletes never reach a record written below.
    for (client, floor) in below {
        if let Some(boundary) = pruned.due(client, floor) {
            let (start, end) = records_below(client, boundary);
            batch.delete_range_cf(cf, start, end);
        }
    }
    for (client, ids) in recorded {
        let Some(session) = table.sessions().get(&client) else {
            continue; // forgotten later in the batch
        };
        let record: Record = ids
            .into_iter()
            .filter_map(|(seq, part)| {
                let kept = session.outcomes.get(&(seq, part))?;
                Some((seq, part, kept.clone()))
            })
            .collect();
        if let Some(highest) = record.iter().map(|(seq, _, _)| *seq).max() {
            batch.put_cf(cf, record_key(client, highest, batch_id), encode(&record)?);
        }
    }
    for (client, meta) in metas {
        batch.put_cf(cf, session_key(client), encode(meta)?);
    }
    if let Some(ms) = clock {
        batch.put_cf(cf, CLOCK, encode(&ms)?);
    }
    Ok(())
}

/// Replaces the whole persisted table with `table` (a snapshot install).
pub fn replace(
    db: &Db,
    batch: &mut WriteBatch,
    table: &Sessions,
    batch_id: u64,
) -> Result<(), DbError> {
    let cf = db.cf(CF_SESSIONS);
    batch.delete_range_cf(cf, [0u8], [0xffu8]);
    batch.put_cf(cf, CLOCK, encode(&table.clock_ms())?);
    for (client, session) in table.sessions() {
        batch.put_cf(cf, session_key(*client), encode(&session.meta)?);
        let record: Record = session
            .outcomes
            .iter()
            .map(|((seq, part), kept)| (*seq, *part, kept.clone()))
            .collect();
        if let Some(highest) = record.iter().map(|(seq, _, _)| *seq).max() {
            batch.put_cf(cf, record_key(*client, highest, batch_id), encode(&record)?);
        }
    }
    Ok(())
}

/// Reads the table back.
pub fn load(db: &Db) -> Result<Sessions, DbError> {
    let read = |source| DbError::Read {
        what: "sessions",
        source,
    };
    let decode = |source| DbError::Decode {
        what: "sessions",
        source,
    };
    let mut clock_ms = 0;
    let mut sessions: BTreeMap<u64, Session> = BTreeMap::new();
    for item in db.scan_whole(CF_SESSIONS) {
        let (key, value) = item.map_err(read)?;
        let client = || {
            key.get(1..9)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
        };
        match (key.first(), key.len()) {
            (Some(b'c'), 1) => clock_ms = codec::decode(&value).map_err(decode)?,
            (Some(b's'), 9) => {
                let meta: SessionMeta = codec::decode(&value).map_err(decode)?;
                sessions
                    .entry(client().unwrap_or_default())
                    .or_default()
                    .meta = meta;
            }
            (Some(b'o'), 25) => {
                let record: Record = codec::decode(&value).map_err(decode)?;
                let session = sessions.entry(client().unwrap_or_default()).or_default();
                for (seq, part, kept) in record {
                    session.outcomes.insert((seq, part), kept);
                }
            }
            _ => {}
        }
    }
    for session in sessions.values_mut() {
        let floor = session.meta.floor;
        session.outcomes.retain(|(seq, _), _| *seq >= floor);
    }
    Ok(Sessions::restore(clock_ms, sessions))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_sort_by_client_then_highest_seq() {
        let (start, end) = records_below(7, 10);
        assert!(start <= record_key(7, 9, u64::MAX) && record_key(7, 9, u64::MAX) < end);
        assert!(
            record_key(7, 10, 0) >= end,
            "a record reaching the floor stays"
        );
        let (all_start, all_end) = records_of(7);
        assert!(all_start <= record_key(7, u64::MAX, u64::MAX));
        assert!(record_key(7, u64::MAX, u64::MAX) < all_end);
        assert!(record_key(8, 0, 0) >= all_end);
        assert_eq!(records_of(u64::MAX).1, b"p");
    }
}

#[cfg(test)]
mod pruning_tests {
    use super::*;

    #[test]
    fn records_are_pruned_once_per_thousand_requests_per_client() {
        let mut pruned = Pruned::default();
        assert_eq!(pruned.due(7, 5), None, "nothing below the first boundary");
        assert_eq!(pruned.due(7, 1_030), Some(1_024));
        assert_eq!(pruned.due(7, 1_500), None, "the same boundary once");
        assert_eq!(pruned.due(7, 5_000), Some(4_096));
        assert_eq!(pruned.due(8, 2_048), Some(2_048), "each client on its own");
        pruned.forget(7);
        assert_eq!(
            pruned.due(7, 5_000),
            Some(4_096),
            "a forgotten client starts again"
        );
    }
}
