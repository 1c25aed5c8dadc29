//! Stored objects decoded once per master.
//!
//! The watch hub (`watch/hub.rs`) decodes each change of a kind once for all of a master's
//! watches; a watch on a store watch of its own (it started further back than the hub
//! remembers, or fell behind) meets the same writes, and every change carries the object's
//! previous version too, itself decoded when it was written. [`Decoded`] keeps the objects of
//! the most recent revisions so each is decoded once. An object is named by its key and the
//! revision it was written at, which never change meaning, so a remembered object is never
//! stale. It holds objects, not bytes: large objects make it larger (a bound by bytes is
//! still to come).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use rudder_raftstore::kv::{KeyValue, Revision};
use serde_json::Value;

use crate::encryption::{self, open_in_place, SharedKeyring};
use crate::error::ApiError;
use crate::object;

/// How many revisions' objects are remembered: enough for the watches of a master to meet
/// a write before it is forgotten under load.
const REMEMBERED_REVISIONS: usize = 256;

/// The memo (see the module's documentation). Cheap to share: clone the `Arc` holding it.
#[derive(Debug)]
pub struct Decoded {
    memo: Mutex<Memo>,
    /// What opens sealed values (Secrets) before they are decoded.
    keys: SharedKeyring,
}

/// A key and its object as decoded.
type Remembered = (Vec<u8>, Arc<Value>);

#[derive(Debug, Default)]
struct Memo {
    /// The objects written at each remembered revision (a transaction writes several keys
    /// at one revision), by key.
    by_revision: HashMap<Revision, Vec<Remembered>>,
    /// Remembered revisions, oldest first, to forget in that order.
    order: VecDeque<Revision>,
}

impl Decoded {
    pub fn new(keys: SharedKeyring) -> Self {
        Self {
            memo: Mutex::default(),
            keys,
        }
    }

    /// `kv`'s object as [`object::decode`] gives it (opened first when sealed), decoded at
    /// most once while remembered.
    pub fn get(&self, kv: &KeyValue) -> Result<Arc<Value>, ApiError> {
        if let Some(known) = self.lock().find(kv) {
            return Ok(known);
        }
        let decoded = if encryption::is_sealed(&kv.key) {
            let mut opened = kv.clone();
            open_in_place(&self.keys.current(), &mut opened)?;
            object::decode(&opened)?
        } else {
            object::decode(kv)?
        };
        let decoded = Arc::new(decoded);
        Ok(self.lock().remember(kv, decoded))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memo> {
        self.memo
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Memo {
    fn find(&self, kv: &KeyValue) -> Option<Arc<Value>> {
        self.by_revision
            .get(&kv.mod_revision)?
            .iter()
            .find(|(key, _)| *key == kv.key)
            .map(|(_, object)| object.clone())
    }

    /// Remembers `decoded` unless another watch was first; answers the one remembered.
    fn remember(&mut self, kv: &KeyValue, decoded: Arc<Value>) -> Arc<Value> {
        if let Some(first) = self.find(kv) {
            return first;
        }
        let at = self.by_revision.entry(kv.mod_revision).or_default();
        if at.is_empty() {
            self.order.push_back(kv.mod_revision);
        }
        at.push((kv.key.clone(), decoded.clone()));
        while self.order.len() > REMEMBERED_REVISIONS {
            if let Some(oldest) = self.order.pop_front() {
                self.by_revision.remove(&oldest);
            }
        }
        decoded
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn kv(key: &str, revision: Revision, name: &str) -> KeyValue {
        KeyValue {
            key: key.as_bytes().to_vec(),
            value: serde_json::to_vec(&json!({ "metadata": { "name": name } }))
                .unwrap()
                .into(),
            mod_revision: revision,
            ..Default::default()
        }
    }

    #[test]
    fn an_object_is_decoded_once_and_shared() {
        let decoded = Decoded::new(crate::encryption::keys_of_this_process());
        let first = decoded.get(&kv("/pods/a", 5, "a")).unwrap();
        let again = decoded.get(&kv("/pods/a", 5, "a")).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(first["metadata"]["resourceVersion"], "5");
    }

    #[test]
    fn keys_written_at_one_revision_are_told_apart() {
        let decoded = Decoded::new(crate::encryption::keys_of_this_process());
        let a = decoded.get(&kv("/pods/a", 7, "a")).unwrap();
        let b = decoded.get(&kv("/pods/b", 7, "b")).unwrap();
        assert_eq!(a["metadata"]["name"], "a");
        assert_eq!(b["metadata"]["name"], "b");
        assert!(Arc::ptr_eq(
            &a,
            &decoded.get(&kv("/pods/a", 7, "a")).unwrap()
        ));
    }

    #[test]
    fn the_oldest_revisions_are_forgotten_first_and_decoded_again_when_asked() {
        let decoded = Decoded::new(crate::encryption::keys_of_this_process());
        let oldest = decoded.get(&kv("/pods/a", 1, "a")).unwrap();
        for revision in 2..=(REMEMBERED_REVISIONS as Revision + 1) {
            decoded.get(&kv("/pods/b", revision, "b")).unwrap();
        }
        assert_eq!(decoded.lock().order.len(), REMEMBERED_REVISIONS);
        let again = decoded.get(&kv("/pods/a", 1, "a")).unwrap();
        assert!(!Arc::ptr_eq(&oldest, &again));
        assert_eq!(oldest, again);
    }

    #[test]
    fn a_body_that_is_not_json_is_an_error_and_not_remembered() {
        let decoded = Decoded::new(crate::encryption::keys_of_this_process());
        let broken = KeyValue {
            key: b"/pods/x".to_vec(),
            value: b"{".to_vec().into(),
            mod_revision: 3,
            ..Default::default()
        };
        assert!(decoded.get(&broken).is_err());
        assert!(decoded.lock().order.is_empty());
    }
}
