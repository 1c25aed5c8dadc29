//! [`Registry`]: the Kubernetes verbs over the store. Every write is one store transaction
//! that compares what the decision was based on (the object's revision, its namespace, the
//! writer's lease), so a write made on stale information never lands: it is retried on
//! fresh state or refused with a conflict.
//!
//! ```text
//!  body ─ parse ─ kind ─ server-owned metadata ─ admit (decode, default, validate) ─┐
//!                   read current (linearizable) ─ decide ─ txn(compare…) ─ lost? ────┘ retry
//! ```
//!
//! One file per verb, each a thin shell over pure decisions: `create`, `update` (update,
//! update-status, patch, and the read-decide-write loop they share), `bind`, `evict` (a
//! pod's deletion as its PodDisruptionBudget allows: the budget's status and the pod's
//! deletion in one transaction over both, `commit_all`), `fence` (is a
//! leader-elected writer still the leader), `attempt` (did an earlier attempt of this
//! numbered request already apply). `body` parses and sizes request bodies and `transform`
//! builds the objects the verbs write; both are pure. `priority` is the Priority admission
//! of new pods (their class, read from the store), `storage_class` the DefaultStorageClass
//! admission of new claims; `event_ttl` puts Events on leases that expire them an hour
//! after their last write. `service_allocations` gives a Service its cluster IP, node ports
//! and load-balancer address ([`crate::allocation`]) in the transaction that writes it.
//! This file holds the type, get, and the store access every verb
//! uses.

mod apply;
mod attempt;
mod bind;
mod body;
mod checked_leases;
mod create;
mod event_ttl;
mod evict;
mod fence;
mod priority;
pub(crate) mod service_account;
mod service_allocations;
mod storage_class;
pub(crate) mod token_request;
mod transform;
mod update;

use rudder_raftstore::kv::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, KeyRange, KeyValue, LeaseId,
    PutRequest, RangeRequest, RangeResponse, RequestOp, ResponseOp, Revision, TxnRequest,
};
use rudder_raftstore::{Store, StoreError};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

use crate::allocation::ServiceRanges;
use crate::caller;
use crate::decoded::Decoded;
use crate::encryption::{self, open_in_place, Keyring, SharedKeyring};
use crate::error::{ApiError, ObjectRef};
use crate::kinds::{self, FieldValidation, KindInfo, Warnings};
use crate::object;
use crate::watch::Hubs;

pub use bind::Binding;
pub use evict::Eviction;
pub(crate) use fence::landed;
pub use fence::Fence;
pub(crate) use transform::{holds_contents, patched, request_namespace};
pub use transform::{Part, PatchType};

/// How long a read waits for a leader before failing.
const READ_PATIENCE: Duration = Duration::from_secs(5);
/// Attempts at a write whose compare lost to a concurrent change before giving up.
const MAX_ATTEMPTS: usize = 16;
/// Room left under the store's request limit for the key and the transaction around a body.
const TXN_OVERHEAD_BYTES: usize = 4096;

/// The Kubernetes verbs over one store.
#[derive(Clone)]
pub struct Registry {
    pub(crate) store: Store,
    max_object_bytes: usize,
    /// Set when the master stops: open watches end so the server can close its connections.
    stopping: Arc<tokio::sync::watch::Sender<bool>>,
    /// The lease new Events are written with (they expire an hour after their last write).
    event_leases: Arc<event_ttl::EventLeases>,
    /// Objects decoded once for every watch of this master.
    pub(crate) decoded: Arc<Decoded>,
    /// One store watch per kind, shared by this master's watches.
    pub(crate) hubs: Arc<Hubs>,
    /// The leases fenced writes were last checked against.
    checked_leases: Arc<checked_leases::CheckedLeases>,
    /// The pools Services take their addresses and node ports from.
    service_ranges: Arc<ServiceRanges>,
    /// What Secrets are sealed with before they are written, and opened with when read.
    keys: SharedKeyring,
    /// What this master dials nodes' kubelet ports with (none: plaintext, no TLS).
    kubelet_tls: Option<Arc<rudder_proto::tls::ClientTls>>,
    /// What ServiceAccount tokens are signed with (none: a cluster without TLS).
    token_key: Option<Arc<crate::service_account_tokens::TokenKey>>,
}

/// The object a request names.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The kind, as a resource (`pods`), short name (`po`) or kind (`Pod`).
    pub resource: &'a str,
    /// Empty: `default` (nothing for cluster-scoped kinds).
    pub namespace: &'a str,
    pub name: &'a str,
}

/// How a write is made, whatever it writes.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Write only while this lease is held as it says (a leader-elected writer).
    pub fence: Option<Fence>,
    /// Decide and check everything, write nothing, answer with what would be written.
    pub dry_run: bool,
    /// Who writes, for the managed fields of objects that have them (`fieldManager`);
    /// `None`: [`DEFAULT_FIELD_MANAGER`].
    pub field_manager: Option<String>,
    /// What admission does with unknown fields (`fieldValidation`; Strict by default).
    pub field_validation: FieldValidation,
    /// Where admission says what it dropped (under `Warn`), for the client's headers.
    pub warnings: Warnings,
}

/// The manager of writes that name none: Rudder's own clients over gRPC.
pub const DEFAULT_FIELD_MANAGER: &str = "rudder";

impl WriteOptions {
    pub fn field_manager(&self) -> &str {
        self.field_manager
            .as_deref()
            .unwrap_or(DEFAULT_FIELD_MANAGER)
    }
}

/// A [`Target`] resolved: its kind known and its namespace settled.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resolved<'a> {
    pub info: &'static KindInfo,
    pub namespace: &'a str,
    pub name: &'a str,
}

impl Resolved<'_> {
    pub fn key(&self) -> Vec<u8> {
        object::key(self.info, self.namespace, self.name)
    }

    pub fn not_found(&self) -> ApiError {
        ApiError::NotFound {
            object: object_ref(self.info, self.name),
        }
    }
}

/// How a transaction ended.
pub(crate) enum Committed {
    /// Written at this revision; `replayed`: by an earlier attempt of the same client
    /// request (this attempt changed nothing, and what was written is what that attempt
    /// decided).
    At { revision: Revision, replayed: bool },
    /// A compare failed; the object key's current value (if any).
    Lost(Option<KeyValue>),
}

/// The effect of a transaction on the object's key.
pub(crate) enum Write {
    Put(Vec<u8>),
    /// A put whose key the store deletes when `lease` expires (Events: `event_ttl`).
    PutLeased {
        value: Vec<u8>,
        lease: LeaseId,
    },
    Delete,
}

impl Registry {
    /// A registry sealing Secrets with `keys`, its Services taking from the default ranges.
    pub fn new(store: Store, keys: SharedKeyring) -> Self {
        Self::with_service_ranges(store, keys, ServiceRanges::default())
    }

    /// A registry whose Services take from `ranges` (`--service-cidr` and its siblings).
    pub fn with_service_ranges(store: Store, keys: SharedKeyring, ranges: ServiceRanges) -> Self {
        let max_object_bytes = store
            .limits()
            .max_request_bytes
            .saturating_sub(TXN_OVERHEAD_BYTES);
        Self {
            store,
            max_object_bytes,
            stopping: Arc::new(tokio::sync::watch::channel(false).0),
            event_leases: Arc::default(),
            decoded: Arc::new(Decoded::new(keys.clone())),
            hubs: Arc::default(),
            checked_leases: Arc::default(),
            service_ranges: Arc::new(ranges),
            keys,
            kubelet_tls: None,
            token_key: None,
        }
    }

    /// This registry, signing ServiceAccount tokens with `key`.
    pub fn with_token_key(
        mut self,
        key: Option<Arc<crate::service_account_tokens::TokenKey>>,
    ) -> Self {
        self.token_key = key;
        self
    }

    pub(crate) fn token_key(&self) -> Option<&crate::service_account_tokens::TokenKey> {
        self.token_key.as_deref()
    }

    /// This registry, dialing nodes with `tls` (the master's own certificate; nodes take
    /// only masters').
    pub fn with_kubelet_tls(mut self, tls: Option<rudder_proto::tls::ClientTls>) -> Self {
        self.kubelet_tls = tls.map(Arc::new);
        self
    }

    /// What nodes are dialed with, if the cluster has TLS.
    pub fn kubelet_tls(&self) -> Option<&rudder_proto::tls::ClientTls> {
        self.kubelet_tls.as_deref()
    }

    /// The keyring Secrets are sealed and opened with.
    pub fn keys(&self) -> &SharedKeyring {
        &self.keys
    }

    pub fn service_ranges(&self) -> &ServiceRanges {
        &self.service_ranges
    }

    /// Ends every watch this registry (and its clones) serves, now and later.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Resolves once [`Registry::stop`] was called.
    pub(crate) fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stopping = self.stopping.subscribe();
        async move {
            // The sender lives as long as any clone of the registry, so this only returns
            // when stop was called.
            let _ = stopping.wait_for(|stop| *stop).await;
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The kind a request names, or an error naming what the server does have.
    pub fn kind(&self, resource: &str) -> Result<&'static KindInfo, ApiError> {
        kind(resource)
    }

    pub async fn get(&self, target: &Target<'_>) -> Result<Value, ApiError> {
        let info = self.kind(target.resource)?;
        let namespace = request_namespace(info, target.namespace);
        let at = Resolved {
            info,
            namespace: &namespace,
            name: target.name,
        };
        match self.read(&at.key()).await? {
            Some(kv) => object::decode(&kv),
            None => Err(at.not_found()),
        }
    }

    // ---- Store access shared by the verbs ----

    /// A read, its sealed values (Secrets) opened.
    pub(crate) async fn range(
        &self,
        request: RangeRequest,
    ) -> Result<(rudder_raftstore::store::Header, RangeResponse), ApiError> {
        let (header, mut response) = self.range_stored(request).await?;
        let keys = self.keys.current();
        for kv in &mut response.kvs {
            open_in_place(&keys, kv)?;
        }
        Ok((header, response))
    }

    /// A read of the values as stored, retried while the cluster has no reachable leader
    /// (an election after a master died): reads change nothing, so retrying them is always
    /// safe, unlike writes.
    async fn range_stored(
        &self,
        request: RangeRequest,
    ) -> Result<(rudder_raftstore::store::Header, RangeResponse), StoreError> {
        let deadline = tokio::time::Instant::now() + READ_PATIENCE;
        loop {
            match self.store.range(request.clone()).await {
                Err(StoreError::NoLeader | StoreError::LeaderUnreachable { .. })
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                outcome => return outcome,
            }
        }
    }

    /// The current value of `key`, linearizably.
    pub(crate) async fn read(&self, key: &[u8]) -> Result<Option<KeyValue>, ApiError> {
        Ok(self.read_checking_seal(key).await?.map(|(kv, _)| kv))
    }

    /// [`Registry::read`], saying also whether the value is sealed as it should be now:
    /// `true` when it is stale (in clear, or sealed by a key that no longer seals), and
    /// an update must write it even if nothing else changed.
    pub(crate) async fn read_checking_seal(
        &self,
        key: &[u8],
    ) -> Result<Option<(KeyValue, bool)>, ApiError> {
        let (_, response) = self
            .range_stored(RangeRequest {
                range: KeyRange::single(key.to_vec()),
                ..Default::default()
            })
            .await?;
        let Some(mut kv) = response.kvs.into_iter().next() else {
            return Ok(None);
        };
        let stale = open_in_place(&self.keys.current(), &mut kv)?;
        Ok(Some((kv, stale)))
    }

    /// How `body` (an object of `info`, encoded) is written: an Event on an expiring lease
    /// (`event_ttl`), anything else plainly.
    pub(crate) async fn put(&self, info: &KindInfo, body: Vec<u8>) -> Result<Write, ApiError> {
        if info.kind != "Event" {
            return Ok(Write::Put(body));
        }
        let now = std::time::Instant::now();
        let lease = match self.event_leases.reusable(now) {
            Some(id) => id,
            None => {
                let (_, granted) = self
                    .store
                    .lease_grant(0, event_ttl::lease_seconds())
                    .await?;
                self.event_leases.remember(granted.id, now);
                granted.id
            }
        };
        Ok(Write::PutLeased { value: body, lease })
    }

    /// One transaction: `compares` all hold → `write`; otherwise read the key back.
    pub(crate) async fn commit(
        &self,
        key: &[u8],
        compares: Vec<Compare>,
        write: Write,
    ) -> Result<Committed, ApiError> {
        self.commit_with(key, compares, write, Vec::new()).await
    }

    /// [`Registry::commit`] with writes to other keys that land with the object's (a
    /// Service's reservations).
    pub(crate) async fn commit_with(
        &self,
        key: &[u8],
        compares: Vec<Compare>,
        write: Write,
        also: Vec<(Vec<u8>, Write)>,
    ) -> Result<Committed, ApiError> {
        let keys = self.keys.current();
        let mut success = vec![write.op(key, &keys)?];
        for (key, write) in also {
            success.push(write.op(&key, &keys)?);
        }
        let txn = TxnRequest {
            compare: compares,
            success,
            failure: vec![RequestOp::Range(RangeRequest {
                range: KeyRange::single(key.to_vec()),
                ..Default::default()
            })],
        };
        let (header, response, replayed) = self.store.txn_as(txn, caller::next_tag()).await?;
        if response.succeeded {
            return Ok(Committed::At {
                revision: header.revision,
                replayed,
            });
        }
        let current = response.responses.into_iter().find_map(|op| match op {
            ResponseOp::Range(range) => range.kvs.into_iter().next(),
            _ => None,
        });
        let current = match current {
            Some(mut kv) => {
                open_in_place(&keys, &mut kv)?;
                Some(kv)
            }
            None => None,
        };
        Ok(Committed::Lost(current))
    }

    /// One transaction over several objects: `compares` all hold → every one of `writes`
    /// (each a key and its effect), all at one revision; otherwise nothing
    /// (`Committed::Lost(None)`: read again what the decision was based on).
    pub(crate) async fn commit_all(
        &self,
        compares: Vec<Compare>,
        writes: Vec<(Vec<u8>, Write)>,
    ) -> Result<Committed, ApiError> {
        let keys = self.keys.current();
        let txn = TxnRequest {
            compare: compares,
            success: writes
                .into_iter()
                .map(|(key, write)| write.op(&key, &keys))
                .collect::<Result<_, _>>()?,
            failure: Vec::new(),
        };
        let (header, response, replayed) = self.store.txn_as(txn, caller::next_tag()).await?;
        if response.succeeded {
            Ok(Committed::At {
                revision: header.revision,
                replayed,
            })
        } else {
            Ok(Committed::Lost(None))
        }
    }
}

impl Write {
    /// The store operation that has this effect on `key`, its value sealed by `keys` when
    /// `key` is a Secret's.
    fn op(self, key: &[u8], keys: &Keyring) -> Result<RequestOp, ApiError> {
        let seal = |value: Vec<u8>| -> Result<Vec<u8>, ApiError> {
            if !encryption::is_sealed(key) {
                return Ok(value);
            }
            keys.seal(key, &value).map_err(|error| {
                ApiError::internal(format!(
                    "sealing {} for the store: {error}",
                    String::from_utf8_lossy(key)
                ))
            })
        };
        Ok(match self {
            Self::Put(value) => RequestOp::Put(PutRequest {
                key: key.to_vec(),
                value: seal(value)?.into(),
                ..Default::default()
            }),
            Self::PutLeased { value, lease } => RequestOp::Put(PutRequest {
                key: key.to_vec(),
                value: seal(value)?.into(),
                lease,
                ..Default::default()
            }),
            Self::Delete => RequestOp::DeleteRange(DeleteRangeRequest {
                range: KeyRange::single(key.to_vec()),
                prev_kv: false,
            }),
        })
    }
}

/// The kind `resource` names, or an error naming what the server does have.
pub(crate) fn kind(resource: &str) -> Result<&'static KindInfo, ApiError> {
    kinds::resolve(resource).ok_or_else(|| {
        ApiError::bad_field(
            "kind",
            format!(
                "the server doesn't have a resource type {resource:?}: known kinds are {}",
                kinds::KINDS
                    .iter()
                    .map(|k| k.resource)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })
}

pub(crate) fn object_ref(info: &KindInfo, name: &str) -> ObjectRef {
    ObjectRef {
        resource: info.qualified_resource(),
        name: name.into(),
    }
}

pub(crate) fn stale(info: &KindInfo, name: &str) -> ApiError {
    ApiError::Conflict {
        object: object_ref(info, name),
        reason: "the object has been modified; please apply your changes to the latest version \
                 and try again"
            .into(),
    }
}

fn contended(info: &KindInfo, name: &str) -> ApiError {
    ApiError::Conflict {
        object: object_ref(info, name),
        reason: format!("the object changed {MAX_ATTEMPTS} times while this write was retried"),
    }
}

/// The key does not exist.
pub(crate) fn absent(key: &[u8]) -> Compare {
    Compare {
        range: KeyRange::single(key.to_vec()),
        result: CompareResult::Equal,
        target: CompareTarget::Version(0),
    }
}

/// The key was last changed at `revision`.
pub(crate) fn unchanged(key: &[u8], revision: Revision) -> Compare {
    Compare {
        range: KeyRange::single(key.to_vec()),
        result: CompareResult::Equal,
        target: CompareTarget::Mod(revision),
    }
}
