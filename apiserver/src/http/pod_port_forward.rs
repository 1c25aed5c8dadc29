//! `pods/NAME/portforward`, the way kubectl 1.31+ runs `kubectl port-forward`: SPDY/3.1
//! tunnelled over a WebSocket whose protocol is `SPDY/3.1+portforward.k8s.io`, each binary
//! message a piece of the SPDY byte stream. The session itself is spdy_session.rs; here
//! are the upgrade and the pod's node, which connects inside the pod's network namespace
//! (so a server on the pod's localhost is reached too).
//!
//! A plain SPDY upgrade (what kubectl falls back to when the WebSocket is refused) is not
//! served: kubectl 1.31 and later never need it.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::FromRequestParts;
use axum::response::Response;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, SinkExt, StreamExt};
use http::request::Parts;
use rudder_proto::node::kubelet_client::KubeletClient;
use rudder_proto::node::{PortForwardInput, PortForwardOutput, PortForwardRequest};
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::Status;

use super::spdy_session::{self, PodDialer, PodInputs, PodOutput};
use crate::error::ApiError;
use crate::pod_node::whole_pod_node;
use crate::registry::Registry;

/// The WebSocket protocol served: port-forward's SPDY protocol, tunnelled.
pub const TUNNELLED_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// A pod's ports, reached through its node's `Kubelet.PortForward`.
struct NodeDialer {
    namespace: String,
    pod: String,
    node: String,
    client: KubeletClient<Channel>,
}

impl PodDialer for NodeDialer {
    fn describe(&self) -> String {
        format!("pod {}/{} on node {}", self.namespace, self.pod, self.node)
    }

    fn dial(&self, port: u16, inputs: PodInputs) -> BoxFuture<'static, Result<PodOutput, Status>> {
        let start = PortForwardInput::start(PortForwardRequest {
            namespace: self.namespace.clone(),
            pod: self.pod.clone(),
            port: u32::from(port),
        });
        let outbound = futures::stream::iter([start]).chain(inputs);
        call_node(self.client.clone(), outbound).boxed()
    }
}

async fn call_node(
    mut client: KubeletClient<Channel>,
    outbound: futures::stream::Chain<
        futures::stream::Iter<std::array::IntoIter<PortForwardInput, 1>>,
        PodInputs,
    >,
) -> Result<PodOutput, Status> {
    let answer = client.port_forward(outbound).await?.into_inner();
    Ok(answer.map(bytes_of).boxed())
}

fn bytes_of(output: Result<PortForwardOutput, Status>) -> Result<Bytes, Status> {
    output.map(|output| Bytes::from(output.data))
}

/// Finds the pod's node, then upgrades the connection and serves the session.
pub async fn port_forward(
    registry: &Registry,
    mut parts: Parts,
    namespace: &str,
    name: &str,
) -> Result<Response, ApiError> {
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map_err(|_| {
            ApiError::bad_request(format!(
                "port-forward is served over WebSocket ({TUNNELLED_PROTOCOL}, kubectl 1.31 and \
                 later); a plain SPDY upgrade is not"
            ))
        })?
        .protocols([TUNNELLED_PROTOCOL]);
    if upgrade.selected_protocol().is_none() {
        return Err(ApiError::bad_request(format!(
            "no port-forward protocol in common: this server speaks {TUNNELLED_PROTOCOL}"
        )));
    }
    let (client, node) = whole_pod_node(registry, namespace, name).await?;
    let dialer = Arc::new(NodeDialer {
        namespace: namespace.to_owned(),
        pod: name.to_owned(),
        node,
        client,
    });
    let stopped = registry.stopped();
    Ok(upgrade.on_upgrade(move |socket| async move {
        // A master that stops ends the session, and its forwards with it.
        tokio::select! {
            () = over_websocket(socket, dialer) => {}
            () = stopped => {}
        }
    }))
}

/// The session's bytes in the socket's binary messages, both ways.
async fn over_websocket(socket: WebSocket, dialer: Arc<dyn PodDialer>) {
    let (mut sink, incoming) = socket.split();
    let incoming = incoming
        .take_while(|message| {
            std::future::ready(matches!(message, Ok(m) if !matches!(m, Message::Close(_))))
        })
        .filter_map(|message| async move {
            match message {
                Ok(Message::Binary(bytes)) => Some(bytes),
                _ => None,
            }
        });
    let (outgoing, mut to_send) = mpsc::channel::<Bytes>(16);
    let send = async move {
        while let Some(bytes) = to_send.recv().await {
            if sink.send(Message::Binary(bytes)).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    };
    tokio::join!(
        spdy_session::serve(Box::pin(incoming), outgoing, dialer),
        send
    );
}
