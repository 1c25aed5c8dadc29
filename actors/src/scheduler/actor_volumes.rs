//! The scheduler actor's VolumeBinding (a child of `actor.rs`, sharing its state): Reserve
//! (what a placed pod's claims need, assumed in the snapshot), PreBind (the fenced writes,
//! then the wait for the claims to be bound, without holding a bind slot), and the claim,
//! volume and class events that feed the snapshot's storage and end the waits.

use std::time::Instant;

use actix::prelude::*;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

use super::super::claims::pre_bind;
use super::super::queue::ClusterEvent;
use super::super::volumes::{check_bindings, PodVolumes, PreBind, Progress};
use super::{
    is_pending_for_us, uid_of, Attempt, BindFailure, Scheduler, VolumeWait, WaitEnd,
    VOLUME_BIND_TIMEOUT,
};
use crate::informer::{Event, ObjectKey};
use crate::pods::cached::Pod;

impl Scheduler {
    /// VolumeBinding's Reserve: what the pod's claims need on `node`, assumed in the
    /// snapshot at once, so that the next pod placed sees the volumes taken.
    pub(super) fn reserve_volumes(&mut self, pod: &Pod, node: &str) -> Result<PreBind, String> {
        let plan = {
            let Some(info) = self.snapshot.node(node) else {
                return Err(format!("node {node:?} not found"));
            };
            PodVolumes::new(pod, self.snapshot.storage())
                .pre_bind(info.node())
                .map_err(|unfit| unfit.to_string())?
        };
        let storage = self.snapshot.storage_mut();
        for volume in &plan.reserve {
            storage.assume_volume(volume.clone());
        }
        for claim in &plan.select {
            storage.assume_claim(claim.clone());
        }
        Ok(plan)
    }

    /// VolumeBinding's PreBind writes, then the wait for the claims.
    pub(super) fn write_pre_bind(
        &mut self,
        attempt: Attempt,
        reference: ObjectReference,
        plan: PreBind,
        ctx: &mut Context<Self>,
    ) {
        self.binds_in_flight += 1;
        let client = self.client.clone();
        let fence = self.fence.clone();
        let writes = plan.clone();
        let writing = async move { pre_bind(&client.fenced(&fence), &writes).await };
        ctx.spawn(writing.into_actor(self).map(move |result, actor, ctx| {
            actor.binds_in_flight -= 1;
            match result {
                Ok(waits) => {
                    let deadline = Instant::now() + VOLUME_BIND_TIMEOUT;
                    let key = attempt.key.clone();
                    let wait = VolumeWait {
                        attempt,
                        reference,
                        plan,
                        waits,
                        deadline,
                    };
                    if let Some(replaced) = actor.volume_waits.insert(key, wait) {
                        // An older pod of that name, gone: what it assumed goes too.
                        actor.snapshot.storage_mut().forget(&replaced.plan);
                    }
                    actor.check_volume_waits(Instant::now(), ctx);
                }
                Err(error) => {
                    actor.snapshot.storage_mut().forget(&plan);
                    actor.bound(attempt, &reference, Err(BindFailure::PreBind(error)), ctx);
                }
            }
            actor.want_pass(ctx);
        }));
    }

    /// Looks at every pod waiting for its claims (`checkBindings`): those whose claims are
    /// bound go to their bind, those that cannot end well (or waited too long) fail.
    pub(super) fn check_volume_waits(&mut self, now: Instant, ctx: &mut Context<Self>) {
        if self.volume_waits.is_empty() {
            return;
        }
        let mut ended = Vec::new();
        for (key, wait) in &self.volume_waits {
            let current = self.caches.pods.get(key);
            let same = current
                .as_ref()
                .is_some_and(|p| uid_of(p) == wait.attempt.uid && is_pending_for_us(p));
            let end = if !same {
                WaitEnd::Gone
            } else if let Some(node) = self.snapshot.node(&wait.attempt.node) {
                match check_bindings(&wait.waits, self.snapshot.storage(), node.node()) {
                    Progress::Bound => WaitEnd::Bound,
                    Progress::Waiting if now < wait.deadline => continue,
                    Progress::Waiting => {
                        WaitEnd::Failed("timed out waiting for the condition".to_string())
                    }
                    Progress::Failed(why) => WaitEnd::Failed(why),
                }
            } else {
                WaitEnd::Failed(format!("node {:?} not found", wait.attempt.node))
            };
            ended.push((key.clone(), end));
        }
        for (key, end) in ended {
            let Some(wait) = self.volume_waits.remove(&key) else {
                continue;
            };
            match end {
                WaitEnd::Bound => {
                    tracing::debug!(pod = %key, node = %wait.attempt.node, "claims bound");
                    self.ready.push_back((wait.attempt, wait.reference));
                    self.want_pass(ctx);
                }
                WaitEnd::Gone => self.snapshot.storage_mut().forget(&wait.plan),
                WaitEnd::Failed(why) => {
                    self.snapshot.storage_mut().forget(&wait.plan);
                    let failure = Err(BindFailure::Volumes(why));
                    self.bound(wait.attempt, &wait.reference, failure, ctx);
                }
            }
        }
    }
}

impl Scheduler {
    /// A claim, volume or class was added or changed: pods VolumeBinding parked look again,
    /// and pods waiting for their claims are checked.
    fn storage_changed(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        self.queue.move_parked(ClusterEvent::VolumeChanged, now);
        self.check_volume_waits(now, ctx);
        self.want_pass(ctx);
    }
}

impl Handler<Event<PersistentVolumeClaim>> for Scheduler {
    type Result = ();

    fn handle(&mut self, event: Event<PersistentVolumeClaim>, ctx: &mut Self::Context) {
        match &event {
            Event::Synced => self.synced(3, ctx),
            Event::Added(claim) | Event::Updated { new: claim, .. } => {
                self.snapshot.storage_mut().upsert_claim(claim.clone());
                self.storage_changed(ctx);
            }
            Event::Deleted(claim) => {
                let key = ObjectKey::of(&claim.metadata);
                self.snapshot.storage_mut().remove_claim(&key);
                self.check_volume_waits(Instant::now(), ctx);
            }
        }
    }
}

impl Handler<Event<PersistentVolume>> for Scheduler {
    type Result = ();

    fn handle(&mut self, event: Event<PersistentVolume>, ctx: &mut Self::Context) {
        match &event {
            Event::Synced => self.synced(4, ctx),
            Event::Added(volume) | Event::Updated { new: volume, .. } => {
                self.snapshot.storage_mut().upsert_volume(volume.clone());
                self.storage_changed(ctx);
            }
            Event::Deleted(volume) => {
                let name = volume.metadata.name.as_deref().unwrap_or_default();
                self.snapshot.storage_mut().remove_volume(name);
                self.check_volume_waits(Instant::now(), ctx);
            }
        }
    }
}

impl Handler<Event<StorageClass>> for Scheduler {
    type Result = ();

    fn handle(&mut self, event: Event<StorageClass>, ctx: &mut Self::Context) {
        match &event {
            Event::Synced => self.synced(5, ctx),
            Event::Added(class) | Event::Updated { new: class, .. } => {
                self.snapshot.storage_mut().upsert_class(class.clone());
                self.storage_changed(ctx);
            }
            Event::Deleted(class) => {
                let name = class.metadata.name.as_deref().unwrap_or_default();
                self.snapshot.storage_mut().remove_class(name);
            }
        }
    }
}
