//! SPDY/3.1 framing, the dialect Kubernetes' port-forward speaks (moby's spdystream, which
//! client-go uses): frames read from bytes as they come and written to bytes, with each
//! direction's header blocks compressed in one zlib stream over the protocol's dictionary.
//! Pure: no sockets here (pod_port_forward.rs is the shell that carries the bytes).
//!
//! Flow control is left out on both sides, as spdystream leaves it out: WINDOW_UPDATE and
//! SETTINGS frames are read and ignored, and none is sent.

use std::sync::LazyLock;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The only version spoken.
const VERSION: u16 = 3;
/// The longest payload a frame's 24-bit length allows.
pub const MAX_PAYLOAD: usize = (1 << 24) - 1;
/// The most a header block may inflate to (a port-forward's headers are a few dozen bytes).
const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// The longest control frame read (a header block deflates to less than it inflates to).
const MAX_CONTROL_PAYLOAD: usize = MAX_HEADER_BLOCK + 10;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const FLAG_FIN: u8 = 0x01;

/// RST_STREAM's status for a frame that breaks the protocol.
pub const PROTOCOL_ERROR: u32 = 1;
/// RST_STREAM's status for a stream refused before any work was done on it.
pub const REFUSED_STREAM: u32 = 3;
/// RST_STREAM's status for a stream given up on.
pub const CANCEL: u32 = 5;

/// A header block: lowercase names, each with its value (several values of one name are
/// NUL-separated in the value, as SPDY carries them).
pub type Headers = Vec<(String, String)>;

/// A frame, as read and written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream: u32,
        fin: bool,
        headers: Headers,
    },
    SynReply {
        stream: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream: u32,
        status: u32,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream: u32,
        status: u32,
    },
    Headers {
        stream: u32,
        fin: bool,
        headers: Headers,
    },
    Data {
        stream: u32,
        fin: bool,
        data: Bytes,
    },
    /// SETTINGS (4), WINDOW_UPDATE (9) or a control frame of a type this side does not
    /// know: read past (the draft says to ignore unknown types). Written, it has no payload.
    Ignored {
        kind: u16,
    },
}

/// What makes a peer's bytes unreadable: the session ends with a GOAWAY.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpdyError {
    #[error("SPDY version {0} is not spoken here (only 3)")]
    Version(u16),
    #[error("a {kind} frame of {length} bytes is malformed")]
    Malformed { kind: &'static str, length: usize },
    #[error("stream id 0 is not a stream")]
    ZeroStream,
    #[error("a header block does not inflate: {0}")]
    Compression(String),
    #[error("a header block inflates past {MAX_HEADER_BLOCK} bytes")]
    HeadersTooLarge,
    #[error("a header block is cut short or has bytes after its last header")]
    HeaderBlock,
}

/// The zlib dictionary both sides start each direction's header compression with, as the
/// SPDY/3 draft defines it: each common header word with its 4-byte length, then a run of
/// common values.
pub static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    const WORDS: [&str; 65] = [
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const VALUES: [&str; 9] = [
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417\
         502504505",
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request\
         401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error\
         501 Not Implemented503 Service Unavailable",
        "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec",
        " 00:00:00",
        " Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
        "chunked,text/html,image/png,image/jpg,image/gif,application/xml,\
         application/xhtml+xml,text/plain,text/javascript,public",
        "privatemax-age=gzip,deflate,sdch",
        "charset=utf-8charset=iso-8859-1,utf-,*,",
        "enq=0.",
    ];
    let mut dictionary = Vec::with_capacity(1423);
    for word in WORDS {
        dictionary.extend_from_slice(&(word.len() as u32).to_be_bytes());
        dictionary.extend_from_slice(word.as_bytes());
    }
    for value in VALUES {
        dictionary.extend_from_slice(value.as_bytes());
    }
    dictionary
});

/// The value of header `name` (its first, when it has several).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.split('\0').next().unwrap_or_default())
}

/// Reads frames from a peer's bytes, which may arrive cut anywhere.
pub struct Decoder {
    buffer: BytesMut,
    inflate: Decompress,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            buffer: BytesMut::new(),
            inflate: Decompress::new(true),
        }
    }
}

impl Decoder {
    /// More of the peer's bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole frame, or `None` until more bytes come.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, SpdyError> {
        if self.buffer.len() < 8 {
            return Ok(None);
        }
        let length = u32::from_be_bytes([0, self.buffer[5], self.buffer[6], self.buffer[7]]);
        let length = length as usize;
        // A control frame is refused by its length before it is held: only data is long.
        if self.buffer[0] & 0x80 != 0 && length > MAX_CONTROL_PAYLOAD {
            return Err(SpdyError::Malformed {
                kind: "control",
                length,
            });
        }
        if self.buffer.len() < 8 + length {
            return Ok(None);
        }
        let mut frame = self.buffer.split_to(8 + length).freeze();
        let first = frame.get_u32();
        let flags = frame.get_u8();
        frame.advance(3);
        let fin = flags & FLAG_FIN != 0;
        if first & 0x8000_0000 == 0 {
            let stream = first & 0x7fff_ffff;
            if stream == 0 {
                return Err(SpdyError::ZeroStream);
            }
            return Ok(Some(Frame::Data {
                stream,
                fin,
                data: frame,
            }));
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(SpdyError::Version(version));
        }
        let kind = (first & 0xffff) as u16;
        let malformed = |kind| SpdyError::Malformed { kind, length };
        let parsed = match kind {
            SYN_STREAM => {
                if length < 10 {
                    return Err(malformed("SYN_STREAM"));
                }
                let stream = nonzero(frame.get_u32() & 0x7fff_ffff)?;
                // The associated stream, priority and slot say nothing to a port-forward.
                frame.advance(6);
                let headers = self.headers(&frame)?;
                Frame::SynStream {
                    stream,
                    fin,
                    headers,
                }
            }
            SYN_REPLY | HEADERS => {
                if length < 4 {
                    return Err(malformed("SYN_REPLY or HEADERS"));
                }
                let stream = nonzero(frame.get_u32() & 0x7fff_ffff)?;
                let headers = self.headers(&frame)?;
                match kind {
                    SYN_REPLY => Frame::SynReply {
                        stream,
                        fin,
                        headers,
                    },
                    _ => Frame::Headers {
                        stream,
                        fin,
                        headers,
                    },
                }
            }
            RST_STREAM => {
                if length != 8 {
                    return Err(malformed("RST_STREAM"));
                }
                let stream = nonzero(frame.get_u32() & 0x7fff_ffff)?;
                let status = frame.get_u32();
                Frame::RstStream { stream, status }
            }
            PING => {
                if length != 4 {
                    return Err(malformed("PING"));
                }
                Frame::Ping {
                    id: frame.get_u32(),
                }
            }
            GOAWAY => {
                if length != 8 {
                    return Err(malformed("GOAWAY"));
                }
                let last_good_stream = frame.get_u32() & 0x7fff_ffff;
                let status = frame.get_u32();
                Frame::GoAway {
                    last_good_stream,
                    status,
                }
            }
            kind => Frame::Ignored { kind },
        };
        Ok(Some(parsed))
    }

    /// Inflates one header block (the stream's zlib context carries on from the last) and
    /// reads its name/value pairs.
    fn headers(&mut self, compressed: &[u8]) -> Result<Headers, SpdyError> {
        let mut block = Vec::with_capacity(256);
        let mut consumed = 0;
        loop {
            if block.len() == block.capacity() {
                if block.len() >= MAX_HEADER_BLOCK {
                    return Err(SpdyError::HeadersTooLarge);
                }
                block.reserve(block.len());
            }
            let (in_before, out_before) = (self.inflate.total_in(), block.len());
            let result = self.inflate.decompress_vec(
                &compressed[consumed..],
                &mut block,
                FlushDecompress::Sync,
            );
            consumed += (self.inflate.total_in() - in_before) as usize;
            match result {
                Ok(Status::StreamEnd) => return Err(SpdyError::HeaderBlock),
                Ok(status) => {
                    if consumed == compressed.len() && block.len() < block.capacity() {
                        break;
                    }
                    let stuck = status == Status::BufError
                        && self.inflate.total_in() == in_before
                        && block.len() == out_before
                        && block.len() < block.capacity();
                    if stuck {
                        return Err(SpdyError::HeaderBlock);
                    }
                }
                Err(error) if error.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(&DICTIONARY)
                        .map_err(|e| SpdyError::Compression(e.to_string()))?;
                }
                Err(error) => return Err(SpdyError::Compression(error.to_string())),
            }
        }
        if block.len() > MAX_HEADER_BLOCK {
            return Err(SpdyError::HeadersTooLarge);
        }
        parse_header_block(&block)
    }
}

fn nonzero(stream: u32) -> Result<u32, SpdyError> {
    if stream == 0 {
        return Err(SpdyError::ZeroStream);
    }
    Ok(stream)
}

/// Reads an inflated header block: a count, then each name and value with its length.
fn parse_header_block(mut block: &[u8]) -> Result<Headers, SpdyError> {
    fn take<'a>(block: &mut &'a [u8]) -> Result<&'a [u8], SpdyError> {
        if block.len() < 4 {
            return Err(SpdyError::HeaderBlock);
        }
        let length = block.get_u32() as usize;
        if block.len() < length {
            return Err(SpdyError::HeaderBlock);
        }
        let (taken, rest) = block.split_at(length);
        *block = rest;
        Ok(taken)
    }
    if block.len() < 4 {
        return Err(SpdyError::HeaderBlock);
    }
    let count = block.get_u32();
    let mut headers = Vec::new();
    for _ in 0..count {
        let name = String::from_utf8_lossy(take(&mut block)?).to_lowercase();
        let value = String::from_utf8_lossy(take(&mut block)?).into_owned();
        headers.push((name, value));
    }
    if !block.is_empty() {
        return Err(SpdyError::HeaderBlock);
    }
    Ok(headers)
}

/// Writes frames to bytes for a peer.
pub struct Encoder {
    deflate: Compress,
}

impl Default for Encoder {
    fn default() -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(&DICTIONARY)
            .expect("a fresh zlib stream takes a dictionary");
        Encoder { deflate }
    }
}

impl Encoder {
    /// Appends `frame`'s bytes to `out`. A data frame longer than a frame holds is the
    /// caller's to split (see [`MAX_PAYLOAD`]).
    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) {
        match frame {
            Frame::Data { stream, fin, data } => {
                assert!(
                    data.len() <= MAX_PAYLOAD,
                    "a data frame holds {MAX_PAYLOAD}"
                );
                out.put_u32(stream & 0x7fff_ffff);
                put_flags_and_length(out, *fin, data.len());
                out.put_slice(data);
            }
            Frame::SynStream {
                stream,
                fin,
                headers,
            } => {
                let block = self.compress(headers);
                control(out, SYN_STREAM, *fin, 10 + block.len());
                out.put_u32(*stream);
                out.put_u32(0);
                out.put_u16(0);
                out.put_slice(&block);
            }
            Frame::SynReply {
                stream,
                fin,
                headers,
            } => {
                let block = self.compress(headers);
                control(out, SYN_REPLY, *fin, 4 + block.len());
                out.put_u32(*stream);
                out.put_slice(&block);
            }
            Frame::Headers {
                stream,
                fin,
                headers,
            } => {
                let block = self.compress(headers);
                control(out, HEADERS, *fin, 4 + block.len());
                out.put_u32(*stream);
                out.put_slice(&block);
            }
            Frame::RstStream { stream, status } => {
                control(out, RST_STREAM, false, 8);
                out.put_u32(*stream);
                out.put_u32(*status);
            }
            Frame::Ping { id } => {
                control(out, PING, false, 4);
                out.put_u32(*id);
            }
            Frame::GoAway {
                last_good_stream,
                status,
            } => {
                control(out, GOAWAY, false, 8);
                out.put_u32(*last_good_stream);
                out.put_u32(*status);
            }
            Frame::Ignored { kind } => control(out, *kind, false, 0),
        }
    }

    /// The header block, deflated on this direction's stream and flushed to a byte
    /// boundary so the peer can inflate it whole.
    fn compress(&mut self, headers: &Headers) -> Vec<u8> {
        let mut block = BytesMut::new();
        block.put_u32(headers.len() as u32);
        for (name, value) in headers {
            let name = name.to_lowercase();
            block.put_u32(name.len() as u32);
            block.put_slice(name.as_bytes());
            block.put_u32(value.len() as u32);
            block.put_slice(value.as_bytes());
        }
        let mut compressed = Vec::with_capacity(block.len() + 64);
        let mut consumed = 0;
        loop {
            if compressed.len() == compressed.capacity() {
                compressed.reserve(64);
            }
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(&block[consumed..], &mut compressed, FlushCompress::Sync)
                .expect("deflating into memory does not fail");
            consumed += (self.deflate.total_in() - before) as usize;
            if consumed == block.len() && compressed.len() < compressed.capacity() {
                return compressed;
            }
        }
    }
}

fn control(out: &mut BytesMut, kind: u16, fin: bool, length: usize) {
    out.put_u16(0x8000 | VERSION);
    out.put_u16(kind);
    put_flags_and_length(out, fin, length);
}

fn put_flags_and_length(out: &mut BytesMut, fin: bool, length: usize) {
    let flags = if fin { FLAG_FIN } else { 0 };
    out.put_u32(u32::from(flags) << 24 | length as u32);
}

#[cfg(test)]
#[path = "spdy_tests.rs"]
mod tests;
