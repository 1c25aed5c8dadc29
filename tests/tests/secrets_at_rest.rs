//! Secrets are encrypted before they enter the Raft log: after a Secret holding a random
//! canary is written to a cluster of three `rudder server` processes, then enough writes
//! for each member to take Raft snapshots (kept in its RocksDB), and a `rudder snapshot
//! save` backup made, no file under the cluster's directory — every member's Raft log,
//! RocksDB files, their logs, the backup — holds the canary or its base64 form, while a ConfigMap's canary written the same way
//! is found (the search can find what is stored in clear). The API answers the Secret in
//! clear. Members need the cluster's keyring to start, and say so without it.

use std::path::Path;
use std::process::Command;

use base64::Engine;
use rudder_proto::client::ApiClient;
use rudder_tests::{rudder_binary_beside_tests, rudder_cli, ProcessCluster};
use serde_json::{json, Value};

/// Entries after which a member takes a Raft snapshot (the filler writes pass it twice).
const SNAPSHOT_COUNT: usize = 20;

fn holds(bytes: &[u8], needle: &[u8]) -> bool {
    bytes.windows(needle.len()).any(|window| window == needle)
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if std::fs::read(&path).is_ok_and(|bytes| holds(&bytes, needle)) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_file_of_the_cluster_holds_a_secret_in_clear() {
    let flags = [
        "--snapshot-count".to_string(),
        SNAPSHOT_COUNT.to_string(),
        "--snapshot-catchup-entries".to_string(),
        "5".to_string(),
    ];
    let mut cluster = ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 3, &flags)
        .expect("three members start");
    let servers: Vec<String> = cluster
        .members
        .iter()
        .map(|m| m.client_addr.clone())
        .collect();
    let servers = servers.join(",");
    let secret_canary = format!("secret-canary-{:016x}", rand::random::<u64>());
    let secret_canary_b64 = base64::engine::general_purpose::STANDARD.encode(&secret_canary);
    let plain_canary = format!("plain-canary-{:016x}", rand::random::<u64>());

    let manifest = cluster.dir.path().join("objects.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ntype: Opaque\n\
             stringData:\n  password: {secret_canary}\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n\
             data:\n  note: {plain_canary}\n"
        ),
    )
    .unwrap();
    let applied = rudder_cli(&servers, &["apply", "-f", manifest.to_str().unwrap()]).await;
    assert!(applied.ok, "{}{}", applied.stdout, applied.stderr);
    std::fs::remove_file(&manifest).unwrap();

    // Enough writes after the Secret that every member snapshots twice.
    let client = ApiClient::new(
        cluster
            .members
            .iter()
            .map(|m| m.client_addr.clone())
            .collect(),
    );
    for i in 0..2 * SNAPSHOT_COUNT + 5 {
        let filler = json!({ "apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": { "name": format!("filler-{i}") } });
        client
            .create_object("configmaps", "default", &filler)
            .await
            .expect("a filler write");
    }
    let backup = cluster.dir.path().join("backup.db");
    let saved = rudder_cli(
        &servers,
        &[
            "snapshot",
            "save",
            backup.to_str().unwrap(),
            "--server",
            &cluster.members[0].client_addr,
        ],
    )
    .await;
    assert!(saved.ok, "{}{}", saved.stdout, saved.stderr);

    let read = rudder_cli(&servers, &["get", "secret", "db", "-o", "json"]).await;
    assert!(read.ok, "{}", read.stderr);
    let secret: Value = serde_json::from_str(&read.stdout).unwrap();
    assert_eq!(secret["data"]["password"], secret_canary_b64.as_str());

    for member in &mut cluster.members {
        member.kill();
    }
    let dir = cluster.dir.path();
    // Each member's own files hold the ConfigMap where the search finds it.
    for member in &cluster.members {
        assert!(
            !files_holding(&member.data_dir, plain_canary.as_bytes()).is_empty(),
            "the search finds what {} stores in clear",
            member.name
        );
    }
    assert!(
        holds(&std::fs::read(&backup).unwrap(), plain_canary.as_bytes()),
        "the backup holds the ConfigMap in clear"
    );
    for needle in [&secret_canary, &secret_canary_b64] {
        let found = files_holding(dir, needle.as_bytes());
        assert!(found.is_empty(), "{needle} in clear in {found:?}");
    }
    drop(cluster);
}

#[test]
fn a_master_of_several_without_the_keyring_says_how_to_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Command::new(rudder_binary_beside_tests())
        .args(["server", "--name", "m2", "--data-dir"])
        .arg(dir.path().join("m2"))
        .args(["--join", "127.0.0.1:1", "--listen-client", "127.0.0.1:0"])
        .args(["--listen-peer", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It must refuse at once; one that starts instead is ended here, not left running.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = server.kill();
            let _ = server.wait();
            panic!("the master started without the cluster's keyring");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut said = String::new();
    std::io::Read::read_to_string(&mut server.stderr.take().unwrap(), &mut said).unwrap();
    assert!(
        said.contains("this master is one of several")
            && said.contains("rudder encryption-keys new FILE"),
        "{said}"
    );
    assert!(!dir.path().join("m2").exists(), "nothing made");
}
