use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use super::super::nft;
use super::super::ruleset::tests::{config, kubia, POD_A, POD_B};
use super::super::ruleset::{plan, SERVICE_IPS};
use super::*;

#[test]
fn a_full_sync_replaces_the_table_with_base_sets_chains_and_elements() {
    let rules = plan(&config(), &[kubia(&[(POD_A, true)])]);
    let script = full(&config(), &rules);
    assert!(script.starts_with(
        "add table ip rudder-test\ndelete table ip rudder-test\ntable ip rudder-test {\n"
    ));
    for expected in [
        "  chain service-default/kubia-http/tcp/http {\n    meta l4proto tcp dnat to 10.244.1.2:8080\n  }",
        "add element ip rudder-test service-ips { 10.112.0.1 . tcp . 80 : goto \
         external-default/kubia-http/tcp/http, 10.96.1.1 . tcp . 80 : goto \
         service-default/kubia-http/tcp/http }",
        "add element ip rudder-test nodeport-ips { 10.244.1.1, 127.0.0.1 }",
    ] {
        assert!(script.contains(expected), "{expected}\n--- in ---\n{script}");
    }
}

#[test]
fn nothing_changed_writes_nothing() {
    let rules = plan(&config(), &[kubia(&[(POD_A, true)])]);
    assert_eq!(changes("rudder-test", &rules, &rules.clone()), None);
}

#[test]
fn an_endpoint_change_rewrites_one_chain_and_the_hairpin_pairs() {
    let before = plan(&config(), &[kubia(&[(POD_A, true)])]);
    let after = plan(&config(), &[kubia(&[(POD_B, false)])]);
    let script = changes("rudder-test", &before, &after).unwrap();
    assert_eq!(
        script,
        "delete element ip rudder-test hairpin { 10.244.1.2 . 10.244.1.2 }\n\
         flush chain ip rudder-test service-default/kubia-http/tcp/http\n\
         add rule ip rudder-test service-default/kubia-http/tcp/http meta l4proto tcp dnat to 10.244.2.2:8080\n\
         add element ip rudder-test hairpin { 10.244.2.2 . 10.244.2.2 }\n"
    );
}

#[test]
fn a_deleted_service_loses_its_elements_before_its_chains() {
    let before = plan(&config(), &[kubia(&[(POD_A, true)])]);
    let after = plan(&config(), &[]);
    let script = changes("rudder-test", &before, &after).unwrap();
    let lines: Vec<&str> = script.lines().collect();
    let position = |needle: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("{needle}\n--- in ---\n{script}"))
    };
    // Map elements are deleted by their keys.
    let elements = position(
        "delete element ip rudder-test service-ips { 10.112.0.1 . tcp . 80, 10.96.1.1 . tcp . 80 }",
    );
    let flush = position("flush chain ip rudder-test external-default/kubia-http/tcp/http");
    let delete_external =
        position("delete chain ip rudder-test external-default/kubia-http/tcp/http");
    let delete_service =
        position("delete chain ip rudder-test service-default/kubia-http/tcp/http");
    assert!(elements < flush && flush < delete_external && flush < delete_service);
    assert!(!script.contains("add "), "{script}");
}

#[test]
fn a_changed_affinity_timeout_makes_its_sets_and_their_chains_anew() {
    let mut port = kubia(&[(POD_A, true)]);
    port.affinity_seconds = Some(60);
    let before = plan(&config(), &[port.clone()]);
    port.affinity_seconds = Some(90);
    let after = plan(&config(), &[port]);
    let script = changes("rudder-test", &before, &after).unwrap();
    let set = "affinity-default/kubia-http/tcp/http__10.244.1.2/8080";
    assert_eq!(
        script,
        format!(
            "flush chain ip rudder-test service-default/kubia-http/tcp/http\n\
             delete set ip rudder-test {set}\n\
             add set ip rudder-test {set} {{ type ipv4_addr; flags dynamic,timeout; timeout 90s; }}\n\
             add rule ip rudder-test service-default/kubia-http/tcp/http ip saddr @{set} meta l4proto tcp update @{set} {{ ip saddr }} dnat to 10.244.1.2:8080\n\
             add rule ip rudder-test service-default/kubia-http/tcp/http meta l4proto tcp update @{set} {{ ip saddr }} dnat to 10.244.1.2:8080\n"
        )
    );
}

#[test]
fn a_map_element_that_changes_its_verdict_is_deleted_then_added() {
    let before = plan(&config(), &[kubia(&[(POD_A, true)])]);
    let mut port = kubia(&[(POD_A, true)]);
    port.id = "default/kubia-http/tcp/web".into();
    let after = plan(&config(), &[port]);
    let script = changes("rudder-test", &before, &after).unwrap();
    let delete = script
        .find("delete element ip rudder-test service-ips { 10.112.0.1 . tcp . 80, 10.96.1.1 . tcp . 80 }")
        .unwrap_or_else(|| panic!("{script}"));
    let add = script
        .find(&format!("add element ip rudder-test {SERVICE_IPS} {{ 10.112.0.1 . tcp . 80 : goto external-default/kubia-http/tcp/web"))
        .unwrap_or_else(|| panic!("{script}"));
    assert!(delete < add, "{script}");
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

/// The table as the kernel holds it, without handles, with every set's elements sorted and
/// without the clients affinity sets remember: two tables made different ways compare
/// equal when they hold the same rules.
fn normalized(table: &str) -> Vec<String> {
    let output = Command::new("nft")
        .args(["-j", "list", "table", "ip", table])
        .output()
        .expect("nft runs");
    let listed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("nft's JSON");
    let mut objects: Vec<String> = listed["nftables"]
        .as_array()
        .expect("a list of objects")
        .iter()
        .filter(|object| object.get("metainfo").is_none())
        .map(|object| {
            let mut object = object.clone();
            for inner in object.as_object_mut().unwrap().values_mut() {
                if let Some(fields) = inner.as_object_mut() {
                    fields.remove("handle");
                    // What client-affinity sets remember is the traffic's, not the sync's.
                    if fields.contains_key("timeout") {
                        fields.remove("elem");
                    }
                    if let Some(serde_json::Value::Array(elements)) = fields.get_mut("elem") {
                        elements.sort_by_key(|e| e.to_string());
                    }
                }
            }
            object.to_string()
        })
        .collect();
    objects.sort();
    objects
}

#[test]
fn the_kernel_takes_full_and_partial_syncs_forwards_refuses_and_forgets_a_deleted_service() {
    in_new_network(|| {
        ip("link set lo up");
        ip("link add rbtest type bridge");
        ip("addr add 10.244.1.1/24 dev rbtest");
        ip("link set rbtest up");
        // The "pods": addresses on this namespace's loopback, a server on each.
        ip("addr add 10.244.1.2/32 dev lo");
        ip("addr add 10.244.2.2/32 dev lo");
        serve("10.244.1.2:8080".parse().unwrap(), "pod-a");
        serve("10.244.2.2:8080".parse().unwrap(), "pod-b");
        // Service addresses route to a bridge with no ports: nothing leaves.
        ip("link add rudder-svc type bridge");
        ip("link set rudder-svc up");
        ip("route add 10.96.0.0/12 dev rudder-svc");
        ip("route add 10.112.0.0/24 dev rudder-svc");
        let apply = |script: &str| nft::apply(script).unwrap_or_else(|e| panic!("{e}\n{script}"));
        let answers = |expected: &str| {
            for (to, what) in [
                ("10.96.1.1:80", "the cluster IP"),
                ("10.112.0.1:80", "the load-balancer IP"),
                ("10.244.1.1:30080", "the node port on the node's address"),
            ] {
                let answer = ask(to.parse().unwrap()).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert!(answer.starts_with(expected), "{what}: {answer}");
            }
        };

        let first = plan(&config(), &[kubia(&[(POD_A, true)])]);
        apply(&full(&config(), &first));
        let listed = nft::list("rudder-test").unwrap();
        assert!(listed.contains("kubia-http"), "{listed}");
        answers("pod-a");
        // A service address nothing answers on is refused at once, not left to time out.
        for to in ["10.96.9.9:80", "10.96.1.1:81"] {
            let refused = ask(to.parse().unwrap()).unwrap_err();
            assert_eq!(
                refused.kind(),
                std::io::ErrorKind::ConnectionRefused,
                "{to}: {refused}"
            );
        }

        // Partial syncs: the endpoint moves; a second Service comes with client affinity
        // and Local policies; the first goes.
        let moved = plan(&config(), &[kubia(&[(POD_B, false)])]);
        apply(&changes("rudder-test", &first, &moved).unwrap());
        answers("pod-b");
        let mut other = kubia(&[(POD_A, true), (POD_B, false)]);
        other.id = "default/other/tcp/http".into();
        other.cluster_ip = Some(Ipv4Addr::new(10, 96, 2, 2));
        other.node_port = Some(30081);
        other.external_ips.clear();
        other.affinity_seconds = Some(60);
        other.external_local = true;
        let both = plan(&config(), &[kubia(&[(POD_B, false)]), other.clone()]);
        apply(&changes("rudder-test", &moved, &both).unwrap());
        let sticky = ask("10.96.2.2:80".parse().unwrap()).unwrap();
        for _ in 0..5 {
            let again = ask("10.96.2.2:80".parse().unwrap()).unwrap();
            assert_eq!(again, sticky, "client affinity");
        }
        let last = plan(&config(), &[other]);
        apply(&changes("rudder-test", &both, &last).unwrap());
        let listed = nft::list("rudder-test").unwrap();
        assert!(!listed.contains("kubia-http"), "{listed}");
        let refused = ask("10.96.1.1:80".parse().unwrap()).unwrap_err();
        assert_eq!(
            refused.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{refused}"
        );

        // Where the partial syncs ended is where a full sync starts.
        let partial = normalized("rudder-test");
        apply(&full(&config(), &last));
        assert_eq!(partial, normalized("rudder-test"));

        apply(&remove("rudder-test"));
        assert_eq!(nft::list("rudder-test").unwrap(), "");
    });
}
