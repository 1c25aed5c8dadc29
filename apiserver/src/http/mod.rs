//! The Kubernetes HTTP API, served beside gRPC on every master's client port (the front
//! door, `rudder_raftstore::front_door`, sends it everything that is not gRPC), from the
//! same registry: one implementation of the semantics, two wire forms.
//!
//! ```text
//!  /api, /apis (aggregated or legacy), /apis/G, /api/v1, /apis/G/V, /version
//!                                                     ─► discovery (pure documents)
//!  /openapi/v2                                         ─► openapi_v2 (JSON or protobuf)
//!  /openapi/v3[/<group version>]                       ─► openapi (built once)
//!  /healthz, /livez, /readyz                          ─► health (a quorum read)
//!  /metrics                                           ─► the process' Prometheus figures
//!  every path ─ measure ─ authorize (crate::authz) ─┐
//!  /api/v1/..., /apis/G/V/...  ─ guard ─ paths (pure) ─► verbs ─► Registry
//!                                  options (pure) ┘  │ respond: JSON, Status, streamed
//!                                                    │ lists, Tables (table, pure)
//!                                                    └ watch: event lines; scale (pure);
//!                                                      pod_logs, pod_exec (exec, attach),
//!                                                      pod_port_forward (spdy_session.rs
//!                                                      over spdy.rs):
//!                                                      from the pod's node (crate::pod_node)
//!  /apis/authorization.k8s.io/v1/...accessreviews ─► reviews (crate::authz::review)
//! ```

mod authorize;
mod discovery;
mod guard;
mod measure;
mod openapi;
mod openapi_v2;
mod options;
mod paths;
mod pod_exec;
mod pod_logs;
mod pod_port_forward;
mod protobuf;
mod respond;
mod reviews;
mod scale;
mod spdy;
mod spdy_session;
mod table;
mod verbs;
mod watch;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use http::{HeaderMap, Method, StatusCode};
use serde_json::Value;

use crate::audit::AuditLog;
use crate::authz::{self, Authorizer};
use crate::error::ApiError;
use crate::kinds::Warnings;
use crate::list::ListOptions;
use crate::registry::Registry;
use crate::request_metrics::ApiMetrics;
use rudder_proto::metrics::{Metrics, CONTENT_TYPE};

/// The API's routes over `registry`, measured in `api`, with the process' `metrics` at
/// `/metrics`. Bodies are limited to `max_request_bytes`.
pub fn router(
    registry: Registry,
    max_request_bytes: usize,
    metrics: Metrics,
    api: ApiMetrics,
    audit: Option<AuditLog>,
    authorizer: Authorizer,
) -> Router {
    let state = Http {
        registry,
        max_request_bytes,
        authorizer: authorizer.clone(),
    };
    Router::new()
        .route("/api", get(|headers: HeaderMap| groups(headers, true)))
        .route(
            "/api/v1",
            get(|| document(discovery::resource_list("", "v1"))),
        )
        .route("/apis", get(|headers: HeaderMap| groups(headers, false)))
        .route(
            "/apis/{group}",
            get(|Path(group): Path<String>| document(discovery::api_group(&group))),
        )
        .route(
            "/apis/{group}/{version}",
            get(|Path((group, version)): Path<(String, String)>| {
                document(discovery::resource_list(&group, &version))
            }),
        )
        .route("/version", get(|| document(Some(discovery::version()))))
        .route(
            "/openapi/v2",
            get(|headers: HeaderMap| async move {
                let accept = headers
                    .get(http::header::ACCEPT)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or("");
                let document = &*openapi_v2::DOCUMENT;
                if openapi_v2::wants_protobuf(accept) {
                    let body = Body::from(document.protobuf.clone());
                    respond::with_body(StatusCode::OK, openapi_v2::PROTOBUF, body)
                } else {
                    let body = Body::from(document.json.clone());
                    respond::with_body(StatusCode::OK, respond::JSON, body)
                }
            }),
        )
        .route("/openapi/v3", get(|| document(Some(openapi::index()))))
        .route(
            "/openapi/v3/{*path}",
            get(|Path(path): Path<String>| async move {
                match openapi::document_at(&path) {
                    Some(document) => respond::with_body(
                        StatusCode::OK,
                        respond::JSON,
                        Body::from(document.json.clone()),
                    ),
                    None => respond::error(&paths::not_found()),
                }
            }),
        )
        .route("/livez", get(|| async { (StatusCode::OK, "ok") }))
        .route("/healthz", get(ready))
        .route("/readyz", get(ready))
        .route(
            "/metrics",
            get(move || async move {
                respond::with_body(StatusCode::OK, CONTENT_TYPE, Body::from(metrics.encode()))
            }),
        )
        .fallback(resource)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            authorizer,
            authorize::authorized,
        ))
        .layer(axum::middleware::from_fn_with_state(
            measure::Measuring {
                metrics: api,
                audit,
            },
            measure::measured,
        ))
}

#[derive(Clone)]
struct Http {
    registry: Registry,
    max_request_bytes: usize,
    authorizer: Authorizer,
}

/// `/api` or `/apis`: the aggregated document when the client asks for it (kubectl does
/// first: one request instead of one per group version), else the legacy list.
async fn groups(headers: HeaderMap, core: bool) -> Response {
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    if discovery::wants_aggregated(accept) {
        let body = Body::from(discovery::aggregated(core).to_string());
        return respond::with_body(StatusCode::OK, discovery::AGGREGATED_CONTENT_TYPE, body);
    }
    let legacy = if core {
        discovery::core_versions()
    } else {
        discovery::group_list()
    };
    respond::json(StatusCode::OK, &legacy)
}

async fn document(document: Option<Value>) -> Response {
    match document {
        Some(document) => respond::json(StatusCode::OK, &document),
        None => respond::error(&paths::not_found()),
    }
}

/// Ready when the store answers a linearizable read (a leader and a quorum), as
/// kube-apiserver's `etcd` check asks etcd.
async fn ready(State(http): State<Http>) -> Response {
    let probe = ListOptions {
        limit: 1,
        ..ListOptions::default()
    };
    match http.registry.list("namespaces", &probe).await {
        Ok(_) => respond::with_body(StatusCode::OK, "text/plain", Body::from("ok")),
        Err(error) => respond::with_body(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            Body::from(format!("[-]etcd failed: {error}\nreadyz check failed\n")),
        ),
    }
}

async fn resource(State(http): State<Http>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if let Err(error) = guard::admit(&parts.headers) {
        return respond::error(&error);
    }
    let review = authz::review::at_path(parts.uri.path());
    let path = match paths::parse(parts.uri.path()) {
        Some(Ok(path)) => path,
        Some(Err(_)) if review.is_some() => {
            let (resource, namespace) = review.unwrap_or_default();
            let body = match axum::body::to_bytes(body, http.max_request_bytes).await {
                Ok(body) => body,
                Err(error) => {
                    return respond::error(&ApiError::bad_request(format!(
                        "reading the request body: {error}"
                    )))
                }
            };
            let at = (resource, namespace.as_str());
            return reviews::answer(&http.authorizer, &parts, at, &body).await;
        }
        Some(Err(error)) => return respond::error(&error),
        None => return respond::error(&paths::not_found()),
    };
    let streamed = path.info.kind == "Pod"
        && !path.name.is_empty()
        && matches!(path.subresource.as_str(), "exec" | "attach" | "portforward");
    if streamed {
        let (namespace, name) = (path.namespace.clone(), path.name.clone());
        let answer = match path.subresource.as_str() {
            "exec" => pod_exec::exec(&http.registry, parts, &namespace, &name).await,
            "attach" => pod_exec::attach(&http.registry, parts, &namespace, &name).await,
            _ => pod_port_forward::port_forward(&http.registry, parts, &namespace, &name).await,
        };
        return answer.unwrap_or_else(|error| respond::error(&error));
    }
    let query = match parts.uri.query() {
        None => options::Query::new(),
        Some(text) => match serde_urlencoded::from_str(text) {
            Ok(query) => query,
            Err(error) => {
                return respond::error(&ApiError::bad_request(format!(
                    "the query string is not valid: {error}"
                )))
            }
        },
    };
    let body = match axum::body::to_bytes(body, http.max_request_bytes).await {
        Ok(body) => body,
        Err(error) => {
            let error = error.into_inner();
            return respond::error(&if error.is::<http_body_util::LengthLimitError>() {
                ApiError::BodyTooLarge {
                    limit: http.max_request_bytes,
                }
            } else {
                ApiError::bad_request(format!("reading the request body: {error}"))
            });
        }
    };
    // kubectl's typed clients send protobuf: read once into the JSON every verb takes.
    let protobuf = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(protobuf::is_protobuf);
    // Only the verbs that take an object (a PATCH in protobuf is refused as patches are).
    let takes_object = matches!(parts.method, Method::POST | Method::PUT | Method::DELETE);
    let body = match protobuf && takes_object && !body.is_empty() {
        true => match protobuf::object_from_protobuf(&body) {
            Ok(object) => bytes::Bytes::from(object.to_string()),
            Err(error) => return respond::error(&error),
        },
        false => body,
    };
    verbs::serve(verbs::Call {
        registry: &http.registry,
        method: parts.method,
        path,
        query,
        headers: parts.headers,
        body,
        warnings: Warnings::default(),
    })
    .await
}
