//! One client's port-forward session over SPDY (spdy.rs), whatever carries its bytes
//! (pod_port_forward.rs: a WebSocket) and whatever reaches the pod (a [`PodDialer`]: the
//! pod's node).
//!
//! ```text
//!  client bytes ─► read loop: frames ─► SYN_STREAM: pair (Pairs, pure) ─► SYN_REPLY
//!                     │                   a whole pair ─► forward task ─► dialer
//!                     │                DATA ─► the pair's queue (never awaited: a pod that
//!                     │                        stops reading loses its stream, not the session)
//!                     │                RST, PING, GOAWAY, FIN (DATA, HEADERS, SYN_STREAM)
//!                     ▼
//!  control frames (bounded; full = the client stopped reading) ┐
//!  forwards' data frames (bounded; full = back-pressure to pods) ┴► writer: encode ─► bytes
//! ```
//!
//! The session ends when the client hangs up, says GOAWAY or breaks the protocol; its
//! forwards (and their connections to the pod) end with it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use rudder_proto::node::PortForwardInput;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tonic::Status;

use super::spdy::{self, Decoder, Encoder, Frame, Headers};

/// The most a session holds for one connection that its pod has not taken yet; past it, the
/// connection is dropped (SPDY as spdystream speaks it has no flow control to slow the
/// client with).
pub const MAX_QUEUED: usize = 4 * 1024 * 1024;
/// The most a session holds of half-made pairs (a client sends an error stream, then at
/// once its data stream).
const MAX_WAITING: usize = 128;
/// How long a stream waits for the other of its pair (kubelet's stream creation timeout).
pub const PAIR_TIMEOUT: Duration = Duration::from_secs(30);
/// The control frames (replies, pings) a session holds for a client that is not reading.
const CONTROL_QUEUE: usize = 256;
/// The largest piece of the client's data sent on to the node in one message.
const INPUT_PIECE: usize = 256 * 1024;
/// How long the last frames may take to reach a client once the session ends.
const DRAIN: Duration = Duration::from_secs(5);

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

/// A stream waiting for the other of its pair.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    kind: StreamKind,
    stream: u32,
    port: u16,
    since: Instant,
}

/// The streams waiting for their other half, by request (pure: time is given).
#[derive(Debug, Default)]
pub struct Pairs {
    waiting: HashMap<String, Waiting>,
}

impl Pairs {
    /// Adds a new stream: the pair once both halves came, `None` while one waits, and an
    /// error (the new stream is refused) when it cannot pair.
    pub fn add(
        &mut self,
        stream: u32,
        ask: StreamAsk,
        now: Instant,
    ) -> Result<Option<Pair>, String> {
        let Some(&other) = self.waiting.get(&ask.request) else {
            if self.waiting.len() >= MAX_WAITING {
                return Err(format!(
                    "{MAX_WAITING} connections are waiting for their second stream already"
                ));
            }
            let waiting = Waiting {
                kind: ask.kind,
                stream,
                port: ask.port,
                since: now,
            };
            self.waiting.insert(ask.request, waiting);
            return Ok(None);
        };
        if other.kind == ask.kind {
            return Err(format!(
                "request {} has two {:?} streams",
                ask.request, ask.kind
            ));
        }
        if other.port != ask.port {
            return Err(format!(
                "request {}'s streams name two ports, {} and {}",
                ask.request, other.port, ask.port
            ));
        }
        self.waiting.remove(&ask.request);
        let (error_stream, data_stream) = match other.kind {
            StreamKind::Error => (other.stream, stream),
            StreamKind::Data => (stream, other.stream),
        };
        Ok(Some(Pair {
            error_stream,
            data_stream,
            port: other.port,
        }))
    }

    /// Takes out the streams that waited longer than [`PAIR_TIMEOUT`], with their kinds.
    pub fn expire(&mut self, now: Instant) -> Vec<(StreamKind, u32)> {
        let mut expired = Vec::new();
        self.waiting.retain(|_, waiting| {
            let keep = now.duration_since(waiting.since) < PAIR_TIMEOUT;
            if !keep {
                expired.push((waiting.kind, waiting.stream));
            }
            keep
        });
        expired.sort_by_key(|(_, stream)| *stream);
        expired
    }

    /// A waiting stream the client reset: it will never pair.
    pub fn forget(&mut self, stream: u32) {
        self.waiting.retain(|_, waiting| waiting.stream != stream);
    }
}

/// What the pod's side of one connection sends, until it ends (or fails, saying why).
pub type PodOutput = BoxStream<'static, Result<Bytes, Status>>;
/// What the client sends to one connection: data, then perhaps `close_write`; each taken
/// is counted off the connection's queue. (A named stream: a boxed one made the node
/// call's future one rustc cannot prove Send.)
pub struct PodInputs {
    inputs: mpsc::UnboundedReceiver<PortForwardInput>,
    queued: Arc<AtomicUsize>,
}

impl Stream for PodInputs {
    type Item = PortForwardInput;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<PortForwardInput>> {
        let polled = self.inputs.poll_recv(context);
        if let std::task::Poll::Ready(Some(input)) = &polled {
            self.queued
                .fetch_sub(input_length(input), Ordering::Relaxed);
        }
        polled
    }
}

/// Reaches one pod's ports (through its node).
pub trait PodDialer: Send + Sync + 'static {
    /// The pod and where it runs, for the errors written to the client
    /// ("pod default/kubia on node n1").
    fn describe(&self) -> String;
    /// One connection to `port`: `inputs` (data, then perhaps `close_write`) go to it.
    fn dial(&self, port: u16, inputs: PodInputs) -> BoxFuture<'static, Result<PodOutput, Status>>;
}

/// A forward under way.
struct Forward {
    error_stream: u32,
    port: u16,
    /// Where the client's data for it goes, until the client's FIN.
    input: Option<mpsc::UnboundedSender<PortForwardInput>>,
    /// Bytes given to `input` that the pod's side has not taken yet.
    queued: Arc<AtomicUsize>,
    task: AbortHandle,
}

/// Serves one session: `incoming` is the client's bytes (ending when it hangs up), and
/// the encoded frames for it go to `outgoing`.
pub async fn serve(
    incoming: impl Stream<Item = Bytes> + Unpin + Send,
    outgoing: mpsc::Sender<Bytes>,
    dialer: Arc<dyn PodDialer>,
) {
    let (control, control_frames) = mpsc::channel(CONTROL_QUEUE);
    let (data, data_frames) = mpsc::channel(64);
    let session = Session {
        dialer,
        control,
        data,
        pairs: Pairs::default(),
        last_stream: 0,
        opened_with_fin: HashSet::new(),
        forwards: HashMap::new(),
        tasks: JoinSet::new(),
    };
    let writer = write_frames(control_frames, data_frames, outgoing);
    tokio::pin!(writer);
    tokio::select! {
        // The client stopped taking bytes for good: nothing more can reach it.
        () = &mut writer => return,
        () = session.read(incoming) => {}
    }
    // The session (its forwards and its senders) is gone: the writer drains and ends.
    let _ = tokio::time::timeout(DRAIN, writer).await;
}

struct Session {
    dialer: Arc<dyn PodDialer>,
    control: mpsc::Sender<Frame>,
    data: mpsc::Sender<Frame>,
    pairs: Pairs,
    /// The highest stream id the client opened (its ids are odd and rise).
    last_stream: u32,
    /// Streams opened with FIN (they send nothing) whose pair is not whole yet.
    opened_with_fin: HashSet<u32>,
    /// By data stream.
    forwards: HashMap<u32, Forward>,
    /// The forwards' tasks (aborted when the session ends); each returns its data stream.
    tasks: JoinSet<u32>,
}

/// Whether the session goes on after a frame.
enum Next {
    GoOn,
    End,
}

impl Session {
    async fn read(mut self, mut incoming: impl Stream<Item = Bytes> + Unpin) {
        let mut decoder = Decoder::default();
        let mut expiry = tokio::time::interval(PAIR_TIMEOUT / 6);
        loop {
            tokio::select! {
                bytes = incoming.next() => {
                    let Some(bytes) = bytes else { return };
                    decoder.extend(&bytes);
                    loop {
                        let frame = match decoder.next_frame() {
                            Ok(Some(frame)) => frame,
                            Ok(None) => break,
                            Err(error) => {
                                tracing::debug!(%error, "a port-forward client broke SPDY");
                                self.go_away();
                                return;
                            }
                        };
                        if let Next::End = self.serve_frame(frame) {
                            return;
                        }
                    }
                }
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Ok(data_stream) = done {
                        self.forwards.remove(&data_stream);
                    }
                }
                _ = expiry.tick() => {
                    if let Next::End = self.expire_pairs() {
                        return;
                    }
                }
            }
        }
    }

    /// Queues a control frame; a client that leaves [`CONTROL_QUEUE`] of them unread has
    /// stopped reading, which ends the session.
    fn send_control(&self, frame: Frame) -> Next {
        match self.control.try_send(frame) {
            Ok(()) => Next::GoOn,
            Err(_) => Next::End,
        }
    }

    fn go_away(&self) {
        let _ = self.control.try_send(Frame::GoAway {
            last_good_stream: self.last_stream,
            status: spdy::PROTOCOL_ERROR,
        });
    }

    fn serve_frame(&mut self, frame: Frame) -> Next {
        match frame {
            Frame::SynStream {
                stream,
                fin,
                headers,
            } => self.open_stream(stream, fin, &headers),
            Frame::Data { stream, fin, data } => self.take_data(stream, fin, data),
            Frame::Headers { stream, fin, .. } if fin => self.take_data(stream, fin, Bytes::new()),
            Frame::RstStream { stream, .. } => {
                self.pairs.forget(stream);
                self.opened_with_fin.remove(&stream);
                if let Some(forward) = self.forwards.remove(&stream) {
                    forward.task.abort();
                }
                Next::GoOn
            }
            Frame::Ping { id } => self.send_control(Frame::Ping { id }),
            Frame::GoAway { .. } => Next::End,
            Frame::SynReply { .. } | Frame::Headers { .. } | Frame::Ignored { .. } => Next::GoOn,
        }
    }

    fn open_stream(&mut self, stream: u32, fin: bool, headers: &Headers) -> Next {
        // A client's streams are odd and each newer than the last (as spdystream checks).
        if stream.is_multiple_of(2) || stream <= self.last_stream {
            tracing::debug!(
                stream,
                "a port-forward client reused or misnumbered a stream"
            );
            self.go_away();
            return Next::End;
        }
        self.last_stream = stream;
        let paired =
            stream_ask(stream, headers).and_then(|ask| self.pairs.add(stream, ask, Instant::now()));
        let pair = match paired {
            Err(reason) => {
                tracing::debug!(stream, %reason, "a port-forward stream refused");
                return self.send_control(Frame::RstStream {
                    stream,
                    status: spdy::REFUSED_STREAM,
                });
            }
            Ok(pair) => pair,
        };
        let reply = Frame::SynReply {
            stream,
            fin: false,
            headers: Headers::new(),
        };
        if let Next::End = self.send_control(reply) {
            return Next::End;
        }
        if fin {
            self.opened_with_fin.insert(stream);
        }
        if let Some(pair) = pair {
            self.start_forward(pair);
        }
        Next::GoOn
    }

    fn start_forward(&mut self, pair: Pair) {
        let (input, inputs) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let inputs = PodInputs {
            inputs,
            queued: queued.clone(),
        };
        let dialing = self.dialer.dial(pair.port, inputs);
        let describe = self.dialer.describe();
        let data = self.data.clone();
        let task = self.tasks.spawn(async move {
            forward(dialing, describe, pair, data).await;
            pair.data_stream
        });
        self.opened_with_fin.remove(&pair.error_stream);
        let mut forward = Forward {
            error_stream: pair.error_stream,
            port: pair.port,
            input: Some(input),
            queued,
            task,
        };
        if self.opened_with_fin.remove(&pair.data_stream) {
            close_input(&mut forward);
        }
        self.forwards.insert(pair.data_stream, forward);
    }

    fn take_data(&mut self, stream: u32, fin: bool, data: Bytes) -> Next {
        // Data on an error stream, or on one already ended, goes nowhere: a client writes
        // nothing there but its FIN.
        let Some(forward) = self.forwards.get(&stream) else {
            return Next::GoOn;
        };
        if forward.input.is_none() {
            return Next::GoOn;
        }
        if forward.queued.load(Ordering::Relaxed) + data.len() > MAX_QUEUED {
            let forward = self.forwards.remove(&stream).expect("just found");
            return self.drop_stalled(stream, forward);
        }
        let forward = self.forwards.get_mut(&stream).expect("just found");
        let input = forward.input.as_ref().expect("just checked");
        for piece in data.chunks(INPUT_PIECE) {
            forward.queued.fetch_add(piece.len(), Ordering::Relaxed);
            // A forward that ended takes no more; its end is on its way to the client.
            let _ = input.send(PortForwardInput::data(piece.to_vec()));
        }
        if fin {
            close_input(forward);
        }
        Next::GoOn
    }

    /// A pod that does not read what its client sends: its connection is given up, saying
    /// so, and the session's other connections go on.
    fn drop_stalled(&mut self, data_stream: u32, forward: Forward) -> Next {
        forward.task.abort();
        let message = format!(
            "error forwarding port {} to {}: the pod has not read the last {} MiB sent to it; \
             the connection is dropped",
            forward.port,
            self.dialer.describe(),
            MAX_QUEUED / (1024 * 1024)
        );
        let frames = [
            Frame::Data {
                stream: forward.error_stream,
                fin: true,
                data: Bytes::from(message),
            },
            Frame::RstStream {
                stream: data_stream,
                status: spdy::CANCEL,
            },
        ];
        for frame in frames {
            if let Next::End = self.send_control(frame) {
                return Next::End;
            }
        }
        Next::GoOn
    }

    /// Gives up the streams whose pair never came (as kubelet does), telling the client on
    /// the error stream when that is the one waiting.
    fn expire_pairs(&mut self) -> Next {
        for (kind, stream) in self.pairs.expire(Instant::now()) {
            self.opened_with_fin.remove(&stream);
            let frame = match kind {
                StreamKind::Error => Frame::Data {
                    stream,
                    fin: true,
                    data: Bytes::from_static(b"timed out waiting for the data stream"),
                },
                StreamKind::Data => Frame::RstStream {
                    stream,
                    status: spdy::CANCEL,
                },
            };
            if let Next::End = self.send_control(frame) {
                return Next::End;
            }
        }
        Next::GoOn
    }
}

/// The client sends no more on this connection: the pod's side reads its end.
fn close_input(forward: &mut Forward) {
    if let Some(input) = forward.input.take() {
        let _ = input.send(PortForwardInput::close_write());
    }
}

fn input_length(input: &PortForwardInput) -> usize {
    match &input.input {
        Some(rudder_proto::node::port_forward_input::Input::Data(data)) => data.len(),
        _ => 0,
    }
}

/// One connection: dialled, then the pod's bytes go to the client until it ends; then both
/// streams get their FIN, the error stream after the failure, if any.
async fn forward(
    dialing: BoxFuture<'static, Result<PodOutput, Status>>,
    describe: String,
    pair: Pair,
    frames: mpsc::Sender<Frame>,
) {
    let failure = match dialing.await {
        Err(status) => Some(status),
        Ok(mut output) => loop {
            match output.next().await {
                Some(Ok(data)) => {
                    let data = Frame::Data {
                        stream: pair.data_stream,
                        fin: false,
                        data,
                    };
                    if frames.send(data).await.is_err() {
                        return;
                    }
                }
                None => break None,
                Some(Err(status)) => break Some(status),
            }
        },
    };
    let mut ending = Vec::new();
    if let Some(status) = failure {
        let message = format!(
            "error forwarding port {} to {describe}: {}",
            pair.port,
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

/// Encodes the frames in the order they are taken (the header compression is one stream),
/// control frames first, until the session and its forwards are gone or the client stops
/// taking bytes.
async fn write_frames(
    mut control: mpsc::Receiver<Frame>,
    mut data: mpsc::Receiver<Frame>,
    outgoing: mpsc::Sender<Bytes>,
) {
    let mut encoder = Encoder::default();
    loop {
        let frame = tokio::select! {
            biased;
            Some(frame) = control.recv() => frame,
            Some(frame) = data.recv() => frame,
            else => return,
        };
        let mut bytes = BytesMut::new();
        encoder.encode(&frame, &mut bytes);
        if outgoing.send(bytes.freeze()).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
#[path = "spdy_session_tests.rs"]
mod tests;
