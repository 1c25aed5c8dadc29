//! `?watch=true` over HTTP: the registry's watch events as newline-separated
//! `{"type","object"}` JSON, as Tables when the client asked for them, ended after
//! `timeoutSeconds` if given. A watch that cannot start from its resourceVersion (compacted)
//! answers 200 with one `ERROR` event carrying the 410 `Status`, which is what client-go's
//! reflectors take as "list again".

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http::StatusCode;
use serde_json::{json, Value};
use tokio_stream::wrappers::ReceiverStream;

use super::respond::{self, Shape, JSON};
use super::table::{self, TABLE_CONTENT_TYPE};
use crate::error::ApiError;
use crate::registry::Registry;
use crate::watch::WatchOptions;

/// Starts a watch of `resource` and answers with its stream.
pub async fn watch(
    registry: &Registry,
    resource: &'static str,
    kind: &'static str,
    options: WatchOptions,
    timeout: Option<Duration>,
    shape: Shape,
) -> Response {
    let content_type = match shape {
        Shape::Json => JSON,
        Shape::Table(_) => TABLE_CONTENT_TYPE,
    };
    let events = match registry.watch(resource, &options).await {
        Ok(events) => events,
        Err(error @ ApiError::Expired { .. }) => {
            let line = event_line("ERROR", &error.status_object());
            return respond::with_body(StatusCode::OK, content_type, Body::from(line));
        }
        Err(error) => return respond::error(&error),
    };
    let mut first = true;
    let lines = ReceiverStream::new(events).map(move |event| {
        let line = match (shape, event.kind) {
            (Shape::Table(include), "ADDED" | "MODIFIED" | "DELETED") => {
                let with_columns = std::mem::take(&mut first);
                let table = table::table(
                    kind,
                    &[event.object.as_ref()],
                    json!({}),
                    include,
                    with_columns,
                    respond::now(),
                );
                event_line(event.kind, &table)
            }
            _ => {
                let mut line = Vec::with_capacity(event.json().len() + 32);
                line.extend_from_slice(br#"{"type":""#);
                line.extend_from_slice(event.kind.as_bytes());
                line.extend_from_slice(br#"","object":"#);
                line.extend_from_slice(event.json());
                line.extend_from_slice(b"}\n");
                line
            }
        };
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    });
    let body = match timeout {
        Some(timeout) => Body::from_stream(lines.take_until(tokio::time::sleep(timeout))),
        None => Body::from_stream(lines),
    };
    respond::with_body(StatusCode::OK, content_type, body)
}

fn event_line(kind: &str, object: &Value) -> Vec<u8> {
    let mut line = json!({ "type": kind, "object": object }).to_string();
    line.push('\n');
    line.into_bytes()
}
