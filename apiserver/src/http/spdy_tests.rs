use super::*;

fn headers(pairs: &[(&str, &str)]) -> Headers {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

fn port_forward_stream(stream: u32, kind: &str, request: &str) -> Frame {
    Frame::SynStream {
        stream,
        fin: false,
        headers: headers(&[
            ("streamtype", kind),
            ("port", "8080"),
            ("requestid", request),
        ]),
    }
}

/// Encodes `frames` on one encoder, then decodes the bytes fed `cut` bytes at a time.
fn round_trip(frames: &[Frame], cut: usize) -> Vec<Frame> {
    let mut encoder = Encoder::default();
    let mut bytes = BytesMut::new();
    for frame in frames {
        encoder.encode(frame, &mut bytes);
    }
    let mut decoder = Decoder::default();
    let mut read = Vec::new();
    for piece in bytes.chunks(cut) {
        decoder.extend(piece);
        while let Some(frame) = decoder.next_frame().unwrap() {
            read.push(frame);
        }
    }
    read
}

#[test]
fn the_dictionary_is_the_drafts_byte_for_byte() {
    // Its length and Adler-32 (what a zlib stream names its preset dictionary by), as
    // spdystream's copy of the draft's table has them.
    assert_eq!(DICTIONARY.len(), 1423);
    let mut adler = flate2::Compress::new(Compression::default(), true);
    assert_eq!(adler.set_dictionary(&DICTIONARY).unwrap(), 0xe3c6_a7c2);
}

#[test]
fn every_frame_reads_back_as_written_however_the_bytes_are_cut() {
    let frames = vec![
        port_forward_stream(1, "error", "0"),
        Frame::Data {
            stream: 1,
            fin: true,
            data: Bytes::new(),
        },
        // A second header block on the same zlib stream (it carries on from the first).
        port_forward_stream(3, "data", "0"),
        Frame::SynReply {
            stream: 3,
            fin: false,
            headers: Headers::new(),
        },
        Frame::Data {
            stream: 3,
            fin: false,
            data: Bytes::from_static(b"GET / HTTP/1.1\r\n\r\n"),
        },
        Frame::Headers {
            stream: 3,
            fin: true,
            headers: headers(&[("a", "1\u{0}2")]),
        },
        Frame::RstStream {
            stream: 3,
            status: REFUSED_STREAM,
        },
        Frame::Ping { id: 7 },
        Frame::Ignored { kind: 9 },
        Frame::GoAway {
            last_good_stream: 3,
            status: 0,
        },
    ];
    for cut in [1, 3, 8, 1000] {
        assert_eq!(round_trip(&frames, cut), frames, "cut every {cut} bytes");
    }
}

#[test]
fn a_frame_is_read_only_once_it_is_whole() {
    let mut bytes = BytesMut::new();
    Encoder::default().encode(&Frame::Ping { id: 1 }, &mut bytes);
    let mut decoder = Decoder::default();
    decoder.extend(&bytes[..11]);
    assert_eq!(decoder.next_frame().unwrap(), None);
    decoder.extend(&bytes[11..]);
    assert_eq!(decoder.next_frame().unwrap(), Some(Frame::Ping { id: 1 }));
    assert_eq!(decoder.next_frame().unwrap(), None);
}

#[test]
fn a_header_is_read_by_its_lowercase_name_and_first_value() {
    let list = headers(&[("streamtype", "data"), ("x", "one\u{0}two")]);
    assert_eq!(header(&list, "streamtype"), Some("data"));
    assert_eq!(header(&list, "x"), Some("one"));
    assert_eq!(header(&list, "port"), None);
}

#[test]
fn what_breaks_the_protocol_is_an_error_naming_it() {
    let decode = |bytes: &[u8]| {
        let mut decoder = Decoder::default();
        decoder.extend(bytes);
        decoder.next_frame()
    };
    // SPDY/2's SYN_STREAM.
    assert_eq!(
        decode(&[0x80, 2, 0, 1, 0, 0, 0, 0]),
        Err(SpdyError::Version(2))
    );
    // A PING of 3 bytes.
    assert_eq!(
        decode(&[0x80, 3, 0, 6, 0, 0, 0, 3, 0, 0, 1]),
        Err(SpdyError::Malformed {
            kind: "PING",
            length: 3
        })
    );
    // Data on stream 0.
    assert_eq!(
        decode(&[0, 0, 0, 0, 0, 0, 0, 0]),
        Err(SpdyError::ZeroStream)
    );
    // A control frame of 16 MiB is refused on its first 8 bytes, not held.
    assert_eq!(
        decode(&[0x80, 3, 0, 6, 0, 0xff, 0xff, 0xff]),
        Err(SpdyError::Malformed {
            kind: "control",
            length: MAX_PAYLOAD
        })
    );
    // A header block that is not zlib.
    let garbage = [
        0x80, 3, 0, 2, 0, 0, 0, 8, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef,
    ];
    assert!(matches!(decode(&garbage), Err(SpdyError::Compression(_))));
}

#[test]
fn a_header_block_that_inflates_too_far_is_refused() {
    let big = "x".repeat(MAX_HEADER_BLOCK);
    let frame = Frame::SynStream {
        stream: 1,
        fin: false,
        headers: headers(&[("big", &big)]),
    };
    let mut bytes = BytesMut::new();
    Encoder::default().encode(&frame, &mut bytes);
    let mut decoder = Decoder::default();
    decoder.extend(&bytes);
    assert_eq!(decoder.next_frame(), Err(SpdyError::HeadersTooLarge));
}

#[test]
fn a_header_block_is_count_then_lengths_and_bytes_with_nothing_after() {
    let mut block = BytesMut::new();
    block.put_u32(1);
    block.put_u32(4);
    block.put_slice(b"PORT");
    block.put_u32(2);
    block.put_slice(b"80");
    assert_eq!(
        parse_header_block(&block).unwrap(),
        headers(&[("port", "80")])
    );
    let mut longer = block.clone();
    longer.put_u8(0);
    assert_eq!(parse_header_block(&longer), Err(SpdyError::HeaderBlock));
    assert_eq!(
        parse_header_block(&block[..block.len() - 1]),
        Err(SpdyError::HeaderBlock)
    );
}
