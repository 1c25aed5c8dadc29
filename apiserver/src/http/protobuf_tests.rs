//! Bodies encoded with k8s-pb's prost types (what Kubernetes' .proto files say), read back.

use std::collections::BTreeMap;

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message as _;
use serde_json::json;

use super::*;

/// `object` in its envelope, as a client sends it.
fn body(api_version: &str, kind: &str, object: &impl prost::Message) -> Vec<u8> {
    let envelope = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(object.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    [MAGIC, &envelope.encode_to_vec()].concat()
}

fn strings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// Go writes empty strings and zero timestamps for non-pointer fields: as a client does.
fn metadata(name: &str, labels: &[(&str, &str)]) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: Some(name.into()),
        generate_name: Some(String::new()),
        namespace: Some(String::new()),
        labels: strings(labels),
        creation_timestamp: Some(meta::Time::default()),
        ..Default::default()
    }
}

fn int(value: i32) -> IntOrString {
    IntOrString {
        r#type: Some(0),
        int_val: Some(value),
        str_val: Some(String::new()),
    }
}

fn text(value: &str) -> IntOrString {
    IntOrString {
        r#type: Some(1),
        int_val: Some(0),
        str_val: Some(value.into()),
    }
}

#[test]
fn a_deployment_as_kubectl_create_sends_it() {
    let container = core::Container {
        name: Some("kubia".into()),
        image: Some("kubia:v1".into()),
        ports: vec![core::ContainerPort {
            container_port: Some(8080),
            protocol: Some("TCP".into()),
            ..Default::default()
        }],
        resources: Some(core::ResourceRequirements {
            requests: [(
                "cpu".to_string(),
                Quantity {
                    string: Some("100m".into()),
                },
            )]
            .into(),
            ..Default::default()
        }),
        stdin: Some(false),
        ..Default::default()
    };
    let deployment = apps::Deployment {
        metadata: Some(metadata("kubia", &[("app", "kubia")])),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(3),
            selector: Some(meta::LabelSelector {
                match_labels: strings(&[("app", "kubia")]),
                ..Default::default()
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(metadata("", &[("app", "kubia")])),
                spec: Some(core::PodSpec {
                    containers: vec![container],
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: Some("RollingUpdate".into()),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: Some(int(1)),
                    max_surge: Some(text("25%")),
                }),
            }),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus::default()),
    };
    let object = object_from_protobuf(&body("apps/v1", "Deployment", &deployment)).unwrap();
    assert_eq!(
        object,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": "kubia", "labels": { "app": "kubia" } },
            "spec": {
                "replicas": 3,
                "selector": { "matchLabels": { "app": "kubia" } },
                "template": {
                    "metadata": { "labels": { "app": "kubia" } },
                    "spec": { "containers": [{
                        "name": "kubia",
                        "image": "kubia:v1",
                        "ports": [{ "containerPort": 8080, "protocol": "TCP" }],
                        "resources": { "requests": { "cpu": "100m" } },
                        "stdin": false
                    }] }
                },
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": { "maxUnavailable": 1, "maxSurge": "25%" }
                }
            },
            "status": {}
        })
    );
    // What the registry then reads.
    serde_json::from_value::<k8s_openapi::api::apps::v1::Deployment>(object).unwrap();
}

#[test]
fn a_config_maps_data_keeps_empty_values_and_binary_data_is_base64() {
    let config_map = core::ConfigMap {
        metadata: Some(metadata("settings", &[])),
        data: strings(&[("mode", "fast"), ("empty", "")]),
        binary_data: [("blob".to_string(), vec![0u8, 1, 2, 255])].into(),
        immutable: None,
    };
    let object = object_from_protobuf(&body("v1", "ConfigMap", &config_map)).unwrap();
    assert_eq!(
        object,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": { "name": "settings" },
            "data": { "mode": "fast", "empty": "" },
            "binaryData": { "blob": "AAEC/w==" }
        })
    );
}

#[test]
fn embedded_structs_are_flattened_and_names_keep_their_capitals() {
    let pod = core::Pod {
        metadata: Some(metadata("web", &[])),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: Some("c".into()),
                args: vec!["--flag".into(), String::new()],
                liveness_probe: Some(core::Probe {
                    handler: Some(core::ProbeHandler {
                        http_get: Some(core::HttpGetAction {
                            path: Some("/healthz".into()),
                            port: Some(text("http")),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    period_seconds: Some(5),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            volumes: vec![core::Volume {
                name: Some("config".into()),
                volume_source: Some(core::VolumeSource {
                    config_map: Some(core::ConfigMapVolumeSource {
                        local_object_reference: Some(core::LocalObjectReference {
                            name: Some("settings".into()),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }],
            host_ipc: Some(true),
            ..Default::default()
        }),
        status: Some(core::PodStatus {
            pod_ips: vec![core::PodIp {
                ip: Some("10.0.0.1".into()),
            }],
            start_time: Some(meta::Time {
                seconds: Some(1_461_932_353),
                nanos: Some(0),
            }),
            ..Default::default()
        }),
    };
    let object = object_from_protobuf(&body("v1", "Pod", &pod)).unwrap();
    let container = &object["spec"]["containers"][0];
    assert_eq!(container["args"], json!(["--flag", ""]), "list values kept");
    assert_eq!(
        container["livenessProbe"],
        json!({ "httpGet": { "path": "/healthz", "port": "http" }, "periodSeconds": 5 })
    );
    assert_eq!(
        object["spec"]["volumes"][0],
        json!({ "name": "config", "configMap": { "name": "settings" } })
    );
    assert_eq!(object["spec"]["hostIPC"], json!(true));
    assert_eq!(object["status"]["podIPs"], json!([{ "ip": "10.0.0.1" }]));
    assert_eq!(object["status"]["startTime"], json!("2016-04-29T12:19:13Z"));
    serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(object).unwrap();
}

#[test]
fn delete_options_are_read_from_meta() {
    let options = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        propagation_policy: Some("Foreground".into()),
        ..Default::default()
    };
    let object = object_from_protobuf(&body("meta.k8s.io/v1", "DeleteOptions", &options)).unwrap();
    assert_eq!(object["gracePeriodSeconds"], json!(0));
    assert_eq!(object["propagationPolicy"], json!("Foreground"));
}

#[test]
fn bad_bodies_are_refused_saying_why() {
    let error = |body: &[u8]| object_from_protobuf(body).unwrap_err().to_string();
    assert!(error(b"{\"kind\":\"Pod\"}").contains("does not start with Kubernetes' protobuf magic"));
    let namespace = core::Namespace {
        metadata: Some(metadata("a", &[])),
        ..Default::default()
    };
    assert!(error(&body("example.com/v1", "Widget", &namespace))
        .contains("example.com/v1 Widget is not a kind this server reads as protobuf"));
    let whole = body("v1", "Namespace", &namespace);
    assert!(error(&whole[..whole.len() - 3]).contains("runs past the end"));
    assert!(error(MAGIC).contains("names no apiVersion and kind"));
}

#[test]
fn the_content_type_is_recognised_with_parameters() {
    assert!(is_protobuf("application/vnd.kubernetes.protobuf"));
    assert!(is_protobuf(
        "application/vnd.kubernetes.protobuf; charset=utf-8"
    ));
    assert!(!is_protobuf("application/json"));
}

#[test]
fn every_served_kind_has_its_message() {
    for info in crate::kinds::KINDS.iter() {
        let api_version = if info.group.is_empty() {
            info.version.to_string()
        } else {
            format!("{}/{}", info.group, info.version)
        };
        assert!(
            message_for(&api_version, info.kind).is_some(),
            "{api_version} {} has no protobuf message: add its package to \
             scripts/gen-protobuf-messages",
            info.kind
        );
    }
    let names: Vec<&str> = messages::MESSAGES.iter().map(|m| m.name).collect();
    assert!(
        names.windows(2).all(|pair| pair[0] < pair[1]),
        "sorted by name"
    );
}

#[test]
fn go_zero_values_read_as_json_would_have_them() {
    // Go writes a Probe's non-pointer numbers even when zero; zero there means "default".
    let probe = core::Probe {
        handler: Some(core::ProbeHandler {
            exec: Some(core::ExecAction {
                command: vec!["true".into()],
            }),
            ..Default::default()
        }),
        period_seconds: Some(0),
        success_threshold: Some(0),
        timeout_seconds: Some(0),
        failure_threshold: Some(0),
        initial_delay_seconds: Some(0),
        termination_grace_period_seconds: None,
    };
    let deployment = apps::Deployment {
        metadata: Some(metadata("zero", &[])),
        spec: Some(apps::DeploymentSpec {
            // A pointer in Go: zero replicas is a value.
            replicas: Some(0),
            template: Some(core::PodTemplateSpec {
                metadata: None,
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: Some("c".into()),
                        liveness_probe: Some(probe),
                        ..Default::default()
                    }],
                    volumes: vec![core::Volume {
                        name: Some("info".into()),
                        volume_source: Some(core::VolumeSource {
                            downward_api: Some(core::DownwardAPIVolumeSource::default()),
                            ..Default::default()
                        }),
                    }],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let object = object_from_protobuf(&body("apps/v1", "Deployment", &deployment)).unwrap();
    assert_eq!(object["spec"]["replicas"], json!(0));
    let spec = &object["spec"]["template"]["spec"];
    assert_eq!(
        spec["containers"][0]["livenessProbe"],
        json!({ "exec": { "command": ["true"] } })
    );
    assert_eq!(
        spec["volumes"][0],
        json!({ "name": "info", "downwardAPI": {} })
    );

    // "" is "no class" for a claim, not "the default class".
    let claim = core::PersistentVolumeClaim {
        metadata: Some(metadata("data", &[])),
        spec: Some(core::PersistentVolumeClaimSpec {
            storage_class_name: Some(String::new()),
            volume_name: Some(String::new()),
            ..Default::default()
        }),
        status: None,
    };
    let object = object_from_protobuf(&body("v1", "PersistentVolumeClaim", &claim)).unwrap();
    assert_eq!(object["spec"], json!({ "storageClassName": "" }));
}

#[test]
fn a_body_nesting_past_the_limit_is_refused_not_followed() {
    let mut revision = apps::ControllerRevision::default();
    for _ in 0..MAX_DEPTH {
        let inner = body("apps/v1", "ControllerRevision", &revision);
        revision = apps::ControllerRevision {
            data: Some(k8s_pb::apimachinery::pkg::runtime::RawExtension { raw: Some(inner) }),
            ..Default::default()
        };
    }
    let error = object_from_protobuf(&body("apps/v1", "ControllerRevision", &revision))
        .unwrap_err()
        .to_string();
    assert!(error.contains("nest more than 64 deep"), "{error}");
}
