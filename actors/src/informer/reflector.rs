//! The reflector: the shell that fills a [`Cache`] from the API. It lists, watches from the
//! list's revision, resumes a broken stream from the last revision seen (bookmarks advance
//! it) on whichever master the client fails over to, lists again when the server says the
//! revision is compacted (ERROR 410), and waits a bounded, growing delay after each failure.
//!
//! ```text
//!   ┌─► cache.resume_from()? ── None ──► list ─► cache.replace ──┐
//!   │            │ Some(revision)                                │
//!   │            ▼                                               │
//!   │   watch from revision ─► each event ─► cache.apply         │
//!   │            │ stream broke / ERROR: next master, after a delay
//!   │            │ ERROR 410: cache expired ─► list              │
//!   └────────────┴───────────────────────────────────────────────┘
//! ```

use std::sync::Arc;

use rudder_proto::api as pb;
use rudder_proto::client::{ApiClient, ClientError};

use super::backoff::Backoff;
use super::cache::Cache;
use super::event::{decode, Change};
use super::object::ApiObject;

/// How often the server sends a bookmark on a quiet watch (so a resume starts near now).
const BOOKMARK_INTERVAL_MS: u32 = 10_000;

/// Which objects an informer follows: a resource, optionally one namespace and selectors in
/// their text form (`app=web`, `spec.nodeName=n1`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// The API's resource name (`pods`, `replicasets`).
    pub resource: String,
    /// Empty: every namespace.
    pub namespace: String,
    pub label_selector: String,
    pub field_selector: String,
}

impl Query {
    /// Every object of `K`'s kind.
    pub fn all<K: k8s_openapi::Resource>() -> Self {
        Self {
            resource: K::URL_PATH_SEGMENT.to_string(),
            ..Default::default()
        }
    }

    pub fn in_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    pub fn labels(mut self, selector: impl Into<String>) -> Self {
        self.label_selector = selector.into();
        self
    }

    pub fn fields(mut self, selector: impl Into<String>) -> Self {
        self.field_selector = selector.into();
        self
    }
}

/// Fills `cache` with `query`'s objects until the future is dropped.
pub(super) async fn reflect<K: ApiObject>(client: Arc<ApiClient>, query: Query, cache: Cache<K>) {
    let mut backoff = Backoff::default();
    loop {
        let outcome = match cache.resume_from() {
            None => list(&client, &query, &cache).await,
            Some(revision) => watch(&client, &query, &cache, revision, &mut backoff).await,
        };
        match outcome {
            Ok(Progress::Listed) => backoff.reset(),
            Ok(Progress::Expired) => {
                tracing::info!(
                    resource = query.resource,
                    "watch revision compacted; listing"
                );
            }
            Ok(Progress::Broke) => {
                // The master went away or lost its quorum: resume on another one.
                client.skip_current();
                tokio::time::sleep(backoff.delay()).await;
            }
            Err(error) => {
                let delay = backoff.delay();
                tracing::warn!(%error, resource = query.resource, ?delay, "informer retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// How one list or watch ended.
enum Progress {
    Listed,
    /// The watch's revision was compacted: the cache must be listed again.
    Expired,
    /// The stream ended or failed: resume from the last revision seen.
    Broke,
}

async fn list<K: ApiObject>(
    client: &ApiClient,
    query: &Query,
    cache: &Cache<K>,
) -> Result<Progress, ClientError> {
    let listed = client
        .list(pb::ListRequest {
            resource: query.resource.clone(),
            namespace: query.namespace.clone(),
            label_selector: query.label_selector.clone(),
            field_selector: query.field_selector.clone(),
            ..Default::default()
        })
        .await?;
    let Ok(revision) = listed.resource_version.parse() else {
        return Err(ClientError::Api {
            code: tonic::Code::Internal,
            reason: "InternalError".into(),
            message: format!(
                "the list of {} has a resourceVersion that is not a revision: {:?}",
                query.resource, listed.resource_version
            ),
            status: String::new(),
        });
    };
    let mut items = Vec::with_capacity(listed.items.len());
    for item in &listed.items {
        match serde_json::from_slice(item) {
            Ok(object) => items.push(object),
            Err(error) => {
                tracing::warn!(%error, resource = query.resource, "a listed object does not decode")
            }
        }
    }
    cache.replace(items, revision);
    Ok(Progress::Listed)
}

async fn watch<K: ApiObject>(
    client: &ApiClient,
    query: &Query,
    cache: &Cache<K>,
    revision: u64,
    backoff: &mut Backoff,
) -> Result<Progress, ClientError> {
    let mut stream = client
        .watch(pb::WatchRequest {
            resource: query.resource.clone(),
            namespace: query.namespace.clone(),
            label_selector: query.label_selector.clone(),
            field_selector: query.field_selector.clone(),
            resource_version: revision.to_string(),
            allow_bookmarks: true,
            bookmark_interval_ms: BOOKMARK_INTERVAL_MS,
        })
        .await?;
    while let Ok(Some(event)) = stream.message().await {
        backoff.reset();
        match decode::<K>(&event.r#type, &event.object) {
            Ok(Change::Expired) => {
                cache.apply(Change::Expired);
                return Ok(Progress::Expired);
            }
            Ok(Change::Failed(status)) => {
                tracing::info!(
                    resource = query.resource,
                    message = status.message.as_deref().unwrap_or(""),
                    "watch ended by the server; resuming"
                );
                return Ok(Progress::Broke);
            }
            Ok(change) => cache.apply(change),
            Err(error) => {
                tracing::warn!(%error, resource = query.resource, "skipping a watch event")
            }
        }
    }
    Ok(Progress::Broke)
}
