//! ServiceAccount tokens on a secured master, as a user meets them: `rudder create token`
//! and `kubectl create token` give a ServiceAccount's token; with it, Rudder's CLI and the
//! real kubectl may do what the account's Role allows and nothing more; a token bound to
//! a pod dies with the pod, every token with its account; one too short-lived, tampered
//! with or signed by another cluster is refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rudder_tests::secure::{admin_flags, kubectl, pki, run, start, succeeded, text, KUBECTL};
use rudder_tests::wait_for;

/// The flags that make the CLI call `server` with `token` (and the CA, no certificate).
fn token_flags(dir: &Path, server: &str, token: &str) -> Vec<String> {
    vec![
        "--server".into(),
        server.into(),
        "--certificate-authority".into(),
        dir.join("pki/ca.crt").display().to_string(),
        "--token".into(),
        token.into(),
    ]
}

/// The kubeconfig `rudder config kubeconfig --token` writes for `token`.
fn token_kubeconfig(dir: &Path, server: &str, token: &str) -> PathBuf {
    let written = run(
        dir,
        &token_flags(dir, server, token),
        &["config", "kubeconfig"],
    );
    let path = dir.join("token.kubeconfig");
    std::fs::write(&path, succeeded(&written).unwrap()).unwrap();
    path
}

const ROBOT: &str = "\
apiVersion: v1
kind: Namespace
metadata: { name: team }
---
apiVersion: v1
kind: ServiceAccount
metadata: { name: robot, namespace: team }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: pod-reader, namespace: team }
rules:
- { apiGroups: [''], resources: [pods], verbs: [get, list, watch] }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: robot-reads, namespace: team }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader }
subjects:
- { kind: ServiceAccount, name: robot, namespace: team }
---
apiVersion: v1
kind: Pod
metadata: { name: web, namespace: team }
spec:
  serviceAccountName: robot
  containers: [{ name: web, image: kubia }]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_token_does_what_its_role_allows_and_dies_with_what_it_is_bound_to() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pki(d);
    let master = start(d, "m1", None, &[]);
    let admin = admin_flags(d, &master.client);
    std::fs::write(d.join("robot.yaml"), ROBOT).unwrap();
    succeeded(&run(
        d,
        &admin,
        &["apply", "-f", d.join("robot.yaml").to_str().unwrap()],
    ))
    .unwrap();

    let made = run(d, &admin, &["create", "token", "robot", "-n", "team"]);
    let token = succeeded(&made).unwrap().trim().to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let robot = token_flags(d, &master.client, &token);
    wait_for(
        "the robot lists pods",
        Duration::from_secs(15),
        async || succeeded(&run(d, &robot, &["get", "pods", "-n", "team"])),
    )
    .await;
    let secrets = run(d, &robot, &["get", "secrets", "-n", "team"]);
    assert!(
        text(&secrets.stderr).contains(
            r#"secrets is forbidden: User "system:serviceaccount:team:robot" cannot list resource "secrets" in API group "" in the namespace "team""#
        ),
        "{}",
        text(&secrets.stderr)
    );
    let elsewhere = run(d, &robot, &["get", "pods", "-n", "default"]);
    assert!(!elsewhere.status.success());

    // A token goes only over TLS.
    let plaintext = run(
        d,
        &[],
        &["get", "pods", "--server", &master.client, "--token", &token],
    );
    assert!(
        text(&plaintext.stderr).contains("--token needs TLS"),
        "{}",
        text(&plaintext.stderr)
    );
    // Too short a life is refused, naming the field.
    let short = run(
        d,
        &admin,
        &["create", "token", "robot", "-n", "team", "--duration", "5m"],
    );
    assert!(
        text(&short.stderr).contains("spec.expirationSeconds")
            && text(&short.stderr).contains("10 minutes"),
        "{}",
        text(&short.stderr)
    );
    // Tampered with: unknown.
    let mut tampered = token.clone();
    tampered.insert(tampered.len() - 5, 'A');
    let refused = run(
        d,
        &token_flags(d, &master.client, &tampered),
        &["get", "pods", "-n", "team"],
    );
    assert!(
        text(&refused.stderr).contains("bearer token"),
        "{}",
        text(&refused.stderr)
    );

    // The real kubectl: a token from `kubectl create token`, then used.
    if Path::new(KUBECTL).exists() {
        let config = run(d, &admin, &["config", "kubeconfig"]);
        std::fs::write(d.join("admin.kubeconfig"), &config.stdout).unwrap();
        let made = kubectl(
            &d.join("admin.kubeconfig"),
            &["create", "token", "robot", "-n", "team"],
        );
        assert!(made.status.success(), "{}", text(&made.stderr));
        let by_kubectl = text(&made.stdout).trim().to_string();
        let as_robot = token_kubeconfig(d, &master.client, &by_kubectl);
        let listed = kubectl(&as_robot, &["get", "pods", "-n", "team", "-o", "name"]);
        assert_eq!(
            text(&listed.stdout).trim(),
            "pod/web",
            "{}",
            text(&listed.stderr)
        );
        let can = kubectl(
            &as_robot,
            &["auth", "can-i", "delete", "pods", "-n", "team"],
        );
        assert_eq!(text(&can.stdout).trim(), "no", "{}", text(&can.stderr));
    }

    // Bound to the pod: good while it lives, refused once it is gone.
    let bound = run(
        d,
        &admin,
        &[
            "create",
            "token",
            "robot",
            "-n",
            "team",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "web",
        ],
    );
    let bound = succeeded(&bound).unwrap().trim().to_string();
    let with_bound = token_flags(d, &master.client, &bound);
    succeeded(&run(d, &with_bound, &["get", "pods", "-n", "team"])).unwrap();
    succeeded(&run(d, &admin, &["delete", "pod", "web", "-n", "team"])).unwrap();
    wait_for(
        "the pod's token is refused",
        Duration::from_secs(15),
        async || {
            let listed = run(d, &with_bound, &["get", "pods", "-n", "team"]);
            match text(&listed.stderr).contains("Unauthorized") {
                true => Ok(()),
                false => Err(format!("{}{}", text(&listed.stdout), text(&listed.stderr))),
            }
        },
    )
    .await;
    // Every token of the account dies with it.
    succeeded(&run(
        d,
        &admin,
        &["delete", "serviceaccount", "robot", "-n", "team"],
    ))
    .unwrap();
    let orphan = run(d, &robot, &["get", "pods", "-n", "team"]);
    assert!(
        text(&orphan.stderr).contains("Unauthorized"),
        "{}",
        text(&orphan.stderr)
    );
    drop(master);
}
