use super::*;

use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{
    Endpoint as SliceEndpoint, EndpointConditions, EndpointPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn service(namespace: &str, name: &str, cluster_ip: &str, ports: &[(&str, &str, i32)]) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(cluster_ip.into()),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, protocol, port)| ServicePort {
                        name: Some((*name).into()),
                        protocol: Some((*protocol).into()),
                        port: *port,
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A slice of `(ip, hostname, ready)` endpoints, with port `http` → 8080.
fn slice(endpoints: &[(&str, Option<&str>, bool)]) -> EndpointSlice {
    EndpointSlice {
        address_type: "IPv4".into(),
        endpoints: endpoints
            .iter()
            .map(|(ip, hostname, ready)| SliceEndpoint {
                addresses: vec![(*ip).into()],
                hostname: hostname.map(Into::into),
                conditions: Some(EndpointConditions {
                    ready: Some(*ready),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

fn names() -> ClusterNames {
    let web = service(
        "shop",
        "web",
        "10.96.0.20",
        &[("http", "TCP", 80), ("dns", "UDP", 53)],
    );
    let db = service("shop", "db", "None", &[("http", "TCP", 80)]);
    let db_slices = slice(&[
        ("10.244.1.5", Some("db-0"), true),
        ("10.244.2.6", Some("db-1"), true),
        ("10.244.1.9", Some("db-2"), false),
    ]);
    let mut external = service("shop", "mail", "", &[]);
    let spec = external.spec.as_mut().unwrap();
    spec.type_ = Some("ExternalName".into());
    spec.cluster_ip = None;
    spec.external_name = Some("mail.example.com".into());
    let pending = Service {
        metadata: ObjectMeta {
            namespace: Some("shop".into()),
            name: Some("pending".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec::default()),
        ..Default::default()
    };
    let domain = Name::from_ascii("Cluster.Local").unwrap();
    let services = [web, db, external, pending];
    let slices = [db_slices];
    let inputs: Vec<(&Service, Vec<&EndpointSlice>)> = services
        .iter()
        .map(|s| {
            let own = if s.metadata.name.as_deref() == Some("db") {
                slices.iter().collect()
            } else {
                Vec::new()
            };
            (s, own)
        })
        .collect();
    ClusterNames::new(&domain, inputs, 42)
}

fn ask(names: &ClusterNames, name: &str, kind: RecordType) -> Answer {
    let name = Name::from_ascii(name).unwrap();
    names.answer(&LowerName::from(&name), kind)
}

/// The answer's records as text: `name type data`.
fn records(answer: Answer) -> (Vec<String>, Vec<String>) {
    let Answer::Records {
        answers,
        additionals,
    } = answer
    else {
        panic!("records expected, got {answer:?}");
    };
    let show = |records: Vec<Record>| {
        records
            .iter()
            .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
            .collect()
    };
    (show(answers), show(additionals))
}

#[test]
fn a_service_name_is_its_cluster_ip_in_any_case() {
    let names = names();
    for asked in ["web.shop.svc.cluster.local.", "WEB.Shop.svc.cluster.local."] {
        let (answers, _) = records(ask(&names, asked, RecordType::A));
        assert_eq!(
            answers,
            ["web.shop.svc.cluster.local. A 10.96.0.20"],
            "{asked}"
        );
    }
}

#[test]
fn a_headless_service_is_its_ready_endpoints_and_each_named_endpoint() {
    let names = names();
    let (answers, _) = records(ask(&names, "db.shop.svc.cluster.local.", RecordType::A));
    assert_eq!(
        answers,
        [
            "db.shop.svc.cluster.local. A 10.244.1.5",
            "db.shop.svc.cluster.local. A 10.244.2.6"
        ]
    );
    let (answers, _) = records(ask(
        &names,
        "db-1.db.shop.svc.cluster.local.",
        RecordType::A,
    ));
    assert_eq!(answers, ["db-1.db.shop.svc.cluster.local. A 10.244.2.6"]);
    // Not ready: not published.
    assert_eq!(
        ask(&names, "db-2.db.shop.svc.cluster.local.", RecordType::A),
        Answer::NxDomain
    );
    // An endpoint without a hostname is named by its address.
    let names = ClusterNames::new(
        &Name::from_ascii("cluster.local.").unwrap(),
        [(
            &service("shop", "db", "None", &[("http", "TCP", 80)]),
            vec![&slice(&[("10.244.1.5", None, true)])],
        )],
        1,
    );
    let (answers, _) = records(ask(
        &names,
        "_http._tcp.db.shop.svc.cluster.local.",
        RecordType::SRV,
    ));
    assert_eq!(
        answers,
        ["_http._tcp.db.shop.svc.cluster.local. SRV 0 100 8080 10-244-1-5.db.shop.svc.cluster.local."]
    );
    let (answers, _) = records(ask(
        &names,
        "10-244-1-5.db.shop.svc.cluster.local.",
        RecordType::A,
    ));
    assert_eq!(
        answers,
        ["10-244-1-5.db.shop.svc.cluster.local. A 10.244.1.5"]
    );
    // With no ready endpoint the name exists, with no address.
    let empty = ClusterNames::new(
        &Name::from_ascii("cluster.local.").unwrap(),
        [(
            &service("shop", "db", "None", &[("http", "TCP", 80)]),
            Vec::new(),
        )],
        1,
    );
    assert_eq!(
        ask(&empty, "db.shop.svc.cluster.local.", RecordType::A),
        Answer::NoData
    );
    assert_eq!(
        ask(
            &empty,
            "_http._tcp.db.shop.svc.cluster.local.",
            RecordType::SRV
        ),
        Answer::NoData
    );
    assert_eq!(
        ask(&names, "db-2.db.shop.svc.cluster.local.", RecordType::A),
        Answer::NxDomain
    );
}

#[test]
fn named_ports_are_srv_records_with_their_targets_addresses() {
    let names = names();
    let (answers, additionals) = records(ask(
        &names,
        "_dns._udp.web.shop.svc.cluster.local.",
        RecordType::SRV,
    ));
    assert_eq!(
        answers,
        ["_dns._udp.web.shop.svc.cluster.local. SRV 0 100 53 web.shop.svc.cluster.local."]
    );
    assert_eq!(additionals, ["web.shop.svc.cluster.local. A 10.96.0.20"]);
    // A headless Service's port names each ready endpoint, at the endpoint's port.
    let (answers, additionals) = records(ask(
        &names,
        "_http._tcp.db.shop.svc.cluster.local.",
        RecordType::SRV,
    ));
    assert_eq!(
        answers,
        [
            "_http._tcp.db.shop.svc.cluster.local. SRV 0 100 8080 db-0.db.shop.svc.cluster.local.",
            "_http._tcp.db.shop.svc.cluster.local. SRV 0 100 8080 db-1.db.shop.svc.cluster.local."
        ]
    );
    assert_eq!(additionals.len(), 2);
    // The wrong protocol, or an unknown port, is no name at all.
    for asked in [
        "_http._udp.web.shop.svc.cluster.local.",
        "_ftp._tcp.web.shop.svc.cluster.local.",
    ] {
        assert_eq!(
            ask(&names, asked, RecordType::SRV),
            Answer::NxDomain,
            "{asked}"
        );
    }
}

#[test]
fn an_external_name_is_a_cname_whatever_is_asked() {
    let (answers, _) = records(ask(
        &names(),
        "mail.shop.svc.cluster.local.",
        RecordType::AAAA,
    ));
    assert_eq!(
        answers,
        ["mail.shop.svc.cluster.local. CNAME mail.example.com."]
    );
}

#[test]
fn an_external_name_into_the_cluster_comes_with_its_targets_records_and_loops_end() {
    let web = service("shop", "web", "10.96.0.20", &[]);
    let external = |name: &str, target: &str| {
        let mut alias = service("shop", name, "", &[]);
        let spec = alias.spec.as_mut().unwrap();
        spec.type_ = Some("ExternalName".into());
        spec.cluster_ip = None;
        spec.external_name = Some(target.into());
        alias
    };
    let alias = external("alias", "web.shop.svc.cluster.local");
    let (ping, pong) = (
        external("ping", "pong.shop.svc.cluster.local"),
        external("pong", "ping.shop.svc.cluster.local"),
    );
    let domain = Name::from_ascii("cluster.local.").unwrap();
    let names = ClusterNames::new(
        &domain,
        [&web, &alias, &ping, &pong].map(|s| (s, Vec::new())),
        1,
    );
    let (answers, _) = records(ask(&names, "alias.shop.svc.cluster.local.", RecordType::A));
    assert_eq!(
        answers,
        [
            "alias.shop.svc.cluster.local. CNAME web.shop.svc.cluster.local.",
            "web.shop.svc.cluster.local. A 10.96.0.20"
        ]
    );
    // A loop of aliases ends: a chain of CNAMEs, no more.
    let (answers, _) = records(ask(&names, "ping.shop.svc.cluster.local.", RecordType::A));
    assert_eq!(answers.len(), 1 + MAX_CNAME_CHAIN);
}

#[test]
fn a_pod_name_is_the_address_it_spells() {
    let names = names();
    let (answers, _) = records(ask(
        &names,
        "10-244-1-5.shop.pod.cluster.local.",
        RecordType::A,
    ));
    assert_eq!(answers, ["10-244-1-5.shop.pod.cluster.local. A 10.244.1.5"]);
    for bad in [
        "10-244-1.shop.pod.cluster.local.",
        "10-244-1-500.shop.pod.cluster.local.",
    ] {
        assert_eq!(ask(&names, bad, RecordType::A), Answer::NxDomain, "{bad}");
    }
}

#[test]
fn unknown_names_are_nxdomain_and_names_without_the_type_are_nodata() {
    let names = names();
    for unknown in [
        "nothing.shop.svc.cluster.local.",
        "web.elsewhere.svc.cluster.local.",
        "elsewhere.svc.cluster.local.",
        "pending.shop.svc.cluster.local.",
        "a.b.c.d.e.f.cluster.local.",
        "www.cluster.local.",
    ] {
        assert_eq!(
            ask(&names, unknown, RecordType::A),
            Answer::NxDomain,
            "{unknown}"
        );
    }
    for nodata in [
        ("web.shop.svc.cluster.local.", RecordType::AAAA),
        ("shop.svc.cluster.local.", RecordType::A),
        ("svc.cluster.local.", RecordType::A),
        ("cluster.local.", RecordType::A),
    ] {
        assert_eq!(
            ask(&names, nodata.0, nodata.1),
            Answer::NoData,
            "{nodata:?}"
        );
    }
    let (answers, _) = records(ask(&names, "cluster.local.", RecordType::SOA));
    assert_eq!(
        answers,
        ["cluster.local. SOA ns.dns.cluster.local. hostmaster.cluster.local. 42 7200 1800 86400 5"]
    );
}

#[test]
fn names_outside_the_cluster_domain_are_refused() {
    let names = names();
    for outside in [
        "example.com.",
        "local.",
        "9.9.9.9.in-addr.arpa.",
        "96.10.in-addr.arpa.",
    ] {
        assert_eq!(
            ask(&names, outside, RecordType::A),
            Answer::Refused,
            "{outside}"
        );
    }
}

#[test]
fn a_cluster_address_names_its_service_or_headless_endpoint_in_reverse() {
    let names = names();
    let (answers, _) = records(ask(&names, "20.0.96.10.in-addr.arpa.", RecordType::PTR));
    assert_eq!(
        answers,
        ["20.0.96.10.in-addr.arpa. PTR web.shop.svc.cluster.local."]
    );
    let (answers, _) = records(ask(&names, "5.1.244.10.IN-ADDR.ARPA.", RecordType::PTR));
    assert_eq!(
        answers,
        ["5.1.244.10.in-addr.arpa. PTR db-0.db.shop.svc.cluster.local."]
    );
    // The address exists, with no A record under its reverse name.
    assert_eq!(
        ask(&names, "20.0.96.10.in-addr.arpa.", RecordType::A),
        Answer::NoData
    );
    // A not-ready endpoint has no name.
    assert_eq!(
        ask(&names, "9.1.244.10.in-addr.arpa.", RecordType::PTR),
        Answer::Refused
    );
}
