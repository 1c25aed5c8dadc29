//! The objects workload: clients read, create, update and delete a few ConfigMaps through
//! the Rudder API (the API server, its retries of numbered writes across masters, the
//! store), each update a compare-and-swap on the resourceVersion the client last read.
//! Every value written is unique, so "the resourceVersion is still the one I read" is
//! "the value is still the one I read", and the history is a register's, checked by
//! [`crate::check::linear`] like the KV workload's: each ConfigMap a key.
//!
//! | call | as the register sees it |
//! |---|---|
//! | get | a read (NotFound: absent) |
//! | create | a swap from absent (AlreadyExists: not swapped) |
//! | update with the resourceVersion read | a swap from the value read (Conflict for a changed resourceVersion, NotFound: not swapped) |
//! | delete | a deletion (NotFound too: it was absent) |
//!
//! A refusal counts only when it is about the ConfigMap itself (the `Status`'s details name
//! `configmaps`: a namespace not there yet is a NotFound about `namespaces`), and a Conflict
//! only when it says the resourceVersion no longer matches (not that the object kept
//! changing while the server retried). Any other error, or no answer within
//! [`ATTEMPT_LIMIT`], leaves the outcome unknown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rudder_proto::api::DeleteRequest;
use rudder_proto::client::{ApiClient, ClientError};
use serde_json::{json, Value};

use crate::check::linear::{Op, Operation};
use crate::live::Live;

/// Where the workload's ConfigMaps live (every cluster has it).
pub const NAMESPACE: &str = "default";
/// The key a ConfigMap's value is kept under in its data.
const DATA_KEY: &str = "v";
/// How long one call may take before its outcome counts as unknown: the client's own
/// failover (a write goes round the masters for 5 s) is cut short, so that a client keeps
/// asking through a fault.
pub const ATTEMPT_LIMIT: Duration = Duration::from_secs(2);

/// The workload's shape.
#[derive(Debug, Clone)]
pub struct ObjectsWorkload {
    pub clients: u32,
    /// ConfigMaps `chaos-cm-0 ..`.
    pub config_maps: usize,
    pub seed: u64,
    pub live: Arc<Live>,
}

impl ObjectsWorkload {
    /// Runs the clients (each with an API client of its own, over `endpoints`) until
    /// `stop`; every operation, times from `start`, keyed `configmaps/NAME`.
    pub async fn run(
        &self,
        endpoints: Vec<String>,
        stop: Arc<AtomicBool>,
        start: Instant,
    ) -> Vec<Operation> {
        let history: Arc<Mutex<Vec<Operation>>> = Arc::default();
        let clients: Vec<_> = (0..self.clients)
            .map(|id| {
                let api = ApiClient::new(endpoints.clone());
                let (stop, history, workload) = (stop.clone(), history.clone(), self.clone());
                tokio::spawn(async move { workload.client(id, api, start, history, stop).await })
            })
            .collect();
        for client in clients {
            if let Err(error) = client.await {
                eprintln!("an objects workload client ended: {error}");
            }
        }
        let history = history.lock().unwrap_or_else(|p| p.into_inner());
        history.clone()
    }

    async fn client(
        &self,
        id: u32,
        api: ApiClient,
        start: Instant,
        history: Arc<Mutex<Vec<Operation>>>,
        stop: Arc<AtomicBool>,
    ) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed ^ OBJECTS ^ u64::from(id));
        // What this client last read of each ConfigMap: its value and resourceVersion.
        let mut last_read: Vec<Option<(String, String)>> = vec![None; self.config_maps];
        let now = || start.elapsed().as_nanos() as u64;
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let which = rng.random_range(0..self.config_maps);
            let name = format!("chaos-cm-{which}");
            let invoked = now();
            let (asked, heard) = match rng.random_range(0..10) {
                0..=3 => {
                    let heard = get(&api, &name).await;
                    if let Some(seen) = &heard {
                        last_read[which] = seen.clone();
                    }
                    let seen = heard.clone().flatten().map(|(value, _)| value);
                    (Op::Get { seen }, heard.map(|_| true))
                }
                4..=8 => {
                    let new = format!("o{id}-{n}");
                    let expected = last_read[which].clone();
                    let swapped = swap(&api, &name, expected.as_ref(), &new).await;
                    let asked = Op::Cas {
                        expected: expected.map(|(value, _)| value),
                        new,
                        swapped: swapped.unwrap_or(false),
                    };
                    (asked, swapped)
                }
                _ => (Op::Delete, delete(&api, &name).await.then_some(true)),
            };
            let completed = heard.map(|_| now());
            self.live.count(completed.is_some());
            let operation = Operation {
                client: id,
                key: format!("configmaps/{name}"),
                invoked,
                completed,
                op: asked,
            };
            history
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(operation);
            if completed.is_none() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// The workload's salt of its seed (its draws differ from the KV workload's).
const OBJECTS: u64 = 0x6f62_6a65_6374_7300;

/// `name`'s value and resourceVersion (`Some(None)`: absent); `None`: unknown.
async fn get(api: &ApiClient, name: &str) -> Option<Option<(String, String)>> {
    let answer = tokio::time::timeout(ATTEMPT_LIMIT, api.get_object("configmaps", NAMESPACE, name))
        .await
        .ok()?;
    match answer {
        Ok(object) => Some(Some(value_and_version(&object)?)),
        Err(error) if error.is_not_found() && about_config_maps(&error) => Some(None),
        Err(_) => None,
    }
}

/// The value and resourceVersion of a ConfigMap the workload wrote (`None`: not one).
fn value_and_version(object: &Value) -> Option<(String, String)> {
    let value = object["data"][DATA_KEY].as_str()?;
    let version = object["metadata"]["resourceVersion"].as_str()?;
    Some((value.to_string(), version.to_string()))
}

/// Creates `name` holding `new` when `expected` is `None`, else replaces it if it still
/// has `expected`'s resourceVersion: whether it swapped (`None`: unknown).
async fn swap(
    api: &ApiClient,
    name: &str,
    expected: Option<&(String, String)>,
    new: &str,
) -> Option<bool> {
    let mut object = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": {DATA_KEY: new},
    });
    let (answer, call) = match expected {
        None => {
            let create = api.create_object("configmaps", NAMESPACE, &object);
            let answer = tokio::time::timeout(ATTEMPT_LIMIT, create).await.ok()?;
            (answer, Call::Create)
        }
        Some((_, version)) => {
            object["metadata"]["resourceVersion"] = json!(version);
            let update = api.update_object("configmaps", NAMESPACE, name, &object, false);
            let answer = tokio::time::timeout(ATTEMPT_LIMIT, update).await.ok()?;
            (answer, Call::Update)
        }
    };
    swapped(call, answer.map(|_| ()))
}

/// Which write a swap was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Create,
    Update,
}

/// A swap's answer as the register sees it: done, refused by its compare, or unknown.
fn swapped(call: Call, answer: Result<(), ClientError>) -> Option<bool> {
    match answer {
        Ok(()) => Some(true),
        Err(error) if refused_by_compare(call, &error) => Some(false),
        Err(_) => None,
    }
}

/// The refusals that mean the compare failed: the ConfigMap exists (create), its
/// resourceVersion changed or it is gone (update).
fn refused_by_compare(call: Call, error: &ClientError) -> bool {
    let ClientError::Api { message, .. } = error else {
        return false;
    };
    let compare_failed = match (call, error.reason()) {
        (Call::Create, "AlreadyExists") | (Call::Update, "NotFound") => true,
        (Call::Update, "Conflict") => message.contains("the object has been modified"),
        _ => false,
    };
    compare_failed && about_config_maps(error)
}

/// Whether a refusal's `Status` is about a ConfigMap (not, say, its namespace).
fn about_config_maps(error: &ClientError) -> bool {
    let ClientError::Api { status, .. } = error else {
        return false;
    };
    serde_json::from_str::<Value>(status)
        .is_ok_and(|status| status["details"]["kind"] == "configmaps")
}

/// Deletes `name`: whether the answer says it is gone (deleted now, or absent already).
async fn delete(api: &ApiClient, name: &str) -> bool {
    let request = DeleteRequest {
        resource: "configmaps".into(),
        namespace: NAMESPACE.into(),
        name: name.into(),
        ..Default::default()
    };
    match tokio::time::timeout(ATTEMPT_LIMIT, api.delete_object(request)).await {
        Ok(Ok(_)) => true,
        Ok(Err(error)) => error.is_not_found() && about_config_maps(&error),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refusal for `reason`, saying `message`, about an object of `kind`.
    fn refused(reason: &str, message: &str, kind: &str) -> ClientError {
        let status = json!({"kind": "Status", "details": {"name": "chaos-cm-0", "kind": kind}});
        ClientError::Api {
            code: tonic::Code::Aborted,
            reason: reason.into(),
            message: message.into(),
            status: status.to_string(),
        }
    }

    #[test]
    fn only_a_failed_compare_counts_as_not_swapped_and_every_other_error_is_unknown() {
        let modified = "Operation cannot be fulfilled on configmaps \"chaos-cm-0\": the object \
                        has been modified; please apply your changes to the latest version";
        let retried = "the object changed 5 times while this write was retried";
        let cases = [
            (
                Call::Create,
                refused("AlreadyExists", "", "configmaps"),
                Some(false),
            ),
            (
                Call::Update,
                refused("Conflict", modified, "configmaps"),
                Some(false),
            ),
            (
                Call::Update,
                refused("NotFound", "", "configmaps"),
                Some(false),
            ),
            // The namespace not there yet: about another object, the ConfigMap is absent
            // and untouched; unknown, never "not swapped".
            (Call::Create, refused("NotFound", "", "namespaces"), None),
            (Call::Update, refused("NotFound", "", "namespaces"), None),
            (
                Call::Update,
                refused("Conflict", retried, "configmaps"),
                None,
            ),
            (
                Call::Create,
                refused("Conflict", modified, "configmaps"),
                None,
            ),
            (Call::Update, refused("Timeout", "", "configmaps"), None),
            (Call::Update, refused("InternalError", "", ""), None),
        ];
        for (call, error, expected) in cases {
            assert_eq!(
                swapped(call, Err(error.clone())),
                expected,
                "{call:?} {error:?}"
            );
        }
        assert_eq!(swapped(Call::Update, Ok(())), Some(true));
        let unreachable = ClientError::Unreachable {
            endpoints: "a".into(),
            last: "b".into(),
        };
        assert_eq!(swapped(Call::Create, Err(unreachable)), None);
    }

    #[test]
    fn a_config_map_reads_as_its_value_and_resource_version() {
        let object = json!({"metadata": {"resourceVersion": "42"}, "data": {"v": "o1-3"}});
        assert_eq!(
            value_and_version(&object),
            Some(("o1-3".to_string(), "42".to_string()))
        );
        assert_eq!(value_and_version(&json!({"metadata": {}})), None);
    }
}
