//! The StatefulSet controller's decision (Kubernetes' `UpdateStatefulSet`: revisions,
//! `processReplica`, `processCondemned`, the rolling update, the status and
//! `truncateHistory`), pure: a set, the pods, claims and revisions of its namespace, and
//! `now` in; the ordered actions, the status, what it waits for and when to look again, out.
//!
//! ```text
//!  pods ─ claim ─► owned: controlled and selected, plus orphans named <set>-<n> (adopted)
//!                  release: controlled, no longer selected
//!  owned ─► one slot per ordinal start..start+replicas: its pod │ empty │ name held by a stranger
//!           condemned: every other owned pod, highest ordinal first, odd names last
//!  revisions (history.rs) ─► current and update revision (create / renumber / adopt)
//!  1. slots, lowest first: ended ─► delete │ empty ─► claims + pod │ pending ─► missing claims
//!     OrderedReady stops at the first slot that is not Running, Ready and available
//!  2. condemned: claim owners per retention, then delete (OrderedReady: only once every
//!     slot is healthy, the highest one, if it is healthy or the lowest unhealthy pod; the
//!     next once it is gone)
//!  3. RollingUpdate (update.rs): delete the highest pod from the partition up that is not
//!     at the update revision, one at a time
//!  4. status; history beyond revisionHistoryLimit deleted (never a revision in use)
//! ```
//!
//! **At most one pod per ordinal**: a pod is created only for a slot no pod of that name
//! occupies in the cache, whoever owns it and whatever its state: being deleted, on a node
//! that stopped answering (its Ready condition Unknown) or ended. Such a pod is waited for,
//! never replaced; the API server refuses a second object of one name besides.
//!
//! Parallel sets take step 1 for every slot and step 2 for every condemned pod at once, and
//! wait for nothing but pods being deleted; the rolling update is one pod at a time for both.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, StatefulSet, StatefulSetSpec, StatefulSetStatus,
};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use rudder_proto::objects::selector::LabelSelector;

use super::claims::{missing_claims, owners_to_set, Blocked, ClaimIndex};
use super::history::{expired, plan_revisions, RevisionPlan, DEFAULT_REVISION_HISTORY_LIMIT};
use super::identity::{revision_of, Identity};
pub use super::plan::{Action, DeleteReason, NewPod, Plan, Wait};
use super::update::{Rollout, Step, Strategy};
use crate::pods::cached::Pod;
use crate::pods::{available_in, controller_of, is_available, is_ready, is_terminal, phase};

/// `pods`, `claims`, `revisions`: those of the set's namespace, from the caches.
pub fn reconcile(
    set: &StatefulSet,
    pods: &[Arc<Pod>],
    claims: &[Arc<PersistentVolumeClaim>],
    revisions: &[Arc<ControllerRevision>],
    now: jiff::Timestamp,
) -> Plan {
    let old = set.status.clone().unwrap_or_default();
    let mut plan = Plan {
        status: old.clone(),
        ..Plan::default()
    };
    let Some(spec) = set.spec.as_ref() else {
        plan.waiting.push(Wait::InvalidSelector);
        return plan;
    };
    // Kubernetes refuses to sync such a set; claiming everything would be worse.
    let selector = LabelSelector::from_api(&spec.selector).ok();
    let Some(selector) = selector.filter(|s| !s.is_everything()) else {
        plan.waiting.push(Wait::InvalidSelector);
        return plan;
    };
    let id = Identity::of(set);
    let shape = Shape::of(spec);
    let deleting = set.metadata.deletion_timestamp.is_some();
    let claimed = claim_pods(&id, &selector, pods, deleting);
    let mut status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        conditions: old.conditions.clone(),
        collision_count: old.collision_count,
        current_revision: old.current_revision.clone(),
        update_revision: old.update_revision.clone(),
        ..StatefulSetStatus::default()
    };
    if deleting {
        // Kubernetes only reports on a set being deleted: the garbage collector takes its pods.
        count(&mut status, &shape, &claimed.owned, now);
        plan.requeue_after = next_available(&claimed.owned, shape.min_ready_seconds, now);
        return finish(plan, status, &shape, &old);
    }
    let revs = plan_revisions(set, &selector, &id.owner_reference(), revisions);
    if let Some(name) = revs.collision.clone() {
        plan.status.collision_count = Some(revs.collision_count);
        plan.status_changed = plan.status != old;
        plan.waiting.push(Wait::RevisionCollision { name });
        return plan;
    }
    let actions = &mut plan.actions;
    actions.extend(revs.adopt.iter().cloned().map(Action::AdoptRevision));
    actions.extend(claimed.adopt.iter().cloned().map(Action::AdoptPod));
    actions.extend(claimed.release.iter().cloned().map(Action::ReleasePod));
    actions.extend(
        revs.create
            .clone()
            .map(|r| Action::CreateRevision(Box::new(r))),
    );
    actions.extend(
        revs.renumber
            .clone()
            .map(|(revision, number)| Action::RenumberRevision { revision, number }),
    );

    let (slots, condemned) = arrange(&id, &shape, &claimed.owned, pods);
    let mut walk = Walk {
        id: &id,
        shape: &shape,
        revs: &revs,
        claims: claims
            .iter()
            .map(|c| (c.metadata.name.as_deref().unwrap_or(""), c))
            .collect(),
        slots,
        condemned,
        current_replicas: old.current_replicas.unwrap_or(0),
        now,
        actions: Vec::new(),
        waiting: Vec::new(),
        deleted: BTreeSet::new(),
        updated_away: 0,
    };
    if walk.replicas() && walk.condemned() {
        walk.roll();
    }
    let (updated_away, actions, waiting) = (walk.updated_away, walk.actions, walk.waiting);
    plan.actions.extend(actions);
    plan.waiting = waiting;

    status.current_revision = Some(revs.current.name.clone());
    status.update_revision = Some(revs.update.name.clone());
    status.collision_count = Some(revs.collision_count);
    count(&mut status, &shape, &claimed.owned, now);
    status.current_replicas = status.current_replicas.map(|n| n - updated_away);

    let mut live: BTreeSet<&str> = [revs.current.name.as_str(), revs.update.name.as_str()].into();
    live.extend(claimed.owned.iter().map(|p| revision_of(p)));
    let limit = spec
        .revision_history_limit
        .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT);
    let old_revisions = expired(&revs.owned, &live, limit);
    plan.actions
        .extend(old_revisions.into_iter().map(Action::DeleteRevision));
    plan.requeue_after = next_available(&claimed.owned, shape.min_ready_seconds, now);
    finish(plan, status, &shape, &old)
}

/// What the spec says about ordinals, order and updates.
struct Shape {
    start: i64,
    replicas: i64,
    /// OrderedReady (the default): one pod at a time, in order.
    monotonic: bool,
    strategy: Strategy,
    min_ready_seconds: i32,
}

impl Shape {
    fn of(spec: &StatefulSetSpec) -> Self {
        let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
        Self {
            start: i64::from(start.max(0)),
            replicas: i64::from(spec.replicas.unwrap_or(1).max(0)),
            monotonic: spec.pod_management_policy.as_deref() != Some("Parallel"),
            strategy: Strategy::of(spec),
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
        }
    }

    fn in_range(&self, ordinal: i64) -> bool {
        ordinal >= self.start && ordinal < self.start + self.replicas
    }
}

/// The set's pods, and the changes of hands (Kubernetes' `ClaimPods` with `isMemberOf`).
#[derive(Default)]
struct Claimed {
    owned: Vec<Arc<Pod>>,
    adopt: Vec<Arc<Pod>>,
    release: Vec<Arc<Pod>>,
}

/// A set being deleted neither adopts nor releases. Orphans are adopted only when named
/// `<set>-<n>` and not being deleted; a controlled pod of another name stays owned (and is
/// condemned).
fn claim_pods(
    id: &Identity,
    selector: &LabelSelector,
    pods: &[Arc<Pod>],
    deleting: bool,
) -> Claimed {
    let mut claimed = Claimed::default();
    for pod in pods {
        let selected = selector.matches_labels(pod.metadata.labels.as_ref());
        match controller_of(&pod.metadata) {
            Some(owner) if owner.uid == id.uid => {
                if selected {
                    claimed.owned.push(pod.clone());
                } else if !deleting {
                    claimed.release.push(pod.clone());
                }
            }
            None if selected
                && !deleting
                && pod.metadata.deletion_timestamp.is_none()
                && id.ordinal_of(name_of(pod)).is_some() =>
            {
                claimed.adopt.push(pod.clone());
                claimed.owned.push(pod.clone());
            }
            _ => {}
        }
    }
    claimed
}

/// What is at one ordinal in range.
#[derive(Debug, Clone)]
enum Slot {
    Pod(Arc<Pod>),
    /// A pod that is not the set's has the name.
    Taken(String),
    Empty,
}

/// An owned pod out of range, with its ordinal (`None`: a name not of the set's form).
type Condemned = (Option<i64>, Arc<Pod>);

fn arrange(
    id: &Identity,
    shape: &Shape,
    owned: &[Arc<Pod>],
    pods: &[Arc<Pod>],
) -> (Vec<Slot>, Vec<Condemned>) {
    let mut by_ordinal = BTreeMap::new();
    let mut condemned = Vec::new();
    for pod in owned {
        match id.ordinal_of(name_of(pod)) {
            Some(ordinal) if shape.in_range(ordinal) => {
                by_ordinal.insert(ordinal, pod.clone());
            }
            ordinal => condemned.push((ordinal, pod.clone())),
        }
    }
    // Highest ordinal first; `None` sorts below every ordinal, so odd names come last.
    condemned.sort_by(|(a, p), (b, q)| b.cmp(a).then_with(|| name_of(p).cmp(name_of(q))));
    let names: BTreeSet<&str> = pods.iter().map(|p| name_of(p)).collect();
    let slots = (shape.start..shape.start + shape.replicas)
        .map(|ordinal| match by_ordinal.remove(&ordinal) {
            Some(pod) => Slot::Pod(pod),
            None => {
                let name = id.pod_name(ordinal);
                if names.contains(name.as_str()) {
                    Slot::Taken(name)
                } else {
                    Slot::Empty
                }
            }
        })
        .collect();
    (slots, condemned)
}

/// One sync's walk over the slots and condemned pods.
struct Walk<'a> {
    id: &'a Identity,
    shape: &'a Shape,
    revs: &'a RevisionPlan,
    claims: ClaimIndex<'a>,
    slots: Vec<Slot>,
    condemned: Vec<Condemned>,
    /// The stored `status.currentReplicas` (read by RollingUpdate without parameters).
    current_replicas: i32,
    now: jiff::Timestamp,
    actions: Vec<Action>,
    waiting: Vec<Wait>,
    /// The pods this plan deletes: terminating from here on.
    deleted: BTreeSet<String>,
    /// Pods at the current revision deleted for the update.
    updated_away: i32,
}

impl Walk<'_> {
    fn is_terminating(&self, pod: &Pod) -> bool {
        pod.metadata.deletion_timestamp.is_some() || self.deleted.contains(name_of(pod))
    }

    fn is_available(&self, pod: &Pod) -> bool {
        is_running_and_ready(pod) && is_available(pod, self.shape.min_ready_seconds, self.now)
    }

    fn is_unavailable(&self, pod: &Pod) -> bool {
        self.is_terminating(pod) || !self.is_available(pod)
    }

    fn ordinal(&self, index: usize) -> i64 {
        self.shape
            .start
            .saturating_add(i64::try_from(index).unwrap_or(i64::MAX))
    }

    /// The slots, lowest first; false: OrderedReady goes no further this sync.
    fn replicas(&mut self) -> bool {
        for index in 0..self.slots.len() {
            let ordinal = self.ordinal(index);
            let proceed = match self.slots[index].clone() {
                Slot::Taken(pod) => {
                    self.waiting.push(Wait::NameTaken { pod });
                    false
                }
                Slot::Empty => self.create(index, ordinal),
                Slot::Pod(pod) => self.replica(&pod, ordinal),
            };
            if !proceed && self.shape.monotonic {
                return false;
            }
        }
        true
    }

    /// The pod of an empty ordinal, with its missing claims, at the revision the strategy
    /// says (the current one when its template cannot be read back: the update revision).
    fn create(&mut self, index: usize, ordinal: i64) -> bool {
        let claims = match missing_claims(self.id, ordinal, &self.claims, true) {
            Ok(claims) => claims,
            Err(blocked) => {
                self.wait_for_claim(blocked);
                return false;
            }
        };
        let current = &self.revs.current;
        let at_current = current.name != self.revs.update.name
            && current.template.is_some()
            && self
                .shape
                .strategy
                .at_current_revision(index, self.current_replicas);
        let revision = if at_current {
            current
        } else {
            &self.revs.update
        };
        let template = revision.template.clone().unwrap_or_default();
        let pod = self.id.new_pod(&template, &revision.name, ordinal);
        self.actions.push(Action::CreatePod(Box::new(NewPod {
            ordinal,
            pod,
            claims,
        })));
        false
    }

    /// An existing pod in range (Kubernetes' `processReplica`).
    fn replica(&mut self, pod: &Arc<Pod>, ordinal: i64) -> bool {
        let name = name_of(pod).to_string();
        if is_terminal(pod) {
            // Whatever its exit code (an evicted pod ends Failed or Succeeded alike).
            if self.is_terminating(pod) {
                self.waiting.push(Wait::Terminating { pod: name });
            } else {
                self.delete(pod, DeleteReason::Ended);
            }
            return false;
        }
        if matches!(phase(pod), "" | "Pending") {
            match missing_claims(self.id, ordinal, &self.claims, false) {
                Ok(claims) if claims.is_empty() => {}
                Ok(claims) => self.actions.push(Action::CreateClaims(claims)),
                Err(blocked) => {
                    self.wait_for_claim(blocked);
                    return false;
                }
            }
        }
        if self.is_terminating(pod) {
            self.waiting.push(Wait::Terminating { pod: name });
            return false;
        }
        if self.shape.monotonic {
            if !is_running_and_ready(pod) {
                self.waiting.push(Wait::NotReady { pod: name });
                return false;
            }
            if !self.is_available(pod) {
                self.waiting.push(Wait::NotAvailable { pod: name });
                return false;
            }
        }
        self.keep(pod, ordinal, true);
        true
    }

    /// The identity labels a pod in range lacks, and the claim owners the retention policy
    /// wants (Kubernetes' `UpdateStatefulPod` and `UpdatePodClaimForRetentionPolicy`).
    fn keep(&mut self, pod: &Arc<Pod>, ordinal: i64, in_range: bool) {
        if in_range {
            if let Some(labels) = self.id.missing_labels(pod, ordinal) {
                self.actions.push(Action::LabelPod {
                    pod: pod.clone(),
                    labels,
                });
            }
        }
        for name in self.id.claim_names(ordinal) {
            let Some(claim) = self.claims.get(name.as_str()).copied() else {
                continue;
            };
            if let Some(owner_references) = owners_to_set(self.id, claim, pod, in_range) {
                self.actions.push(Action::SetClaimOwners {
                    claim: claim.clone(),
                    owner_references,
                });
            }
        }
    }

    /// The condemned pods (Kubernetes' `processCondemned`): their claims change hands first,
    /// so that a whenScaled: Delete claim goes with its pod.
    fn condemned(&mut self) -> bool {
        let condemned = std::mem::take(&mut self.condemned);
        for (ordinal, pod) in &condemned {
            if let Some(ordinal) = ordinal {
                self.keep(pod, *ordinal, false);
            }
        }
        // Under OrderedReady this runs only once every slot is healthy, so the first
        // unhealthy pod is the lowest condemned one.
        let first_unhealthy = condemned
            .iter()
            .rev()
            .map(|(_, p)| p)
            .find(|p| self.is_unavailable(p))
            .map(|p| name_of(p).to_string());
        for (_, pod) in &condemned {
            let name = name_of(pod).to_string();
            if self.is_terminating(pod) {
                if self.shape.monotonic {
                    self.waiting.push(Wait::Terminating { pod: name });
                    return false;
                }
                continue;
            }
            let blocked_by = first_unhealthy.as_ref().filter(|first| **first != name);
            if self.shape.monotonic && self.is_unavailable(pod) {
                if let Some(first) = blocked_by {
                    self.waiting.push(Wait::Unhealthy { pod: first.clone() });
                    return false;
                }
            }
            self.delete(pod, DeleteReason::ScaleDown);
            if self.shape.monotonic {
                return false;
            }
        }
        true
    }

    /// One RollingUpdate step (update.rs).
    fn roll(&mut self) {
        let Some(from) = self.shape.strategy.updates_from() else {
            return;
        };
        let slots: Vec<Option<Arc<Pod>>> = self
            .slots
            .iter()
            .map(|s| match s {
                Slot::Pod(pod) => Some(pod.clone()),
                Slot::Taken(_) | Slot::Empty => None,
            })
            .collect();
        let update = self.revs.update.name.as_str();
        if slots
            .iter()
            .skip(from)
            .flatten()
            .all(|p| revision_of(p) == update)
        {
            // Nothing to update: an empty or unready slot is the create path's business.
            return;
        }
        let step = Rollout {
            slots: &slots,
            from,
            update_revision: &self.revs.update.name,
            is_terminating: |p: &Pod| self.is_terminating(p),
            is_unavailable: |p: &Pod| self.is_unavailable(p),
        }
        .step();
        match step {
            Step::Delete(pod) => {
                if revision_of(&pod) == self.revs.current.name {
                    self.updated_away += 1;
                }
                self.delete(&pod, DeleteReason::Update);
            }
            Step::Wait { index } => {
                let pod = self.id.pod_name(self.ordinal(index));
                self.waiting.push(Wait::Updating { pod });
            }
            Step::Done => {}
        }
    }

    fn delete(&mut self, pod: &Arc<Pod>, reason: DeleteReason) {
        self.deleted.insert(name_of(pod).to_string());
        self.actions.push(Action::DeletePod {
            pod: pod.clone(),
            reason,
        });
    }

    fn wait_for_claim(&mut self, blocked: Blocked) {
        self.waiting.push(match blocked {
            Blocked::Terminating(claim) => Wait::ClaimTerminating { claim },
            Blocked::Stale(claim) => Wait::StaleClaim { claim },
        });
    }
}

/// Kubernetes' `isRunningAndReady`.
fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && is_ready(pod)
}

/// Kubernetes' `computeReplicaStatus` over every owned pod, against the revisions named in
/// `status`.
fn count(status: &mut StatefulSetStatus, shape: &Shape, owned: &[Arc<Pod>], now: jiff::Timestamp) {
    let tally = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(owned.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let at = |revision: &Option<String>, pod: &Pod| {
        let name = revision.as_deref().unwrap_or("");
        pod.metadata.deletion_timestamp.is_none() && !name.is_empty() && revision_of(pod) == name
    };
    let (current, update) = (
        status.current_revision.clone(),
        status.update_revision.clone(),
    );
    status.replicas = tally(&|_| true);
    status.ready_replicas = Some(tally(&is_running_and_ready));
    status.available_replicas = Some(tally(&|p| {
        is_running_and_ready(p) && is_available(p, shape.min_ready_seconds, now)
    }));
    status.current_replicas = Some(tally(&|p| at(&current, p)));
    status.updated_replicas = Some(tally(&|p| at(&update, p)));
}

/// When the first ready pod not yet available becomes available.
fn next_available(
    owned: &[Arc<Pod>],
    min_ready_seconds: i32,
    now: jiff::Timestamp,
) -> Option<Duration> {
    if min_ready_seconds <= 0 {
        return None;
    }
    owned
        .iter()
        .filter(|p| is_running_and_ready(p) && p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| available_in(p, min_ready_seconds, now))
        .min()
}

/// Kubernetes' `completeRollingUpdate`: once every wanted pod is updated and ready, the
/// update revision becomes the current one.
fn finish(
    mut plan: Plan,
    mut status: StatefulSetStatus,
    shape: &Shape,
    old: &StatefulSetStatus,
) -> Plan {
    let wanted = i32::try_from(shape.replicas).unwrap_or(i32::MAX);
    let rolling = matches!(shape.strategy, Strategy::RollingUpdate { .. });
    if rolling
        && status.replicas == wanted
        && status.updated_replicas == Some(wanted)
        && status.ready_replicas == Some(wanted)
    {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
    plan.status_changed = status != *old;
    plan.status = status;
    plan
}

fn name_of(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or("")
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "reconcile_update_tests.rs"]
mod update_tests;
