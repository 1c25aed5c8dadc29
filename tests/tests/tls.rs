//! A master started with the cluster's PKI directory (`rudder ca init`) speaks TLS only on
//! its client port and takes only clients with a certificate from the cluster CA: a
//! plaintext client (gRPC or HTTP), a certificate from another CA, an expired certificate
//! (the handshake fails) and a caller without a certificate (UNAUTHENTICATED, 401) are each
//! refused and write nothing, while health checks stay open to anyone. The CLI, etcdctl
//! and kubectl with the CA's certificates work; the master renews its own certificate
//! before it expires, without a restart.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rudder_proto::client::ApiClient;
use rudder_proto::tls::{CertificateRequest, ClientTls, ClusterCa, Issued};
use rudder_tests::{lines_of, rudder_binary_beside_tests};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The certificate the master issues itself lives this long (renewed after two thirds).
const LIFETIME_SECS: u64 = 4;

struct Master {
    child: Child,
    client: String,
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path) -> Master {
    let mut child = Command::new(rudder_binary_beside_tests())
        .args(["server", "--name", "m1", "--data-dir"])
        .arg(dir.join("m1"))
        .args([
            "--listen-client",
            "127.0.0.1:0",
            "--listen-peer",
            "127.0.0.1:0",
        ])
        .args(["--initial-cluster", "m1=127.0.0.1:0", "--pki"])
        .arg(dir.join("pki"))
        .args(["--certificate-lifetime", &format!("{LIFETIME_SECS}s")])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("m1.log")).unwrap())
        .spawn()
        .expect("rudder server starts");
    let ready = lines_of(child.stdout.take().unwrap())
        .recv_timeout(Duration::from_secs(30))
        .expect("the master says it is ready");
    // "rudder server m1 ready: client ADDR peer ADDR id HEX"
    let client = ready.split_whitespace().nth(5).unwrap().to_string();
    Master { child, client }
}

fn rudder(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(rudder_binary_beside_tests())
        .args(args)
        .env("RUDDER_CONFIG", dir.join("no-config"))
        .env_remove("RUDDER_SERVER")
        .output()
        .unwrap()
}

fn admin_flags<'a>(dir: &'a Path, server: &'a str) -> Vec<String> {
    let file = |name: &str| dir.join(name).display().to_string();
    vec![
        "--server".into(),
        server.into(),
        "--certificate-authority".into(),
        file("pki/ca.crt"),
        "--client-certificate".into(),
        file("admin.crt"),
        "--client-key".into(),
        file("admin.key"),
    ]
}

/// An HTTP/1.1 GET over TLS trusting `ca`, presenting `identity`: the status line and
/// body, or why the connection failed.
async fn https_get(
    address: &str,
    path: &str,
    ca: &ClusterCa,
    identity: Option<&Issued>,
) -> Result<String, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match identity {
        Some(issued) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .await
        .map_err(|e| format!("reading: {e}"))?;
    if answer.is_empty() {
        return Err("the server closed the connection".into());
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

fn config_map(name: &str) -> serde_json::Value {
    json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name } })
}

fn tls_as(ca: &ClusterCa, identity: Option<Issued>) -> Option<ClientTls> {
    Some(ClientTls {
        ca_pem: ca.cert_pem().to_string(),
        identity,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_clients_with_a_certificate_from_the_cluster_ca_get_in() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let made = rudder(d, &["ca", "init", d.join("pki").to_str().unwrap()]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let issued = rudder(
        d,
        &[
            "ca",
            "issue",
            d.join("pki").to_str().unwrap(),
            "admin",
            "--group",
            "system:masters",
            "--cert",
            d.join("admin.crt").to_str().unwrap(),
            "--key",
            d.join("admin.key").to_str().unwrap(),
        ],
    );
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    let started = Instant::now();
    let master = start(d);
    let ca = ClusterCa::from_pem(
        std::fs::read_to_string(d.join("pki/ca.crt")).unwrap(),
        std::fs::read_to_string(d.join("pki/ca.key")).unwrap(),
    )
    .unwrap();
    let admin = ca
        .issue(&CertificateRequest::client(
            "admin-2",
            Some("system:masters"),
        ))
        .unwrap();

    // The CLI with a certificate works.
    let flags = admin_flags(d, &master.client);
    let mut create = vec!["create"];
    create.extend(flags.iter().map(String::as_str));
    create.extend(["namespace", "allowed"]);
    let created = rudder(d, &create);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );

    // Refused, each trying to write a ConfigMap of its own.
    let other_ca = ClusterCa::generate("another-cluster").unwrap();
    let stranger = other_ca
        .issue(&CertificateRequest::client(
            "mallory",
            Some("system:masters"),
        ))
        .unwrap();
    let mut expired_request = CertificateRequest::client("late", Some("system:masters"));
    expired_request.not_before = SystemTime::now() - Duration::from_secs(7200);
    expired_request.not_after = SystemTime::now() - Duration::from_secs(3600);
    let expired = ca.issue(&expired_request).unwrap();
    let refused_clients = [
        ("plaintext", ApiClient::new(vec![master.client.clone()])),
        (
            "another CA",
            ApiClient::with_tls(
                vec![master.client.clone()],
                tls_as(&ca, Some(stranger.clone())),
            ),
        ),
        (
            "expired",
            ApiClient::with_tls(
                vec![master.client.clone()],
                tls_as(&ca, Some(expired.clone())),
            ),
        ),
        (
            "anonymous",
            ApiClient::with_tls(vec![master.client.clone()], tls_as(&ca, None)),
        ),
    ];
    // At once: a client retries a master it cannot reach for seconds before it gives up.
    let attempts = refused_clients.iter().map(|(who, client)| async move {
        let object = config_map(&format!("by-{}", who.replace(' ', "-")));
        let outcome = client.create_object("configmaps", "default", &object).await;
        (*who, outcome)
    });
    for (who, outcome) in futures::future::join_all(attempts).await {
        let refused = outcome.expect_err(who);
        if who == "anonymous" {
            assert!(
                refused.to_string().contains("(Unauthenticated)"),
                "{who}: {refused}"
            );
        }
    }
    // HTTP alike: no answer in plaintext, the handshake refused, 401 without a certificate.
    let mut plain = tokio::net::TcpStream::connect(&master.client)
        .await
        .unwrap();
    plain
        .write_all(b"GET /api/v1/configmaps HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/1.1"),
        "{answer:?}"
    );
    for (who, identity) in [("another CA", &stranger), ("expired", &expired)] {
        let got = https_get(&master.client, "/api/v1/configmaps", &ca, Some(identity)).await;
        assert!(
            got.is_err() || !got.as_ref().unwrap().contains("ConfigMapList"),
            "{who}: {got:?}"
        );
    }
    let anonymous = https_get(&master.client, "/api/v1/configmaps", &ca, None)
        .await
        .unwrap();
    assert!(
        anonymous.starts_with("HTTP/1.1 401") && anonymous.contains("\"reason\":\"Unauthorized\""),
        "{anonymous}"
    );
    let health = https_get(&master.client, "/readyz", &ca, None)
        .await
        .unwrap();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let listed = https_get(&master.client, "/api/v1/configmaps", &ca, Some(&admin))
        .await
        .unwrap();
    assert!(listed.starts_with("HTTP/1.1 200"), "{listed}");
    assert!(
        !listed.contains("\"name\":\"by-"),
        "nothing written: {listed}"
    );

    // etcdctl with the CA's certificates, not without.
    if Path::new("/usr/bin/etcdctl").exists() {
        let etcdctl = |tls: bool| {
            let mut command = Command::new("/usr/bin/etcdctl");
            command
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={}", master.client))
                .arg("--command-timeout=5s")
                .arg("--dial-timeout=2s");
            if tls {
                command
                    .arg(format!("--cacert={}", d.join("pki/ca.crt").display()))
                    .arg(format!("--cert={}", d.join("admin.crt").display()))
                    .arg(format!("--key={}", d.join("admin.key").display()));
            }
            command.args(["get", "/registry/namespaces/allowed", "--keys-only"]);
            command.output().unwrap()
        };
        let with = etcdctl(true);
        assert!(
            String::from_utf8_lossy(&with.stdout).contains("/registry/namespaces/allowed"),
            "{}",
            String::from_utf8_lossy(&with.stderr)
        );
        assert!(!etcdctl(false).status.success());
    }

    // The verbs on the etcd API and /metrics (cluster status, snapshot save), and a
    // kubeconfig for the real kubectl, from the same flags.
    let with_flags = |verb: &[&str], rest: &[&str]| {
        let mut args: Vec<&str> = verb.to_vec();
        args.extend(flags.iter().map(String::as_str));
        args.extend(rest);
        rudder(d, &args)
    };
    let status = with_flags(&["cluster", "status"], &[]);
    let said = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success() && said.contains("leader"),
        "{said}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let backup = d.join("backup.db");
    let saved = with_flags(&["snapshot", "save", backup.to_str().unwrap()], &[]);
    assert!(
        saved.status.success(),
        "{}",
        String::from_utf8_lossy(&saved.stderr)
    );
    let kubeconfig = with_flags(&["config", "kubeconfig"], &[]);
    assert!(
        kubeconfig.status.success(),
        "{}",
        String::from_utf8_lossy(&kubeconfig.stderr)
    );
    if Path::new("/usr/bin/kubectl").exists() {
        std::fs::write(d.join("kubeconfig"), &kubeconfig.stdout).unwrap();
        let listed = Command::new("/usr/bin/kubectl")
            .env("KUBECONFIG", d.join("kubeconfig"))
            .arg(format!("--cache-dir={}", d.join("kube-cache").display()))
            .args(["get", "namespace", "allowed", "-o", "name"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&listed.stdout).trim(),
            "namespace/allowed",
            "{}",
            String::from_utf8_lossy(&listed.stderr)
        );
    }

    // The master's first certificate has expired by now; it serves a renewed one.
    let past_first = Duration::from_secs(LIFETIME_SECS) + Duration::from_millis(500);
    if let Some(wait) = past_first.checked_sub(started.elapsed()) {
        tokio::time::sleep(wait).await;
    }
    let client = ApiClient::with_tls(vec![master.client.clone()], tls_as(&ca, Some(admin)));
    client
        .get_object("namespaces", "", "allowed")
        .await
        .expect("served with a renewed certificate");
    let log = std::fs::read_to_string(d.join("m1.log")).unwrap();
    assert!(log.contains("certificate was renewed"), "{log}");
    drop(master);
}
