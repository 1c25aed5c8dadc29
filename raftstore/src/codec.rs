//! bincode 2 encoding for everything the store writes to disk or sends to peers.

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use bincode::error::{DecodeError, EncodeError};

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, EncodeError> {
    bincode::serde::encode_to_vec(value, config())
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    bincode::serde::decode_from_slice(bytes, config()).map(|(value, _)| value)
}

/// Encodes `value` into `out` as it goes (for values too big to hold encoded in memory).
pub fn encode_into<T: Serialize>(
    value: &T,
    out: &mut impl std::io::Write,
) -> Result<usize, EncodeError> {
    bincode::serde::encode_into_std_write(value, out, config())
}

/// The most a header read from the start of a file may take: a damaged length in it must
/// fail to decode, not allocate gigabytes.
const HEADER_LIMIT: usize = 64 << 20;

/// Decodes a header `T` (at most 64 MiB) from the start of `input`, reading no further than
/// it needs.
pub fn decode_from<T: DeserializeOwned>(input: &mut impl std::io::Read) -> Result<T, DecodeError> {
    bincode::serde::decode_from_std_read(input, config().with_limit::<HEADER_LIMIT>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{Compare, CompareResult, CompareTarget, KeyRange, KeyValue, PutRequest};

    /// `KeyValue` as it was declared before its byte fields were `serde_bytes` (and its
    /// value `Bytes`): each byte a sequence element.
    #[derive(Serialize)]
    struct PlainKeyValue {
        key: Vec<u8>,
        create_revision: i64,
        mod_revision: i64,
        version: i64,
        value: Vec<u8>,
        lease: i64,
    }

    #[derive(Serialize)]
    enum PlainTarget {
        _Version(i64),
        _Create(i64),
        _Mod(i64),
        Value(Vec<u8>),
    }

    #[test]
    fn byte_fields_encode_as_they_did_element_by_element() {
        // bincode writes a byte string and a sequence of u8 alike (a length, then the raw
        // bytes), so data written before `serde_bytes` decodes unchanged; only the speed
        // differs (a copy instead of a call per byte).
        let kv = KeyValue {
            key: b"/registry/pods/default/web".to_vec(),
            create_revision: 3,
            mod_revision: 9,
            version: 2,
            value: (0..=255u8).cycle().take(1000).collect(),
            lease: 7,
        };
        let plain = PlainKeyValue {
            key: kv.key.clone(),
            create_revision: 3,
            mod_revision: 9,
            version: 2,
            value: kv.value.clone().into(),
            lease: 7,
        };
        let bytes = encode(&kv).unwrap();
        assert_eq!(bytes, encode(&plain).unwrap());
        assert_eq!(decode::<KeyValue>(&bytes).unwrap(), kv);
        let target = CompareTarget::Value(b"v".to_vec());
        assert_eq!(
            encode(&target).unwrap(),
            encode(&PlainTarget::Value(b"v".to_vec())).unwrap()
        );
        let put = PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec().into(),
            ..Default::default()
        };
        let compare = Compare {
            range: KeyRange::single("k"),
            result: CompareResult::Equal,
            target,
        };
        assert_eq!(decode::<PutRequest>(&encode(&put).unwrap()).unwrap(), put);
        assert_eq!(
            decode::<Compare>(&encode(&compare).unwrap()).unwrap(),
            compare
        );
    }
}
