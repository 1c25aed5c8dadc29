//! The operator CLI against three real masters (`rudder server` processes): manifests from
//! the Kubernetes docs apply as-is and read back, tables have kubectl's columns, scale and
//! label change objects, a stale resourceVersion is a conflict, the seeds' walkthrough verbs
//! work, and `get -w` misses nothing while the master it talks to is killed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rudder_tests::{rudder_binary_beside_tests, ProcessCluster};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

struct Cli {
    binary: PathBuf,
    servers: String,
    config: tempfile::TempDir,
}

struct Outcome {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Cli {
    fn new(servers: &[String]) -> Self {
        Self {
            binary: rudder_binary_beside_tests(),
            servers: servers.join(","),
            config: tempfile::tempdir().unwrap(),
        }
    }

    async fn run(&self, args: &[&str]) -> Outcome {
        self.run_with(args, None).await
    }

    async fn run_with(&self, args: &[&str], stdin: Option<&str>) -> Outcome {
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .args(args)
            .env("RUDDER_SERVER", &self.servers)
            .env("RUDDER_CONFIG", self.config.path().join("none"))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("rudder runs");
        if let Some(text) = stdin {
            use tokio::io::AsyncWriteExt;
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(text.as_bytes()).await.unwrap();
        }
        let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("rudder finishes within 60 s")
            .unwrap();
        Outcome {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    async fn ok(&self, args: &[&str]) -> String {
        let outcome = self.run(args).await;
        assert!(
            outcome.ok,
            "rudder {args:?} failed:\n{}{}",
            outcome.stdout, outcome.stderr
        );
        outcome.stdout
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all).await).expect("get -o json prints JSON")
    }
}

fn manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests")
}

fn header(table: &str) -> Vec<String> {
    let line = table.lines().next().unwrap_or("");
    // Columns are separated by at least two spaces ("NOMINATED NODE" is one column).
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_from_the_docs_apply_read_back_and_change_through_the_cli() {
    let cluster = ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 3, &[]).unwrap();
    let cli = Cli::new(&cluster.endpoints());
    let dir = manifests();
    let dir = dir.to_str().unwrap();

    let applied = cli.ok(&["apply", "-f", dir]).await;
    for line in [
        "namespace/shop created",
        "configmap/game-demo created",
        "secret/dotfile-secret created",
        "deployment.apps/nginx-deployment created",
        "service/my-service created",
        "daemonset.apps/fluentd-elasticsearch created",
        "service/nginx created",
        "statefulset.apps/web created",
        "job.batch/pi created",
    ] {
        assert!(applied.contains(line), "missing {line:?} in:\n{applied}");
    }
    // Applying again changes nothing.
    let again = cli.ok(&["apply", "-f", dir]).await;
    assert!(again.lines().all(|l| l.ends_with(" unchanged")), "{again}");

    // Each object reads back as YAML with what the manifest said.
    let yaml = |kind: &'static str, name: &'static str| {
        let cli = &cli;
        async move {
            let text = cli
                .ok(&["get", kind, name, "-n", "shop", "-o", "yaml"])
                .await;
            serde_yaml::from_str::<Value>(&text).expect("get -o yaml prints YAML")
        }
    };
    let deployment = yaml("deployment", "nginx-deployment").await;
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.14.2"
    );
    assert_eq!(deployment["spec"]["strategy"]["type"], "RollingUpdate");
    let config_map = yaml("cm", "game-demo").await;
    assert_eq!(config_map["data"]["player_initial_lives"], "3");
    let secret = yaml("secret", "dotfile-secret").await;
    assert_eq!(secret["data"]["username"], "YWRtaW4=");
    assert!(secret.get("stringData").is_none());
    assert_eq!(
        yaml("svc", "my-service").await["spec"]["ports"][0]["targetPort"],
        9376
    );
    assert_eq!(
        yaml("ds", "fluentd-elasticsearch").await["spec"]["template"]["spec"]["volumes"][0]["name"],
        "varlog"
    );
    assert_eq!(yaml("sts", "web").await["spec"]["serviceName"], "nginx");
    let job = yaml("job", "pi").await;
    assert_eq!(job["spec"]["backoffLimit"], 4);
    assert!(
        job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"].is_string()
    );
    let namespace = cli.json(&["get", "ns", "shop"]).await;
    assert_eq!(namespace["status"]["phase"], "Active");

    // Tables have kubectl's columns.
    let columns: BTreeMap<&str, Vec<&str>> = [
        (
            "deploy",
            vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        ),
        (
            "svc",
            vec![
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE",
            ],
        ),
        ("cm", vec!["NAME", "DATA", "AGE"]),
        ("secret", vec!["NAME", "TYPE", "DATA", "AGE"]),
        (
            "ds",
            vec![
                "NAME",
                "DESIRED",
                "CURRENT",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "NODE SELECTOR",
                "AGE",
            ],
        ),
        ("sts", vec!["NAME", "READY", "AGE"]),
        ("job", vec!["NAME", "COMPLETIONS", "DURATION", "AGE"]),
    ]
    .into_iter()
    .collect();
    for (kind, expected) in &columns {
        let table = cli.ok(&["get", kind, "-n", "shop"]).await;
        assert_eq!(header(&table), *expected, "get {kind}:\n{table}");
        assert!(
            table.lines().count() >= 2,
            "get {kind} shows no rows:\n{table}"
        );
    }
    let namespaces = cli.ok(&["get", "ns"]).await;
    assert_eq!(header(&namespaces), ["NAME", "STATUS", "AGE"]);
    assert!(
        namespaces
            .lines()
            .any(|l| l.starts_with("shop") && l.contains("Active")),
        "{namespaces}"
    );
    let everywhere = cli.ok(&["get", "cm", "-A"]).await;
    assert_eq!(header(&everywhere), ["NAMESPACE", "NAME", "DATA", "AGE"]);
    assert_eq!(
        cli.ok(&["get", "deploy", "-n", "shop", "-o", "name"])
            .await
            .trim(),
        "deployment.apps/nginx-deployment"
    );

    // scale and label change objects.
    let scaled = cli
        .ok(&[
            "scale",
            "deploy",
            "nginx-deployment",
            "-n",
            "shop",
            "--replicas",
            "5",
        ])
        .await;
    assert_eq!(scaled.trim(), "deployment.apps/nginx-deployment scaled");
    let labeled = cli
        .ok(&[
            "label",
            "deploy",
            "nginx-deployment",
            "-n",
            "shop",
            "tier=web",
        ])
        .await;
    assert_eq!(labeled.trim(), "deployment.apps/nginx-deployment labeled");
    let deployment = cli
        .json(&["get", "deploy", "nginx-deployment", "-n", "shop"])
        .await;
    assert_eq!(deployment["spec"]["replicas"], 5);
    assert_eq!(deployment["metadata"]["labels"]["tier"], "web");
    let relabel = cli
        .run(&[
            "label",
            "deploy",
            "nginx-deployment",
            "-n",
            "shop",
            "tier=db",
        ])
        .await;
    assert!(
        !relabel.ok && relabel.stderr.contains("--overwrite"),
        "{}",
        relabel.stderr
    );
    let selected = cli
        .ok(&[
            "get", "deploy", "-n", "shop", "-l", "tier=web", "-o", "name",
        ])
        .await;
    assert_eq!(selected.trim(), "deployment.apps/nginx-deployment");

    // A manifest carrying a stale resourceVersion is a conflict and changes nothing.
    let config_map = cli.json(&["get", "cm", "game-demo", "-n", "shop"]).await;
    cli.ok(&["label", "cm", "game-demo", "-n", "shop", "touched=yes"])
        .await;
    let mut stale = config_map.clone();
    stale["data"]["player_initial_lives"] = Value::from("9");
    let conflict = cli
        .run_with(&["apply", "-f", "-"], Some(&stale.to_string()))
        .await;
    assert!(
        !conflict.ok,
        "a stale apply succeeded:\n{}",
        conflict.stdout
    );
    assert!(conflict.stderr.contains("Conflict"), "{}", conflict.stderr);
    let unchanged = cli.json(&["get", "cm", "game-demo", "-n", "shop"]).await;
    assert_eq!(unchanged["data"]["player_initial_lives"], "3");

    // Errors name the problem.
    let unknown = cli.run(&["get", "gizmos"]).await;
    assert!(
        !unknown.ok
            && unknown
                .stderr
                .contains("doesn't have a resource type \"gizmos\""),
        "{}",
        unknown.stderr
    );
    let missing = cli.run(&["get", "pod", "nope"]).await;
    assert!(
        !missing.ok
            && missing
                .stderr
                .contains("Error from server (NotFound): pods \"nope\" not found"),
        "{}",
        missing.stderr
    );
    let invalid = cli
        .run_with(
            &["apply", "-f", "-"],
            Some("kind: ConfigMap\nmetadata: [\n"),
        )
        .await;
    assert!(
        !invalid.ok && invalid.stderr.contains("invalid YAML"),
        "{}",
        invalid.stderr
    );
    let negative = cli
        .run(&[
            "scale",
            "deploy",
            "nginx-deployment",
            "-n",
            "shop",
            "--replicas",
            "-1",
        ])
        .await;
    assert!(
        !negative.ok && negative.stderr.contains("spec.replicas"),
        "{}",
        negative.stderr
    );

    // Deleting the namespace deletes what is in it.
    cli.ok(&["delete", "ns", "shop"]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let gone = cli.run(&["get", "ns", "shop"]).await;
        if !gone.ok && gone.stderr.contains("NotFound") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "namespace shop still there"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left = cli
        .run(&["get", "deploy,cm,svc", "-n", "shop", "-o", "name"])
        .await;
    assert!(
        left.stdout.trim().is_empty(),
        "left behind: {}",
        left.stdout
    );
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_app_walkthrough_runs_with_rudders_verbs() {
    let cluster = ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 3, &[]).unwrap();
    let cli = Cli::new(&cluster.endpoints());
    let run = cli
        .ok(&[
            "run",
            "kubia",
            "--image=luksa/kubia",
            "--port=8080",
            "--generator=run/v1",
        ])
        .await;
    assert_eq!(run.trim(), "replicationcontroller/kubia created");
    let exposed = cli
        .ok(&[
            "expose",
            "rc",
            "kubia",
            "--type=LoadBalancer",
            "--name",
            "kubia-http",
        ])
        .await;
    assert_eq!(exposed.trim(), "service/kubia-http exposed");
    let scaled = cli.ok(&["scale", "rc", "kubia", "--replicas=3"]).await;
    assert_eq!(scaled.trim(), "replicationcontroller/kubia scaled");
    let rcs = cli.ok(&["get", "rc"]).await;
    assert_eq!(header(&rcs), ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]);
    assert!(
        rcs.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("kubia") && l.contains(" 3 ")),
        "{rcs}"
    );
    let services = cli.ok(&["get", "services"]).await;
    assert_eq!(
        header(&services),
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    // The API server gave it a cluster IP, an EXTERNAL-IP from the pool and a node port; the
    // cluster's own `kubernetes` Service sits at the range's first address.
    let row = services
        .lines()
        .find(|l| l.starts_with("kubia-http"))
        .unwrap_or_else(|| panic!("{services}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1], "LoadBalancer", "{services}");
    assert!(cells[2].starts_with("10."), "a cluster IP: {services}");
    assert!(
        cells[3].starts_with("10.112.0."),
        "an EXTERNAL-IP: {services}"
    );
    let (port, node_port) = cells[4].split_once(':').expect("8080:3xxxx/TCP");
    assert_eq!(port, "8080", "{services}");
    let node_port: u16 = node_port.trim_end_matches("/TCP").parse().unwrap();
    assert!((30000..=32767).contains(&node_port), "{services}");
    assert!(
        services.lines().any(|l| l.starts_with("kubernetes ")
            && l.contains(" 10.96.0.1 ")
            && l.contains("443/TCP")),
        "{services}"
    );
    let service = cli.json(&["get", "svc", "kubia-http"]).await;
    assert_eq!(service["spec"]["selector"]["run"], "kubia");
    assert_eq!(service["spec"]["ports"][0]["port"], 8080);
    let described = cli.ok(&["describe", "rc", "kubia"]).await;
    assert!(
        described.contains("kubia") && described.contains("Events:"),
        "{described}"
    );
    // The controller manager (on the master holding its lease) gives the RC its 3 pods;
    // with no scheduler yet they wait for a node.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let pods = cli.json(&["get", "pods", "-l", "run=kubia"]).await;
        let items = pods["items"].as_array().cloned().unwrap_or_default();
        let owned = items
            .iter()
            .all(|p| p["metadata"]["ownerReferences"][0]["kind"] == "ReplicationController");
        if items.len() == 3 && owned {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rc's 3 pods within 30 s: {pods}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pods = cli.ok(&["get", "pods", "-o", "wide"]).await;
    assert_eq!(
        pods.lines().filter(|l| l.starts_with("kubia-")).count(),
        3,
        "{pods}"
    );
    let status = cli.ok(&["cluster", "status"]).await;
    assert_eq!(status.lines().count(), 4, "{status}");
    assert_eq!(status.matches("leader").count(), 1, "{status}");
    // Headline figures from each master's metrics: one runs the controllers (they made the
    // pods above), each saw at least one leader and uses some memory.
    assert!(
        status.lines().next().unwrap().contains("LEADER CHANGES"),
        "{status}"
    );
    assert_eq!(status.matches("controllers").count(), 1, "{status}");
    for row in status.lines().skip(1) {
        let columns: Vec<&str> = row.split("  ").filter(|c| !c.trim().is_empty()).collect();
        let memory = columns[columns.len() - 2].trim();
        assert!(memory.ends_with(" MB"), "memory of each master: {status}");
        assert_ne!(
            columns[columns.len() - 4].trim(),
            "?",
            "fsync p99: {status}"
        );
    }
    let version = cli.ok(&["version"]).await;
    assert!(version.contains("Server Version"), "{version}");
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_watch_misses_no_event_while_its_master_is_killed() {
    let mut cluster = ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 3, &[]).unwrap();
    let endpoints = cluster.endpoints();
    // The watch talks to the first master; writes go through the other two.
    let watcher = Cli::new(&endpoints);
    let writer = Cli::new(&endpoints[1..]);
    let mut child = tokio::process::Command::new(&watcher.binary)
        .args(["get", "cm", "-w", "-o", "name", "--output-watch-events"])
        .env("RUDDER_SERVER", &watcher.servers)
        .env("RUDDER_CONFIG", watcher.config.path().join("none"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The first event proves the watch is established before the master dies.
    let first = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"w00"}}"#;
    let created = writer.run_with(&["create", "-f", "-"], Some(first)).await;
    assert!(created.ok, "{}", created.stderr);
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(line.as_deref(), Some("ADDED configmap/w00"));

    let mut expected = vec!["ADDED configmap/w00".to_string()];
    for i in 1..20 {
        if i == 5 {
            cluster.members[0].kill();
        }
        let body =
            format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"w{i:02}"}}}}"#);
        let created = writer.run_with(&["create", "-f", "-"], Some(&body)).await;
        assert!(created.ok, "{}", created.stderr);
        expected.push(format!("ADDED configmap/w{i:02}"));
    }
    let mut seen = vec![line.unwrap()];
    while seen.len() < expected.len() {
        match tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await {
            Ok(Ok(Some(line))) => seen.push(line),
            other => panic!("the watch stopped after {seen:?}: {other:?}"),
        }
    }
    assert_eq!(seen, expected, "every event exactly once, in order");
    let _ = child.kill().await;
    drop(cluster);
}
