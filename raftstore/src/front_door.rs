//! One client port, two protocols, as kube-apiserver and etcd's gateway serve one port:
//! a request whose `content-type` is `application/grpc…` goes to the gRPC services (etcd's
//! and whatever a master mounts beside them); every other request, over HTTP/1.1 or h2, goes
//! to the HTTP service mounted with them (a `404` naming what the port speaks when none is).
//!
//! Connections are served with upgrades (the WebSocket streams of `exec` and `attach`).
//! A stop closes the listener at once and ends every connection gracefully: requests in
//! flight finish, long streams end when their own code sees the stop (the API's watches do).
//! Every connection is read through [`SchemeStripping`], for etcdctl's `http://` authorities.

use axum::response::{IntoResponse, Response};
use futures::future::Either;
use http::{header, Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;
use tower::ServiceExt;

use rudder_proto::authn::{bearer, Authenticators, Caller};
use rudder_proto::tls::subject_of;
use std::sync::Arc;

use crate::authority_scheme::SchemeStripping;

/// What a client port serves.
pub struct ClientServices {
    /// The gRPC services, by their paths.
    pub grpc: Routes,
    /// Everything that is not gRPC (the Kubernetes HTTP API on a master).
    pub http: Option<axum::Router>,
    /// TLS (none: plaintext, for loopback). A connection's [`Caller`] is a request
    /// extension; callers without a certificate are refused all but health checks.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// What judges the bearer token a TLS caller without a certificate may present
    /// instead (a token file, ServiceAccount tokens), each in turn.
    pub tokens: Authenticators,
    /// gRPC methods (paths) a caller without credentials may call besides health checks:
    /// a master's `Join`, whose join token is the credential.
    pub open_methods: &'static [&'static str],
}

/// How long a client has for its TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What a caller without a certificate may ask: health and version, as Kubernetes lets
/// anyone (`system:public-info-viewer`).
pub fn open_to_anyone(path: &str) -> bool {
    ["/healthz", "/livez", "/readyz", "/version"]
        .iter()
        .any(|open| path == *open || path.starts_with(&format!("{open}/")))
}

/// What a caller without credentials may call: health checks, and the gRPC methods a
/// master opens ([`ClientServices::open_methods`]).
#[derive(Clone, Copy)]
struct OpenMethods(&'static [&'static str]);

impl OpenMethods {
    fn admit(&self, path: &str) -> bool {
        open_to_anyone(path) || self.0.contains(&path)
    }
}

/// Whether a request is gRPC: `application/grpc`, `application/grpc+proto`, ... (gRPC-Web's
/// `application/grpc-web` is not served).
pub fn is_grpc<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value == "application/grpc"
                || value.starts_with("application/grpc+")
                || value.starts_with("application/grpc;")
        })
}

/// Serves `services` on `listener` until `stopped` turns true, then waits for every
/// connection to end. HTTP/2 connections take at most `max_concurrent_streams` streams.
pub async fn serve(
    listener: TcpListener,
    services: ClientServices,
    max_concurrent_streams: u32,
    mut stopped: watch::Receiver<bool>,
) {
    let tls = services.tls;
    let grpc = services.grpc.prepare().into_axum_router();
    let http = services
        .http
        .unwrap_or_else(|| axum::Router::new().fallback(not_served));
    let tokens = services.tokens;
    let open_methods = OpenMethods(services.open_methods);
    let front = tower::service_fn(move |mut request: Request<Incoming>| {
        if let Err(why) = with_token(&mut request, &tokens) {
            return Either::Right(Either::Right(std::future::ready(Ok(unauthenticated(
                is_grpc(&request),
                why,
            )))));
        }
        let known = matches!(
            request.extensions().get::<Caller>(),
            Some(Caller::Plaintext | Caller::Authenticated(_))
        );
        if !known && !open_methods.admit(request.uri().path()) {
            return Either::Right(Either::Right(std::future::ready(Ok(unauthenticated(
                is_grpc(&request),
                NO_CREDENTIALS,
            )))));
        }
        if is_grpc(&request) && !may_use_the_store(&request) {
            let refused =
                tonic::Status::permission_denied(NOT_ROOT).into_http::<axum::body::Body>();
            return Either::Right(Either::Right(std::future::ready(Ok(refused))));
        }
        if is_grpc(&request) {
            let deadline = request
                .headers()
                .get("grpc-timeout")
                .and_then(|value| value.to_str().ok())
                .and_then(grpc_timeout);
            Either::Left(within(deadline, grpc.clone().oneshot(request)))
        } else {
            Either::Right(Either::Left(http.clone().oneshot(request)))
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // SchemeStripping assumes h2's defaults for the HPACK table (4 KiB) and frame size
    // (16 KiB): raising either here means raising its limits too.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(max_concurrent_streams);
    builder.http1().timer(TokioTimer::new());
    let stopping = stopped.clone();
    // Connections are tasks of this one: if the server gives up waiting for them (its
    // grace period) and aborts it, they end with it, releasing what they hold.
    let mut connections = tokio::task::JoinSet::new();
    let mut stop = std::pin::pin!(async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    });
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // Out of file descriptors and the like: keep serving what is open.
                        tracing::warn!(%error, "accepting a client connection");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%error, "setting TCP_NODELAY on a client connection");
                }
                let (builder, front, tls) = (builder.clone(), front.clone(), tls.clone());
                let stopping = stopping.clone();
                connections.spawn(async move {
                    let Some(tls) = tls else {
                        let front = with_caller(front, Caller::Plaintext);
                        let connection = builder.serve_connection_with_upgrades(
                            TokioIo::new(SchemeStripping::new(stream)),
                            front,
                        );
                        return until_stopped_gracefully(connection, stopping).await;
                    };
                    let handshake = tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        tokio_rustls::TlsAcceptor::from(tls).accept(stream),
                    );
                    let mut stop = stopping.clone();
                    let accepted = tokio::select! {
                        accepted = handshake => accepted,
                        () = async {
                            let _ = stop.wait_for(|stop| *stop).await;
                        } => return,
                    };
                    let stream = match accepted {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            // A wrong certificate is worth an operator's notice.
                            tracing::info!(%error, "a client's TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!("a client's TLS handshake did not finish in time");
                            return;
                        }
                    };
                    let caller = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(|der| Some(subject_of(der)?.presenting(der.as_ref())))
                        .map_or(Caller::Anonymous, Caller::Authenticated);
                    let connection = builder.serve_connection_with_upgrades(
                        TokioIo::new(SchemeStripping::new(stream)),
                        with_caller(front, caller),
                    );
                    until_stopped_gracefully(connection, stopping).await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut stop => break,
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Serves `connection` to its end; once `stopped` turns true, ends it gracefully (requests
/// in flight finish, no new ones are read).
async fn until_stopped_gracefully<C>(connection: C, mut stopped: watch::Receiver<bool>)
where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    let mut connection = std::pin::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        () = async {
            let _ = stopped.wait_for(|stop| *stop).await;
        } => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = ended {
        tracing::debug!(%error, "client connection ended");
    }
}

/// A client's `grpc-timeout` (up to 8 digits, then H, M, S, m, u or n), as gRPC defines
/// it; `None` for a header that does not read as one (ignored, as grpc-go ignores it).
pub fn grpc_timeout(value: &str) -> Option<std::time::Duration> {
    use std::time::Duration;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Answers with DEADLINE_EXCEEDED when `answer` has not begun within the client's deadline,
/// as a gRPC server enforces `grpc-timeout` (tonic's own layer is private to its server,
/// which this port does not use). A stream that has begun (a watch) runs on.
async fn within<E>(
    deadline: Option<std::time::Duration>,
    answer: impl std::future::Future<Output = Result<Response, E>>,
) -> Result<Response, E> {
    let Some(deadline) = deadline else {
        return answer.await;
    };
    match tokio::time::timeout(deadline, answer).await {
        Ok(answered) => answered,
        Err(_) => Ok(tonic::Status::deadline_exceeded(format!(
            "the request's grpc-timeout ({deadline:?}) passed before it was answered"
        ))
        .into_http::<axum::body::Body>()),
    }
}

/// `front` with `caller` put in every request's extensions.
fn with_caller<S>(
    front: S,
    caller: Caller,
) -> TowerToHyperService<
    impl tower::Service<
            Request<Incoming>,
            Response = S::Response,
            Error = S::Error,
            Future = S::Future,
        > + Clone,
>
where
    S: tower::Service<Request<Incoming>> + Clone,
{
    TowerToHyperService::new(tower::util::MapRequest::new(
        front,
        move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(caller.clone());
            request
        },
    ))
}

const NO_CREDENTIALS: &str = "this master takes only clients with a certificate from the \
     cluster CA (--client-certificate and --client-key, or the CLI config and kubeconfig \
     `rudder up` wrote) or a bearer token it knows";

const NOT_ROOT: &str = "the etcd API is the cluster's store itself: it takes only callers in \
     the group system:masters (an admin certificate); use the Kubernetes API for everything else";

/// The group whose members may use the store's own API (etcd's root).
const ROOT_GROUP: &str = "system:masters";

/// Whether the request may reach its service: the etcd API (`/etcdserverpb.…`) is the raw
/// store, under every authorization, so only trusted callers (plaintext on loopback) and
/// `system:masters` may call it, as etcd's client port takes only its root once TLS is on.
fn may_use_the_store<B>(request: &Request<B>) -> bool {
    if !request.uri().path().starts_with("/etcdserverpb.") {
        return true;
    }
    match request.extensions().get::<Caller>() {
        None | Some(Caller::Plaintext) => true,
        Some(Caller::Authenticated(subject)) => subject.groups.iter().any(|g| g == ROOT_GROUP),
        Some(Caller::Anonymous) => false,
    }
}

/// A caller without a certificate who presents a bearer token becomes the token's subject;
/// an unknown token is refused (never taken as anonymous).
fn with_token<B>(request: &mut Request<B>, tokens: &Authenticators) -> Result<(), &'static str> {
    if request.extensions().get::<Caller>() != Some(&Caller::Anonymous) {
        return Ok(());
    }
    let Some(token) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer)
    else {
        return Ok(());
    };
    let named = tokens.subject(token);
    match named {
        Some(subject) => {
            let caller = Caller::Authenticated(subject);
            request.extensions_mut().insert(caller);
            Ok(())
        }
        None => {
            // Guessing shows in the log (the audit log records only who got in).
            tracing::warn!(path = %request.uri().path(), "a bearer token this master does not know");
            Err("the bearer token is not one this master knows")
        }
    }
}

/// The answer to a caller the master does not know: gRPC's UNAUTHENTICATED, or
/// Kubernetes' 401 Status.
fn unauthenticated(grpc: bool, why: &str) -> Response {
    if grpc {
        return tonic::Status::unauthenticated(why).into_http::<axum::body::Body>();
    }
    let status = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("Unauthorized: {why}"), "reason": "Unauthorized", "code": 401,
    });
    (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "application/json")],
        status.to_string(),
    )
        .into_response()
}

async fn not_served() -> Response {
    (
        StatusCode::NOT_FOUND,
        "this port serves gRPC only (content-type: application/grpc)\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_content_type(value: &str) -> Request<()> {
        Request::builder()
            .header(header::CONTENT_TYPE, value)
            .body(())
            .unwrap()
    }

    #[test]
    fn only_the_clusters_root_and_trusted_callers_reach_the_etcd_api() {
        let call = |path: &str, caller: Option<Caller>| {
            let mut request = Request::builder().uri(path).body(()).unwrap();
            if let Some(caller) = caller {
                request.extensions_mut().insert(caller);
            }
            may_use_the_store(&request)
        };
        let user = |groups: &[&str]| {
            Some(Caller::Authenticated(rudder_proto::authn::Subject {
                user: "u".into(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
                ..Default::default()
            }))
        };
        let range = "/etcdserverpb.KV/Range";
        assert!(call(range, Some(Caller::Plaintext)));
        assert!(call(range, user(&["system:masters"])));
        assert!(!call(range, user(&["system:nodes"])));
        assert!(!call(range, Some(Caller::Anonymous)));
        // The API's own services decide for themselves.
        assert!(call("/rudder.api.Resources/Get", user(&["system:nodes"])));
    }

    #[test]
    fn a_grpc_timeout_reads_in_each_unit_and_a_bad_one_is_none() {
        use std::time::Duration;
        assert_eq!(grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(grpc_timeout("10S"), Some(Duration::from_secs(10)));
        assert_eq!(grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(
            grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "S", "123456789S", "10s", "1.5S", "-1S", "10"] {
            assert_eq!(grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn an_answer_past_the_deadline_is_deadline_exceeded_and_one_in_time_is_itself() {
        use std::time::Duration;
        let late = within::<()>(
            Some(Duration::from_millis(20)),
            std::future::pending::<Result<Response, ()>>(),
        )
        .await
        .unwrap();
        // DEADLINE_EXCEEDED is gRPC status 4, in the headers of a trailers-only answer.
        assert_eq!(late.headers()["grpc-status"], "4");
        let in_time = within::<()>(Some(Duration::from_secs(5)), async {
            Ok(StatusCode::ACCEPTED.into_response())
        })
        .await
        .unwrap();
        assert_eq!(in_time.status(), StatusCode::ACCEPTED);
        let unbounded = within::<()>(None, async { Ok(StatusCode::OK.into_response()) });
        assert_eq!(unbounded.await.unwrap().status(), StatusCode::OK);
    }

    #[test]
    fn grpc_is_told_apart_by_its_content_type() {
        assert!(is_grpc(&with_content_type("application/grpc")));
        assert!(is_grpc(&with_content_type("application/grpc+proto")));
        assert!(!is_grpc(&with_content_type("application/json")));
        assert!(!is_grpc(&with_content_type("application/grpc-web")));
        assert!(!is_grpc(&Request::new(())));
    }
}
