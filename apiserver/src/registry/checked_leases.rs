//! The leases a master's fenced writes were last checked against (see `fence.rs` for why
//! checking against a remembered lease is as safe as reading it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rudder_raftstore::kv::{KeyValue, Revision};
use serde_json::Value;

use crate::error::ApiError;
use crate::object;

/// The leases this master's fenced writes were last checked against, by key.
#[derive(Debug, Default)]
pub(crate) struct CheckedLeases(Mutex<HashMap<Vec<u8>, CheckedLease>>);

/// A lease as read: its revision and its object.
type CheckedLease = (Revision, Arc<Value>);

impl CheckedLeases {
    pub(crate) fn get(&self, key: &[u8]) -> Option<CheckedLease> {
        self.lock().get(key).cloned()
    }

    pub(crate) fn remember(
        &self,
        key: &[u8],
        kv: Option<&KeyValue>,
    ) -> Result<Option<CheckedLease>, ApiError> {
        let Some(kv) = kv else {
            self.lock().remove(key);
            return Ok(None);
        };
        let lease = (kv.mod_revision, Arc::new(object::decode(kv)?));
        self.lock().insert(key.to_vec(), lease.clone());
        Ok(Some(lease))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, CheckedLease>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
