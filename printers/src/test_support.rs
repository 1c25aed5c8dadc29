//! Fixtures shared by the output modules' tests.

use serde_json::{json, Value};

/// The fixed "now" of every output test.
pub fn now() -> jiff::Timestamp {
    "2024-06-01T12:00:00Z".parse().unwrap()
}

/// Metadata of an object created 13 days before [`now`].
pub fn meta(name: &str) -> Value {
    json!({"name": name, "namespace": "default", "creationTimestamp": "2024-05-19T12:00:00Z"})
}

/// `key` padded to `width`, then `value`: one aligned line.
pub fn kv(width: usize, key: &str, value: &str) -> String {
    format!("{key:<width$}{value}\n")
}

/// `object` of `kind`, named kubia, created an hour before [`now`].
pub fn with_meta(kind: &str, mut object: Value) -> Value {
    object["kind"] = json!(kind);
    object["metadata"] = json!({"name": "kubia", "namespace": "default",
                                "creationTimestamp": "2024-06-01T11:00:00Z"});
    object
}

pub fn assert_contains(text: &str, expected: &str) {
    assert!(text.contains(expected), "expected\n{expected}\nin\n{text}");
}
