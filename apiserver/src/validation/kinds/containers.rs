//! Containers and init containers of a pod spec: names, images, ports, env, volume mounts,
//! and which probes and hooks each may have (Kubernetes' `validateContainers` family);
//! [`super::resources`] and [`super::probes`] check those parts.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvFromSource, EnvVar, PodSpec, VolumeMount,
};

use super::super::names::{dns1123_label, env_var_name, port_name};
use super::super::FieldError;
use super::probes::{lifecycle_handler, probe};
use super::resources::container_resources;
use super::{each_invalid, one_of, port_number, PROTOCOLS};

/// How long a pod gets to stop when its spec does not say.
const DEFAULT_GRACE_SECONDS: i64 = 30;
const INIT_ONLY_WITH_RESTART: &str =
    "may not be set for init containers without restartPolicy=Always";

/// Which list a container is in: the rules for init containers differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    App,
    Init,
}

/// Checks `spec.containers` and `spec.initContainers` under `path` (`spec`,
/// `spec.template.spec`). Names must be unique across both lists.
pub(super) fn validate_containers(spec: &PodSpec, path: &str, errs: &mut Vec<FieldError>) {
    let volumes: BTreeSet<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    let grace = spec
        .termination_grace_period_seconds
        .unwrap_or(DEFAULT_GRACE_SECONDS);
    let host_network = spec.host_network == Some(true);
    let mut names = BTreeSet::new();

    if spec.containers.is_empty() {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }
    let lists = [
        (Role::App, "containers", spec.containers.as_slice()),
        (
            Role::Init,
            "initContainers",
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
    ];
    for (role, list, containers) in lists {
        for (i, c) in containers.iter().enumerate() {
            let at = format!("{path}.{list}[{i}]");
            if !c.name.is_empty() && !names.insert(c.name.as_str()) {
                errs.push(FieldError::duplicate(format!("{at}.name"), &c.name));
            }
            container(c, role, &at, &volumes, grace, host_network, errs);
        }
    }
}

fn container(
    c: &Container,
    role: Role,
    at: &str,
    volumes: &BTreeSet<&str>,
    grace: i64,
    host_network: bool,
    errs: &mut Vec<FieldError>,
) {
    if c.name.is_empty() {
        errs.push(FieldError::required(format!("{at}.name"), ""));
    } else {
        each_invalid(errs, &format!("{at}.name"), &c.name, dns1123_label(&c.name));
    }
    match c.image.as_deref() {
        None | Some("") => errs.push(FieldError::required(format!("{at}.image"), "")),
        Some(image) if image.trim() != image => errs.push(FieldError::invalid(
            format!("{at}.image"),
            image,
            "must not have leading or trailing whitespace",
        )),
        Some(_) => {}
    }
    let pull_policies = ["Always", "IfNotPresent", "Never"];
    one_of(
        errs,
        format!("{at}.imagePullPolicy"),
        c.image_pull_policy.as_deref(),
        &pull_policies,
    );
    let message_policies = ["File", "FallbackToLogsOnError"];
    let policy = c.termination_message_policy.as_deref();
    one_of(
        errs,
        format!("{at}.terminationMessagePolicy"),
        policy,
        &message_policies,
    );

    ports(
        c.ports.as_deref().unwrap_or_default(),
        &format!("{at}.ports"),
        host_network,
        errs,
    );
    for (i, var) in c.env.iter().flatten().enumerate() {
        env_var(var, &format!("{at}.env[{i}]"), errs);
    }
    for (i, source) in c.env_from.iter().flatten().enumerate() {
        env_from(source, &format!("{at}.envFrom[{i}]"), errs);
    }
    if let Some(resources) = &c.resources {
        container_resources(resources, &format!("{at}.resources"), errs);
    }
    volume_mounts(
        c.volume_mounts.as_deref().unwrap_or_default(),
        at,
        volumes,
        errs,
    );

    // A restartable init container is a sidecar: it runs beside the app containers, so it
    // may have probes and hooks like them. A plain init container runs to completion first.
    let sidecar = role == Role::Init && c.restart_policy.as_deref() == Some("Always");
    match (role, c.restart_policy.as_deref()) {
        (_, None) | (Role::Init, Some("Always")) => {}
        (Role::App, Some(_)) => errs.push(FieldError::forbidden(
            format!("{at}.restartPolicy"),
            "may not be set for non-init containers",
        )),
        (Role::Init, Some(other)) => errs.push(FieldError::not_supported(
            format!("{at}.restartPolicy"),
            other,
            &["Always"],
        )),
    }
    let probes = [
        ("livenessProbe", &c.liveness_probe, true),
        ("readinessProbe", &c.readiness_probe, false),
        ("startupProbe", &c.startup_probe, true),
    ];
    for (name, probe_spec, needs_single_success) in probes {
        let Some(p) = probe_spec else { continue };
        if role == Role::Init && !sidecar {
            errs.push(FieldError::forbidden(
                format!("{at}.{name}"),
                INIT_ONLY_WITH_RESTART,
            ));
        } else {
            probe(p, &format!("{at}.{name}"), needs_single_success, errs);
        }
    }
    if let Some(lifecycle) = &c.lifecycle {
        if role == Role::Init && !sidecar {
            errs.push(FieldError::forbidden(
                format!("{at}.lifecycle"),
                INIT_ONLY_WITH_RESTART,
            ));
        } else {
            for (name, hook) in [
                ("postStart", &lifecycle.post_start),
                ("preStop", &lifecycle.pre_stop),
            ] {
                if let Some(hook) = hook {
                    lifecycle_handler(hook, &format!("{at}.lifecycle.{name}"), grace, errs);
                }
            }
        }
    }
}

fn ports(ports: &[ContainerPort], at: &str, host_network: bool, errs: &mut Vec<FieldError>) {
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let at = format!("{at}[{i}]");
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            let problems = port_name(name);
            if !problems.is_empty() {
                each_invalid(errs, &format!("{at}.name"), name, problems);
            } else if !names.insert(name) {
                errs.push(FieldError::duplicate(format!("{at}.name"), name));
            }
        }
        if port.container_port == 0 {
            errs.push(FieldError::required(format!("{at}.containerPort"), ""));
        } else {
            port_number(errs, format!("{at}.containerPort"), port.container_port);
        }
        if let Some(host_port) = port.host_port.filter(|p| *p != 0) {
            port_number(errs, format!("{at}.hostPort"), host_port);
            // With the host's network the container port is the host port; a different
            // number could never be honoured.
            if host_network && host_port != port.container_port {
                errs.push(FieldError::invalid(
                    format!("{at}.hostPort"),
                    host_port,
                    "must match `containerPort` when `hostNetwork` is true",
                ));
            }
        }
        one_of(
            errs,
            format!("{at}.protocol"),
            port.protocol.as_deref(),
            PROTOCOLS,
        );
    }
}

fn env_var(var: &EnvVar, at: &str, errs: &mut Vec<FieldError>) {
    if var.name.is_empty() {
        errs.push(FieldError::required(format!("{at}.name"), ""));
    } else {
        each_invalid(
            errs,
            &format!("{at}.name"),
            &var.name,
            env_var_name(&var.name),
        );
    }
    let Some(from) = &var.value_from else { return };
    let sources = [
        from.field_ref.is_some(),
        from.resource_field_ref.is_some(),
        from.config_map_key_ref.is_some(),
        from.secret_key_ref.is_some(),
        from.file_key_ref.is_some(),
    ];
    match sources.iter().filter(|s| **s).count() {
        0 => errs.push(FieldError::invalid(
            format!("{at}.valueFrom"),
            "",
            "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef`, \
             `secretKeyRef` or `fileKeyRef`",
        )),
        1 => {}
        _ => errs.push(FieldError::invalid(
            format!("{at}.valueFrom"),
            "",
            "may not have more than one field specified at a time",
        )),
    }
    if var.value.as_deref().is_some_and(|v| !v.is_empty()) {
        errs.push(FieldError::invalid(
            format!("{at}.valueFrom"),
            "",
            "may not be specified when `value` is not empty",
        ));
    }
}

fn env_from(source: &EnvFromSource, at: &str, errs: &mut Vec<FieldError>) {
    if let Some(prefix) = source.prefix.as_deref().filter(|p| !p.is_empty()) {
        each_invalid(errs, &format!("{at}.prefix"), prefix, env_var_name(prefix));
    }
    match (source.config_map_ref.is_some(), source.secret_ref.is_some()) {
        (true, false) | (false, true) => {}
        (false, false) => errs.push(FieldError::invalid(
            at,
            "",
            "must specify one of: `configMapRef` or `secretRef`",
        )),
        (true, true) => errs.push(FieldError::invalid(
            at,
            "",
            "may not have more than one field specified at a time",
        )),
    }
}

fn volume_mounts(
    mounts: &[VolumeMount],
    at: &str,
    volumes: &BTreeSet<&str>,
    errs: &mut Vec<FieldError>,
) {
    let mut paths = BTreeSet::new();
    for (i, mount) in mounts.iter().enumerate() {
        let at = format!("{at}.volumeMounts[{i}]");
        if mount.name.is_empty() {
            errs.push(FieldError::required(format!("{at}.name"), ""));
        } else if !volumes.contains(mount.name.as_str()) {
            errs.push(FieldError::invalid(
                format!("{at}.name"),
                &mount.name,
                "must match the name of a volume in the pod's `volumes`",
            ));
        }
        if mount.mount_path.is_empty() {
            errs.push(FieldError::required(format!("{at}.mountPath"), ""));
        } else if !mount.mount_path.starts_with('/') {
            errs.push(FieldError::invalid(
                format!("{at}.mountPath"),
                &mount.mount_path,
                "must be an absolute path",
            ));
        } else if !paths.insert(mount.mount_path.as_str()) {
            errs.push(FieldError::invalid(
                format!("{at}.mountPath"),
                &mount.mount_path,
                "must be unique",
            ));
        }
        // A sub path reaching outside the volume would expose the host's files.
        if let Some(sub_path) = mount.sub_path.as_deref().filter(|p| !p.is_empty()) {
            if sub_path.starts_with('/') {
                errs.push(FieldError::invalid(
                    format!("{at}.subPath"),
                    sub_path,
                    "must be a relative path",
                ));
            } else if sub_path.split('/').any(|part| part == "..") {
                errs.push(FieldError::invalid(
                    format!("{at}.subPath"),
                    sub_path,
                    "must not contain '..'",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::FieldErrorKind;
    use super::super::test_util::{from_json, only, paths};
    use super::*;
    use serde_json::json;

    /// The nginx pod of the Kubernetes docs, with the usual extras.
    fn spec() -> serde_json::Value {
        json!({
            "containers": [{
                "name": "nginx",
                "image": "nginx:1.14.2",
                "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                "env": [
                    {"name": "MODE", "value": "production"},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
                ],
                "envFrom": [{"configMapRef": {"name": "nginx-env"}, "prefix": "CFG_"}],
                "resources": {
                    "requests": {"cpu": "250m", "memory": "64Mi"},
                    "limits": {"cpu": "500m", "memory": "128Mi", "example.com/gpu": "1"}
                },
                "volumeMounts": [{"name": "html", "mountPath": "/usr/share/nginx/html"}],
                "livenessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 10},
                "readinessProbe": {"tcpSocket": {"port": 80}, "successThreshold": 2},
                "lifecycle": {"preStop": {"sleep": {"seconds": 5}}}
            }],
            "initContainers": [
                {"name": "fetch", "image": "busybox:1.36", "command": ["wget", "-O", "/x"]},
                {
                    "name": "log-shipper", "image": "fluent-bit:3", "restartPolicy": "Always",
                    "startupProbe": {"exec": {"command": ["true"]}}
                }
            ],
            "volumes": [{"name": "html", "emptyDir": {}}]
        })
    }

    fn check(value: serde_json::Value) -> Vec<FieldError> {
        let spec: PodSpec = from_json(value);
        let mut errs = Vec::new();
        validate_containers(&spec, "spec", &mut errs);
        errs
    }

    fn with(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<FieldError> {
        let mut value = spec();
        edit(&mut value);
        check(value)
    }

    #[test]
    fn realistic_containers_are_valid() {
        assert_eq!(check(spec()), vec![]);
    }

    #[test]
    fn containers_are_required() {
        let errs = with(|s| s["containers"] = json!([]));
        assert_eq!(
            only(&errs, "spec.containers").kind,
            FieldErrorKind::Required
        );
    }

    #[test]
    fn container_names_are_required_labels() {
        let errs = with(|s| s["containers"][0]["name"] = json!(""));
        assert_eq!(
            only(&errs, "spec.containers[0].name").kind,
            FieldErrorKind::Required
        );
        let errs = with(|s| s["initContainers"][0]["name"] = json!("Fetch_1"));
        assert!(matches!(
            only(&errs, "spec.initContainers[0].name").kind,
            FieldErrorKind::Invalid { .. }
        ));
    }

    #[test]
    fn container_names_are_unique_across_init_and_app_containers() {
        let errs = with(|s| s["initContainers"][1]["name"] = json!("nginx"));
        let err = only(&errs, "spec.initContainers[1].name");
        assert_eq!(
            err.to_string(),
            "spec.initContainers[1].name: Duplicate value: \"nginx\""
        );
    }

    #[test]
    fn an_image_is_required_and_has_no_surrounding_spaces() {
        let errs = with(|s| {
            s["containers"][0]
                .as_object_mut()
                .expect("object")
                .remove("image");
        });
        assert_eq!(
            only(&errs, "spec.containers[0].image").kind,
            FieldErrorKind::Required
        );
        let errs = with(|s| s["containers"][0]["image"] = json!(" nginx"));
        assert!(only(&errs, "spec.containers[0].image")
            .detail
            .contains("whitespace"));
    }

    #[test]
    fn container_ports_are_in_range_with_a_known_protocol() {
        let errs = with(|s| s["containers"][0]["ports"][0]["containerPort"] = json!(70000));
        let err = only(&errs, "spec.containers[0].ports[0].containerPort");
        assert_eq!(
            err.to_string(),
            "spec.containers[0].ports[0].containerPort: Invalid value: \"70000\": must be \
             between 1 and 65535, inclusive"
        );
        let errs = with(|s| s["containers"][0]["ports"][0]["containerPort"] = json!(0));
        assert_eq!(
            only(&errs, "spec.containers[0].ports[0].containerPort").kind,
            FieldErrorKind::Required
        );
        let errs = with(|s| s["containers"][0]["ports"][0]["protocol"] = json!("HTTP"));
        let err = only(&errs, "spec.containers[0].ports[0].protocol");
        assert_eq!(
            err.to_string(),
            "spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported \
             values: \"SCTP\", \"TCP\", \"UDP\""
        );
    }

    #[test]
    fn container_port_names_are_valid_and_unique() {
        let errs = with(|s| {
            s["containers"][0]["ports"] = json!([
                {"name": "http", "containerPort": 80},
                {"name": "http", "containerPort": 8080},
                {"name": "HTTPS", "containerPort": 443}
            ]);
        });
        assert_eq!(
            paths(&errs),
            [
                "spec.containers[0].ports[1].name",
                "spec.containers[0].ports[2].name",
                "spec.containers[0].ports[2].name"
            ]
        );
        assert_eq!(
            errs[0].kind,
            FieldErrorKind::Duplicate {
                value: "http".into()
            }
        );
    }

    #[test]
    fn a_host_network_pod_must_use_the_container_port_on_the_host() {
        let errs = with(|s| {
            s["hostNetwork"] = json!(true);
            s["containers"][0]["ports"][0]["hostPort"] = json!(8080);
        });
        assert!(only(&errs, "spec.containers[0].ports[0].hostPort")
            .detail
            .contains("hostNetwork"));
    }

    #[test]
    fn env_var_names_are_checked() {
        let errs = with(|s| s["containers"][0]["env"][0]["name"] = json!("A=B"));
        assert!(matches!(
            only(&errs, "spec.containers[0].env[0].name").kind,
            FieldErrorKind::Invalid { .. }
        ));
        let errs = with(|s| s["containers"][0]["env"][0]["name"] = json!(""));
        assert_eq!(
            only(&errs, "spec.containers[0].env[0].name").kind,
            FieldErrorKind::Required
        );
    }

    #[test]
    fn env_value_from_takes_exactly_one_source_and_no_value() {
        let errs = with(|s| {
            s["containers"][0]["env"][1]["value"] = json!("x");
            s["containers"][0]["env"][1]["valueFrom"]["secretKeyRef"] =
                json!({"name": "s", "key": "k"});
        });
        assert_eq!(
            paths(&errs),
            [
                "spec.containers[0].env[1].valueFrom",
                "spec.containers[0].env[1].valueFrom"
            ]
        );
        assert!(errs[0].detail.contains("more than one field"));
        assert!(errs[1].detail.contains("`value` is not empty"));
    }

    #[test]
    fn env_from_needs_one_source() {
        let errs = with(|s| s["containers"][0]["envFrom"][0] = json!({"prefix": "X_"}));
        only(&errs, "spec.containers[0].envFrom[0]");
    }

    #[test]
    fn volume_mounts_name_a_volume_at_an_absolute_path() {
        let errs = with(|s| {
            s["containers"][0]["volumeMounts"] = json!([
                {"name": "missing", "mountPath": "/data"},
                {"name": "html", "mountPath": "relative/dir"},
                {"name": "html", "mountPath": "/data"},
                {"name": "html", "mountPath": "/x", "subPath": "../../etc"}
            ]);
        });
        assert_eq!(
            paths(&errs),
            [
                "spec.containers[0].volumeMounts[0].name",
                "spec.containers[0].volumeMounts[1].mountPath",
                "spec.containers[0].volumeMounts[2].mountPath",
                "spec.containers[0].volumeMounts[3].subPath",
            ]
        );
        assert_eq!(errs[1].detail, "must be an absolute path");
        assert_eq!(errs[2].detail, "must be unique");
    }

    #[test]
    fn plain_init_containers_may_not_have_probes_or_hooks() {
        let errs = with(|s| {
            s["initContainers"][0]["livenessProbe"] = json!({"exec": {"command": ["true"]}});
            s["initContainers"][0]["lifecycle"] =
                json!({"postStart": {"exec": {"command": ["x"]}}});
        });
        assert_eq!(
            paths(&errs),
            [
                "spec.initContainers[0].livenessProbe",
                "spec.initContainers[0].lifecycle"
            ]
        );
        assert!(errs.iter().all(|e| e.kind == FieldErrorKind::Forbidden));
    }

    #[test]
    fn only_init_containers_have_a_restart_policy() {
        let errs = with(|s| s["containers"][0]["restartPolicy"] = json!("Always"));
        assert_eq!(
            only(&errs, "spec.containers[0].restartPolicy").kind,
            FieldErrorKind::Forbidden
        );
        let errs = with(|s| s["initContainers"][1]["restartPolicy"] = json!("OnFailure"));
        assert_eq!(
            paths(&errs),
            [
                "spec.initContainers[1].restartPolicy",
                "spec.initContainers[1].startupProbe"
            ],
            "without restartPolicy Always it is no sidecar, so its probe is refused too"
        );
    }

    #[test]
    fn a_pre_stop_sleep_fits_in_the_grace_period() {
        let errs = with(|s| {
            s["terminationGracePeriodSeconds"] = json!(3);
        });
        assert!(
            only(&errs, "spec.containers[0].lifecycle.preStop.sleep.seconds")
                .detail
                .contains("(3)")
        );
    }
}
