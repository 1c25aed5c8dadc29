//! The CronJob controller's shell: CronJob and Job events become CronJob keys; a worker
//! reconciles one (reconcile.rs) and carries the plan out under the leader's fence: the
//! deletions (Replace's active Jobs, old history; background propagation), then the Job for
//! the scheduled time, then the status with the new Job in `active`, and the plan's events.
//! It looks again at the next scheduled time.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use rudder_proto::api::{DeleteRequest, Fence};
use rudder_proto::client::{ApiClient, ClientError};
use serde_json::json;

use super::history::job_reference;
use super::reconcile::{self, reconcile, Plan};
use crate::controllers::runtime::{Controller, Subscriptions, Watches};
use crate::events::{object_reference, EventType, Recorder};
use crate::informer::{Cache, Event, ObjectKey};
use crate::queue::WorkQueue;

#[derive(Clone)]
pub struct Caches {
    pub cron_jobs: Cache<CronJob>,
    pub jobs: Cache<Job>,
}

/// The CronJob controller: clones share the caches, the queue and the recorder.
#[derive(Clone)]
pub struct CronJobController {
    client: Arc<ApiClient>,
    fence: Fence,
    caches: Caches,
    queue: WorkQueue<ObjectKey>,
    recorder: Recorder,
}

impl CronJobController {
    /// The controller for the leader holding `fence`.
    pub fn new(client: Arc<ApiClient>, fence: Fence, caches: Caches, recorder: Recorder) -> Self {
        Self {
            client,
            fence,
            caches,
            queue: WorkQueue::default(),
            recorder,
        }
    }
}

impl Controller for CronJobController {
    type Key = ObjectKey;
    const NAME: &'static str = "cronjob";

    fn queue(&self) -> &WorkQueue<ObjectKey> {
        &self.queue
    }

    fn watch(&self, caches: &mut Subscriptions<'_, Self>) {
        caches.watch(&self.caches.cron_jobs);
        caches.watch(&self.caches.jobs);
    }

    async fn sync(&self, key: ObjectKey) -> Result<Option<Duration>, ClientError> {
        let Some(cron_job) = self.caches.cron_jobs.get(&key) else {
            return Ok(None);
        };
        let jobs = self.caches.jobs.in_namespace(&key.namespace);
        let plan = reconcile(&cron_job, &jobs, jiff::Timestamp::now());
        self.carry_out(&key, &cron_job, plan).await
    }
}

impl CronJobController {
    async fn carry_out(
        &self,
        key: &ObjectKey,
        cron_job: &CronJob,
        mut plan: Plan,
    ) -> Result<Option<Duration>, ClientError> {
        let api = self.client.fenced(&self.fence);
        let reference = object_reference(cron_job);
        for event in &plan.events {
            let type_ = match event.type_ {
                reconcile::EventType::Normal => EventType::Normal,
                reconcile::EventType::Warning => EventType::Warning,
            };
            self.recorder
                .record(&reference, type_, event.reason, event.message.clone());
        }
        for job in &plan.delete {
            let name = job.metadata.name.clone().unwrap_or_default();
            let request = DeleteRequest {
                resource: "jobs".into(),
                namespace: key.namespace.clone(),
                name: name.clone(),
                precondition_uid: job.metadata.uid.clone().unwrap_or_default(),
                propagation_policy: "Background".into(),
                ..Default::default()
            };
            match api.delete_object(request).await {
                Ok(_) => self.recorder.record(
                    &reference,
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("Deleted job {name}"),
                ),
                Err(error) if error.is_not_found() => {}
                Err(error) => return Err(error),
            }
        }
        if let Some(job) = &plan.create {
            let body = serde_json::to_value(job).expect("a Job always encodes");
            let name = job.metadata.name.clone().unwrap_or_default();
            match api.create_object("jobs", &key.namespace, &body).await {
                Ok(created) => {
                    self.recorder.record(
                        &reference,
                        EventType::Normal,
                        "SuccessfulCreate",
                        format!("Created job {name}"),
                    );
                    if let Ok(created) = serde_json::from_value::<Job>(created) {
                        plan.status
                            .active
                            .get_or_insert_with(Vec::new)
                            .push(job_reference(&created));
                    }
                    plan.status_changed = true;
                }
                // Made by an earlier sync whose answer was lost (the name is the scheduled
                // time): the next sync finds it and lists it as active.
                Err(error) if error.reason() == "AlreadyExists" => {}
                Err(error) => {
                    self.recorder.record(
                        &reference,
                        EventType::Warning,
                        "FailedCreate",
                        format!("Error creating job: {error}"),
                    );
                    return Err(error);
                }
            }
        }
        if plan.status_changed {
            api.patch_object(
                "cronjobs",
                &key.namespace,
                &key.name,
                &json!({ "status": plan.status }),
                true,
            )
            .await?;
        }
        Ok(plan.requeue_after)
    }
}

impl Watches<CronJob> for CronJobController {
    fn on_event(&self, event: &Event<CronJob>) {
        if let Some(key) = event.key() {
            self.queue.add(key);
        }
    }
}

impl Watches<Job> for CronJobController {
    fn on_event(&self, event: &Event<Job>) {
        for job in event.states() {
            if let Some(owner) = ObjectKey::controller_of(&job.metadata, "CronJob") {
                self.queue.add(owner);
            }
        }
    }
}
