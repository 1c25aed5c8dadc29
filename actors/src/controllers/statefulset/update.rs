//! How a StatefulSet moves its pods to the update revision (Kubernetes'
//! `newVersionedStatefulSetPod` and the RollingUpdate loop of `updateStatefulSet`), pure.
//!
//! ```text
//!  RollingUpdate, partition p (index = ordinal - ordinals.start):
//!    from the highest index down to p: a pod not at the update revision and not going
//!    ─► delete it (the create path brings it back at the update revision), one per sync;
//!    a pod not Running, Ready and available (or no pod of ours) ─► wait for it
//!    a pod made for an index below p is made at the current revision
//!  RollingUpdate without parameters: p = 0, and a pod made for an index below
//!    status.currentReplicas is made at the current revision (Kubernetes' reading of it)
//!  OnDelete: nothing is deleted for an update; whatever is recreated is at the update revision
//! ```
//!
//! `rollingUpdate.maxUnavailable` (alpha in Kubernetes, behind `MaxUnavailableStatefulSet`)
//! is ignored: an update replaces one pod at a time, as Kubernetes does without the gate.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSetSpec;

use super::identity::revision_of;
use crate::pods::cached::Pod;

/// `spec.updateStrategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// `partition: None`: RollingUpdate without a `rollingUpdate` block.
    RollingUpdate { partition: Option<i32> },
    /// Also any unknown type (the API server refuses those): no pod is deleted for an update.
    OnDelete,
}

impl Strategy {
    /// An unset type reads as the API server defaults it: RollingUpdate, partition 0.
    pub fn of(spec: &StatefulSetSpec) -> Self {
        let strategy = spec.update_strategy.clone().unwrap_or_default();
        let partition = strategy
            .rolling_update
            .map(|r| r.partition.unwrap_or(0).max(0));
        match strategy.type_.as_deref() {
            None | Some("") => Self::RollingUpdate {
                partition: Some(partition.unwrap_or(0)),
            },
            Some("RollingUpdate") => Self::RollingUpdate { partition },
            Some(_) => Self::OnDelete,
        }
    }

    /// Whether the pod made for `index` is made at the current revision rather than the
    /// update revision. `current_replicas`: the set's stored `status.currentReplicas`.
    pub fn at_current_revision(self, index: usize, current_replicas: i32) -> bool {
        let below = |bound: i32| usize::try_from(bound.max(0)).is_ok_and(|b| index < b);
        match self {
            Self::RollingUpdate { partition: None } => below(current_replicas),
            Self::RollingUpdate {
                partition: Some(partition),
            } => below(partition),
            Self::OnDelete => false,
        }
    }

    /// The lowest index a rolling update replaces; `None` under OnDelete.
    pub fn updates_from(self) -> Option<usize> {
        match self {
            Self::RollingUpdate { partition } => {
                Some(usize::try_from(partition.unwrap_or(0).max(0)).unwrap_or(usize::MAX))
            }
            Self::OnDelete => None,
        }
    }
}

/// One rolling-update step.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Delete this pod; it comes back at the update revision.
    Delete(Arc<Pod>),
    /// The pod at this index is not yet updated and available (or not there): wait.
    Wait { index: usize },
    /// Every pod from the partition up is at the update revision and available.
    Done,
}

/// What the step looks at: the set's pod at each index (`None`: none of its pods there).
pub struct Rollout<'a, T, U>
where
    T: Fn(&Pod) -> bool,
    U: Fn(&Pod) -> bool,
{
    pub slots: &'a [Option<Arc<Pod>>],
    pub from: usize,
    pub update_revision: &'a str,
    /// Being deleted (or deleted by this very plan).
    pub is_terminating: T,
    /// Not Running, Ready and available for minReadySeconds, or terminating.
    pub is_unavailable: U,
}

impl<T, U> Rollout<'_, T, U>
where
    T: Fn(&Pod) -> bool,
    U: Fn(&Pod) -> bool,
{
    pub fn step(&self) -> Step {
        for index in (self.from..self.slots.len()).rev() {
            let Some(arc) = &self.slots[index] else {
                return Step::Wait { index };
            };
            let pod: &Pod = arc;
            if revision_of(pod) != self.update_revision && !(self.is_terminating)(pod) {
                return Step::Delete(arc.clone());
            }
            if (self.is_unavailable)(pod) {
                return Step::Wait { index };
            }
        }
        Step::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::statefulset::identity::REVISION_HASH_LABEL;

    fn pod(name: &str, revision: &str, healthy: bool) -> Option<Arc<Pod>> {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.labels = Some([(REVISION_HASH_LABEL.to_string(), revision.to_string())].into());
        // The tests mark health with a label the closures read.
        if !healthy {
            p.metadata
                .labels
                .as_mut()
                .unwrap()
                .insert("sick".into(), "yes".into());
        }
        Some(Arc::new(p))
    }

    fn step(slots: &[Option<Arc<Pod>>], from: usize) -> Step {
        let sick = |p: &Pod| {
            p.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key("sick"))
        };
        Rollout {
            slots,
            from,
            update_revision: "web-new",
            is_terminating: |_: &Pod| false,
            is_unavailable: sick,
        }
        .step()
    }

    fn deleted(s: Step) -> Option<String> {
        match s {
            Step::Delete(p) => p.metadata.name.clone(),
            _ => None,
        }
    }

    #[test]
    fn the_highest_old_pod_goes_first_and_the_next_waits_for_it() {
        let all_old = [
            pod("web-0", "web-old", true),
            pod("web-1", "web-old", true),
            pod("web-2", "web-old", true),
        ];
        assert_eq!(deleted(step(&all_old, 0)).as_deref(), Some("web-2"));
        let coming_up = [
            pod("web-0", "web-old", true),
            pod("web-1", "web-old", true),
            pod("web-2", "web-new", false),
        ];
        assert_eq!(step(&coming_up, 0), Step::Wait { index: 2 });
        let gone = [
            pod("web-0", "web-old", true),
            pod("web-1", "web-old", true),
            None,
        ];
        assert_eq!(step(&gone, 0), Step::Wait { index: 2 });
        let next = [
            pod("web-0", "web-old", true),
            pod("web-1", "web-old", true),
            pod("web-2", "web-new", true),
        ];
        assert_eq!(deleted(step(&next, 0)).as_deref(), Some("web-1"));
    }

    #[test]
    fn pods_below_the_partition_stay() {
        let slots = [
            pod("web-0", "web-old", true),
            pod("web-1", "web-new", true),
            pod("web-2", "web-new", true),
        ];
        assert_eq!(step(&slots, 1), Step::Done);
        assert_eq!(deleted(step(&slots, 0)).as_deref(), Some("web-0"));
        assert_eq!(
            step(&slots, 5),
            Step::Done,
            "a partition above the replicas updates none"
        );
    }

    #[test]
    fn an_unhealthy_old_pod_is_replaced_before_anything_waits_on_it() {
        let slots = [
            pod("web-0", "web-old", true),
            pod("web-1", "web-old", false),
        ];
        assert_eq!(deleted(step(&slots, 0)).as_deref(), Some("web-1"));
    }

    #[test]
    fn the_strategy_says_which_new_pods_are_made_at_the_current_revision() {
        let spec = |strategy: serde_json::Value| -> StatefulSetSpec {
            serde_json::from_value(serde_json::json!({ "selector": {}, "template": {},
                "updateStrategy": strategy }))
            .unwrap()
        };
        let partitioned = Strategy::of(&spec(serde_json::json!({ "type": "RollingUpdate",
            "rollingUpdate": { "partition": 2 } })));
        assert_eq!(partitioned, Strategy::RollingUpdate { partition: Some(2) });
        assert!(partitioned.at_current_revision(1, 0));
        assert!(!partitioned.at_current_revision(2, 5));
        assert_eq!(partitioned.updates_from(), Some(2));
        let bare = Strategy::of(&spec(serde_json::json!({ "type": "RollingUpdate" })));
        assert!(bare.at_current_revision(2, 3) && !bare.at_current_revision(3, 3));
        assert_eq!(bare.updates_from(), Some(0));
        let on_delete = Strategy::of(&spec(serde_json::json!({ "type": "OnDelete" })));
        assert!(!on_delete.at_current_revision(0, 9));
        assert_eq!(on_delete.updates_from(), None);
        let defaulted = Strategy::of(&spec(serde_json::Value::Null));
        assert_eq!(defaulted, Strategy::RollingUpdate { partition: Some(0) });
    }
}
