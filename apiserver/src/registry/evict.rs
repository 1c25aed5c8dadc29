//! Evict (Kubernetes' `pods/eviction`, `pkg/registry/core/pod/storage/eviction.go`): deletes
//! a pod unless that would violate the PodDisruptionBudget guarding it.
//!
//! ```text
//!  read pod ─ gone ─────────────────────────────────────────────► NotFound
//!           ─ terminating, finished or Pending ─► delete (at its resourceVersion if Pending)
//!           ─ budgets guarding it: none ─► delete
//!                                  two or more ─► 500 "more than one PodDisruptionBudget"
//!                                  one ─ pod not Ready and the budget may lose it ─► delete
//!                                          (at its resourceVersion: a pod turning Ready
//!                                          meanwhile is refused with 429)
//!                                      ─ take one disruption: the budget's status written
//!                                          with disruptionsAllowed - 1 and the pod in
//!                                          disruptedPods, compare-and-swap ─► delete
//!                                      ─ none left / not computed yet ─► 429 TooManyRequests
//! ```
//!
//! The decisions are pure ([`may_ignore_budgets`], [`guard`], [`may_lose_unready`],
//! [`take_disruption`]); the registry reads and writes around them. A pod or budget that
//! changed between the read and the write is read again (bounded).

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rudder_proto::objects::disruption::{
    guards_eviction, is_pod_ready, update_disruption_allowed, ALWAYS_ALLOW,
};
use rudder_raftstore::kv::{KeyRange, RangeRequest};
use serde_json::{json, Value};

use super::transform::{candidate, request_namespace, Part};
use super::{object_ref, Registry, Resolved, Target, WriteOptions, MAX_ATTEMPTS};
use crate::caller;
use crate::delete::DeleteOptions;
use crate::error::ApiError;
use crate::kinds::KindInfo;
use crate::object;

/// Kubernetes' `MaxDisruptedPodSize`: evictions approved but not yet seen by the disruption
/// controller beyond which a budget refuses more.
const MAX_DISRUPTED_PODS: usize = 2000;
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

/// Kubernetes' `canIgnorePDB`: a pod that is finished, still Pending or already being
/// deleted disrupts nothing more by going, so no budget is asked.
pub(crate) fn may_ignore_budgets(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        || matches!(phase(pod), "Succeeded" | "Failed" | "Pending")
}

/// Kubernetes' `shouldEnforceResourceVersion`: a Pending pod is deleted only as it was read,
/// so one that starts running (and may count for a budget) meanwhile is looked at again.
fn enforces_resource_version(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase(pod), "Succeeded" | "Failed")
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// The budgets guarding a pod's eviction.
#[derive(Debug, PartialEq)]
pub(crate) enum Guard<'a> {
    Unguarded,
    One(&'a PodDisruptionBudget),
    /// Two or more: the eviction subresource does not support that (Kubernetes neither).
    Several,
}

/// Which of `budgets` (its namespace's) guard evicting `pod`.
pub(crate) fn guard<'a>(pod: &Pod, budgets: &'a [PodDisruptionBudget]) -> Guard<'a> {
    let mut guarding = budgets.iter().filter(|pdb| guards_eviction(pdb, pod));
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
            cause: format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                status.desired_healthy, status.current_healthy
            ),
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

/// The budget's status does not reflect its spec yet (or a pod turned Ready under an
/// eviction): try again shortly.
fn still_processing(budget: &str) -> ApiError {
    ApiError::TooManyRequests {
        message: VIOLATES_BUDGET.into(),
        cause: format!("The disruption budget {budget} is still being processed by the server."),
        retry_after_seconds: 10,
    }
}

fn typed<T: serde::de::DeserializeOwned>(object: &Value, what: &str) -> Result<T, ApiError> {
    serde_json::from_value(object.clone())
        .map_err(|error| ApiError::internal(format!("stored {what} does not decode: {error}")))
}

impl Registry {
    /// Evicts a pod: deletes it as `eviction.options` say unless the PodDisruptionBudget
    /// guarding it has no disruption to spare (`TooManyRequests`: retry later). Returns the
    /// pod as deletion left it and whether it is gone, as [`Registry::delete`] does.
    pub async fn evict(&self, eviction: &Eviction<'_>) -> Result<(Value, bool), ApiError> {
        let pods = self.kind("pods")?;
        let budgets = self.kind("poddisruptionbudgets")?;
        let namespace = request_namespace(pods, eviction.namespace);
        let target = Target {
            resource: "pods",
            namespace: &namespace,
            name: eviction.name,
        };
        let key = object::key(pods, &namespace, eviction.name);
        let caller_pinned_version = !eviction.options.precondition_resource_version.is_empty();
        let mut last_conflict = None;
        for _ in 0..MAX_ATTEMPTS {
            let Some(kv) = self.read(&key).await? else {
                // An earlier attempt of this request may have deleted it: answer as it did.
                if let Some(revision) = self.earlier_attempt().await? {
                    if let Some(before) = self.read_at(&key, revision - 1).await? {
                        return Ok((before, true));
                    }
                }
                return Err(ApiError::NotFound {
                    object: object_ref(pods, eviction.name),
                });
            };
            let current = object::decode(&kv)?;
            let pod: Pod = typed(&current, "pod")?;
            let read_version = kv.mod_revision.to_string();
            if may_ignore_budgets(&pod) {
                let mut options = eviction.options.clone();
                if enforces_resource_version(&pod) && !caller_pinned_version {
                    options.precondition_resource_version = read_version;
                }
                match self.delete(&target, &options, None).await {
                    // The pod changed since it was read: look at it again.
                    Err(conflict @ ApiError::Conflict { .. }) if !caller_pinned_version => {
                        last_conflict = Some(conflict);
                        continue;
                    }
                    outcome => return outcome,
                }
            }
            let guarding = self.budgets_in(budgets, &namespace).await?;
            let pdb = match guard(&pod, &guarding) {
                Guard::Unguarded => return self.delete(&target, &eviction.options, None).await,
                Guard::Several => {
                    return Err(ApiError::Unsupported {
                        message: SEVERAL_BUDGETS.into(),
                    })
                }
                Guard::One(pdb) => pdb,
            };
            let budget = pdb.metadata.name.clone().unwrap_or_default();
            if may_lose_unready(pdb, &pod) {
                // Deleted only as read: had it turned Ready meanwhile, it would count.
                let mut options = eviction.options.clone();
                if !caller_pinned_version {
                    options.precondition_resource_version = read_version;
                }
                return match self.delete(&target, &options, None).await {
                    Err(ApiError::Conflict { .. }) if !caller_pinned_version => {
                        Err(still_processing(&budget))
                    }
                    outcome => outcome,
                };
            }
            let at = Resolved {
                info: budgets,
                namespace: &namespace,
                name: &budget,
            };
            match self.take_disruption_of(&at, eviction.name).await {
                Ok(()) => {}
                // The budget went between the list and the write: look again.
                Err(ApiError::NotFound { .. }) => continue,
                Err(refusal @ ApiError::TooManyRequests { .. }) => {
                    if self.earlier_attempt().await?.is_none() {
                        return Err(refusal);
                    }
                    // An earlier attempt of this very request took the disruption (its
                    // status write was this request's first store write) and did not get to
                    // the deletion: delete now, under the part number that deletion had.
                    let _ = caller::next_tag();
                }
                Err(error) => return Err(error),
            }
            return self.delete(&target, &eviction.options, None).await;
        }
        Err(last_conflict.unwrap_or_else(|| ApiError::Conflict {
            object: object_ref(pods, eviction.name),
            reason: "the pod or its disruption budget kept changing during the eviction; try \
                     again"
                .into(),
        }))
    }

    /// Every PodDisruptionBudget of `namespace`, in one linearizable read.
    async fn budgets_in(
        &self,
        budgets: &KindInfo,
        namespace: &str,
    ) -> Result<Vec<PodDisruptionBudget>, ApiError> {
        let (_, response) = self
            .range(RangeRequest {
                range: KeyRange::prefix(object::prefix(budgets, namespace)),
                ..Default::default()
            })
            .await?;
        response
            .kvs
            .iter()
            .map(|kv| typed(&object::decode(kv)?, "PodDisruptionBudget"))
            .collect()
    }

    /// Writes `at`'s status with one disruption taken for `pod`, compare-and-swap on the
    /// revision read (a budget changed meanwhile is read and judged again).
    async fn take_disruption_of(&self, at: &Resolved<'_>, pod: &str) -> Result<(), ApiError> {
        let now = jiff::Timestamp::now();
        let budgets = at.info;
        self.modify(at, None, &WriteOptions::default(), |current| {
            let pdb: PodDisruptionBudget = typed(current, "PodDisruptionBudget")?;
            let status = take_disruption(&pdb, pod, now)?;
            candidate(budgets, Part::Status, current, &json!({ "status": status }))
        })
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> jiff::Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn pod(phase: &str, ready: bool, labels: Value) -> Pod {
        let ready = if ready { "True" } else { "False" };
        serde_json::from_value(json!({
            "metadata": { "name": "web-1", "namespace": "default", "labels": labels },
            "spec": { "nodeName": "n1", "containers": [] },
            "status": { "phase": phase,
                        "conditions": [{ "type": "Ready", "status": ready }] }
        }))
        .unwrap()
    }

    fn budget(name: &str, generation: i64, status: Value) -> PodDisruptionBudget {
        serde_json::from_value(json!({
            "metadata": { "name": name, "namespace": "default", "generation": generation },
            "spec": { "minAvailable": 2, "selector": { "matchLabels": { "app": "web" } } },
            "status": status
        }))
        .unwrap()
    }

    fn computed(allowed: i32, current: i32, desired: i32) -> Value {
        json!({ "observedGeneration": 1, "disruptionsAllowed": allowed,
                "currentHealthy": current, "desiredHealthy": desired, "expectedPods": current })
    }

    #[test]
    fn finished_pending_and_terminating_pods_skip_the_budgets() {
        let web = json!({ "app": "web" });
        assert!(!may_ignore_budgets(&pod("Running", true, web.clone())));
        for phase in ["Succeeded", "Failed", "Pending"] {
            assert!(
                may_ignore_budgets(&pod(phase, false, web.clone())),
                "{phase}"
            );
        }
        let mut going = pod("Running", true, web.clone());
        going.metadata.deletion_timestamp = Some(Time(now()));
        assert!(may_ignore_budgets(&going));
        // Only the Pending one is deleted at the version read (it may start running).
        assert!(enforces_resource_version(&pod(
            "Pending",
            false,
            web.clone()
        )));
        assert!(!enforces_resource_version(&pod("Failed", false, web)));
        assert!(!enforces_resource_version(&going));
    }

    #[test]
    fn one_budget_guards_and_two_are_not_supported() {
        let web = pod("Running", true, json!({ "app": "web" }));
        let one = [budget("a", 1, computed(1, 3, 2))];
        assert!(
            matches!(guard(&web, &one), Guard::One(b) if b.metadata.name.as_deref() == Some("a"))
        );
        let two = [
            budget("a", 1, computed(1, 3, 2)),
            budget("b", 1, computed(1, 3, 2)),
        ];
        assert_eq!(guard(&web, &two), Guard::Several);
        let db = pod("Running", true, json!({ "app": "db" }));
        assert_eq!(guard(&db, &two), Guard::Unguarded);
    }

    #[test]
    fn a_disruption_is_taken_and_recorded_until_none_is_left() {
        let pdb = budget("web", 1, computed(1, 3, 2));
        let status = take_disruption(&pdb, "web-1", now()).unwrap();
        assert_eq!(status.disruptions_allowed, 0);
        assert_eq!(
            status.disrupted_pods.as_ref().and_then(|d| d.get("web-1")),
            Some(&Time(now()))
        );
        // The last disruption taken turns the condition False.
        let condition = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (condition.type_.as_str(), condition.status.as_str()),
            ("DisruptionAllowed", "False")
        );
        let exhausted = PodDisruptionBudget {
            status: Some(status),
            ..pdb
        };
        let refused = take_disruption(&exhausted, "web-2", now()).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "Cannot evict pod as it would violate the pod's disruption budget."
        );
        assert_eq!(
            refused.status_object()["details"]["causes"][0]["message"],
            "The disruption budget web needs 2 healthy pods and has 3 currently"
        );
    }

    #[test]
    fn a_budget_not_yet_computed_for_its_generation_refuses_for_now() {
        let stale = budget("web", 2, computed(5, 7, 2));
        let refused = take_disruption(&stale, "web-1", now()).unwrap_err();
        assert!(matches!(
            refused,
            ApiError::TooManyRequests {
                retry_after_seconds: 10,
                ..
            }
        ));
        assert!(refused.status_object()["details"]["causes"][0]["message"]
            .as_str()
            .unwrap()
            .ends_with("is still being processed by the server."));
        let never = budget("web", 1, json!({}));
        assert!(matches!(
            take_disruption(&never, "web-1", now()),
            Err(ApiError::TooManyRequests { .. })
        ));
        let negative = budget("web", 1, computed(-1, 1, 2));
        assert!(take_disruption(&negative, "web-1", now())
            .unwrap_err()
            .to_string()
            .contains("pdb disruptions allowed is negative"));
    }

    #[test]
    fn an_unready_pod_goes_when_the_application_is_whole_or_the_policy_allows() {
        let unready = pod("Running", false, json!({ "app": "web" }));
        let whole = budget("web", 1, computed(0, 2, 2));
        assert!(may_lose_unready(&whole, &unready));
        let disrupted = budget("web", 1, computed(0, 1, 2));
        assert!(!may_lose_unready(&disrupted, &unready));
        let mut always = disrupted.clone();
        always.spec.as_mut().unwrap().unhealthy_pod_eviction_policy = Some(ALWAYS_ALLOW.into());
        assert!(may_lose_unready(&always, &unready));
        // A Ready pod always takes a disruption.
        assert!(!may_lose_unready(
            &always,
            &pod("Running", true, json!({ "app": "web" }))
        ));
    }
}
