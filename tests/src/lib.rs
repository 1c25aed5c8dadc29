//! `rudder-tests`: end-to-end tests against the real `rudder` binary. The process driver
//! lives in `rudder-chaos` (the chaos runner and the benchmarks use it too); this crate adds
//! what only tests need:
//!
//! - [`NodeScratch`]: a real node's state, removed when the test ends, pass or fail;
//! - [`hollow_nodes`], [`wait_for_nodes`]: simulated nodes (`rudder node --hollow`);
//! - [`until`], [`wait_for`]: waiting on a condition, failing with what was last seen;
//! - [`Watch`]: list, then follow every change (on another master when a stream breaks) and
//!   check a property at every event;
//! - [`Holder`], [`lease_holder`], [`member_log`]: who leads, and what a master logged;
//! - [`rudder_cli`]: the operator CLI against the test's masters;
//! - [`up`]: `rudder up` started, read and stopped as a user does;
//! - [`lines_of`]: a child's output, a line at a time, to read with a deadline;
//! - [`faults`]: who leads a process cluster, and leader kills and pauses on a schedule;
//! - [`promtool_accepts`]: a component's `/metrics`, judged by Prometheus' promtool;
//!   [`announced_metrics`]: where a component started on its own serves them;
//! - [`browser`]: a page the project writes, as headless Chromium shows it;
//! - [`secure`]: a PKI directory, an admin certificate, masters with `--pki`.

pub mod browser;
pub mod faults;
pub mod metrics;
pub mod secure;
pub mod up;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rudder_chaos::cluster::MemberProcess;
use rudder_proto::api::{ListRequest, WatchRequest};
use rudder_proto::client::ApiClient;
use serde_json::Value;

pub use metrics::{announced_metrics, promtool_accepts};
pub use rudder_chaos::client::{kv, maintenance, scrape, watch};
pub use rudder_chaos::cluster::{rudder_binary_beside_tests, ProcessCluster};

/// The controller manager's Lease (kube-system).
pub const CONTROLLER_LEASE: &str = "rudder-controller-manager";
/// The scheduler's Lease (kube-system).
pub const SCHEDULER_LEASE: &str = "rudder-scheduler";

/// The lines a child process writes to `stdout`, read on a thread of their own so that a
/// test waits on them with `recv_timeout` and fails in time instead of hanging.
pub fn lines_of(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (sender, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    received
}

/// The bytes a child writes (a terminal's output, which is not lines), as they come, read
/// on a thread of their own.
pub fn chunks_of(
    mut output: impl std::io::Read + Send + 'static,
) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let (sender, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n @ 1..) = output.read(&mut buffer) {
            if sender.send(buffer[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    received
}

/// What `chunks` brings (as lossy UTF-8) until `done` holds of all of it, the writer ends,
/// or `limit` passes.
pub fn collect_until(
    chunks: &std::sync::mpsc::Receiver<Vec<u8>>,
    limit: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = std::time::Instant::now() + limit;
    let mut seen = Vec::new();
    while !done(&String::from_utf8_lossy(&seen)) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match chunks.recv_timeout(left) {
            Ok(chunk) => seen.extend(chunk),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// The child's exit status once it ends within `limit`; past it the child is killed (and
/// reaped) and the answer is `None`.
pub fn wait_within(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `condition` every 100 ms until it holds; fails the test after `limit`, naming `what`.
pub async fn until(what: &str, limit: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `probe` every 100 ms until it answers `Ok`, and returns that answer. After `limit`
/// the test fails naming `what` and what `probe` saw last (its `Err`).
pub async fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match probe().await {
            Ok(answer) => return answer,
            Err(seen) => assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within {limit:?}; last seen: {seen}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How long a leader that must step down goes on acting first, in the fence tests: longer
/// than a request may wait (7 s), so a write it sends is answered, refused, before it stops.
pub const LATE_STEP_DOWN: Duration = Duration::from_secs(8);

/// The failpoint that keeps a leader acting for [`LATE_STEP_DOWN`] after it found it must
/// step down (`leader-steps-down-late`, see `rudder-actors`' elector): a paused and resumed
/// leader then really writes after the takeover, and the fence must refuse each write.
pub fn late_step_down_flags() -> Vec<String> {
    vec![format!(
        "--failpoints=leader-steps-down-late=return({})",
        LATE_STEP_DOWN.as_millis()
    )]
}

/// Leader-election timers short enough for a failover within a test: lease 3 s, renew
/// deadline 2 s, retry 500 ms (the defaults are 15 s, 10 s and 2 s).
pub fn short_lease_flags() -> Vec<String> {
    [
        "--leader-elect-lease-duration",
        "3s",
        "--leader-elect-renew-deadline",
        "2s",
        "--leader-elect-retry-period",
        "500ms",
    ]
    .map(String::from)
    .to_vec()
}

/// `rudder node --hollow`: `count` simulated nodes `name-0` ... `name-(count-1)` in one
/// process against `servers` (`host:port,...`). Killed by its PID when dropped; tests end it
/// with `kill().await`.
pub fn hollow_nodes(servers: &str, name: &str, count: usize) -> tokio::process::Child {
    hollow_nodes_with(servers, name, count, &[])
}

/// [`hollow_nodes`] with more flags (`--hollow-cpus 8`, `--labels zone=a`, ...).
pub fn hollow_nodes_with(
    servers: &str,
    name: &str,
    count: usize,
    flags: &[String],
) -> tokio::process::Child {
    tokio::process::Command::new(rudder_binary_beside_tests())
        .args(["node", "--name", name, "--hollow", "--count"])
        .arg(count.to_string())
        .args(["--server", servers])
        .args(flags)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("rudder node --hollow starts")
}

/// Waits (30 s at most) until the masters behind `client` have made the `default` namespace:
/// they serve the API and have bootstrapped.
pub async fn wait_for_default_namespace(client: &ApiClient) {
    until(
        "the default namespace",
        Duration::from_secs(30),
        async || client.get_object("namespaces", "", "default").await.is_ok(),
    )
    .await;
}

/// Waits until exactly `count` nodes are registered.
pub async fn wait_for_nodes(client: &ApiClient, count: usize, limit: Duration) {
    wait_for(&format!("{count} nodes registered"), limit, async || {
        let listed = client
            .list(ListRequest {
                resource: "nodes".into(),
                ..Default::default()
            })
            .await
            .map_err(|error| error.to_string())?;
        match listed.items.len() {
            n if n == count => Ok(()),
            n => Err(format!("{n} nodes")),
        }
    })
    .await;
}

/// An object's `metadata.resourceVersion`: the store revision of its last change.
pub fn revision(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Whether a pod counts as one of its controller's: not being deleted and not ended
/// (Succeeded or Failed), as Kubernetes' controllers count active pods.
pub fn is_live(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && !matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        )
}

/// Whether a pod's Ready condition is True (with `minReadySeconds` 0: available).
pub fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The live pods (see [`is_live`]) in `default` matching `selector`, listed now.
pub async fn live_pods(client: &ApiClient, selector: &str) -> Result<Vec<Value>, String> {
    let listed = client
        .list(ListRequest {
            resource: "pods".into(),
            namespace: "default".into(),
            label_selector: selector.into(),
            ..Default::default()
        })
        .await
        .map_err(|error| format!("listing pods {selector}: {error}"))?;
    let mut pods = Vec::new();
    for item in &listed.items {
        let pod: Value =
            serde_json::from_slice(item).map_err(|error| format!("a listed pod: {error}"))?;
        if is_live(&pod) {
            pods.push(pod);
        }
    }
    Ok(pods)
}

/// Who holds a leader-election Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// `<master name>_<per-process suffix>`.
    pub identity: String,
    /// `leaseTransitions`: the epoch its fenced writes carry.
    pub epoch: i64,
    /// The lease's revision as read.
    pub revision: u64,
}

impl Holder {
    /// The holder a Lease names; `None` when it names none.
    pub fn of(lease: &Value) -> Option<Self> {
        let identity = lease["spec"]["holderIdentity"].as_str()?;
        if identity.is_empty() {
            return None;
        }
        Some(Self {
            identity: identity.to_string(),
            epoch: lease["spec"]["leaseTransitions"].as_i64().unwrap_or(0),
            revision: revision(lease),
        })
    }

    /// The holding master's `--name`.
    pub fn master(&self) -> &str {
        self.identity.split('_').next().unwrap_or_default()
    }
}

/// The holder of the Lease `kube-system/<lease>` now, if any.
pub async fn lease_holder(client: &ApiClient, lease: &str) -> Option<Holder> {
    let lease = client
        .get_object("leases", "kube-system", lease)
        .await
        .ok()?;
    Holder::of(&lease)
}

/// What a master has logged so far (its stderr, which the cluster keeps in
/// `<data dir>.log`).
pub fn member_log(member: &MemberProcess) -> String {
    std::fs::read_to_string(member.data_dir.with_extension("log")).unwrap_or_default()
}

/// What a `rudder` command printed, and whether it succeeded.
#[derive(Debug)]
pub struct CliOutput {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `rudder ARGS...` against `servers` (`host:port,...`, through `RUDDER_SERVER`); it
/// must finish within 60 s.
pub async fn rudder_cli(servers: &str, args: &[&str]) -> CliOutput {
    let child = tokio::process::Command::new(rudder_binary_beside_tests())
        .args(args)
        .env("RUDDER_SERVER", servers)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("rudder runs");
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("rudder {args:?} did not finish within 60 s"))
        .expect("rudder's output");
    CliOutput {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// What a [`Watch`] follows: one resource, optionally narrowed.
#[derive(Debug, Clone, Default)]
pub struct Follow {
    pub resource: String,
    /// Empty: every namespace.
    pub namespace: String,
    pub label_selector: String,
    pub field_selector: String,
}

impl Follow {
    /// Pods in `namespace` matching `label_selector` (empty: all of them).
    pub fn pods(namespace: &str, label_selector: &str) -> Self {
        Self {
            resource: "pods".into(),
            namespace: namespace.into(),
            label_selector: label_selector.into(),
            ..Default::default()
        }
    }

    /// The Lease `kube-system/<name>`.
    pub fn lease(name: &str) -> Self {
        Self {
            resource: "leases".into(),
            namespace: "kube-system".into(),
            field_selector: format!("metadata.name={name}"),
            ..Default::default()
        }
    }
}

/// How long a [`Watch`] keeps trying the masters after a stream broke before it gives up.
const WATCH_PATIENCE: Duration = Duration::from_secs(30);

/// What a watch has shown, and the state its check keeps.
struct Shown<S> {
    /// Every object as it stands after the last event, by `namespace/name`.
    objects: BTreeMap<String, Value>,
    state: S,
    /// The revision reached: a broken stream resumes after it.
    revision: u64,
    /// Why the watch stopped following (what it shows is then incomplete).
    gave_up: Option<String>,
}

/// A watch for checking a property at every change: [`Watch::start`] lists the objects, then
/// a task follows every change from the list's revision — on the next master when a stream
/// breaks, from the last revision it saw, so it misses nothing and sees nothing twice — and
/// after each event hands a check the event and every object as it stands then. The task
/// ends when the watch is stopped or dropped.
pub struct Watch<S> {
    what: String,
    shown: Arc<Mutex<Shown<S>>>,
    /// Counts the events applied (and turns once more when the watch gives up).
    events: Arc<tokio::sync::watch::Sender<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl<S: Send + 'static> Watch<S> {
    /// Lists what `follow` names through `endpoints` (masters that stay up), then follows it
    /// with `check` run after every event as `check(state, event type, the object, every
    /// object now)`, starting from `state`. The check records what it finds in `state` (a
    /// panic there would end the watch). Returns once the list is in.
    pub async fn start<F>(endpoints: Vec<String>, follow: Follow, state: S, check: F) -> Self
    where
        F: FnMut(&mut S, &str, &Value, &BTreeMap<String, Value>) + Send + 'static,
    {
        let what = format!(
            "{} {} {} {}",
            follow.resource, follow.namespace, follow.label_selector, follow.field_selector
        );
        let client = ApiClient::new(endpoints);
        let listed = client
            .list(ListRequest {
                resource: follow.resource.clone(),
                namespace: follow.namespace.clone(),
                label_selector: follow.label_selector.clone(),
                field_selector: follow.field_selector.clone(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|error| panic!("listing {what} to watch it: {error}"));
        let mut objects = BTreeMap::new();
        for item in &listed.items {
            let object: Value = serde_json::from_slice(item).expect("a listed object");
            objects.insert(key(&object), object);
        }
        let revision: u64 = listed
            .resource_version
            .parse()
            .unwrap_or_else(|_| panic!("the list of {what} has no revision to watch from"));
        let shown = Arc::new(Mutex::new(Shown {
            objects,
            state,
            revision,
            gave_up: None,
        }));
        let events = Arc::new(tokio::sync::watch::Sender::new(0));
        let task = tokio::spawn(follow_changes(
            client,
            follow,
            shown.clone(),
            events.clone(),
            check,
        ));
        Self {
            what,
            shown,
            events,
            task,
        }
    }

    /// Waits until `condition`, asked after every event about what the watch shows then,
    /// answers `Ok`, and returns that answer: no polling delay, so a test can act the moment
    /// something happens. After `limit` the test fails naming `what` and the condition's last
    /// `Err`; at once if the watch gives up.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        limit: Duration,
        mut condition: impl FnMut(&BTreeMap<String, Value>, &S) -> Result<T, String>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + limit;
        let mut events = self.events.subscribe();
        loop {
            let seen = match self.with(|objects, state| condition(objects, state)) {
                Ok(answer) => return answer,
                Err(seen) => seen,
            };
            let next = tokio::time::timeout_at(deadline, events.changed()).await;
            assert!(
                next.is_ok(),
                "{what}: not within {limit:?}; last seen: {seen}"
            );
        }
    }

    /// Reads what the watch shows now: every object, and the check's state. Fails the test
    /// if the watch gave up.
    pub fn with<R>(&self, read: impl FnOnce(&BTreeMap<String, Value>, &S) -> R) -> R {
        let shown = lock(&self.shown);
        if let Some(why) = &shown.gave_up {
            panic!("the watch on {} gave up: {why}", self.what);
        }
        read(&shown.objects, &shown.state)
    }

    /// Stops following. Fails the test if the watch gave up or its check panicked on the
    /// way: what it saw would be incomplete, and a property checked on it would prove
    /// nothing.
    pub fn stop(&self) {
        let ended = self.task.is_finished();
        self.task.abort();
        let gave_up = lock(&self.shown).gave_up.clone();
        if let Some(why) = gave_up {
            panic!("the watch on {} gave up: {why}", self.what);
        }
        assert!(
            !ended,
            "the watch on {} ended early (its check panicked?)",
            self.what
        );
    }
}

impl<S> Drop for Watch<S> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn key(object: &Value) -> String {
    format!(
        "{}/{}",
        object["metadata"]["namespace"].as_str().unwrap_or_default(),
        object["metadata"]["name"].as_str().unwrap_or_default()
    )
}

/// The watch's task: follows from the revision reached, on the next master after a break.
async fn follow_changes<S, F>(
    client: ApiClient,
    follow: Follow,
    shown: Arc<Mutex<Shown<S>>>,
    events: Arc<tokio::sync::watch::Sender<u64>>,
    mut check: F,
) where
    S: Send + 'static,
    F: FnMut(&mut S, &str, &Value, &BTreeMap<String, Value>) + Send + 'static,
{
    let mut broken_since: Option<tokio::time::Instant> = None;
    loop {
        let from = lock(&shown).revision;
        let request = WatchRequest {
            resource: follow.resource.clone(),
            namespace: follow.namespace.clone(),
            label_selector: follow.label_selector.clone(),
            field_selector: follow.field_selector.clone(),
            resource_version: from.to_string(),
            ..Default::default()
        };
        let trouble = match client.watch(request).await {
            Ok(mut stream) => loop {
                match stream.message().await {
                    Ok(Some(event)) => {
                        broken_since = None;
                        let applied = apply(&shown, &event.r#type, &event.object, &mut check);
                        if let Err(why) = &applied {
                            lock(&shown).gave_up = Some(why.clone());
                        }
                        events.send_modify(|count| *count += 1);
                        if applied.is_err() {
                            return;
                        }
                    }
                    Ok(None) => break "the stream ended".to_string(),
                    Err(status) => break status.to_string(),
                }
            },
            Err(error) => error.to_string(),
        };
        client.skip_current();
        let since = *broken_since.get_or_insert_with(tokio::time::Instant::now);
        if since.elapsed() > WATCH_PATIENCE {
            lock(&shown).gave_up = Some(format!(
                "no master served it for {WATCH_PATIENCE:?}; last: {trouble}"
            ));
            events.send_modify(|count| *count += 1);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Applies one event to what the watch shows and runs the check; `Err` ends the watch.
fn apply<S, F>(
    shown: &Mutex<Shown<S>>,
    kind: &str,
    bytes: &[u8],
    check: &mut F,
) -> Result<(), String>
where
    F: FnMut(&mut S, &str, &Value, &BTreeMap<String, Value>),
{
    let object: Value = serde_json::from_slice(bytes)
        .map_err(|error| format!("a {kind} event that is not JSON: {error}"))?;
    let mut shown = lock(shown);
    match kind {
        "ERROR" => return Err(format!("the server ended it: {object}")),
        "BOOKMARK" => {}
        "DELETED" => {
            shown.objects.remove(&key(&object));
        }
        _ => {
            shown.objects.insert(key(&object), object.clone());
        }
    }
    shown.revision = shown.revision.max(revision(&object));
    if kind != "BOOKMARK" {
        let Shown { objects, state, .. } = &mut *shown;
        check(state, kind, &object, &*objects);
    }
    Ok(())
}

/// A real node's state for one test: its own root and image store in a temporary directory,
/// and its bridge and proxy table removed when the test ends (pass or fail). Bridges are named after their
/// node, so tests running at once use different node names.
pub struct NodeScratch {
    pub dir: tempfile::TempDir,
    name: String,
    bridge: String,
}

impl NodeScratch {
    pub fn new(node_name: &str) -> Self {
        Self {
            dir: tempfile::tempdir().expect("a scratch directory"),
            name: node_name.to_string(),
            bridge: rudder_node::runtime::linux::network::interface_name("rb", node_name),
        }
    }

    /// The node's bridge (and, as `rudder-<bridge>`, its proxy's table).
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// `--root`, `--images` and `--port 0` for `rudder node`.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--root".into(),
            self.dir.path().join("state").display().to_string(),
            "--images".into(),
            self.dir.path().join("images").display().to_string(),
            "--port".into(),
            "0".into(),
        ]
    }
}

impl Drop for NodeScratch {
    /// Whatever a failed test left under this node goes as `rudder node reset` takes it:
    /// containers and shims by their PIDs, mounts, cgroups, veths, the bridge, the proxy's
    /// table (a stopped node keeps it, so its pods stay reachable), and what nodes share
    /// when no other node is left.
    fn drop(&mut self) {
        let root = self.dir.path().join("state");
        if let Err(error) = rudder_node::runtime::linux::reset::reset(&self.name, &root) {
            eprintln!("resetting test node {}: {error}", self.name);
        }
    }
}
