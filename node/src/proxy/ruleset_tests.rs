use super::super::model::Protocol;
use super::*;

pub(crate) fn config() -> ProxyConfig {
    ProxyConfig {
        table: "rudder-test".into(),
        bridge: "rbtest".into(),
        bridge_prefix: "rb".into(),
        cluster_cidr: Ipv4Cidr::parse("10.244.0.0/16").unwrap(),
        service_ranges: vec![
            Ipv4Cidr::parse("10.96.0.0/12").unwrap(),
            Ipv4Cidr::parse("10.112.0.0/24").unwrap(),
        ],
        node_ips: vec![Ipv4Addr::new(10, 244, 1, 1), Ipv4Addr::LOCALHOST],
        local_targets: Vec::new(),
    }
}

pub(crate) fn kubia(endpoints: &[(Ipv4Addr, bool)]) -> ServicePort {
    ServicePort {
        id: "default/kubia-http/tcp/http".into(),
        protocol: Protocol::Tcp,
        cluster_ip: Some(Ipv4Addr::new(10, 96, 1, 1)),
        port: 80,
        node_port: Some(30080),
        external_ips: vec![Ipv4Addr::new(10, 112, 0, 1)],
        affinity_seconds: None,
        external_local: false,
        internal_local: false,
        endpoints: endpoints
            .iter()
            .map(|(ip, local)| Backend {
                ip: *ip,
                port: 8080,
                local: *local,
            })
            .collect(),
    }
}

/// Another Service like kubia: `default/<name>` on `cluster_ip`.
pub(crate) fn another(
    name: &str,
    cluster_ip: Ipv4Addr,
    endpoints: &[(Ipv4Addr, bool)],
) -> ServicePort {
    ServicePort {
        id: format!("default/{name}/tcp/http"),
        cluster_ip: Some(cluster_ip),
        ..kubia(endpoints)
    }
}

/// Another Service whose external IP is kubia's cluster IP, on kubia's port.
pub(crate) fn claiming_kubias_address(
    name: &str,
    cluster_ip: Ipv4Addr,
    endpoints: &[(Ipv4Addr, bool)],
) -> ServicePort {
    ServicePort {
        node_port: None,
        external_ips: vec![Ipv4Addr::new(10, 96, 1, 1)],
        ..another(name, cluster_ip, endpoints)
    }
}

pub(crate) const POD_A: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
pub(crate) const POD_B: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 2);
const SERVICE: &str = "service-default/kubia-http/tcp/http";
const EXTERNAL: &str = "external-default/kubia-http/tcp/http";
const CLUSTER: &str = "cluster-default/kubia-http/tcp/http";

fn chain<'a>(rules: &'a Ruleset, name: &str) -> Vec<&'a str> {
    rules
        .services()
        .values()
        .find_map(|service| service.chains.get(name))
        .unwrap_or_else(|| panic!("no chain {name} in {rules:#?}"))
        .iter()
        .map(String::as_str)
        .collect()
}

fn chain_count(rules: &Ruleset) -> usize {
    rules.services().values().map(|s| s.chains.len()).sum()
}

fn elements<'a>(rules: &'a Ruleset, set: &str) -> Vec<&'a str> {
    rules
        .elements()
        .filter(|(of, _)| *of == set)
        .map(|(_, element)| element.as_str())
        .collect()
}

#[test]
fn a_service_is_one_chain_picking_each_endpoint_with_equal_chance_and_its_map_entries() {
    let pod_c = Ipv4Addr::new(10, 244, 3, 2);
    let rules = plan(
        &config(),
        &[kubia(&[(POD_A, true), (POD_B, false), (pod_c, true)])],
    );
    assert_eq!(
        chain(&rules, SERVICE),
        [
            "meta l4proto tcp numgen random mod 3 0 dnat to 10.244.1.2:8080",
            "meta l4proto tcp numgen random mod 2 0 dnat to 10.244.2.2:8080",
            "meta l4proto tcp dnat to 10.244.3.2:8080",
        ]
    );
    // External traffic is masqueraded and then goes the cluster IP's way: no third chain.
    assert_eq!(
        chain(&rules, EXTERNAL),
        ["jump mark-for-masquerade", &format!("goto {SERVICE}")]
    );
    assert_eq!(chain_count(&rules), 2, "{rules:#?}");
    assert_eq!(
        elements(&rules, SERVICE_IPS),
        [
            format!("10.112.0.1 . tcp . 80 : goto {EXTERNAL}"),
            format!("10.96.1.1 . tcp . 80 : goto {SERVICE}"),
        ]
    );
    assert_eq!(
        elements(&rules, SERVICE_NODEPORTS),
        [format!("tcp . 30080 : goto {EXTERNAL}")]
    );
    assert_eq!(elements(&rules, CLUSTER_IPS), ["10.96.1.1"]);
    assert_eq!(elements(&rules, NODEPORT_IPS), ["10.244.1.1", "127.0.0.1"]);
    assert_eq!(
        elements(&rules, HAIRPIN),
        [
            "10.244.1.2 . 10.244.1.2",
            "10.244.2.2 . 10.244.2.2",
            "10.244.3.2 . 10.244.3.2"
        ]
    );
}

#[test]
fn a_service_without_endpoints_keeps_only_its_address_to_refuse() {
    let rules = plan(&config(), &[kubia(&[])]);
    assert_eq!(chain_count(&rules), 0, "{rules:#?}");
    assert_eq!(elements(&rules, CLUSTER_IPS), ["10.96.1.1"]);
    assert!(elements(&rules, SERVICE_IPS).is_empty());
    assert!(elements(&rules, SERVICE_NODEPORTS).is_empty());
}

#[test]
fn local_policies_keep_traffic_on_the_node() {
    let mut port = kubia(&[(POD_A, true), (POD_B, false)]);
    port.external_local = true;
    port.internal_local = true;
    let rules = plan(&config(), &[port]);
    assert_eq!(
        chain(&rules, SERVICE),
        ["meta l4proto tcp dnat to 10.244.1.2:8080"]
    );
    // The machine's own connections may go to any endpoint; the rest only to this node's.
    assert_eq!(
        chain(&rules, EXTERNAL),
        [
            "fib saddr type local jump mark-for-masquerade",
            &format!("fib saddr type local goto {CLUSTER}"),
            "meta l4proto tcp dnat to 10.244.1.2:8080",
            "drop",
        ]
    );
    assert_eq!(
        chain(&rules, CLUSTER),
        [
            "meta l4proto tcp numgen random mod 2 0 dnat to 10.244.1.2:8080",
            "meta l4proto tcp dnat to 10.244.2.2:8080",
        ]
    );
}

#[test]
fn a_service_with_no_endpoint_on_this_node_under_internal_local_is_refused() {
    let mut port = kubia(&[(POD_B, false)]);
    port.internal_local = true;
    port.node_port = None;
    port.external_ips.clear();
    let rules = plan(&config(), &[port]);
    assert_eq!(chain_count(&rules), 0, "{rules:#?}");
    assert_eq!(elements(&rules, CLUSTER_IPS), ["10.96.1.1"]);
    assert!(elements(&rules, SERVICE_IPS).is_empty());
}

fn kubia_sets(rules: &Ruleset) -> &std::collections::BTreeMap<String, String> {
    &rules.services()["default/kubia-http"].sets
}

#[test]
fn client_affinity_sends_a_known_client_back_and_remembers_new_ones() {
    let mut port = kubia(&[(POD_A, true), (POD_B, false)]);
    port.affinity_seconds = Some(60);
    let rules = plan(&config(), &[port]);
    let set_a = "affinity-default/kubia-http/tcp/http__10.244.1.2/8080";
    let set_b = "affinity-default/kubia-http/tcp/http__10.244.2.2/8080";
    assert_eq!(
        kubia_sets(&rules)
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        [set_a, set_b]
    );
    assert_eq!(
        kubia_sets(&rules)[set_a],
        "type ipv4_addr; flags dynamic,timeout; timeout 60s;"
    );
    assert_eq!(
        chain(&rules, SERVICE),
        [
            format!("ip saddr @{set_a} meta l4proto tcp update @{set_a} {{ ip saddr }} dnat to 10.244.1.2:8080"),
            format!("ip saddr @{set_b} meta l4proto tcp update @{set_b} {{ ip saddr }} dnat to 10.244.2.2:8080"),
            format!("meta l4proto tcp numgen random mod 2 0 update @{set_a} {{ ip saddr }} dnat to 10.244.1.2:8080"),
            format!("meta l4proto tcp update @{set_b} {{ ip saddr }} dnat to 10.244.2.2:8080"),
        ]
    );
}

#[test]
fn the_base_hooks_the_bridge_and_guards_the_ranges() {
    let base = base(&config());
    for expected in [
        "iifname \"rbtest\" jump services",
        "iifname != \"rb*\" jump services",
        "ip daddr @cluster-ips ip saddr != 10.244.0.0/16 jump mark-for-masquerade",
        "ip daddr 10.112.0.0/24 reject",
        "ct status dnat ip saddr . ip daddr @hairpin masquerade fully-random",
    ] {
        assert!(base.contains(expected), "{expected}\n--- in ---\n{base}");
    }
}

#[test]
fn an_element_two_services_share_stays_until_neither_wants_it() {
    let other = another("other", Ipv4Addr::new(10, 96, 2, 2), &[(POD_A, true)]);
    let mut rules = plan(&config(), &[kubia(&[(POD_A, true)]), other]);
    let pair = (HAIRPIN, "10.244.1.2 . 10.244.1.2".to_string());
    assert_eq!(rules.users_of(&pair), 2);
    rules.apply(Edits::from([("default/kubia-http".to_string(), None)]));
    assert_eq!(rules.users_of(&pair), 1);
    assert_eq!(elements(&rules, CLUSTER_IPS), ["10.96.2.2"]);
    rules.apply(Edits::from([("default/other".to_string(), None)]));
    assert_eq!(rules.users_of(&pair), 0);
    assert!(rules.services().is_empty());
    let left: Vec<_> = rules.elements().collect();
    assert_eq!(left, Ruleset::new(&config()).elements().collect::<Vec<_>>());
}

#[test]
fn ports_are_grouped_by_their_service() {
    assert_eq!(
        service_key("default/kubia-http/tcp/http"),
        "default/kubia-http"
    );
    let mut udp = kubia(&[(POD_A, true)]);
    udp.id = "default/kubia-http/udp/dns".into();
    let rules = plan(&config(), &[kubia(&[(POD_A, true)]), udp]);
    assert_eq!(
        rules.services().keys().collect::<Vec<_>>(),
        ["default/kubia-http"]
    );
}
