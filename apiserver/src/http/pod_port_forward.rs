//! `pods/NAME/portforward`, the way kubectl 1.31+ runs `kubectl port-forward`: SPDY/3.1
//! (spdy.rs) tunnelled over a WebSocket whose protocol is `SPDY/3.1+portforward.k8s.io`,
//! each binary message a piece of the SPDY byte stream.
//!
//! ```text
//!  client                              API server                      pod's node
//!  SYN_STREAM streamtype=error ──────► SYN_REPLY
//!  SYN_STREAM streamtype=data  ──────► SYN_REPLY; the pair is whole ─► PortForward(port)
//!  DATA on the data stream     ──────► ───────────────────────────────► the connection
//!  DATA on the data stream     ◄────── ◄─────────────────────────────── what it answers
//!  FIN on the data stream      ──────► close_write ───────────────────► shut its writing
//!  FIN on both streams         ◄────── the connection ended (a failure is written on the
//!                                      error stream first, which kubectl prints)
//! ```
//!
//! Each local connection kubectl accepts is one pair of streams with one `requestid`; the
//! node connects inside the pod's network namespace, so a server on the pod's localhost is
//! reached too. A plain SPDY upgrade (what kubectl falls back to when the WebSocket is
//! refused) is not served: kubectl 1.31 and later never need it.

use std::collections::HashMap;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::FromRequestParts;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use http::request::Parts;
use rudder_proto::node::kubelet_client::KubeletClient;
use rudder_proto::node::{PortForwardInput, PortForwardRequest};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::spdy::{self, Decoder, Encoder, Frame, Headers};
use crate::error::ApiError;
use crate::pod_node::whole_pod_node;
use crate::registry::Registry;

/// The WebSocket protocol served: port-forward's SPDY protocol, tunnelled.
pub const TUNNELLED_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// The most pairs of streams a session may hold half-made (a client sends the error
/// stream and then at once the data stream).
const MAX_WAITING: usize = 128;

/// Which of a pair a stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// Carries the node's failure to the client, then ends.
    Error,
    /// Carries the connection's bytes both ways.
    Data,
}

/// What a client's new stream asks for (from its headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAsk {
    pub kind: StreamKind,
    pub port: u16,
    /// Pairs a data stream with its error stream.
    pub request: String,
}

/// Reads a new stream's headers (pure). A client too old to send `requestid` gets the pair
/// kubelet derives for it: an error stream's own id, and a data stream's id less 2 (its
/// streams come in order, error first).
pub fn stream_ask(stream: u32, headers: &Headers) -> Result<StreamAsk, String> {
    let kind = match spdy::header(headers, "streamtype") {
        Some("error") => StreamKind::Error,
        Some("data") => StreamKind::Data,
        Some(other) => return Err(format!("stream type {other:?} is not error or data")),
        None => return Err("the stream has no streamType header".to_owned()),
    };
    let port = spdy::header(headers, "port").ok_or("the stream has no port header")?;
    let port = match port.parse::<u16>() {
        Ok(0) | Err(_) => return Err(format!("port {port:?} is not a port (1 to 65535)")),
        Ok(port) => port,
    };
    let request = match spdy::header(headers, "requestid") {
        Some(request) if !request.is_empty() => request.to_owned(),
        _ if kind == StreamKind::Error => stream.to_string(),
        _ => stream.saturating_sub(2).to_string(),
    };
    Ok(StreamAsk {
        kind,
        port,
        request,
    })
}

/// An error stream and a data stream of one request: one connection to forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    pub error_stream: u32,
    pub data_stream: u32,
    pub port: u16,
}

/// The streams waiting for their other half, by request (pure).
#[derive(Debug, Default)]
pub struct Pairs {
    waiting: HashMap<String, (StreamKind, u32, u16)>,
}

impl Pairs {
    /// Adds a new stream: the pair once both halves came, `None` while one waits, and an
    /// error (the new stream is refused) when it cannot pair.
    pub fn add(&mut self, stream: u32, ask: StreamAsk) -> Result<Option<Pair>, String> {
        let Some(&(kind, other, port)) = self.waiting.get(&ask.request) else {
            if self.waiting.len() >= MAX_WAITING {
                return Err(format!(
                    "{MAX_WAITING} connections are waiting for their second stream already"
                ));
            }
            self.waiting
                .insert(ask.request, (ask.kind, stream, ask.port));
            return Ok(None);
        };
        if kind == ask.kind {
            return Err(format!(
                "request {} has two {:?} streams",
                ask.request, ask.kind
            ));
        }
        if port != ask.port {
            return Err(format!(
                "request {}'s streams name two ports, {port} and {}",
                ask.request, ask.port
            ));
        }
        self.waiting.remove(&ask.request);
        let (error_stream, data_stream) = match kind {
            StreamKind::Error => (other, stream),
            StreamKind::Data => (stream, other),
        };
        Ok(Some(Pair {
            error_stream,
            data_stream,
            port,
        }))
    }
}

/// The pod the session forwards to, and its node.
#[derive(Clone)]
struct Target {
    namespace: String,
    pod: String,
    node: String,
    client: KubeletClient<Channel>,
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
    let target = Target {
        namespace: namespace.to_owned(),
        pod: name.to_owned(),
        node,
        client,
    };
    let stopped = registry.stopped();
    Ok(upgrade.on_upgrade(move |socket| async move {
        tokio::select! {
            () = session(socket, target) => {}
            () = stopped => {}
        }
    }))
}

/// A forward under way: where the client's bytes for it go, and its task.
struct Forward {
    input: Option<mpsc::Sender<PortForwardInput>>,
    task: JoinHandle<()>,
}

/// Serves one client's SPDY session until it hangs up, says GOAWAY or breaks the protocol;
/// its forwards end with it.
async fn session(socket: WebSocket, target: Target) {
    let (sink, mut incoming) = socket.split();
    let (frames, outgoing) = mpsc::channel::<Frame>(64);
    let writer = tokio::spawn(write_frames(sink, outgoing));
    let mut decoder = Decoder::default();
    let mut pairs = Pairs::default();
    let mut forwards: HashMap<u32, Forward> = HashMap::new();
    'session: while let Some(Ok(message)) = incoming.next().await {
        let bytes = match message {
            Message::Binary(bytes) => bytes,
            Message::Close(_) => break,
            _ => continue,
        };
        decoder.extend(&bytes);
        loop {
            let frame = match decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(%error, "a port-forward client broke the SPDY protocol");
                    let _ = frames
                        .send(Frame::GoAway {
                            last_good_stream: 0,
                            status: spdy::PROTOCOL_ERROR,
                        })
                        .await;
                    break 'session;
                }
            };
            let go_on = serve_frame(frame, &target, &frames, &mut pairs, &mut forwards).await;
            if !go_on {
                break 'session;
            }
        }
    }
    for (_, forward) in forwards {
        forward.task.abort();
    }
    drop(frames);
    let _ = writer.await;
}

/// Acts on one frame from the client; false ends the session.
async fn serve_frame(
    frame: Frame,
    target: &Target,
    frames: &mpsc::Sender<Frame>,
    pairs: &mut Pairs,
    forwards: &mut HashMap<u32, Forward>,
) -> bool {
    match frame {
        Frame::SynStream {
            stream, headers, ..
        } => {
            let paired = stream_ask(stream, &headers).and_then(|ask| pairs.add(stream, ask));
            let reply = match &paired {
                Ok(_) => Frame::SynReply {
                    stream,
                    fin: false,
                    headers: Headers::new(),
                },
                Err(reason) => {
                    tracing::debug!(stream, %reason, "a port-forward stream refused");
                    Frame::RstStream {
                        stream,
                        status: spdy::REFUSED_STREAM,
                    }
                }
            };
            if frames.send(reply).await.is_err() {
                return false;
            }
            if let Ok(Some(pair)) = paired {
                let (input, inputs) = mpsc::channel(16);
                let task = tokio::spawn(forward(target.clone(), pair, inputs, frames.clone()));
                let input = Some(input);
                forwards.insert(pair.data_stream, Forward { input, task });
            }
        }
        Frame::Data { stream, fin, data } => {
            // Data on an error stream, or on one already ended, goes nowhere: the client
            // writes nothing there but its FIN.
            let Some(forward) = forwards.get_mut(&stream) else {
                return true;
            };
            if let Some(input) = &forward.input {
                let mut delivered = true;
                if !data.is_empty() {
                    delivered = input
                        .send(PortForwardInput::data(data.to_vec()))
                        .await
                        .is_ok();
                }
                if fin && delivered {
                    let _ = input.send(PortForwardInput::close_write()).await;
                }
                if fin || !delivered {
                    forward.input = None;
                }
            }
        }
        Frame::RstStream { stream, .. } => {
            if let Some(forward) = forwards.remove(&stream) {
                forward.task.abort();
            }
        }
        Frame::Ping { id } => return frames.send(Frame::Ping { id }).await.is_ok(),
        Frame::GoAway { .. } => return false,
        Frame::SynReply { .. } | Frame::Headers { .. } | Frame::Ignored { .. } => {}
    }
    true
}

/// One connection: the node connects to the pod's port; bytes flow both ways until it
/// ends. Then both streams get their FIN, the error stream after the failure if any.
async fn forward(
    mut target: Target,
    pair: Pair,
    inputs: mpsc::Receiver<PortForwardInput>,
    frames: mpsc::Sender<Frame>,
) {
    let start = PortForwardInput::start(PortForwardRequest {
        namespace: target.namespace.clone(),
        pod: target.pod.clone(),
        port: u32::from(pair.port),
    });
    let outbound = futures::stream::once(async { start }).chain(ReceiverStream::new(inputs));
    let failure = match target.client.port_forward(outbound).await {
        Err(status) => Some(status),
        Ok(answer) => {
            let mut answer = answer.into_inner();
            loop {
                match answer.message().await {
                    Ok(Some(output)) => {
                        let data = Frame::Data {
                            stream: pair.data_stream,
                            fin: false,
                            data: Bytes::from(output.data),
                        };
                        if frames.send(data).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => break None,
                    Err(status) => break Some(status),
                }
            }
        }
    };
    let mut ending = Vec::new();
    if let Some(status) = failure {
        let message = format!(
            "error forwarding port {} to pod {}/{} on node {}: {}",
            pair.port,
            target.namespace,
            target.pod,
            target.node,
            status.message()
        );
        ending.push(Frame::Data {
            stream: pair.error_stream,
            fin: false,
            data: Bytes::from(message),
        });
    }
    for stream in [pair.data_stream, pair.error_stream] {
        ending.push(Frame::Data {
            stream,
            fin: true,
            data: Bytes::new(),
        });
    }
    for frame in ending {
        if frames.send(frame).await.is_err() {
            return;
        }
    }
}

/// Encodes the session's frames in the order they are sent (the header compression is one
/// stream) and sends each as a binary message.
async fn write_frames(
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    mut outgoing: mpsc::Receiver<Frame>,
) {
    let mut encoder = Encoder::default();
    while let Some(frame) = outgoing.recv().await {
        let mut bytes = BytesMut::new();
        encoder.encode(&frame, &mut bytes);
        if sink.send(Message::Binary(bytes.freeze())).await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    fn ask(kind: StreamKind, port: u16, request: &str) -> StreamAsk {
        StreamAsk {
            kind,
            port,
            request: request.to_owned(),
        }
    }

    #[test]
    fn a_stream_asks_for_its_kind_port_and_request() {
        let data = headers(&[("streamtype", "data"), ("port", "8080"), ("requestid", "4")]);
        assert_eq!(stream_ask(9, &data), Ok(ask(StreamKind::Data, 8080, "4")));
        // An old client without requestid: error streams pair with the data stream after.
        let old_error = headers(&[("streamtype", "error"), ("port", "80")]);
        let old_data = headers(&[("streamtype", "data"), ("port", "80")]);
        assert_eq!(stream_ask(1, &old_error).unwrap().request, "1");
        assert_eq!(stream_ask(3, &old_data).unwrap().request, "1");
        for (bad, says) in [
            (headers(&[("port", "80")]), "no streamType"),
            (headers(&[("streamtype", "ctl"), ("port", "80")]), "\"ctl\""),
            (headers(&[("streamtype", "data")]), "no port"),
            (headers(&[("streamtype", "data"), ("port", "0")]), "\"0\""),
            (
                headers(&[("streamtype", "data"), ("port", "70000")]),
                "1 to 65535",
            ),
        ] {
            let error = stream_ask(1, &bad).unwrap_err();
            assert!(error.contains(says), "{error}");
        }
    }

    #[test]
    fn streams_pair_by_request_in_either_order() {
        let mut pairs = Pairs::default();
        assert_eq!(pairs.add(1, ask(StreamKind::Error, 80, "0")), Ok(None));
        assert_eq!(pairs.add(5, ask(StreamKind::Error, 81, "1")), Ok(None));
        assert_eq!(
            pairs.add(3, ask(StreamKind::Data, 80, "0")),
            Ok(Some(Pair {
                error_stream: 1,
                data_stream: 3,
                port: 80
            }))
        );
        assert_eq!(pairs.add(7, ask(StreamKind::Data, 82, "2")), Ok(None));
        assert_eq!(
            pairs.add(9, ask(StreamKind::Error, 82, "2")),
            Ok(Some(Pair {
                error_stream: 9,
                data_stream: 7,
                port: 82
            }))
        );
        // Request 0 is done: a new stream for it waits again.
        assert_eq!(pairs.add(11, ask(StreamKind::Data, 80, "0")), Ok(None));
    }

    #[test]
    fn streams_that_cannot_pair_are_refused_saying_why() {
        let mut pairs = Pairs::default();
        pairs.add(1, ask(StreamKind::Error, 80, "0")).unwrap();
        let twice = pairs.add(3, ask(StreamKind::Error, 80, "0")).unwrap_err();
        assert!(twice.contains("two Error streams"), "{twice}");
        let ports = pairs.add(3, ask(StreamKind::Data, 81, "0")).unwrap_err();
        assert!(ports.contains("80 and 81"), "{ports}");
        for request in 1..MAX_WAITING {
            let request = request.to_string();
            pairs.add(1, ask(StreamKind::Error, 80, &request)).unwrap();
        }
        let full = pairs.add(1, ask(StreamKind::Error, 80, "x")).unwrap_err();
        assert!(full.contains("waiting"), "{full}");
    }
}
