//! The filters: whether a pod may run on a node, each as kube-scheduler's default profile
//! decides it, in the profile's order, stopping at the first that says no
//! (`RunFilterPlugins`). Pure.
//!
//! ```text
//!  PreFilter::new(pod, snapshot)   once per pod: requests, host ports, parsed terms, the
//!        │                         nodes affinity pins by name, spread counts per domain,
//!        │                         (anti-)affinity counts per topology pair
//!        ▼
//!  run_filters(&pre, node)         per node:
//!     NodeUnschedulable → NodeName → TaintToleration → NodeAffinity → NodePorts
//!     → NodeResourcesFit → VolumeBinding → PodTopologySpread → InterPodAffinity
//!                                                                  ─► Ok(()) | Err(Unfit)
//! ```
//!
//! VolumeBinding is `volumes.rs`; the other volume filters of the default profile
//! (VolumeRestrictions, NodeVolumeLimits, VolumeZone) and DynamicResources are not here.
//! Pods come from the master's shared cache as [`crate::pods::cached::Pod`]s: of volumes
//! only claims are kept, and no container mounts. A filter that needs more of a pod adds
//! it to `pods/cached.rs` first.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Toleration;
use rudder_proto::objects::selector::LabelSelector;

use super::interpod::AffinityFilter;
use super::resources::{pod_requests, Resources};
use super::snapshot::{host_ports, spec_of, HostPort, NodeInfo, PodInfo, Snapshot};
use super::spread::SpreadFilter;
use super::terms::{has_required_node_affinity, PodTerms};
use super::unfit::Unfit;
use super::volumes::PodVolumes;
use crate::pods::cached::{Pod, PodSpec};
use crate::scheduling::node_affinity::{matches_required, NODE_NAME_FIELD};
use crate::scheduling::taints::{
    first_untolerated, is_tolerated, taint, NO_EXECUTE, NO_SCHEDULE, UNSCHEDULABLE,
};

/// Which nodes are checked at all (NodeAffinity's PreFilter result).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeNames {
    /// Every node.
    All,
    /// Only these: every required node affinity term pins `metadata.name In [...]`.
    Only(BTreeSet<String>),
    /// The terms pin no name at all ("pod affinity terms conflict").
    Conflict,
}

/// What the filters need of a pod, worked out once per scheduling attempt (kube-scheduler's
/// PreFilter state in the CycleState).
#[derive(Debug)]
pub struct PreFilter<'a> {
    pub pod: &'a Pod,
    pub spec: &'a PodSpec,
    pub namespace: &'a str,
    pub requests: Resources,
    pub host_ports: Vec<HostPort>,
    pub terms: PodTerms,
    pub node_names: NodeNames,
    /// The system default spreading selector, if the caller gave one (see `spread`).
    pub default_spread: Option<&'a LabelSelector>,
    checks_node_affinity: bool,
    tolerates_unschedulable: bool,
    spread: SpreadFilter,
    affinity: AffinityFilter,
    volumes: PodVolumes,
}

impl<'a> PreFilter<'a> {
    pub fn new(
        pod: &'a Pod,
        snapshot: &Snapshot,
        default_spread: Option<&'a LabelSelector>,
    ) -> Self {
        let spec = spec_of(pod);
        let terms = PodTerms::of(pod);
        let spread = SpreadFilter::new(pod, snapshot, default_spread);
        let affinity = AffinityFilter::new(pod, &terms, snapshot);
        let volumes = PodVolumes::new(pod, snapshot.storage());
        let cordoned = taint(UNSCHEDULABLE, NO_SCHEDULE, None);
        Self {
            pod,
            spec,
            namespace: pod.metadata.namespace.as_deref().unwrap_or(""),
            requests: pod_requests(spec),
            host_ports: host_ports(spec),
            terms,
            node_names: node_names(spec),
            default_spread,
            checks_node_affinity: has_required_node_affinity(spec),
            tolerates_unschedulable: is_tolerated(&cordoned, tolerations(spec)),
            spread,
            affinity,
            volumes,
        }
    }

    /// Why the pod's claims keep it off every node (VolumeBinding's PreFilter), if they do.
    pub fn volume_refusal(&self) -> Option<&str> {
        self.volumes.refusal()
    }

    pub fn tolerations(&self) -> &[Toleration] {
        tolerations(self.spec)
    }
}

fn tolerations(spec: &PodSpec) -> &[Toleration] {
    spec.tolerations.as_deref().unwrap_or_default()
}

/// The node names the required node affinity pins (NodeAffinity's PreFilter): within a term
/// the `metadata.name In` fields intersect, across terms they unite; a term pinning no name
/// leaves every node possible.
pub fn node_names(spec: &PodSpec) -> NodeNames {
    let Some(required) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
    else {
        return NodeNames::All;
    };
    let mut names: Option<BTreeSet<String>> = None;
    for term in &required.node_selector_terms {
        let mut term_names: Option<BTreeSet<String>> = None;
        for field in term.match_fields.iter().flatten() {
            if field.key != NODE_NAME_FIELD || field.operator != "In" {
                continue;
            }
            let values: BTreeSet<String> = field.values.iter().flatten().cloned().collect();
            term_names = Some(match term_names {
                None => values,
                Some(before) => before.intersection(&values).cloned().collect(),
            });
        }
        let Some(term_names) = term_names else {
            return NodeNames::All;
        };
        names.get_or_insert_with(BTreeSet::new).extend(term_names);
    }
    match names {
        None => NodeNames::All,
        Some(names) if names.is_empty() => NodeNames::Conflict,
        Some(names) => NodeNames::Only(names),
    }
}

/// NodeUnschedulable: a cordoned node takes only pods that tolerate
/// `node.kubernetes.io/unschedulable:NoSchedule`.
pub fn node_unschedulable(pre: &PreFilter<'_>, node: &NodeInfo) -> Result<(), Unfit> {
    if node.is_unschedulable() && !pre.tolerates_unschedulable {
        return Err(Unfit::Unschedulable);
    }
    Ok(())
}

/// NodeName: a pod naming a node in `spec.nodeName` fits only there.
pub fn node_name(pre: &PreFilter<'_>, node: &NodeInfo) -> Result<(), Unfit> {
    match pre.spec.node_name.as_deref() {
        Some(name) if !name.is_empty() && name != node.name() => Err(Unfit::NodeName),
        _ => Ok(()),
    }
}

/// TaintToleration: every NoSchedule and NoExecute taint must be tolerated.
pub fn taint_toleration(pre: &PreFilter<'_>, node: &NodeInfo) -> Result<(), Unfit> {
    match first_untolerated(node.taints(), pre.tolerations(), &[NO_SCHEDULE, NO_EXECUTE]) {
        Some(untolerated) => Err(Unfit::Taint {
            key: untolerated.key.clone(),
            value: untolerated.value.clone().unwrap_or_default(),
            effect: untolerated.effect.clone(),
        }),
        None => Ok(()),
    }
}

/// NodeAffinity: `nodeSelector` and required node affinity.
pub fn node_affinity(pre: &PreFilter<'_>, node: &NodeInfo) -> Result<(), Unfit> {
    if pre.checks_node_affinity
        && !matches_required(
            pre.spec.node_selector.as_ref(),
            pre.spec.affinity.as_deref(),
            node.node(),
        )
    {
        return Err(Unfit::NodeAffinity);
    }
    Ok(())
}

/// NodePorts: every host port the pod wants is free.
pub fn node_ports(pre: &PreFilter<'_>, node: &NodeInfo) -> Result<(), Unfit> {
    if pre
        .host_ports
        .iter()
        .any(|port| port.conflicts_with(node.used_ports()))
    {
        return Err(Unfit::NodePorts);
    }
    Ok(())
}

/// NodeResourcesFit: a pod slot and every requested resource are left.
pub fn node_resources_fit(pre: &PreFilter<'_>, node: &NodeInfo) -> Result<(), Unfit> {
    let lacking = pre
        .requests
        .shortfalls(node.requested(), node.allocatable());
    if lacking.is_empty() {
        Ok(())
    } else {
        Err(Unfit::Resources(lacking))
    }
}

/// VolumeBinding: the pod's claims' volumes may be used on (or provisioned for) the node
/// (see `volumes`).
pub fn volume_binding(pre: &PreFilter<'_>, node: &NodeInfo) -> Result<(), Unfit> {
    pre.volumes.check(node.node())
}

/// PodTopologySpread's DoNotSchedule constraints (see `spread`).
pub fn pod_topology_spread(pre: &PreFilter<'_>, node: &NodeInfo) -> Result<(), Unfit> {
    pre.spread.check(node)
}

/// InterPodAffinity's required terms, the pod's and existing pods' (see `interpod`).
pub fn inter_pod_affinity(pre: &PreFilter<'_>, node: &NodeInfo) -> Result<(), Unfit> {
    pre.affinity.check(node)
}

/// Every filter in the default profile's order; the first that says no decides.
/// kube-scheduler's `RunFilterPluginsWithNominatedPods`: with pods nominated to the node
/// that the pod must leave room for (`Snapshot::nominated_before`: the room a preemption
/// freed for them), the pod must fit the node both with them on it and without them. On the
/// node they count like placed pods; the PreFilter's cluster-wide spreading and affinity
/// counts do not include them.
pub fn run_filters_with_nominated<'n>(
    pre: &PreFilter<'_>,
    node: &NodeInfo,
    nominated: impl IntoIterator<Item = &'n Arc<PodInfo>>,
) -> Result<(), Unfit> {
    let mut with_them: Option<NodeInfo> = None;
    for pod in nominated {
        with_them
            .get_or_insert_with(|| node.clone())
            .add_pod(pod.clone());
    }
    if let Some(with_them) = &with_them {
        run_filters(pre, with_them)?;
    }
    run_filters(pre, node)
}

pub fn run_filters(pre: &PreFilter<'_>, node: &NodeInfo) -> Result<(), Unfit> {
    node_unschedulable(pre, node)?;
    node_name(pre, node)?;
    taint_toleration(pre, node)?;
    node_affinity(pre, node)?;
    node_ports(pre, node)?;
    node_resources_fit(pre, node)?;
    volume_binding(pre, node)?;
    pod_topology_spread(pre, node)?;
    inter_pod_affinity(pre, node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::resources::Insufficient;
    use crate::scheduler::testing::{
        bound, pending, sized, snapshot_of, with_node_spec, with_spec,
    };
    use serde_json::{json, Value};

    type Filter = for<'a, 'b, 'c> fn(&'a PreFilter<'b>, &'c NodeInfo) -> Result<(), Unfit>;

    /// n1 (zone a, disk ssd) with a pod holding 3 of 4 cpus and host port 8080;
    /// n2 (zone b) cordoned; n3 (zone c) tainted dedicated=infra:NoSchedule.
    fn cluster() -> Snapshot {
        let n2 = sized("n2", "4", "8Gi", json!({ "zone": "b" }));
        let n3 = sized("n3", "4", "8Gi", json!({ "zone": "c" }));
        let busy = with_spec(
            pending("busy", json!({ "app": "busy" }), "3", "1Gi"),
            "containers",
            json!([{ "name": "c", "resources": { "requests": { "cpu": "3" } },
                     "ports": [{ "containerPort": 80, "hostPort": 8080 }] }]),
        );
        snapshot_of(
            &[
                sized("n1", "4", "8Gi", json!({ "zone": "a", "disk": "ssd" })),
                with_node_spec(&n2, json!({ "unschedulable": true })),
                with_node_spec(
                    &n3,
                    json!({ "taints": [
                    { "key": "dedicated", "value": "infra", "effect": "NoSchedule" }] }),
                ),
            ],
            &[bound(&busy, "n1")],
        )
    }

    fn verdicts(filter: Filter, pod: &Pod, snapshot: &Snapshot) -> Vec<bool> {
        let pre = PreFilter::new(pod, snapshot, None);
        snapshot
            .nodes()
            .iter()
            .map(|node| filter(&pre, node).is_ok())
            .collect()
    }

    fn small() -> Pod {
        pending("p", json!({ "app": "web" }), "500m", "1Gi")
    }

    fn set(field: &str, value: Value) -> Pod {
        with_spec(small(), field, value)
    }

    #[test]
    fn each_filter_passes_and_fails_as_kubernetes_does() {
        let s = cluster();
        let table: Vec<(&str, Filter, Pod, [bool; 3])> = vec![
            (
                "cordoned",
                node_unschedulable as Filter,
                small(),
                [true, false, true],
            ),
            (
                "tolerates cordon",
                node_unschedulable as Filter,
                set(
                    "tolerations",
                    json!([{ "key": "node.kubernetes.io/unschedulable",
                                             "operator": "Exists", "effect": "NoSchedule" }]),
                ),
                [true, true, true],
            ),
            (
                "no node name",
                node_name as Filter,
                small(),
                [true, true, true],
            ),
            (
                "node name",
                node_name as Filter,
                set("nodeName", json!("n2")),
                [false, true, false],
            ),
            (
                "taint",
                taint_toleration as Filter,
                small(),
                [true, true, false],
            ),
            (
                "tolerated taint",
                taint_toleration as Filter,
                set(
                    "tolerations",
                    json!([{ "key": "dedicated", "value": "infra" }]),
                ),
                [true, true, true],
            ),
            (
                "no selector",
                node_affinity as Filter,
                small(),
                [true, true, true],
            ),
            (
                "selector",
                node_affinity as Filter,
                set("nodeSelector", json!({ "disk": "ssd" })),
                [true, false, false],
            ),
            (
                "fits",
                node_resources_fit as Filter,
                small(),
                [true, true, true],
            ),
            (
                "cpu",
                node_resources_fit as Filter,
                pending("big", json!({}), "2", "1Gi"),
                [false, true, true],
            ),
            (
                "no ports",
                node_ports as Filter,
                small(),
                [true, true, true],
            ),
            (
                "port taken",
                node_ports as Filter,
                set(
                    "containers",
                    json!([{ "name": "c", "ports": [
                    { "containerPort": 80, "hostPort": 8080 }] }]),
                ),
                [false, true, true],
            ),
            (
                "port on udp",
                node_ports as Filter,
                set(
                    "containers",
                    json!([{ "name": "c", "ports": [
                    { "containerPort": 80, "hostPort": 8080, "protocol": "UDP" }] }]),
                ),
                [true, true, true],
            ),
        ];
        for (why, filter, pod, expected) in table {
            assert_eq!(verdicts(filter, &pod, &s), expected, "{why}");
        }
    }

    #[test]
    fn the_first_failing_filter_decides_and_resources_list_every_shortfall() {
        let s = cluster();
        let huge = pending("huge", json!({}), "2", "16Gi");
        let pre = PreFilter::new(&huge, &s, None);
        let results: Vec<Result<(), Unfit>> =
            s.nodes().iter().map(|n| run_filters(&pre, n)).collect();
        assert_eq!(
            results,
            [
                Err(Unfit::Resources(vec![
                    Insufficient::Cpu,
                    Insufficient::Memory
                ])),
                Err(Unfit::Unschedulable),
                Err(Unfit::Taint {
                    key: "dedicated".into(),
                    value: "infra".into(),
                    effect: "NoSchedule".into()
                }),
            ]
        );
    }

    #[test]
    fn spread_and_affinity_filters_use_the_prefilter_counts() {
        let s = cluster();
        let spread = set(
            "topologySpreadConstraints",
            json!([{ "maxSkew": 1,
            "topologyKey": "rack", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": { "matchLabels": { "app": "web" } } }]),
        );
        assert_eq!(
            verdicts(pod_topology_spread, &spread, &s),
            [false, false, false]
        );
        let apart = set(
            "affinity",
            json!({ "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [{ "topologyKey": "zone",
                "labelSelector": { "matchLabels": { "app": "busy" } } }] } }),
        );
        assert_eq!(
            verdicts(inter_pod_affinity, &apart, &s),
            [false, true, true]
        );
    }

    #[test]
    fn affinity_pinning_node_names_narrows_the_nodes_checked() {
        let pin = |terms: Value| -> NodeNames {
            let spec: PodSpec = serde_json::from_value(json!({ "containers": [],
                "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution":
                    { "nodeSelectorTerms": terms } } } }))
            .unwrap();
            node_names(&spec)
        };
        let names = |field: &[&str]| {
            json!({ "matchFields": [
            { "key": "metadata.name", "operator": "In", "values": field }] })
        };
        let only = |names: &[&str]| NodeNames::Only(names.iter().map(|n| n.to_string()).collect());
        assert_eq!(pin(json!([names(&["n1", "n2"])])), only(&["n1", "n2"]));
        assert_eq!(
            pin(json!([names(&["n1"]), names(&["n3"])])),
            only(&["n1", "n3"])
        );
        let both = json!({ "matchFields": [
            { "key": "metadata.name", "operator": "In", "values": ["n1", "n2"] },
            { "key": "metadata.name", "operator": "In", "values": ["n2", "n3"] }] });
        assert_eq!(pin(json!([both])), only(&["n2"]));
        let disjoint = json!({ "matchFields": [
            { "key": "metadata.name", "operator": "In", "values": ["n1"] },
            { "key": "metadata.name", "operator": "In", "values": ["n2"] }] });
        assert_eq!(pin(json!([disjoint])), NodeNames::Conflict);
        let by_label = json!({ "matchExpressions": [{ "key": "zone", "operator": "Exists" }] });
        assert_eq!(pin(json!([names(&["n1"]), by_label])), NodeNames::All);
        assert_eq!(node_names(spec_of(&small())), NodeNames::All);
    }
}
