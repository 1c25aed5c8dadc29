//! Defaults inside a pod spec: the spec itself, containers, probes and volumes. Pods and the
//! pod templates of every workload share [`pod_spec`]; only Pods get [`pod_only`], as in
//! Kubernetes, so a new default there never changes templates and rolls out workloads.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    HTTPGetAction, ObjectFieldSelector, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    Volume,
};

use super::fields::{claim_spec, default_nonzero, default_string, host_path};

/// File mode for secret, configMap, downwardAPI and projected volumes: 0644.
const VOLUME_FILE_MODE: i32 = 0o644;
/// A projected service account token lives an hour.
const TOKEN_EXPIRATION_SECONDS: i64 = 3600;
/// Seconds a pod gets between SIGTERM and SIGKILL.
const TERMINATION_GRACE_SECONDS: i64 = 30;

/// Containers and ephemeral containers are distinct types with the same fields.
macro_rules! container_defaults {
    ($container:expr) => {{
        let container = $container;
        if container
            .image_pull_policy
            .as_deref()
            .is_none_or(str::is_empty)
        {
            let image = container.image.as_deref().unwrap_or_default();
            container.image_pull_policy = Some(pull_policy(image).to_string());
        }
        default_string(
            &mut container.termination_message_path,
            "/dev/termination-log",
        );
        default_string(&mut container.termination_message_policy, "File");
        for port in container.ports.iter_mut().flatten() {
            default_string(&mut port.protocol, "TCP");
        }
        let env_sources = container
            .env
            .iter_mut()
            .flatten()
            .filter_map(|e| e.value_from.as_mut());
        for field_ref in env_sources.filter_map(|source| source.field_ref.as_mut()) {
            field_selector(field_ref);
        }
        let probes = [
            &mut container.liveness_probe,
            &mut container.readiness_probe,
            &mut container.startup_probe,
        ];
        for probe in probes.into_iter().flatten() {
            self::probe(probe);
        }
        if let Some(lifecycle) = &mut container.lifecycle {
            let hooks = [&mut lifecycle.post_start, &mut lifecycle.pre_stop];
            for action in hooks
                .into_iter()
                .flatten()
                .filter_map(|h| h.http_get.as_mut())
            {
                http_get(action);
            }
        }
    }};
}

/// The defaults of a pod spec wherever it appears (`SetDefaults_PodSpec` and all it nests).
pub(super) fn pod_spec(spec: &mut PodSpec) {
    default_string(&mut spec.dns_policy, "ClusterFirst");
    default_string(&mut spec.restart_policy, "Always");
    spec.security_context.get_or_insert_with(Default::default);
    spec.termination_grace_period_seconds
        .get_or_insert(TERMINATION_GRACE_SECONDS);
    default_string(&mut spec.scheduler_name, "default-scheduler");
    for volume in spec.volumes.iter_mut().flatten() {
        self::volume(volume);
    }
    for container in spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(&mut spec.containers)
    {
        container_defaults!(container);
    }
    for container in spec.ephemeral_containers.iter_mut().flatten() {
        container_defaults!(container);
    }
}

/// A workload's pod template: its spec gets [`pod_spec`], not [`pod_only`].
pub(super) fn template(template: &mut PodTemplateSpec) {
    if let Some(spec) = &mut template.spec {
        pod_spec(spec);
    }
}

/// What only a Pod gets (`SetDefaults_Pod`): service links, requests from limits and, with
/// host networking, host ports.
pub(super) fn pod_only(spec: &mut PodSpec) {
    spec.enable_service_links.get_or_insert(true);
    let host_network = spec.host_network == Some(true);
    for container in spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(&mut spec.containers)
    {
        requests_from_limits(&mut container.resources);
        if host_network {
            // On the host's network a container port is a host port.
            for port in container.ports.iter_mut().flatten() {
                if matches!(port.host_port, None | Some(0)) {
                    port.host_port = Some(port.container_port);
                }
            }
        }
    }
}

/// `Always` for an image tagged `latest`, or with neither tag nor digest (which means
/// `latest`); `IfNotPresent` for everything else, pinned or unparsable.
fn pull_policy(image: &str) -> &'static str {
    if image_tag(image) == Some("latest") {
        "Always"
    } else {
        "IfNotPresent"
    }
}

/// The tag of an image reference (`registry:5000/app:1.2@sha256:...` has `1.2`).
fn image_tag(image: &str) -> Option<&str> {
    if image.is_empty() || image.contains(char::is_whitespace) {
        return None;
    }
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    // A registry's port also follows a colon, so only the last path segment holds the tag.
    let last_segment = name.rsplit('/').next().unwrap_or(name);
    match last_segment.split_once(':') {
        Some((_, tag)) => Some(tag),
        None if digest.is_none() => Some("latest"),
        None => None,
    }
}

fn probe(probe: &mut Probe) {
    default_nonzero(&mut probe.timeout_seconds, 1);
    default_nonzero(&mut probe.period_seconds, 10);
    default_nonzero(&mut probe.success_threshold, 1);
    default_nonzero(&mut probe.failure_threshold, 3);
    if let Some(action) = &mut probe.http_get {
        http_get(action);
    }
    if let Some(grpc) = &mut probe.grpc {
        // The empty service name asks for the server's overall health.
        grpc.service.get_or_insert_with(String::new);
    }
}

fn http_get(action: &mut HTTPGetAction) {
    default_string(&mut action.path, "/");
    default_string(&mut action.scheme, "HTTP");
}

fn field_selector(selector: &mut ObjectFieldSelector) {
    default_string(&mut selector.api_version, "v1");
}

/// Copies each limit without a request into the requests: a container that caps a
/// resource is scheduled as needing that much of it.
fn requests_from_limits(resources: &mut Option<ResourceRequirements>) {
    let Some(ResourceRequirements {
        limits: Some(limits),
        requests,
        ..
    }) = resources
    else {
        return;
    };
    if limits.is_empty() {
        return;
    }
    let requests = requests.get_or_insert_with(BTreeMap::new);
    for (resource, quantity) in limits.iter() {
        requests
            .entry(resource.clone())
            .or_insert_with(|| quantity.clone());
    }
}

fn volume(volume: &mut Volume) {
    if has_no_source(volume) {
        volume.empty_dir = Some(Default::default());
    }
    if let Some(source) = &mut volume.host_path {
        host_path(source);
    }
    if let Some(source) = &mut volume.secret {
        source.default_mode.get_or_insert(VOLUME_FILE_MODE);
    }
    if let Some(source) = &mut volume.config_map {
        source.default_mode.get_or_insert(VOLUME_FILE_MODE);
    }
    if let Some(source) = &mut volume.downward_api {
        source.default_mode.get_or_insert(VOLUME_FILE_MODE);
        for field_ref in source
            .items
            .iter_mut()
            .flatten()
            .filter_map(|i| i.field_ref.as_mut())
        {
            field_selector(field_ref);
        }
    }
    if let Some(source) = &mut volume.projected {
        source.default_mode.get_or_insert(VOLUME_FILE_MODE);
        for projection in source.sources.iter_mut().flatten() {
            if let Some(downward_api) = &mut projection.downward_api {
                let items = downward_api.items.iter_mut().flatten();
                for field_ref in items.filter_map(|i| i.field_ref.as_mut()) {
                    field_selector(field_ref);
                }
            }
            if let Some(token) = &mut projection.service_account_token {
                token
                    .expiration_seconds
                    .get_or_insert(TOKEN_EXPIRATION_SECONDS);
            }
        }
    }
    if let Some(template) = volume
        .ephemeral
        .as_mut()
        .and_then(|e| e.volume_claim_template.as_mut())
    {
        claim_spec(&mut template.spec);
    }
    if let Some(source) = &mut volume.image {
        if source.pull_policy.as_deref().is_none_or(str::is_empty) {
            let reference = source.reference.as_deref().unwrap_or_default();
            source.pull_policy = Some(pull_policy(reference).to_string());
        }
    }
    legacy_plugin_volume(volume);
}

/// The in-tree volume plugins' own defaults, kept so their objects read as in Kubernetes.
fn legacy_plugin_volume(volume: &mut Volume) {
    if let Some(source) = &mut volume.iscsi {
        default_string(&mut source.iscsi_interface, "default");
    }
    if let Some(source) = &mut volume.rbd {
        default_string(&mut source.pool, "rbd");
        default_string(&mut source.user, "admin");
        default_string(&mut source.keyring, "/etc/ceph/keyring");
    }
    if let Some(source) = &mut volume.azure_disk {
        source
            .caching_mode
            .get_or_insert_with(|| "ReadWrite".to_string());
        source.kind.get_or_insert_with(|| "Shared".to_string());
        source.fs_type.get_or_insert_with(|| "ext4".to_string());
        source.read_only.get_or_insert(false);
    }
    if let Some(source) = &mut volume.scale_io {
        default_string(&mut source.storage_mode, "ThinProvisioned");
        default_string(&mut source.fs_type, "xfs");
    }
}

/// Whether no volume source is set, in which case the volume is an emptyDir. Spelled out
/// field by field so that a source added to `Volume` fails to compile here until listed.
fn has_no_source(volume: &Volume) -> bool {
    let Volume {
        name: _,
        aws_elastic_block_store,
        azure_disk,
        azure_file,
        cephfs,
        cinder,
        config_map,
        csi,
        downward_api,
        empty_dir,
        ephemeral,
        fc,
        flex_volume,
        flocker,
        gce_persistent_disk,
        git_repo,
        glusterfs,
        host_path,
        image,
        iscsi,
        nfs,
        persistent_volume_claim,
        photon_persistent_disk,
        portworx_volume,
        projected,
        quobyte,
        rbd,
        scale_io,
        secret,
        storageos,
        vsphere_volume,
    } = volume;
    [
        aws_elastic_block_store.is_none(),
        azure_disk.is_none(),
        azure_file.is_none(),
        cephfs.is_none(),
        cinder.is_none(),
        config_map.is_none(),
        csi.is_none(),
        downward_api.is_none(),
        empty_dir.is_none(),
        ephemeral.is_none(),
        fc.is_none(),
        flex_volume.is_none(),
        flocker.is_none(),
        gce_persistent_disk.is_none(),
        git_repo.is_none(),
        glusterfs.is_none(),
        host_path.is_none(),
        image.is_none(),
        iscsi.is_none(),
        nfs.is_none(),
        persistent_volume_claim.is_none(),
        photon_persistent_disk.is_none(),
        portworx_volume.is_none(),
        projected.is_none(),
        quobyte.is_none(),
        rbd.is_none(),
        scale_io.is_none(),
        secret.is_none(),
        storageos.is_none(),
        vsphere_volume.is_none(),
    ]
    .into_iter()
    .all(|unset| unset)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    use super::super::fields::defaulted;
    use super::*;

    #[test]
    fn a_minimal_pod_gets_the_spec_defaults_kubectl_shows() {
        let pod = defaulted::<Pod>(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "kubia-manual"},
            "spec": {"containers": [{
                "image": "luksa/kubia", "name": "kubia",
                "ports": [{"containerPort": 8080}]
            }]}
        }));
        let spec = &pod["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["securityContext"], json!({}));
        assert_eq!(spec["enableServiceLinks"], true);
        let container = &spec["containers"][0];
        assert_eq!(container["imagePullPolicy"], "Always");
        assert_eq!(container["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(container["terminationMessagePolicy"], "File");
        assert_eq!(container["ports"][0]["protocol"], "TCP");
        assert!(container["ports"][0].get("hostPort").is_none());
    }

    #[test]
    fn values_the_user_gave_are_kept() {
        let pod = defaulted::<Pod>(json!({
            "metadata": {"name": "p"},
            "spec": {
                "restartPolicy": "Never",
                "dnsPolicy": "Default",
                "terminationGracePeriodSeconds": 0,
                "enableServiceLinks": false,
                "containers": [{
                    "name": "c", "image": "busybox", "imagePullPolicy": "Never",
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    "ports": [{"containerPort": 53, "protocol": "UDP"}]
                }]
            }
        }));
        let spec = &pod["spec"];
        assert_eq!(spec["restartPolicy"], "Never");
        assert_eq!(spec["dnsPolicy"], "Default");
        assert_eq!(spec["terminationGracePeriodSeconds"], 0);
        assert_eq!(spec["enableServiceLinks"], false);
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Never");
        assert_eq!(
            spec["containers"][0]["terminationMessagePolicy"],
            "FallbackToLogsOnError"
        );
        assert_eq!(spec["containers"][0]["ports"][0]["protocol"], "UDP");
    }

    #[test]
    fn pull_policy_is_always_only_for_latest_images() {
        let cases = [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("localhost:5000/team/app", "Always"),
            ("localhost:5000/team/app:latest", "Always"),
            ("nginx:1.25", "IfNotPresent"),
            ("localhost:5000/app:v2", "IfNotPresent"),
            ("nginx@sha256:0123456789abcdef", "IfNotPresent"),
            ("nginx:latest@sha256:0123456789abcdef", "Always"),
            ("", "IfNotPresent"),
            ("not an image", "IfNotPresent"),
        ];
        for (image, policy) in cases {
            assert_eq!(pull_policy(image), policy, "image {image:?}");
        }
    }

    #[test]
    fn init_and_ephemeral_containers_get_container_defaults() {
        let pod = defaulted::<Pod>(json!({
            "metadata": {"name": "p"},
            "spec": {
                "initContainers": [{"name": "init", "image": "busybox:1.36"}],
                "containers": [{"name": "app", "image": "app:v1"}],
                "ephemeralContainers": [{"name": "debug", "image": "busybox"}]
            }
        }));
        let init = &pod["spec"]["initContainers"][0];
        assert_eq!(init["imagePullPolicy"], "IfNotPresent");
        assert_eq!(init["terminationMessagePath"], "/dev/termination-log");
        let debug = &pod["spec"]["ephemeralContainers"][0];
        assert_eq!(debug["imagePullPolicy"], "Always");
        assert_eq!(debug["terminationMessagePolicy"], "File");
    }

    #[test]
    fn probes_and_hooks_get_their_defaults() {
        let pod = defaulted::<Pod>(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{
                "name": "app", "image": "app:v1",
                "livenessProbe": {"httpGet": {"port": 8080}},
                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 2},
                "startupProbe": {"grpc": {"port": 9000}, "failureThreshold": 30},
                "lifecycle": {"preStop": {"httpGet": {"port": 8080, "path": "/quit"}}},
                "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
            }]}
        }));
        let container = &pod["spec"]["containers"][0];
        let liveness = &container["livenessProbe"];
        assert_eq!(liveness["timeoutSeconds"], 1);
        assert_eq!(liveness["periodSeconds"], 10);
        assert_eq!(liveness["successThreshold"], 1);
        assert_eq!(liveness["failureThreshold"], 3);
        assert_eq!(liveness["httpGet"]["path"], "/");
        assert_eq!(liveness["httpGet"]["scheme"], "HTTP");
        assert_eq!(container["readinessProbe"]["periodSeconds"], 2);
        assert_eq!(container["startupProbe"]["failureThreshold"], 30);
        assert_eq!(container["startupProbe"]["grpc"]["service"], "");
        let pre_stop = &container["lifecycle"]["preStop"]["httpGet"];
        assert_eq!(pre_stop["path"], "/quit");
        assert_eq!(pre_stop["scheme"], "HTTP");
        assert_eq!(
            container["env"][0]["valueFrom"]["fieldRef"]["apiVersion"],
            "v1"
        );
    }

    #[test]
    fn volumes_get_their_source_defaults() {
        let pod = defaulted::<Pod>(json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{"name": "app", "image": "app:v1"}],
                "volumes": [
                    {"name": "scratch"},
                    {"name": "host", "hostPath": {"path": "/var/log"}},
                    {"name": "config", "configMap": {"name": "settings"}},
                    {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 256}},
                    {"name": "info", "downwardAPI": {"items": [
                        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}
                    ]}},
                    {"name": "token", "projected": {"sources": [
                        {"serviceAccountToken": {"path": "token"}}
                    ]}},
                    {"name": "cache", "ephemeral": {"volumeClaimTemplate": {
                        "spec": {"accessModes": ["ReadWriteOnce"]}
                    }}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}
                ]
            }
        }));
        let volumes = &pod["spec"]["volumes"];
        assert_eq!(volumes[0]["emptyDir"], json!({}));
        assert_eq!(volumes[1]["hostPath"]["type"], "");
        assert!(volumes[1].get("emptyDir").is_none());
        assert_eq!(volumes[2]["configMap"]["defaultMode"], 420);
        assert_eq!(volumes[3]["secret"]["defaultMode"], 256);
        assert_eq!(volumes[4]["downwardAPI"]["defaultMode"], 420);
        assert_eq!(
            volumes[4]["downwardAPI"]["items"][0]["fieldRef"]["apiVersion"],
            "v1"
        );
        assert_eq!(volumes[5]["projected"]["defaultMode"], 420);
        let token = &volumes[5]["projected"]["sources"][0]["serviceAccountToken"];
        assert_eq!(token["expirationSeconds"], 3600);
        let claim = &volumes[6]["ephemeral"]["volumeClaimTemplate"]["spec"];
        assert_eq!(claim["volumeMode"], "Filesystem");
        assert!(volumes[7].get("emptyDir").is_none());
    }

    #[test]
    fn pods_request_what_they_limit() {
        let pod = defaulted::<Pod>(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{
                "name": "app", "image": "app:v1",
                "resources": {
                    "limits": {"cpu": "500m", "memory": "128Mi"},
                    "requests": {"cpu": "100m"}
                }
            }]}
        }));
        let requests = &pod["spec"]["containers"][0]["resources"]["requests"];
        assert_eq!(requests, &json!({"cpu": "100m", "memory": "128Mi"}));
    }

    #[test]
    fn host_network_pods_expose_container_ports_on_the_host() {
        let pod = defaulted::<Pod>(json!({
            "metadata": {"name": "p"},
            "spec": {
                "hostNetwork": true,
                "containers": [{"name": "app", "image": "app:v1", "ports": [
                    {"containerPort": 8080}, {"containerPort": 9090, "hostPort": 9090}
                ]}]
            }
        }));
        let ports = &pod["spec"]["containers"][0]["ports"];
        assert_eq!(ports[0]["hostPort"], 8080);
        assert_eq!(ports[1]["hostPort"], 9090);
    }

    #[test]
    fn templates_get_spec_defaults_but_not_pod_only_ones() {
        let mut template: PodTemplateSpec = match serde_json::from_value(json!({
            "metadata": {"labels": {"app": "kubia"}},
            "spec": {"containers": [{
                "name": "kubia", "image": "luksa/kubia:v1",
                "resources": {"limits": {"cpu": "1"}}
            }]}
        })) {
            Ok(template) => template,
            Err(error) => panic!("test template does not decode: {error}"),
        };
        self::template(&mut template);
        let spec = template.spec.unwrap_or_default();
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.enable_service_links, None);
        let resources = spec.containers[0].resources.clone().unwrap_or_default();
        assert_eq!(resources.requests, None);
    }
}
