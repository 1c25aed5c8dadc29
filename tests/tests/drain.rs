//! `rudder cordon`, `uncordon` and `drain` against a real master (`rudder server`, with its
//! controllers and scheduler) and two hollow nodes: cordon and uncordon say what kubectl
//! (v1.32) says; drain refuses a node with an unmanaged pod and a DaemonSet pod until told
//! (`--force`, `--ignore-daemonsets`); then it evicts the node's pods as their
//! PodDisruptionBudget allows — refused evictions (the other node stays cordoned until one
//! is refused) are retried while the Deployment's replacements start on the other node —
//! waits until they are gone and says
//! `node/h-0 drained`. `get pdb` shows kubectl's columns.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rudder_proto::api::ListRequest;
use rudder_proto::client::ApiClient;
use rudder_tests::{
    hollow_nodes, is_ready, rudder_binary_beside_tests, short_lease_flags, until,
    wait_for_default_namespace, ProcessCluster,
};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt};

struct Outcome {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// The CLI against the test's master.
struct Cli {
    binary: PathBuf,
    servers: String,
    config: tempfile::TempDir,
}

impl Cli {
    async fn run(&self, args: &[&str]) -> Outcome {
        self.start(args).finish().await
    }

    /// `rudder ARGS...` started, its output read as it comes.
    fn start(&self, args: &[&str]) -> Running {
        let mut child = tokio::process::Command::new(&self.binary)
            .args(args)
            .env("RUDDER_SERVER", &self.servers)
            .env("RUDDER_CONFIG", self.config.path().join("none"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("rudder runs");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let stderr_so_far = Arc::new(Mutex::new(String::new()));
        Running {
            child,
            stdout: tokio::spawn(read_all(stdout, Arc::default())),
            stderr: tokio::spawn(read_all(stderr, stderr_so_far.clone())),
            stderr_so_far,
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
}

/// A `rudder` command still running.
struct Running {
    child: tokio::process::Child,
    stdout: tokio::task::JoinHandle<String>,
    stderr: tokio::task::JoinHandle<String>,
    /// What it has written to stderr so far.
    stderr_so_far: Arc<Mutex<String>>,
}

impl Running {
    /// Waits (60 s at most) until its stderr says `text`.
    async fn wait_for_stderr(&self, text: &str) {
        until(
            &format!("rudder's stderr says {text:?}"),
            Duration::from_secs(60),
            async || self.stderr_so_far.lock().unwrap().contains(text),
        )
        .await;
    }

    /// Waits (150 s at most) for it to end; what it said and whether it succeeded.
    async fn finish(mut self) -> Outcome {
        let status = tokio::time::timeout(Duration::from_secs(150), self.child.wait())
            .await
            .expect("rudder finishes within 150 s")
            .expect("rudder's exit status");
        Outcome {
            ok: status.success(),
            stdout: self.stdout.await.expect("stdout read"),
            stderr: self.stderr.await.expect("stderr read"),
        }
    }
}

/// Everything `from` gives until it ends, kept in `so_far` as it arrives.
async fn read_all(mut from: impl AsyncRead + Unpin, so_far: Arc<Mutex<String>>) -> String {
    let mut chunk = [0u8; 4096];
    let mut bytes = Vec::new();
    while let Ok(read) = from.read(&mut chunk).await {
        if read == 0 {
            break;
        }
        bytes.extend_from_slice(&chunk[..read]);
        *so_far.lock().unwrap() = String::from_utf8_lossy(&bytes).into_owned();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The live (not being deleted) pods of `app=<app>`.
async fn live_pods(client: &ApiClient, app: &str) -> Vec<Value> {
    let listed = client
        .list(ListRequest {
            resource: "pods".into(),
            namespace: "default".into(),
            label_selector: format!("app={app}"),
            ..Default::default()
        })
        .await;
    listed
        .map(|l| l.items)
        .unwrap_or_default()
        .iter()
        .filter_map(|item| serde_json::from_slice::<Value>(item).ok())
        .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

fn node_of(pod: &Value) -> &str {
    pod["spec"]["nodeName"].as_str().unwrap_or_default()
}

fn header(table: &str) -> Vec<String> {
    let line = table.lines().next().unwrap_or("");
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_evicts_a_nodes_pods_as_their_budget_allows_and_refuses_what_cannot_come_back() {
    let cluster =
        ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 1, &short_lease_flags())
            .unwrap();
    let servers = cluster.endpoints().join(",");
    let client = ApiClient::new(cluster.endpoints());
    let cli = Cli {
        binary: rudder_binary_beside_tests(),
        servers: servers.clone(),
        config: tempfile::tempdir().unwrap(),
    };
    wait_for_default_namespace(&client).await;
    let mut hollow = hollow_nodes(&servers, "h", 2);
    until(
        "2 ready hollow nodes",
        Duration::from_secs(60),
        async || {
            let listed = client
                .list(ListRequest {
                    resource: "nodes".into(),
                    ..Default::default()
                })
                .await;
            let nodes: Vec<Value> = listed
                .map(|l| l.items)
                .unwrap_or_default()
                .iter()
                .filter_map(|item| serde_json::from_slice(item).ok())
                .collect();
            nodes.len() == 2 && nodes.iter().all(is_ready)
        },
    )
    .await;

    // Cordon and uncordon, in kubectl's words.
    assert_eq!(cli.ok(&["cordon", "h-1"]).await.trim(), "node/h-1 cordoned");
    assert_eq!(
        cli.ok(&["cordon", "h-1"]).await.trim(),
        "node/h-1 already cordoned"
    );
    let node = client.get_object("nodes", "", "h-1").await.unwrap();
    assert_eq!(node["spec"]["unschedulable"], true);

    // With h-1 cordoned, everything new lands on h-0: 3 web pods guarded by a budget of
    // minAvailable 2, a DaemonSet pod and a pod no controller manages.
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "web", "namespace": "default" },
        "spec": { "replicas": 3, "selector": { "matchLabels": { "app": "web" } },
                  "template": { "metadata": { "labels": { "app": "web" } },
                                "spec": { "containers": [{ "name": "c", "image": "kubia" }] } } }
    });
    client
        .create_object("deployments", "default", &deployment)
        .await
        .expect("creating the deployment");
    let daemon_set = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": { "name": "agent", "namespace": "default" },
        "spec": { "selector": { "matchLabels": { "app": "agent" } },
                  "template": { "metadata": { "labels": { "app": "agent" } },
                                "spec": { "containers": [{ "name": "c", "image": "kubia" }] } } }
    });
    client
        .create_object("daemonsets", "default", &daemon_set)
        .await
        .expect("creating the DaemonSet");
    let lone = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "lone", "namespace": "default", "labels": { "app": "lone" } },
        "spec": { "nodeName": "h-0", "containers": [{ "name": "c", "image": "kubia" }] }
    });
    client
        .create_object("pods", "default", &lone)
        .await
        .expect("creating the unmanaged pod");
    let budget = json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": { "name": "web", "namespace": "default" },
        "spec": { "minAvailable": 2, "selector": { "matchLabels": { "app": "web" } } }
    });
    client
        .create_object("poddisruptionbudgets", "default", &budget)
        .await
        .expect("creating the budget");
    until(
        "3 ready web pods on h-0, an agent and the lone pod there",
        Duration::from_secs(60),
        async || {
            let web = live_pods(&client, "web").await;
            let agent = live_pods(&client, "agent").await;
            let lone = live_pods(&client, "lone").await;
            web.len() == 3
                && web.iter().all(|p| node_of(p) == "h-0" && is_ready(p))
                && agent.iter().any(|p| node_of(p) == "h-0" && is_ready(p))
                && lone.iter().any(is_ready)
        },
    )
    .await;
    until(
        "the budget allows one disruption",
        Duration::from_secs(30),
        async || {
            let pdb = client
                .get_object("poddisruptionbudgets", "default", "web")
                .await;
            pdb.is_ok_and(|b| b["status"]["disruptionsAllowed"] == 1)
        },
    )
    .await;
    let budgets = cli.ok(&["get", "pdb"]).await;
    assert_eq!(
        header(&budgets),
        [
            "NAME",
            "MIN AVAILABLE",
            "MAX UNAVAILABLE",
            "ALLOWED DISRUPTIONS",
            "AGE"
        ]
    );
    let row: Vec<&str> = budgets
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(row[..4], ["web", "2", "N/A", "1"], "{budgets}");

    // Without --force and --ignore-daemonsets drain cordons, then refuses, evicting nothing.
    let refused = cli.run(&["drain", "h-0"]).await;
    assert!(!refused.ok, "{}{}", refused.stdout, refused.stderr);
    assert_eq!(refused.stdout.trim(), "node/h-0 cordoned");
    // kubectl v1.32's words, its doubled "cannot delete" included.
    for expected in [
        "\ncannot delete cannot delete Pods that declare no controller (use --force to \
         override): default/lone\n",
        "\ncannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): \
         default/agent-",
        "error: unable to drain node \"h-0\" due to error: [",
        "], continuing command...\nThere are pending nodes to be drained:\n h-0\n",
    ] {
        assert!(
            refused.stderr.contains(expected),
            "{expected:?} in:\n{}",
            refused.stderr
        );
    }
    assert_eq!(live_pods(&client, "web").await.len(), 3);
    assert_eq!(live_pods(&client, "lone").await.len(), 1);

    // Told: the pods go as the budget allows, the refused evictions are retried while the
    // replacements start on h-1, and drain waits until every evicted pod is gone. h-1 stays
    // cordoned until drain has been refused once: no replacement can be ready before, so the
    // budget refuses for certain (with replacements ready in milliseconds, the server's own
    // retry after a contended budget could otherwise succeed and nothing be refused).
    let web_pods: Vec<String> = live_pods(&client, "web")
        .await
        .iter()
        .map(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let draining = cli.start(&[
        "drain",
        "h-0",
        "--force",
        "--ignore-daemonsets",
        "--timeout",
        "120s",
    ]);
    draining
        .wait_for_stderr("Cannot evict pod as it would violate the pod's disruption budget.")
        .await;
    assert_eq!(
        cli.ok(&["uncordon", "h-1"]).await.trim(),
        "node/h-1 uncordoned"
    );
    let drained = draining.finish().await;
    assert!(drained.ok, "{}{}", drained.stdout, drained.stderr);
    let out = &drained.stdout;
    assert!(out.starts_with("node/h-0 already cordoned\n"), "{out}");
    assert!(out.ends_with("node/h-0 drained\n"), "{out}");
    for name in web_pods.iter().map(String::as_str).chain(["lone"]) {
        for line in [
            format!("evicting pod default/{name}"),
            format!("pod/{name} evicted"),
        ] {
            assert!(out.lines().any(|l| l == line), "{line:?} in:\n{out}");
        }
    }
    let err = &drained.stderr;
    for expected in [
        "Warning: ",
        "deleting Pods that declare no controller: default/lone",
        "ignoring DaemonSet-managed Pods: default/agent-",
        "-n \"default\" (will retry after 5s): Cannot evict pod as it would violate the pod's \
         disruption budget.",
    ] {
        assert!(err.contains(expected), "{expected:?} in:\n{err}");
    }
    // The evicted pods are gone; the Deployment's replacements run on h-1 (the last one may
    // still be starting when drain returns), and the DaemonSet's pod stays on h-0.
    for name in &web_pods {
        assert!(client
            .get_object("pods", "default", name)
            .await
            .unwrap_err()
            .is_not_found());
    }
    assert!(live_pods(&client, "lone").await.is_empty());
    until("3 web pods on h-1", Duration::from_secs(60), async || {
        let web = live_pods(&client, "web").await;
        web.len() == 3 && web.iter().all(|p| node_of(p) == "h-1")
    })
    .await;
    assert!(live_pods(&client, "agent")
        .await
        .iter()
        .any(|p| node_of(p) == "h-0"));
    assert_eq!(
        cli.ok(&["uncordon", "h-0"]).await.trim(),
        "node/h-0 uncordoned"
    );
    hollow.kill().await.expect("stopping the hollow nodes");
    drop(cluster);
}
