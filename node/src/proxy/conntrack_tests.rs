use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

use super::super::model::{Backend, Protocol, ServicePort};
use super::super::nft;
use super::super::ruleset::plan;
use super::super::ruleset::tests::config;
use super::super::script;
use super::super::testing::{in_new_network, node_with_two_pods};
use super::*;

const POD_A: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const POD_B: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 2);
const SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 5, 5);
const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(10, 112, 0, 5);

fn dns(protocol: Protocol, endpoints: &[Ipv4Addr]) -> ServicePort {
    ServicePort {
        id: format!("default/dns/{}/dns", protocol.nft()),
        protocol,
        cluster_ip: Some(SERVICE_IP),
        port: 53,
        node_port: Some(30053),
        external_ips: vec![EXTERNAL_IP],
        affinity_seconds: None,
        external_local: false,
        internal_local: false,
        endpoints: endpoints
            .iter()
            .map(|ip| Backend {
                ip: *ip,
                port: 5353,
                local: true,
            })
            .collect(),
    }
}

const NODE_IPS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 244, 1, 1), Ipv4Addr::LOCALHOST];

fn gone(address: Ipv4Addr, port: u16, endpoint: Ipv4Addr) -> StaleFlow {
    StaleFlow::ToGoneEndpoint {
        address,
        port,
        endpoint,
        endpoint_port: 5353,
    }
}

#[test]
fn a_gone_endpoints_flows_go_on_every_address_the_port_answers_on() {
    let stale = stale_flows(
        &[dns(Protocol::Udp, &[POD_A, POD_B])],
        &[dns(Protocol::Udp, &[POD_B])],
        &NODE_IPS,
    );
    assert_eq!(
        stale.into_iter().collect::<Vec<_>>(),
        [
            gone(SERVICE_IP, 53, POD_A),
            gone(EXTERNAL_IP, 53, POD_A),
            gone(Ipv4Addr::new(10, 244, 1, 1), 30053, POD_A),
            gone(Ipv4Addr::LOCALHOST, 30053, POD_A),
        ]
    );
}

#[test]
fn an_endpoint_whose_port_changes_is_gone_at_its_old_port() {
    let old = dns(Protocol::Udp, &[POD_A]);
    let mut new = old.clone();
    new.endpoints[0].port = 53;
    let stale = stale_flows(&[old], &[new], &[]);
    assert_eq!(
        stale.into_iter().collect::<Vec<_>>(),
        [gone(SERVICE_IP, 53, POD_A), gone(EXTERNAL_IP, 53, POD_A)]
    );
}

#[test]
fn a_port_that_gets_its_first_endpoint_loses_only_its_untranslated_flows() {
    for old in [vec![], vec![dns(Protocol::Udp, &[])]] {
        let stale = stale_flows(&old, &[dns(Protocol::Udp, &[POD_A])], &NODE_IPS);
        let untranslated = |address, port| StaleFlow::Untranslated { address, port };
        assert_eq!(
            stale.into_iter().collect::<Vec<_>>(),
            [
                untranslated(SERVICE_IP, 53),
                untranslated(EXTERNAL_IP, 53),
                untranslated(Ipv4Addr::new(10, 244, 1, 1), 30053),
                untranslated(Ipv4Addr::LOCALHOST, 30053),
            ]
        );
    }
    // Only flows whose answers would come from the address itself: never translated.
    let flow = StaleFlow::Untranslated {
        address: SERVICE_IP,
        port: 53,
    };
    assert_eq!(
        flow.args().join(" "),
        "-D -p udp --orig-dst 10.96.5.5 --orig-port-dst 53 --reply-src 10.96.5.5"
    );
}

#[test]
fn a_deleted_service_takes_its_flows_and_tcp_and_unchanged_ports_need_nothing() {
    let gone_all = stale_flows(&[dns(Protocol::Udp, &[POD_A])], &[], &NODE_IPS);
    assert_eq!(gone_all.len(), 4, "{gone_all:?}");
    assert!(stale_flows(&[dns(Protocol::Tcp, &[POD_A])], &[], &NODE_IPS).is_empty());
    let same = [dns(Protocol::Udp, &[POD_A])];
    assert!(stale_flows(&same, &same, &NODE_IPS).is_empty());
}

#[test]
fn conntrack_is_asked_for_exactly_the_flow() {
    assert_eq!(
        gone(SERVICE_IP, 53, POD_A).args().join(" "),
        "-D -p udp --orig-dst 10.96.5.5 --orig-port-dst 53 --dst-nat 10.244.1.2 \
         --reply-port-src 5353"
    );
}

/// A UDP server on `ip`:5353 that answers every datagram with `name`.
fn serve_udp(ip: Ipv4Addr, name: &'static str) {
    let socket = UdpSocket::bind((ip, 5353)).expect("binding the pod's port");
    std::thread::spawn(move || {
        let mut buffer = [0u8; 64];
        while let Ok((_, from)) = socket.recv_from(&mut buffer) {
            let _ = socket.send_to(name.as_bytes(), from);
        }
    });
}

fn ask(client: &UdpSocket) -> String {
    client.send_to(b"hello", (SERVICE_IP, 53)).expect("sending");
    let mut buffer = [0u8; 64];
    let (length, _) = client.recv_from(&mut buffer).expect("an answer");
    String::from_utf8_lossy(&buffer[..length]).into_owned()
}

#[test]
fn a_client_that_keeps_sending_reaches_the_new_endpoint_once_the_stale_flow_is_deleted() {
    in_new_network(|| {
        node_with_two_pods();
        serve_udp(POD_A, "pod-a");
        serve_udp(POD_B, "pod-b");
        let apply = |script: &str| nft::apply(script).unwrap_or_else(|e| panic!("{e}\n{script}"));

        let old = [dns(Protocol::Udp, &[POD_A])];
        apply(&script::full(&config(), &plan(&config(), &old)));
        // One socket, one flow: the client keeps its source port throughout.
        let client = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        assert_eq!(ask(&client), "pod-a");

        // The endpoint moves. Pod A still answers, so the flow conntrack keeps still
        // reaches it: the rules alone do not move the client.
        let new = [dns(Protocol::Udp, &[POD_B])];
        apply(&script::full(&config(), &plan(&config(), &new)));
        assert_eq!(ask(&client), "pod-a", "the flow outlives the rule");

        for flow in stale_flows(&old, &new, &NODE_IPS) {
            delete(&flow).unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(ask(&client), "pod-b");
    });
}

#[test]
fn a_client_that_sent_before_the_first_endpoint_reaches_it_once_its_untranslated_flow_goes() {
    in_new_network(|| {
        node_with_two_pods();
        serve_udp(POD_A, "pod-a");
        let apply = |script: &str| nft::apply(script).unwrap_or_else(|e| panic!("{e}\n{script}"));
        let old = [dns(Protocol::Udp, &[])];
        apply(&script::full(&config(), &plan(&config(), &old)));
        // The node port has no endpoint: the datagram reaches the node itself, where
        // nothing listens, and conntrack remembers the flow untranslated.
        let client = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let node_port = (Ipv4Addr::new(10, 244, 1, 1), 30053);
        let mut buffer = [0u8; 64];
        client.send_to(b"early", node_port).unwrap();
        assert!(
            client.recv_from(&mut buffer).is_err(),
            "nothing answers yet"
        );

        let new = [dns(Protocol::Udp, &[POD_A])];
        apply(&script::full(&config(), &plan(&config(), &new)));
        client.send_to(b"again", node_port).unwrap();
        assert!(
            client.recv_from(&mut buffer).is_err(),
            "the untranslated flow outlives the new rule"
        );
        for flow in stale_flows(&old, &new, &NODE_IPS) {
            delete(&flow).unwrap_or_else(|e| panic!("{e}"));
        }
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        client.send_to(b"now", node_port).unwrap();
        let (length, _) = client.recv_from(&mut buffer).expect("pod-a answers");
        assert_eq!(&buffer[..length], b"pod-a");
    });
}
