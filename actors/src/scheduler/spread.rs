//! PodTopologySpread as kube-scheduler's plugin decides it: spreading a pod's peers evenly over
//! topology domains (zones, nodes). `DoNotSchedule` constraints filter, `ScheduleAnyway` ones
//! score. Pure.
//!
//! ```text
//!  filter, per constraint:  matching(node's domain) + (1 if the pod matches) - min  ≤ maxSkew
//!      matching: pods in the pod's namespace the selector picks, not terminating, counted
//!                over nodes with every constraint's key that pass its inclusion policies
//!      min:      the least matching over those domains; 0 while there are fewer than
//!                minDomains of them
//!  score:  Σ per constraint  matching(domain) · ln(domains + 2) + maxSkew - 1,
//!          fewer is better: 100 · (max + min - score) / max
//! ```
//!
//! A pod without constraints of its own gets the system defaults, `ScheduleAnyway` only
//! (hostname with skew 3, zone with skew 5), over the selector of the Services, controller and
//! ReplicaSet/StatefulSet that own it ([`default_selector`], given by the caller); with none,
//! it is not spread. `nodeAffinityPolicy` defaults to Honor and `nodeTaintsPolicy` to Ignore;
//! `matchLabelKeys` add `key in (value)` with the pod's own values.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use rudder_proto::objects::selector::LabelSelector;

use super::scores::MAX_NODE_SCORE;
use super::snapshot::{spec_of, NodeInfo, Snapshot};
use super::terms::{has_required_node_affinity, requirement, with_requirements};
use super::unfit::Unfit;
use crate::pods::cached::{Pod, PodSpec};
use crate::scheduling::node_affinity::matches_required;
use crate::scheduling::taints::{first_untolerated, NO_EXECUTE, NO_SCHEDULE};

pub const DO_NOT_SCHEDULE: &str = "DoNotSchedule";
pub const SCHEDULE_ANYWAY: &str = "ScheduleAnyway";
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
const HONOR: &str = "Honor";

/// One constraint, ready to count with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub max_skew: i64,
    pub topology_key: String,
    pub selector: LabelSelector,
    pub min_domains: i64,
    pub honor_node_affinity: bool,
    pub honor_node_taints: bool,
}

impl Constraint {
    fn of(c: &TopologySpreadConstraint, labels: Option<&BTreeMap<String, String>>) -> Self {
        let keyed: Vec<(String, String)> = c
            .match_label_keys
            .iter()
            .flatten()
            .filter_map(|key| Some((key.clone(), labels?.get(key)?.clone())))
            .collect();
        let selector = match &c.label_selector {
            None if keyed.is_empty() => LabelSelector::nothing(),
            None => {
                let set: BTreeMap<String, String> = keyed.into_iter().collect();
                LabelSelector::from_set(&set)
            }
            Some(base) => with_requirements(
                base,
                keyed
                    .iter()
                    .map(|(key, value)| requirement(key, "In", value))
                    .collect(),
            ),
        };
        Self {
            max_skew: i64::from(c.max_skew),
            topology_key: c.topology_key.clone(),
            selector,
            min_domains: i64::from(c.min_domains.unwrap_or(1)),
            honor_node_affinity: c.node_affinity_policy.as_deref().unwrap_or(HONOR) == HONOR,
            honor_node_taints: c.node_taints_policy.as_deref() == Some(HONOR),
        }
    }
}

/// The pod's constraints with `whenUnsatisfiable: action`, or, when it has none of its own,
/// the system defaults over `default_selector` (`ScheduleAnyway` only).
pub fn constraints(
    pod: &Pod,
    action: &str,
    default_selector: Option<&LabelSelector>,
) -> Vec<Constraint> {
    let own = spec_of(pod)
        .topology_spread_constraints
        .as_deref()
        .unwrap_or_default();
    if !own.is_empty() {
        let labels = pod.metadata.labels.as_ref();
        return own
            .iter()
            .filter(|c| c.when_unsatisfiable == action)
            .map(|c| Constraint::of(c, labels))
            .collect();
    }
    let Some(selector) = default_selector.filter(|s| !s.is_everything()) else {
        return Vec::new();
    };
    if action != SCHEDULE_ANYWAY {
        return Vec::new();
    }
    [(HOSTNAME_LABEL, 3), (ZONE_LABEL, 5)]
        .into_iter()
        .map(|(key, max_skew)| Constraint {
            max_skew,
            topology_key: key.to_string(),
            selector: selector.clone(),
            min_domains: 1,
            honor_node_affinity: true,
            honor_node_taints: false,
        })
        .collect()
}

/// The selector system default spreading counts a pod's peers with (`helper.DefaultSelector`):
/// the label maps of the Services selecting the pod and of its ReplicationController, ANDed
/// with its ReplicaSet's or StatefulSet's `spec.selector`. `None` when that selects
/// everything, which leaves the pod unspread.
pub fn default_selector(
    label_sets: &[&BTreeMap<String, String>],
    owner: Option<&metav1::LabelSelector>,
) -> Option<LabelSelector> {
    let mut labels = BTreeMap::new();
    for set in label_sets {
        labels.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let from_sets = metav1::LabelSelector {
        match_labels: Some(labels.clone()),
        match_expressions: None,
    };
    let selector = match owner {
        Some(owner) => {
            let mut expressions: Vec<metav1::LabelSelectorRequirement> = owner
                .match_labels
                .iter()
                .flatten()
                .map(|(key, value)| requirement(key, "In", value))
                .collect();
            expressions.extend(owner.match_expressions.iter().flatten().cloned());
            let merged = metav1::LabelSelector {
                match_labels: Some(labels),
                match_expressions: Some(expressions),
            };
            LabelSelector::from_api(&merged).or_else(|_| LabelSelector::from_api(&from_sets))
        }
        None => LabelSelector::from_api(&from_sets),
    };
    selector.ok().filter(|s| !s.is_everything())
}

/// The DoNotSchedule constraints and their counts per domain, computed once per pod.
#[derive(Debug, Clone, Default)]
pub struct SpreadFilter {
    constraints: Vec<Constraint>,
    /// Per constraint: topology value → matching pods.
    counts: Vec<HashMap<String, i64>>,
    /// Per constraint: the global minimum the skew is measured from.
    min: Vec<i64>,
    /// Per constraint: whether the pod itself matches (it adds one where it lands).
    self_match: Vec<bool>,
}

impl SpreadFilter {
    pub fn new(pod: &Pod, snapshot: &Snapshot, default_selector: Option<&LabelSelector>) -> Self {
        let constraints = constraints(pod, DO_NOT_SCHEDULE, default_selector);
        if constraints.is_empty() {
            return Self::default();
        }
        let spec = spec_of(pod);
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        let mut counts = vec![HashMap::<String, i64>::new(); constraints.len()];
        for node in snapshot.nodes() {
            if !has_all_keys(node, &constraints) {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if !includes(c, spec, node) {
                    continue;
                }
                let value = node.label(&c.topology_key).unwrap_or("");
                *counts[i].entry(value.to_string()).or_insert(0) +=
                    count_matching(node, &c.selector, namespace);
            }
        }
        let min = constraints
            .iter()
            .zip(&counts)
            .map(|(c, domains)| {
                if (domains.len() as i64) < c.min_domains {
                    0
                } else {
                    // No domain at all (with minDomains ≤ 0): nothing to be skewed against.
                    domains
                        .values()
                        .copied()
                        .min()
                        .unwrap_or(i64::from(i32::MAX))
                }
            })
            .collect();
        let self_match = constraints
            .iter()
            .map(|c| c.selector.matches_labels(pod.metadata.labels.as_ref()))
            .collect();
        Self {
            constraints,
            counts,
            min,
            self_match,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.constraints.is_empty()
    }

    /// Whether placing the pod on `node` keeps every constraint within its skew.
    pub fn check(&self, node: &NodeInfo) -> Result<(), Unfit> {
        for (i, c) in self.constraints.iter().enumerate() {
            let Some(value) = node.label(&c.topology_key) else {
                return Err(Unfit::SpreadMissingLabel);
            };
            let matching = self.counts[i].get(value).copied().unwrap_or(0);
            let skew = matching + i64::from(self.self_match[i]) - self.min[i];
            if skew > c.max_skew {
                return Err(Unfit::Spread);
            }
        }
        Ok(())
    }

    /// The matching pods counted in `value`'s domain of constraint `i` (for tests and logs).
    pub fn count(&self, i: usize, value: &str) -> Option<i64> {
        self.counts.get(i)?.get(value).copied()
    }
}

/// The ScheduleAnyway scores of the `feasible` nodes (indices into the snapshot), normalized
/// 0..=100; all zero when the pod has no soft constraints (kube-scheduler skips the plugin).
pub fn score_nodes(
    pod: &Pod,
    snapshot: &Snapshot,
    feasible: &[usize],
    default_selector: Option<&LabelSelector>,
) -> Vec<i64> {
    let mut scores = vec![0; feasible.len()];
    let constraints = constraints(pod, SCHEDULE_ANYWAY, default_selector);
    if constraints.is_empty() || feasible.is_empty() {
        return scores;
    }
    let spec = spec_of(pod);
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
    // System defaults let a node without a zone still be spread by hostname.
    let require_all = !spec
        .topology_spread_constraints
        .as_deref()
        .unwrap_or_default()
        .is_empty();
    let nodes: Vec<&NodeInfo> = feasible.iter().map(|&i| &snapshot.nodes()[i]).collect();
    let ignored: Vec<bool> = nodes
        .iter()
        .map(|node| require_all && !has_all_keys(node, &constraints))
        .collect();

    // The domains of the feasible nodes; hostname ones are counted per node when scoring.
    let mut counts = vec![HashMap::<String, i64>::new(); constraints.len()];
    for (node, _) in nodes.iter().zip(&ignored).filter(|(_, ignored)| !**ignored) {
        for (i, c) in constraints.iter().enumerate() {
            if c.topology_key != HOSTNAME_LABEL {
                let value = node.label(&c.topology_key).unwrap_or("");
                counts[i].entry(value.to_string()).or_insert(0);
            }
        }
    }
    let kept = ignored.iter().filter(|ignored| !**ignored).count();
    let weights: Vec<f64> = constraints
        .iter()
        .zip(&counts)
        .map(|(c, domains)| {
            let size = if c.topology_key == HOSTNAME_LABEL {
                kept
            } else {
                domains.len()
            };
            ((size + 2) as f64).ln()
        })
        .collect();
    for node in snapshot.nodes() {
        if require_all && !has_all_keys(node, &constraints) {
            continue;
        }
        for (i, c) in constraints.iter().enumerate() {
            if !includes(c, spec, node) {
                continue;
            }
            let value = node.label(&c.topology_key).unwrap_or("");
            if let Some(count) = counts[i].get_mut(value) {
                *count += count_matching(node, &c.selector, namespace);
            }
        }
    }

    for ((score, node), ignored) in scores.iter_mut().zip(&nodes).zip(&ignored) {
        if *ignored {
            continue;
        }
        let mut sum = 0.0;
        for (i, c) in constraints.iter().enumerate() {
            let Some(value) = node.label(&c.topology_key) else {
                continue;
            };
            let matching = if c.topology_key == HOSTNAME_LABEL {
                count_matching(node, &c.selector, namespace)
            } else {
                counts[i].get(value).copied().unwrap_or(0)
            };
            sum += matching as f64 * weights[i] + (c.max_skew - 1) as f64;
        }
        *score = sum.round() as i64;
    }

    let (mut min, mut max) = (i64::MAX, 0);
    for (score, ignored) in scores.iter().zip(&ignored) {
        if !*ignored {
            min = min.min(*score);
            max = max.max(*score);
        }
    }
    for (score, ignored) in scores.iter_mut().zip(&ignored) {
        *score = if *ignored {
            0
        } else if max == 0 {
            MAX_NODE_SCORE
        } else {
            MAX_NODE_SCORE * (max + min - *score) / max
        };
    }
    scores
}

/// Whether the node has every constraint's topology label.
fn has_all_keys(node: &NodeInfo, constraints: &[Constraint]) -> bool {
    constraints
        .iter()
        .all(|c| node.label(&c.topology_key).is_some())
}

/// Whether the node's domain counts for `c` (`matchNodeInclusionPolicies`).
fn includes(c: &Constraint, spec: &PodSpec, node: &NodeInfo) -> bool {
    if c.honor_node_affinity
        && has_required_node_affinity(spec)
        && !matches_required(
            spec.node_selector.as_ref(),
            spec.affinity.as_deref(),
            node.node(),
        )
    {
        return false;
    }
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    !(c.honor_node_taints
        && first_untolerated(node.taints(), tolerations, &[NO_SCHEDULE, NO_EXECUTE]).is_some())
}

/// The pods on `node` in `namespace` that `selector` picks, terminating ones aside
/// (`countPodsMatchSelector`; a selector with no requirements counts none).
fn count_matching(node: &NodeInfo, selector: &LabelSelector, namespace: &str) -> i64 {
    if selector.is_everything() {
        return 0;
    }
    node.groups()
        .iter()
        .filter(|g| !g.terminating && g.namespace == namespace && selector.matches(&g.labels))
        .map(|g| g.count as i64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::{bound, pending, sized, snapshot_of, with_spec};
    use serde_json::{json, Value};

    fn spread_pod(name: &str, constraints: Value) -> Pod {
        with_spec(
            pending(name, json!({ "app": "web" }), "100m", "128Mi"),
            "topologySpreadConstraints",
            constraints,
        )
    }

    fn zone_constraint(skew: i32, when: &str) -> Value {
        json!([{ "maxSkew": skew, "topologyKey": "zone", "whenUnsatisfiable": when,
                 "labelSelector": { "matchLabels": { "app": "web" } } }])
    }

    /// Zones a (n1, n2), b (n3), c (n4), and n5 without a zone; `placed` web pods per node.
    fn cluster(placed: &[(&str, usize)]) -> Snapshot {
        let nodes = [
            sized("n1", "4", "8Gi", json!({ "zone": "a" })),
            sized("n2", "4", "8Gi", json!({ "zone": "a" })),
            sized("n3", "4", "8Gi", json!({ "zone": "b" })),
            sized("n4", "4", "8Gi", json!({ "zone": "c" })),
            sized("n5", "4", "8Gi", json!({})),
        ];
        let mut pods = Vec::new();
        for (node, count) in placed {
            for i in 0..*count {
                let name = format!("{node}-{i}");
                pods.push(bound(
                    &pending(&name, json!({ "app": "web" }), "1m", "1Mi"),
                    node,
                ));
            }
        }
        snapshot_of(&nodes, &pods)
    }

    fn verdicts(filter: &SpreadFilter, snapshot: &Snapshot) -> Vec<Result<(), Unfit>> {
        snapshot.nodes().iter().map(|n| filter.check(n)).collect()
    }

    #[test]
    fn do_not_schedule_keeps_the_skew_within_max_skew() {
        let s = cluster(&[("n1", 1), ("n2", 1), ("n3", 1)]);
        let pod = spread_pod("new", zone_constraint(1, DO_NOT_SCHEDULE));
        let filter = SpreadFilter::new(&pod, &s, None);
        assert_eq!(filter.count(0, "a"), Some(2));
        assert_eq!(filter.count(0, "c"), Some(0));
        assert_eq!(
            verdicts(&filter, &s),
            [
                Err(Unfit::Spread),
                Err(Unfit::Spread),
                Err(Unfit::Spread),
                Ok(()),
                Err(Unfit::SpreadMissingLabel),
            ]
        );
        let soft = spread_pod("new", zone_constraint(1, SCHEDULE_ANYWAY));
        assert!(SpreadFilter::new(&soft, &s, None).is_empty());
    }

    #[test]
    fn min_domains_counts_missing_domains_as_empty() {
        let s = cluster(&[("n1", 1), ("n3", 1), ("n4", 1)]);
        let constraint = |min_domains: i32| {
            json!([{ "maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                     "minDomains": min_domains,
                     "labelSelector": { "matchLabels": { "app": "web" } } }])
        };
        let three = SpreadFilter::new(&spread_pod("p", constraint(3)), &s, None);
        assert_eq!(three.check(&s.nodes()[0]), Ok(()), "1 + 1 - 1 ≤ 1");
        let four = SpreadFilter::new(&spread_pod("p", constraint(4)), &s, None);
        assert_eq!(
            four.check(&s.nodes()[0]),
            Err(Unfit::Spread),
            "min is 0 with 3 < 4 domains"
        );
    }

    #[test]
    fn node_affinity_and_taint_policies_decide_which_domains_count() {
        let mut s = cluster(&[("n3", 2)]);
        s.upsert_node(crate::scheduler::testing::with_node_spec(
            s.node("n4").unwrap().node(),
            json!({ "taints": [{ "key": "dedicated", "value": "x", "effect": "NoSchedule" }] }),
        ));
        let constraint = |taints: &str| {
            json!([{ "maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                     "nodeTaintsPolicy": taints,
                     "labelSelector": { "matchLabels": { "app": "web" } } }])
        };
        let honor = SpreadFilter::new(&spread_pod("p", constraint("Honor")), &s, None);
        assert_eq!(honor.count(0, "c"), None, "the tainted zone does not count");
        assert_eq!(
            honor.check(&s.nodes()[2]),
            Err(Unfit::Spread),
            "2 + 1 - 0 > 1"
        );
        let ignore = SpreadFilter::new(&spread_pod("p", constraint("Ignore")), &s, None);
        assert_eq!(ignore.count(0, "c"), Some(0));

        let pinned = with_spec(
            spread_pod("p", constraint("Ignore")),
            "nodeSelector",
            json!({ "zone": "b" }),
        );
        let filter = SpreadFilter::new(&pinned, &s, None);
        assert_eq!(
            filter.count(0, "a"),
            None,
            "zones the pod may not use do not count"
        );
        assert_eq!(
            filter.check(&s.nodes()[2]),
            Ok(()),
            "only zone b counts: 2 + 1 - 2 ≤ 1"
        );
    }

    #[test]
    fn match_label_keys_narrow_the_selector_to_the_pods_own_values() {
        let pod = with_spec(
            pending("p", json!({ "app": "web", "rev": "2" }), "1m", "1Mi"),
            "topologySpreadConstraints",
            json!([{ "maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                     "matchLabelKeys": ["rev"],
                     "labelSelector": { "matchLabels": { "app": "web" } } }]),
        );
        let all = constraints(&pod, DO_NOT_SCHEDULE, None);
        let c = &all[0];
        let labels = |rev: &str| -> BTreeMap<String, String> {
            [
                ("app".to_string(), "web".to_string()),
                ("rev".to_string(), rev.to_string()),
            ]
            .into()
        };
        assert!(c.selector.matches(&labels("2")));
        assert!(!c.selector.matches(&labels("1")));
        assert!(c.honor_node_affinity && !c.honor_node_taints);
        assert_eq!(c.min_domains, 1);
    }

    #[test]
    fn system_defaults_apply_only_with_an_owner_selector() {
        let plain = pending("p", json!({ "app": "web" }), "1m", "1Mi");
        assert!(constraints(&plain, SCHEDULE_ANYWAY, None).is_empty());
        let web: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let selector = default_selector(&[&web], None).expect("a service selects the pod");
        let defaults = constraints(&plain, SCHEDULE_ANYWAY, Some(&selector));
        let keys: Vec<(&str, i64)> = defaults
            .iter()
            .map(|c| (c.topology_key.as_str(), c.max_skew))
            .collect();
        assert_eq!(keys, [(HOSTNAME_LABEL, 3), (ZONE_LABEL, 5)]);
        assert!(constraints(&plain, DO_NOT_SCHEDULE, Some(&selector)).is_empty());

        let rs: metav1::LabelSelector = serde_json::from_value(json!({
            "matchLabels": { "pod-template-hash": "abc" } }))
        .unwrap();
        let both = default_selector(&[&web], Some(&rs)).unwrap();
        let mut labels = web.clone();
        assert!(!both.matches(&labels));
        labels.insert("pod-template-hash".into(), "abc".into());
        assert!(both.matches(&labels));
        assert!(
            default_selector(&[], None).is_none(),
            "selecting everything spreads nothing"
        );
    }

    #[test]
    fn schedule_anyway_prefers_the_emptier_domains() {
        let s = cluster(&[("n1", 2), ("n3", 1)]);
        let pod = spread_pod("new", zone_constraint(1, SCHEDULE_ANYWAY));
        let feasible = [0, 2, 3, 4];
        let scores = score_nodes(&pod, &s, &feasible, None);
        // Zones a=2, b=1, c=0 over 3 domains: raw 2·ln5, ln5, 0 → 3, 2, 0; n5 has no zone.
        assert_eq!(scores, [0, 33, 100, 0]);
        assert_eq!(
            score_nodes(&pending("p", json!({}), "1m", "1Mi"), &s, &feasible, None),
            [0; 4]
        );
    }

    #[test]
    fn default_spreading_scores_hostnames_even_without_zones() {
        let s = cluster(&[("n1", 1), ("n5", 2)]);
        let pod = pending("new", json!({ "app": "web" }), "1m", "1Mi");
        let web: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let selector = default_selector(&[&web], None);
        // The fixture's zones are under `zone`, not topology.kubernetes.io/zone, so only the
        // hostname term applies: 1, 0, 2 pods, weight ln(3 + 2), skew 3 adds 2: raw 4, 2, 5;
        // normalized 100 · (5 + 2 - raw) / 5.
        let scores = score_nodes(&pod, &s, &[0, 3, 4], selector.as_ref());
        assert_eq!(scores, [60, 100, 40]);
    }
}
