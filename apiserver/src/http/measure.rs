//! Every resource request over HTTP timed and counted ([`crate::request_metrics`]): by
//! Kubernetes verb, resource, subresource and the answer's code; a watch counted open
//! until its body ends.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;

use super::{options, paths};
use crate::request_metrics::{http_verb, ApiMetrics};

/// The middleware: requests for resource paths are measured, all others pass as they are.
pub async fn measured(State(metrics): State<ApiMetrics>, request: Request, next: Next) -> Response {
    let Some(Ok(path)) = paths::parse(request.uri().path()) else {
        return next.run(request).await;
    };
    let watch = request
        .uri()
        .query()
        .and_then(|text| serde_urlencoded::from_str::<options::Query>(text).ok())
        .is_some_and(|query| options::is_watch(&query));
    let verb = http_verb(request.method(), !path.name.is_empty(), watch);
    let resource = path.info.resource;
    let in_flight = metrics.request(verb, resource, &path.subresource);
    let response = next.run(request).await;
    let status = response.status();
    in_flight.finish(status.as_u16());
    if verb != "watch" || !status.is_success() {
        return response;
    }
    let open = metrics.watch_opened(resource);
    response.map(|body| {
        Body::from_stream(body.into_data_stream().map(move |chunk| {
            // Counted open until the body is dropped (ended, or its client went away).
            let _open = &open;
            chunk
        }))
    })
}
