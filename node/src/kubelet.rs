//! The kubelet actor's node duties: register the Node, renew its Lease (the heartbeat the
//! node lifecycle controller watches), and keep its status current. Each duty is a timer
//! on the actor; each run is one async task through the API, never two at once.
//!
//! ```text
//!  started ─► register (create Node; exists → refresh its status) ─ retry every second
//!  every lease_renew   ─► get Lease ─ renewed_lease (pure) ─► create / update (CAS)
//!  every status_update ─► get Node ─ node_status (pure)    ─► update-status (CAS)
//! ```

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use rudder_proto::api as pb;
use rudder_proto::client::{ApiClient, ClientError};

use crate::machine::Machine;
use crate::status::{node_object, node_status, renewed_lease, NodeConfig, NODE_LEASE_NAMESPACE};

/// The kubelet's timers (Kubernetes' defaults).
#[derive(Debug, Clone, Copy)]
pub struct KubeletTimers {
    /// Lease renewal: 10 s.
    pub lease_renew: Duration,
    /// How long a lease holds without renewal: 40 s.
    pub lease_duration: Duration,
    /// NodeStatus updates: 10 s.
    pub status_update: Duration,
}

impl Default for KubeletTimers {
    fn default() -> Self {
        Self {
            lease_renew: Duration::from_secs(10),
            lease_duration: Duration::from_secs(40),
            status_update: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error(transparent)]
    Api(#[from] ClientError),
    #[error("the server sent a {kind} that does not decode: {source}")]
    Decode {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

pub struct Kubelet {
    client: Arc<ApiClient>,
    config: NodeConfig,
    machine: Machine,
    timers: KubeletTimers,
    registered: bool,
    renewing: bool,
    updating: bool,
}

impl Kubelet {
    pub fn new(
        client: Arc<ApiClient>,
        config: NodeConfig,
        machine: Machine,
        timers: KubeletTimers,
    ) -> Self {
        Self {
            client,
            config,
            machine,
            timers,
            registered: false,
            renewing: false,
            updating: false,
        }
    }

    fn register(&mut self, ctx: &mut Context<Self>) {
        let node = node_object(&self.config, &self.machine, jiff::Timestamp::now());
        let task = register(
            self.client.clone(),
            node,
            self.config.clone(),
            self.machine.clone(),
        );
        ctx.spawn(task.into_actor(self).map(|outcome, kubelet, ctx| match outcome {
            Ok(()) => {
                tracing::info!(node = %kubelet.config.name, "node registered");
                kubelet.registered = true;
            }
            Err(error) => {
                tracing::warn!(node = %kubelet.config.name, %error, "registering; retrying in 1 s");
                ctx.run_later(Duration::from_secs(1), |kubelet, ctx| kubelet.register(ctx));
            }
        }));
    }

    fn renew_lease(&mut self, ctx: &mut Context<Self>) {
        if self.renewing {
            return;
        }
        self.renewing = true;
        let duration = i32::try_from(self.timers.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let task = renew(self.client.clone(), self.config.name.clone(), duration);
        ctx.spawn(task.into_actor(self).map(|outcome, kubelet, _| {
            kubelet.renewing = false;
            if let Err(error) = outcome {
                tracing::warn!(node = %kubelet.config.name, %error, "renewing the node lease");
            }
        }));
    }

    fn update_status(&mut self, ctx: &mut Context<Self>) {
        if self.updating || !self.registered {
            return;
        }
        self.updating = true;
        let task = refresh(
            self.client.clone(),
            self.config.clone(),
            self.machine.clone(),
        );
        ctx.spawn(task.into_actor(self).map(|outcome, kubelet, _| {
            kubelet.updating = false;
            if let Err(error) = outcome {
                tracing::warn!(node = %kubelet.config.name, %error, "updating node status");
            }
        }));
    }
}

impl Actor for Kubelet {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.register(ctx);
        self.renew_lease(ctx);
        ctx.run_interval(self.timers.lease_renew, |kubelet, ctx| {
            kubelet.renew_lease(ctx)
        });
        ctx.run_interval(self.timers.status_update, |kubelet, ctx| {
            kubelet.update_status(ctx)
        });
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    kind: &'static str,
    json: &[u8],
) -> Result<T, KubeletError> {
    serde_json::from_slice(json).map_err(|source| KubeletError::Decode { kind, source })
}

async fn get(
    client: &ApiClient,
    resource: &str,
    namespace: &str,
    name: &str,
) -> Result<Option<Vec<u8>>, ClientError> {
    let request = pb::GetRequest {
        resource: resource.into(),
        namespace: namespace.into(),
        name: name.into(),
    };
    let outcome = client
        .call(|mut c| {
            let request = request.clone();
            async move { c.get(request).await }
        })
        .await;
    match outcome {
        Ok(object) => Ok(Some(object.json)),
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(error),
    }
}

async fn create(
    client: &ApiClient,
    resource: &str,
    namespace: &str,
    json: Vec<u8>,
) -> Result<(), ClientError> {
    let request = pb::CreateRequest {
        resource: resource.into(),
        namespace: namespace.into(),
        json,
        ..Default::default()
    };
    client
        .call(|mut c| {
            let request = request.clone();
            async move { c.create(request).await }
        })
        .await
        .map(drop)
}

async fn update(
    client: &ApiClient,
    resource: &str,
    namespace: &str,
    name: &str,
    json: Vec<u8>,
    status: bool,
) -> Result<(), ClientError> {
    let request = pb::UpdateRequest {
        resource: resource.into(),
        namespace: namespace.into(),
        name: name.into(),
        json,
        ..Default::default()
    };
    client
        .call(|mut c| {
            let request = request.clone();
            async move {
                if status {
                    c.update_status(request).await
                } else {
                    c.update(request).await
                }
            }
        })
        .await
        .map(drop)
}

fn encode<T: serde::Serialize>(object: &T) -> Vec<u8> {
    serde_json::to_vec(object).unwrap_or_default()
}

/// Creates the Node; a Node already there (a restarted kubelet) gets a fresh status.
async fn register(
    client: Arc<ApiClient>,
    node: Node,
    config: NodeConfig,
    machine: Machine,
) -> Result<(), KubeletError> {
    match create(&client, "nodes", "", encode(&node)).await {
        Ok(()) => Ok(()),
        Err(error) if error.reason() == "AlreadyExists" => refresh(client, config, machine).await,
        Err(error) => Err(error.into()),
    }
}

/// One heartbeat: the Lease renewed (created the first time), compare-and-swap.
async fn renew(
    client: Arc<ApiClient>,
    holder: String,
    duration_seconds: i32,
) -> Result<(), KubeletError> {
    let now = jiff::Timestamp::now();
    match get(&client, "leases", NODE_LEASE_NAMESPACE, &holder).await? {
        None => {
            let lease = renewed_lease(None, &holder, duration_seconds, now);
            create(&client, "leases", NODE_LEASE_NAMESPACE, encode(&lease)).await?;
        }
        Some(json) => {
            let current: Lease = decode("Lease", &json)?;
            let lease = renewed_lease(Some(&current), &holder, duration_seconds, now);
            update(
                &client,
                "leases",
                NODE_LEASE_NAMESPACE,
                &holder,
                encode(&lease),
                false,
            )
            .await?;
        }
    }
    Ok(())
}

/// The Node's status brought up to date, compare-and-swap on the Node read.
async fn refresh(
    client: Arc<ApiClient>,
    config: NodeConfig,
    machine: Machine,
) -> Result<(), KubeletError> {
    let Some(json) = get(&client, "nodes", "", &config.name).await? else {
        let node = node_object(&config, &machine, jiff::Timestamp::now());
        return Ok(create(&client, "nodes", "", encode(&node)).await?);
    };
    let mut node: Node = decode("Node", &json)?;
    node.status = Some(node_status(
        &config,
        &machine,
        node.status.as_ref(),
        jiff::Timestamp::now(),
    ));
    update(&client, "nodes", "", &config.name, encode(&node), true).await?;
    Ok(())
}
