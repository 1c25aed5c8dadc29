//! Debian's `etcdctl` (v3 API) against a 3-member Rudder cluster: every output asserted,
//! once undisturbed and once with the leader killed between steps.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use rudder_tests::{lines_of, rudder_binary_beside_tests, ProcessCluster};

const ETCDCTL: &str = "/usr/bin/etcdctl";

struct Ctl {
    endpoints: String,
}

impl Ctl {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(ETCDCTL);
        command
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints))
            .arg("--command-timeout=15s")
            .args(args);
        command
    }

    /// Runs etcdctl; returns stdout, panicking with stderr if it failed.
    fn run(&self, args: &[&str]) -> String {
        self.run_with_input(args, None)
    }

    fn run_with_input(&self, args: &[&str], input: Option<&str>) -> String {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("etcdctl runs (apt-get install etcd-client)");
        if let Some(input) = input {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "etcdctl {args:?} failed:\n{stdout}\n{stderr}"
        );
        stdout
    }

    fn fails(&self, args: &[&str]) -> String {
        let output = self.command(args).output().unwrap();
        assert!(!output.status.success(), "etcdctl {args:?} should fail");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// The store's revision, as a read of `key` reports it in its header.
    fn revision(&self, key: &str) -> i64 {
        number_after(&self.run(&["get", key, "-w", "json"]), "\"revision\":")
    }

    /// The revision `key` was last written at. Not the header's: the masters' own writes
    /// (their components' leases, renewed, and taken over after a leader is killed) move
    /// the store's revision between any two of this test's steps.
    fn mod_revision(&self, key: &str) -> i64 {
        number_after(&self.run(&["get", key, "-w", "json"]), "\"mod_revision\":")
    }
}

/// The number right after the first `field` in `json`.
fn number_after(json: &str, field: &str) -> i64 {
    let start = json
        .find(field)
        .unwrap_or_else(|| panic!("{field} in {json}"))
        + field.len();
    json[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Kills the current leader (SIGKILL) and returns its index, for a restart later.
async fn kill_leader(cluster: &mut ProcessCluster) -> usize {
    let leader = cluster.leader().await.expect("a leader");
    cluster.members[leader].kill();
    leader
}

async fn scenario(kill_between_steps: bool) {
    let mut cluster =
        ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 3, &[]).expect("three members");
    let ctl = Ctl {
        endpoints: cluster.endpoints().join(","),
    };

    assert_eq!(ctl.run(&["put", "foo", "bar"]), "OK\n");
    let first = ctl.mod_revision("foo");
    let killed = if kill_between_steps {
        Some(kill_leader(&mut cluster).await)
    } else {
        None
    };
    assert_eq!(ctl.run(&["put", "foo", "baz"]), "OK\n");
    assert_eq!(
        ctl.run(&["get", "foo", "--prefix", &format!("--rev={first}")]),
        "foo\nbar\n"
    );
    assert_eq!(ctl.run(&["get", "f", "--prefix"]), "foo\nbaz\n");

    let txn = "value(\"foo\") = \"baz\"\n\nput key2 yes\n\nput key2 no\n\n";
    let prompts =
        "compares:\nsuccess requests (get, put, del):\nfailure requests (get, put, del):\n";
    assert_eq!(
        ctl.run_with_input(&["txn", "--interactive"], Some(txn)),
        format!("{prompts}SUCCESS\n\nOK\n")
    );
    assert_eq!(ctl.run(&["get", "key2"]), "key2\nyes\n");

    // watch --rev replays history, then follows writes made by another process. It is given
    // the running members only: a killed member's loopback port may meanwhile belong to a
    // process of another test, whose answers would never be this cluster's events.
    let live = Ctl {
        endpoints: cluster.endpoints().join(","),
    };
    let mut watch = live
        .command(&["watch", "foo", &format!("--rev={first}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Read on a thread of its own, so a watch that delivers nothing fails the test in time
    // instead of hanging it.
    let received = lines_of(watch.stdout.take().unwrap());
    let next_lines = |n: usize| {
        (0..n)
            .map(|_| {
                received
                    .recv_timeout(Duration::from_secs(20))
                    .expect("etcdctl watch delivers within 20 s")
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(next_lines(6), ["PUT", "foo", "bar", "PUT", "foo", "baz"]);
    assert_eq!(ctl.run(&["put", "foo", "qux"]), "OK\n");
    assert_eq!(next_lines(3), ["PUT", "foo", "qux"]);
    let _ = watch.kill();
    let _ = watch.wait();
    if let Some(member) = killed {
        cluster.members[member]
            .restart()
            .await
            .expect("the killed member restarts");
    }

    assert_eq!(ctl.run(&["del", "foo", "--prev-kv"]), "1\nfoo\nqux\n");

    let killed = if kill_between_steps {
        Some(kill_leader(&mut cluster).await)
    } else {
        None
    };
    let granted = ctl.run(&["lease", "grant", "60"]);
    let lease = granted
        .split_whitespace()
        .nth(1)
        .expect("lease <id> granted")
        .to_string();
    assert_eq!(granted, format!("lease {lease} granted with TTL(60s)\n"));
    assert_eq!(ctl.run(&["put", "--lease", &lease, "leased", "v"]), "OK\n");
    assert_eq!(
        ctl.run(&["lease", "keep-alive", "--once", &lease]),
        format!("lease {lease} keepalived with TTL(60)\n")
    );
    let ttl = ctl.run(&["lease", "timetolive", &lease, "--keys"]);
    assert!(
        ttl.starts_with(&format!("lease {lease} granted with TTL(60s), remaining(")),
        "{ttl}"
    );
    assert!(ttl.ends_with("attached keys([leased])\n"), "{ttl}");
    assert_eq!(
        ctl.run(&["lease", "revoke", &lease]),
        format!("lease {lease} revoked\n")
    );
    assert_eq!(ctl.run(&["get", "leased"]), "");
    if let Some(member) = killed {
        cluster.members[member]
            .restart()
            .await
            .expect("the killed member restarts");
    }

    let current = ctl.revision("key2");
    assert_eq!(
        ctl.run(&["compaction", &current.to_string()]),
        format!("compacted revision {current}\n")
    );
    let refused = ctl.fails(&["get", "foo", &format!("--rev={first}")]);
    assert!(refused.contains("has been compacted"), "{refused}");

    // Cluster-wide views read each member's own state: a restarted member may still be
    // catching up, so wait (bounded) until every member reports the same hash.
    let members = ctl.run(&["member", "list"]);
    assert_eq!(members.lines().count(), 3, "{members}");
    assert!(
        members.lines().all(|line| line.contains(", started, m")),
        "{members}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let hashes = ctl.run(&["endpoint", "hashkv", "--cluster"]);
        let values: Vec<&str> = hashes
            .lines()
            .filter_map(|line| line.split(", ").nth(1))
            .collect();
        assert_eq!(values.len(), 3, "{hashes}");
        if values.iter().all(|hash| *hash == values[0]) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "members never hashed alike: {hashes}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = ctl.run(&["endpoint", "status", "--cluster"]);
    assert_eq!(status.lines().count(), 3, "{status}");
    let leaders = status
        .lines()
        .filter(|line| line.contains(", true, false,"))
        .count();
    assert_eq!(leaders, 1, "one leader: {status}");

    let file = cluster.dir.path().join("backup.db");
    let one = Ctl {
        endpoints: cluster.members[0].client_addr.clone(),
    };
    let saved = one.run(&["snapshot", "save", file.to_str().unwrap()]);
    assert!(saved.contains("Snapshot saved at"), "{saved}");
    assert!(std::fs::metadata(&file).unwrap().len() > 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_drives_a_three_member_cluster() {
    scenario(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_works_while_the_leader_is_killed_between_steps() {
    scenario(true).await;
}

/// etcdctl given `http://` endpoints names the scheme in HTTP/2's `:authority` for some
/// requests; the client port, which serves gRPC and HTTP, takes it as etcd does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_takes_endpoints_written_as_http_urls() {
    let cluster =
        ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 3, &[]).expect("three members");
    let urls: Vec<String> = cluster
        .endpoints()
        .iter()
        .map(|endpoint| format!("http://{endpoint}"))
        .collect();
    let ctl = Ctl {
        endpoints: urls.join(","),
    };
    // etcdctl prints health to stderr.
    let health = ctl.command(&["endpoint", "health"]).output().unwrap();
    let health = String::from_utf8_lossy(&health.stderr);
    assert_eq!(health.lines().count(), 3, "{health}");
    for url in &urls {
        assert!(
            health.contains(&format!("{url} is healthy")),
            "{url} in {health}"
        );
    }
    let status = ctl.run(&["endpoint", "status"]);
    assert_eq!(status.lines().count(), 3, "{status}");
    for url in &urls {
        assert!(status.contains(&format!("{url}, ")), "{url} in {status}");
    }
    let leaders = status
        .lines()
        .filter(|line| line.contains(", true, false,"))
        .count();
    assert_eq!(leaders, 1, "one leader: {status}");
    assert_eq!(ctl.run(&["put", "scheme", "http"]), "OK\n");
    assert_eq!(ctl.run(&["get", "scheme"]), "scheme\nhttp\n");

    // The same port still serves the HTTP API's plain HTTP/1.1 beside gRPC.
    let answer = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("{}/no-such-path", urls[0]))
        .output()
        .expect("curl runs");
    assert_eq!(String::from_utf8_lossy(&answer.stdout), "404");
}

/// A value of `len` bytes that does not compress (printable, from a fixed LCG).
fn incompressible(len: usize) -> String {
    let mut state = 1u64;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            char::from(b'!' + ((state >> 33) % 90) as u8)
        })
        .collect()
}

/// Each member's `endpoint status` as JSON.
fn statuses(ctl: &Ctl) -> Vec<serde_json::Value> {
    let text = ctl.run(&["endpoint", "status", "--cluster", "-w", "json"]);
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}: {text}"))
}

/// etcd's space quota: a put that would take the keyspace past `--quota-backend-bytes` is
/// refused with etcd's error, and the NOSPACE alarm it raises makes every member refuse
/// what adds data, small writes too, until space is freed (delete, compact, defrag on
/// every member) and the alarm disarmed; etcdctl's alarm, status and defrag commands see
/// it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_space_quota_the_cluster_refuses_writes_until_freed_and_disarmed() {
    const QUOTA: u64 = 16_000_000;
    const VALUE: usize = 256 * 1024;
    // A long election timeout: a debug build takes long to encode big entries, and a
    // leader that hears from no quorum for twice the timeout gives up its writes.
    let flags = [
        "--quota-backend-bytes".to_string(),
        QUOTA.to_string(),
        "--election-timeout-ms".to_string(),
        "1000".to_string(),
    ];
    let cluster = ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 3, &flags)
        .expect("three members");
    let ctl = Ctl {
        endpoints: cluster.endpoints().join(","),
    };
    let value = incompressible(VALUE);
    let mut accepted = 0;
    let refusal = loop {
        assert!(accepted < 160, "40 MB accepted under a 16 MB quota");
        let mut put = ctl
            .command(&["put", &format!("big{accepted}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        put.stdin
            .take()
            .unwrap()
            .write_all(value.as_bytes())
            .unwrap();
        let output = put.wait_with_output().unwrap();
        if !output.status.success() {
            break String::from_utf8_lossy(&output.stderr).into_owned();
        }
        accepted += 1;
    };
    assert!(
        refusal.contains("Error: etcdserver: mvcc: database space exceeded"),
        "{refusal}"
    );
    let accepted_bytes = accepted * VALUE;
    assert!(
        (8_000_000..=16_000_000).contains(&accepted_bytes),
        "{accepted_bytes} bytes accepted before the quota"
    );

    // Each member past the quota raises its own (the one refusing at once; the others,
    // which grew alike, as they measure themselves).
    let alarms = ctl.run(&["alarm", "list"]);
    assert!((1..=3).contains(&alarms.lines().count()), "{alarms}");
    for alarm in alarms.lines() {
        assert!(
            alarm.starts_with("memberID:") && alarm.ends_with("alarm:NOSPACE "),
            "{alarms}"
        );
    }
    for member in &cluster.members {
        let one = Ctl {
            endpoints: member.client_addr.clone(),
        };
        let refused = one.fails(&["put", "small", "x"]);
        assert!(refused.contains("database space exceeded"), "{refused}");
    }
    for status in statuses(&ctl) {
        let errors = status["Status"]["errors"].to_string();
        assert!(errors.contains("alarm:NOSPACE"), "{status}");
    }
    let overview = Command::new(rudder_binary_beside_tests())
        .args(["cluster", "status"])
        .env("RUDDER_SERVER", &ctl.endpoints)
        .env("RUDDER_CONFIG", cluster.dir.path().join("no-config"))
        .output()
        .unwrap();
    let overview = String::from_utf8_lossy(&overview.stdout);
    let said: Vec<&str> = overview
        .lines()
        .filter(|line| line.contains("alarm:NOSPACE: the store refuses writes"))
        .collect();
    assert!(!said.is_empty(), "{overview}");
    let mut once = said.clone();
    once.dedup();
    assert_eq!(once, said, "each alarm once, whichever members report it");
    // Reads and deletes still work: they are how space is freed.
    assert_eq!(
        ctl.run(&["get", "big0", "--print-value-only"]).len(),
        VALUE + 1
    );
    assert_eq!(
        ctl.run(&["del", "big", "--prefix"]),
        format!("{accepted}\n")
    );
    let revision = ctl.revision("big0");
    ctl.run(&["compact", &revision.to_string()]);
    let defragmented = ctl.run(&["defrag", "--cluster"]);
    assert_eq!(
        defragmented
            .matches("Finished defragmenting etcd member")
            .count(),
        3,
        "{defragmented}"
    );
    for status in statuses(&ctl) {
        let in_use = status["Status"]["dbSizeInUse"].as_u64().unwrap();
        assert!(
            in_use < QUOTA / 4,
            "{in_use} bytes in use after defrag: {status}"
        );
    }
    let standing = ctl.run(&["alarm", "list"]);
    let disarmed = ctl.run(&["alarm", "disarm"]);
    assert_eq!(disarmed, standing, "disarm names what it disarmed");
    assert_eq!(ctl.run(&["alarm", "list"]), "");
    assert_eq!(ctl.run(&["put", "small", "x"]), "OK\n");
}
