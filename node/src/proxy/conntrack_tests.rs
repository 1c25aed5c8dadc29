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

#[test]
fn a_gone_endpoints_flows_go_on_every_address_the_port_answers_on() {
    let stale = stale_flows(
        &[dns(Protocol::Udp, &[POD_A, POD_B])],
        &[dns(Protocol::Udp, &[POD_B])],
    );
    assert_eq!(
        stale.into_iter().collect::<Vec<_>>(),
        [
            StaleFlow::ToGoneEndpoint {
                service_ip: SERVICE_IP,
                endpoint: POD_A
            },
            StaleFlow::ToGoneEndpoint {
                service_ip: EXTERNAL_IP,
                endpoint: POD_A
            },
            StaleFlow::NodePortToGoneEndpoint {
                node_port: 30053,
                endpoint: POD_A
            },
        ]
    );
}

#[test]
fn a_port_that_gets_its_first_endpoint_loses_its_untranslated_flows() {
    for old in [vec![], vec![dns(Protocol::Udp, &[])]] {
        let stale = stale_flows(&old, &[dns(Protocol::Udp, &[POD_A])]);
        assert_eq!(
            stale.into_iter().collect::<Vec<_>>(),
            [
                StaleFlow::Untranslated {
                    ip: None,
                    port: 30053
                },
                StaleFlow::Untranslated {
                    ip: Some(SERVICE_IP),
                    port: 53
                },
                StaleFlow::Untranslated {
                    ip: Some(EXTERNAL_IP),
                    port: 53
                },
            ]
        );
    }
}

#[test]
fn a_deleted_service_takes_its_flows_and_tcp_and_unchanged_ports_need_nothing() {
    let gone = stale_flows(&[dns(Protocol::Udp, &[POD_A])], &[]);
    assert_eq!(gone.len(), 3, "{gone:?}");
    assert!(stale_flows(&[dns(Protocol::Tcp, &[POD_A])], &[]).is_empty());
    let same = [dns(Protocol::Udp, &[POD_A])];
    assert!(stale_flows(&same, &same).is_empty());
}

#[test]
fn conntrack_is_asked_for_exactly_the_flow() {
    let flow = StaleFlow::ToGoneEndpoint {
        service_ip: SERVICE_IP,
        endpoint: POD_A,
    };
    assert_eq!(
        flow.args().join(" "),
        "-D -p udp --orig-dst 10.96.5.5 --dst-nat 10.244.1.2"
    );
    let flow = StaleFlow::Untranslated {
        ip: None,
        port: 30053,
    };
    assert_eq!(flow.args().join(" "), "-D -p udp --orig-port-dst 30053");
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

        for flow in stale_flows(&old, &new) {
            delete(&flow).unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(ask(&client), "pod-b");
    });
}
