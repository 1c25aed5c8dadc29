//! The ReplicaSet controller's decision (Kubernetes' `syncReplicaSet` and `manageReplicas`),
//! pure: a set, the pods of its namespace, whether its expectations allow acting, and `now`
//! in; what to adopt, release, create and delete, and the status to report, out.
//!
//! ```text
//!  active pods of the namespace ─ claim ─► owned (controlled + matching, and adopted orphans)
//!                                  └─────► release (controlled, no longer matching)
//!  owned vs replicas ─► create n (at most 500) │ delete the most expendable (rank.rs)
//!  owned ─► status: replicas, fullyLabeled, ready, available (minReadySeconds), generation
//! ```
//!
//! ReplicationControllers are the same controller with a plain label map for a selector.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{self, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector as ApiSelector, ObjectMeta, OwnerReference,
};
use rudder_proto::objects::selector::LabelSelector;

use super::rank::deletion_order;
use crate::pods::cached::Pod;
use crate::pods::{available_in, controller_of, is_active, is_available, ready_since};

/// At most this many pods are created or deleted in one sync (Kubernetes' `burstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// A ReplicaSet or a ReplicationController, as the controller sees both.
#[derive(Debug, Clone)]
pub struct ReplicatedSet {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub generation: i64,
    pub replicas: i32,
    pub min_ready_seconds: i32,
    /// `None`: a selector that selects nothing (missing or invalid).
    pub selector: Option<LabelSelector>,
    pub template: PodTemplateSpec,
    /// Being deleted: it neither adopts nor scales.
    pub deleting: bool,
}

impl ReplicatedSet {
    pub fn from_replica_set(set: &ReplicaSet) -> Self {
        let spec = set.spec.clone().unwrap_or_default();
        Self {
            kind: "ReplicaSet",
            api_version: "apps/v1",
            selector: LabelSelector::from_api(&spec.selector).ok(),
            replicas: spec.replicas.unwrap_or(1),
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            template: spec.template.unwrap_or_default(),
            ..Self::of(&set.metadata)
        }
    }

    pub fn from_controller(rc: &ReplicationController) -> Self {
        let spec = rc.spec.clone().unwrap_or_default();
        let template = spec.template.unwrap_or_default();
        // An RC without a selector selects by its template's labels.
        let labels = spec
            .selector
            .or_else(|| template.metadata.as_ref().and_then(|m| m.labels.clone()))
            .filter(|l| !l.is_empty());
        let selector = labels.and_then(|labels| {
            let api = ApiSelector {
                match_labels: Some(labels),
                match_expressions: None,
            };
            LabelSelector::from_api(&api).ok()
        });
        Self {
            kind: "ReplicationController",
            api_version: "v1",
            selector,
            replicas: spec.replicas.unwrap_or(1),
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            template,
            ..Self::of(&rc.metadata)
        }
    }

    fn of(meta: &ObjectMeta) -> Self {
        Self {
            kind: "",
            api_version: "",
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            generation: meta.generation.unwrap_or(0),
            replicas: 1,
            min_ready_seconds: 0,
            selector: None,
            template: PodTemplateSpec::default(),
            deleting: meta.deletion_timestamp.is_some(),
        }
    }

    /// `namespace/name`: its work-queue key.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn selects(&self, pod: &Pod) -> bool {
        let empty = BTreeMap::new();
        let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
        self.selector.as_ref().is_some_and(|s| s.matches(labels))
    }

    /// The owner reference its pods carry.
    pub fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: self.api_version.into(),
            kind: self.kind.into(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    /// A new pod from the template (named by the API from `<name>-`).
    pub fn new_pod(&self) -> v1::Pod {
        let template = self.template.metadata.clone().unwrap_or_default();
        v1::Pod {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}-", self.name)),
                namespace: Some(self.namespace.clone()),
                labels: template.labels,
                annotations: template.annotations,
                finalizers: template.finalizers,
                owner_references: Some(vec![self.owner_reference()]),
                ..ObjectMeta::default()
            },
            spec: self.template.spec.clone(),
            status: None,
        }
    }
}

/// The status a set reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetStatus {
    pub replicas: i32,
    pub fully_labeled_replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    pub observed_generation: i64,
}

/// What the controller does for one set.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Orphans it selects: they get its controller reference.
    pub adopt: Vec<Arc<Pod>>,
    /// Pods it controls that its selector no longer selects: their reference goes.
    pub release: Vec<Arc<Pod>>,
    /// How many pods to create from the template.
    pub create: usize,
    /// Pods to delete, most expendable first.
    pub delete: Vec<Arc<Pod>>,
    pub status: SetStatus,
    /// Look again then: a ready pod becomes available after `minReadySeconds`.
    pub requeue_after: Option<Duration>,
}

/// `pods`: every pod of the set's namespace (from the cache). `may_scale`: its expectations
/// are satisfied, so the cache shows the effect of its earlier actions.
pub fn reconcile(
    set: &ReplicatedSet,
    pods: &[Arc<Pod>],
    may_scale: bool,
    now: jiff::Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    // Without a usable selector the set claims, releases and scales nothing (Kubernetes
    // refuses to sync it): releasing its pods and making new ones would never end.
    if set.selector.is_none() {
        plan.status.observed_generation = set.generation;
        return plan;
    }
    let mut owned = Vec::new();
    for pod in pods.iter().filter(|p| is_active(p)) {
        let controller = controller_of(&pod.metadata);
        match controller {
            Some(owner) if owner.uid == set.uid => {
                if set.selects(pod) {
                    owned.push(pod.clone());
                } else if !set.deleting {
                    // A set being deleted keeps its pods for the cascade.
                    plan.release.push(pod.clone());
                }
            }
            None if !set.deleting && set.selects(pod) => {
                plan.adopt.push(pod.clone());
                owned.push(pod.clone());
            }
            _ => {}
        }
    }
    let wanted = usize::try_from(set.replicas.max(0)).unwrap_or(0);
    if may_scale && !set.deleting {
        if owned.len() < wanted {
            plan.create = (wanted - owned.len()).min(BURST_REPLICAS);
        } else if owned.len() > wanted {
            let surplus = (owned.len() - wanted).min(BURST_REPLICAS);
            plan.delete = deletion_order(&owned).into_iter().take(surplus).collect();
        }
    }
    plan.status = status(set, &owned, now);
    plan.requeue_after = next_available(set, &owned, now);
    plan
}

fn status(set: &ReplicatedSet, owned: &[Arc<Pod>], now: jiff::Timestamp) -> SetStatus {
    let template_labels = set
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(owned.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    SetStatus {
        replicas: count(&|_| true),
        fully_labeled_replicas: count(&|p| {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            template_labels
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
        }),
        ready_replicas: count(&|p| ready_since(p).is_some()),
        available_replicas: count(&|p| is_available(p, set.min_ready_seconds, now)),
        observed_generation: set.generation,
    }
}

/// When the first ready but not yet available pod becomes available.
fn next_available(
    set: &ReplicatedSet,
    owned: &[Arc<Pod>],
    now: jiff::Timestamp,
) -> Option<Duration> {
    if set.min_ready_seconds <= 0 {
        return None;
    }
    owned
        .iter()
        .filter_map(|p| available_in(p, set.min_ready_seconds, now))
        .min()
}

/// Kubernetes' slow start: creations in batches of 1, 2, 4, ... so that a set whose pods
/// all fail (quota, a bad template) fails after one call, not after `count`.
pub fn slow_start_batches(count: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let (mut size, mut left) = (1, count);
    while left > 0 {
        let batch = size.min(left);
        batches.push(batch);
        left -= batch;
        size *= 2;
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::fixtures::{pod, ready_pod};

    const UID: &str = "rs-uid";

    fn set(replicas: i32) -> ReplicatedSet {
        let rs: ReplicaSet = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "kubia", "namespace": "default", "uid": UID, "generation": 3 },
            "spec": { "replicas": replicas,
                      "selector": { "matchLabels": { "app": "kubia" } },
                      "template": { "metadata": { "labels": { "app": "kubia", "tier": "web" } },
                                    "spec": { "containers": [{ "name": "c", "image": "kubia" }] } } }
        }))
        .unwrap();
        ReplicatedSet::from_replica_set(&rs)
    }

    fn owned(name: &str) -> Pod {
        let mut p = ready_pod(name, "2024-01-01T00:00:00Z");
        p.metadata.labels = Some(
            [
                ("app".to_string(), "kubia".to_string()),
                ("tier".to_string(), "web".to_string()),
            ]
            .into(),
        );
        p.metadata.owner_references = Some(vec![set(1).owner_reference()]);
        p
    }

    fn pods(pods: Vec<Pod>) -> Vec<Arc<Pod>> {
        pods.into_iter().map(Arc::new).collect()
    }

    fn now() -> jiff::Timestamp {
        "2024-01-01T01:00:00Z".parse().unwrap()
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
        pods.iter()
            .map(|p| p.metadata.name.as_deref().unwrap())
            .collect()
    }

    #[test]
    fn a_set_short_of_pods_creates_the_difference_at_most_a_burst() {
        let plan = reconcile(&set(3), &pods(vec![owned("a")]), true, now());
        assert_eq!(plan.create, 2);
        assert!(plan.delete.is_empty());
        assert_eq!(
            reconcile(&set(2000), &[], true, now()).create,
            BURST_REPLICAS
        );
    }

    #[test]
    fn a_set_with_too_many_deletes_the_most_expendable() {
        let mut unready = owned("unready");
        unready.status.as_mut().unwrap().conditions = None;
        let plan = reconcile(
            &set(1),
            &pods(vec![owned("a"), unready, owned("b")]),
            true,
            now(),
        );
        assert_eq!(plan.create, 0);
        assert_eq!(plan.delete.len(), 2);
        assert_eq!(names(&plan.delete)[0], "unready");
    }

    #[test]
    fn a_lagging_cache_never_scales_while_expectations_are_pending() {
        let plan = reconcile(&set(3), &pods(vec![owned("a")]), false, now());
        assert_eq!((plan.create, plan.delete.len()), (0, 0));
        assert_eq!(plan.status.replicas, 1, "the status is still reported");
        let plan = reconcile(&set(0), &pods(vec![owned("a")]), false, now());
        assert!(plan.delete.is_empty());
    }

    #[test]
    fn orphans_it_selects_are_adopted_and_count_and_others_are_left_alone() {
        let mut orphan = owned("orphan");
        orphan.metadata.owner_references = None;
        let mut foreign = owned("foreign");
        foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "other".into();
        let mut stranger = owned("stranger");
        stranger.metadata.owner_references = None;
        stranger.metadata.labels = Some([("app".to_string(), "other".to_string())].into());
        let plan = reconcile(&set(2), &pods(vec![orphan, foreign, stranger]), true, now());
        assert_eq!(names(&plan.adopt), ["orphan"]);
        assert_eq!(
            plan.create, 1,
            "the orphan counts, the foreign pod does not"
        );
        assert!(plan.release.is_empty());
    }

    #[test]
    fn pods_whose_labels_changed_are_released_and_replaced() {
        let mut relabeled = owned("relabeled");
        relabeled.metadata.labels = Some([("app".to_string(), "debug".to_string())].into());
        let plan = reconcile(&set(1), &pods(vec![relabeled]), true, now());
        assert_eq!(names(&plan.release), ["relabeled"]);
        assert_eq!(plan.create, 1);
    }

    #[test]
    fn terminal_and_deleting_pods_do_not_count() {
        let mut failed = owned("failed");
        failed.status.as_mut().unwrap().phase = Some("Failed".into());
        let mut deleting = owned("deleting");
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
        let plan = reconcile(&set(2), &pods(vec![failed, deleting]), true, now());
        assert_eq!(plan.create, 2);
        assert_eq!(plan.status.replicas, 0);
    }

    #[test]
    fn a_set_being_deleted_neither_adopts_nor_scales() {
        let mut s = set(3);
        s.deleting = true;
        let mut orphan = owned("orphan");
        orphan.metadata.owner_references = None;
        let plan = reconcile(&s, &pods(vec![orphan]), true, now());
        assert!(plan.adopt.is_empty());
        assert_eq!(plan.create, 0);
    }

    #[test]
    fn status_counts_labels_readiness_and_availability() {
        let mut s = set(3);
        s.min_ready_seconds = 600;
        let fresh = {
            let mut p = owned("fresh");
            p.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_transition_time =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    "2024-01-01T00:55:00Z".parse().unwrap(),
                ));
            p
        };
        let mut partly_labeled = owned("partly");
        partly_labeled.metadata.labels = Some([("app".to_string(), "kubia".to_string())].into());
        let unready = pod(
            serde_json::json!({ "metadata": { "name": "unready", "labels": { "app": "kubia", "tier": "web" },
            "ownerReferences": [serde_json::to_value(s.owner_reference()).unwrap()] }, "status": { "phase": "Running" } }),
        );
        let plan = reconcile(
            &s,
            &pods(vec![owned("old"), fresh, partly_labeled, unready]),
            true,
            now(),
        );
        let expected = SetStatus {
            replicas: 4,
            fully_labeled_replicas: 3,
            ready_replicas: 3,
            available_replicas: 2,
            observed_generation: 3,
        };
        assert_eq!(plan.status, expected);
        assert_eq!(
            plan.requeue_after,
            Some(Duration::from_secs(300)),
            "fresh becomes available at 01:05"
        );
    }

    #[test]
    fn a_replication_controller_selects_by_its_map_or_its_template_labels() {
        let rc: ReplicationController = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "kubia", "namespace": "default", "uid": "rc-uid" },
            "spec": { "replicas": 2, "template": { "metadata": { "labels": { "app": "kubia" } } } }
        }))
        .unwrap();
        let rc = ReplicatedSet::from_controller(&rc);
        let mut orphan = owned("orphan");
        orphan.metadata.owner_references = None;
        let plan = reconcile(&rc, &pods(vec![orphan]), true, now());
        assert_eq!(names(&plan.adopt), ["orphan"]);
        assert_eq!(plan.create, 1);
        let pod = rc.new_pod();
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("kubia-"));
        assert_eq!(
            pod.metadata.owner_references.unwrap()[0].kind,
            "ReplicationController"
        );
    }

    #[test]
    fn a_set_without_a_selector_does_nothing_at_all() {
        let mut s = set(1);
        s.selector = None;
        let mut orphan = owned("orphan");
        orphan.metadata.owner_references = None;
        let plan = reconcile(&s, &pods(vec![orphan, owned("mine")]), true, now());
        assert!(
            plan.adopt.is_empty() && plan.release.is_empty(),
            "no claims either way"
        );
        assert_eq!(
            (plan.create, plan.delete.len()),
            (0, 0),
            "no endless creation"
        );
    }

    #[test]
    fn a_set_being_deleted_keeps_its_pods_for_the_cascade() {
        let mut s = set(1);
        s.deleting = true;
        let mut relabeled = owned("relabeled");
        relabeled.metadata.labels = Some([("app".to_string(), "debug".to_string())].into());
        let plan = reconcile(&s, &pods(vec![relabeled]), true, now());
        assert!(plan.release.is_empty());
    }

    #[test]
    fn slow_start_doubles_its_batches() {
        assert_eq!(slow_start_batches(0), Vec::<usize>::new());
        assert_eq!(slow_start_batches(1), [1]);
        assert_eq!(slow_start_batches(10), [1, 2, 4, 3]);
        assert_eq!(slow_start_batches(15), [1, 2, 4, 8]);
    }
}
