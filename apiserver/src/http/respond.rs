//! How the HTTP API answers: objects as JSON, failures as a `Status` with Kubernetes' code,
//! lists streamed item by item (a 10,000-pod list is never encoded whole beside its
//! objects), and Tables for clients that ask (see `table.rs`).

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

/// A list: `<Kind>List` JSON streamed an item at a time, or a Table.
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
    let items = listed.items.into_iter().enumerate().map(|(index, item)| {
        let mut chunk = if index == 0 {
            Vec::new()
        } else {
            b",".to_vec()
        };
        // Writing a `Value` into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut chunk, &item);
        Ok::<_, std::convert::Infallible>(Bytes::from(chunk))
    });
    let chunks = std::iter::once(Ok(Bytes::from(head)))
        .chain(items)
        .chain(std::iter::once(Ok(Bytes::from_static(b"]}"))));
    with_body(
        StatusCode::OK,
        JSON,
        Body::from_stream(futures::stream::iter(chunks)),
    )
}

pub fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}
