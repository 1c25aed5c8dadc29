use std::sync::Mutex;

use futures::FutureExt;
use rudder_proto::node::port_forward_input::Input;

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
    let now = Instant::now();
    let mut pairs = Pairs::default();
    assert_eq!(pairs.add(1, ask(StreamKind::Error, 80, "0"), now), Ok(None));
    assert_eq!(pairs.add(5, ask(StreamKind::Error, 81, "1"), now), Ok(None));
    assert_eq!(
        pairs.add(3, ask(StreamKind::Data, 80, "0"), now),
        Ok(Some(Pair {
            error_stream: 1,
            data_stream: 3,
            port: 80
        }))
    );
    assert_eq!(pairs.add(7, ask(StreamKind::Data, 82, "2"), now), Ok(None));
    assert_eq!(
        pairs.add(9, ask(StreamKind::Error, 82, "2"), now),
        Ok(Some(Pair {
            error_stream: 9,
            data_stream: 7,
            port: 82
        }))
    );
    // Request 0 is done: a new stream for it waits again.
    assert_eq!(pairs.add(11, ask(StreamKind::Data, 80, "0"), now), Ok(None));
}

#[test]
fn streams_that_cannot_pair_are_refused_saying_why() {
    let now = Instant::now();
    let mut pairs = Pairs::default();
    pairs.add(1, ask(StreamKind::Error, 80, "0"), now).unwrap();
    let twice = pairs
        .add(3, ask(StreamKind::Error, 80, "0"), now)
        .unwrap_err();
    assert!(twice.contains("two Error streams"), "{twice}");
    let ports = pairs
        .add(3, ask(StreamKind::Data, 81, "0"), now)
        .unwrap_err();
    assert!(ports.contains("80 and 81"), "{ports}");
    for request in 1..MAX_WAITING {
        let request = request.to_string();
        pairs
            .add(1, ask(StreamKind::Error, 80, &request), now)
            .unwrap();
    }
    let full = pairs
        .add(1, ask(StreamKind::Error, 80, "x"), now)
        .unwrap_err();
    assert!(full.contains("waiting"), "{full}");
}

#[test]
fn a_half_pair_expires_after_the_timeout_or_goes_when_reset() {
    let start = Instant::now();
    let mut pairs = Pairs::default();
    pairs
        .add(1, ask(StreamKind::Error, 80, "0"), start)
        .unwrap();
    pairs.add(5, ask(StreamKind::Data, 80, "1"), start).unwrap();
    let later = start + PAIR_TIMEOUT / 2;
    pairs.add(9, ask(StreamKind::Data, 80, "2"), later).unwrap();
    assert_eq!(pairs.expire(later), vec![]);
    pairs.forget(5);
    assert_eq!(
        pairs.expire(start + PAIR_TIMEOUT),
        vec![(StreamKind::Error, 1)]
    );
    assert_eq!(
        pairs.expire(later + PAIR_TIMEOUT),
        vec![(StreamKind::Data, 9)]
    );
}

/// How a fake pod answers a connection.
#[derive(Clone, Copy)]
enum Pod {
    /// Sends back what it is sent; ends once the client's side is closed.
    Echo,
    /// Nothing listens.
    Refuses,
    /// Accepts, and never reads nor writes.
    Stalls,
}

/// A fake node: dials `Pod`, and counts the connections still open (their outputs not
/// dropped), so a test sees that the session let go of them.
struct FakeDialer {
    pod: Pod,
    open: Arc<Mutex<usize>>,
}

struct OpenGuard(Arc<Mutex<usize>>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        *self.0.lock().unwrap() -= 1;
    }
}

impl PodDialer for FakeDialer {
    fn describe(&self) -> String {
        "pod ns/p on node n".to_owned()
    }

    fn dial(&self, _port: u16, inputs: PodInputs) -> BoxFuture<'static, Result<PodOutput, Status>> {
        let pod = self.pod;
        let open = self.open.clone();
        async move {
            if let Pod::Refuses = pod {
                return Err(Status::failed_precondition("Connection refused"));
            }
            *open.lock().unwrap() += 1;
            let guard = OpenGuard(open);
            let output: PodOutput = match pod {
                Pod::Echo => inputs
                    .take_while(|input| {
                        std::future::ready(!matches!(input.input, Some(Input::CloseWrite(_))))
                    })
                    .filter_map(|input| async move {
                        match input.input {
                            Some(Input::Data(data)) => Some(Ok(Bytes::from(data))),
                            _ => None,
                        }
                    })
                    .map(move |data| {
                        let _ = &guard;
                        data
                    })
                    .boxed(),
                _ => futures::stream::pending()
                    .map(move |data: Result<Bytes, Status>| {
                        let _ = (&guard, &inputs);
                        data
                    })
                    .boxed(),
            };
            Ok(output)
        }
        .boxed()
    }
}

/// The client's side of a session under test.
struct Client {
    encoder: Encoder,
    decoder: Decoder,
    to_session: Option<mpsc::Sender<Bytes>>,
    from_session: mpsc::Receiver<Bytes>,
    open: Arc<Mutex<usize>>,
    session: tokio::task::JoinHandle<()>,
}

impl Client {
    fn start(pod: Pod) -> Client {
        let (to_session, incoming) = mpsc::channel(64);
        let (outgoing, from_session) = mpsc::channel(64);
        let open = Arc::new(Mutex::new(0));
        let dialer = Arc::new(FakeDialer {
            pod,
            open: open.clone(),
        });
        let incoming = tokio_stream::wrappers::ReceiverStream::new(incoming);
        let session = tokio::spawn(serve(incoming, outgoing, dialer));
        Client {
            encoder: Encoder::default(),
            decoder: Decoder::default(),
            to_session: Some(to_session),
            from_session,
            open,
            session,
        }
    }

    async fn send(&mut self, frame: Frame) {
        let mut bytes = BytesMut::new();
        self.encoder.encode(&frame, &mut bytes);
        let to_session = self.to_session.as_ref().expect("not hung up");
        to_session.send(bytes.freeze()).await.unwrap();
    }

    /// Opens request `request`'s error and data streams (ids 4r+1, 4r+3) to `port`.
    async fn open_pair(&mut self, request: u32, port: u16) -> (u32, u32) {
        let (error, data) = (4 * request + 1, 4 * request + 3);
        for (stream, kind) in [(error, "error"), (data, "data")] {
            let port = port.to_string();
            let request = request.to_string();
            let headers = headers(&[
                ("streamtype", kind),
                ("port", &port),
                ("requestid", &request),
            ]);
            self.send(Frame::SynStream {
                stream,
                fin: kind == "error",
                headers,
            })
            .await;
        }
        (error, data)
    }

    /// The session's next frame; `None` once it ended.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.decoder.next_frame().unwrap() {
                return Some(frame);
            }
            let bytes = tokio::time::timeout(Duration::from_secs(10), self.from_session.recv())
                .await
                .expect("the session answers within 10 s")?;
            self.decoder.extend(&bytes);
        }
    }

    /// Frames until `done` holds of the last one.
    async fn until(&mut self, done: impl Fn(&Frame) -> bool) -> Vec<Frame> {
        let mut seen = Vec::new();
        loop {
            let frame = self
                .next()
                .await
                .unwrap_or_else(|| panic!("ended: {seen:?}"));
            let last = done(&frame);
            seen.push(frame);
            if last {
                return seen;
            }
        }
    }

    fn open_connections(&self) -> usize {
        *self.open.lock().unwrap()
    }

    /// Waits until `count` connections are open (dials and aborts run on other tasks).
    async fn until_open(&self, count: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.open_connections() != count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} connections open, not {count}",
                self.open_connections()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn fin_on(stream: u32) -> impl Fn(&Frame) -> bool {
    move |frame| matches!(frame, Frame::Data { stream: s, fin: true, .. } if *s == stream)
}

fn data_on(stream: u32, frames: &[Frame]) -> Vec<u8> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            Frame::Data {
                stream: s, data, ..
            } if *s == stream => Some(data.to_vec()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[tokio::test]
async fn a_connection_carries_bytes_both_ways_and_ends_with_fin_on_both_streams() {
    let mut client = Client::start(Pod::Echo);
    let (error, data) = client.open_pair(0, 8080).await;
    let replies = client
        .until(|f| matches!(f, Frame::SynReply { stream: 3, .. }))
        .await;
    assert_eq!(
        replies,
        [1, 3].map(|stream| Frame::SynReply {
            stream,
            fin: false,
            headers: Headers::new()
        })
    );
    // More than one message to the node holds, in one frame.
    let sent: Vec<u8> = (0..(3 * INPUT_PIECE + 7)).map(|i| i as u8).collect();
    client
        .send(Frame::Data {
            stream: data,
            fin: true,
            data: Bytes::from(sent.clone()),
        })
        .await;
    let frames = client.until(fin_on(error)).await;
    assert_eq!(data_on(data, &frames), sent);
    assert!(data_on(error, &frames).is_empty(), "{frames:?}");
    assert!(frames.iter().any(fin_on(data)));
    client.until_open(0).await;
}

#[tokio::test]
async fn a_refused_connection_says_why_on_its_error_stream() {
    let mut client = Client::start(Pod::Refuses);
    let (error, data) = client.open_pair(0, 9999).await;
    let frames = client.until(fin_on(error)).await;
    let said = String::from_utf8(data_on(error, &frames)).unwrap();
    assert_eq!(
        said,
        "error forwarding port 9999 to pod ns/p on node n: Connection refused"
    );
    assert!(frames.iter().any(fin_on(data)));
    // The session goes on: a ping is answered.
    client.send(Frame::Ping { id: 1 }).await;
    client.until(|f| *f == Frame::Ping { id: 1 }).await;
}

#[tokio::test]
async fn a_pod_that_stops_reading_loses_its_connection_not_the_session() {
    let mut client = Client::start(Pod::Stalls);
    let (error, data) = client.open_pair(0, 80).await;
    client
        .until(|f| matches!(f, Frame::SynReply { stream: 3, .. }))
        .await;
    let chunk = Bytes::from(vec![0u8; 1024 * 1024]);
    for _ in 0..=MAX_QUEUED / chunk.len() {
        let frame = Frame::Data {
            stream: data,
            fin: false,
            data: chunk.clone(),
        };
        client.send(frame).await;
    }
    let frames = client
        .until(|f| matches!(f, Frame::RstStream { stream, .. } if *stream == data))
        .await;
    let said = String::from_utf8(data_on(error, &frames)).unwrap();
    assert!(said.contains("has not read the last 4 MiB"), "{said}");
    assert!(frames.iter().any(fin_on(error)));
    // The session still answers, and its next connection is served.
    client.send(Frame::Ping { id: 3 }).await;
    client.until(|f| *f == Frame::Ping { id: 3 }).await;
    client.open_pair(1, 80).await;
    client
        .until(|f| matches!(f, Frame::SynReply { stream: 7, .. }))
        .await;
    // Only the new connection is open: the stalled one was let go.
    client.until_open(1).await;
}

#[tokio::test]
async fn a_reset_stream_lets_its_connection_go() {
    let mut client = Client::start(Pod::Stalls);
    let (_, data) = client.open_pair(0, 80).await;
    client
        .until(|f| matches!(f, Frame::SynReply { stream: 3, .. }))
        .await;
    client.until_open(1).await;
    client
        .send(Frame::RstStream {
            stream: data,
            status: spdy::CANCEL,
        })
        .await;
    client.until_open(0).await;
}

#[tokio::test]
async fn a_client_that_hangs_up_ends_the_session_and_its_connections() {
    let mut client = Client::start(Pod::Stalls);
    client.open_pair(0, 80).await;
    client.open_pair(1, 81).await;
    client
        .until(|f| matches!(f, Frame::SynReply { stream: 7, .. }))
        .await;
    client.until_open(2).await;
    client.to_session = None;
    assert_eq!(client.next().await, None, "the session ends");
    (&mut client.session).await.unwrap();
    client.until_open(0).await;
}

#[tokio::test]
async fn a_misnumbered_stream_or_broken_bytes_end_the_session_with_goaway() {
    let mut client = Client::start(Pod::Echo);
    client.open_pair(0, 80).await;
    // Stream 3 again.
    let again = headers(&[("streamtype", "data"), ("port", "80"), ("requestid", "9")]);
    client
        .send(Frame::SynStream {
            stream: 3,
            fin: false,
            headers: again,
        })
        .await;
    let frames = client.until(|f| matches!(f, Frame::GoAway { .. })).await;
    assert_eq!(
        frames.last(),
        Some(&Frame::GoAway {
            last_good_stream: 3,
            status: spdy::PROTOCOL_ERROR
        })
    );
    assert_eq!(client.next().await, None);

    let mut broken = Client::start(Pod::Echo);
    let to_session = broken.to_session.as_ref().unwrap();
    to_session
        .send(Bytes::from_static(&[0x80, 2, 0, 1, 0, 0, 0, 0]))
        .await
        .unwrap();
    assert!(matches!(broken.next().await, Some(Frame::GoAway { .. })));
    assert_eq!(broken.next().await, None);
}

#[tokio::test]
async fn a_stream_that_cannot_pair_is_refused_and_a_data_stream_opened_with_fin_closes_at_once() {
    let mut client = Client::start(Pod::Echo);
    let no_kind = headers(&[("port", "80"), ("requestid", "0")]);
    client
        .send(Frame::SynStream {
            stream: 1,
            fin: false,
            headers: no_kind,
        })
        .await;
    assert_eq!(
        client.next().await,
        Some(Frame::RstStream {
            stream: 1,
            status: spdy::REFUSED_STREAM
        })
    );
    // A data stream opened with FIN: the pod reads its end at once (the echo ends).
    for (stream, kind) in [(3, "error"), (5, "data")] {
        let headers = headers(&[("streamtype", kind), ("port", "80"), ("requestid", "1")]);
        client
            .send(Frame::SynStream {
                stream,
                fin: true,
                headers,
            })
            .await;
    }
    let frames = client.until(fin_on(3)).await;
    assert!(frames.iter().any(fin_on(5)), "{frames:?}");
}
