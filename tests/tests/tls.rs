//! A master started with the cluster's PKI directory (`rudder ca init`) speaks TLS only on
//! its client port and takes only clients with a certificate from the cluster CA: a
//! plaintext client (gRPC or HTTP), a certificate from another CA, an expired certificate
//! (the handshake fails) and a caller without a certificate (UNAUTHENTICATED, 401) are each
//! refused and write nothing, while health checks stay open to anyone. The CLI, etcdctl
//! and kubectl with the CA's certificates work; the master renews its own certificate
//! before it expires, without a restart. Masters speak TLS to each other, and their peer
//! port takes neither plaintext nor an operator's certificate.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rudder_proto::client::{ApiClient, ClientError};
use rudder_proto::tls::{CertificateRequest, ClientTls, ClusterCa, Issued};
use rudder_tests::secure::{admin_flags, pki, rudder, start, Master};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The certificate the master issues itself lives this long (renewed after two thirds).
const LIFETIME_SECS: u64 = 9;

fn lifetime() -> [String; 2] {
    ["--certificate-lifetime".into(), format!("{LIFETIME_SECS}s")]
}

/// An HTTP/1.1 GET over TLS trusting `ca`, presenting `identity`: the status line and
/// body, or why the connection failed.
async fn https_get(
    address: &str,
    path: &str,
    ca: &ClusterCa,
    identity: Option<&Issued>,
) -> Result<String, String> {
    https_get_with(address, path, ca, identity, "").await
}

/// [`https_get`] with extra header lines (`Name: value\r\n` each).
async fn https_get_with(
    address: &str,
    path: &str,
    ca: &ClusterCa,
    identity: Option<&Issued>,
    headers: &str,
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
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n{headers}Connection: close\r\n\r\n");
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

/// The certificate `address` serves (DER).
async fn served_certificate(address: &str, ca: &ClusterCa) -> Vec<u8> {
    let config = rudder_proto::dial::probe_config(ca.cert_pem()).unwrap();
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .expect("the handshake");
    let served = stream.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    served
}

fn not_after(der: &[u8]) -> SystemTime {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).unwrap();
    let seconds = certificate.validity().not_after.timestamp();
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds as u64)
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
    pki(d);
    let master = start(d, "m1", None, &lifetime());
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
    let first_served = served_certificate(&master.client, &ca).await;
    let first_expires = not_after(&first_served);
    // Pods reach the API as the `kubernetes` Service: its address and names are the
    // certificate's too.
    let (_, served) = x509_parser::parse_x509_certificate(&first_served).unwrap();
    let names: Vec<String> = served
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => dns.to_string(),
            x509_parser::extensions::GeneralName::IPAddress(ip) => format!("{ip:?}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert!(
        names.iter().any(|n| n == "kubernetes.default.svc")
            && names.iter().any(|n| n == "[10, 96, 0, 1]"),
        "{names:?}"
    );

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
        } else {
            // Turned away before any API server could answer.
            assert!(
                matches!(refused, ClientError::Unreachable { .. }),
                "{who}: {refused}"
            );
        }
        if who == "plaintext" {
            assert!(
                refused.to_string().contains("--certificate-authority"),
                "{refused}"
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
        let etcdctl = |ca: bool, certificate: bool| {
            let mut command = Command::new("/usr/bin/etcdctl");
            command
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={}", master.client))
                .arg("--command-timeout=5s")
                .arg("--dial-timeout=2s");
            if ca {
                command.arg(format!("--cacert={}", d.join("pki/ca.crt").display()));
            }
            if certificate {
                command
                    .arg(format!("--cert={}", d.join("admin.crt").display()))
                    .arg(format!("--key={}", d.join("admin.key").display()));
            }
            command.args(["get", "/registry/namespaces/allowed", "--keys-only"]);
            command.output().unwrap()
        };
        let with = etcdctl(true, true);
        assert!(
            String::from_utf8_lossy(&with.stdout).contains("/registry/namespaces/allowed"),
            "{}",
            String::from_utf8_lossy(&with.stderr)
        );
        assert!(!etcdctl(false, false).status.success(), "plaintext");
        let anonymous = etcdctl(true, false);
        assert!(!anonymous.status.success(), "TLS without a certificate");
        let said = String::from_utf8_lossy(&anonymous.stderr);
        assert!(said.contains("certificate from the cluster CA"), "{said}");
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
    if let Ok(wait) = first_expires.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait + Duration::from_millis(500)).await;
    }
    let now_served = served_certificate(&master.client, &ca).await;
    assert_ne!(now_served, first_served, "a renewed certificate is served");
    let client = ApiClient::with_tls(vec![master.client.clone()], tls_as(&ca, Some(admin)));
    client
        .get_object("namespaces", "", "allowed")
        .await
        .expect("served with a renewed certificate");
    drop(master);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masters_speak_tls_to_each_other_and_take_only_masters_on_the_peer_port() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pki(d);
    let first = start(d, "m1", None, &lifetime());
    let second = start(d, "m2", Some(&first.peer), &lifetime());
    let third = start(d, "m3", Some(&first.peer), &lifetime());

    // Written through one, read through another: replicated over the peers' TLS.
    let on = |master: &Master, verb: &[&str], rest: &[&str]| {
        let mut args: Vec<&str> = verb.to_vec();
        let flags = admin_flags(d, &master.client);
        args.extend(flags.iter().map(String::as_str));
        args.extend(rest);
        rudder(d, &args)
    };
    let created = on(&third, &["create"], &["namespace", "replicated"]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let read = on(
        &second,
        &["get"],
        &["namespace", "replicated", "-o", "name"],
    );
    assert_eq!(
        String::from_utf8_lossy(&read.stdout).trim(),
        "namespace/replicated"
    );
    let members = on(&first, &["cluster", "members"], &[]);
    let listed = String::from_utf8_lossy(&members.stdout);
    assert!(
        ["m1", "m2", "m3"].iter().all(|m| listed.contains(m)),
        "{listed}"
    );

    // The peer port: no plaintext, and an operator's certificate from the same CA does
    // not make a peer.
    let ca = ClusterCa::from_pem(
        std::fs::read_to_string(d.join("pki/ca.crt")).unwrap(),
        std::fs::read_to_string(d.join("pki/ca.key")).unwrap(),
    )
    .unwrap();
    let operator = ca
        .issue(&CertificateRequest::client("admin", Some("system:masters")))
        .unwrap();
    let got = https_get(&first.peer, "/", &ca, Some(&operator)).await;
    assert!(got.is_err(), "an operator on the peer port: {got:?}");
    let mut plain = tokio::net::TcpStream::connect(&first.peer).await.unwrap();
    plain
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(
        !answer.starts_with(&[0, 0]),
        "no HTTP/2 frames in plaintext: {answer:?}"
    );
    let log = std::fs::read_to_string(d.join("m1.log")).unwrap();
    assert!(log.contains("not a master's: dropped"), "{log}");
    drop((first, second, third));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_bearer_token_names_its_user_and_any_other_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pki(d);
    std::fs::write(
        d.join("tokens.csv"),
        "s3cret-deployer,deployer,2001,\"ci,deployers\"\n",
    )
    .unwrap();
    let flags = [
        "--token-auth-file".to_string(),
        d.join("tokens.csv").display().to_string(),
        "--audit-log-path".to_string(),
        d.join("audit.log").display().to_string(),
    ];
    let master = start(d, "m1", None, &flags);
    let ca = ClusterCa::from_pem(
        std::fs::read_to_string(d.join("pki/ca.crt")).unwrap(),
        std::fs::read_to_string(d.join("pki/ca.key")).unwrap(),
    )
    .unwrap();
    let path = "/api/v1/namespaces/default/configmaps";
    let bearer = |token: &str| format!("Authorization: Bearer {token}\r\n");

    // The token's user is known, and may do what RBAC grants its groups: nothing yet.
    let listed = https_get_with(&master.client, path, &ca, None, &bearer("s3cret-deployer"))
        .await
        .unwrap();
    assert!(listed.starts_with("HTTP/1.1 403"), "{listed}");
    std::fs::write(
        d.join("deployers.yaml"),
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n\
         metadata: { name: deployers-edit, namespace: default }\n\
         roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit }\n\
         subjects: [{ kind: Group, apiGroup: rbac.authorization.k8s.io, name: deployers }]\n",
    )
    .unwrap();
    let mut apply = vec!["apply", "-f"];
    let manifest = d.join("deployers.yaml").display().to_string();
    apply.push(&manifest);
    let admin = admin_flags(d, &master.client);
    apply.extend(admin.iter().map(String::as_str));
    // A master just started makes the default namespace a moment later.
    let admin_client = ApiClient::with_tls(
        vec![master.client.clone()],
        Some(rudder_tests::secure::client_tls(d, "admin")),
    );
    rudder_tests::wait_for_default_namespace(&admin_client).await;
    let applied = rudder(d, &apply);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    rudder_tests::wait_for(
        "the deployers may list",
        Duration::from_secs(15),
        async || {
            let listed =
                https_get_with(&master.client, path, &ca, None, &bearer("s3cret-deployer")).await?;
            match listed.starts_with("HTTP/1.1 200") {
                true => Ok(()),
                false => Err(listed),
            }
        },
    )
    .await;
    let wrong = https_get_with(&master.client, path, &ca, None, &bearer("guessed"))
        .await
        .unwrap();
    assert!(
        wrong.starts_with("HTTP/1.1 401") && wrong.contains("not one this master knows"),
        "{wrong}"
    );

    // gRPC alike: the token in the call's metadata.
    let anonymous = tls_as(&ca, None);
    let dial = rudder_proto::dial::Dial::master(&master.client, anonymous.as_ref());
    let channel = dial.connect(dial.endpoint().unwrap()).await.unwrap();
    let with_token = |token: &'static str| {
        rudder_proto::api::resources_client::ResourcesClient::with_interceptor(
            channel.clone(),
            move |mut request: tonic::Request<()>| {
                let value = format!("Bearer {token}").parse().unwrap();
                request.metadata_mut().insert("authorization", value);
                Ok(request)
            },
        )
    };
    let create = |name: &str| rudder_proto::api::CreateRequest {
        resource: "configmaps".into(),
        namespace: "default".into(),
        json: config_map(name).to_string().into_bytes(),
        ..Default::default()
    };
    with_token("s3cret-deployer")
        .create(create("by-token"))
        .await
        .expect("a known token writes");
    let refused = with_token("guessed")
        .create(create("by-guess"))
        .await
        .expect_err("an unknown token is refused");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");

    // A write after the refused one: once its record is in, the refused one would be too.
    with_token("s3cret-deployer")
        .create(create("after"))
        .await
        .expect("a known token writes");
    // The audit log names the token's user, uid and groups.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(d.join("audit.log")).unwrap_or_default();
        if text.contains("\"name\":\"after\"") && text.ends_with('\n') {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "no record: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let line = text.lines().find(|line| line.contains("by-token")).unwrap();
    let record: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(record["user"]["username"], "deployer");
    assert_eq!(record["user"]["uid"], "2001");
    assert_eq!(
        record["user"]["groups"],
        json!(["ci", "deployers", "system:authenticated"])
    );
    assert!(
        !text.contains("by-guess"),
        "nothing recorded for a refused token"
    );
    drop(master);
}
