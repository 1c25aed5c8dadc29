//! Why a node does not fit a pod: one variant per filter, each with kube-scheduler's reason
//! text, which `FailedScheduling` messages count per node ("3 node(s) had untolerated
//! taint(s)"), and the plugin that said no, by which the queue knows what may help. Pure.
//!
//! The taint reason names the taint (`{key: value}`) as kube-scheduler did up to v1.34.1 and
//! as the issue asks; v1.34.2 (kubernetes#134740) says only `taint(s)`, to keep taint values
//! out of pod statuses. One line in [`Unfit::reasons`] to change if we follow.

use std::fmt;

use super::resources::Insufficient;

pub const NODE_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const NODE_NAME: &str = "node(s) didn't match the requested node name";
pub const UNTOLERATED_TAINT: &str = "node(s) had untolerated taint";
pub const NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
pub const NODE_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
pub const SPREAD: &str = "node(s) didn't match pod topology spread constraints";
pub const SPREAD_MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";
pub const POD_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const POD_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const EXISTING_ANTI_AFFINITY: &str = "node(s) didn't satisfy existing pods anti-affinity rules";
/// For the nodes a pod's required node affinity does not name when it pins nodes by name
/// (NodeAffinity's PreFilter result): they are not even checked.
pub const NOT_PINNED: &str = "node(s) didn't satisfy plugin(s) [NodeAffinity]";
/// NodeAffinity's PreFilter when every term pins a disjoint set of names (none at all).
pub const AFFINITY_TERMS_CONFLICT: &str = "pod affinity terms conflict";
pub const VOLUME_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const VOLUME_BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
pub const VOLUME_MISSING: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";

pub const NODE_UNSCHEDULABLE_PLUGIN: &str = "NodeUnschedulable";
pub const NODE_NAME_PLUGIN: &str = "NodeName";
pub const TAINT_TOLERATION_PLUGIN: &str = "TaintToleration";
pub const NODE_AFFINITY_PLUGIN: &str = "NodeAffinity";
pub const NODE_PORTS_PLUGIN: &str = "NodePorts";
pub const NODE_RESOURCES_FIT_PLUGIN: &str = "NodeResourcesFit";
pub const POD_TOPOLOGY_SPREAD_PLUGIN: &str = "PodTopologySpread";
pub const INTER_POD_AFFINITY_PLUGIN: &str = "InterPodAffinity";
pub const VOLUME_BINDING_PLUGIN: &str = "VolumeBinding";

/// Why one node does not fit one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfit {
    /// `spec.unschedulable` (cordoned) and the pod does not tolerate
    /// `node.kubernetes.io/unschedulable:NoSchedule`.
    Unschedulable,
    /// The pod names another node in `spec.nodeName`.
    NodeName,
    /// The first NoSchedule or NoExecute taint the pod does not tolerate.
    Taint {
        key: String,
        value: String,
        effect: String,
    },
    /// `nodeSelector` or required node affinity rules the node out.
    NodeAffinity,
    /// A host port the pod wants is taken.
    NodePorts,
    /// Every resource the node lacks (never empty).
    Resources(Vec<Insufficient>),
    /// A DoNotSchedule topology spread constraint would be skewed past `maxSkew`.
    Spread,
    /// The node lacks a DoNotSchedule constraint's topology label.
    SpreadMissingLabel,
    /// The pod's required pod affinity is not met in the node's domains.
    PodAffinity,
    /// A pod the pod's required anti-affinity selects is in the node's domain.
    PodAntiAffinity,
    /// A pod in the node's domain has required anti-affinity that selects this pod.
    ExistingAntiAffinity,
    /// A bound claim's volume is pinned (node affinity) to other nodes.
    VolumeNodeConflict,
    /// A claim waiting for its pod's node can get no volume here: none fits, none can be
    /// provisioned here, or it is being provisioned on another node.
    VolumeBindConflict,
    /// A bound claim's volume does not exist.
    VolumeMissing,
    /// A claim waiting for its pod's node has no static volume here, and its class's
    /// provisioner cannot make one for it on any node (the built-in local-path provisioner
    /// and a claim asking ReadWriteMany, Block, a selector...): the reason, in full.
    CannotProvision(String),
    /// The pod's claims keep it off every node (missing, being deleted, unbound with
    /// Immediate binding): VolumeBinding's PreFilter, with its message.
    Claims(String),
}

impl Unfit {
    /// The reasons kube-scheduler records for the node: one, or one per lacking resource.
    pub fn reasons(&self) -> Vec<String> {
        let one = |reason: &str| vec![reason.to_string()];
        match self {
            Unfit::Unschedulable => one(NODE_UNSCHEDULABLE),
            Unfit::NodeName => one(NODE_NAME),
            // kube-scheduler up to 1.34.1 names the taint (later ones say `taint(s)`).
            Unfit::Taint { key, value, .. } => {
                vec![format!("{UNTOLERATED_TAINT} {{{key}: {value}}}")]
            }
            Unfit::NodeAffinity => one(NODE_AFFINITY),
            Unfit::NodePorts => one(NODE_PORTS),
            Unfit::Resources(lacking) => lacking.iter().map(Insufficient::reason).collect(),
            Unfit::Spread => one(SPREAD),
            Unfit::SpreadMissingLabel => one(SPREAD_MISSING_LABEL),
            Unfit::PodAffinity => one(POD_AFFINITY),
            Unfit::PodAntiAffinity => one(POD_ANTI_AFFINITY),
            Unfit::ExistingAntiAffinity => one(EXISTING_ANTI_AFFINITY),
            Unfit::VolumeNodeConflict => one(VOLUME_NODE_CONFLICT),
            Unfit::VolumeBindConflict => one(VOLUME_BIND_CONFLICT),
            Unfit::VolumeMissing => one(VOLUME_MISSING),
            Unfit::CannotProvision(reason) => one(reason.as_str()),
            Unfit::Claims(message) => one(message.as_str()),
        }
    }

    /// Whether evicting pods from the node may cure this: kube-scheduler's `Unschedulable`, as
    /// opposed to `UnschedulableAndUnresolvable` (the node itself, or what the pod asks of
    /// nodes, rules it out whatever runs there; so does a required pod affinity that no pod
    /// in the node's domain meets, as evicting pods cannot add one). Preemption only looks at
    /// nodes where it may.
    pub fn is_resolvable_by_preemption(&self) -> bool {
        match self {
            Unfit::NodePorts
            | Unfit::Resources(_)
            | Unfit::Spread
            | Unfit::PodAntiAffinity
            | Unfit::ExistingAntiAffinity => true,
            Unfit::Unschedulable
            | Unfit::NodeName
            | Unfit::Taint { .. }
            | Unfit::NodeAffinity
            | Unfit::SpreadMissingLabel
            | Unfit::PodAffinity
            | Unfit::VolumeNodeConflict
            | Unfit::VolumeBindConflict
            | Unfit::VolumeMissing
            | Unfit::CannotProvision(_)
            | Unfit::Claims(_) => false,
        }
    }

    /// The kube-scheduler plugin that says no.
    pub fn plugin(&self) -> &'static str {
        match self {
            Unfit::Unschedulable => NODE_UNSCHEDULABLE_PLUGIN,
            Unfit::NodeName => NODE_NAME_PLUGIN,
            Unfit::Taint { .. } => TAINT_TOLERATION_PLUGIN,
            Unfit::NodeAffinity => NODE_AFFINITY_PLUGIN,
            Unfit::NodePorts => NODE_PORTS_PLUGIN,
            Unfit::Resources(_) => NODE_RESOURCES_FIT_PLUGIN,
            Unfit::Spread | Unfit::SpreadMissingLabel => POD_TOPOLOGY_SPREAD_PLUGIN,
            Unfit::PodAffinity | Unfit::PodAntiAffinity | Unfit::ExistingAntiAffinity => {
                INTER_POD_AFFINITY_PLUGIN
            }
            Unfit::VolumeNodeConflict
            | Unfit::VolumeBindConflict
            | Unfit::VolumeMissing
            | Unfit::CannotProvision(_)
            | Unfit::Claims(_) => VOLUME_BINDING_PLUGIN,
        }
    }
}

impl fmt::Display for Unfit {
    /// The reasons joined by ", "; a taint is named, as it is not in the reasons.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unfit::Taint { key, value, effect } => {
                write!(f, "{UNTOLERATED_TAINT}: {key}={value}:{effect}")
            }
            other => f.write_str(&other.reasons().join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_kubernetes_words() {
        let taint = Unfit::Taint {
            key: "dedicated".into(),
            value: "infra".into(),
            effect: "NoSchedule".into(),
        };
        let table = [
            (Unfit::Unschedulable, "node(s) were unschedulable"),
            (
                Unfit::NodeName,
                "node(s) didn't match the requested node name",
            ),
            (
                taint.clone(),
                "node(s) had untolerated taint {dedicated: infra}",
            ),
            (
                Unfit::NodeAffinity,
                "node(s) didn't match Pod's node affinity/selector",
            ),
            (
                Unfit::NodePorts,
                "node(s) didn't have free ports for the requested pod ports",
            ),
            (
                Unfit::Spread,
                "node(s) didn't match pod topology spread constraints",
            ),
            (
                Unfit::SpreadMissingLabel,
                "node(s) didn't match pod topology spread constraints (missing required label)",
            ),
            (
                Unfit::PodAffinity,
                "node(s) didn't match pod affinity rules",
            ),
            (
                Unfit::PodAntiAffinity,
                "node(s) didn't match pod anti-affinity rules",
            ),
            (
                Unfit::ExistingAntiAffinity,
                "node(s) didn't satisfy existing pods anti-affinity rules",
            ),
            (
                Unfit::VolumeNodeConflict,
                "node(s) had volume node affinity conflict",
            ),
            (
                Unfit::VolumeBindConflict,
                "node(s) didn't find available persistent volumes to bind",
            ),
            (
                Unfit::VolumeMissing,
                "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)",
            ),
        ];
        for (unfit, reason) in table {
            assert_eq!(unfit.reasons(), [reason], "{unfit:?}");
        }
        assert_eq!(
            taint.to_string(),
            "node(s) had untolerated taint: dedicated=infra:NoSchedule"
        );
    }

    #[test]
    fn preemption_may_cure_only_what_other_pods_cause() {
        let taint = Unfit::Taint {
            key: "dedicated".into(),
            value: "infra".into(),
            effect: "NoSchedule".into(),
        };
        let table = [
            (Unfit::Unschedulable, false),
            (Unfit::NodeName, false),
            (taint, false),
            (Unfit::NodeAffinity, false),
            (Unfit::NodePorts, true),
            (Unfit::Resources(vec![Insufficient::Cpu]), true),
            (Unfit::Spread, true),
            (Unfit::SpreadMissingLabel, false),
            (Unfit::PodAffinity, false),
            (Unfit::PodAntiAffinity, true),
            (Unfit::ExistingAntiAffinity, true),
            (Unfit::VolumeNodeConflict, false),
            (Unfit::VolumeBindConflict, false),
            (Unfit::VolumeMissing, false),
            (Unfit::CannotProvision("no size".into()), false),
        ];
        for (unfit, resolvable) in table {
            assert_eq!(unfit.is_resolvable_by_preemption(), resolvable, "{unfit:?}");
        }
    }

    #[test]
    fn a_node_short_of_several_resources_gives_a_reason_for_each() {
        let unfit = Unfit::Resources(vec![Insufficient::Cpu, Insufficient::Memory]);
        assert_eq!(unfit.reasons(), ["Insufficient cpu", "Insufficient memory"]);
        assert_eq!(unfit.to_string(), "Insufficient cpu, Insufficient memory");
        assert_eq!(unfit.plugin(), "NodeResourcesFit");
    }
}
