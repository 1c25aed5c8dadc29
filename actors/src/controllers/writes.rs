//! The writes workload controllers share, under the leader's fence: creating objects in
//! slow-start batches, deleting a set of them, and setting an object's owner references. Each
//! reports what will never show up in the cache, so the caller lowers its expectations by
//! exactly that.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::future::join_all;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use rudder_proto::api::DeleteRequest;
use rudder_proto::client::{ClientError, Fenced};
use serde_json::{json, Value};

use super::replicaset::reconcile::slow_start_batches;
use crate::events::{EventType, Recorder};
use crate::expectations::Expectations;
use crate::pods::cached::Pod;

/// Creates that stopped at an error.
#[derive(Debug)]
pub struct CreateFailed {
    pub error: ClientError,
    /// Objects that will never be seen: the failed creates and the batches not sent.
    pub unseen: usize,
    /// The names of those created before it stopped.
    pub created: Vec<String>,
}

/// Creates `bodies` of `resource` in `namespace` in batches of 1, 2, 4, ... (Kubernetes'
/// slow start): a batch with a failure ends the run, so a quota or an admission refusal costs
/// one request, not hundreds. Returns the names created (generated names included).
pub async fn create_in_batches(
    api: &Fenced<'_>,
    resource: &str,
    namespace: &str,
    bodies: &[Value],
) -> Result<Vec<String>, CreateFailed> {
    let mut pending = bodies.iter();
    let mut created = Vec::new();
    for batch in slow_start_batches(bodies.len()) {
        let results = join_all(
            pending
                .by_ref()
                .take(batch)
                .map(|body| api.create_object(resource, namespace, body)),
        )
        .await;
        let mut failed = None;
        for result in results {
            match result {
                Ok(object) => created.push(
                    object["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                ),
                Err(error) => {
                    failed.get_or_insert(error);
                }
            }
        }
        if let Some(error) = failed {
            return Err(CreateFailed {
                error,
                unseen: bodies.len() - created.len(),
                created,
            });
        }
    }
    Ok(created)
}

/// What a controller keeps account of as it writes for one object: its expectations (under
/// the object's key) and its events (on the object).
#[derive(Clone, Copy)]
pub struct Bookkeeping<'a> {
    pub expectations: &'a Mutex<Expectations>,
    pub expectation_key: &'a str,
    pub recorder: &'a Recorder,
    pub owner: &'a ObjectReference,
}

/// One sync's pod changes for a controller with expectations: `delete` and then `create`
/// (pod bodies) in `namespace`, under one expectation for both (setting them apart would let
/// the second forget the first), lowered by exactly what will never be seen, with the
/// events Kubernetes records on `owner`. The first failure is returned after both ran.
pub async fn replace_pods(
    api: &Fenced<'_>,
    controller: &Bookkeeping<'_>,
    namespace: &str,
    delete: &[Arc<Pod>],
    create: &[Value],
) -> Result<(), ClientError> {
    let Bookkeeping {
        expectations,
        expectation_key,
        recorder,
        owner,
    } = *controller;
    let expectations = || expectations.lock().unwrap_or_else(|p| p.into_inner());
    let names: Vec<String> = delete
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    if !create.is_empty() || !names.is_empty() {
        let count = u32::try_from(create.len()).unwrap_or(u32::MAX);
        expectations().expect(expectation_key, count, &names, Instant::now());
    }
    let deleted = delete_all(api, "pods", namespace, &names).await;
    for name in &deleted.unseen {
        expectations().deletion_observed(expectation_key, name);
    }
    let created = create_in_batches(api, "pods", namespace, create).await;
    record_pod_writes(
        recorder,
        owner,
        &created,
        &deleted.done,
        deleted.error.as_ref(),
    );
    if let Err(failed) = created {
        for _ in 0..failed.unseen {
            expectations().creation_observed(expectation_key);
        }
        return Err(failed.error);
    }
    deleted.error.map_or(Ok(()), Err)
}

/// Events for what a run of creates and deletes of pods did, in Kubernetes' words
/// (`SuccessfulCreate` "Created pod: x", `FailedCreate`, `SuccessfulDelete` "Deleted pod:
/// x", `FailedDelete`), on the controller's object.
pub fn record_pod_writes(
    recorder: &Recorder,
    owner: &ObjectReference,
    created: &Result<Vec<String>, CreateFailed>,
    deleted: &[String],
    delete_error: Option<&ClientError>,
) {
    let names = match created {
        Ok(names) => names,
        Err(failed) => &failed.created,
    };
    for name in names {
        recorder.record(
            owner,
            EventType::Normal,
            "SuccessfulCreate",
            format!("Created pod: {name}"),
        );
    }
    if let Err(failed) = created {
        let message = format!("Error creating: {}", failed.error);
        recorder.record(owner, EventType::Warning, "FailedCreate", message);
    }
    for name in deleted {
        recorder.record(
            owner,
            EventType::Normal,
            "SuccessfulDelete",
            format!("Deleted pod: {name}"),
        );
    }
    if let Some(error) = delete_error {
        let message = format!("Error deleting: {error}");
        recorder.record(owner, EventType::Warning, "FailedDelete", message);
    }
}

/// What deleting a set of objects came to.
#[derive(Debug, Default)]
pub struct Deleted {
    /// Names deleted (or marked for deletion) by this call.
    pub done: Vec<String>,
    /// Names whose deletion will never be seen (the delete failed, or they were gone).
    pub unseen: Vec<String>,
    /// The first failure other than NotFound.
    pub error: Option<ClientError>,
}

/// Deletes `names` of `resource` in `namespace`, all at once. `Deleted::done` lists those
/// deleted by this call.
pub async fn delete_all(
    api: &Fenced<'_>,
    resource: &str,
    namespace: &str,
    names: &[String],
) -> Deleted {
    let deletes = names.iter().map(|name| {
        let request = DeleteRequest {
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.clone(),
            ..Default::default()
        };
        async move { (name, api.delete_object(request).await) }
    });
    let mut outcome = Deleted::default();
    for (name, result) in join_all(deletes).await {
        match result {
            Ok(_) => outcome.done.push(name.clone()),
            Err(error) => {
                outcome.unseen.push(name.clone());
                if !error.is_not_found() {
                    outcome.error.get_or_insert(error);
                }
            }
        }
    }
    outcome
}

/// Sets the owner references of `resource` `meta` to `owners`, at the resourceVersion read
/// (adopting or releasing an object the cache shows as it no longer is must fail).
pub async fn set_owners(
    api: &Fenced<'_>,
    resource: &str,
    meta: &ObjectMeta,
    owners: Vec<OwnerReference>,
) -> Result<(), ClientError> {
    let patch = json!({ "metadata": {
        "ownerReferences": owners,
        "resourceVersion": meta.resource_version,
    } });
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let name = meta.name.as_deref().unwrap_or_default();
    api.patch_object(resource, namespace, name, &patch, false)
        .await
        .map(drop)
}

/// Adds `owner` to the object's references.
pub async fn adopt(
    api: &Fenced<'_>,
    resource: &str,
    meta: &ObjectMeta,
    owner: OwnerReference,
) -> Result<(), ClientError> {
    let mut owners = meta.owner_references.clone().unwrap_or_default();
    owners.push(owner);
    set_owners(api, resource, meta, owners).await
}

/// Removes the reference to the owner with `owner_uid`.
pub async fn release(
    api: &Fenced<'_>,
    resource: &str,
    meta: &ObjectMeta,
    owner_uid: &str,
) -> Result<(), ClientError> {
    let owners = meta
        .owner_references
        .iter()
        .flatten()
        .filter(|o| o.uid != owner_uid)
        .cloned()
        .collect();
    set_owners(api, resource, meta, owners).await
}
