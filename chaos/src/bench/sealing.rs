//! `rudder bench secrets`: what sealing Secrets at rest costs. ConfigMaps and Secrets that
//! carry the same bytes (ConfigMaps' `binaryData`, Secrets' `data`: the same base64 in the
//! same JSON size) are created through the API by the same clients, in alternating rounds
//! on one cluster, so the two differ only in the encryption on write; then each kind is
//! listed whole, which opens every Secret. The ratios are the cost.
//!
//! ```text
//!  round 1: N ConfigMaps, N Secrets; round 2: ... (alternating, so drift hits both)
//!  then: list all ConfigMaps, list all Secrets (five times each)
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use rudder_proto::api as pb;
use rudder_proto::client::ApiClient;
use serde::Serialize;
use serde_json::{json, Value};

use super::stats::{summarize, Summary};

/// The shape of one run.
#[derive(Debug, Clone)]
pub struct SealingLoad {
    /// Objects of each kind per round.
    pub per_round: usize,
    pub rounds: usize,
    pub clients: usize,
    /// Bytes of data in each object (before base64).
    pub value_bytes: usize,
    /// The namespace the objects go to (created, and deleted afterwards).
    pub namespace: String,
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SealingReport {
    pub create_config_maps: Summary,
    pub create_secrets: Summary,
    pub list_config_maps: Summary,
    pub list_secrets: Summary,
}

impl SealingReport {
    /// Secrets' creates/s over ConfigMaps'.
    pub fn create_ratio(&self) -> f64 {
        self.create_secrets.throughput / self.create_config_maps.throughput.max(f64::MIN_POSITIVE)
    }

    /// Secrets' full-list p50 time over ConfigMaps'.
    pub fn list_ratio(&self) -> f64 {
        self.list_secrets.p50_ms / self.list_config_maps.p50_ms.max(f64::MIN_POSITIVE)
    }
}

/// The two kinds compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ConfigMap,
    Secret,
}

impl Kind {
    fn resource(self) -> &'static str {
        match self {
            Kind::ConfigMap => "configmaps",
            Kind::Secret => "secrets",
        }
    }

    /// Object `name` carrying `encoded` (base64) under the key `payload`.
    fn object(self, name: &str, encoded: &str) -> Value {
        match self {
            Kind::ConfigMap => json!({
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name },
                "binaryData": { "payload": encoded },
            }),
            Kind::Secret => json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": { "name": name },
                "type": "Opaque", "data": { "payload": encoded },
            }),
        }
    }
}

/// Latencies and time spent creating one kind, over the rounds.
#[derive(Default)]
struct Creates {
    latencies: Vec<Duration>,
    errors: u64,
    spent: Duration,
}

pub async fn run(client: &Arc<ApiClient>, load: &SealingLoad) -> Result<SealingReport, String> {
    let namespace =
        json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": load.namespace } });
    match client.create_object("namespaces", "", &namespace).await {
        Ok(_) => {}
        Err(error) if error.reason() == "AlreadyExists" => {}
        Err(error) => return Err(format!("creating namespace {}: {error}", load.namespace)),
    }
    let bytes: Vec<u8> = (0..load.value_bytes)
        .map(|_| rand::random::<u8>())
        .collect();
    let encoded = Arc::new(base64::engine::general_purpose::STANDARD.encode(bytes));
    let mut config_maps = Creates::default();
    let mut secrets = Creates::default();
    for round in 0..load.rounds {
        for (kind, creates) in [
            (Kind::ConfigMap, &mut config_maps),
            (Kind::Secret, &mut secrets),
        ] {
            create_round(client, load, kind, round, &encoded, creates).await?;
        }
        if load.progress {
            eprintln!(
                "  round {} of {}: {} ConfigMaps and {} Secrets so far",
                round + 1,
                load.rounds,
                config_maps.latencies.len(),
                secrets.latencies.len()
            );
        }
    }
    let created = load.per_round * load.rounds;
    let list_config_maps = list_five_times(client, load, Kind::ConfigMap, created).await?;
    let list_secrets = list_five_times(client, load, Kind::Secret, created).await?;
    let _ = client
        .delete_object(pb::DeleteRequest {
            resource: "namespaces".into(),
            name: load.namespace.clone(),
            ..pb::DeleteRequest::default()
        })
        .await;
    Ok(SealingReport {
        create_config_maps: summarize(
            "create ConfigMap",
            config_maps.latencies,
            config_maps.errors,
            config_maps.spent,
        ),
        create_secrets: summarize(
            "create Secret",
            secrets.latencies,
            secrets.errors,
            secrets.spent,
        ),
        list_config_maps,
        list_secrets,
    })
}

/// `load.per_round` objects of `kind`, spread over the clients.
async fn create_round(
    client: &Arc<ApiClient>,
    load: &SealingLoad,
    kind: Kind,
    round: usize,
    encoded: &Arc<String>,
    creates: &mut Creates,
) -> Result<(), String> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..load.clients.max(1) {
        let (client, next, encoded) = (client.clone(), next.clone(), encoded.clone());
        let (namespace, total) = (load.namespace.clone(), load.per_round);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let object = kind.object(&format!("bench-{round}-{i:06}"), &encoded);
                let at = Instant::now();
                match client
                    .create_object(kind.resource(), &namespace, &object)
                    .await
                {
                    Ok(_) => latencies.push(at.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    for task in tasks {
        let (mut latencies, errors) = task
            .await
            .map_err(|error| format!("a load task panicked: {error}"))?;
        creates.latencies.append(&mut latencies);
        creates.errors += errors;
    }
    creates.spent += started.elapsed();
    Ok(())
}

/// Lists every object of `kind` in one response, five times; each must hold `created`.
async fn list_five_times(
    client: &ApiClient,
    load: &SealingLoad,
    kind: Kind,
    created: usize,
) -> Result<Summary, String> {
    let mut times = Vec::new();
    let started = Instant::now();
    for _ in 0..5 {
        let at = Instant::now();
        let listed = client
            .list(pb::ListRequest {
                resource: kind.resource().into(),
                namespace: load.namespace.clone(),
                ..pb::ListRequest::default()
            })
            .await
            .map_err(|error| format!("listing {}: {error}", kind.resource()))?;
        times.push(at.elapsed());
        if listed.items.len() != created {
            return Err(format!(
                "listed {} {} of {created} created",
                listed.items.len(),
                kind.resource()
            ));
        }
    }
    Ok(summarize(
        &format!("list {created} {} (one response)", kind.resource()),
        times,
        0,
        started.elapsed(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_kinds_carry_the_same_bytes_in_the_same_size() {
        let encoded = "AAECAwQ=";
        let config_map = Kind::ConfigMap.object("x", encoded);
        let secret = Kind::Secret.object("x", encoded);
        assert_eq!(
            config_map["binaryData"]["payload"],
            secret["data"]["payload"]
        );
        let size = |object: &Value| object.to_string().len();
        // Only the kind's name and Secret's `type` differ.
        assert!(size(&secret).abs_diff(size(&config_map)) < 32);
    }
}
