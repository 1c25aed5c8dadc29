use super::*;
use serde_json::json;

fn service(spec: serde_json::Value) -> Service {
    serde_json::from_value(json!({ "metadata": { "name": "web" }, "spec": spec })).unwrap()
}

fn ranges() -> ServiceRanges {
    ServiceRanges::default()
}

/// A "random" source that always answers the same fraction of `n`.
fn fixed(at: u64) -> impl FnMut(u64) -> u64 {
    move |n| at.min(n - 1)
}

fn assigned(mut svc: Service, taken: &BTreeSet<Reservation>) -> Result<Service, Vec<String>> {
    assign(&mut svc, &BTreeSet::new(), taken, &ranges(), &mut fixed(0))
        .map(|()| svc)
        .map_err(|errs| errs.iter().map(ToString::to_string).collect())
}

fn ip(text: &str) -> Reservation {
    Reservation {
        pool: Pool::ClusterIp,
        value: u32::from(text.parse::<Ipv4Addr>().unwrap()),
    }
}

fn port(value: u32) -> Reservation {
    Reservation {
        pool: Pool::NodePort,
        value,
    }
}

#[test]
fn a_cluster_ip_service_gets_an_address_from_the_dynamic_band() {
    let svc = assigned(
        service(json!({ "ports": [{ "port": 80 }] })),
        &BTreeSet::new(),
    )
    .unwrap();
    let spec = svc.spec.unwrap();
    // 10.96.0.0/12: the lowest 256 addresses are left for Services that ask for one.
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.1.0"));
    assert_eq!(spec.cluster_ips, Some(vec!["10.96.1.0".to_string()]));
    assert_eq!(spec.ip_families, Some(vec!["IPv4".to_string()]));
    assert_eq!(spec.ports.unwrap()[0].node_port, None);
}

#[test]
fn a_taken_address_is_skipped_and_a_full_range_says_so() {
    let taken = BTreeSet::from([ip("10.96.1.0")]);
    let svc = assigned(service(json!({ "ports": [{ "port": 80 }] })), &taken).unwrap();
    assert_eq!(svc.spec.unwrap().cluster_ip.as_deref(), Some("10.96.1.1"));

    let tiny = ServiceRanges::parse("10.0.0.0/28", "30000-30001", "10.1.0.0/30").unwrap();
    // A /28 has 14 host addresses.
    let taken: BTreeSet<_> = (1..=14).map(|i| ip(&format!("10.0.0.{i}"))).collect();
    let mut svc = service(json!({ "ports": [{ "port": 80 }] }));
    let errs = assign(&mut svc, &BTreeSet::new(), &taken, &tiny, &mut fixed(3)).unwrap_err();
    assert_eq!(
        errs[0].to_string(),
        "spec.clusterIP: Invalid value: \"\": failed to allocate a service IP: the range \
         10.0.0.0/28 is full; widen --service-cidr or delete Services"
    );
}

#[test]
fn an_asked_for_address_must_be_in_range_and_free() {
    let taken = BTreeSet::from([ip("10.96.0.50")]);
    let errs = assigned(
        service(json!({ "clusterIP": "10.96.0.50", "ports": [{ "port": 80 }] })),
        &taken,
    )
    .unwrap_err();
    assert_eq!(
        errs,
        [
            "spec.clusterIP: Invalid value: \"10.96.0.50\": failed to allocate IP 10.96.0.50: \
          provided IP is already allocated"
        ]
    );
    let errs = assigned(
        service(json!({ "clusterIP": "192.168.0.1", "ports": [{ "port": 80 }] })),
        &BTreeSet::new(),
    )
    .unwrap_err();
    assert!(
        errs[0].contains("is not in the valid range. The range of valid IPs is 10.96.0.0/12"),
        "{errs:?}"
    );
    let own = BTreeSet::from([ip("10.96.0.50")]);
    let mut svc = service(json!({ "clusterIP": "10.96.0.50", "ports": [{ "port": 80 }] }));
    assign(&mut svc, &own, &own, &ranges(), &mut fixed(0)).expect("its own address");
}

#[test]
fn headless_and_external_name_services_get_no_address() {
    for spec in [
        json!({ "clusterIP": "None", "ports": [] }),
        json!({ "type": "ExternalName", "externalName": "db.example.com" }),
    ] {
        let svc = assigned(service(spec), &BTreeSet::new()).unwrap();
        assert_eq!(held(&svc, &ranges()), BTreeSet::new());
    }
}

#[test]
fn node_ports_are_distinct_per_port_and_asked_ones_are_checked() {
    let taken = BTreeSet::from([port(30086)]);
    let svc = assigned(
        service(json!({ "type": "NodePort", "ports": [
            { "name": "a", "port": 80 }, { "name": "b", "port": 81 }, { "name": "c", "port": 82, "nodePort": 30007 }
        ]})),
        &taken,
    )
    .unwrap();
    let node_ports: Vec<_> = svc
        .spec
        .as_ref()
        .unwrap()
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| p.node_port.unwrap())
        .collect();
    // The dynamic band starts 2768/32 = 86 ports in; 30086 is taken.
    assert_eq!(node_ports, [30087, 30088, 30007]);
    assert_eq!(
        held(&svc, &ranges())
            .into_iter()
            .filter(|r| r.pool == Pool::NodePort)
            .count(),
        3
    );

    let errs = assigned(
        service(json!({ "type": "NodePort", "ports": [{ "port": 80, "nodePort": 30086 }] })),
        &taken,
    )
    .unwrap_err();
    assert_eq!(
        errs,
        ["spec.ports[0].nodePort: Invalid value: \"30086\": provided port is already allocated"]
    );
    let errs = assigned(
        service(json!({ "type": "NodePort", "ports": [{ "port": 80, "nodePort": 8080 }] })),
        &taken,
    )
    .unwrap_err();
    assert_eq!(
        errs,
        ["spec.ports[0].nodePort: Invalid value: \"8080\": provided port is not in the valid range. \
          The range of valid ports is 30000-32767"]
    );
}

#[test]
fn one_node_port_may_serve_tcp_and_udp_of_one_service() {
    let svc = assigned(
        service(json!({ "type": "NodePort", "ports": [
            { "name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053 },
            { "name": "dns-tcp", "port": 53, "protocol": "TCP", "nodePort": 30053 }
        ]})),
        &BTreeSet::new(),
    );
    assert!(svc.is_ok(), "{svc:?}");
}

#[test]
fn a_load_balancer_gets_node_ports_and_an_address_from_the_pool() {
    let svc = assigned(
        service(
            json!({ "type": "LoadBalancer", "externalTrafficPolicy": "Local",
                        "ports": [{ "port": 8080 }] }),
        ),
        &BTreeSet::new(),
    )
    .unwrap();
    let ingress = &svc
        .status
        .as_ref()
        .unwrap()
        .load_balancer
        .as_ref()
        .unwrap()
        .ingress;
    assert_eq!(
        ingress.as_ref().unwrap()[0].ip.as_deref(),
        Some("10.112.0.1")
    );
    let spec = svc.spec.as_ref().unwrap();
    assert!(spec.health_check_node_port.is_some());
    let pools: Vec<_> = held(&svc, &ranges()).into_iter().map(|r| r.pool).collect();
    assert_eq!(
        pools,
        [
            Pool::ClusterIp,
            Pool::NodePort,
            Pool::NodePort,
            Pool::LoadBalancerIp
        ]
    );

    let asked = assigned(
        service(
            json!({ "type": "LoadBalancer", "loadBalancerIP": "10.112.0.9",
                        "ports": [{ "port": 8080 }] }),
        ),
        &BTreeSet::new(),
    )
    .unwrap();
    assert_eq!(ingress_ips(&asked), [Ipv4Addr::new(10, 112, 0, 9)]);

    let elsewhere = assigned(
        service(
            json!({ "type": "LoadBalancer", "loadBalancerClass": "example.com/lb",
                        "allocateLoadBalancerNodePorts": false, "ports": [{ "port": 8080 }] }),
        ),
        &BTreeSet::new(),
    )
    .unwrap();
    assert!(ingress_ips(&elsewhere).is_empty());
    assert_eq!(node_ports_of(&elsewhere), Vec::<i32>::new());
}

#[test]
fn an_update_keeps_what_was_allocated_unless_the_type_drops_it() {
    let current = assigned(
        service(json!({ "type": "NodePort", "ports": [{ "port": 80 }] })),
        &BTreeSet::new(),
    )
    .unwrap();
    // A manifest replaced without the allocated values keeps them.
    let mut next = service(json!({ "type": "NodePort", "ports": [{ "port": 80 }] }));
    carry_forward(&mut next, &current);
    assert_eq!(held(&next, &ranges()), held(&current, &ranges()));

    // Back to ClusterIP: the node port goes, the address stays.
    let mut next = current.clone();
    next.spec.as_mut().unwrap().type_ = Some("ClusterIP".into());
    carry_forward(&mut next, &current);
    let pools: Vec<_> = held(&next, &ranges()).into_iter().map(|r| r.pool).collect();
    assert_eq!(pools, [Pool::ClusterIp]);
    assert_eq!(node_ports_of(&next), Vec::<i32>::new());

    // To ExternalName: the address goes too.
    let mut next = current.clone();
    let spec = next.spec.as_mut().unwrap();
    spec.type_ = Some("ExternalName".into());
    spec.external_name = Some("db.example.com".into());
    carry_forward(&mut next, &current);
    assert_eq!(held(&next, &ranges()), BTreeSet::new());
}

#[test]
fn reservations_round_trip_through_their_keys() {
    for reservation in [
        ip("10.96.0.1"),
        port(30080),
        Reservation {
            pool: Pool::LoadBalancerIp,
            value: u32::from(Ipv4Addr::new(10, 112, 0, 7)),
        },
    ] {
        assert_eq!(Reservation::from_key(&reservation.key()), Some(reservation));
    }
    assert_eq!(
        String::from_utf8(port(30080).key()).unwrap(),
        "/registry/serviceallocations/nodeports/30080"
    );
    assert_eq!(
        Reservation::from_key(b"/registry/services/default/web"),
        None
    );
}

#[test]
fn the_ranges_are_checked() {
    let r = ranges();
    assert_eq!(r.kubernetes_ip(), Ipv4Addr::new(10, 96, 0, 1));
    assert_eq!(r.dns_ip(), Ipv4Addr::new(10, 96, 0, 10));
    for (cidr, ports, pool, error) in [
        ("10.96.0.0", "30000-32767", "10.112.0.0/24", "--service-cidr: \"10.96.0.0\" is not an IPv4 CIDR like 10.244.0.0/16: no /prefix"),
        ("10.96.0.0/30", "30000-32767", "10.112.0.0/24", "--service-cidr: 10.96.0.0/30 is too small; the cluster needs at least a /28 (the API's Service takes the first address, DNS the tenth)"),
        ("10.96.0.0/12", "32767-30000", "10.112.0.0/24", "--service-node-port-range: \"32767-30000\" ends before it starts"),
        ("10.96.0.0/12", "30000", "10.112.0.0/24", "--service-node-port-range: \"30000\" is not a range like 30000-32767"),
        ("10.96.0.0/12", "30000-32767", "10.100.0.0/24", "--lb-pool 10.100.0.0/24 overlaps --service-cidr 10.96.0.0/12; give load balancers a range of their own"),
    ] {
        assert_eq!(ServiceRanges::parse(cidr, ports, pool).unwrap_err(), error);
    }
}

#[test]
fn node_ports_asked_for_are_held_even_when_a_load_balancer_allocates_none() {
    let spec = json!({ "type": "LoadBalancer", "allocateLoadBalancerNodePorts": false,
                       "ports": [{ "name": "a", "port": 80, "nodePort": 30080 }, { "name": "b", "port": 81 }] });
    let svc = assigned(service(spec.clone()), &BTreeSet::new()).unwrap();
    assert_eq!(node_ports_of(&svc), [30080], "the unset port stays unset");
    assert!(held(&svc, &ranges()).contains(&port(30080)));
    let errs = assigned(service(spec), &BTreeSet::from([port(30080)])).unwrap_err();
    assert!(
        errs[0].contains("provided port is already allocated"),
        "{errs:?}"
    );
}

#[test]
fn a_service_may_not_use_one_node_port_twice_for_one_protocol_or_for_its_health_check() {
    let errs = assigned(
        service(json!({ "type": "NodePort", "ports": [
            { "name": "a", "port": 80, "nodePort": 31000 }, { "name": "b", "port": 81, "nodePort": 31000 }
        ]})),
        &BTreeSet::new(),
    )
    .unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("spec.ports[1].nodePort"), "{errs:?}");
    let errs = assigned(
        service(
            json!({ "type": "LoadBalancer", "externalTrafficPolicy": "Local",
                        "healthCheckNodePort": 31000,
                        "ports": [{ "port": 80, "nodePort": 31000 }] }),
        ),
        &BTreeSet::new(),
    )
    .unwrap_err();
    assert!(errs[0].starts_with("spec.healthCheckNodePort"), "{errs:?}");
    // An asked-for port is never taken by a pick for an earlier port.
    let mut svc = service(json!({ "type": "NodePort", "ports": [
        { "name": "a", "port": 80 }, { "name": "b", "port": 81, "nodePort": 30086 }
    ]}));
    assign(
        &mut svc,
        &BTreeSet::new(),
        &BTreeSet::new(),
        &ranges(),
        &mut fixed(0),
    )
    .unwrap();
    assert_eq!(node_ports_of(&svc), [30087, 30086]);
}

#[test]
fn only_ipv4_host_addresses_of_the_range_may_be_asked_for() {
    for (spec, path) in [
        (
            json!({ "clusterIP": "fd00::1", "ports": [{ "port": 80 }] }),
            "spec.clusterIP",
        ),
        (
            json!({ "clusterIP": "10.96.0.0", "ports": [{ "port": 80 }] }),
            "spec.clusterIP",
        ),
        (
            json!({ "clusterIP": "10.111.255.255", "ports": [{ "port": 80 }] }),
            "spec.clusterIP",
        ),
        (
            json!({ "type": "LoadBalancer", "loadBalancerIP": "::ffff:10.112.0.5",
                 "ports": [{ "port": 80 }] }),
            "spec.loadBalancerIP",
        ),
        (
            json!({ "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5", "10.96.0.6"],
                 "ports": [{ "port": 80 }] }),
            "spec.clusterIPs",
        ),
    ] {
        let errs = assigned(service(spec.clone()), &BTreeSet::new()).unwrap_err();
        assert!(errs[0].starts_with(path), "{spec}: {errs:?}");
    }
}

#[test]
fn values_the_service_had_are_kept_after_the_ranges_change() {
    let before = assigned(
        service(json!({ "type": "NodePort", "clusterIP": "10.96.0.50",
                        "ports": [{ "port": 80, "nodePort": 30080 }] })),
        &BTreeSet::new(),
    )
    .unwrap();
    let own = claimed(&before);
    let narrower = ServiceRanges::parse("10.100.0.0/16", "31000-31999", "10.112.0.0/24").unwrap();
    let mut next = before.clone();
    next.metadata.labels = Some([("changed".to_string(), "yes".to_string())].into());
    assign(&mut next, &own, &own, &narrower, &mut fixed(0)).expect("an unrelated update");
    assert_eq!(
        held(&next, &narrower),
        BTreeSet::new(),
        "outside the ranges: no key"
    );
}

#[test]
fn a_status_rewritten_without_its_address_keeps_the_load_balancers_address() {
    let svc = assigned(
        service(json!({ "type": "LoadBalancer", "ports": [{ "port": 80 }] })),
        &BTreeSet::new(),
    )
    .unwrap();
    let own = claimed(&svc);
    let mut next = svc.clone();
    next.status = None;
    // "Random" picks would land elsewhere.
    assign(&mut next, &own, &own, &ranges(), &mut fixed(100)).unwrap();
    assert_eq!(ingress_ips(&next), ingress_ips(&svc));
}
