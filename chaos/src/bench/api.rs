//! `rudder bench api`: pods through the API server — concurrent creates, paged and full
//! lists, and a watch that must deliver every create (its delivery latency measured from
//! the moment each create was sent) — over either wire form of the API: gRPC ([`Grpc`])
//! or the Kubernetes HTTP API (`api_http.rs`), both behind [`Transport`].
//!
//! ```text
//!  watch (from the namespace's current revision) ──────────────► deliveries (name → seen at)
//!  clients × create pod-i (sent at) ──► API (any master) ──► store
//!  then: list in pages of 500, and in one response
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use rudder_proto::api as pb;
use rudder_proto::client::ApiClient;
use serde::Serialize;
use serde_json::json;
use tokio::sync::Mutex;

use super::stats::{summarize, Summary};

/// The shape of one run.
#[derive(Debug, Clone)]
pub struct ApiLoad {
    pub pods: usize,
    pub clients: usize,
    /// The namespace the pods go to (created if missing, deleted afterwards).
    pub namespace: String,
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApiReport {
    pub create: Summary,
    pub list_paged: Summary,
    pub list_full: Summary,
    pub watch_delivery: Summary,
    /// Pods the watch saw, of those created.
    pub watch_delivered: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiBenchError {
    #[error("preparing the run: {0}")]
    Prepare(String),
    #[error("the watch broke after {seen} events: {reason}")]
    Watch { seen: usize, reason: String },
    #[error("the watch delivered {seen} of {created} pods within 60 s of the last create")]
    Missed { seen: usize, created: usize },
    #[error("listing: {0}")]
    List(String),
    #[error("a load task panicked: {0}")]
    TaskPanicked(#[from] tokio::task::JoinError),
}

/// One page of a list: how many items, the list's version, and the next page's token.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub items: usize,
    pub resource_version: String,
    pub continue_token: String,
}

/// The names of pods the watch saw added, or why it broke.
pub type Additions = Pin<Box<dyn Stream<Item = Result<Option<String>, String>> + Send>>;

/// The API verbs the benchmark makes, over one wire form. Errors are the server's words.
pub trait Transport: Send + Sync + 'static {
    fn create_namespace(&self, name: &str) -> impl Future<Output = Result<(), String>> + Send;
    fn delete_namespace(&self, name: &str) -> impl Future<Output = Result<(), String>> + Send;
    fn create_pod(
        &self,
        namespace: &str,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<(), String>> + Send;
    fn list_pods(
        &self,
        namespace: &str,
        limit: i64,
        token: &str,
    ) -> impl Future<Output = Result<Page, String>> + Send;
    /// Watches the namespace's pods from `version`: for each event, the name of a pod
    /// added (`None` for other events).
    fn watch_pods(
        &self,
        namespace: &str,
        version: &str,
    ) -> impl Future<Output = Result<Additions, String>> + Send;
}

pub fn pod(name: &str) -> Vec<u8> {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "labels": { "app": "bench", "tier": "load" } },
        "spec": { "containers": [{
            "name": "app", "image": "registry.local/bench:1.0",
            "ports": [{ "containerPort": 8080 }],
            "resources": { "requests": { "cpu": "100m", "memory": "64Mi" } }
        }] }
    })
    .to_string()
    .into_bytes()
}

pub async fn run<T: Transport>(api: Arc<T>, load: &ApiLoad) -> Result<ApiReport, ApiBenchError> {
    api.create_namespace(&load.namespace)
        .await
        .map_err(ApiBenchError::Prepare)?;

    // The watch starts first, from the revision an empty list reports.
    let listed = api
        .list_pods(&load.namespace, 1, "")
        .await
        .map_err(ApiBenchError::List)?;
    let mut stream = api
        .watch_pods(&load.namespace, &listed.resource_version)
        .await
        .map_err(ApiBenchError::Prepare)?;
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watch_sent = sent.clone();
    let expected = load.pods;
    let watcher = tokio::spawn(async move {
        let mut delays = Vec::with_capacity(expected);
        while delays.len() < expected {
            match stream.next().await {
                Some(Ok(Some(name))) => {
                    let seen = Instant::now();
                    if let Some(at) = watch_sent.lock().await.get(&name) {
                        delays.push(seen.saturating_duration_since(*at));
                    }
                }
                Some(Ok(None)) => {}
                None => return Err(("the stream ended".to_string(), delays)),
                Some(Err(reason)) => return Err((reason, delays)),
            }
        }
        Ok(delays)
    });

    // Creates, spread over the clients.
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..load.clients.max(1) {
        let api = api.clone();
        let next = next.clone();
        let sent = sent.clone();
        let namespace = load.namespace.clone();
        let total = load.pods;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let name = format!("bench-{i:06}");
                let body = pod(&name);
                let at = Instant::now();
                sent.lock().await.insert(name, at);
                match api.create_pod(&namespace, body).await {
                    Ok(()) => latencies.push(at.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut last_progress = Instant::now();
    for task in tasks {
        let (mut own, own_errors) = task.await?;
        latencies.append(&mut own);
        errors += own_errors;
        if load.progress && last_progress.elapsed() > Duration::from_secs(2) {
            eprintln!("  created {} pods...", latencies.len());
            last_progress = Instant::now();
        }
    }
    let create = summarize("create pod", latencies, errors, started.elapsed());
    let created = create.ops as usize;

    let watched = match tokio::time::timeout(Duration::from_secs(60), watcher).await {
        Ok(joined) => joined?,
        Err(_) => return Err(ApiBenchError::Missed { seen: 0, created }),
    };
    let delays = match watched {
        Ok(delays) => delays,
        Err((reason, delays)) => {
            return Err(ApiBenchError::Watch {
                seen: delays.len(),
                reason,
            })
        }
    };
    let watch_delivered = delays.len();
    let watch_delivery = summarize("watch delivery", delays, 0, started.elapsed());

    // Lists: every page of 500, then everything at once; five rounds each.
    let mut paged = Vec::new();
    let mut full = Vec::new();
    let lists_started = Instant::now();
    for _ in 0..5 {
        let at = Instant::now();
        let mut token = String::new();
        loop {
            let page = api
                .list_pods(&load.namespace, 500, &token)
                .await
                .map_err(ApiBenchError::List)?;
            token = page.continue_token;
            if token.is_empty() {
                break;
            }
        }
        paged.push(at.elapsed());
        let at = Instant::now();
        let all = api
            .list_pods(&load.namespace, 0, "")
            .await
            .map_err(ApiBenchError::List)?;
        full.push(at.elapsed());
        if all.items != created {
            return Err(ApiBenchError::Missed {
                seen: all.items,
                created,
            });
        }
    }
    let list_paged = summarize(
        &format!("list {created} pods (pages of 500)"),
        paged,
        0,
        lists_started.elapsed(),
    );
    let list_full = summarize(
        &format!("list {created} pods (one response)"),
        full,
        0,
        lists_started.elapsed(),
    );
    let _ = api.delete_namespace(&load.namespace).await;
    Ok(ApiReport {
        create,
        list_paged,
        list_full,
        watch_delivery,
        watch_delivered,
    })
}

/// The API over gRPC (`Resources`), failing over between masters.
pub struct Grpc {
    client: ApiClient,
}

impl Grpc {
    pub fn new(endpoints: Vec<String>) -> Self {
        Self::with_tls(endpoints, None)
    }

    /// Over TLS with `tls` when given (masters with `--pki`).
    pub fn with_tls(endpoints: Vec<String>, tls: Option<rudder_proto::tls::ClientTls>) -> Self {
        Self {
            client: ApiClient::with_tls(endpoints, tls),
        }
    }
}

impl Transport for Grpc {
    async fn create_namespace(&self, name: &str) -> Result<(), String> {
        let namespace =
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } });
        match self
            .client
            .create_object("namespaces", "", &namespace)
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if error.reason() == "AlreadyExists" => Ok(()),
            Err(error) => Err(error.to_string()),
        }
    }

    async fn delete_namespace(&self, name: &str) -> Result<(), String> {
        let request = pb::DeleteRequest {
            resource: "namespaces".into(),
            name: name.to_owned(),
            ..Default::default()
        };
        self.client
            .delete_object(request)
            .await
            .map(drop)
            .map_err(|error| error.to_string())
    }

    async fn create_pod(&self, namespace: &str, body: Vec<u8>) -> Result<(), String> {
        let request = pb::CreateRequest {
            resource: "pods".into(),
            namespace: namespace.to_owned(),
            json: body,
            fence: None,
            dry_run: false,
        };
        self.client
            .write(
                request,
                |mut c, request| async move { c.create(request).await },
            )
            .await
            .map(drop)
            .map_err(|error| error.to_string())
    }

    async fn list_pods(&self, namespace: &str, limit: i64, token: &str) -> Result<Page, String> {
        let request = pb::ListRequest {
            resource: "pods".into(),
            namespace: namespace.into(),
            limit,
            continue_token: token.into(),
            ..Default::default()
        };
        let listed = self
            .client
            .call(|mut c| {
                let request = request.clone();
                async move { c.list(request).await }
            })
            .await
            .map_err(|error| error.to_string())?;
        Ok(Page {
            items: listed.items.len(),
            resource_version: listed.resource_version,
            continue_token: listed.continue_token,
        })
    }

    async fn watch_pods(&self, namespace: &str, version: &str) -> Result<Additions, String> {
        let request = pb::WatchRequest {
            resource: "pods".into(),
            namespace: namespace.to_owned(),
            resource_version: version.to_owned(),
            ..Default::default()
        };
        let stream = self
            .client
            .open(|mut c| {
                let request = request.clone();
                async move { c.watch(request).await }
            })
            .await
            .map_err(|error| error.to_string())?;
        let additions = futures::stream::unfold(stream, |mut stream| async move {
            let item = match stream.message().await {
                Ok(Some(event)) if event.r#type == "ADDED" => {
                    let object: serde_json::Value =
                        serde_json::from_slice(&event.object).unwrap_or_default();
                    let name = object["metadata"]["name"].as_str().unwrap_or("").to_owned();
                    Ok(Some(name))
                }
                Ok(Some(_)) => Ok(None),
                Ok(None) => return None,
                Err(status) => Err(status.message().to_owned()),
            };
            Some((item, stream))
        });
        Ok(Box::pin(additions))
    }
}
