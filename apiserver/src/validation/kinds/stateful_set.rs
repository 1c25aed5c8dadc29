//! StatefulSet (pods with stable names and storage) and ControllerRevision (the template
//! history of StatefulSets and DaemonSets).

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{PersistentVolumeClaimVolumeSource, PodTemplateSpec, Volume};

use super::super::names::dns1123_label;
use super::super::{FieldError, Validate};
use super::workloads::{controller_template, counts, surge_or_unavailable};
use super::{each_invalid, immutable, json, non_negative, one_of, required_selector};

fn stateful_set_spec(spec: &StatefulSetSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    counts(
        &mut errs,
        spec.replicas,
        spec.min_ready_seconds,
        spec.revision_history_limit,
    );
    if let Some(ordinals) = &spec.ordinals {
        non_negative(
            &mut errs,
            "spec.ordinals.start",
            ordinals.start.map(i64::from),
        );
    }
    match spec.pod_management_policy.as_deref() {
        None | Some("OrderedReady" | "Parallel") => {}
        Some("") => errs.push(FieldError::required("spec.podManagementPolicy", "")),
        Some(other) => errs.push(FieldError::invalid(
            "spec.podManagementPolicy",
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    if let Some(strategy) = &spec.update_strategy {
        let at = "spec.updateStrategy";
        match (strategy.type_.as_deref(), &strategy.rolling_update) {
            (None | Some("RollingUpdate"), Some(rolling)) => {
                let partition = rolling.partition.map(i64::from);
                non_negative(
                    &mut errs,
                    format!("{at}.rollingUpdate.partition"),
                    partition,
                );
                if let Some(max) = &rolling.max_unavailable {
                    let path = format!("{at}.rollingUpdate.maxUnavailable");
                    if surge_or_unavailable(&mut errs, &path, max) == 0 {
                        errs.push(FieldError::invalid(path, json(max), "cannot be 0"));
                    }
                }
            }
            (None | Some("RollingUpdate"), None) => {}
            (Some("OnDelete"), Some(rolling)) => errs.push(FieldError::invalid(
                format!("{at}.rollingUpdate"),
                json(rolling),
                "only allowed for updateStrategy 'RollingUpdate'",
            )),
            (Some("OnDelete"), None) => {}
            (Some(other), _) => errs.push(FieldError::invalid(
                format!("{at}.type"),
                other,
                "must be 'RollingUpdate' or 'OnDelete'",
            )),
        }
    }
    if let Some(policy) = &spec.persistent_volume_claim_retention_policy {
        let at = "spec.persistentVolumeClaimRetentionPolicy";
        let choices = ["Retain", "Delete"];
        one_of(
            &mut errs,
            format!("{at}.whenDeleted"),
            policy.when_deleted.as_deref(),
            &choices,
        );
        one_of(
            &mut errs,
            format!("{at}.whenScaled"),
            policy.when_scaled.as_deref(),
            &choices,
        );
    }
    let selector = required_selector(&mut errs, &spec.selector, "spec.selector");
    let mut template = spec.template.clone();
    for (i, claim) in spec.volume_claim_templates.iter().flatten().enumerate() {
        let at = format!("spec.volumeClaimTemplates[{i}]");
        let name = claim.metadata.name.as_deref().unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{at}.metadata.name"), ""));
        } else {
            let problems = dns1123_label(name);
            if problems.is_empty() {
                add_claim_volume(&mut template, name);
            }
            each_invalid(&mut errs, &format!("{at}.metadata.name"), name, problems);
        }
        let claim_spec = claim.spec.clone().unwrap_or_default();
        errs.extend(super::storage::claim_spec(
            &claim_spec,
            &format!("{at}.spec"),
        ));
    }
    controller_template(&mut errs, &template, selector.as_ref(), "StatefulSet");
    errs
}

/// Adds the volume the StatefulSet controller gives each pod for a claim template, so the
/// template's mounts of claim templates check out. (Kubernetes skips the pod spec of
/// StatefulSets entirely for want of this; checking it catches the same mistakes as for
/// every other workload.) A template volume of the same name wins, as in the controller.
fn add_claim_volume(template: &mut PodTemplateSpec, name: &str) {
    let spec = template.spec.get_or_insert_default();
    let volumes = spec.volumes.get_or_insert_default();
    if volumes.iter().all(|v| v.name != name) {
        volumes.push(Volume {
            name: name.to_string(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: name.to_string(),
                read_only: None,
            }),
            ..Default::default()
        });
    }
}

impl Validate for StatefulSet {
    fn validate(&self) -> Vec<FieldError> {
        stateful_set_spec(&self.spec.clone().unwrap_or_default())
    }

    /// Only scale, template, update strategy and a few knobs may change; the selector and
    /// claim templates name the pods' identity and storage, so they never do.
    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = self.validate();
        let new = self.spec.clone().unwrap_or_default();
        let old = old.spec.clone().unwrap_or_default();
        immutable(&mut errs, "spec.selector", &new.selector, &old.selector);
        let claims = "spec.volumeClaimTemplates";
        immutable(
            &mut errs,
            claims,
            &new.volume_claim_templates,
            &old.volume_claim_templates,
        );

        let mut rest = new.clone();
        rest.replicas = old.replicas;
        rest.template.clone_from(&old.template);
        rest.update_strategy.clone_from(&old.update_strategy);
        rest.min_ready_seconds = old.min_ready_seconds;
        rest.ordinals.clone_from(&old.ordinals);
        rest.revision_history_limit = old.revision_history_limit;
        rest.persistent_volume_claim_retention_policy
            .clone_from(&old.persistent_volume_claim_retention_policy);
        rest.selector.clone_from(&old.selector);
        rest.volume_claim_templates
            .clone_from(&old.volume_claim_templates);
        if rest != old {
            errs.push(FieldError::forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', \
                 'template', 'updateStrategy', 'revisionHistoryLimit', \
                 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
        errs
    }
}

impl Validate for ControllerRevision {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if self.data.is_none() {
            errs.push(FieldError::required("data", "data is mandatory"));
        }
        non_negative(&mut errs, "revision", Some(self.revision));
        errs
    }

    /// A revision is a snapshot of a template; rewriting it would falsify the history.
    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = self.validate();
        immutable(&mut errs, "data", &self.data, &old.data);
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{edit, from_json, only, paths};
    use super::*;
    use serde_json::json;

    fn stateful_set() -> serde_json::Value {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"matchLabels": {"app": "nginx"}},
                "serviceName": "nginx",
                "replicas": 3,
                "minReadySeconds": 10,
                "podManagementPolicy": "OrderedReady",
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                "template": {
                    "metadata": {"labels": {"app": "nginx"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 10,
                        "containers": [{
                            "name": "nginx", "image": "registry.k8s.io/nginx-slim:0.24",
                            "ports": [{"containerPort": 80, "name": "web"}],
                            "volumeMounts": [{"name": "www", "mountPath": "/usr/share/nginx/html"}]
                        }]
                    }
                },
                "volumeClaimTemplates": [{
                    "metadata": {"name": "www"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": "my-storage-class",
                        "resources": {"requests": {"storage": "1Gi"}}
                    }
                }]
            }
        })
    }

    fn sts(change: impl FnOnce(&mut serde_json::Value)) -> StatefulSet {
        edit(stateful_set(), change)
    }

    #[test]
    fn the_docs_stateful_set_is_valid() {
        assert_eq!(sts(|_| {}).validate(), vec![]);
    }

    #[test]
    fn a_stateful_set_pod_management_policy_is_known() {
        let errs = sts(|s| s["spec"]["podManagementPolicy"] = json!("Random")).validate();
        assert_eq!(
            only(&errs, "spec.podManagementPolicy").detail,
            "must be 'OrderedReady' or 'Parallel'"
        );
    }

    #[test]
    fn a_stateful_set_update_strategy_is_checked() {
        let errs = sts(|s| s["spec"]["updateStrategy"]["type"] = json!("Rolling")).validate();
        only(&errs, "spec.updateStrategy.type");
        let errs = sts(|s| s["spec"]["updateStrategy"]["type"] = json!("OnDelete")).validate();
        only(&errs, "spec.updateStrategy.rollingUpdate");
        let errs = sts(|s| s["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = json!(-1))
            .validate();
        only(&errs, "spec.updateStrategy.rollingUpdate.partition");
        let errs =
            sts(|s| s["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = json!(0))
                .validate();
        assert_eq!(
            only(&errs, "spec.updateStrategy.rollingUpdate.maxUnavailable").detail,
            "cannot be 0"
        );
    }

    #[test]
    fn a_stateful_set_claim_template_is_a_valid_claim() {
        let errs = sts(|s| s["spec"]["volumeClaimTemplates"][0]["spec"]["accessModes"] = json!([]))
            .validate();
        only(&errs, "spec.volumeClaimTemplates[0].spec.accessModes");
    }

    #[test]
    fn a_stateful_set_template_may_mount_only_its_volumes_and_claims() {
        let errs = sts(|s| {
            s["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["name"] =
                json!("data");
        })
        .validate();
        only(
            &errs,
            "spec.template.spec.containers[0].volumeMounts[0].name",
        );
        let errs = sts(|s| s["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] = json!("WWW"))
            .validate();
        assert_eq!(
            paths(&errs),
            [
                "spec.volumeClaimTemplates[0].metadata.name",
                "spec.template.spec.containers[0].volumeMounts[0].name"
            ]
        );
    }

    #[test]
    fn a_stateful_set_may_scale_and_change_its_template() {
        let old = sts(|_| {});
        let new = sts(|s| {
            s["spec"]["replicas"] = json!(5);
            s["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.25");
        });
        assert_eq!(new.validate_update(&old), vec![]);
    }

    #[test]
    fn a_stateful_set_claim_templates_and_selector_are_immutable() {
        let old = sts(|_| {});
        let new = sts(|s| {
            s["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] =
                json!("2Gi");
        });
        assert_eq!(
            only(&new.validate_update(&old), "spec.volumeClaimTemplates").detail,
            "field is immutable"
        );
        let new = sts(|s| {
            s["spec"]["selector"]["matchLabels"]["v"] = json!("2");
            s["spec"]["template"]["metadata"]["labels"]["v"] = json!("2");
        });
        only(&new.validate_update(&old), "spec.selector");
    }

    #[test]
    fn a_stateful_set_service_name_may_not_change() {
        let old = sts(|_| {});
        let new = sts(|s| s["spec"]["serviceName"] = json!("other"));
        let errs = new.validate_update(&old);
        assert!(only(&errs, "spec")
            .detail
            .starts_with("updates to statefulset spec for fields other than"));
    }

    #[test]
    fn a_controller_revision_has_data_and_a_non_negative_revision() {
        let rev: ControllerRevision = from_json(json!({
            "metadata": {"name": "web-5d8b9f"}, "revision": 3, "data": {"spec": {"template": {}}}
        }));
        assert_eq!(rev.validate(), vec![]);
        let mut bad = rev.clone();
        bad.revision = -1;
        bad.data = None;
        assert_eq!(paths(&bad.validate()), ["data", "revision"]);
        let mut changed = rev.clone();
        changed.data = Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(
            json!({}),
        ));
        only(&changed.validate_update(&rev), "data");
        let mut bumped = rev.clone();
        bumped.revision = 4;
        assert_eq!(bumped.validate_update(&rev), vec![]);
    }
}
