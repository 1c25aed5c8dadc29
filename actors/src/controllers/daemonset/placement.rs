//! Which nodes a DaemonSet runs on (Kubernetes' `NodeShouldRunDaemonPod`) and the pod it
//! creates for one of them. Pure.
//!
//! A daemon pod carries tolerations Kubernetes adds to every DaemonSet pod, so that a node that
//! is merely not ready, unreachable, under pressure or cordoned keeps (or gets) its daemon:
//!
//! ```text
//!  not-ready, unreachable                          NoExecute  (no tolerationSeconds)
//!  disk-, memory-, pid-pressure, unschedulable     NoSchedule
//!  network-unavailable (hostNetwork pods only)     NoSchedule
//! ```
//!
//! Then a node is eligible when the template's nodeName (if any), nodeSelector and required
//! node affinity admit it and every NoSchedule and NoExecute taint is tolerated. A node with an
//! untolerated NoSchedule taint gets no new pod but keeps a running one; an untolerated
//! NoExecute taint removes it.

use k8s_openapi::api::core::v1::{Affinity, Node, NodeAffinity, PodSpec, PodTemplateSpec};

use crate::scheduling::node_affinity::{matches_required, pinned_to};
use crate::scheduling::taints::{
    add_or_update_toleration, first_untolerated, toleration_exists, DISK_PRESSURE, MEMORY_PRESSURE,
    NETWORK_UNAVAILABLE, NOT_READY, NO_EXECUTE, NO_SCHEDULE, PID_PRESSURE, UNREACHABLE,
    UNSCHEDULABLE,
};

/// The label that ties a daemon pod (and a ControllerRevision) to a template revision.
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// What a node means for the DaemonSet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    /// A daemon pod should run there: create one if none is.
    pub should_run: bool,
    /// A daemon pod already there may stay (no untolerated NoExecute taint).
    pub may_continue: bool,
}

/// Adds the DaemonSet default tolerations (`AddOrUpdateDaemonPodTolerations`).
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    for key in [NOT_READY, UNREACHABLE] {
        add_or_update_toleration(spec, toleration_exists(key, NO_EXECUTE, None));
    }
    for key in [DISK_PRESSURE, MEMORY_PRESSURE, PID_PRESSURE, UNSCHEDULABLE] {
        add_or_update_toleration(spec, toleration_exists(key, NO_SCHEDULE, None));
    }
    if spec.host_network == Some(true) {
        add_or_update_toleration(
            spec,
            toleration_exists(NETWORK_UNAVAILABLE, NO_SCHEDULE, None),
        );
    }
}

/// `daemon_spec`: the template's spec with [`add_daemon_tolerations`] applied.
pub fn fit(daemon_spec: &PodSpec, node: &Node) -> Fit {
    const NOWHERE: Fit = Fit {
        should_run: false,
        may_continue: false,
    };
    let name = node.metadata.name.as_deref().unwrap_or("");
    let template_node = daemon_spec.node_name.as_deref().unwrap_or("");
    if !template_node.is_empty() && template_node != name {
        return NOWHERE;
    }
    if !matches_required(
        daemon_spec.node_selector.as_ref(),
        daemon_spec.affinity.as_ref(),
        node,
    ) {
        return NOWHERE;
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let tolerations = daemon_spec.tolerations.as_deref().unwrap_or_default();
    let evicting = first_untolerated(taints, tolerations, &[NO_EXECUTE]).is_some();
    let repelling = first_untolerated(taints, tolerations, &[NO_SCHEDULE]).is_some();
    Fit {
        should_run: !evicting && !repelling,
        may_continue: !evicting,
    }
}

/// The template a daemon pod is made from: the DaemonSet's, with the default tolerations and
/// the revision hash label (`CreatePodTemplate`).
pub fn daemon_template(template: &PodTemplateSpec, hash: &str) -> PodTemplateSpec {
    let mut template = template.clone();
    let spec = template.spec.get_or_insert_with(PodSpec::default);
    add_daemon_tolerations(spec);
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.labels
        .get_or_insert_with(Default::default)
        .insert(REVISION_HASH_LABEL.to_string(), hash.to_string());
    template
}

/// Pins `spec` to `node` through a required node affinity that replaces the template's
/// required terms (`ReplaceDaemonSetPodNodeNameNodeAffinity`); the scheduler then binds it,
/// checking resources and ports as for any pod.
pub fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(pinned_to(node));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(taints: serde_json::Value, labels: serde_json::Value) -> Node {
        serde_json::from_value(json!({ "metadata": { "name": "n1", "labels": labels },
            "spec": { "taints": taints } }))
        .unwrap()
    }

    fn daemon_spec(json: serde_json::Value) -> PodSpec {
        let mut spec: PodSpec = serde_json::from_value(json).unwrap();
        add_daemon_tolerations(&mut spec);
        spec
    }

    #[test]
    fn nodes_fit_by_selector_affinity_and_taints() {
        let plain = daemon_spec(json!({ "containers": [] }));
        let host_network = daemon_spec(json!({ "containers": [], "hostNetwork": true }));
        let ssd_only = daemon_spec(json!({ "containers": [], "nodeSelector": { "disk": "ssd" } }));
        let tolerates_gpu = daemon_spec(json!({ "containers": [], "tolerations": [
            { "key": "gpu", "operator": "Exists" } ] }));
        let taint = |key: &str, effect: &str| json!([{ "key": key, "effect": effect }]);
        let run = Fit {
            should_run: true,
            may_continue: true,
        };
        let keep = Fit {
            should_run: false,
            may_continue: true,
        };
        let none = Fit {
            should_run: false,
            may_continue: false,
        };
        let table = [
            ("untainted", &plain, node(json!([]), json!({})), run),
            (
                "not ready",
                &plain,
                node(taint(NOT_READY, NO_EXECUTE), json!({})),
                run,
            ),
            (
                "unreachable",
                &plain,
                node(taint(UNREACHABLE, NO_EXECUTE), json!({})),
                run,
            ),
            (
                "cordoned",
                &plain,
                node(taint(UNSCHEDULABLE, NO_SCHEDULE), json!({})),
                run,
            ),
            (
                "disk pressure",
                &plain,
                node(taint(DISK_PRESSURE, NO_SCHEDULE), json!({})),
                run,
            ),
            (
                "no network",
                &plain,
                node(taint(NETWORK_UNAVAILABLE, NO_SCHEDULE), json!({})),
                keep,
            ),
            (
                "no network, host network",
                &host_network,
                node(taint(NETWORK_UNAVAILABLE, NO_SCHEDULE), json!({})),
                run,
            ),
            (
                "gpu NoSchedule",
                &plain,
                node(taint("gpu", NO_SCHEDULE), json!({})),
                keep,
            ),
            (
                "gpu NoExecute",
                &plain,
                node(taint("gpu", NO_EXECUTE), json!({})),
                none,
            ),
            (
                "gpu prefer",
                &plain,
                node(taint("gpu", "PreferNoSchedule"), json!({})),
                run,
            ),
            (
                "gpu tolerated",
                &tolerates_gpu,
                node(taint("gpu", NO_EXECUTE), json!({})),
                run,
            ),
            (
                "selector",
                &ssd_only,
                node(json!([]), json!({ "disk": "hdd" })),
                none,
            ),
            (
                "selector fits",
                &ssd_only,
                node(json!([]), json!({ "disk": "ssd" })),
                run,
            ),
        ];
        for (why, spec, node, expected) in table {
            assert_eq!(fit(spec, &node), expected, "{why}");
        }
    }

    #[test]
    fn a_template_naming_another_node_fits_nowhere_else() {
        let spec = daemon_spec(json!({ "containers": [], "nodeName": "n2" }));
        assert!(!fit(&spec, &node(json!([]), json!({}))).may_continue);
    }

    #[test]
    fn daemon_tolerations_replace_same_ones_and_pinning_replaces_required_terms() {
        let mut spec: PodSpec = serde_json::from_value(json!({ "containers": [],
            "tolerations": [{ "key": NOT_READY, "operator": "Exists", "effect": "NoExecute",
                              "tolerationSeconds": 300 }],
            "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{ "matchExpressions": [
                    { "key": "disk", "operator": "Exists" }] }] } } } }))
        .unwrap();
        add_daemon_tolerations(&mut spec);
        let tolerations = spec.tolerations.clone().unwrap();
        assert_eq!(tolerations.len(), 6);
        assert_eq!(
            tolerations[0].toleration_seconds, None,
            "a daemon tolerates forever"
        );
        pin_to_node(&mut spec, "n3");
        let required = spec.affinity.unwrap().node_affinity.unwrap();
        assert_eq!(
            required.required_during_scheduling_ignored_during_execution,
            Some(pinned_to("n3"))
        );
    }
}
