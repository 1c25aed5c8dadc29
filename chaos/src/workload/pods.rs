//! The pods workload: ReplicaSets, Deployments and a StatefulSet on the hollow nodes,
//! scaled (and the Deployments rolled out anew) at random through the Rudder API while the faults strike,
//! so that the controllers and the scheduler work through them. Each change asked for is
//! recorded with its outcome; what the cluster made of them is read back from the store
//! afterwards and judged by [`crate::check::kube`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rudder_proto::api::ListRequest;
use rudder_proto::client::ApiClient;
use serde_json::{json, Value};

use crate::live::Live;

/// Where the workload's objects live.
pub const NAMESPACE: &str = "chaos";
/// The workload's ReplicaSets (`rs-0` ...) and Deployments (`deploy-0` ...).
const REPLICA_SETS: usize = 3;
const DEPLOYMENTS: usize = 2;
/// The workload's StatefulSet (`sts-0`), its pods made and removed in parallel.
const STATEFUL_SET: &str = "sts-0";
/// Replicas are drawn from 0 to this: five objects asking for 25 pods on average, on six
/// four-pod nodes (24 places), so the scheduler meets full nodes and often no room at all
/// (pods wait: the allocatable check is tested, not idle).
const MOST_REPLICAS: i64 = 10;
/// The least time between two changes of one object: the checks allow a controller to act
/// on the replicas before the latest change, never on older ones.
pub const CHANGE_GAP: Duration = Duration::from_secs(5);
/// How often the workload picks an object to change.
const PACE: Duration = Duration::from_millis(400);
/// How long one change may take before its outcome counts as unknown.
const ATTEMPT_LIMIT: Duration = Duration::from_secs(3);

/// One change asked of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    /// `replicasets/rs-0`, `deployments/deploy-1`.
    pub object: String,
    /// `replicas 3`, or `rollout 2` (the pod template changed, a new revision).
    pub change: String,
    pub invoked_ms: u64,
    pub completed_ms: u64,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// An error answer: most often it did not happen (an answer lost on its way back is an
    /// error too).
    Refused(String),
    /// Unanswered in time: it may or may not have happened.
    Unknown(String),
}

/// The workload, drawn from `seed`.
pub struct PodsWorkload {
    pub seed: u64,
    /// Counts the changes asked, as they are.
    pub live: Arc<Live>,
}

impl PodsWorkload {
    /// The namespace and the objects (two replicas each), once `nodes` are all Ready;
    /// waits up to `limit`.
    pub async fn set_up(
        &self,
        client: &ApiClient,
        nodes: &[String],
        limit: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace",
                               "metadata": {"name": NAMESPACE}});
        let mut wanted = vec![("namespaces", "", namespace)];
        for i in 0..REPLICA_SETS {
            wanted.push(("replicasets", NAMESPACE, replica_set(&format!("rs-{i}"))));
        }
        for i in 0..DEPLOYMENTS {
            wanted.push(("deployments", NAMESPACE, deployment(&format!("deploy-{i}"))));
        }
        wanted.push(("statefulsets", NAMESPACE, stateful_set(STATEFUL_SET)));
        for (resource, namespace, object) in wanted {
            loop {
                match client.create_object(resource, namespace, &object).await {
                    Ok(_) => break,
                    Err(error) if error.reason() == "AlreadyExists" => break,
                    Err(error) if Instant::now() > deadline => {
                        return Err(format!(
                            "creating {resource} {}: {error}",
                            object["metadata"]["name"]
                        ));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
        loop {
            let ready = ready_nodes(client).await.unwrap_or_default();
            let missing: Vec<&String> = nodes.iter().filter(|n| !ready.contains(n)).collect();
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("nodes not Ready within {limit:?}: {missing:?}"));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Changes the objects until `stop`, one every [`PACE`] and none twice within
    /// [`CHANGE_GAP`]; times are from `start`.
    pub async fn run(self, client: ApiClient, stop: Arc<AtomicBool>, start: Instant) -> Vec<Asked> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed ^ PODS);
        let objects: Vec<(&str, String)> = (0..REPLICA_SETS)
            .map(|i| ("replicasets", format!("rs-{i}")))
            .chain((0..DEPLOYMENTS).map(|i| ("deployments", format!("deploy-{i}"))))
            .chain([("statefulsets", STATEFUL_SET.to_string())])
            .collect();
        let mut last_change = vec![None::<Instant>; objects.len()];
        let mut rollouts = 0;
        let mut asked = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(PACE).await;
            let pick = rng.random_range(0..objects.len());
            if last_change[pick].is_some_and(|at| at.elapsed() < CHANGE_GAP) {
                continue;
            }
            let (resource, name) = &objects[pick];
            let roll = *resource == "deployments" && rng.random_bool(0.4);
            let (change, patch) = match roll {
                true => {
                    rollouts += 1;
                    let template = json!({"metadata": {"annotations": {"chaos/rollout": rollouts.to_string()}}});
                    (
                        format!("rollout {rollouts}"),
                        json!({"spec": {"template": template}}),
                    )
                }
                false => {
                    let replicas = rng.random_range(0..=MOST_REPLICAS);
                    (
                        format!("replicas {replicas}"),
                        json!({"spec": {"replicas": replicas}}),
                    )
                }
            };
            let invoked = start.elapsed();
            let patched = tokio::time::timeout(
                ATTEMPT_LIMIT,
                client.patch_object(resource, NAMESPACE, name, &patch, false),
            )
            .await;
            let outcome = match patched {
                Ok(Ok(_)) => Outcome::Done,
                Ok(Err(error)) if error.is_timeout() => Outcome::Unknown(error.to_string()),
                Ok(Err(error)) => Outcome::Refused(error.to_string()),
                Err(_) => Outcome::Unknown(format!("no answer within {ATTEMPT_LIMIT:?}")),
            };
            // Even a refused change may have landed (an answer lost on the way back looks
            // like an error too): the gap holds from every attempt.
            last_change[pick] = Some(Instant::now());
            self.live.pod_changes.fetch_add(1, Ordering::Relaxed);
            asked.push(Asked {
                object: format!("{resource}/{name}"),
                change,
                invoked_ms: invoked.as_millis() as u64,
                completed_ms: start.elapsed().as_millis() as u64,
                outcome,
            });
        }
        asked
    }
}

/// Mixed into the seed for the workload's generator ("pods").
const PODS: u64 = 0x706f_6473;

/// The pod template every kind runs: a hollow container asking for a little CPU and memory,
/// gone at once when deleted.
fn template(app: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "app",
                "image": "chaos.local/app:1",
                "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}},
            }],
        },
    })
}

fn replica_set(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}}, "template": template(name)},
    })
}

fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
            "template": template(name),
        },
    })
}

/// A StatefulSet whose pods are made and removed all at once (`Parallel`: hollow pods need
/// not be Ready for the next ordinal), so that scaling under faults makes and deletes
/// ordinals often.
fn stateful_set(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": 2,
            "serviceName": name,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": name}},
            "template": template(name),
        },
    })
}

/// The names of the nodes that are Ready.
async fn ready_nodes(client: &ApiClient) -> Result<Vec<String>, String> {
    let listed = client
        .list(ListRequest {
            resource: "nodes".into(),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(listed
        .items
        .iter()
        .filter_map(|item| serde_json::from_slice::<Value>(item).ok())
        .filter(|node| {
            node["status"]["conditions"].as_array().is_some_and(|all| {
                all.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .filter_map(|node| node["metadata"]["name"].as_str().map(str::to_string))
        .collect())
}
