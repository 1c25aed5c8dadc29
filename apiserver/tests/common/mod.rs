//! An in-process control plane: raftstore's test cluster with a [`Master`] in each member's
//! place, and an [`ApiClient`] over the masters. Requests `ApiClient` has no verb for (lists,
//! watches, bindings, and writes with raw bodies or a fence) go through the functions below.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use rudder_apiserver::Master;
use rudder_proto::api as pb;
use rudder_proto::api::resources_client::ResourcesClient;
use rudder_proto::client::{ApiClient, ClientError, Connection};
use rudder_raftstore::compaction::Retention;
use rudder_raftstore::server::{RaftOptions, ServerError};
use rudder_raftstore::test_support::{Cluster, Kind, Options};
use rudder_raftstore::{MemberConfig, Store};
use rudder_raftstore::{RunningMember, StoreOptions};
use serde_json::Value;
use tokio::net::TcpListener;

/// Masters in the members' places.
pub struct Masters;

impl Kind for Masters {
    type Member = Master;

    fn start_on(
        config: MemberConfig,
        peer: TcpListener,
        client: TcpListener,
    ) -> impl Future<Output = Result<Master, ServerError>> + Send + 'static {
        Master::start_on(config, peer, client)
    }

    fn member(master: &Master) -> &RunningMember {
        &master.member
    }

    fn shutdown(master: Master) -> impl Future<Output = ()> + Send {
        master.shutdown()
    }
}

pub struct Plane {
    pub cluster: Cluster<Masters>,
    pub client: ApiClient,
}

impl Plane {
    /// `size` masters with the default options, once the system objects exist (each master
    /// creates them in the background: one still being written would move the revision
    /// under a test that checks nothing was written).
    pub async fn start(size: usize) -> Self {
        let options = Options {
            raft: RaftOptions::default(),
            store: StoreOptions::default(),
            auto_compaction: Retention::Off,
        };
        let cluster = Cluster::<Masters>::start_kind(size, options).await;
        let client = ApiClient::new(cluster.client_endpoints());
        let plane = Self { cluster, client };
        plane.wait_for_system_objects().await;
        plane
    }

    /// The namespaces come first and the default RBAC objects last (master.rs): once both
    /// are there, every master's remaining creates find theirs already made.
    async fn wait_for_system_objects(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let defaults = rudder_apiserver::authz::default_objects();
        let (last_resource, last) = defaults.last().expect("default RBAC objects");
        let last_name = last["metadata"]["name"].as_str().unwrap_or_default();
        loop {
            if let Ok(list) = list(&self.client, "namespaces", "", "", "").await {
                let last = self.client.get_object(last_resource, "", last_name).await;
                if list.items.len() >= 4 && last.is_ok() {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the system objects were not created within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn shutdown(self) {
        self.cluster.shutdown().await;
    }

    /// The store's current revision, read linearizably through the first master.
    pub async fn revision(&self) -> i64 {
        read_root(self.cluster.store(0)).await
    }

    /// A linearizable read on every master: each has applied everything committed so far.
    pub async fn sync(&self) {
        for master in self.cluster.members.iter().flatten() {
            read_root(&master.member.store).await;
        }
    }
}

/// A linearizable read of one key; returns the revision it was read at.
async fn read_root(store: &Store) -> i64 {
    let (header, _) = store
        .range(rudder_raftstore::kv::RangeRequest {
            range: rudder_raftstore::kv::KeyRange::single(b"/".to_vec()),
            ..Default::default()
        })
        .await
        .expect("range");
    header.revision
}

/// Sends `request` through `send`, unnumbered (`ApiClient::call`); returns the object as JSON.
async fn object_call<M, F, Fut>(
    client: &ApiClient,
    request: M,
    send: F,
) -> Result<Value, ClientError>
where
    M: Clone,
    F: Fn(ResourcesClient<Connection>, M) -> Fut,
    Fut: Future<Output = Result<tonic::Response<pb::Object>, tonic::Status>>,
{
    let object = client.call(|c| send(c, request.clone())).await?;
    Ok(serde_json::from_slice(&object.json).expect("JSON"))
}

/// Creates from `body` as sent (not necessarily JSON), unnumbered, with an optional fence.
pub async fn create_raw(
    client: &ApiClient,
    resource: &str,
    namespace: &str,
    body: &[u8],
    fence: Option<pb::Fence>,
) -> Result<Value, ClientError> {
    let request = pb::CreateRequest {
        resource: resource.into(),
        namespace: namespace.into(),
        json: body.to_vec(),
        fence,
        dry_run: false,
    };
    object_call(client, request, |mut c, r| async move { c.create(r).await }).await
}

/// Replaces with `body` as sent (`status`: the status only), unnumbered, with an optional fence.
pub async fn update_raw(
    client: &ApiClient,
    resource: &str,
    namespace: &str,
    name: &str,
    body: &[u8],
    status: bool,
    fence: Option<pb::Fence>,
) -> Result<Value, ClientError> {
    let request = pb::UpdateRequest {
        resource: resource.into(),
        namespace: namespace.into(),
        name: name.into(),
        json: body.to_vec(),
        fence,
        dry_run: false,
    };
    object_call(client, request, |mut c, r| async move {
        if status {
            c.update_status(r).await
        } else {
            c.update(r).await
        }
    })
    .await
}

pub async fn list(
    client: &ApiClient,
    resource: &str,
    namespace: &str,
    labels: &str,
    fields: &str,
) -> Result<pb::ListResponse, ClientError> {
    list_page(client, resource, namespace, labels, fields, 0, "").await
}

pub async fn list_page(
    client: &ApiClient,
    resource: &str,
    namespace: &str,
    labels: &str,
    fields: &str,
    limit: i64,
    continue_token: &str,
) -> Result<pb::ListResponse, ClientError> {
    let request = pb::ListRequest {
        resource: resource.into(),
        namespace: namespace.into(),
        label_selector: labels.into(),
        field_selector: fields.into(),
        limit,
        continue_token: continue_token.into(),
        resource_version: String::new(),
    };
    client
        .call(|mut c| {
            let request = request.clone();
            async move { c.list(request).await }
        })
        .await
}

pub async fn bind(
    client: &ApiClient,
    namespace: &str,
    name: &str,
    node: &str,
) -> Result<Value, ClientError> {
    let request = pb::BindRequest {
        namespace: namespace.into(),
        name: name.into(),
        node_name: node.into(),
        fence: None,
        uid: String::new(),
    };
    object_call(client, request, |mut c, r| async move { c.bind(r).await }).await
}

pub async fn open_watch(
    client: &ApiClient,
    request: pb::WatchRequest,
) -> Result<tonic::Streaming<pb::WatchEvent>, ClientError> {
    client
        .open(|mut c| {
            let request = request.clone();
            async move { c.watch(request).await }
        })
        .await
}

/// The next watch event (type, object), failing the test after 10 s.
pub async fn next_event(stream: &mut tonic::Streaming<pb::WatchEvent>) -> (String, Value) {
    let event = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a watch event within 10 s")
        .expect("the stream is healthy")
        .expect("the stream is open");
    (
        event.r#type,
        serde_json::from_slice(&event.object).expect("event JSON"),
    )
}

pub fn names(list: &pb::ListResponse) -> Vec<String> {
    list.items
        .iter()
        .map(|item| {
            let object: Value = serde_json::from_slice(item).expect("JSON");
            object["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}
