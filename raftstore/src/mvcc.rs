//! The MVCC keyspace: etcd's data model as a pure, deterministic state machine.
//!
//! Every replica applies the same committed [`Command`]s in the same order and so reaches the
//! same state. Applying returns the response plus the [`Effects`] the shell must persist
//! (in one RocksDB batch with the applied log id) and publish to watchers. No I/O of its
//! own, no clock: what it reads of the past comes through the [`History`] the shell gives it,
//! and the shell stops the member when that fails inside a write (a replica must not answer
//! differently from the others).
//!
//! Layout: every version of every key is kept under its [`Rev`] (`main` = the revision of the
//! write transaction, `sub` = its position inside it), like etcd's backend; `index` maps each key
//! to its versions in revision order. A delete writes a tombstone version.
//!
//! Values: each key's newest version keeps its value in memory. An overwritten version's value
//! is forgotten once the shell says every version written so far is persisted
//! ([`Mvcc::forget_overwritten_values`]), and is read back from the [`History`] when a read
//! reaches into the past — as etcd keeps only its index in memory and reads values from its
//! backend. Writes only ever read newest versions, so applying needs no history, except a
//! transaction's range at a past revision, which is read before anything is written.
//!
//! Longer than our 700-line mark on purpose: it is one idea (apply a command to the keyspace),
//! and its reads, writes, compares and compaction share the same index invariants, which are
//! easiest to check when they sit together with their tests.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;

use bytes::Bytes;

use crate::alarms::Alarms;
use crate::error::{show_key, KvError};
use crate::kv::*;

mod image;
mod version;

pub use image::{Frozen, MvccImage};
use version::Kept;
pub use version::{History, NoHistory, Rev, Version};

/// What applying one command changed; the shell persists and publishes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// The changes of this command, in order; they all carry `revision` as `mod_revision`.
    pub events: Vec<Event>,
    /// Versions removed by compaction.
    pub removed: Vec<Rev>,
    pub leases_granted: Vec<Lease>,
    pub leases_revoked: Vec<LeaseId>,
    /// Set when the command compacted the history.
    pub compacted_to: Option<Revision>,
    /// Set when an alarm was raised or disarmed: every alarm standing now.
    pub alarms: Option<Vec<Alarm>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct LeaseState {
    ttl: i64,
    keys: BTreeSet<Vec<u8>>,
}

/// The longest lease etcd accepts (`MaxLeaseTTL`), in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

#[derive(Debug, Clone, Default)]
pub struct Mvcc {
    revision: Revision,
    compact_revision: Revision,
    versions: BTreeMap<Rev, Kept>,
    index: BTreeMap<Vec<u8>, Vec<Rev>>,
    /// Versions overwritten since the values were last forgotten (their value is held until
    /// the shell says they are persisted).
    overwritten: Vec<Rev>,
    leases: BTreeMap<LeaseId, LeaseState>,
    /// Not etcd's MVCC, but replicated beside it as its leases are ([`crate::alarms`]).
    alarms: Alarms,
}

impl Mvcc {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the keyspace from what was persisted (or shipped in a snapshot). Every value
    /// is held until [`Self::forget_overwritten_values`].
    pub fn restore(image: MvccImage) -> Self {
        let mut mvcc = Self {
            revision: image.revision,
            compact_revision: image.compact_revision,
            alarms: Alarms::new(image.alarms),
            ..Self::default()
        };
        for lease in image.leases {
            mvcc.leases.insert(
                lease.id,
                LeaseState {
                    ttl: lease.ttl,
                    keys: BTreeSet::new(),
                },
            );
        }
        for (rev, version) in image.versions {
            mvcc.index
                .entry(version.kv.key.clone())
                .or_default()
                .push(rev);
            mvcc.versions.insert(rev, Kept::new(version));
        }
        for revs in mvcc.index.values_mut() {
            revs.sort_unstable();
            mvcc.overwritten
                .extend(revs.iter().take(revs.len().saturating_sub(1)));
        }
        let live: Vec<(Vec<u8>, LeaseId)> = mvcc
            .index
            .keys()
            .filter_map(|key| mvcc.live(key))
            .filter(|kv| kv.lease != 0)
            .map(|kv| (kv.key.clone(), kv.lease))
            .collect();
        for (key, lease) in live {
            if let Some(state) = mvcc.leases.get_mut(&lease) {
                state.keys.insert(key);
            }
        }
        mvcc
    }

    /// The keyspace as it is now, to read after the lock is released: an image
    /// ([`Frozen::streamed`], [`Frozen::image`]) or its hash. The values it holds are
    /// shared; the forgotten ones are read back then, from a database snapshot taken under
    /// the same lock.
    pub fn freeze(&self) -> Frozen {
        Frozen {
            revision: self.revision,
            compact_revision: self.compact_revision,
            versions: self
                .versions
                .iter()
                .map(|(rev, kept)| (*rev, kept.clone()))
                .collect(),
            leases: self.leases().collect(),
            alarms: self.alarms.list(),
        }
    }

    /// Drops the values of the versions overwritten so far: call once every version written
    /// so far is persisted where the [`History`] reads. A key's newest version keeps its
    /// value; a tombstone has none.
    pub fn forget_overwritten_values(&mut self) {
        for rev in self.overwritten.drain(..) {
            if let Some(kept) = self.versions.get_mut(&rev).filter(|kept| kept.is_put()) {
                kept.kv.value = Bytes::new();
                kept.forgotten = true;
            }
        }
    }

    /// How many versions keep their value only in the history.
    pub fn forgotten_values(&self) -> usize {
        self.versions.values().filter(|kept| kept.forgotten).count()
    }

    /// The alarms standing.
    pub fn alarms(&self) -> Vec<Alarm> {
        self.alarms.list()
    }

    pub fn revision(&self) -> Revision {
        self.revision
    }

    pub fn compact_revision(&self) -> Revision {
        self.compact_revision
    }

    pub fn leases(&self) -> impl Iterator<Item = Lease> + '_ {
        self.leases.iter().map(|(id, state)| Lease {
            id: *id,
            ttl: state.ttl,
        })
    }

    pub fn lease(&self, id: LeaseId) -> Option<Lease> {
        self.leases
            .get(&id)
            .map(|state| Lease { id, ttl: state.ttl })
    }

    pub fn lease_keys(&self, id: LeaseId) -> Vec<Vec<u8>> {
        self.leases
            .get(&id)
            .map(|s| s.keys.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of keys in the index: live ones, and deleted ones until compaction.
    pub fn indexed_keys(&self) -> usize {
        self.index.len()
    }

    /// Number of stored versions (live, overwritten and tombstones).
    pub fn version_count(&self) -> usize {
        self.versions.len()
    }

    /// The newest version of `key` at or before `at`, if it is live (not deleted).
    fn latest(&self, key: &[u8], at: Revision) -> Option<(Rev, &Kept)> {
        let revs = self.index.get(key)?;
        let position = revs.partition_point(|rev| rev.main <= at);
        let rev = *revs.get(position.checked_sub(1)?)?;
        let kept = self.versions.get(&rev)?;
        kept.is_put().then_some((rev, kept))
    }

    /// The key's newest version, if it is live: what writes and compares read.
    fn live(&self, key: &[u8]) -> Option<&KeyValue> {
        let rev = self.index.get(key)?.last()?;
        let kept = self.versions.get(rev)?;
        kept.is_put().then(|| kept.held())
    }

    /// Keys of the index inside `range`, in key order.
    fn keys_in<'a>(&'a self, range: &'a KeyRange) -> Box<dyn Iterator<Item = &'a Vec<u8>> + 'a> {
        if range.is_single() {
            return Box::new(
                self.index
                    .get_key_value(&range.key)
                    .map(|(k, _)| k)
                    .into_iter(),
            );
        }
        let upper = match range.upper() {
            Some(end) => Bound::Excluded(end.to_vec()),
            None => Bound::Unbounded,
        };
        Box::new(
            self.index
                .range((Bound::Included(range.key.clone()), upper))
                .map(|(k, _)| k),
        )
    }

    /// The live keys in `range` now, newest versions (what writes and compares read).
    fn live_in(&self, range: &KeyRange) -> Vec<KeyValue> {
        self.keys_in(range)
            .filter_map(|key| self.live(key))
            .cloned()
            .collect()
    }

    /// Checks that revision `at` can be read: not compacted away, not in the future.
    pub fn check_readable(&self, at: Revision) -> Result<(), KvError> {
        if at < 0 {
            return Err(KvError::NegativeRevision { revision: at });
        }
        if at > self.revision {
            return Err(KvError::FutureRevision {
                requested: at,
                current: self.revision,
            });
        }
        if at != 0 && at < self.compact_revision {
            return Err(KvError::Compacted {
                requested: at,
                compact_revision: self.compact_revision,
            });
        }
        Ok(())
    }

    /// Range read at `req.revision` (0 = now); values of the past read from `history`.
    pub fn range(
        &self,
        req: &RangeRequest,
        history: &dyn History,
    ) -> Result<RangeResponse, KvError> {
        self.check_readable(req.revision)?;
        let at = if req.revision == 0 {
            self.revision
        } else {
            req.revision
        };
        self.range_at(req, at, history)
    }

    /// Reads a value from the history only for what it answers with: not for a count or
    /// keys-only read, nor for what the limit cuts (unless it sorts by value).
    fn range_at(
        &self,
        req: &RangeRequest,
        at: Revision,
        history: &dyn History,
    ) -> Result<RangeResponse, KvError> {
        let in_bounds = |value: Revision, min: Revision, max: Revision| {
            (min == 0 || value >= min) && (max == 0 || value <= max)
        };
        let found: Vec<(Rev, &Kept)> = self
            .keys_in(&req.range)
            .filter_map(|key| self.latest(key, at))
            .filter(|(_, kept)| {
                let kv = &kept.kv;
                in_bounds(kv.mod_revision, req.min_mod_revision, req.max_mod_revision)
                    && in_bounds(
                        kv.create_revision,
                        req.min_create_revision,
                        req.max_create_revision,
                    )
            })
            .collect();
        let count = found.len() as i64;
        if req.count_only {
            return Ok(RangeResponse {
                kvs: Vec::new(),
                more: false,
                count,
            });
        }
        let limit = usize::try_from(req.limit).unwrap_or(0);
        let more = limit > 0 && found.len() > limit;
        let (order, target) = (req.sort_order, req.sort_target);
        let kvs = if target == SortTarget::Value {
            let mut kvs = found
                .iter()
                .map(|(rev, kept)| kept.read(*rev, history))
                .collect::<Result<Vec<_>, _>>()?;
            sort_by_target(&mut kvs, order, target, |kv| kv);
            kvs.truncate(if more { limit } else { kvs.len() });
            if req.keys_only {
                kvs = kvs.iter().map(without_value).collect();
            }
            kvs
        } else {
            // Sorted and cut on what is held; only the answer's values are read back.
            let mut found = found;
            sort_by_target(&mut found, order, target, |(_, kept)| &kept.kv);
            found.truncate(if more { limit } else { found.len() });
            let value = |(rev, kept): &(Rev, &Kept)| match req.keys_only {
                true => Ok(without_value(&kept.kv)),
                false => kept.read(*rev, history),
            };
            found.iter().map(value).collect::<Result<_, _>>()?
        };
        Ok(RangeResponse { kvs, more, count })
    }

    /// Applies one committed command. On error nothing changed and no revision was used.
    /// `history` answers a transaction's ranges at a past revision; if it fails, the error
    /// is [`KvError::HistoryUnreadable`], which the shell must treat as fatal.
    pub fn apply(
        &mut self,
        command: &Command,
        history: &dyn History,
    ) -> (Result<CommandResult, KvError>, Effects) {
        let mut effects = Effects::default();
        if self.alarms.refuse(command) {
            return (Err(KvError::NoSpace), effects);
        }
        let result = match command {
            Command::Put(put) => self.check_put(put).map(|()| {
                let rev = self.revision + 1;
                let response = self.exec_put(put, rev, &mut effects);
                CommandResult::Put(response)
            }),
            Command::DeleteRange(delete) => {
                let rev = self.revision + 1;
                Ok(CommandResult::DeleteRange(self.exec_delete(
                    delete,
                    rev,
                    &mut effects,
                )))
            }
            Command::Txn(txn) => self.txn(txn, history, &mut effects).map(CommandResult::Txn),
            Command::Compact { revision } => self.compact(*revision, &mut effects),
            Command::LeaseGrant { id, ttl } => self.grant(*id, *ttl, &mut effects),
            Command::LeaseRevoke { id } => self.revoke(*id, &mut effects),
            Command::Alarm { alarm, raise } => {
                let changed = self.alarms.set(*alarm, *raise);
                if changed {
                    effects.alarms = Some(self.alarms.list());
                }
                Ok(CommandResult::Alarmed(changed.then_some(*alarm)))
            }
        };
        if result.is_err() {
            return (result, Effects::default());
        }
        if !effects.events.is_empty() {
            self.revision += 1;
        }
        (result, effects)
    }

    fn next_rev(&self, main: Revision, effects: &Effects) -> Rev {
        Rev {
            main,
            sub: effects.events.len() as u32,
        }
    }

    fn exec_put(&mut self, put: &PutRequest, rev: Revision, effects: &mut Effects) -> PutResponse {
        let prev = self.live(&put.key).cloned();
        let value = match (&prev, put.ignore_value) {
            (Some(prev), true) => prev.value.clone(),
            _ => put.value.clone(),
        };
        let lease = match (&prev, put.ignore_lease) {
            (Some(prev), true) => prev.lease,
            _ => put.lease,
        };
        let (create_revision, version) = match &prev {
            Some(prev) => (prev.create_revision, prev.version + 1),
            None => (rev, 1),
        };
        let kv = KeyValue {
            key: put.key.clone(),
            create_revision,
            mod_revision: rev,
            version,
            value,
            lease,
        };
        if let Some(old) = prev
            .as_ref()
            .map(|p| p.lease)
            .filter(|l| *l != 0 && *l != lease)
        {
            if let Some(state) = self.leases.get_mut(&old) {
                state.keys.remove(&put.key);
            }
        }
        if let Some(state) = self.leases.get_mut(&lease) {
            state.keys.insert(put.key.clone());
        }
        self.record(EventKind::Put, kv, prev.clone(), rev, effects);
        PutResponse {
            prev_kv: if put.prev_kv { prev } else { None },
        }
    }

    fn exec_delete(
        &mut self,
        delete: &DeleteRangeRequest,
        rev: Revision,
        effects: &mut Effects,
    ) -> DeleteRangeResponse {
        let doomed = self.live_in(&delete.range);
        for prev in &doomed {
            if let Some(state) = self.leases.get_mut(&prev.lease) {
                state.keys.remove(&prev.key);
            }
            let tombstone = KeyValue {
                key: prev.key.clone(),
                mod_revision: rev,
                ..KeyValue::default()
            };
            self.record(
                EventKind::Delete,
                tombstone,
                Some(prev.clone()),
                rev,
                effects,
            );
        }
        DeleteRangeResponse {
            deleted: doomed.len() as i64,
            prev_kvs: if delete.prev_kv { doomed } else { Vec::new() },
        }
    }

    fn record(
        &mut self,
        kind: EventKind,
        kv: KeyValue,
        prev_kv: Option<KeyValue>,
        rev: Revision,
        effects: &mut Effects,
    ) {
        let at = self.next_rev(rev, effects);
        let revs = self.index.entry(kv.key.clone()).or_default();
        self.overwritten.extend(revs.last());
        revs.push(at);
        self.versions.insert(
            at,
            Kept::new(Version {
                kind,
                kv: kv.clone(),
            }),
        );
        effects.events.push(Event { kind, kv, prev_kv });
    }

    /// A put that names a lease needs the lease; `ignore_*` needs the key to exist.
    fn check_put(&self, put: &PutRequest) -> Result<(), KvError> {
        if !put.ignore_lease && put.lease != 0 && !self.leases.contains_key(&put.lease) {
            return Err(KvError::LeaseNotFound { id: put.lease });
        }
        if (put.ignore_value || put.ignore_lease) && self.live(&put.key).is_none() {
            return Err(KvError::KeyNotFound {
                key: show_key(&put.key),
            });
        }
        Ok(())
    }

    fn txn(
        &mut self,
        txn: &TxnRequest,
        history: &dyn History,
        effects: &mut Effects,
    ) -> Result<TxnResponse, KvError> {
        // Like etcd: every compare on the chosen path is evaluated against the state before
        // the transaction, and the whole path is checked before anything is written.
        let mut path = Vec::new();
        self.choose_path(txn, &mut path);
        let mut writes = TxnWrites::default();
        self.check_path(txn, &path, &mut 0, &mut writes)?;
        let rev = self.revision + 1;
        // Reads of the past come first: a value the history cannot give back fails the
        // transaction before it wrote anything.
        let mut past = VecDeque::new();
        self.read_past(txn, &path, &mut 0, history, &mut past)?;
        Ok(self.exec_txn(txn, &path, &mut 0, rev, &mut past, effects))
    }

    fn choose_path(&self, txn: &TxnRequest, path: &mut Vec<bool>) {
        let succeeded = txn.compare.iter().all(|cmp| self.compare_holds(cmp));
        path.push(succeeded);
        let ops = if succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        for op in ops {
            if let RequestOp::Txn(inner) = op {
                self.choose_path(inner, path);
            }
        }
    }

    fn check_path(
        &self,
        txn: &TxnRequest,
        path: &[bool],
        at: &mut usize,
        writes: &mut TxnWrites,
    ) -> Result<(), KvError> {
        for op in on_path(txn, path, at).1 {
            match op {
                RequestOp::Range(range) => self.check_readable(range.revision)?,
                RequestOp::Put(put) => {
                    self.check_put(put)?;
                    writes.put(&put.key)?;
                }
                RequestOp::DeleteRange(delete) => writes.delete(&delete.range)?,
                RequestOp::Txn(inner) => self.check_path(inner, path, at, writes)?,
            }
        }
        Ok(())
    }

    /// The answers of the ranges at a past revision on the chosen path, in path order.
    fn read_past(
        &self,
        txn: &TxnRequest,
        path: &[bool],
        at: &mut usize,
        history: &dyn History,
        past: &mut VecDeque<RangeResponse>,
    ) -> Result<(), KvError> {
        for op in on_path(txn, path, at).1 {
            match op {
                RequestOp::Range(range) if range.revision != 0 => {
                    past.push_back(self.range_at(range, range.revision, history)?);
                }
                RequestOp::Txn(inner) => self.read_past(inner, path, at, history, past)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn exec_txn(
        &mut self,
        txn: &TxnRequest,
        path: &[bool],
        at: &mut usize,
        rev: Revision,
        past: &mut VecDeque<RangeResponse>,
        effects: &mut Effects,
    ) -> TxnResponse {
        let (succeeded, ops) = on_path(txn, path, at);
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                RequestOp::Range(range) if range.revision != 0 => ResponseOp::Range(
                    past.pop_front()
                        .expect("read_past answered every range at a past revision"),
                ),
                // Reads inside a transaction see its earlier writes, as in etcd: the newest
                // versions, whose values are held.
                RequestOp::Range(range) => ResponseOp::Range(
                    self.range_at(range, rev, &NoHistory)
                        .expect("the newest versions' values are held"),
                ),
                RequestOp::Put(put) => ResponseOp::Put(self.exec_put(put, rev, effects)),
                RequestOp::DeleteRange(del) => {
                    ResponseOp::DeleteRange(self.exec_delete(del, rev, effects))
                }
                RequestOp::Txn(inner) => {
                    ResponseOp::Txn(self.exec_txn(inner, path, at, rev, past, effects))
                }
            });
        }
        TxnResponse {
            succeeded,
            responses,
        }
    }

    fn compare_holds(&self, cmp: &Compare) -> bool {
        let kvs = self.live_in(&cmp.range);
        if kvs.is_empty() {
            // A missing key compares as zero values; a value compare on it fails (etcd).
            return !matches!(cmp.target, CompareTarget::Value(_))
                && compare_kv(cmp, &KeyValue::default());
        }
        kvs.iter().all(|kv| compare_kv(cmp, kv))
    }

    fn compact(
        &mut self,
        revision: Revision,
        effects: &mut Effects,
    ) -> Result<CommandResult, KvError> {
        if revision > self.revision {
            return Err(KvError::FutureRevision {
                requested: revision,
                current: self.revision,
            });
        }
        if revision <= self.compact_revision {
            return Err(KvError::Compacted {
                requested: revision,
                compact_revision: self.compact_revision,
            });
        }
        // Per key keep every version after `revision` and the newest one at or before it,
        // unless that one is a tombstone older than `revision` (nothing left to read there).
        let mut emptied = Vec::new();
        for (key, revs) in self.index.iter_mut() {
            let upto = revs.partition_point(|rev| rev.main <= revision);
            if upto == 0 {
                continue;
            }
            let newest = revs[upto - 1];
            let keep_newest = newest.main == revision
                || self
                    .versions
                    .get(&newest)
                    .is_some_and(|v| v.kind == EventKind::Put);
            let drop_until = if keep_newest { upto - 1 } else { upto };
            for rev in revs.drain(..drop_until) {
                self.versions.remove(&rev);
                effects.removed.push(rev);
            }
            if revs.is_empty() {
                emptied.push(key.clone());
            }
        }
        for key in emptied {
            self.index.remove(&key);
        }
        effects.removed.sort_unstable();
        self.compact_revision = revision;
        effects.compacted_to = Some(revision);
        Ok(CommandResult::Compacted)
    }

    fn grant(
        &mut self,
        id: LeaseId,
        ttl: i64,
        effects: &mut Effects,
    ) -> Result<CommandResult, KvError> {
        check_ttl(ttl)?;
        if self.leases.contains_key(&id) {
            return Err(KvError::LeaseExists { id });
        }
        self.leases.insert(
            id,
            LeaseState {
                ttl,
                keys: BTreeSet::new(),
            },
        );
        effects.leases_granted.push(Lease { id, ttl });
        Ok(CommandResult::LeaseGranted { id, ttl })
    }

    fn revoke(&mut self, id: LeaseId, effects: &mut Effects) -> Result<CommandResult, KvError> {
        let state = self
            .leases
            .remove(&id)
            .ok_or(KvError::LeaseNotFound { id })?;
        let rev = self.revision + 1;
        for key in state.keys {
            let delete = DeleteRangeRequest {
                range: KeyRange::single(key),
                prev_kv: false,
            };
            self.exec_delete(&delete, rev, effects);
        }
        effects.leases_revoked.push(id);
        Ok(CommandResult::LeaseRevoked)
    }

    /// The changes with revision in `from..=to` inside `range`, in revision order, each with
    /// the key's previous version when `with_prev` (absent if compacted away). The caller
    /// checks that `from` is not compacted, under the same lock.
    pub fn events_in(
        &self,
        from: Revision,
        to: Revision,
        range: &KeyRange,
        with_prev: bool,
        history: &dyn History,
    ) -> Result<Vec<Event>, KvError> {
        let start = Rev {
            main: from.max(1),
            sub: 0,
        };
        let end = Rev {
            main: to,
            sub: u32::MAX,
        };
        if start > end {
            return Ok(Vec::new());
        }
        self.versions
            .range(start..=end)
            .filter(|(_, kept)| range.contains(&kept.kv.key))
            .map(|(rev, kept)| {
                Ok(Event {
                    kind: kept.kind,
                    kv: kept.read(*rev, history)?,
                    prev_kv: match with_prev {
                        true => self.previous(&kept.kv.key, *rev, history)?,
                        false => None,
                    },
                })
            })
            .collect()
    }

    fn previous(
        &self,
        key: &[u8],
        before: Rev,
        history: &dyn History,
    ) -> Result<Option<KeyValue>, KvError> {
        let Some(revs) = self.index.get(key) else {
            return Ok(None);
        };
        let position = revs.partition_point(|rev| *rev < before);
        let Some(rev) = position.checked_sub(1).map(|p| revs[p]) else {
            return Ok(None);
        };
        match self.versions.get(&rev) {
            Some(kept) if kept.is_put() => kept.read(rev, history).map(Some),
            _ => Ok(None),
        }
    }
}

/// `kv` for a keys-only answer: with a new empty value, not a cleared one (that would keep
/// the shared buffer).
fn without_value(kv: &KeyValue) -> KeyValue {
    KeyValue {
        value: Bytes::new(),
        ..kv.clone()
    }
}

/// Whether the transaction at `path[*at]` succeeded, and the operations that takes it to;
/// moves `at` past it.
fn on_path<'a>(txn: &'a TxnRequest, path: &[bool], at: &mut usize) -> (bool, &'a [RequestOp]) {
    let succeeded = path[*at];
    *at += 1;
    let ops = if succeeded {
        &txn.success
    } else {
        &txn.failure
    };
    (succeeded, ops)
}

/// Keys written so far on a transaction's path: etcd refuses a key written twice, or a put
/// inside a range the same transaction deletes.
#[derive(Default)]
struct TxnWrites {
    puts: BTreeSet<Vec<u8>>,
    deletes: Vec<KeyRange>,
}

impl TxnWrites {
    fn put(&mut self, key: &[u8]) -> Result<(), KvError> {
        let clash = self.deletes.iter().any(|range| range.contains(key));
        if clash || !self.puts.insert(key.to_vec()) {
            return Err(KvError::DuplicateKey { key: show_key(key) });
        }
        Ok(())
    }

    fn delete(&mut self, range: &KeyRange) -> Result<(), KvError> {
        if let Some(key) = self.puts.iter().find(|key| range.contains(key)) {
            return Err(KvError::DuplicateKey { key: show_key(key) });
        }
        self.deletes.push(range.clone());
        Ok(())
    }
}

pub(crate) fn check_ttl(ttl: i64) -> Result<(), KvError> {
    if ttl <= 0 {
        return Err(KvError::InvalidTtl { ttl });
    }
    if ttl > MAX_LEASE_TTL {
        return Err(KvError::TtlTooLarge {
            ttl,
            max: MAX_LEASE_TTL,
        });
    }
    Ok(())
}

fn compare_kv(cmp: &Compare, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let ordering = match &cmp.target {
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::Create(r) => kv.create_revision.cmp(r),
        CompareTarget::Mod(r) => kv.mod_revision.cmp(r),
        CompareTarget::Value(v) => kv.value[..].cmp(v.as_slice()),
        CompareTarget::Lease(l) => kv.lease.cmp(l),
    };
    match cmp.result {
        CompareResult::Equal => ordering == Ordering::Equal,
        CompareResult::NotEqual => ordering != Ordering::Equal,
        CompareResult::Greater => ordering == Ordering::Greater,
        CompareResult::Less => ordering == Ordering::Less,
    }
}

/// Sorts `items` (each read as a key-value by `kv`) as etcd sorts a range's answer.
fn sort_by_target<T>(
    items: &mut [T],
    order: SortOrder,
    target: SortTarget,
    kv: impl Fn(&T) -> &KeyValue,
) {
    // etcd: no order on a non-key target means ascending; keys are already ascending.
    let order = match (order, target) {
        (SortOrder::None, SortTarget::Key) => return,
        (SortOrder::None, _) => SortOrder::Ascend,
        (order, _) => order,
    };
    items.sort_by(|a, b| {
        let (a, b) = (kv(a), kv(b));
        let ordering = match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        };
        ordering.then_with(|| a.key.cmp(&b.key))
    });
    if order == SortOrder::Descend {
        items.reverse();
    }
}

#[cfg(test)]
mod tests;
