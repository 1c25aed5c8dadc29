//! [`Master`]: one control-plane member — the store member with the API (gRPC and HTTP) on
//! its client port, and the API server's own duty: creating the system namespaces, PriorityClasses, the
//! default StorageClass (`local-path`), the `default/kubernetes` and `kube-system/kube-dns`
//! Services, the default RBAC roles and bindings (`authz/defaults.rs`), and the cluster's
//! network settings (`cluster_config.rs`); and it keeps the RBAC policy its requests are
//! decided by current.
//! (Emptying terminating namespaces is the namespace controller's, in `rudder-actors`.)

use std::sync::Arc;
use std::time::Duration;

use rudder_proto::node::kubelet_server::KubeletServer;
use rudder_proto::objects::priority::system_classes;
use rudder_proto::objects::storage::default_storage_class;
use rudder_raftstore::front_door::ClientServices;
use rudder_raftstore::server::{bind, ServerError};
use rudder_raftstore::{MemberConfig, RunningMember};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::allocation::ServiceRanges;
use crate::audit::AuditLog;
use crate::authz::{self, Authorizer};
use crate::cluster_config::{self, ClusterConfig};
use crate::encryption::{keyring_file, keys_of_this_process, SharedKeyring};
use crate::error::ApiError;
use crate::join::{JoinAuthority, JoinService, JOIN_METHOD};
use crate::kubelet_proxy::KubeletProxy;
use crate::registry::{Part, Registry, Target, WriteOptions};
use crate::request_metrics::ApiMetrics;
use crate::service::service;
use crate::service_account_tokens::TokenKey;
use rudder_proto::authn::{Authenticate, Authenticators, BearerTokens};

/// The namespaces every cluster has, created by the first master that can.
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// How a master is secured.
pub struct Security {
    /// What Secrets are sealed with before they enter the store.
    pub keys: SharedKeyring,
    /// TLS on the client port (none: plaintext, for a master on loopback only).
    pub client_tls: Option<Arc<rustls::ServerConfig>>,
    /// Where requests are recorded (none: not recorded).
    pub audit: Option<AuditLog>,
    /// Bearer tokens callers without a certificate may present (`--token-auth-file`).
    pub tokens: Option<Arc<BearerTokens>>,
    /// What the master presents to nodes' kubelet ports (a master's certificate).
    pub kubelet_tls: Option<rudder_proto::tls::ClientTls>,
    /// What ServiceAccount tokens are signed and checked with (every master holds it).
    pub token_key: Option<Arc<TokenKey>>,
    /// What joiners with a join token are given (none: joins are not served, as in a
    /// cluster without TLS).
    pub join: Option<JoinAuthority>,
}

/// A running master. Dropping it does not stop it: call [`Master::shutdown`].
pub struct Master {
    pub member: RunningMember,
    pub registry: Registry,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Master {
    /// Binds the configured peer and client addresses, then starts, secured as `security`
    /// says.
    pub async fn start(
        config: MemberConfig,
        ranges: ServiceRanges,
        security: Security,
    ) -> Result<Self, ServerError> {
        let peer = bind("peer", config.listen_peer).await?;
        let client = bind("client", config.listen_client).await?;
        Self::start_with(config, ranges, security, peer, client).await
    }

    /// Starts on listeners the caller bound (tests bind port 0), with the default ranges,
    /// sealing Secrets with [`keys_of_this_process`] (every master started so in one
    /// process shares it, as a cluster's masters share their keyring).
    pub async fn start_on(
        config: MemberConfig,
        peer: TcpListener,
        client: TcpListener,
    ) -> Result<Self, ServerError> {
        let security = Security {
            keys: keys_of_this_process(),
            client_tls: None,
            audit: None,
            tokens: None,
            kubelet_tls: None,
            token_key: None,
            join: None,
        };
        Self::start_with(config, ServiceRanges::default(), security, peer, client).await
    }

    /// Starts on listeners the caller bound, Services taking from `ranges`.
    pub async fn start_with(
        config: MemberConfig,
        ranges: ServiceRanges,
        Security {
            keys,
            client_tls,
            audit,
            tokens,
            kubelet_tls,
            token_key,
            join,
        }: Security,
        peer: TcpListener,
        client: TcpListener,
    ) -> Result<Self, ServerError> {
        let max_message = config.store.limits.max_grpc_message_bytes;
        let metrics = config.metrics.clone();
        let api_metrics = ApiMetrics::registered(&metrics);
        let api_port = client.local_addr().map(|a| a.port()).unwrap_or(0);
        let peer_address = peer.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let mut served = None;
        let authorizer = Authorizer::new();
        let member = RunningMember::start_serving(config, peer, client, |grpc, store| {
            let registry = Registry::with_service_ranges(store.clone(), keys, ranges)
                .with_kubelet_tls(kubelet_tls)
                .with_token_key(token_key.clone());
            // A bearer token is the token file's, else a ServiceAccount token.
            let mut each: Vec<Arc<dyn Authenticate + Send + Sync>> = Vec::new();
            each.extend(tokens.map(|tokens| tokens as Arc<dyn Authenticate + Send + Sync>));
            each.extend(token_key.map(|key| key as Arc<dyn Authenticate + Send + Sync>));
            served = Some(registry.clone());
            let open_methods: &'static [&'static str] = match join {
                Some(_) => &[JOIN_METHOD],
                None => &[],
            };
            let grpc = match join {
                Some(authority) => grpc.add_service(JoinService::server(
                    registry.clone(),
                    authority,
                    peer_address,
                    audit.clone(),
                )),
                None => grpc,
            };
            ClientServices {
                grpc: grpc
                    .add_service(service(
                        registry.clone(),
                        max_message,
                        api_metrics.clone(),
                        audit.clone(),
                        authorizer.clone(),
                    ))
                    .add_service(KubeletServer::new(KubeletProxy::new(
                        registry.clone(),
                        authorizer.clone(),
                        audit.clone(),
                    ))),
                http: Some(crate::http::router(
                    registry,
                    max_message,
                    metrics,
                    api_metrics,
                    audit,
                    authorizer.clone(),
                )),
                tls: client_tls,
                tokens: Authenticators::new(each),
                open_methods,
            }
        })
        .await?;
        let registry = served.expect("start_serving mounts the API");
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let follow = authorizer.follow(registry.clone(), stopped.clone());
        tasks.spawn(until_stopped(stopped.clone(), follow));
        let write_back = crate::role_aggregation::write_back(
            authorizer.clone(),
            registry.clone(),
            stopped.clone(),
        );
        tasks.spawn(until_stopped(stopped.clone(), write_back));
        if let Some(tls) = registry.kubelet_tls() {
            let ca_pem = tls.ca_pem.clone();
            let publish = crate::root_ca::publish(registry.clone(), ca_pem, stopped.clone());
            tasks.spawn(until_stopped(stopped.clone(), publish));
        }
        let ensure = ensure_system_objects(registry.clone(), api_port, stopped.clone());
        tasks.spawn(until_stopped(stopped, ensure));
        Ok(Self {
            member,
            registry,
            stop,
            tasks,
        })
    }

    /// Publishes the cluster's network settings (`kube-system/rudder-cluster`) unless a
    /// master did already; warns, naming each difference, when that one's disagree.
    pub fn publish_cluster_config(&mut self, config: ClusterConfig) {
        let registry = self.registry.clone();
        let stopped = self.stop.subscribe();
        let publish = publish_cluster_config(registry, config, stopped.clone());
        self.tasks.spawn(until_stopped(stopped, publish));
    }

    /// Takes the keyring in `path` each time it changes (`keyring_file::follow`).
    pub fn follow_keyring(&mut self, path: std::path::PathBuf) {
        let keys = self.registry.keys().clone();
        let stopped = self.stop.subscribe();
        let follow = keyring_file::follow(path, keys, stopped.clone());
        self.tasks.spawn(until_stopped(stopped, follow));
    }

    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        self.registry.stop();
        while self.tasks.join_next().await.is_some() {}
        self.member.shutdown().await;
    }
}

/// `default/kubernetes`: the API at the service range's first address (as kube-apiserver
/// makes it). No selector: its endpoints are the masters, which the nodes relay to.
fn kubernetes_service(registry: &Registry, api_port: u16) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "kubernetes", "namespace": "default",
                      "labels": { "component": "apiserver", "provider": "kubernetes" } },
        "spec": {
            "clusterIP": registry.service_ranges().kubernetes_ip().to_string(),
            "ports": [{ "name": "https", "port": 443, "protocol": "TCP", "targetPort": api_port }],
            "sessionAffinity": "None",
        }
    })
}

async fn publish_cluster_config(
    registry: Registry,
    ours: ClusterConfig,
    mut stopped: watch::Receiver<bool>,
) {
    let body = ours.to_config_map().to_string();
    loop {
        let created = registry
            .create(
                "configmaps",
                cluster_config::NAMESPACE,
                body.as_bytes(),
                &WriteOptions::default(),
            )
            .await;
        match created {
            Ok(_) => return,
            Err(ApiError::AlreadyExists { .. }) => {
                let target = Target {
                    resource: "configmaps",
                    namespace: cluster_config::NAMESPACE,
                    name: cluster_config::NAME,
                };
                match registry
                    .get(&target)
                    .await
                    .map(|published| ClusterConfig::from_config_map(&published))
                {
                    Ok(Ok(cluster)) => {
                        for difference in cluster.differences(&ours) {
                            tracing::warn!(
                                "this master's {difference}: the cluster keeps its own; give \
                                 every master the same ranges"
                            );
                        }
                        return;
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "the cluster's network settings are unreadable");
                        return;
                    }
                    Err(error) => tracing::debug!(%error, "reading the cluster's settings"),
                }
            }
            Err(error) => tracing::debug!(%error, "publishing the cluster's settings"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// `kube-system/kube-dns`: the cluster DNS at the service range's tenth address (the name
/// and labels kube-dns and CoreDNS deployments share, which tools look for). No selector:
/// every node's proxy sends it to that node's own DNS server.
fn dns_service(registry: &Registry) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "kube-dns", "namespace": "kube-system",
                      "labels": { "k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS" } },
        "spec": {
            "clusterIP": registry.service_ranges().dns_ip().to_string(),
            "ports": [
                { "name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53 },
                { "name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53 },
            ],
        }
    })
}

/// `task`, abandoned as soon as the master stops: a store call it awaits may wait out a
/// store without quorum (the other masters stopping too), which must not hold a stopping
/// master up. Every write it abandons is whole or not made.
async fn until_stopped(
    mut stopped: watch::Receiver<bool>,
    task: impl std::future::Future<Output = ()>,
) {
    tokio::select! {
        () = task => {}
        _ = stopped.wait_for(|stop| *stop) => {}
    }
}

/// Creates the system namespaces, then the built-in PriorityClasses (as kube-apiserver's
/// scheduling bootstrap does), the default StorageClass (as k3s ships `local-path`) and the
/// `default/kubernetes` and `kube-system/kube-dns` Services and the default RBAC roles
/// and bindings, each retried until the cluster has a leader. One that exists is left as it is (a user may
/// delete the StorageClass: a master's restart brings it back).
async fn ensure_system_objects(
    registry: Registry,
    api_port: u16,
    mut stopped: watch::Receiver<bool>,
) {
    let namespaces = SYSTEM_NAMESPACES.into_iter().map(|name| {
        let body = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } });
        ("namespaces", body)
    });
    let classes =
        system_classes()
            .into_iter()
            .filter_map(|class| match serde_json::to_value(&class) {
                Ok(body) => Some(("priorityclasses", body)),
                Err(error) => {
                    tracing::warn!(%error, "encoding a system PriorityClass");
                    None
                }
            });
    let storage = serde_json::to_value(default_storage_class())
        .map_err(|error| tracing::warn!(%error, "encoding the default StorageClass"))
        .ok()
        .map(|body| ("storageclasses", body));
    let api = kubernetes_service(&registry, api_port);
    let dns = dns_service(&registry);
    let objects: Vec<(&str, Value)> = namespaces
        .chain(classes)
        .chain(storage)
        .chain([("services", api), ("services", dns)])
        .chain(authz::default_objects())
        .collect();
    for (resource, body) in objects {
        let name = body["metadata"]["name"].as_str().unwrap_or("");
        loop {
            match registry
                .create(
                    resource,
                    "",
                    body.to_string().as_bytes(),
                    &WriteOptions::default(),
                )
                .await
            {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => break,
                // A Service's address is checked before its name, so one made already (by
                // another master, or at an earlier start) answers Invalid, as Kubernetes
                // does; else another Service holds the address (a cluster made with other
                // ranges).
                Err(error @ ApiError::Invalid { .. }) => {
                    let target = Target {
                        resource,
                        namespace: body["metadata"]["namespace"].as_str().unwrap_or(""),
                        name,
                    };
                    if registry.get(&target).await.is_err() {
                        tracing::warn!(%error, resource, name, "a system object was refused");
                    }
                    break;
                }
                Err(error) => {
                    tracing::debug!(%error, resource, name, "creating a system object")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = stopped.changed() => return,
            }
        }
    }
    reconcile_default_rbac(&registry).await;
}

/// How many times a default RBAC object is read and written before its reconciliation
/// waits for the next start.
const RECONCILE_ATTEMPTS: usize = 5;

/// The default roles and bindings an older version wrote, given what this version's
/// hold (`authz::defaults::reconcile_*`). A conflict is another master doing the same.
async fn reconcile_default_rbac(registry: &Registry) {
    use crate::authz::defaults::{self, reconcile_binding, reconcile_role};
    for default in defaults::cluster_roles() {
        let name = default.metadata.name.clone().unwrap_or_default();
        reconcile_one(registry, "clusterroles", &name, |stored| {
            reconcile_role(stored, &default)
        })
        .await;
    }
    for default in defaults::cluster_role_bindings() {
        let name = default.metadata.name.clone().unwrap_or_default();
        reconcile_one(registry, "clusterrolebindings", &name, |stored| {
            reconcile_binding(stored, &default)
        })
        .await;
    }
}

/// Reads `resource/name`, and writes what `reconcile` makes of it (compare-and-swap on
/// what was read), if anything; read again after a conflict (another master's write, the
/// aggregation writer's), a few times.
async fn reconcile_one<T: serde::de::DeserializeOwned + serde::Serialize>(
    registry: &Registry,
    resource: &'static str,
    name: &str,
    reconcile: impl Fn(&T) -> Option<T>,
) {
    let target = Target {
        resource,
        namespace: "",
        name,
    };
    for _ in 0..RECONCILE_ATTEMPTS {
        let Ok(stored) = registry.get(&target).await else {
            continue;
        };
        let version = stored["metadata"]["resourceVersion"].clone();
        let Some(mut next) = serde_json::from_value(stored)
            .ok()
            .and_then(|stored| reconcile(&stored))
            .and_then(|next| serde_json::to_value(next).ok())
        else {
            return;
        };
        next["metadata"]["resourceVersion"] = version;
        let written = registry
            .replace(
                &target,
                next.to_string().as_bytes(),
                Part::Object,
                &WriteOptions::default(),
            )
            .await;
        match written {
            Ok(_) => {
                tracing::info!(resource, name, "a default RBAC object given this version's");
                return;
            }
            Err(error) => {
                tracing::debug!(%error, resource, name, "reconciling a default RBAC object")
            }
        }
    }
}
