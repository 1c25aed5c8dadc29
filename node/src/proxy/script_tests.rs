use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use super::super::nft;
use super::super::ruleset::tests::{another, claiming_kubias_address, config, kubia, POD_A, POD_B};
use super::super::ruleset::{plan, Edits, Ruleset, SERVICE_IPS};
use super::super::testing::{in_new_network, node_with_two_pods};
use super::*;

/// The edits that turn `before` into `after`: every Service of either, as `after` has it.
fn edits(before: &Ruleset, after: &Ruleset) -> Edits {
    before
        .services()
        .keys()
        .chain(after.services().keys())
        .map(|service| (service.clone(), after.services().get(service).cloned()))
        .collect()
}

fn diff(before: &Ruleset, after: &Ruleset) -> Option<String> {
    changes("rudder-test", before, &edits(before, after))
}

/// One sync as the proxy makes it: the script from `applied` to `after`, which `applied`
/// then holds.
fn step(applied: &mut Ruleset, after: &Ruleset) -> Option<String> {
    let edits = edits(applied, after);
    let script = changes("rudder-test", applied, &edits)?;
    applied.apply(edits);
    Some(script)
}

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
    assert_eq!(diff(&rules, &rules.clone()), None);
}

#[test]
fn an_endpoint_change_rewrites_one_chain_and_the_hairpin_pairs() {
    let before = plan(&config(), &[kubia(&[(POD_A, true)])]);
    let after = plan(&config(), &[kubia(&[(POD_B, false)])]);
    let script = diff(&before, &after).unwrap();
    assert_eq!(
        script,
        "delete element ip rudder-test hairpin { 10.244.1.2 . 10.244.1.2 }\n\
         flush chain ip rudder-test service-default/kubia-http/tcp/http\n\
         add rule ip rudder-test service-default/kubia-http/tcp/http meta l4proto tcp dnat to 10.244.2.2:8080\n\
         add element ip rudder-test hairpin { 10.244.2.2 . 10.244.2.2 }\n"
    );
}

#[test]
fn a_deleted_service_loses_its_elements_and_its_chains_are_emptied_then_deleted_a_sync_later() {
    let mut applied = plan(&config(), &[kubia(&[(POD_A, true)])]);
    let after = plan(&config(), &[]);
    let script = step(&mut applied, &after).unwrap();
    let lines: Vec<&str> = script.lines().collect();
    let position = |needle: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("{needle}\n--- in ---\n{script}"))
    };
    // Map elements are deleted by their keys, before the chains they name are emptied.
    let elements = position(
        "delete element ip rudder-test service-ips { 10.112.0.1 . tcp . 80, 10.96.1.1 . tcp . 80 }",
    );
    let flush_external =
        position("flush chain ip rudder-test external-default/kubia-http/tcp/http");
    let flush_service = position("flush chain ip rudder-test service-default/kubia-http/tcp/http");
    assert!(elements < flush_external && elements < flush_service);
    assert!(
        !script.contains("add ") && !script.contains("delete chain"),
        "{script}"
    );
    // The next sync, whatever else it does, deletes them; the one after has nothing to do.
    let next = step(&mut applied, &after).unwrap();
    assert_eq!(
        next,
        "delete chain ip rudder-test external-default/kubia-http/tcp/http\n\
         delete chain ip rudder-test service-default/kubia-http/tcp/http\n"
    );
    assert_eq!(step(&mut applied, &after), None);
}

#[test]
fn an_emptied_chain_wanted_again_is_refilled_not_deleted() {
    let mut applied = plan(&config(), &[kubia(&[(POD_A, true)])]);
    step(&mut applied, &plan(&config(), &[kubia(&[])])).unwrap();
    let back = step(&mut applied, &plan(&config(), &[kubia(&[(POD_A, true)])])).unwrap();
    assert!(!back.contains("delete chain"), "{back}");
    assert!(
        back.contains("add chain ip rudder-test service-default/kubia-http/tcp/http\n"),
        "{back}"
    );
}

#[test]
fn one_key_claimed_by_two_services_is_written_once_and_handed_over_when_the_winner_goes() {
    // `other` claims kubia's cluster IP and port as an external IP.
    let other = claiming_kubias_address("other", Ipv4Addr::new(10, 96, 2, 2), &[(POD_B, false)]);
    let both = plan(&config(), &[kubia(&[(POD_A, true)]), other.clone()]);
    let script = full(&config(), &both);
    assert_eq!(
        script.matches("10.96.1.1 . tcp . 80 :").count(),
        1,
        "{script}"
    );
    assert!(script.contains("10.96.1.1 . tcp . 80 : goto service-default/kubia-http/tcp/http"));
    let mut applied = both;
    let handed = step(&mut applied, &plan(&config(), &[other])).unwrap();
    let deleted = handed
        .find("delete element ip rudder-test service-ips { 10.112.0.1 . tcp . 80, 10.96.1.1 . tcp . 80 }")
        .unwrap_or_else(|| panic!("{handed}"));
    let added = handed
        .find("10.96.1.1 . tcp . 80 : goto external-default/other/tcp/http")
        .unwrap_or_else(|| panic!("{handed}"));
    assert!(deleted < added, "{handed}");
}

#[test]
fn a_pair_another_service_still_wants_is_not_deleted() {
    let other = another("other", Ipv4Addr::new(10, 96, 2, 2), &[(POD_A, true)]);
    let before = plan(&config(), &[kubia(&[(POD_A, true)]), other.clone()]);
    let after = plan(&config(), &[other]);
    let script = diff(&before, &after).unwrap();
    assert!(!script.contains("hairpin"), "{script}");
    assert!(
        script.contains("delete element ip rudder-test cluster-ips { 10.96.1.1 }"),
        "{script}"
    );
}

#[test]
fn a_changed_affinity_timeout_makes_its_sets_and_their_chains_anew() {
    let mut port = kubia(&[(POD_A, true)]);
    port.affinity_seconds = Some(60);
    let before = plan(&config(), &[port.clone()]);
    port.affinity_seconds = Some(90);
    let after = plan(&config(), &[port]);
    let script = diff(&before, &after).unwrap();
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
    let script = diff(&before, &after).unwrap();
    let delete = script
        .find("delete element ip rudder-test service-ips { 10.112.0.1 . tcp . 80, 10.96.1.1 . tcp . 80 }")
        .unwrap_or_else(|| panic!("{script}"));
    let add = script
        .find(&format!("add element ip rudder-test {SERVICE_IPS} {{ 10.112.0.1 . tcp . 80 : goto external-default/kubia-http/tcp/web"))
        .unwrap_or_else(|| panic!("{script}"));
    assert!(delete < add, "{script}");
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
    let mut positions: std::collections::BTreeMap<String, usize> = Default::default();
    let mut objects: Vec<(String, String)> = listed["nftables"]
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
            // Rules keep their order within their chain; everything else is sorted.
            let order = match object.get("rule").and_then(|rule| rule.get("chain")) {
                Some(chain) => {
                    let chain = chain.as_str().unwrap_or_default().to_string();
                    let position = positions.entry(chain.clone()).or_default();
                    *position += 1;
                    format!("rule {chain} {position:06}")
                }
                None => object.to_string(),
            };
            (order, object.to_string())
        })
        .collect();
    objects.sort();
    objects.into_iter().map(|(_, object)| object).collect()
}

#[test]
fn the_kernel_takes_full_and_partial_syncs_forwards_refuses_and_forgets_a_deleted_service() {
    in_new_network(|| {
        node_with_two_pods();
        serve("10.244.1.2:8080".parse().unwrap(), "pod-a");
        serve("10.244.2.2:8080".parse().unwrap(), "pod-b");
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
        let mut applied = first;
        let moved = plan(&config(), &[kubia(&[(POD_B, false)])]);
        apply(&step(&mut applied, &moved).unwrap());
        answers("pod-b");
        let mut other = another(
            "other",
            Ipv4Addr::new(10, 96, 2, 2),
            &[(POD_A, true), (POD_B, false)],
        );
        other.node_port = Some(30081);
        other.external_ips.clear();
        other.affinity_seconds = Some(60);
        other.external_local = true;
        let both = plan(&config(), &[kubia(&[(POD_B, false)]), other.clone()]);
        apply(&step(&mut applied, &both).unwrap());
        let sticky = ask("10.96.2.2:80".parse().unwrap()).unwrap();
        for _ in 0..20 {
            let again = ask("10.96.2.2:80".parse().unwrap()).unwrap();
            assert_eq!(again, sticky, "client affinity");
        }
        // A third claims the first's cluster IP and port as an external IP: one of them
        // is written, and the other takes over when it goes.
        let claimant =
            claiming_kubias_address("claimant", Ipv4Addr::new(10, 96, 3, 3), &[(POD_A, true)]);
        let three = plan(
            &config(),
            &[kubia(&[(POD_B, false)]), other.clone(), claimant.clone()],
        );
        apply(&step(&mut applied, &three).unwrap());
        assert!(ask("10.96.1.1:80".parse().unwrap())
            .unwrap()
            .starts_with("pod-b"));
        let last = plan(&config(), &[other, claimant]);
        apply(&step(&mut applied, &last).unwrap());
        assert!(ask("10.96.1.1:80".parse().unwrap())
            .unwrap()
            .starts_with("pod-a"));
        // The chains the first left are deleted by the next sync.
        let listed = nft::list("rudder-test").unwrap();
        assert!(
            listed.contains("kubia-http"),
            "emptied, not yet deleted: {listed}"
        );
        apply(&step(&mut applied, &last).unwrap());
        let listed = nft::list("rudder-test").unwrap();
        assert!(!listed.contains("kubia-http"), "{listed}");
        // Its node port is no more.
        let refused = ask("10.244.1.1:30080".parse().unwrap()).unwrap_err();
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
