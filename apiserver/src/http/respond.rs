//! How the HTTP API answers: objects as JSON, failures as a `Status` with Kubernetes' code,
//! lists streamed 64 KiB of items at a time (a 10,000-pod list is never encoded whole
//! beside its objects), and Tables for clients that ask (see `table.rs`).

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{header, StatusCode};
use serde_json::{json, Value};

use super::table::{self, IncludeObject, TABLE_CONTENT_TYPE};
use crate::error::ApiError;
use crate::list::ListResult;

pub const JSON: &str = "application/json";

/// How a client wants objects answered.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    Json,
    Table(IncludeObject),
}

pub fn json(code: StatusCode, value: &Value) -> Response {
    with_body(code, JSON, Body::from(value.to_string()))
}

pub fn with_body(code: StatusCode, content_type: &'static str, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

/// A failure: its `Status` object, with the status' code as the HTTP code.
pub fn error(error: &ApiError) -> Response {
    let (_, code) = error.reason_and_code();
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json(code, &error.status_object());
    if let ApiError::TooManyRequests {
        retry_after_seconds,
        ..
    }
    | ApiError::Timeout {
        retry_after_seconds,
        ..
    } = error
    {
        if *retry_after_seconds > 0 {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, (*retry_after_seconds).into());
        }
    }
    response
}

/// One object, as JSON or as a Table of one row.
pub fn object(code: StatusCode, kind: &str, object: &Value, shape: Shape) -> Response {
    match shape {
        Shape::Json => json(code, object),
        Shape::Table(include) => {
            let table = table::table(kind, &[object], json!({}), include, true, now());
            with_body(code, TABLE_CONTENT_TYPE, Body::from(table.to_string()))
        }
    }
}

fn list_metadata(listed: &ListResult) -> Value {
    let mut metadata = json!({ "resourceVersion": listed.revision.to_string() });
    if !listed.continue_token.is_empty() {
        metadata["continue"] = json!(listed.continue_token);
        if let Some(remaining) = listed.remaining {
            metadata["remainingItemCount"] = json!(remaining);
        }
    }
    metadata
}

/// A list: `<Kind>List` JSON streamed in chunks of items, or a Table.
pub fn list(listed: ListResult, shape: Shape) -> Response {
    let metadata = list_metadata(&listed);
    if let Shape::Table(include) = shape {
        let items: Vec<&Value> = listed.items.iter().collect();
        let table = table::table(listed.info.kind, &items, metadata, include, true, now());
        return with_body(
            StatusCode::OK,
            TABLE_CONTENT_TYPE,
            Body::from(table.to_string()),
        );
    }
    let head = format!(
        r#"{{"kind":"{}List","apiVersion":"{}","metadata":{},"items":["#,
        listed.info.kind, listed.info.api_version, metadata
    );
    let chunks = std::iter::once(Bytes::from(head))
        .chain(item_chunks(listed.items))
        .chain(std::iter::once(Bytes::from_static(b"]}")))
        .map(Ok::<_, std::convert::Infallible>);
    with_body(
        StatusCode::OK,
        JSON,
        Body::from_stream(futures::stream::iter(chunks)),
    )
}

/// How much of a list's items one chunk of the response carries, at least (but the last):
/// a chunk an item made a 10,000-pod list 10,000 writes.
const LIST_CHUNK: usize = 64 * 1024;

/// The items as the comma-separated inside of a JSON array, encoded a chunk at a time as
/// the response is written (pure).
fn item_chunks(items: Vec<Value>) -> impl Iterator<Item = Bytes> {
    let mut items = items.into_iter();
    let mut first = true;
    std::iter::from_fn(move || {
        let mut chunk = Vec::new();
        while chunk.len() < LIST_CHUNK {
            let Some(item) = items.next() else { break };
            if !std::mem::take(&mut first) {
                chunk.push(b',');
            }
            // Writing a `Value` into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut chunk, &item);
        }
        (!chunk.is_empty()).then(|| Bytes::from(chunk))
    })
}

pub fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(items: Vec<Value>) -> (Vec<usize>, Value) {
        let chunks: Vec<Bytes> = item_chunks(items).collect();
        let sizes = chunks.iter().map(Bytes::len).collect();
        let mut array = b"[".to_vec();
        chunks
            .iter()
            .for_each(|chunk| array.extend_from_slice(chunk));
        array.push(b']');
        (sizes, serde_json::from_slice(&array).unwrap())
    }

    #[test]
    fn list_items_go_out_in_chunks_that_join_into_the_array() {
        assert_eq!(joined(Vec::new()), (Vec::new(), json!([])));
        let few: Vec<Value> = (0..3).map(|n| json!({ "n": n })).collect();
        let (sizes, array) = joined(few.clone());
        assert_eq!((sizes.len(), array), (1, Value::Array(few)));
        let many: Vec<Value> = (0..5_000)
            .map(|n| json!({ "n": n, "pad": "x".repeat(100) }))
            .collect();
        let (sizes, array) = joined(many.clone());
        assert_eq!(array, Value::Array(many));
        let (last, full) = sizes.split_last().unwrap();
        assert!(full.len() >= 5, "{sizes:?}");
        assert!(full.iter().all(|size| *size >= LIST_CHUNK), "{sizes:?}");
        assert!(*last > 0);
    }
}
