//! The event recorder's shell: [`Recorder::record`] queues an occurrence and returns at once;
//! one task per recorder runs the correlator and writes what it decides through the API.
//!
//! ```text
//!  record() ─ try_send ─► queue (1000; full: dropped and counted)
//!                            │
//!                            ▼
//!  task: correlate (correlator.rs) ─► Create ─► create_object("events")
//!                                  ─► Patch  ─► patch_object("events"); NotFound ─► create
//!                                  ─► Drop
//! ```
//!
//! The task ends once every clone of the recorder is dropped and the queue is drained.
//!
//! Events are written without the leader's fence: Kubernetes does not fence them either. An
//! event from a leader that has just lost its lease is history, true when it happened, and
//! refusing it would only lose the story of the handover.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use rudder_proto::client::{ApiClient, ClientError};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::correlator::{Correlator, Decision, EventType, Occurrence};

/// Occurrences waiting to be written (client-go's `maxQueuedEvents`).
const QUEUE_CAPACITY: usize = 1000;
/// Tries per event while no API server answers (client-go's `maxTriesPerEvent`).
const MAX_TRIES: u32 = 12;
/// The pause between tries (client-go's `defaultSleepDuration`).
const RETRY_PAUSE: Duration = Duration::from_secs(10);

/// One occurrence on its way to the writer, with the time it was recorded.
struct Queued {
    occurrence: Occurrence,
    at: Timestamp,
}

/// Records events about objects on behalf of one component. Cheap to clone: the clones share
/// one queue and one writer task.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Queued>,
    dropped: Arc<AtomicU64>,
    component: Arc<str>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("component", &self.component)
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl Recorder {
    /// A recorder for `component` (`replicaset-controller`, `default-scheduler`) on `host`
    /// ("" for none, as controllers report; the scheduler and kubelets give theirs). Starts its
    /// writer task, so it must be called within a tokio runtime.
    pub fn new(client: Arc<ApiClient>, component: &str, host: &str) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE_CAPACITY);
        let correlator = Correlator::new(component, host);
        tokio::spawn(write_events(pending, client, correlator));
        Self {
            queue,
            dropped: Arc::default(),
            component: component.into(),
        }
    }

    /// Records that `reason` (short, UpperCamelCase: `SuccessfulCreate`) happened to `object`
    /// (see [`object_reference`]). Never blocks and never fails: when the queue is full the
    /// event is dropped and counted ([`Recorder::dropped`]).
    pub fn record(
        &self,
        object: &ObjectReference,
        type_: EventType,
        reason: &str,
        message: String,
    ) {
        tracing::debug!(
            component = %self.component,
            kind = ?object.kind,
            namespace = ?object.namespace,
            name = ?object.name,
            type_ = type_.as_str(),
            reason,
            "event: {message}"
        );
        let queued = Queued {
            occurrence: Occurrence {
                involved: object.clone(),
                type_,
                reason: reason.to_string(),
                message,
            },
            at: Timestamp::now(),
        };
        match self.queue.try_send(queued) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // Said at the 1st, 2nd, 4th, 8th, ... drop: an overload floods no log.
                if dropped.is_power_of_two() {
                    tracing::warn!(
                        component = %self.component,
                        dropped,
                        "the event queue is full; events are being dropped"
                    );
                }
            }
            // The writer ends early only with its runtime (shutting down).
            Err(TrySendError::Closed(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// How many events were dropped because the queue was full (or its writer gone).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The reference to `object` an event is about: its kind, apiVersion, namespace, name, uid
/// and resourceVersion.
pub fn object_reference<K>(object: &K) -> ObjectReference
where
    K: k8s_openapi::Resource + k8s_openapi::Metadata<Ty = ObjectMeta>,
{
    let metadata = object.metadata();
    ObjectReference {
        api_version: Some(K::API_VERSION.to_string()),
        kind: Some(K::KIND.to_string()),
        namespace: metadata.namespace.clone(),
        name: metadata.name.clone(),
        uid: metadata.uid.clone(),
        resource_version: metadata.resource_version.clone(),
        field_path: None,
    }
}

/// The writer task: correlates each queued occurrence and writes the decision, one at a
/// time, so the correlator sees the writes in order. Ends when every sender is gone.
async fn write_events(
    mut pending: mpsc::Receiver<Queued>,
    client: Arc<ApiClient>,
    mut correlator: Correlator,
) {
    let mut last_suffix = 0;
    while let Some(Queued { occurrence, at }) = pending.recv().await {
        let suffix = unique_suffix(at, &mut last_suffix);
        match correlator.correlate(occurrence, at, suffix) {
            Decision::Drop => {
                tracing::debug!("event dropped: its object's event budget is spent");
            }
            decision => write(&client, &decision, &mut pending).await,
        }
    }
}

/// The time in nanoseconds, as client-go names events, moved past the last suffix given so
/// that two events about one object in the same nanosecond still get distinct names.
fn unique_suffix(at: Timestamp, last: &mut u64) -> u64 {
    let nanos = u64::try_from(at.as_nanosecond()).unwrap_or(0);
    *last = nanos.max(last.saturating_add(1));
    *last
}

/// Writes one decision. While no API server answers it tries again, up to [`MAX_TRIES`]
/// times, as client-go does, but not once every recorder is gone; a refusal by the API
/// server is final (the same event would be refused again).
async fn write(client: &ApiClient, decision: &Decision, pending: &mut mpsc::Receiver<Queued>) {
    let mut tries = 1;
    loop {
        let error = match write_once(client, decision).await {
            Ok(()) => return,
            Err(error) => error,
        };
        let unreachable = matches!(error, ClientError::Unreachable { .. });
        if !unreachable || tries >= MAX_TRIES || pending.is_closed() {
            if error.reason() == "AlreadyExists" {
                tracing::debug!(%error, "the event exists already");
            } else {
                tracing::warn!(%error, tries, "cannot write an event; dropping it");
            }
            return;
        }
        tracing::debug!(%error, tries, "cannot write an event; trying again");
        tokio::time::sleep(pause(tries)).await;
        tries += 1;
    }
}

/// The pause after failed try number `tries`. The first is spread over the whole pause (the
/// sub-second part of the clock serves as the random number), so that components which lost
/// the API servers together do not all come back at once; client-go randomizes it too.
fn pause(tries: u32) -> Duration {
    if tries > 1 {
        return RETRY_PAUSE;
    }
    let spread = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    RETRY_PAUSE * spread / 1_000_000_000
}

async fn write_once(client: &ApiClient, decision: &Decision) -> Result<(), ClientError> {
    match decision {
        Decision::Create(event) => create(client, event).await,
        Decision::Patch {
            namespace,
            name,
            count,
            last_timestamp,
            message,
            event,
        } => {
            let patch = json!({
                "count": count,
                "lastTimestamp": Time(*last_timestamp),
                "message": message
            });
            match client
                .patch_object("events", namespace, name, &patch, false)
                .await
            {
                // The event expired on the server (or its create never landed): write it whole.
                Err(error) if error.is_not_found() => create(client, event).await,
                result => result.map(drop),
            }
        }
        Decision::Drop => Ok(()),
    }
}

async fn create(client: &ApiClient, event: &Event) -> Result<(), ClientError> {
    let namespace = event.metadata.namespace.as_deref().unwrap_or("default");
    let object = serde_json::to_value(event).expect("an event always encodes");
    client
        .create_object("events", namespace, &object)
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Node;

    use super::*;

    #[test]
    fn a_reference_names_the_object_fully() {
        let pod = k8s_openapi::api::core::v1::Pod {
            metadata: ObjectMeta {
                namespace: Some("web".into()),
                name: Some("web-1".into()),
                uid: Some("u-1".into()),
                resource_version: Some("42".into()),
                ..ObjectMeta::default()
            },
            ..Default::default()
        };
        let expected = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some("web".into()),
            name: Some("web-1".into()),
            uid: Some("u-1".into()),
            resource_version: Some("42".into()),
            field_path: None,
        };
        assert_eq!(object_reference(&pod), expected);
        let mut node = Node::default();
        node.metadata.name = Some("node-1".into());
        let reference = object_reference(&node);
        assert_eq!(reference.kind.as_deref(), Some("Node"));
        assert_eq!(reference.namespace, None);
    }

    #[test]
    fn suffixes_are_the_time_in_nanoseconds_and_never_repeat() {
        let at = Timestamp::from_second(1_700_000_000).expect("a valid time");
        let mut last = 0;
        let first = unique_suffix(at, &mut last);
        assert_eq!(first, 1_700_000_000_000_000_000);
        assert_eq!(unique_suffix(at, &mut last), first + 1);
        let later = Timestamp::from_second(1_700_000_001).expect("a valid time");
        assert_eq!(unique_suffix(later, &mut last), 1_700_000_001_000_000_000);
    }

    #[test]
    fn only_the_first_pause_is_spread() {
        assert!(pause(1) < RETRY_PAUSE);
        assert_eq!(pause(2), RETRY_PAUSE);
    }

    #[tokio::test]
    async fn record_never_blocks_and_counts_what_it_drops() {
        // Nothing listens there; the writer would only fail, slowly.
        let client = Arc::new(ApiClient::new(vec!["127.0.0.1:1".into()]));
        let recorder = Recorder::new(client, "test-controller", "");
        let object = ObjectReference::default();
        for i in 0..(QUEUE_CAPACITY + 10) {
            recorder.record(&object, EventType::Normal, "Tested", format!("event {i}"));
        }
        // The writer has not run yet (the test has not yielded): exactly the excess dropped.
        assert_eq!(recorder.dropped(), 10);
    }
}
