//! `rudder bench pod-startup`: create→Running latency of pods bound to one node, measured
//! from the moment each create is sent to the watch event that shows it Running.
//!
//! Against a hollow node (fake runtime) this measures the control path alone: API write,
//! the kubelet's watch, its sync, its status report, the watch back. Against a real node it
//! adds the container runtime.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rudder_proto::api as pb;
use rudder_proto::client::{ApiClient, ClientError};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::stats::{summarize, Summary};

#[derive(Debug, Clone)]
pub struct PodStartupLoad {
    pub endpoints: Vec<String>,
    pub node: String,
    pub pods: usize,
    /// Pods created at once.
    pub parallel: usize,
    pub image: String,
    pub namespace: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PodStartupError {
    #[error("calling the API: {0}")]
    Api(#[from] ClientError),
    #[error("only {running} of {pods} pods were Running within 120 s")]
    NotRunning { running: usize, pods: usize },
    #[error("the watch broke: {0}")]
    Watch(String),
}

pub async fn run(load: &PodStartupLoad) -> Result<Summary, PodStartupError> {
    let client = Arc::new(ApiClient::new(load.endpoints.clone()));
    let namespace =
        json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": load.namespace } });
    let created = client
        .call(|mut c| {
            let json = namespace.to_string().into_bytes();
            async move {
                c.create(pb::CreateRequest {
                    resource: "namespaces".into(),
                    json,
                    ..Default::default()
                })
                .await
            }
        })
        .await;
    if let Err(error) = created {
        if error.reason() != "AlreadyExists" {
            return Err(error.into());
        }
    }
    let mut stream = client
        .open(|mut c| {
            let namespace = load.namespace.clone();
            async move {
                c.watch(pb::WatchRequest {
                    resource: "pods".into(),
                    namespace,
                    resource_version: String::new(),
                    ..Default::default()
                })
                .await
            }
        })
        .await?;
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut creators = Vec::new();
    for _ in 0..load.parallel.max(1) {
        let (client, sent, next, load) = (client.clone(), sent.clone(), next.clone(), load.clone());
        creators.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= load.pods {
                    return Ok::<(), ClientError>(());
                }
                let name = format!("startup-{i:04}");
                let pod = json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": { "name": name },
                    "spec": { "nodeName": load.node, "terminationGracePeriodSeconds": 1,
                              "containers": [{ "name": "app", "image": load.image }] }
                });
                sent.lock().await.insert(name, Instant::now());
                let request = pb::CreateRequest {
                    resource: "pods".into(),
                    namespace: load.namespace.clone(),
                    json: pod.to_string().into_bytes(),
                    ..Default::default()
                };
                client
                    .write(
                        request,
                        |mut c, request| async move { c.create(request).await },
                    )
                    .await?;
            }
        }));
    }
    let mut latencies = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while latencies.len() < load.pods {
        let message = tokio::time::timeout_at(deadline, stream.message()).await;
        let event = match message {
            Err(_) => {
                return Err(PodStartupError::NotRunning {
                    running: latencies.len(),
                    pods: load.pods,
                })
            }
            Ok(Err(status)) => return Err(PodStartupError::Watch(status.message().into())),
            Ok(Ok(None)) => return Err(PodStartupError::Watch("the stream ended".into())),
            Ok(Ok(Some(event))) => event,
        };
        let at = Instant::now();
        let pod: Value = serde_json::from_slice(&event.object).unwrap_or_default();
        let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
        if pod["status"]["phase"] == "Running" && seen.insert(name.clone()) {
            if let Some(sent_at) = sent.lock().await.get(&name) {
                latencies.push(at.saturating_duration_since(*sent_at));
            }
        }
    }
    for creator in creators {
        if let Ok(Err(error)) = creator.await {
            return Err(error.into());
        }
    }
    let _ = client
        .call(|mut c| {
            let name = load.namespace.clone();
            async move {
                c.delete(pb::DeleteRequest {
                    resource: "namespaces".into(),
                    name,
                    ..Default::default()
                })
                .await
            }
        })
        .await;
    // The namespace goes when its pods have stopped: wait, so a real node is left clean.
    let gone_by = tokio::time::Instant::now() + Duration::from_secs(120);
    while tokio::time::Instant::now() < gone_by {
        match client.get_object("namespaces", "", &load.namespace).await {
            Err(error) if error.is_not_found() => break,
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    Ok(summarize(
        "pod startup (create → Running)",
        latencies,
        0,
        started.elapsed(),
    ))
}
