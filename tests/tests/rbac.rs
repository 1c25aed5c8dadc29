//! RBAC on a secured master, as operators and users meet it: a user with a certificate
//! from the cluster CA and no binding may do nothing but ask; bound to `view` in a
//! namespace, it lists and watches pods there and cannot create one — refused with
//! Kubernetes' 403 message, by Rudder's CLI and by the real kubectl alike, and nothing is
//! written. `auth can-i` answers the same, for oneself and (admin) for others; the store's
//! own etcd API is refused to anyone but `system:masters`. A user who
//! may write bindings cannot grant more than it holds, and a deleted binding takes its
//! rights with it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rudder_tests::secure::{
    admin_flags, apply_as, issue, kubeconfig, kubectl, pki, run, start, succeeded, text, KUBECTL,
};
use rudder_tests::wait_for;

/// How long a change of bindings may take to reach the master's policy.
const POLICY_CHANGE: Duration = Duration::from_secs(15);

/// A certificate for `user` (in no group) and the flags that make the CLI use it.
/// Asks `rudder auth can-i QUESTION` with `flags`' credentials: it answers `expected`
/// (`yes`, exit code 0; `no`, exit code 1).
fn answers(dir: &Path, flags: &[String], question: &[&str], expected: &str) {
    let verb: Vec<&str> = ["auth", "can-i"].iter().chain(question).copied().collect();
    let asked = run(dir, flags, &verb);
    let code = if expected == "yes" { 0 } else { 1 };
    assert_eq!(
        (text(&asked.stdout).trim(), asked.status.code()),
        (expected, Some(code)),
        "{question:?}: {}",
        text(&asked.stderr)
    );
}

fn user_flags(dir: &Path, server: &str, user: &str) -> Vec<String> {
    let (cert, key) = issue(dir, user, None, user);
    let mut flags = admin_flags(dir, server);
    flags[5] = cert.display().to_string();
    flags[7] = key.display().to_string();
    flags
}

const VIEW_IN_TEAM: &str = "\
apiVersion: v1
kind: Namespace
metadata: { name: team }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: jane-views, namespace: team }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view }
subjects:
- { kind: User, apiGroup: rbac.authorization.k8s.io, name: jane }
";

const POD: &str = "\
apiVersion: v1
kind: Pod
metadata: { name: web, namespace: team }
spec:
  containers: [{ name: web, image: kubia }]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_bound_to_view_reads_and_is_refused_writes_by_the_cli_and_kubectl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pki(d);
    let master = start(d, "m1", None, &[]);
    let admin = admin_flags(d, &master.client);
    let jane = user_flags(d, &master.client, "jane");

    // Before any binding, jane may ask what she may do, and nothing more.
    answers(d, &jane, &["list", "pods", "-n", "team"], "no");

    succeeded(&apply_as(d, &admin, "view", VIEW_IN_TEAM)).unwrap();
    wait_for("jane lists pods in team", POLICY_CHANGE, async || {
        succeeded(&run(d, &jane, &["get", "pods", "-n", "team"]))
    })
    .await;
    let other = run(d, &jane, &["get", "pods", "-n", "default"]);
    let said = text(&other.stderr);
    assert!(
        said.contains(
            r#"Error from server (Forbidden): pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "default""#
        ),
        "{said}"
    );

    // `view` shows the rules it gathers, as Kubernetes' aggregation writes them.
    wait_for("view shows its rules", POLICY_CHANGE, async || {
        let shown = succeeded(&run(
            d,
            &admin,
            &["get", "clusterrole", "view", "-o", "json"],
        ))?;
        let role: serde_json::Value = serde_json::from_str(&shown).map_err(|e| e.to_string())?;
        let reads_pods = role["rules"].as_array().into_iter().flatten().any(|rule| {
            rule["resources"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r == "pods"))
        });
        match reads_pods {
            true => Ok(()),
            false => Err(shown),
        }
    })
    .await;

    // A create is refused with Kubernetes' message, and nothing is written.
    let created = apply_as(d, &jane, "pod", POD);
    let said = text(&created.stderr);
    assert!(!created.status.success());
    assert!(
        said.contains(r#"User "jane" cannot"#)
            && said.contains(r#"resource "pods" in API group "" in the namespace "team""#),
        "{said}"
    );
    let listed = succeeded(&run(
        d,
        &admin,
        &["get", "pods", "-n", "team", "-o", "name"],
    ))
    .unwrap();
    assert_eq!(listed.trim(), "", "the refused pod was not written");

    // `auth can-i`, for herself and, asked by the admin, for her.
    answers(d, &jane, &["watch", "pods", "-n", "team"], "yes");
    answers(d, &jane, &["get", "secrets", "-n", "team"], "no");
    let as_jane = ["-n", "team", "--as", "jane"];
    answers(
        d,
        &admin,
        &[&["create", "pods"], &as_jane[..]].concat(),
        "no",
    );
    answers(
        d,
        &admin,
        &[&["get", "pods/log"], &as_jane[..]].concat(),
        "yes",
    );
    // Asking for others is not for jane.
    let prying = run(d, &jane, &["auth", "can-i", "get", "pods", "--as", "joe"]);
    assert!(
        text(&prying.stderr).contains("subjectaccessreviews"),
        "{}",
        text(&prying.stderr)
    );

    // The store's own API is the cluster's root's: jane's certificate cannot read a key.
    if Path::new("/usr/bin/etcdctl").exists() {
        let read = Command::new("/usr/bin/etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", master.client))
            .args(["--command-timeout=5s", "--dial-timeout=2s"])
            .arg(format!("--cacert={}", d.join("pki/ca.crt").display()))
            .arg(format!("--cert={}", d.join("jane.crt").display()))
            .arg(format!("--key={}", d.join("jane.key").display()))
            .args(["get", "/registry/", "--prefix", "--keys-only"])
            .output()
            .unwrap();
        assert!(!read.status.success(), "{}", text(&read.stdout));
        assert!(
            text(&read.stderr).contains("system:masters"),
            "{}",
            text(&read.stderr)
        );
        assert!(!text(&read.stdout).contains("/registry/"));
    }

    if !Path::new(KUBECTL).exists() {
        return;
    }
    let config = kubeconfig(d, &jane, "jane");
    let got = kubectl(&config, &["get", "pods", "-n", "team"]);
    assert!(got.status.success(), "{}", text(&got.stderr));
    let refused = kubectl(&config, &["create", "configmap", "settings", "-n", "team"]);
    assert_eq!(
        text(&refused.stderr).trim(),
        r#"error: failed to create configmap: configmaps is forbidden: User "jane" cannot create resource "configmaps" in API group "" in the namespace "team""#
    );
    let refused = kubectl(&config, &["delete", "namespace", "team"]);
    assert_eq!(
        text(&refused.stderr).trim(),
        r#"Error from server (Forbidden): namespaces "team" is forbidden: User "jane" cannot delete resource "namespaces" in API group "" in the namespace "team""#
    );
    let watching = kubectl(
        &config,
        &[
            "get",
            "secrets",
            "-n",
            "team",
            "--watch",
            "--request-timeout=2s",
        ],
    );
    assert!(
        text(&watching.stderr).contains("Forbidden"),
        "{}",
        text(&watching.stderr)
    );
    let can = kubectl(&config, &["auth", "can-i", "list", "pods", "-n", "team"]);
    assert_eq!(
        (text(&can.stdout).trim(), can.status.code()),
        ("yes", Some(0)),
        "{}",
        text(&can.stderr)
    );
    let cannot = kubectl(&config, &["auth", "can-i", "create", "pods", "-n", "team"]);
    assert_eq!(
        (text(&cannot.stdout).trim(), cannot.status.code()),
        ("no", Some(1)),
        "{}",
        text(&cannot.stderr)
    );
    drop(master);
}

const ADMIN_IN_TEAM: &str = "\
apiVersion: v1
kind: Namespace
metadata: { name: team }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: lead-admins, namespace: team }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin }
subjects:
- { kind: User, apiGroup: rbac.authorization.k8s.io, name: lead }
";

fn binding(name: &str, role: &str, user: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{ name: {name}, namespace: team }}
roleRef: {{ apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role} }}
subjects:
- {{ kind: User, apiGroup: rbac.authorization.k8s.io, name: {user} }}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_one_grants_more_than_it_holds_and_a_deleted_binding_takes_its_rights() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pki(d);
    let master = start(d, "m1", None, &[]);
    let admin = admin_flags(d, &master.client);
    let lead = user_flags(d, &master.client, "lead");
    let dev = user_flags(d, &master.client, "dev");

    succeeded(&apply_as(d, &admin, "admin", ADMIN_IN_TEAM)).unwrap();
    // The namespace's admin may give `edit` in it (admin holds all of edit) ...
    let edit = binding("dev-edits", "edit", "dev");
    wait_for("the lead binds edit", POLICY_CHANGE, async || {
        succeeded(&apply_as(d, &lead, "edit", &edit))
    })
    .await;
    wait_for("dev creates configmaps", POLICY_CHANGE, async || {
        succeeded(&run(
            d,
            &dev,
            &["auth", "can-i", "create", "configmaps", "-n", "team"],
        ))
    })
    .await;
    // ... but not cluster-admin, which it does not hold: refused, naming what is missing.
    let escalated = apply_as(
        d,
        &lead,
        "escalate",
        &binding("dev-owns-all", "cluster-admin", "dev"),
    );
    let said = text(&escalated.stderr);
    assert!(!escalated.status.success());
    assert!(
        said.contains(
            r#"rolebindings.rbac.authorization.k8s.io "dev-owns-all" is forbidden: user "lead""#
        ) && said.contains("is attempting to grant RBAC permissions not currently held")
            && said.contains(r#"{APIGroups:["*"], Resources:["*"], Verbs:["*"]}"#),
        "{said}"
    );
    // Nor write a Role with more than it holds.
    let role = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: nodes-too, namespace: team }
rules:
- { apiGroups: [''], resources: [nodes], verbs: [delete] }
";
    let refused = apply_as(d, &lead, "role", role);
    assert!(
        text(&refused.stderr).contains("not currently held"),
        "{}",
        text(&refused.stderr)
    );
    let bindings = succeeded(&run(
        d,
        &admin,
        &["get", "rolebindings", "-n", "team", "-o", "name"],
    ))
    .unwrap();
    assert!(!bindings.contains("dev-owns-all"), "{bindings}");
    let roles = succeeded(&run(
        d,
        &admin,
        &["get", "roles", "-n", "team", "-o", "name"],
    ))
    .unwrap();
    assert!(!roles.contains("nodes-too"), "{roles}");
    // The admin (system:masters) may.
    succeeded(&apply_as(d, &admin, "role", role)).unwrap();

    // Deleting the binding takes dev's rights away.
    succeeded(&run(
        d,
        &admin,
        &["delete", "rolebinding", "dev-edits", "-n", "team"],
    ))
    .unwrap();
    wait_for("dev loses edit", POLICY_CHANGE, async || {
        let asked = run(
            d,
            &dev,
            &["auth", "can-i", "create", "configmaps", "-n", "team"],
        );
        match text(&asked.stdout).trim() {
            "no" => Ok(()),
            other => Err(other.to_string()),
        }
    })
    .await;
    drop(master);
}

/// A default role an older master wrote (here: one an operator trimmed) gets back what
/// this version's holds when a master starts, unless it is marked to be kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_gives_the_default_roles_back_what_they_lack_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pki(d);
    let master = start(d, "m1", None, &[]);
    let admin = admin_flags(d, &master.client);
    let read = |admin: &[String], name: &str| -> Result<serde_json::Value, String> {
        let shown = succeeded(&run(d, admin, &["get", "clusterrole", name, "-o", "json"]))?;
        serde_json::from_str(&shown).map_err(|e| e.to_string())
    };
    let trimmed = |name: &str, keep: bool| {
        let mut role = read(&admin, name).unwrap();
        role["rules"].as_array_mut().unwrap().truncate(1);
        if keep {
            role["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] =
                "false".into();
        }
        let file = d.join(format!("{name}.json"));
        std::fs::write(&file, role.to_string()).unwrap();
        succeeded(&run(d, &admin, &["apply", "-f", file.to_str().unwrap()])).unwrap();
    };
    wait_for("the default roles", POLICY_CHANGE, async || {
        read(&admin, "system:aggregate-to-edit").map(drop)
    })
    .await;
    trimmed("system:aggregate-to-edit", false);
    trimmed("system:aggregate-to-view", true);
    drop(master);

    let master = start(d, "m1", None, &[]);
    let admin = admin_flags(d, &master.client);
    wait_for("edit's rules come back", POLICY_CHANGE, async || {
        let rules = read(&admin, "system:aggregate-to-edit")?["rules"]
            .as_array()
            .map_or(0, Vec::len);
        match rules > 1 {
            true => Ok(()),
            false => Err(format!("{rules} rules")),
        }
    })
    .await;
    let kept = read(&admin, "system:aggregate-to-view").unwrap();
    assert_eq!(
        kept["rules"].as_array().unwrap().len(),
        1,
        "kept as trimmed"
    );
    drop(master);
}
