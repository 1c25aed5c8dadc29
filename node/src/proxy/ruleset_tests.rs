use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use super::super::model::Protocol;
use super::super::nft;
use super::*;

fn config() -> ProxyConfig {
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

fn kubia(endpoints: &[(Ipv4Addr, bool)]) -> ServicePort {
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

const POD_A: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const POD_B: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 2);

#[test]
fn a_service_gets_its_chains_and_map_entries() {
    let script = full_sync(&config(), &[kubia(&[(POD_A, true), (POD_B, false)])]);
    for expected in [
        "add table ip rudder-test\ndelete table ip rudder-test\ntable ip rudder-test {",
        "chain service-default/kubia-http/tcp/http {",
        "numgen random mod 2 vmap { 0 : goto endpoint-default/kubia-http/tcp/http__10.244.1.2/8080, \
         1 : goto endpoint-default/kubia-http/tcp/http__10.244.2.2/8080 }",
        "meta l4proto tcp dnat to 10.244.2.2:8080",
        "ip daddr 10.96.1.1 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade",
        "add element ip rudder-test service-ips { 10.96.1.1 . tcp . 80 : goto \
         service-default/kubia-http/tcp/http, 10.112.0.1 . tcp . 80 : goto \
         external-default/kubia-http/tcp/http }",
        "add element ip rudder-test service-nodeports { tcp . 30080 : goto \
         external-default/kubia-http/tcp/http }",
        "iifname \"rbtest\" jump services",
        "ip daddr 10.112.0.0/24 reject",
    ] {
        assert!(script.contains(expected), "{expected}\n--- in ---\n{script}");
    }
}

#[test]
fn a_service_without_endpoints_keeps_only_its_address_to_refuse() {
    let script = full_sync(&config(), &[kubia(&[])]);
    assert!(script.contains("add element ip rudder-test cluster-ips { 10.96.1.1 }"));
    assert!(
        !script.contains("add element ip rudder-test service-ips"),
        "{script}"
    );
    assert!(
        !script.contains("add element ip rudder-test service-nodeports"),
        "{script}"
    );
}

#[test]
fn local_policies_and_affinity_shape_the_chains() {
    let mut port = kubia(&[(POD_A, true), (POD_B, false)]);
    port.external_local = true;
    port.affinity_seconds = Some(60);
    let script = full_sync(&config(), &[port]);
    let external = script
        .split("chain external-default/kubia-http/tcp/http {")
        .nth(1)
        .unwrap()
        .split("  }")
        .next()
        .unwrap();
    assert!(
        external.contains("fib saddr type local goto cluster-"),
        "{external}"
    );
    assert!(external.contains("numgen random mod 1 vmap { 0 : goto endpoint-default/kubia-http/tcp/http__10.244.1.2/8080 }"), "{external}");
    assert!(external.trim_end().ends_with("drop"), "{external}");
    assert!(
        script.contains("flags dynamic,timeout; timeout 60s;"),
        "{script}"
    );
    assert!(script
        .contains("update @affinity-default/kubia-http/tcp/http__10.244.2.2/8080 { ip saddr }"));
}

/// Runs `work` on a thread in a network namespace of its own (nothing it does touches the
/// machine's network); processes it starts run there too.
fn in_new_network<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare (root)");
        work()
    })
    .join()
    .expect("the namespaced thread")
}

fn ip(args: &str) {
    let status = Command::new("ip")
        .args(args.split_whitespace())
        .status()
        .expect("ip runs");
    assert!(status.success(), "ip {args}");
}

/// Sends a line to `to` and returns what the server answered.
fn ask(to: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"hello\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// A server on `at` that answers each connection's first line with `name` and the caller's
/// address.
fn serve(at: SocketAddr, name: &'static str) {
    let listener = TcpListener::bind(at).expect("binding the pod's port");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            // The request is read first: closing a socket with unread data resets it.
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(&stream), &mut line);
            let peer = stream
                .peer_addr()
                .map(|p| p.ip().to_string())
                .unwrap_or_default();
            let _ = stream.write_all(format!("{name} from {peer}").as_bytes());
            let _ = stream.shutdown(std::net::Shutdown::Write);
        }
    });
}

#[test]
fn the_kernel_takes_the_table_forwards_and_refuses_then_forgets_a_deleted_service() {
    in_new_network(|| {
        ip("link set lo up");
        ip("link add rbtest type bridge");
        ip("addr add 10.244.1.1/24 dev rbtest");
        ip("link set rbtest up");
        // The "pod": its address on this namespace's loopback, a server on it.
        ip("addr add 10.244.1.2/32 dev lo");
        serve("10.244.1.2:8080".parse().unwrap(), "pod-a");
        // Service addresses route to a bridge with no ports: nothing leaves.
        ip("link add rudder-svc type bridge");
        ip("link set rudder-svc up");
        ip("route add 10.96.0.0/12 dev rudder-svc");
        ip("route add 10.112.0.0/24 dev rudder-svc");

        let script = full_sync(&config(), &[kubia(&[(POD_A, true)])]);
        nft::apply(&script).unwrap_or_else(|e| panic!("{e}\n{script}"));
        let listed = nft::list("rudder-test").unwrap();
        assert!(listed.contains("kubia-http"), "{listed}");

        for (to, what) in [
            ("10.96.1.1:80", "the cluster IP"),
            ("10.112.0.1:80", "the load-balancer IP"),
            ("10.244.1.1:30080", "the node port on the node's address"),
        ] {
            let answer = ask(to.parse().unwrap()).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(answer.starts_with("pod-a"), "{what}: {answer}");
        }
        // A service address nothing answers on is refused at once, not left to time out.
        let refused = ask("10.96.9.9:80".parse().unwrap()).unwrap_err();
        assert_eq!(
            refused.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{refused}"
        );
        let refused = ask("10.96.1.1:81".parse().unwrap()).unwrap_err();
        assert_eq!(
            refused.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{refused}"
        );

        // The Service deleted: its rules are gone; then the table itself.
        nft::apply(&full_sync(&config(), &[])).unwrap();
        let listed = nft::list("rudder-test").unwrap();
        assert!(!listed.contains("kubia-http"), "{listed}");
        nft::apply(&remove("rudder-test")).unwrap();
        assert_eq!(nft::list("rudder-test").unwrap(), "");
    });
}
