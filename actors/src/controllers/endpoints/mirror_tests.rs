use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, ObjectReference, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::super::reconcile::{is_owned_slice_of, MANAGED_BY_LABEL, SERVICE_NAME_LABEL};
use super::*;

fn database() -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some("shop".into()),
            name: Some("db".into()),
            uid: Some("db-uid".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                name: Some("pg".into()),
                port: 5432,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn address(ip: &str) -> EndpointAddress {
    EndpointAddress {
        ip: ip.into(),
        ..Default::default()
    }
}

fn users_endpoints(labels: &[(&str, &str)]) -> Endpoints {
    Endpoints {
        metadata: ObjectMeta {
            namespace: Some("shop".into()),
            name: Some("db".into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        subsets: Some(vec![EndpointSubset {
            addresses: Some(vec![EndpointAddress {
                node_name: Some("n1".into()),
                target_ref: Some(ObjectReference {
                    kind: Some("Pod".into()),
                    name: Some("db-0".into()),
                    ..Default::default()
                }),
                ..address("192.168.10.5")
            }]),
            not_ready_addresses: Some(vec![address("192.168.10.6")]),
            ports: Some(vec![EndpointPort {
                name: Some("pg".into()),
                port: 5432,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
        }]),
    }
}

#[test]
fn a_users_endpoints_become_one_slice_the_mirroring_controller_owns() {
    let slices = mirrored_slices(&database(), &users_endpoints(&[]));
    assert_eq!(slices.len(), 1, "{slices:#?}");
    let slice = &slices[0];
    let name = slice.metadata.name.as_deref().unwrap();
    assert!(
        name.starts_with("db-mirror-") && name.ends_with("-0"),
        "{name}"
    );
    let labels = slice.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[SERVICE_NAME_LABEL], "db");
    assert_eq!(
        labels[MANAGED_BY_LABEL],
        "endpointslicemirroring-controller.k8s.io"
    );
    assert!(is_owned_slice_of(slice, "db", &MIRRORED));
    let endpoints: Vec<_> = slice
        .endpoints
        .iter()
        .map(|e| {
            (
                e.addresses[0].as_str(),
                e.conditions.as_ref().and_then(|c| c.ready),
                e.node_name.as_deref(),
                e.target_ref.as_ref().and_then(|r| r.name.as_deref()),
            )
        })
        .collect();
    assert_eq!(
        endpoints,
        [
            ("192.168.10.5", Some(true), Some("n1"), Some("db-0")),
            ("192.168.10.6", Some(false), None, None),
        ]
    );
    let ports = slice.ports.as_ref().unwrap();
    assert_eq!(
        (ports[0].name.as_deref(), ports[0].port),
        (Some("pg"), Some(5432))
    );
}

#[test]
fn endpoints_marked_skip_mirror_are_not_mirrored() {
    let skipped = users_endpoints(&[(SKIP_MIRROR_LABEL, "true")]);
    assert!(!mirrors(&skipped));
    assert!(mirrored_slices(&database(), &skipped).is_empty());
    assert!(mirrors(&users_endpoints(&[(SKIP_MIRROR_LABEL, "false")])));
}
