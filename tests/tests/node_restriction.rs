//! A node's credential (`system:node:NAME` in `system:nodes`) on a secured master: a
//! (hollow) node registers, renews its lease and runs the pods bound to it with it; the
//! same credential cannot touch another node, its pods or its Lease, read a Secret no pod
//! of its own uses, list Secrets, or create a pod other than a mirror pod bound to itself
//! that names no Secret.
//! Each refusal is Kubernetes' 403, and nothing is written.

use std::time::Duration;

use rudder_proto::client::ApiClient;
use rudder_tests::secure::{admin_flags, client_tls, issue, pki, start};
use rudder_tests::{hollow_nodes_with, wait_for};
use serde_json::{json, Value};

fn pod(name: &str, node: &str, secret: &str, mirror: bool) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "default" },
        "spec": { "nodeName": node,
                  "containers": [{ "name": "c", "image": "kubia",
                      "env": [{ "name": "S", "valueFrom": { "secretKeyRef": { "name": secret, "key": "k" } } }] }] }
    });
    if mirror {
        pod["metadata"]["annotations"] = json!({ "kubernetes.io/config.mirror": "static" });
    }
    pod
}

fn secret(name: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": name, "namespace": "default" }, "stringData": { "k": "v" } })
}

/// The refusal's reason and message, for an error that must be a 403.
fn refused(result: Result<Value, rudder_proto::client::ClientError>) -> String {
    let error = result.expect_err("refused");
    assert_eq!(error.reason(), "Forbidden", "{error}");
    error.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_runs_its_own_pods_and_touches_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pki(d);
    let master = start(d, "m1", None, &[]);
    issue(d, "system:node:n-0", Some("system:nodes"), "n-0");
    let admin = ApiClient::with_tls(vec![master.client.clone()], Some(client_tls(d, "admin")));
    let node = ApiClient::with_tls(vec![master.client.clone()], Some(client_tls(d, "n-0")));
    // A master just started makes the default namespace a moment later.
    rudder_tests::wait_for_default_namespace(&admin).await;

    // A hollow node n-0 with the node's credential registers and runs a pod bound to it.
    let mut flags = admin_flags(d, &master.client);
    flags[5] = d.join("n-0.crt").display().to_string();
    flags[7] = d.join("n-0.key").display().to_string();
    let flags: Vec<String> = flags.into_iter().skip(2).collect();
    let mut hollow = hollow_nodes_with(&master.client, "n", 1, &flags);
    for name in ["mine", "theirs"] {
        admin
            .create_object("secrets", "default", &secret(name))
            .await
            .unwrap();
    }
    admin
        .create_object("pods", "default", &pod("mine", "n-0", "mine", false))
        .await
        .unwrap();
    admin
        .create_object("pods", "default", &pod("theirs", "n-9", "theirs", false))
        .await
        .unwrap();
    wait_for(
        "the node runs its pod",
        Duration::from_secs(30),
        async || {
            let pod = admin
                .get_object("pods", "default", "mine")
                .await
                .map_err(|e| e.to_string())?;
            match pod["status"]["phase"].as_str() {
                Some("Running") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let lease = admin
        .get_object("leases", "kube-node-lease", "n-0")
        .await
        .expect("the node keeps its lease");
    assert_eq!(lease["spec"]["holderIdentity"], "n-0");

    // What its own pods use, it reads; nothing else.
    node.get_object("secrets", "default", "mine")
        .await
        .expect("the secret of a pod bound to it");
    let other = refused(node.get_object("secrets", "default", "theirs").await);
    assert!(
        other.contains(
            r#"secrets "theirs" is forbidden: User "system:node:n-0" cannot get resource "secrets""#
        ),
        "{other}"
    );
    let listed = node
        .list(rudder_proto::api::ListRequest {
            resource: "secrets".into(),
            namespace: "default".into(),
            ..Default::default()
        })
        .await;
    refused(listed.map(|_| Value::Null));

    // Another node's pod: not deleted, its status not written.
    refused(
        node.delete_object(rudder_proto::api::DeleteRequest {
            resource: "pods".into(),
            namespace: "default".into(),
            name: "theirs".into(),
            ..Default::default()
        })
        .await
        .map(|_| Value::Null),
    );
    let status = json!({ "status": { "phase": "Failed" } });
    refused(
        node.patch_object("pods", "default", "theirs", &status, true)
            .await,
    );
    // Another node, and its lease: not written.
    let stranger = json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "n-9" } });
    let said = refused(node.create_object("nodes", "", &stranger).await);
    assert!(
        said.contains(r#"node "n-0" is not allowed to modify node "n-9""#),
        "{said}"
    );
    let lease = json!({ "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": { "name": "n-9", "namespace": "kube-node-lease" } });
    refused(
        node.create_object("leases", "kube-node-lease", &lease)
            .await,
    );
    // Pods: only mirror pods bound to itself.
    let said = refused(
        node.create_object("pods", "default", &pod("made", "n-0", "mine", false))
            .await,
    );
    assert!(said.contains("can only create mirror pods"), "{said}");
    refused(
        node.create_object("pods", "default", &pod("elsewhere", "n-9", "mine", true))
            .await,
    );
    // Nor one that names a Secret (it could read any through it).
    let said = refused(
        node.create_object("pods", "default", &pod("reader", "n-0", "theirs", true))
            .await,
    );
    assert!(
        said.contains("can not create pods that reference secrets"),
        "{said}"
    );
    let mut mirror = pod("static", "n-0", "mine", true);
    mirror["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("env");
    node.create_object("pods", "default", &mirror)
        .await
        .expect("a mirror pod bound to itself");
    // A mirror pod runs as no account: it gets the node no token (not `default`'s).
    let request = json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": { "boundObjectRef": { "apiVersion": "v1", "kind": "Pod", "name": "static" } } });
    refused(node.create_token("default", "default", &request).await);
    // And nothing it was refused was written.
    let theirs = admin.get_object("pods", "default", "theirs").await.unwrap();
    assert_ne!(theirs["status"]["phase"], "Failed");
    for (resource, namespace, name) in [
        ("nodes", "", "n-9"),
        ("leases", "kube-node-lease", "n-9"),
        ("pods", "default", "made"),
        ("pods", "default", "elsewhere"),
        ("pods", "default", "reader"),
    ] {
        let read = admin.get_object(resource, namespace, name).await;
        assert!(read.is_err_and(|e| e.is_not_found()), "{resource} {name}");
    }
    hollow.kill().await.unwrap();
    drop(master);
}
