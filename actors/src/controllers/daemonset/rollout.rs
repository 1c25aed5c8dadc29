//! A DaemonSet's RollingUpdate step (Kubernetes' `rollingUpdate`), taken only when the core
//! loop has nothing left to create or delete. Pure.
//!
//! A pod is *new* when its `controller-revision-hash` is the current hash, else *old*.
//!
//! ```text
//!  maxSurge = 0: delete old pods while (unavailable nodes) < maxUnavailable;
//!                an old pod that is not available is replaced at once (it costs nothing).
//!                The core loop then creates the new pod on that node.
//!  maxSurge > 0: create a new pod beside an old one (at most maxSurge at a time, at once when
//!                the old one is not available); delete the old pod once the new one is
//!                available. No node loses its daemon before its replacement works.
//! ```
//!
//! Both bounds are int-or-percent of the nodes that should run the daemon, rounded up; when
//! both come out 0 on a non-empty set, maxUnavailable is 1 so that the update can move.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::DaemonSetUpdateStrategy;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::placement::REVISION_HASH_LABEL;
use crate::intstr::{scaled_value, NotAPercentage};
use crate::pods::cached::Pod;
use crate::pods::{is_available, is_ready};

/// How far an update may go at once, in nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub max_surge: usize,
    pub max_unavailable: usize,
}

impl Bounds {
    /// From a RollingUpdate strategy and the number of nodes that should run the daemon.
    pub fn of(strategy: &DaemonSetUpdateStrategy, desired: usize) -> Result<Self, NotAPercentage> {
        let rolling = strategy.rolling_update.clone().unwrap_or_default();
        let total = i32::try_from(desired).unwrap_or(i32::MAX);
        let scale = |v: Option<IntOrString>, default: i32| -> Result<usize, NotAPercentage> {
            let value = v.unwrap_or(IntOrString::Int(default));
            Ok(usize::try_from(scaled_value(&value, total, true)?.max(0)).unwrap_or(0))
        };
        let max_surge = scale(rolling.max_surge, 0)?;
        let mut max_unavailable = scale(rolling.max_unavailable, 1)?;
        if desired > 0 && max_surge == 0 && max_unavailable == 0 {
            max_unavailable = 1;
        }
        Ok(Self {
            max_surge,
            max_unavailable,
        })
    }
}

/// What one update step does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    pub delete: Vec<Arc<Pod>>,
    /// Nodes that get a new pod beside their old one (surge only).
    pub create_on: Vec<String>,
}

/// What the step looks at.
pub struct Rollout<'a> {
    /// Every node with daemon pods or that should run one (then with no pods), pods not being
    /// deleted-and-terminal.
    pub by_node: &'a BTreeMap<String, Vec<Arc<Pod>>>,
    /// The nodes that should run the daemon.
    pub eligible: &'a BTreeSet<String>,
    pub hash: &'a str,
    pub min_ready_seconds: i32,
    pub bounds: Bounds,
    pub now: jiff::Timestamp,
}

impl Rollout<'_> {
    pub fn step(&self) -> Step {
        if self.bounds.max_surge == 0 {
            self.replace_in_place()
        } else {
            self.surge()
        }
    }

    fn available(&self, pod: &Pod) -> bool {
        is_available(pod, self.min_ready_seconds, self.now)
    }

    fn replace_in_place(&self) -> Step {
        let mut unavailable = 0;
        let mut replace_now = Vec::new();
        let mut candidates = Vec::new();
        for pods in self.by_node.values() {
            match split_new_old(pods, self.hash) {
                None | Some((None, None) | (Some(_), Some(_))) => unavailable += 1,
                Some((Some(new), None)) => unavailable += usize::from(!self.available(new)),
                Some((None, Some(old))) if !self.available(old) => {
                    replace_now.push(old.clone());
                    unavailable += 1;
                }
                Some((None, Some(_))) if unavailable >= self.bounds.max_unavailable => {}
                Some((None, Some(old))) => candidates.push(old.clone()),
            }
        }
        let room = self.bounds.max_unavailable.saturating_sub(unavailable);
        replace_now.extend(candidates.into_iter().take(room));
        Step {
            delete: replace_now,
            create_on: Vec::new(),
        }
    }

    fn surge(&self) -> Step {
        let mut step = Step::default();
        let (mut surging, mut available) = (0_usize, 0_usize);
        let mut misplaced = Vec::new();
        let mut replace_now = Vec::new();
        let mut candidates = Vec::new();
        for (node, pods) in self.by_node {
            let Some((new, old)) = split_new_old(pods, self.hash) else {
                surging += 1;
                continue;
            };
            let old_available = old.is_some_and(|p| self.available(p));
            if old_available || new.is_some_and(|p| self.available(p)) {
                available += 1;
            }
            match (new, old) {
                (_, None) => {}
                (None, Some(old)) if !old_available => {
                    if self.eligible.contains(node) {
                        replace_now.push(node.clone());
                    } else {
                        misplaced.push(old.clone());
                    }
                }
                (None, Some(_)) => candidates.push(node.clone()),
                (Some(new), Some(_)) if !self.available(new) => surging += 1,
                (Some(_), Some(old)) => step.delete.push(old.clone()),
            }
        }
        // Pods on nodes that should no longer run the daemon go only once as many elsewhere
        // are available as the set wants, so a moved selector never leaves it with none.
        let desired = self.eligible.len();
        let deletable = available.saturating_sub(desired).min(misplaced.len());
        step.delete.extend(misplaced.into_iter().take(deletable));
        let room = self.bounds.max_surge.saturating_sub(surging);
        step.create_on = replace_now;
        step.create_on.extend(candidates.into_iter().take(room));
        step
    }
}

/// A node's one new and one old pod; either may be missing.
type NewAndOld<'p> = (Option<&'p Arc<Pod>>, Option<&'p Arc<Pod>>);

/// The node's new and old pod, ignoring pods being deleted; `None` when it has two of a kind
/// (the core loop cleans that up first).
fn split_new_old<'p>(pods: &'p [Arc<Pod>], hash: &str) -> Option<NewAndOld<'p>> {
    let (mut new, mut old) = (None, None);
    for pod in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let slot = if is_updated(pod, hash) {
            &mut new
        } else {
            &mut old
        };
        if slot.replace(pod).is_some() {
            return None;
        }
    }
    Some((new, old))
}

/// Whether the pod carries the current template hash.
pub fn is_updated(pod: &Pod, hash: &str) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_HASH_LABEL))
        .is_some_and(|h| h == hash)
}

/// With surge, which of a node's running pods stay: the oldest new one, and the oldest old
/// one only while it is ready and the new one not yet available. `pods` are oldest first.
pub fn surplus_while_surging(
    pods: &[Arc<Pod>],
    hash: &str,
    min_ready_seconds: i32,
    now: jiff::Timestamp,
) -> Vec<Arc<Pod>> {
    let mut surplus = Vec::new();
    let (mut oldest_new, mut oldest_old) = (None, None);
    for pod in pods {
        let slot = if is_updated(pod, hash) {
            &mut oldest_new
        } else {
            &mut oldest_old
        };
        if slot.is_none() {
            *slot = Some(pod);
        } else {
            surplus.push(pod.clone());
        }
    }
    if let (Some(new), Some(old)) = (oldest_new, oldest_old) {
        if !is_ready(old) || is_available(new, min_ready_seconds, now) {
            surplus.push(old.clone());
        }
    }
    surplus
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::fixtures::ready_pod;

    const NEW: &str = "new-hash";

    fn pod(name: &str, hash: &str, ready: bool) -> Arc<Pod> {
        let mut p = ready_pod(name, "2024-01-01T00:00:00Z");
        p.metadata.labels = Some([(REVISION_HASH_LABEL.to_string(), hash.to_string())].into());
        if !ready {
            p.status.as_mut().unwrap().conditions = None;
        }
        Arc::new(p)
    }

    fn now() -> jiff::Timestamp {
        "2024-01-01T01:00:00Z".parse().unwrap()
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
        pods.iter()
            .map(|p| p.metadata.name.as_deref().unwrap())
            .collect()
    }

    fn nodes(entries: Vec<(&str, Vec<Arc<Pod>>)>) -> BTreeMap<String, Vec<Arc<Pod>>> {
        entries
            .into_iter()
            .map(|(n, p)| (n.to_string(), p))
            .collect()
    }

    fn step(by_node: &BTreeMap<String, Vec<Arc<Pod>>>, surge: usize, unavailable: usize) -> Step {
        let eligible: BTreeSet<String> = by_node.keys().cloned().collect();
        Rollout {
            by_node,
            eligible: &eligible,
            hash: NEW,
            min_ready_seconds: 0,
            bounds: Bounds {
                max_surge: surge,
                max_unavailable: unavailable,
            },
            now: now(),
        }
        .step()
    }

    #[test]
    fn bounds_round_percentages_up_and_never_both_zero() {
        let strategy = |surge: IntOrString, unavailable: IntOrString| DaemonSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(k8s_openapi::api::apps::v1::RollingUpdateDaemonSet {
                max_surge: Some(surge),
                max_unavailable: Some(unavailable),
            }),
        };
        let pct = |s: &str| IntOrString::String(s.into());
        let default = DaemonSetUpdateStrategy::default();
        let table = [
            (default.clone(), 10, (0, 1)),
            (strategy(IntOrString::Int(0), pct("25%")), 10, (0, 3)),
            (strategy(pct("10%"), IntOrString::Int(0)), 5, (1, 0)),
            (strategy(IntOrString::Int(0), pct("0%")), 5, (0, 1)),
            (default, 0, (0, 1)),
        ];
        for (s, desired, (surge, unavailable)) in table {
            let b = Bounds::of(&s, desired).unwrap();
            assert_eq!(
                (b.max_surge, b.max_unavailable),
                (surge, unavailable),
                "{s:?}"
            );
        }
        assert!(Bounds::of(&strategy(pct("x"), pct("1%")), 3).is_err());
    }

    #[test]
    fn without_surge_old_pods_go_while_unavailability_stays_in_bounds() {
        let by_node = nodes(vec![
            ("n1", vec![pod("o1", "old", true)]),
            ("n2", vec![pod("o2", "old", true)]),
            ("n3", vec![pod("o3", "old", true)]),
            ("n4", vec![pod("fresh", NEW, false)]),
        ]);
        assert_eq!(
            names(&step(&by_node, 0, 2).delete),
            ["o1"],
            "fresh is unavailable"
        );
        assert_eq!(names(&step(&by_node, 0, 3).delete), ["o1", "o2"]);
        assert!(step(&by_node, 0, 1).delete.is_empty());
    }

    #[test]
    fn an_unavailable_old_pod_is_replaced_whatever_the_budget() {
        let by_node = nodes(vec![
            ("n1", vec![pod("fresh", NEW, false)]),
            ("n2", vec![pod("broken", "old", false)]),
            ("n3", vec![pod("fine", "old", true)]),
        ]);
        assert_eq!(names(&step(&by_node, 0, 1).delete), ["broken"]);
    }

    #[test]
    fn nodes_without_a_pod_or_with_two_count_as_unavailable() {
        let by_node = nodes(vec![
            ("empty", vec![]),
            ("twice", vec![pod("a", NEW, true), pod("b", NEW, true)]),
            ("n3", vec![pod("o3", "old", true)]),
        ]);
        assert!(step(&by_node, 0, 2).delete.is_empty());
        assert_eq!(names(&step(&by_node, 0, 3).delete), ["o3"]);
    }

    #[test]
    fn with_surge_new_pods_come_first_and_old_ones_go_once_they_are_available() {
        let by_node = nodes(vec![
            ("n1", vec![pod("o1", "old", true), pod("n1-new", NEW, true)]),
            (
                "n2",
                vec![pod("o2", "old", true), pod("n2-new", NEW, false)],
            ),
            ("n3", vec![pod("o3", "old", true)]),
            ("n4", vec![pod("o4", "old", true)]),
            ("n5", vec![pod("broken", "old", false)]),
        ]);
        let s = step(&by_node, 2, 0);
        assert_eq!(names(&s.delete), ["o1"]);
        assert_eq!(
            s.create_on,
            ["n5", "n3"],
            "n5 at once, n3 within the surge left (n2 surges)"
        );
    }

    #[test]
    fn while_surging_a_node_keeps_the_old_pod_only_until_the_new_one_works() {
        let old = pod("old", "old", true);
        let starting = pod("starting", NEW, false);
        let kept = surplus_while_surging(&[old.clone(), starting.clone()], NEW, 0, now());
        assert!(kept.is_empty());
        let done = surplus_while_surging(&[old, pod("up", NEW, true)], NEW, 0, now());
        assert_eq!(names(&done), ["old"]);
        let unready_old = surplus_while_surging(&[pod("o", "x", false), starting], NEW, 0, now());
        assert_eq!(names(&unready_old), ["o"]);
        let extra =
            surplus_while_surging(&[pod("a", NEW, true), pod("b", NEW, true)], NEW, 0, now());
        assert_eq!(names(&extra), ["b"]);
    }
}
