//! The real kubectl (`/usr/bin/kubectl`, 1.32 here) against a 3-master `rudder up`, through
//! the kubeconfig `rudder up` writes and the endpoint it names: discovery, tables, apply
//! (twice: `unchanged`), scale, rollout status, label/annotate/patch of all three types,
//! edit, watch, raw paths, explain (from /openapi/v3 and v2), errors, and a deletion with
//! --cascade. The endpoint survives a master's death. Skipped, saying so, where no kubectl is installed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rudder_tests::up::{stop, up};
use rudder_tests::wait_for;

const KUBECTL: &str = "/usr/bin/kubectl";

struct Kubectl {
    kubeconfig: PathBuf,
    /// kubectl's discovery and OpenAPI cache, fresh for each test.
    cache: PathBuf,
}

impl Kubectl {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(KUBECTL);
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .arg(format!("--cache-dir={}", self.cache.display()))
            .arg("--request-timeout=20s")
            .args(args);
        command
    }

    /// Runs kubectl; its stdout, or a failure naming stderr.
    fn try_run(&self, args: &[&str], input: Option<&str>) -> Result<String, String> {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        let mut stdin = child.stdin.take().unwrap();
        if let Some(input) = input {
            stdin.write_all(input.as_bytes()).unwrap();
        }
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "kubectl {args:?} failed:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    fn run(&self, args: &[&str]) -> String {
        self.try_run(args, None)
            .unwrap_or_else(|error| panic!("{error}"))
    }

    fn run_with_input(&self, args: &[&str], input: &str) -> String {
        self.try_run(args, Some(input))
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// `kubectl get KIND NAME -n shop -o jsonpath=PATH`.
    fn jsonpath(&self, kind: &str, name: &str, path: &str) -> String {
        self.run(&[
            "get",
            kind,
            name,
            "-n",
            "shop",
            "-o",
            &format!("jsonpath={path}"),
        ])
    }

    /// Runs a kubectl that must fail; its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let output = self.command(args).output().unwrap();
        assert!(!output.status.success(), "kubectl {args:?} should fail");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }
}

const SHOP: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
data:
  color: blue
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 2
  selector:
    matchLabels: { app: web }
  template:
    metadata:
      labels: { app: web }
    spec:
      containers:
      - name: web
        image: kubia:v1
        ports:
        - containerPort: 8080
";

/// The header line of a table, its columns split on runs of spaces.
fn header(table: &str) -> Vec<String> {
    table
        .lines()
        .next()
        .unwrap_or_default()
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

fn write_editor(dir: &Path) -> PathBuf {
    let editor = dir.join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/color: blue/color: green/' \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    editor
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drives_a_three_master_rudder_up() {
    if !Path::new(KUBECTL).exists() {
        eprintln!("skipped: no kubectl at {KUBECTL} (`scripts/dev.sh test` installs one)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = rudder_tests::up::args(dir.path(), &["--hollow-nodes", "2", "--nodes", "0"]);
    let running = up(&args).await;
    let kubectl = Kubectl {
        kubeconfig: data.join("kubeconfig"),
        cache: dir.path().join("kube-cache"),
    };
    // Secure by default: https, the cluster CA and an admin certificate, readable by the
    // user only.
    let kubeconfig = std::fs::read_to_string(&kubectl.kubeconfig).unwrap();
    assert!(
        kubeconfig.contains(&format!("https://{}", running.api_endpoint))
            && kubeconfig.contains("certificate-authority-data")
            && kubeconfig.contains("client-certificate-data"),
        "{kubeconfig}"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&kubectl.kubeconfig)
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    let version: serde_json::Value =
        serde_json::from_str(&kubectl.run(&["version", "-o", "json"])).unwrap();
    assert!(
        version["serverVersion"]["gitVersion"]
            .as_str()
            .unwrap()
            .contains("rudder"),
        "{version}"
    );
    let resources = kubectl.run(&["api-resources"]);
    assert!(
        resources.lines().any(|l| l.starts_with("pods ")
            && l.contains(" po ")
            && l.contains(" v1 ")
            && l.trim_end().ends_with("Pod")),
        "{resources}"
    );
    assert!(
        resources
            .lines()
            .any(|l| l.starts_with("deployments ") && l.contains("apps/v1")),
        "{resources}"
    );

    // The hollow nodes register; kubectl's node table has kubectl's columns.
    let nodes = wait_for(
        "two nodes in kubectl get nodes",
        Duration::from_secs(30),
        async || {
            let nodes = kubectl.run(&["get", "nodes"]);
            if nodes.lines().count() == 3 {
                Ok(nodes)
            } else {
                Err(nodes)
            }
        },
    )
    .await;
    assert_eq!(
        header(&nodes),
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    );

    // apply of a multi-document manifest, then again: unchanged.
    let applied = kubectl.run_with_input(&["apply", "-f", "-"], SHOP);
    assert_eq!(
        applied,
        "namespace/shop created\nconfigmap/settings created\ndeployment.apps/web created\n"
    );
    let again = kubectl.run_with_input(&["apply", "-f", "-"], SHOP);
    assert_eq!(
        again,
        "namespace/shop unchanged\nconfigmap/settings unchanged\ndeployment.apps/web unchanged\n"
    );

    // kubectl create's typed clients send protobuf bodies.
    assert_eq!(
        kubectl.run(&["create", "namespace", "made"]),
        "namespace/made created\n"
    );
    let made = ["-n", "made"];
    assert_eq!(
        kubectl.run(
            &[
                &["create", "configmap", "flags"],
                &made[..],
                &["--from-literal=mode=fast", "--from-literal=empty="]
            ]
            .concat()
        ),
        "configmap/flags created\n"
    );
    assert_eq!(
        kubectl.run(
            &[
                &["get", "configmap", "flags"],
                &made[..],
                &["-o", "jsonpath={.data}"]
            ]
            .concat()
        ),
        r#"{"empty":"","mode":"fast"}"#
    );
    assert_eq!(
        kubectl.run(
            &[
                &["create", "deployment", "echo"],
                &made[..],
                &["--image=kubia:v1", "--replicas=2", "--port=8080"]
            ]
            .concat()
        ),
        "deployment.apps/echo created\n"
    );
    assert_eq!(
        kubectl.run(
            &[
                &["create", "secret", "generic", "token"],
                &made[..],
                &["--from-literal=key=s3cret"]
            ]
            .concat()
        ),
        "secret/token created\n"
    );
    assert_eq!(
        kubectl.run(
            &[
                &["get", "secret", "token"],
                &made[..],
                &["-o", "jsonpath={.data.key}"]
            ]
            .concat()
        ),
        "czNjcmV0",
        "base64 of s3cret"
    );
    let shape = "{.spec.replicas} {.spec.selector.matchLabels.app} \
                 {.spec.template.spec.containers[0].ports[0].containerPort}";
    assert_eq!(
        kubectl.run(
            &[
                &["get", "deployment", "echo"],
                &made[..],
                &["-o", &format!("jsonpath={shape}")]
            ]
            .concat()
        ),
        "2 echo 8080"
    );

    // The controllers and the scheduler run the deployment's pods on the hollow nodes.
    let pods = wait_for("two running pods", Duration::from_secs(60), async || {
        let pods = kubectl.run(&["get", "pods", "-n", "shop", "-o", "wide"]);
        if pods.matches("Running").count() == 2 {
            Ok(pods)
        } else {
            Err(pods)
        }
    })
    .await;
    assert_eq!(
        header(&pods),
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED NODE",
            "READINESS GATES"
        ]
    );
    let all = kubectl.run(&["get", "pods", "-A"]);
    assert_eq!(header(&all)[0], "NAMESPACE", "{all}");
    assert!(all.contains("shop "), "{all}");

    let yaml = kubectl.run(&["get", "deployment", "web", "-n", "shop", "-o", "yaml"]);
    assert!(yaml.contains("kind: Deployment"), "{yaml}");
    let replicas = kubectl.jsonpath("deploy", "web", "{.spec.replicas}");
    assert_eq!(replicas, "2");

    assert_eq!(
        kubectl.run(&["scale", "deployment", "web", "-n", "shop", "--replicas=3"]),
        "deployment.apps/web scaled\n"
    );
    let status = kubectl.run(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        "shop",
        "--timeout=60s",
    ]);
    assert!(status.contains("successfully rolled out"), "{status}");

    // label, annotate, patch of each type.
    assert_eq!(
        kubectl.run(&["label", "cm", "settings", "-n", "shop", "tier=front"]),
        "configmap/settings labeled\n"
    );
    assert_eq!(
        kubectl.run(&["annotate", "cm", "settings", "-n", "shop", "note=hi"]),
        "configmap/settings annotated\n"
    );
    let patches = [
        ("strategic", r#"{"data":{"size":"L"}}"#),
        ("merge", r#"{"data":{"shape":"round"}}"#),
        (
            "json",
            r#"[{"op":"add","path":"/data/weight","value":"5"}]"#,
        ),
    ];
    for (kind, patch) in patches {
        assert_eq!(
            kubectl.run(&["patch", "cm", "settings", "-n", "shop", "--type", kind, "-p", patch]),
            "configmap/settings patched\n",
            "--type {kind}"
        );
    }
    let strategic =
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"kubia:v2"}]}}}}"#;
    kubectl.run(&["patch", "deploy", "web", "-n", "shop", "-p", strategic]);
    let template = kubectl.jsonpath("deploy", "web", "{.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort}");
    assert_eq!(template, "kubia:v2 8080", "the container merged by name");

    // Server-side apply: creates and re-applies; a field another manager changed since is a
    // conflict until forced; a field left out of the configuration goes.
    let served = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: served, namespace: shop}\n\
                  data: {mode: a, size: s}\n";
    for _ in 0..2 {
        assert_eq!(
            kubectl.run_with_input(&["apply", "--server-side", "-f", "-"], served),
            "configmap/served serverside-applied\n"
        );
    }
    kubectl.run(&[
        "patch",
        "cm",
        "served",
        "-n",
        "shop",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"mode":"b"}}"#,
    ]);
    let conflict = kubectl
        .try_run(&["apply", "--server-side", "-f", "-"], Some(served))
        .unwrap_err();
    assert!(
        conflict.contains(r#"conflict with "kubectl-patch""#) && conflict.contains(".data.mode"),
        "{conflict}"
    );
    let smaller = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: served, namespace: shop}\n\
                   data: {mode: a}\n";
    kubectl.run_with_input(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        smaller,
    );
    let data = kubectl.jsonpath("cm", "served", "{.data}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&data).unwrap(),
        serde_json::json!({ "mode": "a" })
    );
    let managers = kubectl.jsonpath("cm", "served", "{.metadata.managedFields[*].manager}");
    assert_eq!(managers, "kubectl");

    // edit, with an editor that changes one value.
    let editor = write_editor(dir.path());
    let edited = kubectl
        .command(&["edit", "cm", "settings", "-n", "shop"])
        .env("EDITOR", &editor)
        .output()
        .unwrap();
    assert!(
        edited.status.success(),
        "{}",
        String::from_utf8_lossy(&edited.stderr)
    );
    let data = kubectl.jsonpath("cm", "settings", "{.data}");
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(
        data,
        serde_json::json!({ "color": "green", "size": "L", "shape": "round", "weight": "5" })
    );

    // get -w sees a change made by another client.
    let mut watch = kubectl
        .command(&["get", "cm", "-n", "shop", "-w", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let received = rudder_tests::lines_of(watch.stdout.take().unwrap());
    // The watch has listed (its first rows are out) before the change is made.
    let first = received.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(first.contains("EVENT"), "{first}");
    kubectl.run_with_input(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: later, namespace: shop}\n",
    );
    let seen = loop {
        let line = received
            .recv_timeout(Duration::from_secs(20))
            .expect("the watch reports the new configmap");
        if line.contains("later") {
            break line;
        }
    };
    assert!(seen.starts_with("ADDED"), "{seen}");
    watch.kill().unwrap();
    watch.wait().unwrap();

    let raw: serde_json::Value =
        serde_json::from_str(&kubectl.run(&["get", "--raw", "/api/v1/namespaces"])).unwrap();
    assert_eq!(raw["kind"], "NamespaceList");
    let explained = kubectl.run(&["explain", "pod.spec.containers"]);
    assert!(explained.contains("FIELDS:"), "{explained}");
    assert!(explained.contains("image"), "{explained}");
    // The same from /openapi/v2 (protobuf, as client-go reads it): its kind found by its
    // group-version-kind, a field's description and its element's fields.
    let explained = kubectl.run(&[
        "explain",
        "deployment.spec.template.spec.containers.ports",
        "--output=plaintext-openapiv2",
    ]);
    for expected in [
        "KIND:     Deployment",
        "VERSION:  apps/v1",
        "containerPort\t<integer> -required-",
    ] {
        assert!(explained.contains(expected), "{expected:?} in {explained}");
    }

    // Errors read as kube-apiserver's.
    let missing = kubectl.fails(&["get", "pod", "nope", "-n", "shop"]);
    assert!(
        missing.contains(r#"Error from server (NotFound): pods "nope" not found"#),
        "{missing}"
    );
    let bad = kubectl
        .try_run(
            &["apply", "-f", "-"],
            Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name, namespace: shop}\n"),
        )
        .unwrap_err();
    assert!(
        bad.contains(r#"ConfigMap "Bad_Name" is invalid: metadata.name"#),
        "{bad}"
    );

    // Unknown fields: refused by default (kubectl asks for Strict), dropped with a warning
    // under --validate=warn, dropped under --validate=false.
    let misspelt =
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: loose, namespace: shop}\ndataa: {k: v}\n";
    let refused = kubectl
        .try_run(&["apply", "-f", "-"], Some(misspelt))
        .unwrap_err();
    assert!(refused.contains("dataa"), "{refused}");
    let warned = kubectl
        .command(&["apply", "--validate=warn", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = warned.stdin.as_ref().unwrap();
    input.write_all(misspelt.as_bytes()).unwrap();
    let warned = warned.wait_with_output().unwrap();
    assert!(warned.status.success());
    let warning = String::from_utf8_lossy(&warned.stderr);
    assert!(
        warning.contains(r#"Warning: unknown field "dataa""#),
        "{warning}"
    );
    let ignored = misspelt.replace("loose", "looser");
    kubectl.run_with_input(&["apply", "--validate=false", "-f", "-"], &ignored);

    // The endpoint survives a master's death.
    kill(Pid::from_raw(running.pids[0]), Signal::SIGKILL).unwrap();
    for _ in 0..5 {
        kubectl.run(&["get", "ns", "shop"]);
    }

    let deleted = kubectl.run(&[
        "delete",
        "deployment",
        "web",
        "-n",
        "shop",
        "--cascade=foreground",
    ]);
    assert_eq!(deleted, "deployment.apps \"web\" deleted\n");
    let gone = kubectl.fails(&["get", "deployment", "web", "-n", "shop"]);
    assert!(gone.contains("NotFound"), "{gone}");
    stop(running).await;
}
