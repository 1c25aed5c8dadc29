//! Evict (Kubernetes' `pods/eviction`, `pkg/registry/core/pod/storage/eviction.go`): deletes
//! a pod unless that would violate the PodDisruptionBudget guarding it.
//!
//! ```text
//!  numbered request an earlier attempt of which evicted the pod ─► answer as it left the pod
//!  read pod ─ gone ─► NotFound;  the caller's uid / resourceVersion do not hold ─► Conflict
//!           ─ terminating, finished or Pending ─► the pod's write
//!           ─ budgets guarding it: none ─► the pod's write
//!                                  two or more ─► 500 "more than one PodDisruptionBudget"
//!                                  one ─ not Ready, and the budget may lose it ─► the pod's
//!                                          write (a pod that changed meanwhile, perhaps
//!                                          turned Ready: 429, look again)
//!                                      ─ a disruption to take ─► ONE transaction: the
//!                                          budget's status (disruptionsAllowed - 1, the pod in
//!                                          disruptedPods) and the pod's write, comparing the
//!                                          revisions of both as read
//!                                      ─ none left / not computed yet ─► 429 TooManyRequests
//!  a write that lost to a change (of the pod or the budget) ─► read both again after ~0.5 s
//!  (Kubernetes' EvictionsRetry: 20 attempts, 10 % jitter) ─► 504 "couldn't update
//!  PodDisruptionBudget ... due to conflicts" once the budget kept changing
//! ```
//!
//! The pod's write is its deletion as `delete::plan` decides it (a bound pod is marked and
//! waits for its kubelet, others go at once); a pod that stays marked and has not finished
//! also gets the `DisruptionTarget` condition in that same write (Kubernetes'
//! `addConditionAndDeletePod`). Every write compares the pod's revision as read (Kubernetes
//! pins only a Pending or unready pod's), so a decision is never applied to a pod that
//! changed after it was made. So an eviction makes at most one store write, and a budget
//! never holds a disruption for a pod whose deletion did not land with it. A numbered
//! request's retry (after a lost answer) finds that write and answers as it left the pod; it
//! never takes a second disruption, and numbers its own writes past the parts earlier
//! attempts used (`caller::skip_past`: a write lost to a race used a part too).
//!
//! The decisions are pure ([`check_preconditions`], [`may_ignore_budgets`], [`guard`],
//! [`may_lose_unready`], [`take_disruption`], [`pod_write`], [`retry_pause`]); the registry
//! reads and writes around them.

use std::borrow::Borrow;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rudder_proto::objects::disruption::{
    guards_eviction, is_pod_ready, update_disruption_allowed, update_pod_condition, ALWAYS_ALLOW,
    DISRUPTION_TARGET, EVICTION_API_MESSAGE, EVICTION_BY_EVICTION_API,
};
use rudder_raftstore::kv::{Compare, KeyRange, RangeRequest, Revision};
use serde_json::{json, Value};

use super::transform::{candidate, request_namespace, revise, Part};
use super::{body, object_ref, stale, unchanged, Committed, Registry, Write};
use crate::caller;
use crate::delete::{self, DeleteOptions, Plan};
use crate::error::{ApiError, Cause, ObjectRef};
use crate::kinds::KindInfo;
use crate::object;

/// Kubernetes' `MaxDisruptedPodSize`: evictions approved but not yet seen by the disruption
/// controller beyond which a budget refuses more.
const MAX_DISRUPTED_PODS: usize = 2000;
/// Kubernetes' `EvictionsRetry`: attempts at an eviction whose pod or budget changed between
/// its read and its write, and the pause before each attempt after the first (plus up to
/// [`RETRY_JITTER`] of it, so that evictions that lost together do not collide again).
const ATTEMPTS: usize = 20;
const RETRY_PAUSE: Duration = Duration::from_millis(500);
const RETRY_JITTER: f64 = 0.1;
/// When a client told that the budget kept changing should try again (Kubernetes' 10 s).
const CONTENDED_RETRY_AFTER_SECONDS: i64 = 10;
/// The cause of a refusal on a budget's account (`policyv1.DisruptionBudgetCause`).
const DISRUPTION_BUDGET_CAUSE: &str = "DisruptionBudget";
/// What a refused eviction says, in Kubernetes' words.
const VIOLATES_BUDGET: &str = "Cannot evict pod as it would violate the pod's disruption budget.";
/// What an eviction of a pod guarded by several budgets says, in Kubernetes' words.
const SEVERAL_BUDGETS: &str =
    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not \
     support.";

/// A pod to evict, and how to delete it once allowed.
#[derive(Debug, Clone)]
pub struct Eviction<'a> {
    /// Empty: `default`.
    pub namespace: &'a str,
    pub name: &'a str,
    /// The pod's deletion: grace period and preconditions, as a delete request gives them.
    pub options: DeleteOptions,
}

/// The caller's preconditions on the pod as read, in the eviction's words (Kubernetes checks
/// them on the pod it is about to mark). Checked before any budget is asked: a pod that is
/// not the one the caller meant (deleted and made again under its name, or changed) never
/// takes a disruption.
pub(crate) fn check_preconditions(pod: &Value, options: &DeleteOptions) -> Result<(), ApiError> {
    let conflict = |reason: String| ApiError::Conflict {
        object: ObjectRef {
            resource: "Pod".into(),
            name: object::name(pod).into(),
        },
        reason,
    };
    let uid = object::uid(pod);
    if !options.precondition_uid.is_empty() && options.precondition_uid != uid {
        return Err(conflict(format!(
            "the UID in the precondition ({}) does not match the UID in record ({uid}). The \
             object might have been deleted and then recreated",
            options.precondition_uid
        )));
    }
    let version = object::meta_str(pod, "resourceVersion");
    if !options.precondition_resource_version.is_empty()
        && options.precondition_resource_version != version
    {
        return Err(conflict(format!(
            "the ResourceVersion in the precondition ({}) does not match the ResourceVersion \
             in record ({version}). The object might have been modified",
            options.precondition_resource_version
        )));
    }
    Ok(())
}

/// Kubernetes' `canIgnorePDB`: a pod that is finished, still Pending or already being
/// deleted disrupts nothing more by going, so no budget is asked.
pub(crate) fn may_ignore_budgets(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        || matches!(phase(pod), "Succeeded" | "Failed" | "Pending")
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// The budgets guarding a pod's eviction.
#[derive(Debug, PartialEq)]
pub(crate) enum Guard<'a, B> {
    Unguarded,
    One(&'a B),
    /// Two or more: the eviction subresource does not support that (Kubernetes neither).
    Several,
}

/// Which of `budgets` (its namespace's) guard evicting `pod`.
pub(crate) fn guard<'a, B: Borrow<PodDisruptionBudget>>(
    pod: &Pod,
    budgets: &'a [B],
) -> Guard<'a, B> {
    let mut guarding = budgets
        .iter()
        .filter(|pdb| guards_eviction(Borrow::<PodDisruptionBudget>::borrow(*pdb), &pod.metadata));
    match (guarding.next(), guarding.next()) {
        (None, _) => Guard::Unguarded,
        (Some(one), None) => Guard::One(one),
        (Some(_), Some(_)) => Guard::Several,
    }
}

/// Whether `pdb` may lose `pod` without counting a disruption: it is not Ready (so it is
/// not among the healthy pods the budget counts), and either the budget says so
/// (`unhealthyPodEvictionPolicy: AlwaysAllow`) or the application is not disrupted now
/// (as many healthy pods as desired, and some desired).
pub(crate) fn may_lose_unready(pdb: &PodDisruptionBudget, pod: &Pod) -> bool {
    if is_pod_ready(pod) {
        return false;
    }
    let policy = pdb
        .spec
        .as_ref()
        .and_then(|s| s.unhealthy_pod_eviction_policy.as_deref());
    if policy == Some(ALWAYS_ALLOW) {
        return true;
    }
    let status = pdb.status.clone().unwrap_or_default();
    status.current_healthy >= status.desired_healthy && status.desired_healthy > 0
}

/// Kubernetes' `checkAndDecrement`: the budget's status once it has taken the eviction of
/// `pod` at `now` (one disruption fewer allowed, the pod among `disruptedPods` so the
/// controller does not count it healthy meanwhile), or why it cannot.
pub(crate) fn take_disruption(
    pdb: &PodDisruptionBudget,
    pod: &str,
    now: jiff::Timestamp,
) -> Result<PodDisruptionBudgetStatus, ApiError> {
    let name = pdb.metadata.name.as_deref().unwrap_or_default();
    let mut status = pdb.status.clone().unwrap_or_default();
    if status.observed_generation.unwrap_or(0) < pdb.metadata.generation.unwrap_or(0) {
        return Err(still_processing(name));
    }
    let forbidden = |why: &str| ApiError::Forbidden {
        message: format!("poddisruptionbudget.policy {name:?} is forbidden: {why}"),
    };
    if status.disruptions_allowed < 0 {
        return Err(forbidden("pdb disruptions allowed is negative"));
    }
    let disrupted = status.disrupted_pods.get_or_insert_with(Default::default);
    if disrupted.len() > MAX_DISRUPTED_PODS {
        return Err(forbidden(
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if status.disruptions_allowed == 0 {
        return Err(ApiError::TooManyRequests {
            message: VIOLATES_BUDGET.into(),
            cause: budget_cause(format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                status.desired_healthy, status.current_healthy
            )),
            retry_after_seconds: 0,
        });
    }
    disrupted.insert(pod.to_string(), Time(now));
    status.disruptions_allowed -= 1;
    if status.disruptions_allowed == 0 {
        update_disruption_allowed(&mut status, now);
    }
    Ok(status)
}

fn budget_cause(message: String) -> Cause {
    Cause {
        reason: DISRUPTION_BUDGET_CAUSE,
        message,
        field: None,
    }
}

/// The budget's status does not reflect its spec yet (or a pod changed, perhaps turned
/// Ready, under an eviction that would not count it): try again shortly.
fn still_processing(budget: &str) -> ApiError {
    ApiError::TooManyRequests {
        message: VIOLATES_BUDGET.into(),
        cause: budget_cause(format!(
            "The disruption budget {budget} is still being processed by the server."
        )),
        retry_after_seconds: 10,
    }
}

/// The budget kept changing under the eviction (Kubernetes' 504, meant for its
/// `EvictionsRetry` running out): nothing was written; try again.
fn contended(budget: &str) -> ApiError {
    ApiError::Timeout {
        message: format!("couldn't update PodDisruptionBudget {budget:?} due to conflicts"),
        retry_after_seconds: CONTENDED_RETRY_AFTER_SECONDS,
    }
}

/// What an eviction writes to the pod.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PodWrite {
    /// Nothing: it is already marked as asked (and a disruption target, if it is to be one).
    Nothing,
    /// It goes from the store now.
    Remove,
    /// It stays, marked for deletion (its kubelet stops it) as this object says.
    Put(Value),
}

/// The pod's write when it is evicted with `options` at `now`: its deletion as
/// `delete::plan` decides it, and, in the object kept, the `DisruptionTarget` condition
/// (reason `EvictionByEvictionAPI`) unless the pod has finished. A pod removed at once keeps
/// nothing to carry a condition. `current` is `pod` as stored. Pure.
pub(crate) fn pod_write(
    pods: &KindInfo,
    current: &Value,
    pod: &Pod,
    options: &DeleteOptions,
    now: jiff::Timestamp,
) -> Result<PodWrite, ApiError> {
    let marked = match delete::plan(
        pods,
        current,
        options.grace_period_seconds,
        options.propagation,
        now,
    ) {
        Plan::Remove => return Ok(PodWrite::Remove),
        Plan::Mark(marked) => Some(marked),
        Plan::AlreadyMarked => None,
    };
    let mut conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let finished = matches!(phase(pod), "Succeeded" | "Failed");
    let targeted = !finished && update_pod_condition(&mut conditions, disruption_target(), now);
    let mut next = match (marked, targeted) {
        (None, false) => return Ok(PodWrite::Nothing),
        (Some(marked), _) => marked,
        (None, true) => {
            let mut same = current.clone();
            object::metadata_mut(&mut same).remove("resourceVersion");
            same
        }
    };
    if targeted {
        if !next["status"].is_object() {
            next["status"] = json!({});
        }
        next["status"]["conditions"] = serde_json::to_value(&conditions).map_err(|error| {
            ApiError::internal(format!("the pod's conditions do not encode: {error}"))
        })?;
    }
    Ok(PodWrite::Put(next))
}

fn disruption_target() -> PodCondition {
    PodCondition {
        type_: DISRUPTION_TARGET.into(),
        status: "True".into(),
        reason: Some(EVICTION_BY_EVICTION_API.into()),
        message: Some(EVICTION_API_MESSAGE.into()),
        ..PodCondition::default()
    }
}

/// The pause before another attempt, for `jitter` drawn from [0, 1). Pure.
pub(crate) fn retry_pause(jitter: f64) -> Duration {
    RETRY_PAUSE.mul_f64(1.0 + RETRY_JITTER * jitter.clamp(0.0, 1.0))
}

/// A fraction drawn from [0, 1) (from a v4 uuid's last four bytes, which are all random).
fn jitter() -> f64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let drawn = u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    f64::from(drawn) / (f64::from(u32::MAX) + 1.0)
}

fn typed<T: serde::de::DeserializeOwned>(object: &Value, what: &str) -> Result<T, ApiError> {
    serde_json::from_value(object.clone())
        .map_err(|error| ApiError::internal(format!("stored {what} does not decode: {error}")))
}

/// A PodDisruptionBudget as read: typed for the decisions, as stored for the write.
#[derive(Debug)]
struct StoredBudget {
    pdb: PodDisruptionBudget,
    object: Value,
    revision: Revision,
}

impl Borrow<PodDisruptionBudget> for StoredBudget {
    fn borrow(&self) -> &PodDisruptionBudget {
        &self.pdb
    }
}

/// How one read-decide-write attempt of an eviction ended.
enum Attempt {
    /// The answer: the pod as the eviction left it, and whether it is gone.
    Done((Value, bool)),
    /// The write lost to a change since the read: of the pod only (`None`), or maybe of this
    /// budget. Read again.
    Lost(Option<String>),
}

/// The pod's write as the store effect it has (`None`: nothing to write), and the answer it
/// gives once made: the pod as left, and whether it is gone.
fn effect(write: PodWrite, current: Value) -> (Option<Write>, Value, bool) {
    match write {
        PodWrite::Nothing => (None, current, false),
        PodWrite::Remove => (Some(Write::Delete), current, true),
        PodWrite::Put(marked) => (Some(Write::Put(object::encode(&marked))), marked, false),
    }
}

impl Registry {
    /// Evicts a pod: deletes it as `eviction.options` say unless the PodDisruptionBudget
    /// guarding it has no disruption to spare (`TooManyRequests`: retry later). Returns the
    /// pod as deletion left it and whether it is gone, as [`Registry::delete`] does.
    pub async fn evict(&self, eviction: &Eviction<'_>) -> Result<(Value, bool), ApiError> {
        let pods = self.kind("pods")?;
        let budgets = self.kind("poddisruptionbudgets")?;
        if let Some(grace) = eviction.options.grace_period_seconds.filter(|g| *g < 0) {
            return Err(ApiError::bad_field(
                "gracePeriodSeconds",
                format!("grace period must not be negative, got {grace}"),
            ));
        }
        let namespace = request_namespace(pods, eviction.namespace);
        let key = object::key(pods, &namespace, eviction.name);
        // A retry of a numbered eviction: its one write, if an earlier attempt made it, is
        // the answer; otherwise its writes go on past every part the earlier ones used.
        if let Some(earlier) = self.earlier_parts().await? {
            if let Some(revision) = earlier.applied {
                if let Some(answer) = self.as_evicted_at(&key, revision).await? {
                    return Ok(answer);
                }
            }
            caller::skip_past(earlier.highest);
        }
        let pinned = !eviction.options.precondition_resource_version.is_empty();
        let mut contended_budget = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(retry_pause(jitter())).await;
            }
            let at = Attempted {
                pods,
                budgets,
                namespace: &namespace,
                key: &key,
                eviction,
                pinned,
            };
            match self.attempt_eviction(&at).await? {
                Attempt::Done(answer) => return Ok(answer),
                Attempt::Lost(None) => {}
                Attempt::Lost(Some(budget)) => contended_budget = Some(budget),
            }
        }
        Err(match contended_budget {
            Some(budget) => contended(&budget),
            None => stale(pods, eviction.name),
        })
    }

    /// Reads the pod (and its budgets), decides, and makes the eviction's one write.
    async fn attempt_eviction(&self, at: &Attempted<'_, '_>) -> Result<Attempt, ApiError> {
        let Attempted { pods, key, .. } = *at;
        let name = at.eviction.name;
        let Some(kv) = self.read(key).await? else {
            // An earlier attempt of this request, still under way when this one began, may
            // have removed it: answer as it would have.
            if let Some(revision) = self.earlier_attempt().await? {
                if let Some(answer) = self.as_evicted_at(key, revision).await? {
                    return Ok(Attempt::Done(answer));
                }
            }
            return Err(ApiError::NotFound {
                object: object_ref(pods, name),
            });
        };
        let current = object::decode(&kv)?;
        check_preconditions(&current, &at.eviction.options)?;
        let pod: Pod = typed(&current, "pod")?;
        let now = jiff::Timestamp::now();
        let write = pod_write(pods, &current, &pod, &at.eviction.options, now)?;
        let pod_as_read = unchanged(key, kv.mod_revision);
        if may_ignore_budgets(&pod) {
            return self.write_pod(key, pod_as_read, write, current).await;
        }
        let guarding = self.budgets_in(at.budgets, at.namespace).await?;
        let stored = match guard(&pod, &guarding) {
            Guard::Unguarded => return self.write_pod(key, pod_as_read, write, current).await,
            Guard::Several => {
                return Err(ApiError::Unsupported {
                    message: SEVERAL_BUDGETS.into(),
                })
            }
            Guard::One(stored) => stored,
        };
        let budget = stored.pdb.metadata.name.clone().unwrap_or_default();
        if may_lose_unready(&stored.pdb, &pod) {
            // Only as read: had it turned Ready meanwhile, it would count.
            return match self.write_pod(key, pod_as_read, write, current).await? {
                Attempt::Lost(_) if !at.pinned => Err(still_processing(&budget)),
                outcome => Ok(outcome),
            };
        }
        let status = take_disruption(&stored.pdb, name, now)?;
        let (pod_effect, answer, gone) = match effect(write, current) {
            (Some(pod_effect), answer, gone) => (pod_effect, answer, gone),
            // Nothing to write for the pod (it cannot be: it is not being deleted), so
            // nothing to take either.
            (None, answer, gone) => return Ok(Attempt::Done((answer, gone))),
        };
        let next = candidate(
            at.budgets,
            Part::Status,
            &stored.object,
            &json!({ "status": status }),
        )?;
        let next = revise(
            at.budgets,
            &stored.object,
            next,
            &super::WriteOptions::default(),
        )?
        .ok_or_else(|| {
            ApiError::internal(format!(
                "taking a disruption left budget {budget:?}'s status as it was"
            ))
        })?;
        let budget_body = body::encode(&next, self.max_object_bytes)?;
        let budget_key = object::key(at.budgets, at.namespace, &budget);
        let compares = vec![unchanged(&budget_key, stored.revision), pod_as_read];
        let writes = vec![
            (budget_key, Write::Put(budget_body)),
            (key.to_vec(), pod_effect),
        ];
        let committed = self.commit_all(compares, writes).await?;
        self.answer(key, committed, (answer, gone), Some(budget))
            .await
    }

    /// Writes the pod's eviction alone, if the pod is still as read.
    async fn write_pod(
        &self,
        key: &[u8],
        pod_as_read: Compare,
        write: PodWrite,
        current: Value,
    ) -> Result<Attempt, ApiError> {
        let (pod_effect, answer, gone) = match effect(write, current) {
            (Some(pod_effect), answer, gone) => (pod_effect, answer, gone),
            (None, answer, gone) => return Ok(Attempt::Done((answer, gone))),
        };
        let committed = self.commit(key, vec![pod_as_read], pod_effect).await?;
        self.answer(key, committed, (answer, gone), None).await
    }

    /// The answer once the eviction's write was committed, or what it lost to.
    async fn answer(
        &self,
        key: &[u8],
        committed: Committed,
        (mut pod, gone): (Value, bool),
        budget: Option<String>,
    ) -> Result<Attempt, ApiError> {
        match committed {
            Committed::At {
                revision,
                replayed: false,
            } => {
                object::set_resource_version(&mut pod, revision);
                Ok(Attempt::Done((pod, gone)))
            }
            // Another attempt of this request made this part's write: its answer.
            Committed::At {
                revision,
                replayed: true,
            } => Ok(match self.as_evicted_at(key, revision).await? {
                Some(answer) => Attempt::Done(answer),
                None => Attempt::Lost(budget),
            }),
            Committed::Lost(_) => Ok(Attempt::Lost(budget)),
        }
    }

    /// The answer of an eviction whose write landed at `revision`: the pod as that write
    /// left it (marked), or, removed, as it was just before. `None` when the pod at
    /// `revision` is neither (that write was not this pod's eviction), or that revision is
    /// compacted away: then the eviction is decided afresh.
    async fn as_evicted_at(
        &self,
        key: &[u8],
        revision: Revision,
    ) -> Result<Option<(Value, bool)>, ApiError> {
        Ok(match self.kept_at(key, revision).await? {
            None => None,
            Some(Some(pod)) if object::is_being_deleted(&pod) => Some((pod, false)),
            Some(Some(_)) => None,
            Some(None) => self
                .kept_at(key, revision - 1)
                .await?
                .flatten()
                .map(|before| (before, true)),
        })
    }

    /// The object at `key` as of `revision` (`Some(None)`: absent then); `None` when that
    /// revision is compacted away.
    async fn kept_at(
        &self,
        key: &[u8],
        revision: Revision,
    ) -> Result<Option<Option<Value>>, ApiError> {
        match self.read_at(key, revision).await {
            Err(ApiError::Expired { .. }) => Ok(None),
            outcome => outcome.map(Some),
        }
    }

    /// Every PodDisruptionBudget of `namespace`, in one linearizable read.
    async fn budgets_in(
        &self,
        budgets: &KindInfo,
        namespace: &str,
    ) -> Result<Vec<StoredBudget>, ApiError> {
        let (_, response) = self
            .range(RangeRequest {
                range: KeyRange::prefix(object::prefix(budgets, namespace)),
                ..Default::default()
            })
            .await?;
        response
            .kvs
            .iter()
            .map(|kv| {
                let object = object::decode(kv)?;
                Ok(StoredBudget {
                    pdb: typed(&object, "PodDisruptionBudget")?,
                    object,
                    revision: kv.mod_revision,
                })
            })
            .collect()
    }
}

/// What every attempt of one eviction works on.
#[derive(Clone, Copy)]
struct Attempted<'a, 'e> {
    pods: &'static KindInfo,
    budgets: &'static KindInfo,
    namespace: &'a str,
    key: &'a [u8],
    eviction: &'a Eviction<'e>,
    /// The caller gave the pod's resourceVersion: a changed pod is its conflict.
    pinned: bool,
}

#[cfg(test)]
#[path = "evict_tests.rs"]
mod tests;
