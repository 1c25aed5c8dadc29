//! Join tokens (`rudder token create`): a new master joins a secured cluster with only a
//! master token and a master's client address — it gets the cluster's CA, keyring and
//! signing key, joins the store, and restarts without the token. Only system:masters may
//! make a master token; none is kept in clear. A token is taken once:
//! used again it is refused, and of two masters racing with one token exactly one joins. A
//! node token does not make a master, and a token naming another cluster's CA is never
//! presented. (A node joining with a node token: `pods.rs`, whose node runs real pods with
//! the certificate it got.)

use std::path::Path;

use base64::Engine;

use rudder_tests::secure::{
    admin_flags, apply_as, issue, join_token, pki, run, start, start_with, succeeded, text, Master,
};

/// Master `name` joining through `master` (its client address) with `token`.
fn join(dir: &Path, name: &str, master: &Master, token: &str) -> Result<Master, String> {
    let flags = [
        "--join".to_string(),
        master.client.clone(),
        "--token".to_string(),
        token.to_string(),
    ];
    start_with(dir, name, &flags)
}

#[test]
fn a_master_joins_with_a_master_token_which_is_then_taken() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pki(d);
    let first = start(d, "m1", None, &[]);
    let admin = admin_flags(d, &first.client);
    let node_token = join_token(d, &admin, "node");
    let master_token = join_token(d, &admin, "master");
    let listed = succeeded(&run(d, &admin, &["token", "list"])).unwrap();
    assert_eq!(listed.lines().count(), 3, "{listed}");
    // What the cluster keeps names a digest of the secret, never the secret.
    let (id, secret) = master_token
        .rsplit("::")
        .next()
        .unwrap()
        .split_once('.')
        .unwrap();
    let kept = succeeded(&run(
        d,
        &admin,
        &[
            "get",
            "secret",
            "-n",
            "kube-system",
            &format!("bootstrap-token-{id}"),
            "-o",
            "json",
        ],
    ))
    .unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(secret);
    assert!(!kept.contains(secret) && !kept.contains(&encoded), "{kept}");
    // A master token yields the CA's key: an `admin` of kube-system (who may create
    // Secrets there, so node tokens) may not make one; only system:masters may.
    issue(d, "jane", None, "jane");
    let binding = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: jane-admin, namespace: kube-system }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin }
subjects: [{ apiGroup: rbac.authorization.k8s.io, kind: User, name: jane }]
";
    succeeded(&apply_as(d, &admin, "jane-admin", binding)).unwrap();
    let mut jane = admin.clone();
    let at = |flag: &str| jane.iter().position(|f| f == flag).unwrap() + 1;
    let (cert, key) = (at("--client-certificate"), at("--client-key"));
    jane[cert] = d.join("jane.crt").display().to_string();
    jane[key] = d.join("jane.key").display().to_string();
    // The binding takes effect once the masters' RBAC caches have it (the watch that
    // feeds them may lag a loaded machine): a node token made, she is an admin there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let janes = loop {
        match succeeded(&run(d, &jane, &["token", "create", "--role", "node"])) {
            Ok(token) => break token,
            Err(refused) if std::time::Instant::now() < deadline => {
                eprintln!("jane's binding not in effect yet: {refused}");
            }
            Err(refused) => panic!("jane's binding never took effect: {refused}"),
        }
    };
    let denied = run(d, &jane, &["token", "create", "--role", "master"]);
    assert!(
        text(&denied.stderr).contains("only system:masters may"),
        "{}",
        text(&denied.stderr)
    );
    // Nor turn her node token into one (an update, through stringData).
    let id = janes
        .trim()
        .rsplit("::")
        .next()
        .unwrap()
        .split('.')
        .next()
        .unwrap();
    let widened = format!(
        "apiVersion: v1\nkind: Secret\ntype: bootstrap.kubernetes.io/token\n\
         metadata: {{ name: bootstrap-token-{id}, namespace: kube-system }}\n\
         stringData: {{ usage-join-master: 'true' }}\n"
    );
    let denied = apply_as(d, &jane, "widened", &widened);
    assert!(
        text(&denied.stderr).contains("only system:masters may"),
        "{}{}",
        text(&denied.stdout),
        text(&denied.stderr)
    );
    let listed = succeeded(&run(d, &admin, &["token", "list"])).unwrap();
    assert_eq!(listed.lines().count(), 4, "{listed}");
    assert!(
        listed.contains("master") && listed.contains("node"),
        "{listed}"
    );

    // Not for a master; not this cluster's: refused, and nothing written.
    let refused = join(d, "m2", &first, &node_token)
        .err()
        .expect("a node token makes no master");
    assert!(refused.contains("was not taken"), "{refused}");
    // The joiner is not told why; the master's log says.
    let log = std::fs::read_to_string(d.join("m1.log")).unwrap();
    assert!(
        log.contains("the token is not for joining as a master"),
        "{log}"
    );
    let fingerprint = master_token.split("::").nth(1).unwrap();
    let mut other = fingerprint.to_string();
    other.replace_range(
        0..1,
        if fingerprint.starts_with('0') {
            "1"
        } else {
            "0"
        },
    );
    let elsewhere = master_token.replace(fingerprint, &other);
    let refused = join(d, "m2", &first, &elsewhere).err().expect("another CA");
    assert!(
        refused.contains("does not present the CA the join token names"),
        "{refused}"
    );
    assert!(!d.join("m2/pki").exists());

    // The master token: m2 joins, gets the cluster's keys, serves what m1 wrote.
    let second = join(d, "m2", &first, &master_token).unwrap();
    let members = succeeded(&run(d, &admin, &["cluster", "members"])).unwrap();
    assert!(members.contains("m2"), "{members}");
    let on_second = admin_flags(d, &second.client);
    let secret = "\
apiVersion: v1
kind: Secret
metadata: { name: sealed, namespace: default }
data: { k: dg== }
";
    succeeded(&apply_as(d, &on_second, "sealed", secret)).unwrap();
    let read = succeeded(&run(d, &admin, &["get", "secret", "sealed", "-o", "json"])).unwrap();
    let read: serde_json::Value = serde_json::from_str(&read).unwrap();
    assert_eq!(
        read["data"]["k"], "dg==",
        "m1 opens what m2 sealed: one keyring"
    );
    for file in ["ca.crt", "ca.key", "encryption.keys", "service-account.key"] {
        let mine = std::fs::read(d.join("m2/pki").join(file)).unwrap();
        let cluster = std::fs::read(d.join("pki").join(file)).unwrap();
        assert_eq!(mine, cluster, "{file}");
    }

    // Taken: refused to anyone after, while m2 restarts without it (its keys are its own
    // now).
    let refused = join(d, "m3", &first, &master_token).err().expect("taken");
    assert!(refused.contains("was not taken"), "{refused}");
    assert!(!d.join("m3/pki").exists());
    let (client, peer) = (second.client.clone(), second.peer.clone());
    drop(second);
    let flags = ["--listen-client", &client, "--listen-peer", &peer].map(String::from);
    let again = start_with(d, "m2", &flags).unwrap();
    let read = succeeded(&run(
        d,
        &admin_flags(d, &again.client),
        &["get", "secret", "sealed", "-o", "name"],
    ))
    .unwrap();
    assert_eq!(read.trim(), "secret/sealed");

    // One token, two masters at once: exactly one joins.
    let raced = join_token(d, &admin, "master");
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| join(d, "m3", &first, &raced));
        let b = scope.spawn(|| join(d, "m4", &first, &raced));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(
        a.is_ok() != b.is_ok(),
        "exactly one joins: m3 {:?}, m4 {:?}",
        a.as_ref().map(|m| &m.client),
        b.as_ref().map(|m| &m.client)
    );
    let loser = a.as_ref().err().or(b.as_ref().err()).unwrap();
    assert!(loser.contains("was not taken"), "{loser}");
    // The node token, never taken, is still there; the master tokens are gone; a token
    // deleted is gone too.
    let withdrawn = join_token(d, &admin, "master");
    succeeded(&run(d, &admin, &["token", "delete", &withdrawn])).unwrap();
    let listed = succeeded(&run(d, &admin, &["token", "list"])).unwrap();
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert!(
        listed.contains("node") && !listed.contains("master"),
        "{listed}"
    );
    drop((first, again, a, b));
}
