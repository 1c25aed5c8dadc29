//! The scheduler actor's preemption (a child of `actor.rs`, sharing its state): for a pod no
//! node fits, the pure dry run (`preemption.rs`) with the PodDisruptionBudgets the
//! scheduler watches (`budgets.rs`), then the fenced writes that make room: the pod
//! nominated to the node, its victims deleted.

use std::sync::Arc;

use actix::prelude::*;
use rudder_proto::api::DeleteRequest;
use serde_json::json;

use super::super::budgets;
use super::super::decide::Unschedulable;
use super::super::preemption::{self, preempt_with, Preemption};
use super::{uid_of, Scheduler};
use crate::events::{object_reference, EventType};
use crate::informer::ObjectKey;
use crate::pods::cached::Pod;

impl Scheduler {
    /// Preempts for `pod`, which `unschedulable` says fits nowhere, if evicting pods of lower
    /// priority somewhere makes room (sparing those a budget protects where it can).
    pub(super) fn preempt_for(
        &mut self,
        pod: &Pod,
        unschedulable: &Unschedulable,
        ctx: &mut Context<Self>,
    ) {
        let budgets = self.caches.budgets.list();
        let check = |victims: &[Arc<Pod>]| budgets::breaking(&budgets, victims);
        let options = preemption::Options {
            budgets: Some(&check),
            ..Default::default()
        };
        if let Some(preemption) = preempt_with(pod, &self.snapshot, unschedulable, &options) {
            self.preempt(pod, preemption, ctx);
        }
    }

    /// Makes room for `pod` on `preemption.node`: the pod is nominated there
    /// (`status.nominatedNodeName`) and the victims are deleted gracefully, each with a
    /// `Preempted` event. The pod stays parked; the victims' going moves it back.
    fn preempt(&mut self, pod: &Pod, preemption: Preemption, ctx: &mut Context<Self>) {
        let key = ObjectKey::of(&pod.metadata);
        let Preemption { node, victims } = preemption;
        tracing::info!(pod = %key, %node, victims = victims.len(), "preempting");
        for victim in &victims {
            self.recorder.record(
                &object_reference(victim.as_ref()),
                EventType::Normal,
                "Preempted",
                format!("Preempted by pod {} on node {node}", uid_of(pod)),
            );
        }
        let client = self.client.clone();
        let fence = self.fence.clone();
        let nominate = json!({ "status": { "nominatedNodeName": node } });
        let preempting = async move {
            let api = client.fenced(&fence);
            let nominated = api
                .patch_object("pods", &key.namespace, &key.name, &nominate, true)
                .await;
            if let Err(error) = nominated {
                tracing::warn!(pod = %key, %error, "nominating; the victims stay");
                return;
            }
            for victim in victims {
                let request = DeleteRequest {
                    resource: "pods".into(),
                    namespace: victim.metadata.namespace.clone().unwrap_or_default(),
                    name: victim.metadata.name.clone().unwrap_or_default(),
                    precondition_uid: uid_of(&victim).to_string(),
                    ..Default::default()
                };
                if let Err(error) = api.delete_object(request).await {
                    if !error.is_not_found() {
                        tracing::warn!(pod = %key, victim = ?victim.metadata.name, %error, "preempting");
                    }
                }
            }
        };
        ctx.spawn(preempting.into_actor(self));
    }
}
