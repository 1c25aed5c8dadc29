//! The wire between the node's endpoint and a container's shim for `attach`: a Unix socket
//! in the attempt's bundle carrying frames of a kind byte, a big-endian 32-bit length and
//! that many bytes. Pure: encoding and an incremental decoder.
//!
//! ```text
//!  endpoint ── Hello{stdin} ─► shim     (first, once)
//!           ── Stdin / CloseStdin / Resize ─►
//!           ◄─ Stdout / Stderr ──               (the container's output from now on)
//!           ◄─ Ended, then the socket closes    (the container ended; a close without
//!                                                Ended: the shim cut this client off)
//! ```

/// The largest frame either side accepts: a peer sending more is cut off.
pub const MAX_FRAME: usize = 1 << 20;

/// A frame's header: kind and length.
const HEADER: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The attach begins; with `stdin`, this client's input goes to the container (and, for
    /// a `stdinOnce` container, its end is the input's end).
    Hello {
        stdin: bool,
    },
    Stdin(Vec<u8>),
    CloseStdin,
    /// The client's terminal is now this many columns wide and rows high.
    Resize {
        width: u16,
        height: u16,
    },
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The container ended, and this client got all its output.
    Ended,
}

const HELLO: u8 = 0;
const STDIN: u8 = 1;
const CLOSE_STDIN: u8 = 2;
const RESIZE: u8 = 3;
const STDOUT: u8 = 4;
const STDERR: u8 = 5;
const ENDED: u8 = 6;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("an attach frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("an attach frame of unknown kind {0}")]
    UnknownKind(u8),
    #[error("an attach frame of kind {kind} cannot be {length} bytes long")]
    BadLength { kind: u8, length: usize },
}

impl Frame {
    pub fn encode(&self) -> Vec<u8> {
        let (kind, payload): (u8, &[u8]) = match self {
            Frame::Hello { stdin } => (HELLO, if *stdin { &[1] } else { &[0] }),
            Frame::Stdin(data) => (STDIN, data),
            Frame::CloseStdin => (CLOSE_STDIN, &[]),
            Frame::Resize { width, height } => {
                let mut frame = header(RESIZE, 4);
                frame.extend_from_slice(&width.to_be_bytes());
                frame.extend_from_slice(&height.to_be_bytes());
                return frame;
            }
            Frame::Stdout(data) => (STDOUT, data),
            Frame::Stderr(data) => (STDERR, data),
            Frame::Ended => (ENDED, &[]),
        };
        let mut frame = header(kind, payload.len());
        frame.extend_from_slice(payload);
        frame
    }

    fn decode(kind: u8, payload: &[u8]) -> Result<Frame, WireError> {
        let bad_length = || WireError::BadLength {
            kind,
            length: payload.len(),
        };
        Ok(match kind {
            HELLO => match payload {
                [flags] => Frame::Hello {
                    stdin: flags & 1 == 1,
                },
                _ => return Err(bad_length()),
            },
            STDIN => Frame::Stdin(payload.to_vec()),
            CLOSE_STDIN if payload.is_empty() => Frame::CloseStdin,
            ENDED if payload.is_empty() => Frame::Ended,
            RESIZE => match payload {
                [w0, w1, h0, h1] => Frame::Resize {
                    width: u16::from_be_bytes([*w0, *w1]),
                    height: u16::from_be_bytes([*h0, *h1]),
                },
                _ => return Err(bad_length()),
            },
            STDOUT => Frame::Stdout(payload.to_vec()),
            STDERR => Frame::Stderr(payload.to_vec()),
            CLOSE_STDIN | ENDED => return Err(bad_length()),
            other => return Err(WireError::UnknownKind(other)),
        })
    }
}

fn header(kind: u8, length: usize) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER + length);
    frame.push(kind);
    frame.extend_from_slice(&(length as u32).to_be_bytes());
    frame
}

/// Frames out of a byte stream read in any pieces.
#[derive(Debug, Default)]
pub struct Decoder {
    buffer: Vec<u8>,
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole frame, if one has arrived. An error leaves the stream unreadable: the
    /// caller drops the peer.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, WireError> {
        let Some(&[kind, l0, l1, l2, l3]) = self.buffer.get(..HEADER) else {
            return Ok(None);
        };
        let length = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
        if length > MAX_FRAME {
            return Err(WireError::TooLarge(length));
        }
        if self.buffer.len() < HEADER + length {
            return Ok(None);
        }
        let frame = Frame::decode(kind, &self.buffer[HEADER..HEADER + length]);
        self.buffer.drain(..HEADER + length);
        frame.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_frame() -> Vec<Frame> {
        vec![
            Frame::Hello { stdin: true },
            Frame::Hello { stdin: false },
            Frame::Stdin(b"ls\n".to_vec()),
            Frame::Stdin(Vec::new()),
            Frame::CloseStdin,
            Frame::Resize {
                width: 132,
                height: 43,
            },
            Frame::Stdout(vec![0, 255, 10]),
            Frame::Stderr(b"oops".to_vec()),
            Frame::Ended,
        ]
    }

    #[test]
    fn frames_read_back_whole_however_the_bytes_are_cut() {
        let bytes: Vec<u8> = every_frame().iter().flat_map(Frame::encode).collect();
        for piece in [1, 2, 3, 7, bytes.len()] {
            let mut decoder = Decoder::default();
            let mut read = Vec::new();
            for chunk in bytes.chunks(piece) {
                decoder.push(chunk);
                while let Some(frame) = decoder.next_frame().unwrap() {
                    read.push(frame);
                }
            }
            assert_eq!(read, every_frame(), "read in pieces of {piece}");
        }
    }

    #[test]
    fn a_frame_that_cannot_be_read_is_an_error_naming_what_is_wrong() {
        let decode = |bytes: &[u8]| {
            let mut decoder = Decoder::default();
            decoder.push(bytes);
            decoder.next_frame()
        };
        assert_eq!(
            decode(&[STDIN, 0xff, 0xff, 0xff, 0xff]),
            Err(WireError::TooLarge(u32::MAX as usize))
        );
        assert_eq!(decode(&[9, 0, 0, 0, 0]), Err(WireError::UnknownKind(9)));
        assert_eq!(
            decode(&[RESIZE, 0, 0, 0, 2, 1, 2]),
            Err(WireError::BadLength { kind: 3, length: 2 })
        );
        assert_eq!(
            decode(&[CLOSE_STDIN, 0, 0, 0, 1, 0]),
            Err(WireError::BadLength { kind: 2, length: 1 })
        );
        // Not yet whole: nothing, and no error.
        assert_eq!(decode(&[STDOUT, 0, 0, 0, 4, 1]), Ok(None));
    }
}
