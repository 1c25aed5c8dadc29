//! Takes the scheme off HTTP/2 `:authority` values that name one, as etcd's clients send.
//!
//! etcdctl 3.4 given `--endpoints=http://host:port` sends `http://host:port` as the
//! `:authority` of some requests (`endpoint status`, `endpoint health`). etcd's Go server takes
//! it; h2, under hyper, resets such a stream as malformed. [`SchemeStripping`] sits between a
//! client socket and hyper and reads the client's side of the connection frame by frame:
//!
//! - a connection that is not HTTP/2, or whose first request names a plain authority, passes
//!   through untouched from then on: the usual connection costs one look at its first header
//!   block, and nothing after it;
//! - a connection whose first request names `scheme://authority` has every header block it
//!   sends decoded, the scheme taken off `:authority`, and encoded again. Its decoder follows
//!   the client's HPACK table and its encoder the server's, so the two never disagree.
//!
//! Whatever the rewriter cannot judge (a malformed frame, bad HPACK, a block past the limits
//! below) is passed on as it came while nothing was rewritten yet, for h2 to refuse with the
//! right error; once rewriting, the connection is closed instead, since h2's HPACK table then
//! follows the rewriter's and could no longer read the client's bytes. The limits are
//! hyper's own (16 KiB frames and header lists, a 4 KiB HPACK table), so nothing h2 would take
//! is refused. Only the first block decides: grpc-go names one authority per connection.
//!
//! [`AuthorityRewriter`] is the pure core (bytes in, bytes out); [`SchemeStripping`] the
//! `AsyncRead` shell around a socket. The server's side of the connection is never touched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The largest frame payload a server takes unless it announces more (RFC 9113 §4.2;
/// hyper announces no more); rewritten header blocks are cut to it.
const MAX_FRAME_PAYLOAD: usize = 16_384;
/// The most a block's decoded headers may weigh (RFC 7541's size: name + value + 32 each);
/// hyper's limit is 16 KiB.
const MAX_HEADER_LIST: usize = 64 * 1024;
/// The most CONTINUATION frames one block may take (h2 calms a client after 5).
const MAX_CONTINUATIONS: usize = 16;
/// The HPACK table size the server allows (h2's default, which hyper keeps); the encoder's
/// table, which h2's decoder follows, has this size too.
const HEADER_TABLE_SIZE: usize = 4096;

/// The pure core: frames of the client's side of a connection in, the same frames out, with
/// header blocks rewritten where the connection needs it.
pub struct AuthorityRewriter {
    stage: Stage,
}

enum Stage {
    /// Reading the HTTP/2 connection preface; `seen` bytes of it matched so far.
    Preface {
        seen: usize,
    },
    Frames(Box<HeaderBlocks>),
    Passthrough,
    /// The connection cannot go on (see the module's notes): reads fail.
    Failed,
}

struct HeaderBlocks {
    /// Follows the client's encoder.
    decoder: Decoder<'static>,
    /// Feeds the server's decoder; `None` until the first block showed a scheme.
    encoder: Option<Encoder<'static>>,
    /// A block whose HEADERS frame came without END_HEADERS, waiting for CONTINUATIONs.
    open: Option<OpenBlock>,
}

struct OpenBlock {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
    continuations: usize,
    /// The frames as they came, passed on unchanged when the block needs no rewriting.
    original: BytesMut,
}

/// What became of a frame: the connection goes on being read frame by frame, from here on
/// passes through, or must be closed.
enum Next {
    Frames,
    Passthrough,
    Fail,
}

impl Default for AuthorityRewriter {
    fn default() -> Self {
        AuthorityRewriter {
            stage: Stage::Preface { seen: 0 },
        }
    }
}

impl AuthorityRewriter {
    /// True once nothing more will be rewritten: the shell can read straight through.
    pub fn is_passthrough(&self) -> bool {
        matches!(self.stage, Stage::Passthrough)
    }

    /// Moves every complete frame (or, once passing through, every byte) of `input` to
    /// `output`, rewritten where needed. An incomplete frame stays in `input`. An error: the
    /// connection must be closed.
    pub fn process(&mut self, input: &mut BytesMut, output: &mut BytesMut) -> io::Result<()> {
        loop {
            match &mut self.stage {
                Stage::Failed => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "an HTTP/2 header block that could not be rewritten",
                    ))
                }
                Stage::Passthrough => {
                    output.extend_from_slice(&input.split());
                    return Ok(());
                }
                Stage::Preface { seen } => {
                    let wanted = &PREFACE[*seen..];
                    let take = wanted.len().min(input.len());
                    if input[..take] != wanted[..take] {
                        self.stage = Stage::Passthrough;
                        continue;
                    }
                    output.extend_from_slice(&input.split_to(take));
                    *seen += take;
                    if *seen < PREFACE.len() {
                        return Ok(());
                    }
                    let mut decoder = Decoder::new();
                    decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
                    self.stage = Stage::Frames(Box::new(HeaderBlocks {
                        decoder,
                        encoder: None,
                        open: None,
                    }));
                }
                Stage::Frames(blocks) => {
                    if input.len() >= FRAME_HEADER_LEN
                        && frame_payload_len(input) > MAX_FRAME_PAYLOAD
                    {
                        // Larger than the server takes: h2 refuses it at its header.
                        self.stage = blocks.give_up(output);
                        continue;
                    }
                    let Some(length) = complete_frame_len(input) else {
                        return Ok(());
                    };
                    let frame = input.split_to(length);
                    match blocks.frame(frame, output) {
                        Next::Frames => {}
                        Next::Passthrough => self.stage = Stage::Passthrough,
                        Next::Fail => self.stage = Stage::Failed,
                    }
                }
            }
        }
    }
}

/// The payload length a frame header (at least 9 bytes) announces.
fn frame_payload_len(header: &[u8]) -> usize {
    u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize
}

/// The length of the frame at the start of `input`, header included, once all of it is there.
fn complete_frame_len(input: &[u8]) -> Option<usize> {
    if input.len() < FRAME_HEADER_LEN {
        return None;
    }
    let length = FRAME_HEADER_LEN + frame_payload_len(input);
    (input.len() >= length).then_some(length)
}

impl HeaderBlocks {
    /// Stops reading frames: before any rewriting, what is held passes on and so does the
    /// rest; after, the connection fails.
    fn give_up(&mut self, output: &mut BytesMut) -> Stage {
        if self.encoder.is_some() {
            return Stage::Failed;
        }
        if let Some(open) = self.open.take() {
            output.extend_from_slice(&open.original);
        }
        Stage::Passthrough
    }

    fn give_up_with(&mut self, frame: &[u8], output: &mut BytesMut) -> Next {
        match self.give_up(output) {
            Stage::Failed => Next::Fail,
            _ => {
                output.extend_from_slice(frame);
                Next::Passthrough
            }
        }
    }

    fn frame(&mut self, frame: BytesMut, output: &mut BytesMut) -> Next {
        let kind = frame[3];
        let flags = frame[4];
        let stream_id = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = &frame[FRAME_HEADER_LEN..];
        if let Some(open) = &mut self.open {
            open.continuations += 1;
            if kind != CONTINUATION
                || stream_id != open.stream_id
                || open.continuations > MAX_CONTINUATIONS
            {
                // Not what HTTP/2 allows, or a flood: h2 would refuse it.
                return self.give_up_with(&frame, output);
            }
            open.fragment.extend_from_slice(payload);
            open.original.extend_from_slice(&frame);
            if flags & END_HEADERS == 0 {
                return Next::Frames;
            }
            let block = self.open.take().expect("an open block");
            return self.finish(block, output);
        }
        if kind != HEADERS {
            output.extend_from_slice(&frame);
            return Next::Frames;
        }
        let Some((priority, fragment)) = headers_payload(flags, payload) else {
            return self.give_up_with(&frame, output);
        };
        let block = OpenBlock {
            stream_id,
            end_stream: flags & END_STREAM != 0,
            priority,
            fragment: fragment.to_vec(),
            continuations: 0,
            original: frame,
        };
        if flags & END_HEADERS == 0 {
            self.open = Some(block);
            return Next::Frames;
        }
        self.finish(block, output)
    }

    /// A whole header block: passed on as it came, or rewritten.
    fn finish(&mut self, block: OpenBlock, output: &mut BytesMut) -> Next {
        let Some(headers) = decode_bounded(&mut self.decoder, &block.fragment) else {
            // Bad HPACK or too much of it: h2 answers it with the right error.
            return self.give_up_with(&block.original, output);
        };
        let encoder = match &mut self.encoder {
            Some(encoder) => encoder,
            None if names_a_scheme(&headers) => {
                let mut encoder = Encoder::new();
                encoder.set_max_table_size(HEADER_TABLE_SIZE);
                self.encoder.insert(encoder)
            }
            None => {
                output.extend_from_slice(&block.original);
                return Next::Passthrough;
            }
        };
        let encoded = encoder.encode(
            headers
                .iter()
                .map(|(name, value)| (name.as_slice(), authority_without_scheme(name, value))),
        );
        write_header_frames(&block, &encoded, output);
        Next::Frames
    }
}

/// The headers of a block, or `None` if its HPACK is bad or they weigh more than
/// [`MAX_HEADER_LIST`] (counted as they are decoded, so a block of references to one large
/// table entry costs nothing before it is refused).
fn decode_bounded(
    decoder: &mut Decoder<'static>,
    fragment: &[u8],
) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut headers = Vec::new();
    let mut weight = 0;
    decoder
        .decode_with_cb(fragment, |name, value| {
            weight += name.len() + value.len() + 32;
            if weight <= MAX_HEADER_LIST {
                headers.push((name.into_owned(), value.into_owned()));
            }
        })
        .ok()?;
    (weight <= MAX_HEADER_LIST).then_some(headers)
}

/// The PRIORITY fields and the header block fragment of a HEADERS frame's payload, or
/// `None` if its padding and priority do not fit in it.
fn headers_payload(flags: u8, payload: &[u8]) -> Option<(Option<[u8; 5]>, &[u8])> {
    let mut rest = payload;
    let mut padding = 0;
    if flags & PADDED != 0 {
        padding = usize::from(*rest.first()?);
        rest = &rest[1..];
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        priority = Some(rest.get(..5)?.try_into().ok()?);
        rest = &rest[5..];
    }
    let end = rest.len().checked_sub(padding)?;
    Some((priority, &rest[..end]))
}

fn names_a_scheme(headers: &[(Vec<u8>, Vec<u8>)]) -> bool {
    headers
        .iter()
        .any(|(name, value)| authority_without_scheme(name, value).len() != value.len())
}

/// `value` without a leading `scheme://` when `name` is `:authority`; otherwise `value`.
fn authority_without_scheme<'a>(name: &[u8], value: &'a [u8]) -> &'a [u8] {
    if name != b":authority" {
        return value;
    }
    // RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
    let is_scheme = |scheme: &[u8]| {
        scheme.first().is_some_and(u8::is_ascii_alphabetic)
            && scheme
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    };
    match value.windows(3).position(|window| window == b"://") {
        Some(at) if is_scheme(&value[..at]) => &value[at + 3..],
        _ => value,
    }
}

/// One HEADERS frame carrying `encoded`, followed by CONTINUATIONs if it is too long for one.
fn write_header_frames(block: &OpenBlock, encoded: &[u8], output: &mut BytesMut) {
    let priority_len = if block.priority.is_some() { 5 } else { 0 };
    let first_len = encoded.len().min(MAX_FRAME_PAYLOAD - priority_len);
    let (first, mut rest) = encoded.split_at(first_len);
    let mut flags = 0;
    if block.end_stream {
        flags |= END_STREAM;
    }
    if block.priority.is_some() {
        flags |= PRIORITY;
    }
    if rest.is_empty() {
        flags |= END_HEADERS;
    }
    put_frame_header(
        output,
        priority_len + first.len(),
        HEADERS,
        flags,
        block.stream_id,
    );
    if let Some(priority) = block.priority {
        output.put_slice(&priority);
    }
    output.put_slice(first);
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(rest.len().min(MAX_FRAME_PAYLOAD));
        let flags = if after.is_empty() { END_HEADERS } else { 0 };
        put_frame_header(output, chunk.len(), CONTINUATION, flags, block.stream_id);
        output.put_slice(chunk);
        rest = after;
    }
}

fn put_frame_header(output: &mut BytesMut, length: usize, kind: u8, flags: u8, stream_id: u32) {
    let length = u32::try_from(length).expect("a frame of at most 16 KiB");
    output.put_slice(&length.to_be_bytes()[1..]);
    output.put_u8(kind);
    output.put_u8(flags);
    output.put_u32(stream_id);
}

/// A client socket whose reads go through an [`AuthorityRewriter`]; writes go straight on.
pub struct SchemeStripping<S> {
    inner: S,
    rewriter: AuthorityRewriter,
    /// Read from the socket, not yet a whole frame.
    input: BytesMut,
    /// Ready for the reader.
    output: BytesMut,
    ended: bool,
}

impl<S> SchemeStripping<S> {
    pub fn new(inner: S) -> Self {
        SchemeStripping {
            inner,
            rewriter: AuthorityRewriter::default(),
            input: BytesMut::new(),
            output: BytesMut::new(),
            ended: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SchemeStripping<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.output.is_empty() {
                let take = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output[..take]);
                this.output.advance(take);
                return Poll::Ready(Ok(()));
            }
            if this.ended || (this.rewriter.is_passthrough() && this.input.is_empty()) {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // The client closed mid-frame: the connection is over either way.
                this.ended = true;
                continue;
            }
            this.input.extend_from_slice(read.filled());
            this.rewriter.process(&mut this.input, &mut this.output)?;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SchemeStripping<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[path = "authority_scheme_tests.rs"]
mod tests;
