//! A minimal informer for the kubelet: list, then watch from the list's revision; a broken
//! stream resumes from the last revision seen (on another master if need be); an expired
//! revision lists again. Events go to an actor. (The general informer runtime with caches
//! belongs to `rudder-actors`; this one moves there when that crate exists.)

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use rudder_proto::api as pb;
use rudder_proto::client::{ApiClient, ClientError};
use serde_json::Value;

/// What the informer tells its actor.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum Informed {
    /// Every matching object, after a (re)list: replaces what the actor knew.
    Listed(Vec<Value>),
    /// Added or modified.
    Changed(Value),
    Deleted(Value),
}

/// Follows `resource` objects matching `field_selector` until the actor stops.
pub async fn follow(
    client: Arc<ApiClient>,
    resource: &'static str,
    field_selector: String,
    actor: Recipient<Informed>,
) {
    'relist: loop {
        if !actor.connected() {
            return;
        }
        let (items, mut revision) = match list(&client, resource, &field_selector).await {
            Ok(listed) => listed,
            Err(error) => {
                tracing::warn!(%error, resource, "listing; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        actor.do_send(Informed::Listed(items));
        loop {
            let request = pb::WatchRequest {
                resource: resource.into(),
                field_selector: field_selector.clone(),
                resource_version: revision.clone(),
                allow_bookmarks: true,
                bookmark_interval_ms: 10_000,
                ..Default::default()
            };
            let opened = client
                .open(|mut c| {
                    let request = request.clone();
                    async move { c.watch(request).await }
                })
                .await;
            let mut stream = match opened {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::warn!(%error, resource, "watching; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            while let Ok(Some(event)) = stream.message().await {
                if !actor.connected() {
                    return;
                }
                let Ok(object) = serde_json::from_slice::<Value>(&event.object) else {
                    continue;
                };
                match event.r#type.as_str() {
                    "ERROR" if object["code"] == 410 => continue 'relist,
                    "ERROR" => break,
                    kind => {
                        if let Some(version) = object["metadata"]["resourceVersion"].as_str() {
                            revision = version.to_string();
                        }
                        match kind {
                            "ADDED" | "MODIFIED" => actor.do_send(Informed::Changed(object)),
                            "DELETED" => actor.do_send(Informed::Deleted(object)),
                            _ => {}
                        }
                    }
                }
            }
            // The stream broke or its master lost the quorum: resume elsewhere.
            client.skip_current();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn list(
    client: &ApiClient,
    resource: &str,
    field_selector: &str,
) -> Result<(Vec<Value>, String), ClientError> {
    let request = pb::ListRequest {
        resource: resource.into(),
        field_selector: field_selector.into(),
        ..Default::default()
    };
    let listed = client
        .call(|mut c| {
            let request = request.clone();
            async move { c.list(request).await }
        })
        .await?;
    let items = listed
        .items
        .iter()
        .filter_map(|item| serde_json::from_slice(item).ok())
        .collect();
    Ok((items, listed.resource_version))
}
