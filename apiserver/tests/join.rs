//! The `Join` service over a real store: what a joiner sent is checked before its token is
//! taken (a node's certificate request, a name that is an address or an existing Node, the
//! token's cluster), so a refused join costs no token; a token held by a finalizer, or
//! expired, is never taken (the expired one is deleted); a node gets a certificate for its
//! own key and name, a master the cluster's keys; and a token is taken once.

mod common;

use std::time::{Duration, SystemTime};

use common::Plane;
use rudder_apiserver::audit::AuditLog;
use rudder_apiserver::encryption::keys_of_this_process;
use rudder_apiserver::join::{JoinAuthority, JoinService};
use rudder_apiserver::{Registry, Target, WriteOptions};
use rudder_proto::join::join_server::Join;
use rudder_proto::join::JoinRequest;
use rudder_proto::join_token::{token_secret, JoinToken, Role, TOKEN_NAMESPACE};
use rudder_proto::tls::{self, ClusterCa};
use serde_json::{json, Value};
use tonic::{Code, Request};

struct Scene {
    _plane: Plane,
    registry: Registry,
    service: JoinService,
    ca: ClusterCa,
    audit: AuditLog,
    audit_dir: tempfile::TempDir,
}

async fn scene() -> Scene {
    let plane = Plane::start(1).await;
    let registry = Registry::new(plane.cluster.store(0).clone(), keys_of_this_process());
    let ca = ClusterCa::generate("join-test").unwrap();
    let authority = JoinAuthority {
        ca: ca.clone(),
        service_account_key_pem: tls::new_signing_key_pem().unwrap(),
        node_certificate_lifetime: tls::CERTIFICATE_LIFETIME,
        master_names: vec!["api.example".into()],
    };
    let audit_dir = tempfile::tempdir().unwrap();
    let audit = AuditLog::open(&audit_dir.path().join("audit.log"), false).unwrap();
    let service = JoinService::new(registry.clone(), authority, "127.0.0.1:2380".into())
        .with_audit(Some(audit.clone()));
    Scene {
        _plane: plane,
        registry,
        service,
        ca,
        audit,
        audit_dir,
    }
}

impl Scene {
    /// A token for `role` kept in the store (with `edit` applied to its Secret first).
    async fn token(&self, role: Role, expires: SystemTime, edit: impl Fn(&mut Value)) -> JoinToken {
        let token = JoinToken::generate(self.ca.cert_pem()).unwrap();
        let mut secret = token_secret(&token, role, expires, "").unwrap();
        edit(&mut secret);
        self.registry
            .create(
                "secrets",
                TOKEN_NAMESPACE,
                secret.to_string().as_bytes(),
                &WriteOptions::default(),
            )
            .await
            .unwrap();
        token
    }

    async fn kept(&self, token: &JoinToken) -> bool {
        let name = token.secret_name();
        let target = Target {
            resource: "secrets",
            namespace: TOKEN_NAMESPACE,
            name: &name,
        };
        match self.registry.get(&target).await {
            Ok(_) => true,
            Err(rudder_apiserver::error::ApiError::NotFound { .. }) => false,
            Err(error) => panic!("reading the token's Secret: {error}"),
        }
    }

    async fn join(
        &self,
        token: &JoinToken,
        role: Role,
        name: &str,
        csr_pem: &str,
    ) -> Result<rudder_proto::join::JoinResponse, tonic::Status> {
        let request = JoinRequest {
            token: token.to_string(),
            role: role.as_str().into(),
            name: name.into(),
            csr_pem: csr_pem.into(),
        };
        self.service
            .join(Request::new(request))
            .await
            .map(tonic::Response::into_inner)
    }
}

fn request_for(name: &str) -> String {
    let key = tls::new_signing_key_pem().unwrap();
    tls::signing_request(&key, &format!("system:node:{name}")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_join_costs_no_token_and_a_taken_one_is_gone() {
    let scene = scene().await;
    let hour = SystemTime::now() + Duration::from_secs(3600);
    let token = scene.token(Role::Node, hour, |_| {}).await;

    // What the joiner sent will not do: refused, the token kept.
    let refused = scene
        .join(&token, Role::Node, "n1", "not a request")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let member = scene.registry.store().members()[0].member.name.clone();
    for address in [
        "127.0.0.1",
        "10.0.0.5",
        "localhost",
        "kubernetes",
        "kubernetes.default.svc.cluster.local",
        "api.example",
        &member,
    ] {
        let refused = scene
            .join(&token, Role::Node, address, &request_for(address))
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "{address}: {refused:?}"
        );
    }
    let node = json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "taken" } });
    scene
        .registry
        .create(
            "nodes",
            "",
            node.to_string().as_bytes(),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let refused = scene
        .join(&token, Role::Node, "taken", &request_for("taken"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    let refused = scene
        .join(&token, Role::Master, "m2", "")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let other_cluster = JoinToken {
        ca_fingerprint: [7; 32],
        ..token.clone()
    };
    let refused = scene
        .join(&other_cluster, Role::Node, "n1", &request_for("n1"))
        .await
        .unwrap_err();
    assert!(refused.message().contains("another cluster"), "{refused:?}");
    assert!(scene.kept(&token).await, "no refusal took the token");

    // The node: a certificate for its name and its key; the token gone, and refused after.
    let key = tls::new_signing_key_pem().unwrap();
    let csr = tls::signing_request(&key, "system:node:n1").unwrap();
    let answer = scene.join(&token, Role::Node, "n1", &csr).await.unwrap();
    assert_eq!(
        tls::node_certificate_problem(&answer.certificate_pem, "n1"),
        None
    );
    assert_eq!(answer.ca_pem, scene.ca.cert_pem());
    assert!(
        answer.ca_key_pem.is_empty(),
        "a node never gets the CA's key"
    );
    tls::ServingCertificate::new(&tls::Issued {
        cert_pem: answer.certificate_pem,
        key_pem: key,
        not_after: SystemTime::UNIX_EPOCH,
    })
    .expect("the certificate goes with the node's own key");
    assert!(!scene.kept(&token).await);
    let again = scene
        .join(&token, Role::Node, "n2", &request_for("n2"))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::Unauthenticated, "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_or_expired_token_is_not_taken_and_a_master_gets_the_keys() {
    let scene = scene().await;
    let hour = SystemTime::now() + Duration::from_secs(3600);
    let held = scene
        .token(Role::Master, hour, |secret| {
            secret["metadata"]["finalizers"] = json!(["example.com/hold"]);
        })
        .await;
    let refused = scene.join(&held, Role::Master, "m2", "").await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(scene.kept(&held).await);

    let expired = scene
        .token(
            Role::Master,
            SystemTime::now() - Duration::from_secs(1),
            |_| {},
        )
        .await;
    let refused = scene
        .join(&expired, Role::Master, "m2", "")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(!scene.kept(&expired).await, "an expired token is deleted");

    let token = scene.token(Role::Master, hour, |_| {}).await;
    let answer = scene.join(&token, Role::Master, "m2", "").await.unwrap();
    assert_eq!(answer.ca_key_pem, scene.ca.key_pem());
    assert_eq!(answer.peer_address, "127.0.0.1:2380");
    assert_eq!(answer.keyring, keys_of_this_process().current().to_text());
    assert!(!answer.service_account_key_pem.is_empty());
    assert!(answer.certificate_pem.is_empty());
    assert!(!scene.kept(&token).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_many_joins_at_once_with_one_token_exactly_one_gets_in() {
    let scene = scene().await;
    let token = scene
        .token(
            Role::Master,
            SystemTime::now() + Duration::from_secs(3600),
            |_| {},
        )
        .await;
    let names: Vec<String> = (0..8).map(|i| format!("m{}", i + 10)).collect();
    let joins = names
        .iter()
        .map(|name| scene.join(&token, Role::Master, name, ""));
    let answers = futures::future::join_all(joins).await;
    let joined = answers.iter().filter(|answer| answer.is_ok()).count();
    assert_eq!(joined, 1, "{answers:?}");
    for refused in answers.iter().filter_map(|answer| answer.as_ref().err()) {
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    }
    assert!(!scene.kept(&token).await);
}

/// A renewal as the holder of `certificate_pem` (what the front door makes of it).
async fn renew(
    scene: &Scene,
    certificate_pem: &str,
) -> Result<rudder_proto::join::RenewResponse, tonic::Status> {
    use rustls::pki_types::pem::PemObject;
    let der =
        rustls::pki_types::CertificateDer::from_pem_slice(certificate_pem.as_bytes()).unwrap();
    let subject = tls::subject_of(&der).unwrap().presenting(der.as_ref());
    let mut request = Request::new(rudder_proto::join::RenewRequest {
        csr_pem: request_for("n1"),
    });
    request
        .extensions_mut()
        .insert(rudder_proto::authn::Caller::Authenticated(subject));
    scene
        .service
        .renew(request)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_renews_only_the_certificate_it_holds_now() {
    let scene = scene().await;
    let token = scene
        .token(
            Role::Node,
            SystemTime::now() + Duration::from_secs(3600),
            |_| {},
        )
        .await;
    let joined = scene
        .join(&token, Role::Node, "n1", &request_for("n1"))
        .await
        .unwrap();
    let renewed = renew(&scene, &joined.certificate_pem).await.unwrap();
    assert_eq!(
        tls::node_certificate_problem(&renewed.certificate_pem, "n1"),
        None
    );
    // The one it held before, and one the CA signed but the node never joined for: refused.
    let old = renew(&scene, &joined.certificate_pem).await.unwrap_err();
    assert_eq!(old.code(), Code::PermissionDenied, "{old:?}");
    let issued = scene
        .ca
        .issue(&tls::CertificateRequest::node("n1"))
        .unwrap();
    let unknown = renew(&scene, &issued.cert_pem).await.unwrap_err();
    assert_eq!(unknown.code(), Code::PermissionDenied, "{unknown:?}");
    // The one it holds now renews again.
    renew(&scene, &renewed.certificate_pem).await.unwrap();
    // No certificate at all (a token's caller): refused.
    let mut by_token = Request::new(rudder_proto::join::RenewRequest {
        csr_pem: request_for("n1"),
    });
    by_token
        .extensions_mut()
        .insert(rudder_proto::authn::Caller::Authenticated(
            rudder_proto::authn::Subject {
                user: "system:node:n1".into(),
                groups: vec!["system:nodes".into()],
                ..Default::default()
            },
        ));
    let refused = scene.service.renew(by_token).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // Each join and renewal is in the audit log: who (the token as Kubernetes names a
    // bootstrap token's user, or the node), which node, the answer.
    scene.audit.flush().await;
    let log = std::fs::read_to_string(scene.audit_dir.path().join("audit.log")).unwrap();
    let records: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let joined = &records[0];
    assert_eq!(
        joined["user"]["username"],
        format!("system:bootstrap:{}", token.id)
    );
    assert_eq!(joined["objectRef"]["resource"], "joins");
    assert_eq!(joined["objectRef"]["name"], "n1");
    assert_eq!(joined["responseStatus"]["code"], 201);
    let renewals: Vec<i64> = records[1..]
        .iter()
        .map(|record| record["responseStatus"]["code"].as_i64().unwrap())
        .collect();
    assert_eq!(renewals, [201, 403, 403, 201, 403], "{log}");
    assert_eq!(records[1]["user"]["username"], "system:node:n1");
}
