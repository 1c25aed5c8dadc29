//! The Job controller's shell: an actix actor that turns Job and pod events into Job keys,
//! and workers that reconcile a key and carry the plan out under the leader's fence: pods
//! created in slow-start batches and deleted (expectations lowered by what the cache shows),
//! tracking finalizers removed once the status holds a pod's end, the status written at the
//! Job's resourceVersion (a conflict means the cache lagged: look again), and a finished
//! Job past its TTL deleted with its pods.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use rudder_proto::api::{DeleteRequest, Fence};
use rudder_proto::client::{ApiClient, ClientError};
use serde_json::json;

use super::reconcile::{reconcile, Plan};
use super::template::TRACKING_FINALIZER;
use crate::controllers::runtime::{Controller, Subscriptions, Watches};
use crate::controllers::writes;
use crate::events::{object_reference, Recorder};
use crate::expectations::Expectations;
use crate::informer::{Cache, Event, ObjectKey};
use crate::pods::cached::Pod;
use crate::queue::WorkQueue;

#[derive(Clone)]
pub struct Caches {
    pub jobs: Cache<Job>,
    pub pods: Cache<Pod>,
}

/// The Job controller: clones share the caches, the queue and the expectations (each worker
/// holds one).
#[derive(Clone)]
pub struct JobController {
    client: Arc<ApiClient>,
    fence: Fence,
    caches: Caches,
    queue: WorkQueue<ObjectKey>,
    expectations: Arc<Mutex<Expectations>>,
    recorder: Recorder,
}

impl JobController {
    /// The controller for the leader holding `fence`.
    pub fn new(client: Arc<ApiClient>, fence: Fence, caches: Caches, recorder: Recorder) -> Self {
        Self {
            client,
            fence,
            caches,
            recorder,
            queue: WorkQueue::default(),
            expectations: Arc::default(),
        }
    }

    fn expectations(&self) -> MutexGuard<'_, Expectations> {
        self.expectations.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Controller for JobController {
    type Key = ObjectKey;
    const NAME: &'static str = "job";

    fn queue(&self) -> &WorkQueue<ObjectKey> {
        &self.queue
    }

    fn watch(&self, caches: &mut Subscriptions<'_, Self>) {
        caches.watch(&self.caches.jobs);
        caches.watch(&self.caches.pods);
    }

    async fn sync(&self, key: ObjectKey) -> Result<Option<Duration>, ClientError> {
        sync(self, &key).await
    }
}

impl Watches<Job> for JobController {
    fn on_event(&self, event: &Event<Job>) {
        if let Some(key) = event.key() {
            self.queue.add(key);
        }
    }
}

impl Watches<Pod> for JobController {
    fn on_event(&self, event: &Event<Pod>) {
        if let Event::Added(pod) = event {
            if let Some(job) = ObjectKey::controller_of(&pod.metadata, "Job") {
                self.expectations().creation_observed(&job.to_string());
            }
        }
        if let Some(pod) = event.deletion_seen() {
            if let Some(job) = ObjectKey::controller_of(&pod.metadata, "Job") {
                let name = pod.metadata.name.clone().unwrap_or_default();
                self.expectations()
                    .deletion_observed(&job.to_string(), &name);
            }
        }
        for pod in event.states() {
            if let Some(job) = ObjectKey::controller_of(&pod.metadata, "Job") {
                self.queue.add(job);
            }
        }
    }
}

async fn sync(shared: &JobController, key: &ObjectKey) -> Result<Option<Duration>, ClientError> {
    let expectation_key = key.to_string();
    let Some(job) = shared.caches.jobs.get(key) else {
        shared.expectations().forget(&expectation_key);
        release_orphans(shared, key).await?;
        return Ok(None);
    };
    let pods = shared.caches.pods.in_namespace(&key.namespace);
    let may_act = shared
        .expectations()
        .satisfied(&expectation_key, Instant::now());
    let plan = reconcile(&job, &pods, may_act, jiff::Timestamp::now());
    if let Some(invalid) = &plan.invalid {
        tracing::warn!(job = %key, %invalid, "cannot run this Job");
        return Ok(None);
    }
    carry_out(shared, key, &job, &plan).await?;
    Ok(plan.requeue_after)
}

async fn carry_out(
    shared: &JobController,
    key: &ObjectKey,
    job: &Job,
    plan: &Plan,
) -> Result<(), ClientError> {
    let api = shared.client.fenced(&shared.fence);
    let namespace = key.namespace.as_str();
    let expectation_key = key.to_string();
    // The status first: it holds the ends counted, before their finalizers go.
    if plan.status_changed {
        // A whole replacement at the Job's resourceVersion, not a merge patch: a merge patch
        // cannot clear a field the new status leaves out (uncountedTerminatedPods emptied),
        // and the ends it held would be counted again.
        let mut body = serde_json::to_value(job).expect("a Job always encodes");
        body["status"] = serde_json::to_value(&plan.status).expect("a status always encodes");
        api.update_object("jobs", namespace, &key.name, &body, true)
            .await?;
    }
    for pod in &plan.remove_finalizers {
        remove_tracking_finalizer(&api, pod).await?;
    }
    let bodies: Vec<_> = plan
        .create
        .iter()
        .map(|new| serde_json::to_value(&new.pod).expect("a pod always encodes"))
        .collect();
    let bookkeeping = writes::Bookkeeping {
        expectations: &shared.expectations,
        expectation_key: &expectation_key,
        recorder: &shared.recorder,
        owner: &object_reference(job),
    };
    writes::replace_pods(&api, &bookkeeping, namespace, &plan.delete, &bodies).await?;
    if plan.delete_job {
        let request = DeleteRequest {
            resource: "jobs".into(),
            namespace: namespace.into(),
            name: key.name.clone(),
            propagation_policy: "Background".into(),
            ..Default::default()
        };
        match api.delete_object(request).await {
            Ok(_) => {}
            Err(error) if error.is_not_found() => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// The Job is gone (deleted with Background or Orphan propagation): its pods must not keep
/// the tracking finalizer, or they would never go.
async fn release_orphans(shared: &JobController, key: &ObjectKey) -> Result<(), ClientError> {
    let api = shared.client.fenced(&shared.fence);
    let pods = shared.caches.pods.in_namespace(&key.namespace);
    let orphans = pods.iter().filter(|pod| {
        ObjectKey::controller_of(&pod.metadata, "Job").as_ref() == Some(key)
            && pod
                .metadata
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == TRACKING_FINALIZER)
    });
    for pod in orphans {
        remove_tracking_finalizer(&api, pod).await?;
    }
    Ok(())
}

async fn remove_tracking_finalizer(
    api: &rudder_proto::client::Fenced<'_>,
    pod: &Pod,
) -> Result<(), ClientError> {
    let finalizers: Vec<&String> = pod
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != TRACKING_FINALIZER)
        .collect();
    let patch = json!({ "metadata": {
        "finalizers": finalizers,
        "resourceVersion": pod.metadata.resource_version,
    } });
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    match api
        .patch_object("pods", &namespace, &name, &patch, false)
        .await
    {
        Ok(_) => Ok(()),
        Err(error) if error.is_not_found() => Ok(()),
        Err(error) => Err(error),
    }
}
