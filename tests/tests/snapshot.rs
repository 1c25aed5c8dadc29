//! Backups as etcd snapshot files, judged by Debian's etcd 3.4 tools: `etcdctl snapshot
//! save` from a Rudder cluster writes a file `etcdctl snapshot status` reads (revision,
//! keys) and `etcdctl snapshot restore` takes; `rudder snapshot restore` builds a new
//! cluster from it that holds the same keys, leases and compaction, continues the revision,
//! and gives the keyspace to members that join it later. An etcd snapshot restores into
//! Rudder the same way.

use std::path::Path;
use std::process::Command;

use base64::Engine;
use std::time::Duration;

use rudder_tests::{member_log, rudder_binary_beside_tests, wait_for, ProcessCluster};
use serde_json::Value;

const ETCDCTL: &str = "/usr/bin/etcdctl";
const ETCD: &str = "/usr/bin/etcd";

/// Runs etcdctl (v3 API) against `endpoints`; stdout, or the test fails with stderr.
fn etcdctl(endpoints: &str, args: &[&str]) -> String {
    let output = Command::new(ETCDCTL)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--command-timeout=15s")
        .args(args)
        .output()
        .expect("etcdctl runs (apt-get install etcd-client)");
    assert!(
        output.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("{error}: {text}"))
}

/// The value of `key` read from the member at `endpoint` alone (serializable).
fn local_value(endpoint: &str, key: &str) -> Option<String> {
    let answer = json(&etcdctl(
        endpoint,
        &["get", key, "--consistency=s", "-w", "json"],
    ));
    let value = answer["kvs"][0]["value"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .expect("etcdctl's json values are base64");
    Some(String::from_utf8(bytes).unwrap())
}

fn revision_of(answer: &Value) -> i64 {
    answer["header"]["revision"].as_i64().expect("a revision")
}

/// A lease, keys written, overwritten, deleted and attached to it, and a compaction:
/// returns the lease's id (hex) and the revision compacted to.
fn fill(endpoints: &str) -> (String, i64) {
    etcdctl(endpoints, &["put", "a", "1"]);
    let compacted = revision_of(&json(&etcdctl(endpoints, &["put", "a", "2", "-w", "json"])));
    etcdctl(endpoints, &["put", "b", "gone soon"]);
    etcdctl(endpoints, &["put", "a", "3"]);
    etcdctl(endpoints, &["del", "b"]);
    let granted = etcdctl(endpoints, &["lease", "grant", "600"]);
    let lease = granted
        .split_whitespace()
        .nth(1)
        .expect("a lease id")
        .to_owned();
    etcdctl(endpoints, &["put", "c", "4", &format!("--lease={lease}")]);
    // --physical: answered once the compaction is done (etcd's `finishedCompactRev`).
    etcdctl(
        endpoints,
        &["compact", &compacted.to_string(), "--physical"],
    );
    (lease, compacted)
}

fn rudder(args: &[&str]) -> String {
    let output = Command::new(rudder_binary_beside_tests())
        .args(args)
        .output()
        .expect("rudder runs");
    assert!(
        output.status.success(),
        "rudder {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The restored cluster at `endpoints` (every member checked alone) holds what [`fill`]
/// wrote: a=3, no b, c=4 on `lease`, history compacted at `compacted`; and it goes on.
async fn holds_the_filled_keyspace(
    cluster: &ProcessCluster,
    lease: &str,
    compacted: i64,
    revision: i64,
) {
    // A member that joined gets the keyspace in a Raft snapshot, a moment after it is up.
    for member in &cluster.members {
        let endpoint = &member.client_addr;
        wait_for(
            &format!("{endpoint} holds a=3, no b, c=4"),
            Duration::from_secs(10),
            async || {
                let seen = [
                    local_value(endpoint, "a"),
                    local_value(endpoint, "b"),
                    local_value(endpoint, "c"),
                ];
                match &seen {
                    [Some(a), None, Some(c)] if a == "3" && c == "4" => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
    }
    let endpoints = cluster.endpoints().join(",");
    let c = json(&etcdctl(&endpoints, &["get", "c", "-w", "json"]));
    let lease_id = i64::from_str_radix(lease, 16).unwrap();
    assert_eq!(c["kvs"][0]["lease"].as_i64(), Some(lease_id), "{c}");
    assert!(etcdctl(&endpoints, &["lease", "list"]).contains(lease));
    let old = Command::new(ETCDCTL)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .args(["get", "a", "--rev", &(compacted - 1).to_string()])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&old.stderr).contains("compacted"),
        "history before the compaction is gone: {}",
        String::from_utf8_lossy(&old.stderr)
    );
    let next = json(&etcdctl(&endpoints, &["put", "d", "5", "-w", "json"]));
    assert!(revision_of(&next) > revision, "{next} after {revision}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rudder_snapshot_reads_in_etcdctl_and_restores_a_new_cluster_that_grows() {
    let cluster = ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 3, &[])
        .expect("three members start");
    let endpoints = cluster.endpoints().join(",");
    let (lease, compacted) = fill(&endpoints);
    let revision = revision_of(&json(&etcdctl(&endpoints, &["get", "a", "-w", "json"])));
    let file = cluster.dir.path().join("backup.db");
    let one = &cluster.members[0].client_addr;
    etcdctl(one, &["snapshot", "save", file.to_str().unwrap()]);

    let status = json(&etcdctl(
        one,
        &["snapshot", "status", file.to_str().unwrap(), "-w", "json"],
    ));
    // The masters write on their own (leader leases renewed, system objects): the file
    // holds the revision of the save, which may be past the one read before it.
    let saved = status["revision"].as_i64().expect("a revision");
    assert!(
        saved >= revision,
        "{status} saved after revision {revision}"
    );
    let revision = saved;
    assert!(status["totalKey"].as_i64() > Some(3), "{status}");
    let ours = json(&rudder(&[
        "snapshot",
        "status",
        file.to_str().unwrap(),
        "-w",
        "json",
    ]));
    assert_eq!(ours["revision"].as_i64(), Some(revision), "{ours}");
    assert_eq!(ours["compactRevision"].as_i64(), Some(compacted), "{ours}");
    assert_eq!(ours["leases"], 1, "{ours}");

    // etcd's own restore takes the file (it checks the hash and reads the keyspace).
    let etcd_dir = cluster.dir.path().join("etcd-restored");
    etcdctl(
        one,
        &[
            "snapshot",
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            etcd_dir.to_str().unwrap(),
            "--name",
            "e1",
            "--initial-cluster",
            "e1=http://127.0.0.1:2",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2",
        ],
    );
    assert!(etcd_dir.join("member/snap/db").exists());

    // A new Rudder cluster of three from it: the first restored, two joining later. Its
    // settling starts 5 s late (the rest of its start-up runs meanwhile, longer on a loaded
    // machine, and the first joiner must come inside the window), so the joiners are
    // refused until its keyspace is in a Raft snapshot, and get it from there.
    let late = [
        "--failpoints".to_string(),
        "restore-settles-late=return(5000)".to_string(),
    ];
    let restored =
        ProcessCluster::start_rudder_restored(&rudder_binary_beside_tests(), 3, &file, &late)
            .expect("a restored cluster starts and grows");
    let joiner_log = member_log(&restored.members[1]);
    assert!(
        joiner_log.contains("was just restored from a snapshot"),
        "the joiner was refused while the keyspace was not in a snapshot: {joiner_log}"
    );
    holds_the_filled_keyspace(&restored, &lease, compacted, revision).await;
    drop(restored);
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_refuses_a_directory_in_use_and_a_damaged_file() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 1, &[])
        .expect("one member starts");
    let endpoint = cluster.members[0].client_addr.clone();
    let file = dir.path().join("backup.db");
    let saved = rudder(&[
        "snapshot",
        "save",
        file.to_str().unwrap(),
        "--server",
        &endpoint,
    ]);
    assert!(saved.starts_with("Snapshot saved at"), "{saved}");
    let in_use = Command::new(rudder_binary_beside_tests())
        .args(["snapshot", "restore", file.to_str().unwrap(), "--data-dir"])
        .arg(&cluster.members[0].data_dir)
        .output()
        .unwrap();
    assert!(!in_use.status.success());
    let said = String::from_utf8_lossy(&in_use.stderr);
    assert!(
        said.contains("is not empty: restore into a new data directory"),
        "{said}"
    );

    let mut damaged = std::fs::read(&file).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    let damaged_file = dir.path().join("damaged.db");
    std::fs::write(&damaged_file, damaged).unwrap();
    let refused = Command::new(rudder_binary_beside_tests())
        .args([
            "snapshot",
            "restore",
            damaged_file.to_str().unwrap(),
            "--data-dir",
        ])
        .arg(dir.path().join("new"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("SHA-256 does not match"), "{said}");
    assert!(
        !Path::new(&dir.path().join("new")).exists(),
        "nothing written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_snapshot_restores_into_rudder() {
    let etcd = ProcessCluster::start_etcd(Path::new(ETCD), 1, &[])
        .await
        .expect("etcd starts (apt-get install etcd-server)");
    let endpoint = etcd.members[0].client_addr.clone();
    let (lease, compacted) = fill(&endpoint);
    let revision = revision_of(&json(&etcdctl(&endpoint, &["get", "a", "-w", "json"])));
    let file = etcd.dir.path().join("etcd-backup.db");
    etcdctl(&endpoint, &["snapshot", "save", file.to_str().unwrap()]);
    let restored =
        ProcessCluster::start_rudder_restored(&rudder_binary_beside_tests(), 2, &file, &[])
            .expect("a cluster restored from etcd's snapshot starts");
    holds_the_filled_keyspace(&restored, &lease, compacted, revision).await;
}
