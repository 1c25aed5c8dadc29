//! InterPodAffinity as kube-scheduler's plugin decides it: pods that want to be near, or away
//! from, other pods, per topology domain (a node, a zone: the nodes sharing a label value).
//! Pure.
//!
//! Filter, counted once per pod over every node, then checked per node in this order:
//! 1. the pod's required affinity: the node has every term's topology label, and a pod that
//!    matches all the terms runs in each of those domains. Exception: when no pod anywhere
//!    matches them and the pod matches its own terms, it may go anywhere with the labels (the
//!    first of a group that wants to be together);
//! 2. the pod's required anti-affinity: no pod a term selects runs in the node's domain for it;
//! 3. existing pods' required anti-affinity: no pod whose term selects this pod runs in the
//!    node's domain for that term.
//!
//! Score: per topology pair, + weight for each preferred affinity term of the pod that an
//! existing pod matches (− for anti-affinity), ± weight for each existing pod's preferred term
//! that the pod matches, + 1 (hardPodAffinityWeight) for each existing pod's required affinity
//! term that it matches; a node sums the pairs of its labels; then min..max → 0..100.

use std::collections::{BTreeMap, HashMap};

use super::scores::MAX_NODE_SCORE;
use super::snapshot::{NodeInfo, Snapshot};
use super::terms::{AffinityTerm, PodTerms};
use super::unfit::Unfit;
use crate::pods::cached::Pod;

/// kube-scheduler's default `hardPodAffinityWeight`.
pub const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// Topology key → value → count.
type Counts = HashMap<String, HashMap<String, i64>>;

fn bump(counts: &mut Counts, node: &NodeInfo, key: &str, by: i64) {
    if let Some(value) = node.label(key) {
        *counts
            .entry(key.to_string())
            .or_default()
            .entry(value.to_string())
            .or_insert(0) += by;
    }
}

fn count(counts: &Counts, key: &str, value: &str) -> i64 {
    counts
        .get(key)
        .and_then(|values| values.get(value))
        .copied()
        .unwrap_or(0)
}

fn matches_all(
    terms: &[AffinityTerm],
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
    namespace_labels: &BTreeMap<String, String>,
) -> bool {
    !terms.is_empty()
        && terms
            .iter()
            .all(|t| t.matches(namespace, labels, namespace_labels))
}

/// The pod's required terms and the pods counted against them, computed once per pod.
#[derive(Debug, Clone, Default)]
pub struct AffinityFilter {
    /// Pairs where an existing pod's required anti-affinity selects the pod.
    existing_anti: Counts,
    /// Pairs where pods matching all the pod's required affinity terms run.
    affinity: Counts,
    /// Pairs where pods matching one of the pod's required anti-affinity terms run.
    anti: Counts,
    required_affinity: Vec<AffinityTerm>,
    required_anti_affinity: Vec<AffinityTerm>,
    matches_own_terms: bool,
}

impl AffinityFilter {
    pub fn new(pod: &Pod, terms: &PodTerms, snapshot: &Snapshot) -> Self {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        let labels = pod.metadata.labels.as_ref();
        let own_namespace = snapshot.namespace_labels(namespace);

        let mut existing_anti = Counts::new();
        for node in snapshot.nodes() {
            for existing in node.pods_with_required_anti_affinity() {
                for term in &existing.terms.required_anti_affinity {
                    if term.matches(namespace, labels, own_namespace) {
                        bump(&mut existing_anti, node, &term.topology_key, 1);
                    }
                }
            }
        }

        let required = &terms.required_affinity;
        let required_anti = &terms.required_anti_affinity;
        let mut affinity = Counts::new();
        let mut anti = Counts::new();
        if !required.is_empty() || !required_anti.is_empty() {
            for node in snapshot.nodes() {
                for group in node.groups() {
                    let group_labels = Some(&group.labels);
                    let group_namespace = snapshot.namespace_labels(&group.namespace);
                    let by = group.count as i64;
                    if matches_all(required, &group.namespace, group_labels, group_namespace) {
                        for term in required {
                            bump(&mut affinity, node, &term.topology_key, by);
                        }
                    }
                    for term in required_anti {
                        if term.matches(&group.namespace, group_labels, group_namespace) {
                            bump(&mut anti, node, &term.topology_key, by);
                        }
                    }
                }
            }
        }
        Self {
            existing_anti,
            affinity,
            anti,
            required_affinity: required.clone(),
            required_anti_affinity: required_anti.clone(),
            matches_own_terms: matches_all(required, namespace, labels, own_namespace),
        }
    }

    /// Whether nothing is to be checked (kube-scheduler skips the filter).
    pub fn is_empty(&self) -> bool {
        self.existing_anti.is_empty()
            && self.required_affinity.is_empty()
            && self.required_anti_affinity.is_empty()
    }

    pub fn check(&self, node: &NodeInfo) -> Result<(), Unfit> {
        if self.is_empty() {
            return Ok(());
        }
        if !self.satisfies_affinity(node) {
            return Err(Unfit::PodAffinity);
        }
        if !self.satisfies_anti_affinity(node) {
            return Err(Unfit::PodAntiAffinity);
        }
        if !self.satisfies_existing_anti_affinity(node) {
            return Err(Unfit::ExistingAntiAffinity);
        }
        Ok(())
    }

    fn satisfies_affinity(&self, node: &NodeInfo) -> bool {
        let mut pods_exist = true;
        for term in &self.required_affinity {
            let Some(value) = node.label(&term.topology_key) else {
                return false;
            };
            if count(&self.affinity, &term.topology_key, value) <= 0 {
                pods_exist = false;
            }
        }
        pods_exist || (self.affinity.is_empty() && self.matches_own_terms)
    }

    fn satisfies_anti_affinity(&self, node: &NodeInfo) -> bool {
        self.required_anti_affinity.iter().all(|term| {
            node.label(&term.topology_key)
                .is_none_or(|value| count(&self.anti, &term.topology_key, value) <= 0)
        })
    }

    fn satisfies_existing_anti_affinity(&self, node: &NodeInfo) -> bool {
        self.existing_anti.iter().all(|(key, values)| {
            node.label(key)
                .and_then(|value| values.get(value))
                .is_none_or(|&n| n <= 0)
        })
    }
}

/// The InterPodAffinity scores of the `feasible` nodes (indices into the snapshot),
/// normalized 0..=100; all zero when no term on either side applies.
pub fn score_nodes(
    pod: &Pod,
    terms: &PodTerms,
    snapshot: &Snapshot,
    feasible: &[usize],
) -> Vec<i64> {
    let mut scores = vec![0; feasible.len()];
    if feasible.is_empty() {
        return scores;
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
    let labels = pod.metadata.labels.as_ref();
    let own_namespace = snapshot.namespace_labels(namespace);
    let has_preferences =
        !terms.preferred_affinity.is_empty() || !terms.preferred_anti_affinity.is_empty();

    let mut topology = Counts::new();
    for node in snapshot.nodes() {
        if node.labels().is_none_or(|labels| labels.is_empty()) {
            continue;
        }
        if has_preferences {
            for group in node.groups() {
                let group_namespace = snapshot.namespace_labels(&group.namespace);
                let by = group.count as i64;
                let group_labels = Some(&group.labels);
                for preferred in &terms.preferred_affinity {
                    let term = &preferred.term;
                    if term.matches(&group.namespace, group_labels, group_namespace) {
                        bump(
                            &mut topology,
                            node,
                            &term.topology_key,
                            preferred.weight * by,
                        );
                    }
                }
                for preferred in &terms.preferred_anti_affinity {
                    let term = &preferred.term;
                    if term.matches(&group.namespace, group_labels, group_namespace) {
                        bump(
                            &mut topology,
                            node,
                            &term.topology_key,
                            -preferred.weight * by,
                        );
                    }
                }
            }
        }
        for existing in node.pods_with_affinity() {
            let theirs = &existing.terms;
            for term in &theirs.required_affinity {
                if term.matches(namespace, labels, own_namespace) {
                    bump(
                        &mut topology,
                        node,
                        &term.topology_key,
                        HARD_POD_AFFINITY_WEIGHT,
                    );
                }
            }
            for preferred in &theirs.preferred_affinity {
                if preferred.term.matches(namespace, labels, own_namespace) {
                    bump(
                        &mut topology,
                        node,
                        &preferred.term.topology_key,
                        preferred.weight,
                    );
                }
            }
            for preferred in &theirs.preferred_anti_affinity {
                if preferred.term.matches(namespace, labels, own_namespace) {
                    bump(
                        &mut topology,
                        node,
                        &preferred.term.topology_key,
                        -preferred.weight,
                    );
                }
            }
        }
    }
    if topology.is_empty() {
        return scores;
    }

    for (score, &at) in scores.iter_mut().zip(feasible) {
        let node = &snapshot.nodes()[at];
        *score = topology
            .iter()
            .map(|(key, values)| {
                node.label(key)
                    .and_then(|value| values.get(value))
                    .copied()
                    .unwrap_or(0)
            })
            .sum();
    }
    let min = scores.iter().copied().min().unwrap_or(0);
    let max = scores.iter().copied().max().unwrap_or(0);
    let range = max - min;
    for score in scores.iter_mut() {
        *score = if range > 0 {
            (MAX_NODE_SCORE as f64 * ((*score - min) as f64 / range as f64)) as i64
        } else {
            0
        };
    }
    scores
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::{bound, pending, sized, snapshot_of, with_spec};
    use serde_json::{json, Value};

    fn term(labels: Value, key: &str) -> Value {
        json!({ "topologyKey": key, "labelSelector": { "matchLabels": labels } })
    }

    fn with_affinity(pod: Pod, affinity: Value) -> Pod {
        with_spec(pod, "affinity", affinity)
    }

    /// `{kind: {required: [term(labels, key)]}}`, kind podAffinity or podAntiAffinity.
    fn required(kind: &str, labels: Value, key: &str) -> Value {
        json!({ kind: { "requiredDuringSchedulingIgnoredDuringExecution": [term(labels, key)] } })
    }

    fn check_all(pod: &Pod, snapshot: &Snapshot) -> Vec<Result<(), Unfit>> {
        let filter = AffinityFilter::new(pod, &PodTerms::of(pod), snapshot);
        snapshot.nodes().iter().map(|n| filter.check(n)).collect()
    }

    /// n1, n2 in zone a; n3 in zone b; `placed` (pod, node) pairs.
    fn cluster(placed: Vec<(Pod, &str)>) -> Snapshot {
        let nodes = [
            sized("n1", "4", "8Gi", json!({ "zone": "a" })),
            sized("n2", "4", "8Gi", json!({ "zone": "a" })),
            sized("n3", "4", "8Gi", json!({ "zone": "b" })),
        ];
        let pods: Vec<_> = placed.iter().map(|(pod, node)| bound(pod, node)).collect();
        snapshot_of(&nodes, &pods)
    }

    fn web(name: &str) -> Pod {
        pending(name, json!({ "app": "web" }), "1m", "1Mi")
    }

    #[test]
    fn required_affinity_needs_a_matching_pod_in_the_domain() {
        let s = cluster(vec![(
            pending("db", json!({ "app": "db" }), "1m", "1Mi"),
            "n2",
        )]);
        let near_db = with_affinity(
            web("w"),
            required("podAffinity", json!({ "app": "db" }), "zone"),
        );
        assert_eq!(
            check_all(&near_db, &s),
            [Ok(()), Ok(()), Err(Unfit::PodAffinity)]
        );
        let by_rack = with_affinity(
            web("w"),
            required("podAffinity", json!({ "app": "db" }), "rack"),
        );
        assert_eq!(
            check_all(&by_rack, &s),
            vec![Err(Unfit::PodAffinity); 3],
            "no node has a rack"
        );
    }

    #[test]
    fn the_first_of_a_self_affine_group_may_go_anywhere() {
        let s = cluster(vec![]);
        let together = required("podAffinity", json!({ "app": "web" }), "zone");
        let first = with_affinity(web("w0"), together.clone());
        assert_eq!(check_all(&first, &s), [Ok(()), Ok(()), Ok(())]);
        let s = cluster(vec![(first, "n3")]);
        let second = with_affinity(web("w1"), together);
        assert_eq!(
            check_all(&second, &s),
            [Err(Unfit::PodAffinity), Err(Unfit::PodAffinity), Ok(())]
        );
    }

    #[test]
    fn required_anti_affinity_keeps_away_from_matching_pods() {
        let s = cluster(vec![(web("w0"), "n1")]);
        let apart = with_affinity(
            web("w1"),
            required("podAntiAffinity", json!({ "app": "web" }), "zone"),
        );
        assert_eq!(
            check_all(&apart, &s),
            [
                Err(Unfit::PodAntiAffinity),
                Err(Unfit::PodAntiAffinity),
                Ok(())
            ]
        );
        let other_namespace = {
            let mut pod = apart.clone();
            pod.metadata.namespace = Some("elsewhere".into());
            pod
        };
        assert_eq!(check_all(&other_namespace, &s), [Ok(()), Ok(()), Ok(())]);
    }

    #[test]
    fn existing_anti_affinity_keeps_the_pod_away_too() {
        let loner = with_affinity(
            pending("loner", json!({ "app": "batch" }), "1m", "1Mi"),
            required(
                "podAntiAffinity",
                json!({ "app": "web" }),
                "kubernetes.io/hostname",
            ),
        );
        let s = cluster(vec![(loner, "n2")]);
        assert_eq!(
            check_all(&web("w"), &s),
            [Ok(()), Err(Unfit::ExistingAntiAffinity), Ok(())]
        );
        let db = pending("db", json!({ "app": "db" }), "1m", "1Mi");
        assert_eq!(check_all(&db, &s), [Ok(()), Ok(()), Ok(())]);
        assert!(AffinityFilter::new(&db, &PodTerms::of(&db), &s).is_empty());
    }

    #[test]
    fn preferred_terms_score_from_both_sides() {
        let likes_web = with_affinity(
            pending("fan", json!({ "app": "fan" }), "1m", "1Mi"),
            json!({ "podAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [
                { "weight": 10, "podAffinityTerm": term(json!({ "app": "web" }), "zone") }] } }),
        );
        let s = cluster(vec![(web("w0"), "n3")]);
        let scores = score_nodes(&likes_web, &PodTerms::of(&likes_web), &s, &[0, 1, 2]);
        assert_eq!(scores, [0, 0, 100]);

        // An existing pod that prefers to be away from web pods pushes a web pod off its zone.
        let shy = with_affinity(
            pending("shy", json!({ "app": "shy" }), "1m", "1Mi"),
            json!({ "podAntiAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [
                { "weight": 5, "podAffinityTerm": term(json!({ "app": "web" }), "zone") }] } }),
        );
        let s = cluster(vec![(shy, "n1")]);
        let w = web("w");
        assert_eq!(
            score_nodes(&w, &PodTerms::of(&w), &s, &[0, 1, 2]),
            [0, 0, 100]
        );
        let plain = pending("p", json!({ "app": "p" }), "1m", "1Mi");
        assert_eq!(
            score_nodes(&plain, &PodTerms::of(&plain), &s, &[0, 1, 2]),
            [0, 0, 0]
        );
    }
}
