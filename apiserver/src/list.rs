//! `list`: one consistent snapshot of a kind, filtered by label and field selectors, in
//! pages. Every page of one list reads the store at the first page's revision, so a paged
//! list is the same as an unpaged one (until compaction removes that revision: then the
//! continue token has expired and the client lists again).

use base64::Engine;
use rudder_raftstore::kv::{prefix_end, KeyRange, RangeRequest, Revision};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;
use crate::kinds::KindInfo;
use crate::object;
use crate::registry::Registry;
use crate::selectors::Selectors;

/// Keys read per store request while filling a page through selectors.
const SCAN_CHUNK: i64 = 500;

#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub namespace: String,
    pub label_selector: String,
    pub field_selector: String,
    /// At most this many items (0: all).
    pub limit: i64,
    pub continue_token: String,
    /// "" reads linearizably; "0" accepts this master's local state.
    pub resource_version: String,
}

#[derive(Debug, Clone)]
pub struct ListResult {
    pub info: &'static KindInfo,
    pub items: Vec<Value>,
    /// The revision the list reflects: watching from it misses nothing.
    pub revision: Revision,
    pub continue_token: String,
    /// Items after this page, when known (lists without selectors).
    pub remaining: Option<i64>,
}

/// Where the next page starts, at which revision.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct ContinueToken {
    rev: Revision,
    start: String,
}

impl Registry {
    pub async fn list(
        &self,
        resource: &str,
        options: &ListOptions,
    ) -> Result<ListResult, ApiError> {
        let info = self.kind(resource)?;
        let selectors = Selectors::parse(info, &options.label_selector, &options.field_selector)?;
        if options.limit < 0 {
            return Err(ApiError::bad_field("limit", "limit must not be negative"));
        }
        let namespace = if info.namespaced {
            options.namespace.as_str()
        } else {
            ""
        };
        let prefix = object::prefix(info, namespace);
        let end = prefix_end(&prefix);
        let (mut start, mut revision) = match options.continue_token.as_str() {
            "" => (prefix.clone(), 0),
            token => {
                let token = decode_token(token)?;
                if !token.start.as_bytes().starts_with(&prefix) {
                    return Err(ApiError::bad_field(
                        "continue",
                        "the continue token belongs to another list: pass the token from the \
                         previous page of this same list",
                    ));
                }
                (token.start.into_bytes(), token.rev)
            }
        };
        let serializable = options.resource_version == "0" && revision == 0;
        let mut items = Vec::new();
        let wanted = usize::try_from(options.limit).unwrap_or(usize::MAX);
        loop {
            let chunk = if options.limit == 0 {
                0
            } else if selectors.is_everything() {
                options.limit - items.len() as i64
            } else {
                SCAN_CHUNK.max(options.limit - items.len() as i64)
            };
            let (header, page) = self
                .range(RangeRequest {
                    range: KeyRange {
                        key: start.clone(),
                        range_end: end.clone(),
                    },
                    limit: chunk,
                    revision,
                    serializable,
                    ..Default::default()
                })
                .await
                .map_err(|error| expired_continue(error, &options.continue_token))?;
            if revision == 0 {
                revision = header.revision;
            }
            let read = page.kvs.len();
            for (index, kv) in page.kvs.iter().enumerate() {
                let object = object::decode(kv)?;
                if selectors.matches(&object) {
                    items.push(object);
                }
                let left_in_chunk = index + 1 < read;
                if options.limit > 0 && items.len() == wanted && (left_in_chunk || page.more) {
                    let mut next = kv.key.clone();
                    next.push(0);
                    let remaining = selectors
                        .is_everything()
                        .then(|| page.count - (index as i64 + 1));
                    return Ok(ListResult {
                        info,
                        items,
                        revision,
                        continue_token: encode_token(revision, &next),
                        remaining,
                    });
                }
            }
            match page.kvs.last() {
                Some(last) if page.more => {
                    start = last.key.clone();
                    start.push(0);
                }
                _ => break,
            }
        }
        Ok(ListResult {
            info,
            items,
            revision,
            continue_token: String::new(),
            remaining: None,
        })
    }
}

fn encode_token(revision: Revision, start: &[u8]) -> String {
    let token = ContinueToken {
        rev: revision,
        start: String::from_utf8_lossy(start).into_owned(),
    };
    let json = serde_json::to_vec(&token).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn decode_token(token: &str) -> Result<ContinueToken, ApiError> {
    let invalid = || {
        ApiError::bad_field(
            "continue",
            "the continue token is malformed: pass the token from the previous page unchanged",
        )
    };
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid())?;
    serde_json::from_slice(&json).map_err(|_| invalid())
}

fn expired_continue(error: ApiError, token: &str) -> ApiError {
    match error {
        // Only a compacted revision makes a read Expired.
        ApiError::Expired { .. } if !token.is_empty() => ApiError::Expired {
            message: "The provided continue parameter is too old to display a consistent list \
                      result. You can start a new list without the continue parameter."
                .into(),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_garbage_is_refused() {
        let token = encode_token(42, b"/registry/pods/default/b\0");
        let back = decode_token(&token).unwrap();
        assert_eq!(back.rev, 42);
        assert_eq!(back.start, "/registry/pods/default/b\0");
        assert!(decode_token("not a token!").is_err());
    }
}
