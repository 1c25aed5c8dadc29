//! What an informer hears and what it tells: a [`Change`] is one watch event as the server
//! sent it, decoded (`decode`, pure); an [`Event`] is what the cache's subscribers receive
//! once the change is applied.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::key::ObjectKey;
use super::object::ApiObject;

/// What a subscriber of a cache is told, in the order the cache changed.
#[derive(Debug)]
pub enum Event<K> {
    Added(Arc<K>),
    Updated {
        old: Arc<K>,
        new: Arc<K>,
    },
    /// The last state known: the deleted object, or the state in which it stopped matching
    /// the informer's selectors; after a relist, the state cached before the disconnection.
    Deleted(Arc<K>),
    /// A list was applied: every object in the cache has been announced. Comes after the first
    /// list and after each relist.
    Synced,
}

impl<K> Clone for Event<K> {
    fn clone(&self) -> Self {
        match self {
            Self::Added(object) => Self::Added(object.clone()),
            Self::Updated { old, new } => Self::Updated {
                old: old.clone(),
                new: new.clone(),
            },
            Self::Deleted(object) => Self::Deleted(object.clone()),
            Self::Synced => Self::Synced,
        }
    }
}

impl<K: ApiObject> Event<K> {
    /// The key of the object the event is about (`None` for `Synced`).
    pub fn key(&self) -> Option<ObjectKey> {
        self.latest().map(|object| ObjectKey::of(object.metadata()))
    }

    /// The object as it is now (or was last, when deleted).
    pub fn latest(&self) -> Option<&Arc<K>> {
        match self {
            Self::Added(object) | Self::Deleted(object) => Some(object),
            Self::Updated { new, .. } => Some(new),
            Self::Synced => None,
        }
    }

    /// The object whose deletion this event shows: it is gone, or it has just been marked
    /// for deletion (a pod on a node stays until its kubelet confirms; a controller counting
    /// its deletes must not wait for that).
    pub fn deletion_seen(&self) -> Option<&Arc<K>> {
        match self {
            Self::Deleted(object) => Some(object),
            Self::Updated { old, new }
                if old.metadata().deletion_timestamp.is_none()
                    && new.metadata().deletion_timestamp.is_some() =>
            {
                Some(new)
            }
            _ => None,
        }
    }

    /// Every state the event shows (old and new for an update): a controller maps each to
    /// its key, as an update that changed a pod's owner concerns both owners.
    pub fn states(&self) -> Vec<&Arc<K>> {
        match self {
            Self::Added(object) | Self::Deleted(object) => vec![object],
            Self::Updated { old, new } => vec![old, new],
            Self::Synced => Vec::new(),
        }
    }
}

/// Lets an actor take a subscription as a message stream (`ctx.add_message_stream`).
impl<K: 'static> actix::Message for Event<K> {
    type Result = ();
}

/// One watch event as the server meant it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change<K> {
    /// ADDED or MODIFIED: the object's new state (the cache knows which it is).
    Applied(K),
    Deleted(K),
    /// Everything up to this revision has been sent.
    Bookmark(u64),
    /// The revision watched from was compacted (ERROR 410): list again.
    Expired,
    /// Another ERROR: the stream ends; resume it.
    Failed(Box<Status>),
}

/// Why a watch event could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("a {kind} watch event whose object does not decode")]
    Object {
        kind: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("a BOOKMARK without a numeric resourceVersion ({version:?})")]
    Bookmark { version: String },
    #[error("a watch event of unknown type {kind:?}")]
    UnknownType { kind: String },
}

/// Decodes a watch event of type `kind` (`ADDED`, ..., `ERROR`) carrying `object` (JSON).
pub fn decode<K: DeserializeOwned>(kind: &str, object: &[u8]) -> Result<Change<K>, DecodeError> {
    let parse = |object| -> Result<K, DecodeError> {
        serde_json::from_slice(object).map_err(|source| DecodeError::Object {
            kind: kind.to_string(),
            source,
        })
    };
    match kind {
        "ADDED" | "MODIFIED" => parse(object).map(Change::Applied),
        "DELETED" => parse(object).map(Change::Deleted),
        "BOOKMARK" => {
            #[derive(Deserialize)]
            struct Bookmark {
                metadata: BookmarkMeta,
            }
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct BookmarkMeta {
                resource_version: String,
            }
            let bookmark: Bookmark =
                serde_json::from_slice(object).map_err(|source| DecodeError::Object {
                    kind: kind.to_string(),
                    source,
                })?;
            let version = bookmark.metadata.resource_version;
            match version.parse() {
                Ok(revision) => Ok(Change::Bookmark(revision)),
                Err(_) => Err(DecodeError::Bookmark { version }),
            }
        }
        "ERROR" => {
            let status: Status =
                serde_json::from_slice(object).map_err(|source| DecodeError::Object {
                    kind: kind.to_string(),
                    source,
                })?;
            if status.code == Some(410) {
                Ok(Change::Expired)
            } else {
                Ok(Change::Failed(Box::new(status)))
            }
        }
        other => Err(DecodeError::UnknownType {
            kind: other.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use serde_json::json;

    use super::*;

    fn decoded(kind: &str, object: serde_json::Value) -> Result<Change<ConfigMap>, DecodeError> {
        decode(kind, object.to_string().as_bytes())
    }

    #[test]
    fn watch_events_decode_to_the_change_they_mean() {
        let map = json!({"metadata": {"name": "a", "resourceVersion": "7"}});
        let expected: ConfigMap = serde_json::from_value(map.clone()).unwrap_or_default();
        assert_eq!(
            decoded("ADDED", map.clone()).ok(),
            Some(Change::Applied(expected.clone()))
        );
        assert_eq!(
            decoded("MODIFIED", map.clone()).ok(),
            Some(Change::Applied(expected.clone()))
        );
        assert_eq!(
            decoded("DELETED", map).ok(),
            Some(Change::Deleted(expected))
        );
        let bookmark = json!({"kind": "ConfigMap", "metadata": {"resourceVersion": "42"}});
        assert_eq!(
            decoded("BOOKMARK", bookmark).ok(),
            Some(Change::Bookmark(42))
        );
        let expired = json!({"kind": "Status", "code": 410, "reason": "Expired"});
        assert_eq!(decoded("ERROR", expired).ok(), Some(Change::Expired));
        let failed = json!({"kind": "Status", "code": 500, "reason": "InternalError"});
        assert!(matches!(decoded("ERROR", failed), Ok(Change::Failed(_))));
    }

    #[test]
    fn malformed_watch_events_are_errors_that_say_what_was_wrong() {
        let bad = decoded("ADDED", json!({"metadata": "no"}));
        assert!(matches!(bad, Err(DecodeError::Object { .. })));
        let bookmark = json!({"metadata": {"resourceVersion": "x"}});
        assert!(matches!(
            decoded("BOOKMARK", bookmark),
            Err(DecodeError::Bookmark { .. })
        ));
        assert!(matches!(
            decoded("SURPRISE", json!({})),
            Err(DecodeError::UnknownType { .. })
        ));
    }
}
