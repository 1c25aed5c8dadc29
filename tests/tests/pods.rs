//! Real pods on a real node (root: namespaces, cgroups, overlayfs, veth): the seeds' kubia
//! pod answers on its pod IP with its name, `logs` and `exec` reach it, it survives a
//! kubelet restart, and deleting it frees everything; crash loops back off, probes act,
//! memory limits OOM-kill, and a missing image says so; Jobs run to completion or to their
//! backoff limit.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rudder_proto::client::ApiClient;
use rudder_proto::metrics::sample;
use rudder_tests::{
    announced_metrics, is_live, promtool_accepts, revision, rudder_binary_beside_tests, wait_for,
    wait_for_default_namespace, Follow, NodeScratch, ProcessCluster, Watch,
};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

/// A node with its own state, images (kubia imported) and pod range; killed by PID when
/// dropped (its scratch directory then removes its bridge).
struct Node {
    child: Child,
    dir: PathBuf,
    flags: Vec<String>,
    name: String,
    cidr: String,
    servers: String,
}

impl Node {
    fn start(
        scratch: &NodeScratch,
        name: &str,
        cidr: &str,
        servers: &str,
        extra: Vec<String>,
    ) -> Self {
        let mut flags = scratch.flags();
        flags.extend(extra);
        let mut node = Self {
            child: Command::new("true").spawn().unwrap(),
            dir: scratch.dir.path().to_path_buf(),
            flags,
            name: name.into(),
            cidr: cidr.into(),
            servers: servers.into(),
        };
        node.child = node.spawn();
        node
    }

    fn spawn(&self) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))
            .unwrap();
        Command::new(rudder_binary_beside_tests())
            .args(["node", "--name", &self.name, "--pod-cidr", &self.cidr])
            .args(&self.flags)
            .args(["--crash-backoff-ms", "500", "--server", &self.servers])
            .args(["--lease-renew-ms", "1000", "--status-update-ms", "1000"])
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("rudder node starts")
    }

    async fn kill_and_restart(&mut self) {
        self.child.kill().await.unwrap();
        self.child = self.spawn();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }
}

/// One master and one real node (kubia imported into its store unless the test pushes its
/// own). Fields drop in order: the node first, the scratch directory (and its cleanup) last.
struct Setup {
    node: Node,
    client: ApiClient,
    servers: String,
    _cluster: ProcessCluster,
    scratch: NodeScratch,
}

impl Setup {
    /// `prepare` gets the scratch directory before the node starts and returns extra node
    /// flags.
    fn start(
        node: &str,
        cidr: &str,
        import: bool,
        prepare: impl FnOnce(&Path) -> Vec<String>,
    ) -> Self {
        let scratch = NodeScratch::new(node);
        if import {
            import_kubia(scratch.dir.path());
        }
        let extra = prepare(scratch.dir.path());
        let cluster = ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 1, &[]).unwrap();
        let servers = cluster.endpoints().join(",");
        let client = ApiClient::new(cluster.endpoints());
        // The master makes the default namespace a moment after it is ready: a test that
        // creates at once would race it.
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(wait_for_default_namespace(&client))
        });
        let node = Node::start(&scratch, node, cidr, &servers, extra);
        Self {
            node,
            client,
            servers,
            _cluster: cluster,
            scratch,
        }
    }
}

/// Builds the kubia image's OCI layout under `dir`; returns its path.
fn build_kubia(dir: &Path) -> PathBuf {
    let layout = dir.join("kubia-layout");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-kubia-image.sh");
    assert!(std::process::Command::new(script)
        .arg(&layout)
        .status()
        .unwrap()
        .success());
    layout
}

fn import_kubia(dir: &Path) {
    let layout = build_kubia(dir);
    let out = std::process::Command::new(rudder_binary_beside_tests())
        .args(["image", "import"])
        .arg(&layout)
        .args(["--name", "luksa/kubia"])
        .arg("--root")
        .arg(dir.join("images"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn until(
    client: &ApiClient,
    name: &str,
    what: &str,
    within: Duration,
    node: &Node,
    condition: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    let mut last = Value::Null;
    loop {
        if let Ok(pod) = client.get_object("pods", "default", name).await {
            if condition(&pod) {
                return pod;
            }
            last = pod;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within {within:?}; pod status: {}\nnode log:\n{}",
            last["status"],
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the metrics node `node` serves on its endpoint (its Node's kubelet port),
/// as promtool accepts them, show `name` at `at_least`; returns them.
async fn node_metrics(client: &ApiClient, node: &str, name: &str, at_least: f64) -> String {
    wait_for(
        &format!("{node}'s {name} at {at_least}"),
        Duration::from_secs(20),
        async || {
            let object = client
                .get_object("nodes", "", node)
                .await
                .map_err(|error| error.to_string())?;
            let port = &object["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"];
            let text = promtool_accepts(&format!("127.0.0.1:{port}")).await?;
            match sample(&text, name, &[]) {
                Some(value) if value >= at_least => Ok(text),
                seen => Err(format!("{name} = {seen:?}")),
            }
        },
    )
    .await
}

/// The sum of the restart counts the API shows for the pods on `node`.
async fn restarts_shown(client: &ApiClient, node: &str) -> Result<f64, String> {
    let listed = client
        .list(rudder_proto::api::ListRequest {
            resource: "pods".into(),
            field_selector: format!("spec.nodeName={node}"),
            ..Default::default()
        })
        .await
        .map_err(|error| error.to_string())?;
    let mut sum = 0.0;
    for item in &listed.items {
        let pod: Value = serde_json::from_slice(item).map_err(|error| error.to_string())?;
        let statuses = pod["status"]["containerStatuses"].as_array().cloned();
        sum += statuses
            .unwrap_or_default()
            .iter()
            .filter_map(|status| status["restartCount"].as_f64())
            .sum::<f64>();
    }
    Ok(sum)
}

/// The node's restart counter agrees with the restarts the API shows (each reported
/// restart counted, none twice): read between two reads of the API, it lies between them.
async fn restarts_are_counted_once(client: &ApiClient, node: &str) {
    let name = "rudder_kubelet_container_restarts_total";
    wait_for(
        "restarts counted as reported",
        Duration::from_secs(20),
        async || {
            let shown_before = restarts_shown(client, node).await?;
            let counted = sample(&node_metrics(client, node, name, 0.0).await, name, &[]);
            let shown_after = restarts_shown(client, node).await?;
            match counted {
                Some(counted)
                    if shown_before >= 2.0 && (shown_before..=shown_after).contains(&counted) =>
                {
                    Ok(())
                }
                _ => Err(format!(
                    "counted {counted:?}, the API showed {shown_before} then {shown_after}"
                )),
            }
        },
    )
    .await;
}

fn container(pod: &Value) -> &Value {
    &pod["status"]["containerStatuses"][0]
}

fn running(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running" && container(pod)["state"]["running"].is_object()
}

fn http_get(ip: &str, port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(
        &format!("{ip}:{port}").parse().unwrap(),
        Duration::from_secs(2),
    )?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// `rudder ARGS...` against the cluster: (success, stdout, stderr).
async fn rudder(servers: &str, args: &[&str]) -> (bool, String, String) {
    // The subcommand, then --server (an exec's command after `--` takes the rest).
    let out = Command::new(rudder_binary_beside_tests())
        .arg(args[0])
        .args(["--server", servers])
        .args(&args[1..])
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `rudder ARGS` (as [`rudder`]) with `input` as its standard input, which then ends: its
/// stdout, once it succeeded.
async fn rudder_typed_at(servers: &str, args: &[&str], input: &[u8]) -> String {
    let mut typed_at = Command::new(rudder_binary_beside_tests())
        .arg(args[0])
        .args(["--server", servers])
        .args(&args[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = typed_at.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, input)
        .await
        .unwrap();
    drop(stdin);
    let out = typed_at.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "rudder {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Creates a pod of `container` (named as it is) on pods-a that runs once, and waits for it
/// to run.
async fn run_once(client: &ApiClient, node: &Node, container: Value) {
    let name = container["name"].as_str().unwrap().to_string();
    let once = json!({ "restartPolicy": "Never" });
    create_pod(client, pod(&name, "pods-a", container, once)).await;
    let what = format!("{name} Running");
    until(client, &name, &what, Duration::from_secs(30), node, running).await;
}

/// `rudder attach POD` with its output piped (the caller ends it).
fn rudder_attach(servers: &str, pod: &str) -> std::process::Child {
    std::process::Command::new(rudder_binary_beside_tests())
        .args(["attach", "--server", servers, pod])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `rudder node --name NAME` against `servers`, with the scratch's directories, fast
/// heartbeats and its log in `node.log`; killed when dropped.
fn spawn_node(scratch: &NodeScratch, name: &str, servers: &str) -> Child {
    let log = std::fs::File::create(scratch.dir.path().join("node.log")).unwrap();
    Command::new(rudder_binary_beside_tests())
        .args(["node", "--name", name, "--server", servers])
        .args(scratch.flags())
        .args(["--lease-renew-ms", "1000", "--status-update-ms", "1000"])
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("rudder node starts")
}

/// Creates the pod; a master just started may not have made the default namespace yet.
async fn create_pod(client: &ApiClient, pod: Value) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match client.create_object("pods", "default", &pod).await {
            Ok(created) => return created,
            Err(error) if error.is_not_found() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("creating pod {}: {error}", pod["metadata"]["name"]),
        }
    }
}

fn pod(name: &str, node: &str, container: Value, extra_spec: Value) -> Value {
    let mut spec = json!({
        "nodeName": node,
        "terminationGracePeriodSeconds": 2,
        "containers": [container],
    });
    for (k, v) in extra_spec.as_object().unwrap() {
        spec[k] = v.clone();
    }
    json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name }, "spec": spec })
}

/// Everything a pod leaves on the machine, by its uid: network namespace, veth, mounts,
/// cgroups.
fn leftovers(node_dir: &Path, uid: &str) -> Vec<String> {
    let mut found = Vec::new();
    if node_dir.join("state/netns").join(uid).exists() {
        found.push(format!("netns {uid}"));
    }
    if node_dir.join("state/pods").join(uid).exists() {
        found.push(format!("pod dir {uid}"));
    }
    let short: String = uid
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    found.extend(
        mounts
            .lines()
            .filter(|l| l.contains(uid))
            .map(|l| format!("mount {l}")),
    );
    for hierarchy in ["memory", "pids", "cpu", "unified", ""] {
        let dir = Path::new("/sys/fs/cgroup").join(hierarchy).join("rudder");
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&short) {
                found.push(format!("cgroup {hierarchy}/rudder/{name}"));
            }
        }
    }
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    let veth = veth_name(uid);
    if String::from_utf8_lossy(&links.stdout).contains(&veth) {
        found.push(format!("veth {veth}"));
    }
    found
}

/// `nslookup name` in `pod` fails with NXDOMAIN.
async fn assert_nxdomain(servers: &str, pod: &str, name: &str) {
    let lookup = ["exec", pod, "--", "busybox", "nslookup", name];
    let (ok, out, err) = rudder(servers, &lookup).await;
    assert!(
        !ok && format!("{out}{err}").contains("NXDOMAIN"),
        "nslookup {name}: {out} {err}"
    );
}

/// The host end of a pod's veth.
fn veth_name(uid: &str) -> String {
    rudder_node::runtime::linux::network::interface_name("rv", uid)
}

async fn delete_and_wait_gone(client: &ApiClient, name: &str, node: &Node) {
    client
        .delete_object(rudder_proto::api::DeleteRequest {
            resource: "pods".into(),
            namespace: "default".into(),
            name: name.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while client.get_object("pods", "default", name).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "pod {name} was not deleted within 30 s\nnode log:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubia_pod_answers_on_its_ip_gives_logs_and_exec_survives_a_kubelet_restart_and_leaves_nothing(
) {
    let setup = Setup::start("pods-a", "10.244.61.0/24", true, |_| vec![]);
    let (client, servers, dir) = (&setup.client, &setup.servers, setup.scratch.dir.path());
    let mut node = setup.node;

    let created = create_pod(
        client,
        pod(
            "kubia",
            "pods-a",
            json!({ "name": "kubia", "image": "luksa/kubia", "ports": [{ "containerPort": 8080 }] }),
            json!({}),
        ),
    )
    .await;
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    let started = tokio::time::Instant::now();
    let up = until(
        client,
        "kubia",
        "kubia Running",
        Duration::from_secs(30),
        &node,
        running,
    )
    .await;
    println!("kubia Running after {:?}", started.elapsed());
    let ip = up["status"]["podIP"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.244.61."), "{ip}");
    // The node's metrics: the pod runs, its start was timed, the proxy wrote its table.
    node_metrics(client, "pods-a", "rudder_kubelet_running_pods", 1.0).await;
    let start_count = "rudder_kubelet_pod_start_duration_seconds_count";
    let metrics = node_metrics(client, "pods-a", start_count, 1.0).await;
    assert_eq!(
        sample(&metrics, start_count, &[]),
        Some(1.0),
        "timed once: {metrics}"
    );
    // What it uses, as `kubectl top` shows it: from its cgroup, through the masters. A busy
    // loop in the pod (bounded: 4 s) must show as most of a core.
    let mut busy = Command::new(rudder_binary_beside_tests())
        .args(["exec", "--server", servers, "kubia", "--", "sh", "-c"])
        .arg("timeout 4 sh -c 'while :; do :; done'; true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let top = rudder_until(servers, &["top", "pods"], Duration::from_secs(10), |top| {
        let cpu = top
            .lines()
            .find(|line| line.starts_with("kubia "))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|cpu| cpu.trim_end_matches('m').parse::<u64>().ok());
        cpu.is_some_and(|millicores| millicores >= 300)
    })
    .await;
    let kubia = top.lines().find(|line| line.starts_with("kubia ")).unwrap();
    assert!(
        kubia.split_whitespace().nth(2).unwrap().ends_with("Mi"),
        "{top}"
    );
    busy.wait().await.unwrap();
    let (ok, top, err) = rudder(servers, &["top", "nodes"]).await;
    assert!(ok, "{err}");
    let node_line = top
        .lines()
        .find(|line| line.starts_with("pods-a "))
        .unwrap_or_else(|| panic!("{top}"));
    assert!(!node_line.contains("<unknown>"), "{top}");
    assert!(
        metrics.contains("rudder_proxy_sync_duration_seconds_count"),
        "{metrics}"
    );
    assert_eq!(up["status"]["hostIP"], "127.0.0.1");
    assert_eq!(container(&up)["ready"], true);

    let answer = http_get(&ip, 8080, "/cgi-bin/index.cgi").expect("the pod answers on its IP");
    assert!(answer.contains("You've hit kubia"), "{answer}");

    let (ok, logs, err) = rudder(servers, &["logs", "kubia"]).await;
    assert!(ok, "{err}");
    assert!(logs.contains("Received request from"), "logs: {logs:?}");
    let (ok, last, err) = rudder(servers, &["logs", "kubia", "--tail", "1", "--timestamps"]).await;
    assert!(ok, "{err}");
    let (time, line) = last.trim_end().split_once(' ').unwrap_or_default();
    assert!(time.parse::<jiff::Timestamp>().is_ok(), "{last:?}");
    assert_eq!(Some(line), logs.lines().last());
    kubectl_reaches_the_pod_through_the_api(servers, dir, &ip);
    let (ok, hostname, err) = rudder(servers, &["exec", "kubia", "--", "hostname"]).await;
    assert!(ok, "{err}");
    assert_eq!(hostname.trim(), "kubia");
    let (ok, _, err) = rudder(servers, &["exec", "kubia", "--", "sh", "-c", "exit 7"]).await;
    assert!(!ok);
    assert!(err.contains("exit code 7"), "{err}");
    let counted = rudder_typed_at(
        servers,
        &["exec", "-i", "kubia", "--", "busybox", "wc", "-l"],
        b"a\nb\nc\n",
    )
    .await;
    assert_eq!(counted.trim(), "3");

    // A container made with stdin, to attach to across the kubelet's restart below (its
    // shim keeps the attach point).
    run_once(
        client,
        &node,
        json!({ "name": "typist", "image": "luksa/kubia", "stdin": true, "stdinOnce": true,
                "command": ["sh", "-c", "read line; echo \"got $line\""] }),
    )
    .await;
    // Attached to a container made without stdin: its output from now on.
    let mut following = rudder_attach(servers, "kubia");
    let followed = rudder_tests::lines_of(following.stdout.take().unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let line = loop {
        // Each request logs a line; the first may come before the attach.
        http_get(&ip, 8080, "/cgi-bin/index.cgi").unwrap();
        if let Ok(line) = followed.recv_timeout(Duration::from_millis(500)) {
            break line;
        }
        if std::time::Instant::now() >= deadline {
            let _ = following.kill();
            let said = following.wait_with_output().unwrap();
            panic!(
                "rudder attach showed nothing: {}",
                String::from_utf8_lossy(&said.stderr)
            );
        }
    };
    assert!(line.contains("Received request from"), "{line:?}");
    following.kill().unwrap();
    following.wait().unwrap();
    // ... and the attach ends when such a container does.
    run_once(
        client,
        &node,
        json!({ "name": "ticker", "image": "luksa/kubia",
                "command": ["sh", "-c", "for i in $(seq 25); do echo tick; sleep 0.2; done"] }),
    )
    .await;
    let mut ticks = rudder_attach(servers, "ticker");
    let ticked = rudder_tests::collect_until(
        &rudder_tests::chunks_of(ticks.stdout.take().unwrap()),
        Duration::from_secs(30),
        |_| false,
    );
    let ended = rudder_tests::wait_within(&mut ticks, Duration::from_secs(10));
    assert!(ended.is_some_and(|status| status.success()), "{ended:?}");
    assert!(ticked.starts_with("tick\n"), "{ticked:?}");

    // The kubelet dies and comes back: the container keeps running, untouched.
    let container_id = container(&up)["containerID"].clone();
    node.kill_and_restart().await;
    assert!(http_get(&ip, 8080, "/cgi-bin/index.cgi")
        .unwrap()
        .contains("You've hit kubia"));
    // What must not happen (the new kubelet stopping or restarting the container) has no
    // event to await: watch for 2 s, in which the new kubelet lists its pods and syncs (a
    // report of an unchanged status does not change the pod, so it cannot be awaited either).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = until(
        client,
        "kubia",
        "kubia still Running",
        Duration::from_secs(10),
        &node,
        running,
    )
    .await;
    assert_eq!(container(&after)["containerID"], container_id);
    assert_eq!(container(&after)["restartCount"], 0);
    let answered = rudder_typed_at(servers, &["attach", "-i", "typist"], b"hi\n").await;
    assert_eq!(answered, "got hi\n");
    assert!(http_get(&ip, 8080, "/cgi-bin/index.cgi")
        .unwrap()
        .contains("You've hit kubia"));

    // Deleted: stopped within its grace period (httpd as PID 1 ignores SIGTERM: SIGKILL
    // after 2 s), and nothing of it is left.
    let deleting = tokio::time::Instant::now();
    delete_and_wait_gone(client, "kubia", &node).await;
    assert!(
        deleting.elapsed() < Duration::from_secs(10),
        "{:?}",
        deleting.elapsed()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !leftovers(dir, &uid).is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(leftovers(dir, &uid), Vec::<String>::new());
    assert!(http_get(&ip, 8080, "/").is_err(), "the address is gone");
}

/// The real kubectl reads the kubia pod's log through the master's HTTP API (which asks the
/// node): all of it, the last line, and followed as a new request comes in; runs commands
/// in it with `kubectl exec`; and forwards a local port to it. Skipped without kubectl.
fn kubectl_reaches_the_pod_through_the_api(servers: &str, dir: &Path, ip: &str) {
    const KUBECTL: &str = "/usr/bin/kubectl";
    if !Path::new(KUBECTL).exists() {
        eprintln!("kubectl logs skipped: no kubectl at {KUBECTL}");
        return;
    }
    let server = servers.split(',').next().unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"http://{server}\"}}}}]\n\
             contexts: [{{name: c, context: {{cluster: c}}}}]\ncurrent-context: c\n"
        ),
    )
    .unwrap();
    let kubectl = |args: &[&str]| {
        let mut command = std::process::Command::new(KUBECTL);
        command
            .env("KUBECONFIG", &kubeconfig)
            .arg(format!("--cache-dir={}", dir.join("kube-cache").display()))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    };
    let all = kubectl(&["logs", "kubia"]).output().unwrap();
    let text = String::from_utf8_lossy(&all.stdout).into_owned();
    assert!(
        all.status.success(),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    assert!(text.contains("Received request from"), "{text:?}");
    let tail = kubectl(&["logs", "kubia", "--tail=1"]).output().unwrap();
    let tail = String::from_utf8_lossy(&tail.stdout).into_owned();
    assert_eq!(tail.lines().count(), 1, "{tail:?}");
    assert_eq!(Some(tail.trim_end()), text.lines().last());
    // Each line's time (the node's CRI-format files keep one per line), and from a time on.
    let stamped = kubectl(&["logs", "kubia", "--tail=1", "--timestamps"])
        .output()
        .unwrap();
    let stamped = String::from_utf8_lossy(&stamped.stdout).into_owned();
    let (time, line) = stamped.trim_end().split_once(' ').unwrap_or_default();
    assert!(time.parse::<jiff::Timestamp>().is_ok(), "{stamped:?}");
    assert_eq!(Some(line), text.lines().last());
    let since = |time: &str| {
        let out = kubectl(&["logs", "kubia", &format!("--since-time={time}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(since("2000-01-01T00:00:00Z"), text);
    assert_eq!(since("2999-01-01T00:00:00Z"), "");

    // A request made while following shows up in the followed log; attach follows the
    // container's output from now on, through the API server.
    for args in [
        &["logs", "-f", "kubia", "--tail=0"][..],
        &["attach", "kubia"],
    ] {
        let mut follow = kubectl(args).spawn().unwrap();
        let received = rudder_tests::lines_of(follow.stdout.take().unwrap());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let seen = loop {
            http_get(ip, 8080, "/cgi-bin/index.cgi").unwrap();
            if let Ok(line) = received.recv_timeout(Duration::from_millis(500)) {
                break line;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "kubectl {args:?} showed nothing new"
            );
        };
        assert!(seen.contains("Received request from"), "{args:?}: {seen:?}");
        follow.kill().unwrap();
        follow.wait().unwrap();
    }

    // exec over WebSocket, through the API server to the node.
    let hostname = kubectl(&["exec", "kubia", "--", "hostname"])
        .output()
        .unwrap();
    assert!(
        hostname.status.success(),
        "{}",
        String::from_utf8_lossy(&hostname.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&hostname.stdout), "kubia\n");
    let both = kubectl(&[
        "exec",
        "kubia",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ])
    .output()
    .unwrap();
    assert_eq!(both.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&both.stdout), "out\n");
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert!(stderr.starts_with("err\n"), "{stderr:?}");
    assert!(
        stderr.contains("command terminated with exit code 7"),
        "{stderr:?}"
    );
    // -i: the input reaches the command, whose output comes back; its end ends `cat`.
    let mut interactive = kubectl(&["exec", "-i", "kubia", "--", "busybox", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = interactive.stdin.take().unwrap();
    std::io::Write::write_all(&mut input, b"one\ntwo\n").unwrap();
    drop(input);
    let echoed = interactive.wait_with_output().unwrap();
    assert!(
        echoed.status.success(),
        "{}",
        String::from_utf8_lossy(&echoed.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&echoed.stdout), "one\ntwo\n");
    // 32 MiB, more than every buffer on the way holds: input and output must flow together
    // (a relay that waited on one direction stalled both).
    let mut large = kubectl(&["exec", "-i", "kubia", "--", "busybox", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = large.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..512 {
            std::io::Write::write_all(&mut input, &chunk).unwrap();
        }
    });
    let echoed = large.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        echoed.status.success(),
        "{}",
        String::from_utf8_lossy(&echoed.stderr)
    );
    assert_eq!(echoed.stdout.len(), 32 * 1024 * 1024);

    // kubectl on a terminal `cols` wide and `rows` high (script gives it one), with `args`.
    let kubectl_on_a_terminal = |cols: u16, rows: u16, args: &str| {
        std::process::Command::new("script")
            .args([
                "-qec",
                &format!(
                    "stty cols {cols} rows {rows}; KUBECONFIG={} {KUBECTL} --cache-dir={} {args}",
                    kubeconfig.display(),
                    dir.join("kube-cache").display()
                ),
                "/dev/null",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // -it: a shell on a terminal the size of kubectl's own (132 by 43), typed at once its
    // prompt shows; its exit code is kubectl's.
    let typed = "busybox stty size; exit 3\n";
    let mut terminal = kubectl_on_a_terminal(132, 43, "exec -it kubia -- sh");
    let mut keys = terminal.stdin.take().unwrap();
    let screen = rudder_tests::chunks_of(terminal.stdout.take().unwrap());
    let prompt =
        rudder_tests::collect_until(&screen, Duration::from_secs(20), |seen| seen.contains("# "));
    assert!(prompt.contains("# "), "no shell prompt: {prompt:?}");
    std::io::Write::write_all(&mut keys, typed.as_bytes()).unwrap();
    // The screen ends when the session does (a hang fails here, in time).
    let shown = prompt + &rudder_tests::collect_until(&screen, Duration::from_secs(20), |_| false);
    let status = rudder_tests::wait_within(&mut terminal, Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(3), "{shown:?}");
    assert!(shown.contains("43 132\r\n"), "{shown:?}");
    drop(keys);
    // A one-shot command on a terminal sees kubectl's size at once (the node waits for it).
    let mut one_shot = kubectl_on_a_terminal(100, 30, "exec -it kubia -- busybox stty size");
    let shown = rudder_tests::collect_until(
        &rudder_tests::chunks_of(one_shot.stdout.take().unwrap()),
        Duration::from_secs(20),
        |_| false,
    );
    rudder_tests::wait_within(&mut one_shot, Duration::from_secs(10));
    assert!(shown.contains("30 100"), "{shown:?}");

    // attach: `kubectl run -i` makes a pod with stdin (once), waits for it to run (placed
    // by the scheduler), attaches and types at it; the end of kubectl's input is the
    // container's, and `--rm` deletes the pod once it ended.
    let mut run = kubectl(&[
        "run",
        "typed-at",
        "-i",
        "--rm",
        "--restart=Never",
        "--image=luksa/kubia",
        "--image-pull-policy=Never",
        "--command",
        "--",
        "sh",
        "-c",
        "read first; echo \"got $first\"; cat; echo ended",
    ])
    .stdin(Stdio::piped())
    .spawn()
    .unwrap();
    std::io::Write::write_all(&mut run.stdin.take().unwrap(), b"one\ntwo\n").unwrap();
    let said = run.wait_with_output().unwrap();
    let shown = String::from_utf8_lossy(&said.stdout);
    assert!(
        said.status.success(),
        "{shown}{}",
        String::from_utf8_lossy(&said.stderr)
    );
    assert!(shown.contains("got one\ntwo\nended\n"), "{shown:?}");
    // -it: a shell on a terminal the size of kubectl's, its exit code kubectl's.
    let mut terminal = kubectl_on_a_terminal(
        120,
        40,
        "run shell -it --rm --restart=Never --image=luksa/kubia --image-pull-policy=Never \
         --command -- sh",
    );
    let mut keys = terminal.stdin.take().unwrap();
    let screen = rudder_tests::chunks_of(terminal.stdout.take().unwrap());
    // The shell's first prompt came before the attach: kubectl says to press enter.
    let mut shown = rudder_tests::collect_until(&screen, Duration::from_secs(30), |seen| {
        seen.contains("pressing enter")
    });
    assert!(shown.contains("pressing enter"), "kubectl said {shown:?}");
    // kubectl sizes the terminal beside the typing (and a size off by one first, to make
    // the shell redraw): ask until the size is kubectl's.
    for _ in 0..10 {
        std::io::Write::write_all(&mut keys, b"busybox stty size\n").unwrap();
        shown += &rudder_tests::collect_until(&screen, Duration::from_secs(3), |seen| {
            seen.contains("40 120\r\n")
        });
        if shown.contains("40 120\r\n") {
            break;
        }
    }
    assert!(shown.contains("40 120\r\n"), "{shown:?}");
    std::io::Write::write_all(&mut keys, b"exit 3\n").unwrap();
    shown += &rudder_tests::collect_until(&screen, Duration::from_secs(30), |_| false);
    let status = rudder_tests::wait_within(&mut terminal, Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(3), "{shown:?}");
    drop(keys);

    // port-forward (SPDY in a WebSocket, through the API server to the node, which connects
    // inside the pod): each local connection reaches the pod's 8080.
    let forwarding = |port: &str| {
        let mut forward = kubectl(&["port-forward", "pod/kubia", &format!(":{port}")])
            .spawn()
            .unwrap();
        // Read to the end: kubectl, a Go program, dies writing to a closed pipe.
        let said = rudder_tests::lines_of(forward.stdout.take().unwrap());
        let first = said.recv_timeout(Duration::from_secs(20));
        // "Forwarding from 127.0.0.1:PORT -> 8080"
        let local = first.as_ref().ok().and_then(|line| {
            let rest = line.strip_prefix("Forwarding from 127.0.0.1:")?;
            rest.split(' ').next()?.parse::<u16>().ok()
        });
        match local {
            Some(local) => (forward, said, local),
            None => {
                let _ = forward.kill();
                let out = forward.wait_with_output().unwrap();
                panic!(
                    "kubectl port-forward said {first:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    };
    let (mut forward, said, local) = forwarding("8080");
    for attempt in 0..3 {
        let answer = http_get("127.0.0.1", local, "/cgi-bin/index.cgi");
        if !answer
            .as_ref()
            .is_ok_and(|a| a.contains("You've hit kubia"))
        {
            let _ = forward.kill();
            let out = forward.wait_with_output().unwrap();
            panic!(
                "connection {attempt}: {answer:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    forward.kill().unwrap();
    forward.wait().unwrap();
    drop(said);
    // An echo server on the pod's 7000 (busybox nc, a cat per connection): two connections
    // at once through one session, 4 MiB each way, each half-closed by its client, which
    // the pod reads as the end of its input and answers by ending too.
    let started = kubectl(&[
        "exec",
        "kubia",
        "--",
        "sh",
        "-c",
        "busybox nc -ll -p 7000 -e /bin/cat >/dev/null 2>&1 &",
    ])
    .output()
    .unwrap();
    assert!(started.status.success(), "{started:?}");
    // Started in the background: connect only once it listens (port 7000 is 1B58).
    let listening = kubectl(&[
        "exec",
        "kubia",
        "--",
        "sh",
        "-c",
        "i=0; until cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | \
         grep -q ':1B58 [0-9A-F]*:0000 0A'; do i=$((i+1)); [ $i -gt 100 ] && exit 1; \
         sleep 0.1; done",
    ])
    .output()
    .unwrap();
    assert!(
        listening.status.success(),
        "the echo server listens: {listening:?}"
    );
    let (mut echo, said, local) = forwarding("7000");
    let round_trips: Vec<_> = (0..2u8)
        .map(|seed| {
            std::thread::spawn(move || {
                let sent: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8 ^ seed).collect();
                let connection = TcpStream::connect(("127.0.0.1", local)).unwrap();
                connection
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                let mut writer = connection.try_clone().unwrap();
                let to_send = sent.clone();
                let writing = std::thread::spawn(move || {
                    writer.write_all(&to_send).unwrap();
                    writer.shutdown(std::net::Shutdown::Write).unwrap();
                });
                let mut received = Vec::new();
                let read = (&connection).read_to_end(&mut received);
                writing.join().unwrap();
                (read.map(|_| ()), received == sent, received.len())
            })
        })
        .collect();
    for round_trip in round_trips {
        let (read, same, length) = round_trip.join().unwrap();
        if read.is_err() || !same {
            let _ = echo.kill();
            let out = echo.wait_with_output().unwrap();
            panic!(
                "echo through port-forward: {read:?}, {length} bytes back, same: {same}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    echo.kill().unwrap();
    echo.wait().unwrap();
    drop(said);
    // A port nothing listens on: the connection ends with nothing, and kubectl says why.
    let (mut refused, said, local) = forwarding("9999");
    let answer = http_get("127.0.0.1", local, "/");
    assert!(
        answer.as_deref().unwrap_or_default().is_empty(),
        "{answer:?}"
    );
    let _ = refused.kill();
    let out = refused.wait_with_output().unwrap();
    drop(said);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("error forwarding port 9999 to pod default/kubia")
            && said.contains("Connection refused"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_back_off_probes_act_limits_oom_kill_and_missing_images_say_so() {
    let setup = Setup::start("pods-b", "10.244.62.0/24", true, |_| vec![]);
    let (client, servers, dir) = (&setup.client, &setup.servers, setup.scratch.dir.path());
    let node = setup.node;

    let sh = |name: &str, script: &str| json!({ "name": name, "image": "luksa/kubia", "command": ["/bin/sh", "-c", script] });
    create_pod(
        client,
        pod(
            "crasher",
            "pods-b",
            sh("crasher", "echo attempt; exit 3"),
            json!({}),
        ),
    )
    .await;
    let mut hog = sh(
        "hog",
        "exec /bin/busybox dd if=/dev/zero of=/dev/null bs=64M count=1",
    );
    hog["resources"] = json!({ "limits": { "memory": "16Mi" } });
    create_pod(
        client,
        pod("hog", "pods-b", hog, json!({ "restartPolicy": "Never" })),
    )
    .await;
    let mut unready = json!({ "name": "unready", "image": "luksa/kubia" });
    unready["readinessProbe"] = json!({ "tcpSocket": { "port": 9999 }, "periodSeconds": 1 });
    create_pod(client, pod("unready", "pods-b", unready, json!({}))).await;
    let mut dying = json!({ "name": "dying", "image": "luksa/kubia" });
    dying["livenessProbe"] = json!({
        "httpGet": { "path": "/missing", "port": 8080 }, "periodSeconds": 1, "failureThreshold": 2,
    });
    create_pod(client, pod("dying", "pods-b", dying, json!({}))).await;
    create_pod(
        client,
        pod(
            "ghost",
            "pods-b",
            json!({ "name": "ghost", "image": "example.org/no/such:image" }),
            json!({}),
        ),
    )
    .await;

    // Exit 3, restarted with growing backoff: restart counts climb, CrashLoopBackOff waits.
    let looping = until(
        client,
        "crasher",
        "two restarts and a back-off",
        Duration::from_secs(30),
        &node,
        |p| {
            container(p)["restartCount"].as_i64() >= Some(2)
                && container(p)["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        },
    )
    .await;
    restarts_are_counted_once(client, "pods-b").await;
    assert_eq!(
        container(&looping)["lastState"]["terminated"]["exitCode"],
        3
    );
    assert!(container(&looping)["state"]["waiting"]["message"]
        .as_str()
        .unwrap()
        .contains("back-off"));
    let (ok, table, _) = rudder(servers, &["get", "pods"]).await;
    assert!(ok);
    let row = table
        .lines()
        .find(|l| l.starts_with("crasher"))
        .unwrap()
        .to_string();
    assert!(row.contains("CrashLoopBackOff"), "{table}");
    let restarts: i64 = row.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(restarts >= 2, "{table}");
    let (ok, previous, _) = rudder(servers, &["logs", "crasher", "--previous"]).await;
    assert!(ok && previous.contains("attempt"), "{previous}");

    // 64 MiB into a 16 MiB limit: OOM-killed, reported so, not restarted (Never).
    let oom = until(
        client,
        "hog",
        "hog OOMKilled",
        Duration::from_secs(30),
        &node,
        |p| container(p)["state"]["terminated"]["reason"] == "OOMKilled",
    )
    .await;
    assert_eq!(oom["status"]["phase"], "Failed");
    assert_eq!(container(&oom)["state"]["terminated"]["exitCode"], 137);

    // Readiness failing: Running, not Ready.
    let unready = until(
        client,
        "unready",
        "unready Running",
        Duration::from_secs(30),
        &node,
        running,
    )
    .await;
    // Readiness must never turn True: watch it for two probe periods.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let unready = client
        .get_object("pods", "default", "unready")
        .await
        .unwrap_or(unready);
    assert_eq!(container(&unready)["ready"], false);
    let ready_condition = unready["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready_condition["status"], "False");

    // Liveness failing (404): restarted.
    until(
        client,
        "dying",
        "a liveness restart",
        Duration::from_secs(30),
        &node,
        |p| container(p)["restartCount"].as_i64() >= Some(1),
    )
    .await;

    // An image nowhere to be found: ErrImagePull, then ImagePullBackOff, with the reason.
    let ghost = until(
        client,
        "ghost",
        "ImagePullBackOff",
        Duration::from_secs(30),
        &node,
        |p| container(p)["state"]["waiting"]["reason"] == "ImagePullBackOff",
    )
    .await;
    assert_eq!(ghost["status"]["phase"], "Pending");
    let message = container(&ghost)["state"]["waiting"]["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("example.org/no/such:image"), "{message}");

    for name in ["crasher", "hog", "unready", "dying", "ghost"] {
        delete_and_wait_gone(client, name, &node).await;
    }
    let left = std::fs::read_dir(dir.join("state/pods")).unwrap().count();
    assert_eq!(left, 0, "pod directories left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_pods_created_and_deleted_leave_no_veth_namespace_mount_cgroup_or_address() {
    let setup = Setup::start("pods-c", "10.244.63.0/24", true, |_| vec![]);
    let (client, dir) = (&setup.client, setup.scratch.dir.path());
    let node = setup.node;
    // Ends at once on SIGTERM (a shell as PID 1 only does with a trap).
    let container = json!({ "name": "app", "image": "luksa/kubia",
        "command": ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"] });

    let mut uids = Vec::new();
    for batch in 0..10 {
        let names: Vec<String> = (0..10).map(|i| format!("cycle-{batch}-{i}")).collect();
        for name in &names {
            let created =
                create_pod(client, pod(name, "pods-c", container.clone(), json!({}))).await;
            uids.push(created["metadata"]["uid"].as_str().unwrap().to_string());
        }
        let mut addresses = std::collections::BTreeSet::new();
        for name in &names {
            let up = until(
                client,
                name,
                "Running",
                Duration::from_secs(30),
                &node,
                running,
            )
            .await;
            addresses.insert(up["status"]["podIP"].as_str().unwrap().to_string());
        }
        assert_eq!(
            addresses.len(),
            10,
            "pods started together got distinct addresses"
        );
        for name in &names {
            delete_and_wait_gone(client, name, &node).await;
        }
    }
    assert_eq!(uids.len(), 100);
    let mut left: Vec<String> = uids.iter().flat_map(|uid| leftovers(dir, uid)).collect();
    let shims = std::process::Command::new("pgrep")
        .args(["-f", &format!("shim create --state-root {}", dir.display())])
        .output()
        .unwrap();
    left.extend(
        String::from_utf8_lossy(&shims.stdout)
            .lines()
            .map(|pid| format!("shim {pid}")),
    );
    assert_eq!(left, Vec::<String>::new(), "left behind after 100 cycles");

    // Every address came back: the next pod gets the first one.
    create_pod(client, pod("after", "pods-c", container.clone(), json!({}))).await;
    let after = until(
        client,
        "after",
        "Running",
        Duration::from_secs(30),
        &node,
        running,
    )
    .await;
    assert_eq!(after["status"]["podIP"], "10.244.63.2");
    delete_and_wait_gone(client, "after", &node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_run_first_and_volumes_env_and_exec_probes_reach_the_app() {
    let setup = Setup::start("pods-d", "10.244.64.0/24", true, |_| vec![]);
    let (client, servers, dir) = (&setup.client, &setup.servers, setup.scratch.dir.path());
    let node = setup.node;
    let host_dir = dir.join("host-data");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("from-host"), "hello from the host").unwrap();
    let config_map = json!({ "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "settings" }, "data": { "greeting": "hi" } });
    let secret = json!({ "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "creds" }, "data": { "password": "czNjcjN0" } });
    for (resource, object) in [("configmaps", config_map), ("secrets", secret)] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while client
            .create_object(resource, "default", &object)
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "creating {resource}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mounts = json!([
        { "name": "shared", "mountPath": "/shared" },
        { "name": "settings", "mountPath": "/etc/settings" },
        { "name": "creds", "mountPath": "/etc/creds" },
        { "name": "host", "mountPath": "/host", "readOnly": true },
    ]);
    let spec = json!({
        "initContainers": [{ "name": "prepare", "image": "luksa/kubia", "volumeMounts": mounts,
            "command": ["/bin/sh", "-c", "echo prepared > /shared/marker"] }],
        "volumes": [
            { "name": "shared", "emptyDir": {} },
            { "name": "settings", "configMap": { "name": "settings" } },
            { "name": "creds", "secret": { "secretName": "creds" } },
            { "name": "host", "hostPath": { "path": host_dir.display().to_string() } },
        ],
    });
    let app = json!({ "name": "app", "image": "luksa/kubia", "volumeMounts": mounts,
        "env": [{ "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
                { "name": "MODE", "value": "test" }],
        "command": ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
        "readinessProbe": { "exec": { "command": ["cat", "/shared/marker"] }, "periodSeconds": 1 } });
    create_pod(client, pod("volumes", "pods-d", app, spec)).await;
    let ready = until(
        client,
        "volumes",
        "Ready",
        Duration::from_secs(30),
        &node,
        |p| running(p) && container(p)["ready"] == true,
    )
    .await;
    let init = &ready["status"]["initContainerStatuses"][0];
    assert_eq!(init["state"]["terminated"]["reason"], "Completed");
    let condition = |kind: &str| {
        ready["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == kind)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(condition("Initialized"), "True");
    assert_eq!(condition("Ready"), "True");

    let exec = |script: &'static str| {
        let servers = servers.clone();
        async move {
            let (ok, out, err) = rudder(
                &servers,
                &["exec", "volumes", "--", "/bin/sh", "-c", script],
            )
            .await;
            assert!(ok, "{script}: {err}");
            out.trim().to_string()
        }
    };
    assert_eq!(exec("cat /shared/marker").await, "prepared");
    assert_eq!(exec("cat /etc/settings/greeting").await, "hi");
    assert_eq!(exec("cat /etc/creds/password").await, "s3cr3t");
    assert_eq!(exec("cat /host/from-host").await, "hello from the host");
    assert_eq!(exec("echo $POD_NAME $MODE").await, "volumes test");
    let (ok, _, _) = rudder(
        servers,
        &[
            "exec",
            "volumes",
            "--",
            "/bin/sh",
            "-c",
            "echo x > /host/nope",
        ],
    )
    .await;
    assert!(!ok, "a readOnly hostPath mount is read-only");
    // Hardened defaults on the container's process: no new privileges, seccomp, a reduced
    // capability set.
    let status = exec("cat /proc/1/status").await;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("Seccomp:"), "2");
    let caps = u64::from_str_radix(&field("CapEff:"), 16).unwrap();
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    assert_eq!(caps & CAP_SYS_ADMIN, 0, "CAP_SYS_ADMIN dropped");

    delete_and_wait_gone(client, "volumes", &node).await;
    let left = std::fs::read_dir(dir.join("state/pods")).unwrap().count();
    assert_eq!(left, 0);
    assert!(
        host_dir.join("from-host").exists(),
        "a hostPath survives its pod"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_pod_runs_from_its_manifest_and_is_mirrored_in_the_api() {
    let setup = Setup::start("pods-e", "10.244.65.0/24", true, |dir| {
        let manifests = dir.join("manifests");
        std::fs::create_dir_all(&manifests).unwrap();
        std::fs::write(
            manifests.join("web.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: kubia\n    image: luksa/kubia\n",
        )
        .unwrap();
        vec!["--manifests".into(), manifests.display().to_string()]
    });
    let (client, dir, node) = (&setup.client, setup.scratch.dir.path(), &setup.node);
    let manifests = dir.join("manifests");

    let mirror = until(
        client,
        "web-pods-e",
        "the mirror pod Running",
        Duration::from_secs(30),
        node,
        running,
    )
    .await;
    assert!(mirror["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string());
    let ip = mirror["status"]["podIP"].as_str().unwrap().to_string();
    assert!(http_get(&ip, 8080, "/cgi-bin/index.cgi")
        .unwrap()
        .contains("You've hit web-pods-e"));

    // Deleting the mirror does not stop the static pod: a new mirror shows the same container.
    let first_uid = mirror["metadata"]["uid"].clone();
    client
        .delete_object(rudder_proto::api::DeleteRequest {
            resource: "pods".into(),
            namespace: "default".into(),
            name: "web-pods-e".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let again = until(
        client,
        "web-pods-e",
        "a new mirror",
        Duration::from_secs(30),
        node,
        |p| p["metadata"]["uid"] != first_uid && running(p),
    )
    .await;
    assert_eq!(
        container(&again)["containerID"],
        container(&mirror)["containerID"]
    );
    assert_eq!(container(&again)["restartCount"], 0);

    // Its manifest removed: the pod stops and its mirror goes.
    std::fs::remove_file(manifests.join("web.yaml")).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while client
        .get_object("pods", "default", "web-pods-e")
        .await
        .is_ok()
        || std::fs::read_dir(dir.join("state/pods")).unwrap().count() > 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the static pod did not go\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Debian's `docker-registry` on a free loopback port, storage in `dir`; killed by PID when
/// dropped.
struct Registry {
    child: std::process::Child,
    address: String,
}

impl Registry {
    fn start(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n",
                dir.join("registry-data").display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian's package) runs");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&address).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the registry did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, address }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_pulled_from_a_registry_and_a_missing_one_backs_off_with_the_reason() {
    let mut registry = None;
    let setup = Setup::start("pods-f", "10.244.66.0/24", false, |dir| {
        let layout = build_kubia(dir);
        let started = Registry::start(dir);
        let pushed = std::process::Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}", layout.display()))
            .arg(format!("docker://{}/team/kubia:v1", started.address))
            .output()
            .unwrap();
        assert!(
            pushed.status.success(),
            "skopeo: {}",
            String::from_utf8_lossy(&pushed.stderr)
        );
        registry = Some(started);
        // A registry on loopback needs no flag: the node pulls from it over plain HTTP.
        Vec::new()
    });
    let registry = registry.expect("the registry started");
    let (client, node) = (&setup.client, &setup.node);

    let image = format!("{}/team/kubia:v1", registry.address);
    create_pod(
        client,
        pod(
            "pulled",
            "pods-f",
            json!({ "name": "kubia", "image": image }),
            json!({}),
        ),
    )
    .await;
    let up = until(
        client,
        "pulled",
        "the pulled pod Running",
        Duration::from_secs(60),
        node,
        running,
    )
    .await;
    let ip = up["status"]["podIP"].as_str().unwrap();
    assert!(http_get(ip, 8080, "/cgi-bin/index.cgi")
        .unwrap()
        .contains("You've hit pulled"));
    assert!(container(&up)["imageID"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));

    let missing = format!("{}/team/nope:v1", registry.address);
    create_pod(
        client,
        pod(
            "missing",
            "pods-f",
            json!({ "name": "c", "image": missing }),
            json!({}),
        ),
    )
    .await;
    let first = until(
        client,
        "missing",
        "ErrImagePull",
        Duration::from_secs(30),
        node,
        |p| container(p)["state"]["waiting"]["reason"] == "ErrImagePull",
    )
    .await;
    let message = container(&first)["state"]["waiting"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("team/nope"), "{message}");
    until(
        client,
        "missing",
        "ImagePullBackOff",
        Duration::from_secs(30),
        node,
        |p| container(p)["state"]["waiting"]["reason"] == "ImagePullBackOff",
    )
    .await;

    // A registry the node does not pull from is never contacted: the store is its source.
    create_pod(
        client,
        pod(
            "elsewhere",
            "pods-f",
            json!({ "name": "c", "image": "docker.io/library/nginx:1.25" }),
            json!({}),
        ),
    )
    .await;
    let elsewhere = until(
        client,
        "elsewhere",
        "ErrImagePull",
        Duration::from_secs(30),
        node,
        |p| container(p)["state"]["waiting"]["reason"] == "ErrImagePull",
    )
    .await;
    let message = container(&elsewhere)["state"]["waiting"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("does not pull from docker.io"),
        "{message}"
    );

    for name in ["pulled", "missing", "elsewhere"] {
        delete_and_wait_gone(client, name, node).await;
    }
}

/// The seeds' `create deployment ... --replicas=2` on a real node: nobody names a node; the
/// controller manager makes the ReplicaSet and its pods, the scheduler binds them to the
/// node, the kubelet runs them, and `get deployment` reads 2/2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_created_through_the_cli_runs_two_of_two_on_the_node_nobody_named() {
    let setup = Setup::start("pods-g", "10.244.67.0/24", true, |_| vec![]);
    let (servers, node) = (&setup.servers, &setup.node);
    let (ok, created, err) = rudder(
        servers,
        &[
            "create",
            "deployment",
            "kubia",
            "--image=luksa/kubia",
            "--replicas=2",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(created.trim(), "deployment.apps/kubia created");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, table, err) = rudder(servers, &["get", "deployment", "kubia"]).await;
        assert!(ok, "{err}");
        let row: Vec<String> = table
            .lines()
            .nth(1)
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect();
        if row.get(1).is_some_and(|ready| ready == "2/2") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "kubia not 2/2 within 60 s:\n{table}\nnode log:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ok, pods, err) = rudder(servers, &["get", "pods", "-l", "app=kubia", "-o", "json"]).await;
    assert!(ok, "{err}");
    let pods: Value = serde_json::from_str(&pods).expect("pods as JSON");
    let pods = pods["items"].as_array().expect("items");
    assert_eq!(pods.len(), 2);
    for pod in pods {
        assert_eq!(pod["spec"]["nodeName"], "pods-g", "{pod}");
        assert!(running(pod), "{}", pod["status"]);
        let ip = pod["status"]["podIP"].as_str().expect("a pod IP");
        let answer = http_get(ip, 8080, "/cgi-bin/index.cgi").expect("the pod answers");
        assert!(
            answer.contains(&format!(
                "You've hit {}",
                pod["metadata"]["name"].as_str().unwrap()
            )),
            "{answer}"
        );
    }
    // Deleting the Deployment takes its ReplicaSet and pods with it (each then gets its
    // 30 s grace period: kubia's httpd ignores SIGTERM; the scratch directory cleans up).
    let (ok, _, err) = rudder(servers, &["delete", "deployment", "kubia"]).await;
    assert!(ok, "{err}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for pod in pods {
        let name = pod["metadata"]["name"].as_str().unwrap();
        loop {
            match setup.client.get_object("pods", "default", name).await {
                Err(error) if error.is_not_found() => break,
                Ok(pod) if pod["metadata"]["deletionTimestamp"].is_string() => break,
                _ => {}
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "pod {name} was not being deleted within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Two real nodes started without `--pod-cidr` get distinct blocks of the cluster's range
/// from the controller manager and run a pod each on them. The cluster range is this test's
/// own (10.244.96.0/22), so nodes of tests running beside it never share a subnet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_get_distinct_ranges_reach_each_others_pods_by_address_and_service_name_and_one_reset_leaves_the_other(
) {
    let scratches = [NodeScratch::new("range-a"), NodeScratch::new("range-b")];
    for scratch in &scratches {
        import_kubia(scratch.dir.path());
    }
    let flags = ["--cluster-cidr", "10.244.96.0/22"].map(String::from);
    let cluster = ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 1, &flags).unwrap();
    let servers = cluster.endpoints().join(",");
    let client = ApiClient::new(cluster.endpoints());
    let nodes: Vec<Child> = scratches
        .iter()
        .zip(["range-a", "range-b"])
        .map(|(scratch, name)| spawn_node(scratch, name, &servers))
        .collect();
    let node_log = |i: usize| {
        std::fs::read_to_string(scratches[i].dir.path().join("node.log")).unwrap_or_default()
    };
    let mut ranges = Vec::new();
    for (i, name) in ["range-a", "range-b"].iter().enumerate() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let node = client.get_object("nodes", "", name).await.ok();
            let range = node
                .as_ref()
                .and_then(|n| n["spec"]["podCIDR"].as_str().map(str::to_string));
            if let Some(range) = range {
                ranges.push(range);
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} got no pod range within 30 s\nnode log:\n{}",
                node_log(i)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    ranges.sort();
    assert_eq!(ranges, ["10.244.96.0/24", "10.244.97.0/24"]);
    let mut pod_ips = Vec::new();

    for (i, name) in ["range-a", "range-b"].iter().enumerate() {
        let pod_name = format!("on-{name}");
        let mut object = pod(
            &pod_name,
            name,
            json!({ "name": "kubia", "image": "luksa/kubia" }),
            json!({}),
        );
        object["metadata"]["labels"] = json!({ "app": pod_name });
        create_pod(&client, object).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let running_pod = loop {
            let pod = client.get_object("pods", "default", &pod_name).await.ok();
            if let Some(pod) = pod.filter(running) {
                break pod;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{pod_name} not Running within 30 s\nnode log:\n{}",
                node_log(i)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let node = client.get_object("nodes", "", name).await.unwrap();
        let range = node["spec"]["podCIDR"].as_str().unwrap();
        let prefix = range.trim_end_matches("0/24");
        let ip = running_pod["status"]["podIP"].as_str().unwrap();
        assert!(
            ip.starts_with(prefix),
            "{pod_name} at {ip}, outside {range}"
        );
        let answer = http_get(ip, 8080, "/cgi-bin/index.cgi").expect("the pod answers");
        assert!(answer.contains("You've hit"), "{answer}");
        pod_ips.push(ip.to_string());
    }

    // Across nodes: a pod on range-b reaches range-a's pod by its address, and by the name
    // of a Service that selects it (DNS, the ClusterIP, routing between the nodes).
    let service = json!({ "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "kubia-a" },
        "spec": { "selector": { "app": "on-range-a" }, "ports": [{ "port": 8080 }] } });
    client
        .create_object("services", "default", &service)
        .await
        .expect("the Service is created");
    for target in [
        format!("http://{}:8080/cgi-bin/index.cgi", pod_ips[0]),
        "http://kubia-a.default.svc.cluster.local:8080/cgi-bin/index.cgi".to_string(),
    ] {
        let fetch = [
            "exec",
            "on-range-b",
            "--",
            "busybox",
            "wget",
            "-qO-",
            &target,
        ];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (ok, answer, err) = rudder(&servers, &fetch).await;
            if ok && answer.contains("You've hit on-range-a") {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "range-b's pod did not reach {target} within 30 s: {answer} {err}\nnode logs:\n{}\n{}",
                node_log(0),
                node_log(1)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // `rudder node reset` refuses a running node; once it is stopped, removes all it made,
    // and the other node's pod still answers.
    let root = scratches[0].dir.path().join("state");
    let reset = |root: &Path| {
        std::process::Command::new(rudder_binary_beside_tests())
            .args(["node", "reset", "--name", "range-a", "--root"])
            .arg(root)
            .output()
            .unwrap()
    };
    let refused = reset(&root);
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("is running"),
        "{refused:?}"
    );
    let mut nodes = nodes.into_iter();
    let mut node_a = nodes.next().unwrap();
    // Each bridge hands its frames to the ip hooks itself (answers across one bridge are
    // translated back), whatever the machine-wide bridge-nf-call-iptables says.
    for scratch in &scratches {
        let path = format!(
            "/sys/class/net/{}/bridge/nf_call_iptables",
            scratch.bridge()
        );
        let value = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(value.trim(), "1", "{path}");
    }
    node_a.kill().await.unwrap();
    node_a.wait().await.unwrap();
    // Stopping a node keeps its pods running.
    assert!(http_get(&pod_ips[0], 8080, "/cgi-bin/index.cgi").is_ok());
    let done = reset(&root);
    let said = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success() && said.contains("node range-a reset"),
        "{done:?}"
    );
    let bridge = scratches[0].bridge();
    let link = std::process::Command::new("ip")
        .args(["link", "show", bridge])
        .output()
        .unwrap();
    assert!(!link.status.success(), "{bridge} is still there:\n{said}");
    let table = std::process::Command::new("nft")
        .args(["list", "table", "ip", &format!("rudder-{bridge}")])
        .output()
        .unwrap();
    assert!(!table.status.success(), "its table is still there:\n{said}");
    assert!(!root.exists(), "its state is still there:\n{said}");
    assert!(
        http_get(&pod_ips[0], 8080, "/cgi-bin/index.cgi").is_err(),
        "the reset node's pod still answers:\n{said}"
    );
    let answer = http_get(&pod_ips[1], 8080, "/cgi-bin/index.cgi").expect("the other node's pod");
    assert!(answer.contains("You've hit"), "{answer}");
    for mut node in nodes {
        node.kill().await.unwrap();
    }
    drop(cluster);
}

fn job(name: &str, completions: i32, parallelism: i32, backoff_limit: i32, script: &str) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": name },
        "spec": { "completions": completions, "parallelism": parallelism,
                  "backoffLimit": backoff_limit,
                  "template": { "spec": { "restartPolicy": "Never",
                      "containers": [{ "name": "c", "image": "luksa/kubia",
                                       "command": ["/bin/sh", "-c", script] }] } } }
    })
}

/// Whether the Job's condition `kind` (Complete, Failed) is True.
fn has_condition(job: &Value, kind: &str) -> bool {
    job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == kind && c["status"] == "True")
}

/// How many ended pods the Job has not counted yet (`status.uncountedTerminatedPods`).
fn uncounted(job: &Value) -> usize {
    let uncounted = &job["status"]["uncountedTerminatedPods"];
    ["succeeded", "failed"]
        .iter()
        .map(|list| uncounted[list].as_array().map_or(0, Vec::len))
        .sum()
}

/// The Job `name` as the watch shows it once `kind` is True and `field` (succeeded, failed)
/// counts `count` pods with none left uncounted; `Err` shows its status and the end of the
/// node's log.
fn ended_job(
    jobs: &BTreeMap<String, Value>,
    name: &str,
    kind: &str,
    field: &str,
    count: i64,
    node: &Node,
) -> Result<Value, String> {
    let job = jobs
        .get(&format!("default/{name}"))
        .cloned()
        .unwrap_or_default();
    if has_condition(&job, kind)
        && job["status"][field].as_i64() == Some(count)
        && uncounted(&job) == 0
    {
        return Ok(job);
    }
    let log = node.log();
    let tail: Vec<&str> = log.lines().rev().take(30).collect();
    Err(format!(
        "{name}'s status: {}\nnode log (last lines, newest first):\n{}",
        job["status"],
        tail.join("\n")
    ))
}

/// How each pod of Job `name` ended, as the watch shows them: (phase, exit code), sorted.
fn endings(pods: &BTreeMap<String, Value>, name: &str) -> Vec<(String, Option<i64>)> {
    let mut endings: Vec<(String, Option<i64>)> = pods
        .values()
        .filter(|p| p["metadata"]["labels"]["job-name"] == name)
        .map(|p| {
            (
                p["status"]["phase"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                container(p)["state"]["terminated"]["exitCode"].as_i64(),
            )
        })
        .collect();
    endings.sort();
    endings
}

/// Two Jobs on a real node, their pods placed by the scheduler and run by the kubelet
/// (restartPolicy Never): `sh -c 'exit 0'` with completions 3 and parallelism 2 ends
/// Complete with 3 succeeded pods, and a watch on its pods never sees more than 2 running
/// (not ended, not being deleted) at once; `exit 1` with backoffLimit 2 ends Failed with
/// reason BackoffLimitExceeded after its third failed pod. Kubernetes' pod-failure backoff
/// (10 s, then 20 s before the replacements) is most of this test's time. A watch on the
/// Jobs checks every status written: as Kubernetes' `enactJobFinished`, Complete or Failed
/// comes only once every ended pod is counted (`uncountedTerminatedPods` empty), so a
/// finished Job's counts are final.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_on_a_real_node_complete_two_at_a_time_or_fail_past_their_backoff_limit() {
    let setup = Setup::start("pods-h", "10.244.68.0/24", true, |_| vec![]);
    let (client, node) = (&setup.client, &setup.node);
    let endpoints: Vec<String> = setup.servers.split(',').map(String::from).collect();
    wait_for(
        "the default namespace",
        Duration::from_secs(30),
        async || {
            client
                .get_object("namespaces", "", "default")
                .await
                .map(drop)
                .map_err(|error| error.to_string())
        },
    )
    .await;
    let pods = Watch::start(
        endpoints.clone(),
        Follow::pods("default", ""),
        BTreeMap::<String, usize>::new(),
        |most, _, _, shown| {
            for name in ["count", "fail"] {
                let running = shown
                    .values()
                    .filter(|p| p["metadata"]["labels"]["job-name"] == name && is_live(p))
                    .count();
                let peak = most.entry(name.to_string()).or_insert(0);
                *peak = (*peak).max(running);
            }
        },
    )
    .await;
    let follow_jobs = Follow {
        resource: "jobs".into(),
        namespace: "default".into(),
        ..Default::default()
    };
    let jobs = Watch::start(
        endpoints,
        follow_jobs,
        Vec::<String>::new(),
        |early, _, job, _| {
            let finished = has_condition(job, "Complete") || has_condition(job, "Failed");
            if finished && uncounted(job) > 0 && early.len() < 5 {
                early.push(format!(
                    "{} at revision {}: {}",
                    job["metadata"]["name"],
                    revision(job),
                    job["status"]
                ));
            }
        },
    )
    .await;
    client
        .create_object("jobs", "default", &job("count", 3, 2, 6, "exit 0"))
        .await
        .expect("creating the count Job");
    client
        .create_object("jobs", "default", &job("fail", 1, 1, 2, "exit 1"))
        .await
        .expect("creating the fail Job");
    let created = tokio::time::Instant::now();

    let complete = jobs
        .wait_for(
            "the count Job Complete with 3 succeeded",
            Duration::from_secs(60),
            |shown, _| ended_job(shown, "count", "Complete", "succeeded", 3, node),
        )
        .await;
    let completed_after = created.elapsed();
    assert_eq!(
        complete["status"]["failed"].as_i64().unwrap_or(0),
        0,
        "{}",
        complete["status"]
    );
    let failed = jobs
        .wait_for(
            "the fail Job Failed with 3 failed",
            Duration::from_secs(90),
            |shown, _| ended_job(shown, "fail", "Failed", "failed", 3, node),
        )
        .await;
    let failed_after = created.elapsed();
    let reason = failed["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Failed")
        .map(|c| c["reason"].clone());
    assert_eq!(
        reason,
        Some(json!("BackoffLimitExceeded")),
        "{}",
        failed["status"]
    );

    pods.stop();
    jobs.stop();
    let (most, count, fail) = pods.with(|shown, most| {
        (
            most.clone(),
            endings(shown, "count"),
            endings(shown, "fail"),
        )
    });
    assert_eq!(count, vec![("Succeeded".to_string(), Some(0_i64)); 3]);
    assert_eq!(fail, vec![("Failed".to_string(), Some(1_i64)); 3]);
    assert!(
        most.get("count").is_some_and(|n| *n <= 2),
        "the count Job ran more than its parallelism at once: {most:?}"
    );
    assert!(
        most.get("fail").is_some_and(|n| *n <= 1),
        "the fail Job ran more than one pod at once: {most:?}"
    );
    println!(
        "count Complete after {completed_after:?}, fail Failed after {failed_after:?}; at \
         most running at once: {most:?}"
    );
    let early = jobs.with(|_, early| early.clone());
    assert!(
        early.is_empty(),
        "a Job was marked finished before its ended pods were counted (Kubernetes adds \
         Complete or Failed only once uncountedTerminatedPods is empty): {early:#?}"
    );
}

/// The seeds' walkthrough on one real node: a LoadBalancer Service reached from this
/// machine's shell through its EXTERNAL-IP, its cluster IP and its node port (on the node's
/// address and on 127.0.0.1), load-balanced
/// over the pods; deleted, its rules are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_balancer_service_reaches_its_pods_from_the_host_and_by_name_from_a_pod_and_leaves_no_rule_behind(
) {
    // The node runs without its service network, which `rudder proxy` runs on its own
    // (its pod range read from the Node).
    let setup = Setup::start("pods-s", "10.244.69.0/24", true, |_| {
        vec!["--proxy".into(), "false".into()]
    });
    let (servers, node) = (&setup.servers, &setup.node);
    let proxy_log = std::fs::File::create(setup.scratch.dir.path().join("proxy.log")).unwrap();
    let mut proxy = Command::new(rudder_binary_beside_tests())
        .args(["proxy", "--node", "pods-s", "--server", servers])
        .args(["--metrics-bind-address", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(proxy_log)
        .kill_on_drop(true)
        .spawn()
        .expect("rudder proxy starts");
    let proxy_metrics = announced_metrics(proxy.stdout.take().unwrap()).await;
    let steps: [&[&str]; 3] = [
        &[
            "run",
            "kubia",
            "--image=luksa/kubia",
            "--port=8080",
            "--generator=run/v1",
        ],
        &[
            "expose",
            "rc",
            "kubia",
            "--type=LoadBalancer",
            "--name",
            "kubia-http",
        ],
        &["scale", "rc", "kubia", "--replicas=2"],
    ];
    for step in steps {
        let (ok, _, err) = rudder(servers, step).await;
        assert!(ok, "{step:?}: {err}");
    }
    let (ok, service, err) = rudder(servers, &["get", "svc", "kubia-http", "-o", "json"]).await;
    assert!(ok, "{err}");
    let service: Value = serde_json::from_str(&service).unwrap();
    let external = service["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .expect("an EXTERNAL-IP")
        .to_string();
    let cluster_ip = service["spec"]["clusterIP"].as_str().unwrap().to_string();
    let node_port = service["spec"]["ports"][0]["nodePort"].as_u64().unwrap() as u16;
    let path = "/cgi-bin/index.cgi";

    // Both pods answer through the EXTERNAL-IP once they are ready and in the rules.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 2 {
        if let Ok(answer) = http_get(&external, 8080, path) {
            if let Some(pod) = answer.split("You've hit ").nth(1) {
                seen.insert(pod.split_whitespace().next().unwrap_or("").to_string());
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "two pods did not answer on {external}:8080 within 90 s (saw {seen:?})\nnode log:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The proxy's own metrics: its table holds the three Services (kubernetes, kube-dns,
    // kubia-http) with their rules.
    let services = wait_for(
        "the proxy's table in its metrics",
        Duration::from_secs(10),
        async || {
            let text = promtool_accepts(&proxy_metrics).await?;
            match sample(&text, "rudder_proxy_services", &[]) {
                Some(count) if count >= 3.0 => Ok(text),
                seen => Err(format!("rudder_proxy_services = {seen:?}")),
            }
        },
    )
    .await;
    assert!(
        sample(&services, "rudder_proxy_rules", &[]) > Some(0.0),
        "{services}"
    );
    for (ip, port) in [
        (cluster_ip.as_str(), 8080),
        ("10.244.69.1", node_port),
        ("127.0.0.1", node_port),
    ] {
        let answer = http_get(ip, port, path).unwrap_or_else(|e| panic!("{ip}:{port}: {e}"));
        assert!(
            answer.contains("You've hit kubia-"),
            "{ip}:{port}: {answer}"
        );
    }

    // From inside a pod: its resolver is the cluster DNS (the kube-dns address, which the
    // node's proxy sends to the node's own server); the Service is found by its full name
    // and through the search path, and an unknown name is NXDOMAIN.
    let (ok, pods, err) = rudder(servers, &["get", "pods", "-o", "json"]).await;
    assert!(ok, "{err}");
    let pods: Value = serde_json::from_str(&pods).unwrap();
    let pod = pods["items"][0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, resolv, err) = rudder(servers, &["exec", &pod, "--", "cat", "/etc/resolv.conf"]).await;
    assert!(
        ok && resolv.starts_with("nameserver 10.96.0.10\nsearch default.svc.cluster.local "),
        "{resolv} {err}"
    );
    let full_name = "kubia-http.default.svc.cluster.local";
    let lookup = ["exec", &pod, "--", "busybox", "nslookup", full_name];
    let (ok, found, err) = rudder(servers, &lookup).await;
    assert!(
        ok && found.contains(&cluster_ip),
        "nslookup {full_name}: {found} {err}\nnode log:\n{}",
        node.log()
    );
    let fetch = [
        "exec",
        &pod,
        "--",
        "busybox",
        "wget",
        "-qO-",
        "http://kubia-http:8080/cgi-bin/index.cgi",
    ];
    let (ok, answer, err) = rudder(servers, &fetch).await;
    assert!(
        ok && answer.contains("You've hit kubia-"),
        "wget by the short name: {answer} {err}"
    );
    assert_nxdomain(servers, &pod, "nothing.default.svc.cluster.local").await;
    // `kubernetes.default` reaches a master's API from the pod (the node relays it to the
    // masters, which listen on loopback): the master's HTTP/2 server greets a client's
    // preface with its SETTINGS frame (type 4 on stream 0).
    let greet = "printf 'PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n' \
                 | busybox timeout 5 busybox nc kubernetes.default 443 | busybox od -An -tx1 -N9";
    let (ok, frame, err) =
        rudder(servers, &["exec", &pod, "--", "busybox", "sh", "-c", greet]).await;
    let bytes: Vec<&str> = frame.split_whitespace().collect();
    assert!(
        ok && bytes.len() == 9 && bytes[3] == "04" && bytes[5..] == ["00"; 4],
        "no HTTP/2 SETTINGS from the API through kubernetes.default:443: {frame:?} {err}\nnode log:\n{}",
        node.log()
    );

    let (ok, _, err) = rudder(servers, &["delete", "svc", "kubia-http"]).await;
    assert!(ok, "{err}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ruleset = std::process::Command::new("nft")
            .args(["list", "ruleset"])
            .output()
            .unwrap();
        if !String::from_utf8_lossy(&ruleset.stdout).contains("default/kubia-http/") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the deleted Service's rules were still there after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = http_get(&external, 8080, path);
    assert!(
        refused.is_err(),
        "the EXTERNAL-IP still answers: {refused:?}"
    );
    let (ok, _, err) = rudder(servers, &["delete", "rc", "kubia"]).await;
    assert!(ok, "{err}");
}

/// Polls `rudder ARGS` until its output satisfies `done`, for at most `within`.
async fn rudder_until(
    servers: &str,
    args: &[&str],
    within: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (ok, out, err) = rudder(servers, args).await;
        if ok && done(&out) {
            return out;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rudder {args:?} not as expected within {within:?}:\n{out}{err}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The pod name in kubia's answer.
fn hit(answer: &str) -> Option<String> {
    let after = answer.split("You've hit ").nth(1)?;
    Some(after.split_whitespace().next()?.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_walkthrough_runs_on_three_masters_and_two_nodes() {
    // A load-balancer pool and pod range of its own: other tests' clusters on this machine
    // route theirs.
    let (lb_pool, cluster_cidr) = ("10.112.7.0/24", "10.244.104.0/22");
    let names = ["walk-1", "walk-2"];
    let scratches = names.map(NodeScratch::new);
    for scratch in &scratches {
        import_kubia(scratch.dir.path());
    }
    let flags = ["--cluster-cidr", cluster_cidr, "--lb-pool", lb_pool].map(String::from);
    let cluster = ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 3, &flags).unwrap();
    let servers = cluster.endpoints().join(",");
    let client = ApiClient::new(cluster.endpoints());
    wait_for_default_namespace(&client).await;
    // Nodes take the masters' ranges (kube-system/rudder-cluster); one told another pool
    // refuses to start, naming both.
    let disagreeing = Command::new(rudder_binary_beside_tests())
        .args([
            "node",
            "--name",
            "walk-x",
            "--server",
            &servers,
            "--lb-pool",
            "10.112.9.0/24",
        ])
        .args(scratches[0].flags())
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&disagreeing.stderr);
    assert!(
        !disagreeing.status.success()
            && said.contains("--lb-pool 10.112.9.0/24 disagrees with the cluster's 10.112.7.0/24"),
        "{said}"
    );
    let nodes: Vec<Child> = scratches
        .iter()
        .zip(names)
        .map(|(scratch, name)| spawn_node(scratch, name, &servers))
        .collect();
    let logs = || {
        scratches
            .iter()
            .map(|s| std::fs::read_to_string(s.dir.path().join("node.log")).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    let s = servers.as_str();
    rudder_until(s, &["get", "nodes"], Duration::from_secs(40), |out| {
        out.lines().filter(|l| l.contains(" Ready")).count() == 2
    })
    .await;

    let run = [
        "run",
        "kubia",
        "--image=luksa/kubia",
        "--port=8080",
        "--generator=run/v1",
    ];
    let (ok, out, err) = rudder(s, &run).await;
    assert!(ok, "{out}{err}");
    let wide = rudder_until(
        s,
        &["get", "pods", "-o", "wide"],
        Duration::from_secs(60),
        |out| {
            out.lines()
                .any(|l| l.contains(" Running ") && l.contains("walk-"))
        },
    )
    .await;
    let first = wide
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let (ok, described, err) = rudder(s, &["describe", "pod", &first]).await;
    assert!(ok && described.contains("Node:"), "{described}{err}");
    let expose = [
        "expose",
        "rc",
        "kubia",
        "--type=LoadBalancer",
        "--name",
        "kubia-http",
    ];
    let (ok, out, err) = rudder(s, &expose).await;
    assert!(ok, "{out}{err}");
    let services = rudder_until(s, &["get", "services"], Duration::from_secs(20), |out| {
        out.lines()
            .any(|l| l.starts_with("kubia-http") && l.contains("10.112.7."))
    })
    .await;
    let line = services
        .lines()
        .find(|l| l.starts_with("kubia-http"))
        .unwrap();
    let columns: Vec<&str> = line.split_whitespace().collect();
    let external = columns[3].to_string();
    assert!(
        columns[4].starts_with("8080:3") && columns[4].ends_with("/TCP"),
        "{services}"
    );

    // curl EXTERNAL-IP, scale to 3, and the answers come from at least two pods.
    let path = "/cgi-bin/index.cgi";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while http_get(&external, 8080, path)
        .ok()
        .and_then(|a| hit(&a))
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{external}:8080 never answered\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ok, out, err) = rudder(s, &["scale", "rc", "kubia", "--replicas=3"]).await;
    assert!(ok, "{out}{err}");
    rudder_until(s, &["get", "rc"], Duration::from_secs(60), |out| {
        out.lines().any(|l| {
            let columns: Vec<&str> = l.split_whitespace().collect();
            columns.len() >= 4 && columns[..4] == ["kubia", "3", "3", "3"]
        })
    })
    .await;
    let mut seen = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < 2 {
        for _ in 0..30 {
            if let Some(pod) = http_get(&external, 8080, path).ok().and_then(|a| hit(&a)) {
                seen.insert(pod);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "30 curls answered only from {seen:?}"
        );
    }

    // A Deployment; a deleted pod is replaced.
    let deployment = [
        "create",
        "deployment",
        "httpd-app",
        "--image=luksa/kubia",
        "--replicas=2",
    ];
    let (ok, out, err) = rudder(s, &deployment).await;
    assert!(ok, "{out}{err}");
    rudder_until(s, &["get", "deployments"], Duration::from_secs(60), |out| {
        out.lines()
            .any(|l| l.starts_with("httpd-app") && l.contains(" 2/2 "))
    })
    .await;
    let (ok, out, err) = rudder(s, &["delete", "pod", &first]).await;
    assert!(ok, "{out}{err}");
    rudder_until(s, &["get", "pods"], Duration::from_secs(60), |out| {
        let kubia: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("kubia-") && l.contains(" Running "))
            .collect();
        kubia.len() == 3 && !kubia.iter().any(|l| l.starts_with(&format!("{first} ")))
    })
    .await;

    // From a pod on walk-2: the Service by its DNS name answers from a pod on walk-1; a
    // name nobody has is NXDOMAIN.
    let (ok, pods, err) = rudder(s, &["get", "pods", "-o", "json"]).await;
    assert!(ok, "{err}");
    let pods: Value = serde_json::from_str(&pods).unwrap();
    let node_of: BTreeMap<String, String> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"]["phase"] == "Running")
        .map(|p| {
            let name = p["metadata"]["name"].as_str().unwrap_or("").to_string();
            (
                name,
                p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let on_2 = node_of
        .iter()
        .find(|(_, node)| *node == "walk-2")
        .map(|(name, _)| name.clone())
        .unwrap_or_else(|| panic!("no running pod on walk-2: {node_of:?}"));
    assert!(node_of.values().any(|n| n == "walk-1"), "{node_of:?}");
    let url = "http://kubia-http.default.svc.cluster.local:8080/cgi-bin/index.cgi";
    let fetch = ["exec", &on_2, "--", "busybox", "wget", "-qO-", url];
    let mut answered_by = Vec::new();
    for _ in 0..30 {
        let (ok, answer, err) = rudder(s, &fetch).await;
        assert!(ok, "wget from {on_2}: {answer}{err}\n{}", logs());
        let pod = hit(&answer).unwrap_or_default();
        if node_of.get(&pod).map(String::as_str) == Some("walk-1") {
            answered_by.clear();
            break;
        }
        answered_by.push(pod);
    }
    assert!(
        answered_by.is_empty(),
        "30 requests from {on_2} never reached a pod on walk-1 (answered by {answered_by:?})"
    );
    assert_nxdomain(s, &on_2, "nobody.default.svc.cluster.local").await;

    for mut node in nodes {
        node.kill().await.unwrap();
    }
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_stops_being_ready_gets_no_traffic_within_two_seconds_and_comes_back() {
    let setup = Setup::start("pods-r", "10.244.70.0/24", true, |_| vec![]);
    let (servers, node) = (setup.servers.as_str(), &setup.node);
    let labels = json!({ "app": "ready-test" });
    let rc = json!({ "apiVersion": "v1", "kind": "ReplicationController",
        "metadata": { "name": "ready-test" },
        "spec": { "replicas": 2, "selector": labels, "template": {
            "metadata": { "labels": labels },
            "spec": { "terminationGracePeriodSeconds": 2, "containers": [{
                "name": "kubia", "image": "luksa/kubia",
                "readinessProbe": { "exec": { "command": ["cat", "/tmp/ready"] },
                                    "periodSeconds": 1, "failureThreshold": 1 } }] } } } });
    let service = json!({ "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "ready-test" },
        "spec": { "selector": labels, "ports": [{ "port": 8080 }] } });
    for (resource, object) in [("replicationcontrollers", rc), ("services", service)] {
        setup
            .client
            .create_object(resource, "default", &object)
            .await
            .unwrap_or_else(|e| panic!("creating {resource}: {e}"));
    }
    let (ok, out, err) = rudder(servers, &["get", "svc", "ready-test", "-o", "json"]).await;
    assert!(ok, "{out}{err}");
    let cluster_ip = serde_json::from_str::<Value>(&out).unwrap()["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    let listing = rudder_until(servers, &["get", "pods"], Duration::from_secs(60), |out| {
        out.lines()
            .filter(|l| l.starts_with("ready-test-") && l.contains(" Running "))
            .count()
            == 2
    })
    .await;
    let pods: Vec<String> = listing
        .lines()
        .filter(|l| l.starts_with("ready-test-"))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    let exec = |pod: &str, command: &[&str]| {
        let mut args = vec!["exec", pod, "--", "busybox"];
        args.extend_from_slice(command);
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (ok, out, err) = rudder(servers, &args).await;
            assert!(ok, "{args:?}: {out}{err}");
        }
    };
    let path = "/cgi-bin/index.cgi";
    // Answers through the cluster IP until `pods` have all answered, within `within`.
    let cluster_ip = cluster_ip.as_str();
    let until_answered_by = |pods: Vec<String>, within: Duration| async move {
        let deadline = tokio::time::Instant::now() + within;
        let mut seen = std::collections::BTreeSet::new();
        while !pods.iter().all(|p| seen.contains(p)) {
            if let Some(pod) = http_get(cluster_ip, 8080, path).ok().and_then(|a| hit(&a)) {
                seen.insert(pod);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {seen:?} of {pods:?} answered within {within:?}\nnode log:\n{}",
                node.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    for pod in &pods {
        exec(pod, &["touch", "/tmp/ready"]).await;
    }
    until_answered_by(pods.clone(), Duration::from_secs(20)).await;

    // The first pod's probe starts failing: two seconds later, no request reaches it. The
    // clock starts once the file is gone (the exec has answered), not before the CLI call
    // that removes it, which a loaded machine may take a good part of a second to make.
    exec(&pods[0], &["rm", "/tmp/ready"]).await;
    let failing_since = tokio::time::Instant::now();
    tokio::time::sleep_until(failing_since + Duration::from_secs(2)).await;
    for _ in 0..40 {
        let answer = http_get(cluster_ip, 8080, path).expect("the ready pod answers");
        assert_eq!(
            hit(&answer).as_deref(),
            Some(pods[1].as_str()),
            "a request reached the unready pod 2 s after its probe began to fail"
        );
    }
    // Ready again: it is answered by again.
    exec(&pods[0], &["touch", "/tmp/ready"]).await;
    until_answered_by(vec![pods[0].clone()], Duration::from_secs(10)).await;
}

/// In a cluster with TLS, a node serves its kubelet port with its own certificate to
/// masters only: `logs` and `exec` through a master reach the pod, while the node's port
/// refuses a plaintext caller and an operator's certificate (even the cluster admin's:
/// operators go through the masters, which authorize them). The pod finds its
/// ServiceAccount's token, the cluster CA and its namespace where Kubernetes puts them, and
/// the token reads what the account's Role allows and nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_kubelet_port_takes_only_masters_and_logs_and_exec_go_through_them() {
    use rudder_proto::tls::ClientTls;
    use rudder_tests::secure::{
        admin_flags, apply_as, client_tls, join_token, pki, rudder as rudder_in, run, start,
        succeeded, text,
    };

    let scratch = NodeScratch::new("pods-tls");
    import_kubia(scratch.dir.path());
    let cluster_dir = tempfile::tempdir().unwrap();
    let d = cluster_dir.path();
    pki(d);
    // Certificates that live 12 s: the node renews its own (and the master its) while the
    // test runs.
    let master = start(
        d,
        "m1",
        None,
        &["--certificate-lifetime".into(), "12s".into()], // `issued` below
    );
    let admin = admin_flags(d, &master.client);
    // The node joins as a user would: with a node token, which is then taken.
    let token = join_token(d, &admin, "node");
    let node = Node::start(
        &scratch,
        "pods-tls",
        "10.244.71.0/24",
        &master.client,
        vec!["--token".to_string(), token.clone()],
    );
    let admin_tls = client_tls(d, "admin");
    let client = ApiClient::with_tls(vec![master.client.clone()], Some(admin_tls.clone()));
    let robot = "\
apiVersion: v1
kind: ServiceAccount
metadata: { name: robot, namespace: default }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: pod-reader, namespace: default }
rules:
- { apiGroups: [''], resources: [pods], verbs: [get, list] }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: robot-reads, namespace: default }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader }
subjects: [{ kind: ServiceAccount, name: robot }]
";
    wait_for_default_namespace(&client).await;
    succeeded(&apply_as(d, &admin, "robot", robot)).unwrap();
    create_pod(
        &client,
        pod(
            "kubia",
            "pods-tls",
            json!({ "name": "kubia", "image": "luksa/kubia" }),
            json!({ "serviceAccountName": "robot" }),
        ),
    )
    .await;
    until(
        &client,
        "kubia",
        "kubia Running",
        Duration::from_secs(30),
        &node,
        running,
    )
    .await;

    // The node's token was taken by its join.
    let listed = succeeded(&run(d, &admin, &["token", "list"])).unwrap();
    let id = token.split("::").nth(2).unwrap().split('.').next().unwrap();
    assert!(!listed.contains(id), "{listed}");

    // Through the master, as the admin: logs and exec.
    let with_admin = |verb: &[&str]| {
        let mut args: Vec<&str> = vec![verb[0]];
        args.extend(admin.iter().map(String::as_str));
        args.extend(&verb[1..]);
        rudder_in(d, &args)
    };
    let hostname = with_admin(&["exec", "kubia", "--", "hostname"]);
    assert!(
        hostname.status.success(),
        "{}{}",
        String::from_utf8_lossy(&hostname.stderr),
        node.log()
    );
    assert_eq!(String::from_utf8_lossy(&hostname.stdout).trim(), "kubia");
    let logs = with_admin(&["logs", "kubia"]);
    assert!(
        logs.status.success(),
        "{}",
        String::from_utf8_lossy(&logs.stderr)
    );

    // What the pod finds of its account, as Kubernetes mounts it.
    let account_file = |file: &str| {
        let path = format!("/var/run/secrets/kubernetes.io/serviceaccount/{file}");
        let read = with_admin(&["exec", "kubia", "--", "cat", &path]);
        assert!(read.status.success(), "{file}: {}", text(&read.stderr));
        text(&read.stdout)
    };
    assert_eq!(account_file("namespace"), "default");
    assert_eq!(
        account_file("ca.crt"),
        std::fs::read_to_string(d.join("pki/ca.crt")).unwrap()
    );
    let token = account_file("token");
    let as_pod = vec![
        "--server".to_string(),
        master.client.clone(),
        "--certificate-authority".to_string(),
        d.join("pki/ca.crt").display().to_string(),
        "--token".to_string(),
        token,
    ];
    let listed = succeeded(&run(d, &as_pod, &["get", "pods", "-o", "name"])).unwrap();
    assert_eq!(listed.trim(), "pod/kubia");
    let secrets = run(d, &as_pod, &["get", "secrets"]);
    assert!(
        text(&secrets.stderr).contains(r#"User "system:serviceaccount:default:robot" cannot list"#),
        "{}",
        text(&secrets.stderr)
    );

    // Straight to the node's port: neither plaintext nor the admin's certificate.
    let node_object = client.get_object("nodes", "", "pods-tls").await.unwrap();
    let address = rudder_proto::objects::kubelet::kubelet_address(&node_object).unwrap();
    let stats = |tls: Option<ClientTls>| {
        let address = address.clone();
        async move {
            let dial = rudder_proto::dial::Dial::node(&address, tls.as_ref(), "pods-tls");
            let endpoint = dial
                .endpoint()
                .unwrap()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(5));
            let channel = dial.connect(endpoint).await?;
            rudder_proto::node::kubelet_client::KubeletClient::new(channel)
                .stats(rudder_proto::node::StatsRequest {
                    node: "pods-tls".into(),
                })
                .await
                .map(|_| ())
                .map_err(|status| status.to_string())
        }
    };
    assert!(stats(None).await.is_err(), "plaintext reached the node");
    assert!(
        stats(Some(admin_tls)).await.is_err(),
        "an operator's certificate reached the node"
    );
    // Past the life of the certificate the node joined with: it renewed it (a new file,
    // a new certificate), and both its ports still work — the master reaches its kubelet
    // port (exec), and it calls the master (it confirms the deletion below).
    let identity = scratch.dir.path().join("state/pki/node.pem");
    let joined_with = std::fs::read_to_string(&identity).unwrap();
    let (_, expires) = rudder_proto::tls::validity(&joined_with).unwrap();
    // Its not-before is back-dated for clock skew; its life is the masters' 12 s.
    let issued = expires - Duration::from_secs(12);
    wait_for(
        "the node renews its certificate",
        Duration::from_secs(30),
        async || match std::fs::read_to_string(&identity) {
            Ok(now) if now != joined_with => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    // Until the first certificate has expired (nothing to poll: the clock is the condition).
    if let Ok(left) = expires.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(left + Duration::from_secs(1)).await;
    }
    let hostname = with_admin(&["exec", "kubia", "--", "hostname"]);
    assert!(
        hostname.status.success(),
        "after the renewal: {}{}",
        text(&hostname.stderr),
        node.log()
    );
    // Renewed two thirds into each certificate's life (every 8 s), not back to back: at
    // most once per 8 s since the first was issued, however long this machine took.
    let renewals = node
        .log()
        .matches("this node's certificate was renewed")
        .count();
    let lived = std::time::SystemTime::now()
        .duration_since(issued)
        .unwrap_or_default();
    let most = lived.as_secs() as usize / 8 + 1;
    assert!(
        (1..=most).contains(&renewals),
        "{renewals} renewals in {lived:?}: {}",
        node.log()
    );

    // The node confirms the deletion with its own credential (its pod, so it may).
    let deleted = with_admin(&["delete", "pod", "kubia"]);
    assert!(deleted.status.success(), "{}", text(&deleted.stderr));
    wait_for(
        "the node confirms kubia's deletion",
        Duration::from_secs(30),
        async || match client.get_object("pods", "default", "kubia").await {
            Err(error) if error.is_not_found() => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    drop(node);
    drop(master);
}
