//! Following objects through the API for `rudder bench controllers`: a list, then a watch from
//! its revision that outlives a broken stream, applied to a state until a condition holds,
//! with progress every second and a deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rudder_proto::api::{ListRequest, WatchEvent, WatchRequest};
use rudder_proto::client::ApiClient;
use serde_json::Value;

const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// A list, then a watch from its revision that survives a broken stream: it is reopened (on
/// the next master) from the last revision seen. Bookmarks only move that revision.
pub struct Follow {
    client: Arc<ApiClient>,
    request: WatchRequest,
    stream: tonic::Streaming<WatchEvent>,
    /// The list's objects, applied as ADDED by the first [`follow_until`].
    listed: Vec<Value>,
}

/// Reopenings in a row, without an event between, before a watch is given up.
const REOPENS: u32 = 10;

impl Follow {
    /// Lists `resource` in `namespace` matching `selector` and watches it from there.
    pub async fn open(
        client: &Arc<ApiClient>,
        resource: &str,
        namespace: &str,
        selector: &str,
    ) -> anyhow::Result<Self> {
        let what = || format!("{resource} {selector} in {namespace}");
        let listed = client
            .list(ListRequest {
                resource: resource.into(),
                namespace: namespace.into(),
                label_selector: selector.into(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("listing {}", what()))?;
        let objects = listed
            .items
            .iter()
            .map(|item| serde_json::from_slice(item))
            .collect::<Result<Vec<Value>, _>>()
            .with_context(|| format!("listing {}: an item is not JSON", what()))?;
        let request = WatchRequest {
            resource: resource.into(),
            namespace: namespace.into(),
            label_selector: selector.into(),
            resource_version: listed.resource_version,
            allow_bookmarks: true,
            ..Default::default()
        };
        let stream = client
            .watch(request.clone())
            .await
            .with_context(|| format!("watching {}", what()))?;
        Ok(Self {
            client: client.clone(),
            request,
            stream,
            listed: objects,
        })
    }

    /// The label selector it follows.
    pub fn selector(&self) -> &str {
        &self.request.label_selector
    }

    /// The next change: its type (ADDED, MODIFIED, DELETED) and the object.
    async fn next(&mut self) -> anyhow::Result<(String, Value)> {
        let mut reopened = 0;
        loop {
            let event = match self.stream.message().await {
                Ok(Some(event)) => event,
                broken => {
                    reopened += 1;
                    anyhow::ensure!(
                        reopened <= REOPENS,
                        "the watch of {} broke {REOPENS} times in a row (last: {}): are the \
                         masters up?",
                        self.request.resource,
                        match broken {
                            Err(status) => status.message().to_string(),
                            _ => "the stream ended".into(),
                        }
                    );
                    self.client.skip_current();
                    self.stream = self
                        .client
                        .watch(self.request.clone())
                        .await
                        .context("reopening a broken watch")?;
                    continue;
                }
            };
            let object: Value = serde_json::from_slice(&event.object)
                .context("a watch event whose object is not JSON")?;
            if event.r#type == "ERROR" {
                bail!(
                    "the watch of {} ended: {} (rerun the benchmark)",
                    self.request.resource,
                    object["message"].as_str().unwrap_or("no message")
                );
            }
            if let Some(revision) = object["metadata"]["resourceVersion"].as_str() {
                self.request.resource_version = revision.to_string();
            }
            if event.r#type != "BOOKMARK" {
                return Ok((event.r#type, object));
            }
        }
    }
}

/// One wait: what it is (for progress and errors), when it started (the measure is from
/// there) and when its phase must be done by.
pub struct Wait {
    pub what: String,
    pub started: Instant,
    pub deadline: Deadline,
}

/// When a phase must be done by, and the limit it came from (for the message).
#[derive(Clone, Copy)]
pub struct Deadline {
    at: Instant,
    limit: Duration,
}

impl Deadline {
    pub fn after(limit: Duration) -> Self {
        Self {
            at: Instant::now() + limit,
            limit,
        }
    }
}

/// Applies `follow`'s list (the first time) and then its events to `state` until
/// `done(state)`, printing `progress(state)` every second. Returns how long after
/// `wait.started` the event that made it done arrived.
pub async fn follow_until<S>(
    wait: Wait,
    follow: &mut Follow,
    state: &mut S,
    mut apply: impl FnMut(&mut S, &str, &Value),
    done: impl Fn(&S) -> bool,
    progress: impl Fn(&S) -> String,
) -> anyhow::Result<Duration> {
    for object in std::mem::take(&mut follow.listed) {
        apply(&mut *state, "ADDED", &object);
    }
    let Wait {
        what,
        started,
        deadline,
    } = wait;
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    while !done(&*state) {
        tokio::select! {
            event = follow.next() => {
                let (kind, object) = event.with_context(|| format!("{what}: following"))?;
                apply(&mut *state, &kind, &object);
            }
            _ = tick.tick() => {
                let elapsed = started.elapsed().as_secs_f64();
                eprintln!("  {what}: {} ({elapsed:.1} s)", progress(&*state));
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline.at)) => {
                bail!(
                    "{what}: not done within the phase's {:?} (--timeout): {}; keep the \
                     masters' logs with RUDDER_KEEP_CLUSTER_DIR=1 to see why",
                    deadline.limit,
                    progress(&*state)
                );
            }
        }
    }
    Ok(started.elapsed())
}
