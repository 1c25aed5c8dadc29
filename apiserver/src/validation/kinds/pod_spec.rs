//! Pod specs, for Pods and every pod template: volumes, policies, scheduling fields,
//! tolerations; containers are [`super::containers`]' job.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec, Toleration, Volume};

use super::super::names::{
    dns1123_label, dns1123_subdomain, label_value, qualified_name, validate_annotations,
    validate_labels,
};
use super::super::FieldError;
use super::containers::validate_containers;
use super::{each_invalid, json, non_negative, one_of};

/// Taint effects, in Kubernetes' order.
pub(super) const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// Checks a pod spec found at `path` (`spec` for a Pod, `spec.template.spec` for a
/// workload).
pub(super) fn validate_pod_spec(spec: &PodSpec, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    volumes(spec.volumes.as_deref().unwrap_or_default(), path, &mut errs);
    validate_containers(spec, path, &mut errs);

    let restart = spec.restart_policy.as_deref();
    one_of(
        &mut errs,
        format!("{path}.restartPolicy"),
        restart,
        &["Always", "OnFailure", "Never"],
    );
    let dns_policies = ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"];
    one_of(
        &mut errs,
        format!("{path}.dnsPolicy"),
        spec.dns_policy.as_deref(),
        &dns_policies,
    );
    if spec.dns_policy.as_deref() == Some("None") && spec.dns_config.is_none() {
        errs.push(FieldError::required(
            format!("{path}.dnsConfig"),
            "must provide `dnsConfig` when `dnsPolicy` is None",
        ));
    }
    let grace = format!("{path}.terminationGracePeriodSeconds");
    non_negative(&mut errs, grace, spec.termination_grace_period_seconds);
    if let Some(deadline) = spec.active_deadline_seconds {
        if !(1..=i64::from(i32::MAX)).contains(&deadline) {
            errs.push(FieldError::invalid(
                format!("{path}.activeDeadlineSeconds"),
                deadline,
                "must be between 1 and 2147483647, inclusive",
            ));
        }
    }

    let subdomains = [
        ("nodeName", &spec.node_name),
        ("serviceAccountName", &spec.service_account_name),
        ("priorityClassName", &spec.priority_class_name),
    ];
    for (field, value) in subdomains {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            each_invalid(
                &mut errs,
                &format!("{path}.{field}"),
                value,
                dns1123_subdomain(value),
            );
        }
    }
    for (field, value) in [("hostname", &spec.hostname), ("subdomain", &spec.subdomain)] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            each_invalid(
                &mut errs,
                &format!("{path}.{field}"),
                value,
                dns1123_label(value),
            );
        }
    }
    if let Some(selector) = &spec.node_selector {
        errs.extend(validate_labels(selector, &format!("{path}.nodeSelector")));
    }
    tolerations(
        spec.tolerations.as_deref().unwrap_or_default(),
        &format!("{path}.tolerations"),
        &mut errs,
    );
    errs
}

/// Checks a workload's pod template at `path` (`spec.template`): its labels and
/// annotations, and its spec. A template never has ephemeral containers: those are added to
/// running pods for debugging.
pub(super) fn validate_template(template: &PodTemplateSpec, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(meta) = &template.metadata {
        if let Some(labels) = &meta.labels {
            errs.extend(validate_labels(labels, &format!("{path}.metadata.labels")));
        }
        if let Some(annotations) = &meta.annotations {
            errs.extend(validate_annotations(
                annotations,
                &format!("{path}.metadata.annotations"),
            ));
        }
    }
    let spec = template.spec.clone().unwrap_or_default();
    errs.extend(validate_pod_spec(&spec, &format!("{path}.spec")));
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        errs.push(FieldError::forbidden(
            format!("{path}.spec.ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
    errs
}

/// The restart policies a controller's template may use (`Always` for controllers that keep
/// pods running, `OnFailure`/`Never` for Jobs). Unset means `Always`, what the defaults
/// fill in; `""` is already reported by [`validate_pod_spec`].
pub(super) fn template_restart_policy(
    errs: &mut Vec<FieldError>,
    template: &PodTemplateSpec,
    path: &str,
    allowed: &[&str],
) {
    let spec = template.spec.as_ref();
    let policy = spec
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    if !policy.is_empty() && !allowed.contains(&policy) {
        errs.push(FieldError::not_supported(
            format!("{path}.spec.restartPolicy"),
            policy,
            allowed,
        ));
    }
}

/// Controllers that keep pods running may not give them a deadline.
pub(super) fn no_active_deadline(
    errs: &mut Vec<FieldError>,
    template: &PodTemplateSpec,
    path: &str,
    kind: &str,
) {
    if template
        .spec
        .as_ref()
        .is_some_and(|s| s.active_deadline_seconds.is_some())
    {
        errs.push(FieldError::forbidden(
            format!("{path}.spec.activeDeadlineSeconds"),
            format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
}

fn volumes(volumes: &[Volume], path: &str, errs: &mut Vec<FieldError>) {
    let mut names = BTreeSet::new();
    for (i, volume) in volumes.iter().enumerate() {
        let at = format!("{path}.volumes[{i}]");
        if volume.name.is_empty() {
            errs.push(FieldError::required(format!("{at}.name"), ""));
        } else {
            each_invalid(
                errs,
                &format!("{at}.name"),
                &volume.name,
                dns1123_label(&volume.name),
            );
            if !names.insert(volume.name.as_str()) {
                errs.push(FieldError::duplicate(format!("{at}.name"), &volume.name));
            }
        }
        // A volume is its name plus exactly one source; every other key of its JSON form is
        // a source, so counting keys stays right as Kubernetes adds volume types.
        let sources: Vec<String> = match serde_json::to_value(volume) {
            Ok(serde_json::Value::Object(fields)) => {
                fields.keys().filter(|k| *k != "name").cloned().collect()
            }
            _ => Vec::new(),
        };
        match sources.as_slice() {
            [] => errs.push(FieldError::required(&at, "must specify a volume type")),
            [_] => {}
            [_, extra @ ..] => {
                for source in extra {
                    errs.push(FieldError::forbidden(
                        format!("{at}.{source}"),
                        "may not specify more than 1 volume type",
                    ));
                }
            }
        }
        volume_source(volume, &at, errs);
    }
}

/// The required field of the commonest sources.
fn volume_source(volume: &Volume, at: &str, errs: &mut Vec<FieldError>) {
    if let Some(host) = &volume.host_path {
        if host.path.is_empty() {
            errs.push(FieldError::required(format!("{at}.hostPath.path"), ""));
        }
        let types = [
            "",
            "DirectoryOrCreate",
            "Directory",
            "FileOrCreate",
            "File",
            "Socket",
            "CharDevice",
            "BlockDevice",
        ];
        one_of(
            errs,
            format!("{at}.hostPath.type"),
            host.type_.as_deref().filter(|t| !t.is_empty()),
            &types,
        );
    }
    if let Some(claim) = &volume.persistent_volume_claim {
        if claim.claim_name.is_empty() {
            errs.push(FieldError::required(
                format!("{at}.persistentVolumeClaim.claimName"),
                "",
            ));
        }
    }
    if let Some(secret) = &volume.secret {
        if secret.secret_name.as_deref().is_none_or(str::is_empty) {
            errs.push(FieldError::required(format!("{at}.secret.secretName"), ""));
        }
    }
    if let Some(config_map) = &volume.config_map {
        if config_map.name.is_empty() {
            errs.push(FieldError::required(format!("{at}.configMap.name"), ""));
        }
    }
}

/// Kubernetes' `validateTolerations`.
fn tolerations(tolerations: &[Toleration], path: &str, errs: &mut Vec<FieldError>) {
    for (i, t) in tolerations.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let key = t.key.as_deref().unwrap_or("");
        if !key.is_empty() {
            each_invalid(errs, &format!("{at}.key"), key, qualified_name(key));
        }
        let operator = t.operator.as_deref().unwrap_or("");
        // An empty key with Exists tolerates every taint; with Equal it could match nothing.
        if key.is_empty() && operator != "Exists" {
            errs.push(FieldError::invalid(
                format!("{at}.operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values \
                 and all keys\"",
            ));
        }
        let effect = t.effect.as_deref().unwrap_or("");
        if t.toleration_seconds.is_some() && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                format!("{at}.effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        let value = t.value.as_deref().unwrap_or("");
        match operator {
            "" | "Equal" => {
                let problems = label_value(value);
                if !problems.is_empty() {
                    errs.push(FieldError::invalid(
                        format!("{at}.operator"),
                        value,
                        problems.join(";"),
                    ));
                }
            }
            "Exists" if !value.is_empty() => errs.push(FieldError::invalid(
                format!("{at}.operator"),
                json(t),
                "value must be empty when `operator` is 'Exists'",
            )),
            "Exists" => {}
            other => errs.push(FieldError::not_supported(
                format!("{at}.operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            errs.push(FieldError::not_supported(
                format!("{at}.effect"),
                effect,
                TAINT_EFFECTS,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::FieldErrorKind;
    use super::super::test_util::{from_json, only, paths, web_pod};
    use super::*;
    use serde_json::json;

    /// The spec errors of the web pod changed by `edit`.
    fn check(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<FieldError> {
        let mut pod = web_pod();
        edit(&mut pod);
        let spec: PodSpec = from_json(pod["spec"].take());
        validate_pod_spec(&spec, "spec")
    }

    #[test]
    fn the_web_pod_spec_is_valid() {
        assert_eq!(check(|_| {}), vec![]);
    }

    #[test]
    fn restart_policy_must_be_known() {
        let errs = check(|p| p["spec"]["restartPolicy"] = json!("Sometimes"));
        assert_eq!(
            only(&errs, "spec.restartPolicy").to_string(),
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \
             \"OnFailure\", \"Never\""
        );
    }

    #[test]
    fn dns_policy_must_be_known_and_none_needs_a_config() {
        let errs = check(|p| p["spec"]["dnsPolicy"] = json!("Cluster"));
        assert!(matches!(
            only(&errs, "spec.dnsPolicy").kind,
            FieldErrorKind::NotSupported { .. }
        ));
        let errs = check(|p| p["spec"]["dnsPolicy"] = json!("None"));
        assert_eq!(only(&errs, "spec.dnsConfig").kind, FieldErrorKind::Required);
    }

    #[test]
    fn grace_period_may_not_be_negative_and_deadline_must_be_positive() {
        let errs = check(|p| {
            p["spec"]["terminationGracePeriodSeconds"] = json!(-1);
            p["spec"]["activeDeadlineSeconds"] = json!(0);
        });
        assert_eq!(
            paths(&errs),
            [
                "spec.terminationGracePeriodSeconds",
                "spec.activeDeadlineSeconds"
            ]
        );
        assert_eq!(
            errs[1].detail,
            "must be between 1 and 2147483647, inclusive"
        );
    }

    #[test]
    fn volume_names_are_unique_labels() {
        let errs = check(|p| p["spec"]["volumes"][1]["name"] = json!("cache"));
        assert_eq!(
            only(&errs, "spec.volumes[1].name").kind,
            FieldErrorKind::Duplicate {
                value: "cache".into()
            }
        );
        let errs = check(|p| p["spec"]["volumes"][2]["name"] = json!("Data"));
        only(&errs, "spec.volumes[2].name");
    }

    #[test]
    fn a_volume_has_exactly_one_source() {
        let errs = check(|p| p["spec"]["volumes"][0] = json!({"name": "cache"}));
        let err = only(&errs, "spec.volumes[0]");
        assert_eq!(
            err.to_string(),
            "spec.volumes[0]: Required value: must specify a volume type"
        );
        let errs = check(|p| p["spec"]["volumes"][0]["hostPath"] = json!({"path": "/tmp"}));
        assert_eq!(
            only(&errs, "spec.volumes[0].hostPath").kind,
            FieldErrorKind::Forbidden
        );
    }

    #[test]
    fn volume_sources_need_their_names() {
        let errs =
            check(|p| p["spec"]["volumes"][2]["persistentVolumeClaim"]["claimName"] = json!(""));
        only(&errs, "spec.volumes[2].persistentVolumeClaim.claimName");
    }

    #[test]
    fn a_mount_of_an_unknown_volume_is_invalid() {
        let errs = check(|p| p["spec"]["volumes"][0]["name"] = json!("other"));
        only(&errs, "spec.containers[0].volumeMounts[0].name");
    }

    #[test]
    fn node_name_and_service_account_are_subdomains() {
        let errs = check(|p| {
            p["spec"]["nodeName"] = json!("Node_1");
            p["spec"]["serviceAccountName"] = json!("a b");
        });
        assert_eq!(paths(&errs), ["spec.nodeName", "spec.serviceAccountName"]);
    }

    #[test]
    fn tolerations_are_checked() {
        let errs = check(|p| {
            p["spec"]["tolerations"] = json!([
                {"operator": "Equal", "value": "x"},
                {"key": "k", "operator": "Exists", "value": "v"},
                {"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5},
                {"key": "k", "operator": "Like"},
                {"key": "k", "effect": "Never"}
            ]);
        });
        assert_eq!(
            paths(&errs),
            [
                "spec.tolerations[0].operator",
                "spec.tolerations[1].operator",
                "spec.tolerations[2].effect",
                "spec.tolerations[3].operator",
                "spec.tolerations[4].effect",
            ]
        );
    }

    #[test]
    fn templates_are_checked_under_their_path() {
        let template: PodTemplateSpec = from_json(json!({
            "metadata": {"labels": {"app": "-web"}},
            "spec": {"containers": [{"name": "web"}]}
        }));
        let errs = validate_template(&template, "spec.template");
        assert_eq!(
            paths(&errs),
            [
                "spec.template.metadata.labels",
                "spec.template.spec.containers[0].image"
            ]
        );
    }

    #[test]
    fn template_restart_policy_defaults_to_always() {
        let template: PodTemplateSpec = from_json(json!({"spec": {"containers": []}}));
        let mut errs = Vec::new();
        template_restart_policy(&mut errs, &template, "spec.template", &["Always"]);
        assert_eq!(errs, vec![]);
        template_restart_policy(
            &mut errs,
            &template,
            "spec.template",
            &["OnFailure", "Never"],
        );
        assert_eq!(
            only(&errs, "spec.template.spec.restartPolicy").to_string(),
            "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \
             \"OnFailure\", \"Never\""
        );
    }
}
