use super::*;

/// The client's side: an HPACK encoder as a client keeps one per connection.
struct Client {
    encoder: Encoder<'static>,
}

impl Client {
    fn new() -> Self {
        Client {
            encoder: Encoder::new(),
        }
    }

    fn request(&mut self, authority: &str, path: &str) -> Vec<u8> {
        self.encoder.encode([
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":authority", authority.as_bytes()),
            (b":path", path.as_bytes()),
            (b"content-type", b"application/grpc"),
        ])
    }
}

fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    put_frame_header(&mut out, payload.len(), kind, flags, stream_id);
    out.put_slice(payload);
    out.to_vec()
}

/// `block` as a HEADERS frame and CONTINUATIONs of at most `size` bytes each.
fn header_frames(stream_id: u32, block: &[u8], size: usize) -> Vec<u8> {
    let chunks: Vec<&[u8]> = block.chunks(size).collect();
    let mut out = Vec::new();
    for (at, chunk) in chunks.iter().enumerate() {
        let kind = if at == 0 { HEADERS } else { CONTINUATION };
        let flags = if at + 1 == chunks.len() {
            END_HEADERS
        } else {
            0
        };
        out.extend(frame(kind, flags, stream_id, chunk));
    }
    out
}

const SETTINGS: u8 = 0x4;
const DATA: u8 = 0x0;

/// Runs `bytes` through a rewriter in pieces of `step` bytes, as a socket may deliver them.
fn run(bytes: &[u8], step: usize) -> (Vec<u8>, AuthorityRewriter) {
    let mut rewriter = AuthorityRewriter::default();
    let mut input = BytesMut::new();
    let mut output = BytesMut::new();
    for piece in bytes.chunks(step) {
        input.extend_from_slice(piece);
        rewriter.process(&mut input, &mut output).unwrap();
    }
    assert!(input.is_empty(), "whole frames are all passed on");
    (output.to_vec(), rewriter)
}

/// A frame as the server sees it: its type, its stream and, for a header block, its headers.
type ServerFrame = (u8, u32, Vec<(String, String)>);

/// Splits `bytes` (after the preface) into frames, decoding each header block with the
/// server's HPACK decoder, as h2 would.
fn server_view(bytes: &[u8]) -> Vec<ServerFrame> {
    assert!(bytes.starts_with(PREFACE));
    let mut rest = &bytes[PREFACE.len()..];
    let mut decoder = Decoder::new();
    let mut frames = Vec::new();
    let mut block = Vec::new();
    while !rest.is_empty() {
        let length = complete_frame_len(rest).expect("whole frames");
        let (kind, flags) = (rest[3], rest[4]);
        let stream_id = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]);
        let (_, fragment) = if kind == HEADERS {
            headers_payload(flags, &rest[FRAME_HEADER_LEN..length]).unwrap()
        } else {
            (None, &rest[FRAME_HEADER_LEN..length])
        };
        if kind == HEADERS || kind == CONTINUATION {
            block.extend_from_slice(fragment);
            if flags & END_HEADERS != 0 {
                let headers = decoder.decode(&block).expect("the server decodes it");
                let headers = headers
                    .into_iter()
                    .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
                    .collect();
                frames.push((HEADERS, stream_id, headers));
                block.clear();
            }
        } else {
            frames.push((kind, stream_id, Vec::new()));
        }
        rest = &rest[length..];
    }
    frames
}

fn authority_of(headers: &[(String, String)]) -> &str {
    &headers.iter().find(|(n, _)| n == ":authority").unwrap().1
}

#[test]
fn a_plain_authority_passes_through_byte_for_byte_and_stops_being_read() {
    let mut client = Client::new();
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(SETTINGS, 0, 0, &[]));
    bytes.extend(frame(
        HEADERS,
        END_HEADERS,
        1,
        &client.request("127.0.0.1:2379", "/etcdserverpb.KV/Range"),
    ));
    bytes.extend(frame(DATA, END_STREAM, 1, b"\0\0\0\0\0"));
    for step in [1, 7, 4096] {
        let (out, rewriter) = run(&bytes, step);
        assert_eq!(out, bytes);
        assert!(rewriter.is_passthrough());
    }
}

#[test]
fn http_1_passes_through_at_its_first_byte() {
    let request = b"GET /version HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n";
    let (out, rewriter) = run(request, 1);
    assert_eq!(out, request);
    assert!(rewriter.is_passthrough());
}

#[test]
fn every_request_of_a_connection_that_names_a_scheme_loses_it_and_the_rest_stays() {
    let mut client = Client::new();
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(SETTINGS, 0, 0, &[]));
    for (stream, path) in [
        (1, "/etcdserverpb.Maintenance/Status"),
        (3, "/a"),
        (5, "/b"),
    ] {
        let block = client.request("http://127.0.0.1:2379", path);
        bytes.extend(frame(HEADERS, END_HEADERS, stream, &block));
        bytes.extend(frame(DATA, END_STREAM, stream, b"\0\0\0\0\0"));
    }
    for step in [1, 13, 65536] {
        let (out, rewriter) = run(&bytes, step);
        assert!(!rewriter.is_passthrough());
        let frames = server_view(&out);
        let requests: Vec<_> = frames
            .iter()
            .filter(|(kind, ..)| *kind == HEADERS)
            .collect();
        assert_eq!(requests.len(), 3);
        for ((_, stream, headers), (want_stream, want_path)) in requests.iter().zip([
            (1, "/etcdserverpb.Maintenance/Status"),
            (3, "/a"),
            (5, "/b"),
        ]) {
            assert_eq!(*stream, want_stream);
            assert_eq!(authority_of(headers), "127.0.0.1:2379");
            let path = &headers.iter().find(|(n, _)| n == ":path").unwrap().1;
            assert_eq!(path, want_path);
            assert_eq!(headers.len(), 5, "no header lost: {headers:?}");
        }
        let kinds: Vec<u8> = frames.iter().map(|(kind, ..)| *kind).collect();
        assert_eq!(
            kinds,
            [SETTINGS, HEADERS, DATA, HEADERS, DATA, HEADERS, DATA],
            "the other frames pass in order"
        );
    }
}

#[test]
fn a_block_split_over_continuations_padded_and_prioritised_is_rewritten_whole() {
    let mut client = Client::new();
    let block = client.request("https://master-0:6443", "/x");
    let (head, tail) = block.split_at(block.len() / 2);
    // HEADERS with padding and priority, the rest in a CONTINUATION.
    let mut payload = vec![3u8];
    payload.extend([0x80, 0, 0, 0, 15]);
    payload.extend_from_slice(head);
    payload.extend([0, 0, 0]);
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(HEADERS, PADDED | PRIORITY | END_STREAM, 7, &payload));
    bytes.extend(frame(CONTINUATION, END_HEADERS, 7, tail));
    let (out, _) = run(&bytes, 5);
    let rest = &out[PREFACE.len()..];
    let (kind, flags) = (rest[3], rest[4]);
    assert_eq!(kind, HEADERS);
    assert_eq!(flags, PRIORITY | END_STREAM | END_HEADERS);
    assert_eq!(
        &rest[FRAME_HEADER_LEN..FRAME_HEADER_LEN + 5],
        [0x80, 0, 0, 0, 15]
    );
    let frames = server_view(&out);
    assert_eq!(authority_of(&frames[0].2), "master-0:6443");
}

#[test]
fn a_long_rewritten_block_is_cut_into_continuations_the_server_reassembles() {
    let mut client = Client::new();
    let long = "v".repeat(40_000);
    let block = client.encoder.encode([
        (&b":method"[..], &b"POST"[..]),
        (b":authority", b"http://h:1"),
        (b"x-long", long.as_bytes()),
    ]);
    let mut bytes = PREFACE.to_vec();
    bytes.extend(header_frames(1, &block, MAX_FRAME_PAYLOAD));
    let (out, _) = run(&bytes, 4096);
    let frames = server_view(&out);
    assert_eq!(frames.len(), 1);
    assert_eq!(authority_of(&frames[0].2), "h:1");
    assert_eq!(frames[0].2[2].1.len(), 40_000);
}

#[test]
fn what_is_not_http_2_is_left_for_h2_to_refuse() {
    // A CONTINUATION of another stream in the middle of a block: passed on as it came.
    let mut client = Client::new();
    let block = client.request("http://h:1", "/");
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(HEADERS, 0, 1, &block));
    bytes.extend(frame(CONTINUATION, END_HEADERS, 3, &[]));
    let (out, rewriter) = run(&bytes, 3);
    assert_eq!(out, bytes);
    assert!(rewriter.is_passthrough());
    // Bad HPACK likewise.
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(
        HEADERS,
        END_HEADERS,
        1,
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    ));
    let (out, _) = run(&bytes, 64);
    assert_eq!(out, bytes);
}

#[test]
fn only_a_scheme_is_taken_off() {
    let strip = |value: &str| {
        String::from_utf8(authority_without_scheme(b":authority", value.as_bytes()).to_vec())
            .unwrap()
    };
    assert_eq!(strip("http://127.0.0.1:2379"), "127.0.0.1:2379");
    assert_eq!(strip("unix://sock"), "sock");
    assert_eq!(strip("127.0.0.1:2379"), "127.0.0.1:2379");
    assert_eq!(strip("://x"), "://x");
    assert_eq!(strip("a/b://c"), "a/b://c");
    assert_eq!(strip("unix+tcp://h:1"), "h:1");
    assert_eq!(strip("1x://h"), "1x://h");
    assert_eq!(authority_without_scheme(b":path", b"http://x"), b"http://x");
}

#[tokio::test]
async fn the_socket_shell_reads_rewritten_frames_and_writes_straight_through() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut client = Client::new();
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &client.request("http://127.0.0.1:1", "/p"),
    ));
    let (mut near, far) = tokio::io::duplex(64);
    let mut shell = SchemeStripping::new(far);
    let writer = tokio::spawn(async move {
        near.write_all(&bytes).await.unwrap();
        let mut answer = [0u8; 5];
        near.read_exact(&mut answer).await.unwrap();
        answer
    });
    let mut read = vec![0u8; PREFACE.len() + FRAME_HEADER_LEN];
    shell.read_exact(&mut read).await.unwrap();
    let length = u32::from_be_bytes([0, read[24], read[25], read[26]]) as usize;
    let mut payload = vec![0u8; length];
    shell.read_exact(&mut payload).await.unwrap();
    read.extend(payload);
    assert_eq!(authority_of(&server_view(&read)[0].2), "127.0.0.1:1");
    shell.write_all(b"hello").await.unwrap();
    assert_eq!(&writer.await.unwrap(), b"hello");
}

#[test]
fn a_block_of_references_to_one_large_entry_is_refused_before_it_weighs() {
    // One 3 KiB header indexed, then referenced over and over: cheap to send, 3 KiB each
    // to decode. Nothing was rewritten yet, so it passes on for h2 to refuse.
    let mut client = Client::new();
    let big = "x".repeat(3000);
    let mut block = client.encoder.encode([(&b"x-big"[..], big.as_bytes())]);
    block.extend(std::iter::repeat_n(0x80 | 62, 10_000));
    let mut bytes = PREFACE.to_vec();
    bytes.extend(header_frames(1, &block, MAX_FRAME_PAYLOAD));
    let (out, rewriter) = run(&bytes, 4096);
    assert_eq!(out, bytes);
    assert!(rewriter.is_passthrough());
}

#[test]
fn once_rewriting_what_cannot_be_rewritten_closes_the_connection() {
    let mut client = Client::new();
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(
        HEADERS,
        END_HEADERS,
        1,
        &client.request("http://h:1", "/"),
    ));
    let mut rewriter = AuthorityRewriter::default();
    let mut input = BytesMut::from(&bytes[..]);
    let mut output = BytesMut::new();
    rewriter.process(&mut input, &mut output).unwrap();
    // An empty CONTINUATION flood, then a frame larger than the server takes.
    let mut flood = frame(HEADERS, 0, 3, &client.request("http://h:1", "/"));
    for _ in 0..=MAX_CONTINUATIONS {
        flood.extend(frame(CONTINUATION, 0, 3, &[]));
    }
    input.extend_from_slice(&flood);
    assert!(rewriter.process(&mut input, &mut output).is_err());

    let mut rewriter = AuthorityRewriter::default();
    let mut input = BytesMut::from(&bytes[..]);
    rewriter.process(&mut input, &mut output).unwrap();
    input
        .extend_from_slice(&frame(DATA, 0, 1, &vec![0; MAX_FRAME_PAYLOAD + 1])[..FRAME_HEADER_LEN]);
    assert!(rewriter.process(&mut input, &mut output).is_err());
}

#[test]
fn an_oversized_frame_before_any_rewriting_passes_on_at_its_header() {
    let mut bytes = PREFACE.to_vec();
    bytes.extend(&frame(DATA, 0, 1, &vec![0; MAX_FRAME_PAYLOAD + 1])[..FRAME_HEADER_LEN]);
    let (out, rewriter) = run(&bytes, 64);
    assert_eq!(out, bytes);
    assert!(rewriter.is_passthrough());
}
