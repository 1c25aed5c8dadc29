//! An in-process control plane of masters on loopback port 0, and a failover client on it.

#![allow(dead_code)]

use std::time::Duration;

use rudder_apiserver::Master;
use rudder_proto::api as pb;
use rudder_proto::client::{ApiClient, ClientError};
use rudder_raftstore::compaction::Retention;
use rudder_raftstore::server::RaftOptions;
use rudder_raftstore::{MemberConfig, StoreOptions};
use serde_json::Value;
use tempfile::TempDir;
use tokio::net::TcpListener;

pub struct Plane {
    pub dir: TempDir,
    pub masters: Vec<Master>,
    pub client: ApiClient,
}

async fn listen() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback")
}

impl Plane {
    pub async fn start(size: usize) -> Self {
        let dir = TempDir::new().expect("a temporary directory");
        let mut peers = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..size {
            peers.push(listen().await);
            clients.push(listen().await);
        }
        let initial: Vec<(String, String)> = peers
            .iter()
            .enumerate()
            .map(|(i, l)| (format!("m{}", i + 1), l.local_addr().unwrap().to_string()))
            .collect();
        let mut starting = Vec::new();
        let mut endpoints = Vec::new();
        for (i, (peer, client)) in peers.into_iter().zip(clients).enumerate() {
            endpoints.push(client.local_addr().unwrap().to_string());
            let config = MemberConfig {
                name: format!("m{}", i + 1),
                data_dir: dir.path().join(format!("m{}", i + 1)),
                listen_client: client.local_addr().unwrap(),
                listen_peer: peer.local_addr().unwrap(),
                initial_cluster: initial.clone(),
                join: None,
                raft: RaftOptions::default(),
                store: StoreOptions::default(),
                auto_compaction: Retention::Off,
            };
            starting.push(tokio::spawn(Master::start_on(config, peer, client)));
        }
        let mut masters = Vec::new();
        for task in starting {
            masters.push(task.await.expect("start task").expect("master starts"));
        }
        let plane = Self {
            dir,
            masters,
            client: ApiClient::new(endpoints),
        };
        plane.wait_for_system_namespaces().await;
        plane
    }

    async fn wait_for_system_namespaces(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(list) = self.list("namespaces", "", "", "").await {
                if list.items.len() >= 4 {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "system namespaces were not created within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn shutdown(self) {
        for master in self.masters {
            master.shutdown().await;
        }
    }

    /// The store's current revision, read linearizably through the first master.
    pub async fn revision(&self) -> i64 {
        let (header, _) = self.masters[0]
            .member
            .store
            .range(rudder_raftstore::kv::RangeRequest {
                range: rudder_raftstore::kv::KeyRange::single(b"/".to_vec()),
                ..Default::default()
            })
            .await
            .expect("range");
        header.revision
    }

    /// A linearizable read on every master: each has applied everything committed so far.
    pub async fn sync(&self) {
        for master in &self.masters {
            master
                .member
                .store
                .range(rudder_raftstore::kv::RangeRequest {
                    range: rudder_raftstore::kv::KeyRange::single(b"/".to_vec()),
                    ..Default::default()
                })
                .await
                .expect("range");
        }
    }

    pub async fn create(
        &self,
        resource: &str,
        namespace: &str,
        body: &Value,
    ) -> Result<Value, ClientError> {
        self.create_fenced(resource, namespace, body, None).await
    }

    pub async fn create_fenced(
        &self,
        resource: &str,
        namespace: &str,
        body: &Value,
        fence: Option<pb::Fence>,
    ) -> Result<Value, ClientError> {
        self.create_raw(resource, namespace, body.to_string().as_bytes(), fence)
            .await
    }

    pub async fn create_raw(
        &self,
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
        let object = self
            .client
            .call(|mut c| {
                let request = request.clone();
                async move { c.create(request).await }
            })
            .await?;
        Ok(serde_json::from_slice(&object.json).expect("JSON"))
    }

    pub async fn get(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ClientError> {
        self.client.get_object(resource, namespace, name).await
    }

    pub async fn update(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        body: &Value,
    ) -> Result<Value, ClientError> {
        self.update_raw(
            resource,
            namespace,
            name,
            body.to_string().as_bytes(),
            false,
            None,
        )
        .await
    }

    pub async fn update_raw(
        &self,
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
        let object = self
            .client
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
            .await?;
        Ok(serde_json::from_slice(&object.json).expect("JSON"))
    }

    pub async fn patch(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Value, ClientError> {
        self.client
            .patch_object(resource, namespace, name, patch, false)
            .await
    }

    pub async fn list(
        &self,
        resource: &str,
        namespace: &str,
        labels: &str,
        fields: &str,
    ) -> Result<pb::ListResponse, ClientError> {
        self.list_page(resource, namespace, labels, fields, 0, "")
            .await
    }

    pub async fn list_page(
        &self,
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
        self.client
            .call(|mut c| {
                let request = request.clone();
                async move { c.list(request).await }
            })
            .await
    }

    pub async fn delete(
        &self,
        request: pb::DeleteRequest,
    ) -> Result<pb::DeleteResponse, ClientError> {
        self.client.delete_object(request).await
    }

    pub async fn bind(
        &self,
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
        let object = self
            .client
            .call(|mut c| {
                let request = request.clone();
                async move { c.bind(request).await }
            })
            .await?;
        Ok(serde_json::from_slice(&object.json).expect("JSON"))
    }

    pub async fn watch(
        &self,
        request: pb::WatchRequest,
    ) -> Result<tonic::Streaming<pb::WatchEvent>, ClientError> {
        self.client
            .open(|mut c| {
                let request = request.clone();
                async move { c.watch(request).await }
            })
            .await
    }
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
