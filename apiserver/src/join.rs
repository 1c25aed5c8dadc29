//! The `Join` gRPC service every master of a secured cluster serves on its client port: a
//! new master or node, with no certificate yet, presents a join token (`rudder token
//! create`). What the joiner sent is checked first (a node's certificate request and name:
//! no address, no Node that exists), then the token's Secret is read, checked
//! ([`rudder_proto::join_token::admits`]) and deleted in one step that only one join can
//! win, so each token is taken once. A node gets its certificate, signed for the key it
//! keeps; a master gets what every master holds —
//! the CA and its key, the Secret-encryption keyring, the ServiceAccount signing key — and
//! the peer address it joins the store through. Any master answers, so joins work while one
//! is down. Callers reach it without credentials (the front door lets this one method by):
//! the token is the credential, and a refusal never says which check failed. `Renew` is a
//! node's, with the certificate it has: a new one for its name, before the old expires —
//! only for the certificate recorded as the one the node holds now (a master-written
//! Secret, `kube-system/rudder-node-certificate-<node>`, moved on by each join and
//! renewal), so a machine that left, or a name joined again, renews nothing.

use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine;
use rudder_proto::authn::{certificate_sha256, Caller, Subject};
use rudder_proto::join::join_server::{Join, JoinServer};
use rudder_proto::join::{JoinRequest, JoinResponse, RenewRequest, RenewResponse};
use rudder_proto::join_token::{admits, ca_fingerprint, JoinToken, Refusal, Role, TOKEN_NAMESPACE};
use rudder_proto::objects::names::dns1123_subdomain;
use rudder_proto::tls::{
    check_signing_request, CertificateRequest, ClusterCa, NODES_GROUP, NODE_USER_PREFIX,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value};
use tonic::{Request, Response, Status};

use crate::audit::{AuditLog, Audited};
use crate::delete::DeleteOptions;
use crate::error::ApiError;
use crate::registry::{Registry, Target, WriteOptions};
use crate::request_metrics::http_code_of;

/// The gRPC path of the one method callers without credentials may call.
pub const JOIN_METHOD: &str = "/rudder.join.Join/Join";
/// The gRPC path of a node's renewal.
const RENEW_METHOD: &str = "/rudder.join.Join/Renew";

/// What a master hands out to joiners: the CA (which signs nodes' certificates), and what a
/// joining master needs besides (the keyring is the registry's, as it is now).
#[derive(Clone)]
pub struct JoinAuthority {
    pub ca: ClusterCa,
    pub service_account_key_pem: String,
    /// How long the nodes' certificates it signs are valid (a node renews after two
    /// thirds).
    pub node_certificate_lifetime: std::time::Duration,
    /// The names this master's certificate is valid for, which no node may take (its
    /// certificate would serve for them).
    pub master_names: Vec<String>,
}

pub struct JoinService {
    registry: Registry,
    authority: Arc<JoinAuthority>,
    /// The peer address this master is reached at by other masters.
    peer_address: String,
    /// Where each join and renewal is recorded (none: nowhere).
    audit: Option<AuditLog>,
}

impl JoinService {
    pub fn new(registry: Registry, authority: JoinAuthority, peer_address: String) -> Self {
        Self {
            registry,
            authority: Arc::new(authority),
            peer_address,
            audit: None,
        }
    }

    /// This service, recording every join and renewal in `audit` (who: the token, as
    /// Kubernetes names a bootstrap token's user, `system:bootstrap:<id>`; or the node).
    pub fn with_audit(mut self, audit: Option<AuditLog>) -> Self {
        self.audit = audit;
        self
    }

    /// Records one join or renewal of `name` by `caller`, answered with `answer`.
    fn record<T>(
        &self,
        subresource: &str,
        name: &str,
        caller: &Caller,
        uri: &str,
        answer: &Result<T, Status>,
    ) {
        let Some(audit) = &self.audit else {
            return;
        };
        audit.record(&Audited {
            verb: "create",
            resource: "joins",
            subresource,
            namespace: "",
            name,
            caller: Some(caller),
            uri,
            code: Some(match answer {
                Ok(_) => 201,
                Err(status) => http_code_of(status),
            }),
            received: jiff::Timestamp::now(),
        });
    }

    /// The service, for a master's gRPC routes.
    pub fn server(
        registry: Registry,
        authority: JoinAuthority,
        peer_address: String,
        audit: Option<AuditLog>,
    ) -> JoinServer<Self> {
        JoinServer::new(Self::new(registry, authority, peer_address).with_audit(audit))
    }

    /// The Secret of `token` if it admits joining as `role` (an expired one is deleted).
    async fn admitted(&self, token: &JoinToken, role: Role, name: &str) -> Result<Value, Status> {
        let secret_name = token.secret_name();
        let target = token_target(&secret_name);
        let secret = match self.registry.get(&target).await {
            Ok(secret) => secret,
            Err(ApiError::NotFound { .. }) => {
                return Err(refused(token, role, name, &Refusal::Unknown))
            }
            Err(error) => return Err(error.into()),
        };
        if let Err(refusal) = admits(&secret, token, role, SystemTime::now()) {
            if refusal == Refusal::Expired {
                // As Kubernetes' token cleaner would: nobody can use it any more.
                let _ = self
                    .registry
                    .delete(&target, &preconditions(&secret), None)
                    .await;
            }
            return Err(refused(token, role, name, &refusal));
        }
        Ok(secret)
    }

    /// Takes the token whose Secret is `secret`: deleted with the uid and revision read, so
    /// a second join racing this one finds it gone.
    async fn take(
        &self,
        token: &JoinToken,
        role: Role,
        name: &str,
        secret: &Value,
    ) -> Result<(), Status> {
        let secret_name = token.secret_name();
        let target = token_target(&secret_name);
        match self
            .registry
            .delete(&target, &preconditions(secret), None)
            .await
        {
            // Gone from the store: this join took it.
            Ok((_, true)) => Ok(()),
            // Kept (a finalizer came between the read and the delete): not taken.
            Ok((_, false)) => Err(refused(token, role, name, &Refusal::Unknown)),
            Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => Err(refused(
                token,
                role,
                name,
                &"another join took it first (a token is taken once)",
            )),
            Err(error) => Err(error.into()),
        }
    }

    /// Refuses a name a node may not join as: an address, `localhost`, a master's name (the
    /// `kubernetes` Service's, a member's, this master's certificate's: the node's
    /// certificate would serve for it), or a Node that exists (its credential would
    /// be another's; delete the Node first to join a machine again under its name).
    async fn check_node_name(&self, name: &str) -> Result<(), Status> {
        if name.parse::<std::net::IpAddr>().is_ok() || name == "localhost" {
            return Err(Status::invalid_argument(format!(
                "a node may not join as {name:?}: its certificate would name an address; give \
                 the node a host name"
            )));
        }
        let members = self.registry.store().members();
        let a_masters = name == "kubernetes"
            || name.starts_with("kubernetes.default")
            || self
                .authority
                .master_names
                .iter()
                .any(|taken| taken == name)
            || members.iter().any(|member| member.member.name == name);
        if a_masters {
            return Err(Status::invalid_argument(format!(
                "a node may not join as {name:?}: masters are known by that name, which its \
                 certificate would then serve for; give the node a name of its own"
            )));
        }
        let node = Target {
            resource: "nodes",
            namespace: "",
            name,
        };
        match self.registry.get(&node).await {
            Err(ApiError::NotFound { .. }) => Ok(()),
            Ok(_) => Err(Status::already_exists(format!(
                "node {name:?} exists: a join would make a second credential for it. Delete it \
                 first (`rudder delete node {name}`) to join a machine again under that name"
            ))),
            Err(error) => Err(error.into()),
        }
    }
}

fn token_target(secret_name: &str) -> Target<'_> {
    Target {
        resource: "secrets",
        namespace: TOKEN_NAMESPACE,
        name: secret_name,
    }
}

/// A delete of `secret` as read: the same uid, the same revision.
fn preconditions(secret: &Value) -> DeleteOptions {
    DeleteOptions {
        precondition_uid: secret["metadata"]["uid"].as_str().unwrap_or("").into(),
        precondition_resource_version: secret["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .into(),
        ..DeleteOptions::default()
    }
}

/// The refusal a joiner sees (never which check failed: a guesser learns nothing), and the
/// line the master logs (which).
fn refused(token: &JoinToken, role: Role, name: &str, why: &dyn std::fmt::Display) -> Status {
    tracing::info!(token = %token.id, role = role.as_str(), %name, %why, "a join was refused");
    Status::unauthenticated(format!(
        "the join token was not taken: it is unknown, used already, expired, or not for \
         joining as a {}. Make a new one with `rudder token create --role {}`",
        role.as_str(),
        role.as_str()
    ))
}

#[tonic::async_trait]
impl Join for JoinService {
    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let request = request.into_inner();
        // The caller is the token, named as Kubernetes names a bootstrap token's user.
        let id = request
            .token
            .parse::<JoinToken>()
            .map(|token| token.id)
            .unwrap_or_else(|_| "unreadable".into());
        let caller = Caller::Authenticated(Subject {
            user: format!("system:bootstrap:{id}"),
            groups: vec!["system:bootstrappers".into()],
            ..Subject::default()
        });
        let name = request.name.clone();
        let answer = self.join_with(request).await;
        self.record("", &name, &caller, JOIN_METHOD, &answer);
        answer.map(Response::new)
    }

    async fn renew(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<RenewResponse>, Status> {
        let caller = request
            .extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Anonymous);
        let answer = self.renew_for(&caller, &request.get_ref().csr_pem).await;
        let name = match &caller {
            Caller::Authenticated(subject) => subject.user.as_str(),
            _ => "",
        };
        let name = name.strip_prefix(NODE_USER_PREFIX).unwrap_or(name);
        self.record("renew", name, &caller, RENEW_METHOD, &answer);
        answer.map(Response::new)
    }
}

impl JoinService {
    async fn join_with(&self, request: JoinRequest) -> Result<JoinResponse, Status> {
        let role: Role = request.role.parse().map_err(Status::invalid_argument)?;
        let token: JoinToken = request.token.parse().map_err(Status::invalid_argument)?;
        let ca_pem = self.authority.ca.cert_pem().to_string();
        let ours = ca_fingerprint(&ca_pem).map_err(Status::internal)?;
        if token.ca_fingerprint != ours {
            return Err(Status::unauthenticated(
                "the join token is for another cluster: its CA fingerprint is not this \
                 cluster's",
            ));
        }
        let name = request.name.as_str();
        if let Some(problem) = dns1123_subdomain(name).first() {
            return Err(Status::invalid_argument(format!(
                "the name {name:?} to join as is not a DNS subdomain: {problem}"
            )));
        }
        if role == Role::Node {
            check_signing_request(&request.csr_pem).map_err(|error| {
                Status::invalid_argument(format!("the node's certificate signing request: {error}"))
            })?;
        }
        let secret = self.admitted(&token, role, name).await?;
        if role == Role::Node {
            self.check_node_name(name).await?;
        }
        self.take(&token, role, name, &secret).await?;
        let mut answer = JoinResponse {
            ca_pem,
            ..JoinResponse::default()
        };
        match role {
            Role::Node => {
                answer.certificate_pem = self
                    .authority
                    .ca
                    .sign_request(
                        &request.csr_pem,
                        &CertificateRequest::node_for(
                            name,
                            self.authority.node_certificate_lifetime,
                        ),
                    )
                    .map_err(|error| {
                        Status::internal(format!(
                            "signing the node's certificate after taking its token (make a new \
                             token): {error}"
                        ))
                    })?;
                // The certificate node `name` holds from now on: the only one it renews.
                self.record_certificate(name, &answer.certificate_pem, None)
                    .await?;
            }
            Role::Master => {
                answer.ca_key_pem = self.authority.ca.key_pem().to_string();
                answer.keyring = self.registry.keys().current().to_text();
                answer.service_account_key_pem = self.authority.service_account_key_pem.clone();
                answer.peer_address = self.peer_address.clone();
            }
        }
        tracing::info!(token = %token.id, role = role.as_str(), %name, "joined with a token");
        Ok(answer)
    }

    async fn renew_for(&self, caller: &Caller, csr_pem: &str) -> Result<RenewResponse, Status> {
        let caller = match caller {
            Caller::Authenticated(subject) => renewing_node(subject),
            _ => None,
        };
        let Some((node, presented)) = caller else {
            return Err(Status::permission_denied(
                "only a node renews a certificate here, its own, calling with the one it has",
            ));
        };
        // Only the certificate the node holds now (joined for, or last renewed to): not one
        // of a machine that left, nor one from before the name joined again.
        let record = match self.registry.get(&record_target(&record_name(&node))).await {
            Ok(record) => Some(record),
            Err(ApiError::NotFound { .. }) => None,
            Err(error) => return Err(error.into()),
        };
        if record.as_ref().and_then(recorded_sha256).as_deref() != Some(presented.as_str()) {
            tracing::warn!(%node, "a renewal with a certificate the node no longer holds was refused");
            return Err(Status::permission_denied(format!(
                "this certificate is not the one node {node} holds now (the name joined again, \
                 or the node never joined with a token): join again with a token"
            )));
        }
        let certificate_pem = self
            .authority
            .ca
            .sign_request(
                csr_pem,
                &CertificateRequest::node_for(&node, self.authority.node_certificate_lifetime),
            )
            .map_err(|error| {
                Status::invalid_argument(format!("the certificate signing request: {error}"))
            })?;
        self.record_certificate(&node, &certificate_pem, record.as_ref())
            .await?;
        tracing::info!(%node, "renewed a node's certificate");
        Ok(RenewResponse { certificate_pem })
    }

    /// Records `certificate_pem` as the one node `node` holds: replacing `read` (compared
    /// by revision, so of two renewals racing one wins), or whatever is there (a join).
    async fn record_certificate(
        &self,
        node: &str,
        certificate_pem: &str,
        read: Option<&Value>,
    ) -> Result<(), Status> {
        let der = CertificateDer::from_pem_slice(certificate_pem.as_bytes())
            .map_err(|error| Status::internal(format!("the certificate just signed: {error}")))?;
        let sha256 = certificate_sha256(der.as_ref());
        let name = record_name(node);
        let target = record_target(&name);
        let mut record = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": name, "namespace": TOKEN_NAMESPACE },
            "type": RECORD_TYPE,
            "stringData": { RECORD_KEY: sha256 },
        });
        let options = WriteOptions::default();
        let written = match read {
            Some(read) => {
                record["metadata"]["resourceVersion"] = read["metadata"]["resourceVersion"].clone();
                self.registry
                    .update(&target, record.to_string().as_bytes(), &options)
                    .await
            }
            None => match self
                .registry
                .create(
                    "secrets",
                    TOKEN_NAMESPACE,
                    record.to_string().as_bytes(),
                    &options,
                )
                .await
            {
                Err(ApiError::AlreadyExists { .. }) => {
                    self.registry
                        .update(&target, record.to_string().as_bytes(), &options)
                        .await
                }
                other => other,
            },
        };
        match written {
            Ok(_) => Ok(()),
            Err(ApiError::Conflict { .. }) => Err(Status::aborted(format!(
                "node {node}'s certificate changed meanwhile (another renewal): try again"
            ))),
            Err(error) => Err(error.into()),
        }
    }
}

/// The Secret recording the certificate node `node` holds (its SHA-256): written by masters
/// only (a node writes no Secret).
fn record_name(node: &str) -> String {
    format!("rudder-node-certificate-{node}")
}

fn record_target(name: &str) -> Target<'_> {
    Target {
        resource: "secrets",
        namespace: TOKEN_NAMESPACE,
        name,
    }
}

const RECORD_TYPE: &str = "rudder.dev/node-certificate";
const RECORD_KEY: &str = "certificate-sha256";

/// The SHA-256 a record holds.
fn recorded_sha256(record: &Value) -> Option<String> {
    let encoded = record["data"][RECORD_KEY].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// The node a caller is, by the certificate it presented (`system:node:NAME` in
/// `system:nodes`), and that certificate's SHA-256: never a token's subject.
fn renewing_node(subject: &Subject) -> Option<(String, String)> {
    let name = subject.user.strip_prefix(NODE_USER_PREFIX)?;
    let in_nodes = subject.groups.iter().any(|group| group == NODES_GROUP);
    let presented = subject.certificate_sha256()?;
    (in_nodes && !name.is_empty()).then(|| (name.to_string(), presented.to_string()))
}
