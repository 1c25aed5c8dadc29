//! Every resource request over HTTP timed and counted ([`crate::request_metrics`]): by
//! Kubernetes verb, resource, subresource and the answer's code; a watch counted open
//! until its body ends. Each is recorded in the audit log, when the master keeps one.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;

use rudder_proto::authn::Caller;

use super::{options, paths};
use crate::audit::{AuditLog, Audited};
use crate::request_metrics::{http_verb, ApiMetrics};

/// What the middleware measures with and records to.
#[derive(Clone)]
pub struct Measuring {
    pub metrics: ApiMetrics,
    pub audit: Option<AuditLog>,
}

/// The middleware: requests for resource paths are measured, all others pass as they are.
pub async fn measured(
    State(Measuring { metrics, audit }): State<Measuring>,
    request: Request,
    next: Next,
) -> Response {
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
    let received = jiff::Timestamp::now();
    let caller = request.extensions().get::<Caller>().cloned();
    // Path and query, as Kubernetes records it (h2 requests carry the whole URI).
    let uri = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.uri().path().to_string(), ToString::to_string);
    let recording = audit.as_ref().and_then(|log| {
        log.pending(&Audited {
            verb,
            resource,
            subresource: &path.subresource,
            namespace: &path.namespace,
            name: &path.name,
            caller: caller.as_ref(),
            uri: &uri,
            code: None,
            received,
        })
    });
    let in_flight = metrics.request(verb, resource, &path.subresource);
    let response = next.run(request).await;
    let status = response.status();
    in_flight.finish(status.as_u16());
    if let Some(recording) = recording {
        recording.answered(status.as_u16());
    }
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
