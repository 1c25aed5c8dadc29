//! [`ApiClient`]: the Rudder API's client for every component that talks to the API server
//! (CLI, actors, nodes, benchmarks). It knows every master and fails over: a call that cannot
//! reach a master, or finds it without a quorum, is tried on the next one. Writes are
//! numbered ([`crate::request_ids`]), so one whose fate is unknown (the connection broke, the
//! master stopped or timed out) is retried too: the store applies it once. [`Fenced`] sends
//! the same writes under a leader's fence ([`ApiClient::fenced`]); [`ClientError`] (in
//! `client/error.rs`) says why a call failed, as kubectl words it. A client with a bearer
//! token ([`ApiClient::with_token`]) sends it with every call ([`Credentials`]).
//! Over 700 lines, kept whole: the failover loop, the channels it keeps (remade when a
//! renewed certificate replaces the identity) and the verbs built on it are one idea.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::api;
use crate::api::resources_client::ResourcesClient;
use crate::dial::Dial;
use crate::request_ids::{RequestIds, Ticket, REQUEST_ID_HEADER};
use crate::tls::{ClientTls, Issued};

mod error;
mod fenced;
pub use error::ClientError;
pub use fenced::Fenced;

/// A master's channel, each call carrying the client's credentials.
pub type Connection = InterceptedService<Channel, Credentials>;

/// What a client presents besides its certificate: a bearer token, on every call.
#[derive(Clone, Default)]
pub struct Credentials {
    authorization: Option<MetadataValue<Ascii>>,
}

impl Interceptor for Credentials {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(authorization) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        Ok(request)
    }
}

/// The `Resources` client on a master's channel, taking the largest answers (lists).
fn resources(channel: Connection) -> ResourcesClient<Connection> {
    ResourcesClient::new(channel)
        .max_decoding_message_size(MAX_RESPONSE_BYTES)
        .max_encoding_message_size(MAX_RESPONSE_BYTES)
}

/// How long a unary call may take on one master before the next one is tried.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The largest response accepted (a full list of a big kind is many megabytes).
const MAX_RESPONSE_BYTES: usize = 512 * 1024 * 1024;
/// How long calls keep going round the masters while none can serve (an election).
const FAILOVER_PATIENCE: Duration = Duration::from_secs(5);
const FAILOVER_PAUSE: Duration = Duration::from_millis(100);

/// A client of the `Resources` service over several masters.
pub struct ApiClient {
    endpoints: Vec<String>,
    /// The master that answered last: calls start there.
    current: AtomicUsize,
    channels: Mutex<Vec<Option<Channel>>>,
    /// Numbers this client's writes.
    request_ids: RequestIds,
    /// TLS to the masters (none: plaintext, which masters serve only on loopback); its
    /// identity is replaced when renewed ([`ApiClient::renew_identity`]).
    tls: std::sync::RwLock<Option<ClientTls>>,
    /// Set once a master answered in another protocol (TLS, asked in plaintext).
    other_protocol: std::sync::atomic::AtomicBool,
    credentials: Credentials,
}

impl ApiClient {
    /// `endpoints` are `host:port` client addresses of masters (at least one).
    pub fn new(endpoints: Vec<String>) -> Self {
        Self::with_tls(endpoints, None)
    }

    /// A client speaking TLS to the masters when `tls` is given.
    pub fn with_tls(endpoints: Vec<String>, tls: Option<ClientTls>) -> Self {
        let channels = Mutex::new(vec![None; endpoints.len()]);
        Self {
            endpoints,
            current: AtomicUsize::new(0),
            channels,
            request_ids: RequestIds::new(),
            tls: std::sync::RwLock::new(tls),
            other_protocol: Default::default(),
            credentials: Credentials::default(),
        }
    }

    /// This client, sending `token` as its bearer token on every call (a ServiceAccount's,
    /// or one of a master's token file). Fails if the token cannot be a header's value.
    pub fn with_token(mut self, token: &str) -> Result<Self, String> {
        let value = format!("Bearer {}", token.trim())
            .parse()
            .map_err(|_| "the token holds characters a header cannot carry".to_string())?;
        self.credentials.authorization = Some(value);
        Ok(self)
    }

    /// The TLS this client speaks, for channels of its own (the etcd API's, say).
    pub fn tls(&self) -> Option<ClientTls> {
        self.tls.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Presents `identity` (a renewed certificate) from the next connection on: every
    /// channel is made again; calls and streams in flight keep their connection, which the
    /// master checked when it was made.
    pub fn renew_identity(&self, identity: Issued) {
        if let Some(tls) = self.tls.write().unwrap_or_else(|p| p.into_inner()).as_mut() {
            tls.identity = Some(identity);
        }
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels.iter_mut().for_each(|channel| *channel = None);
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The master calls go to now.
    pub fn current_endpoint(&self) -> &str {
        let index = self.current.load(Ordering::Relaxed) % self.endpoints.len().max(1);
        self.endpoints.get(index).map(String::as_str).unwrap_or("")
    }

    fn channel(&self, index: usize) -> Result<Connection, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let credentials = self.credentials.clone();
        if let Some(channel) = &channels[index] {
            return Ok(InterceptedService::new(channel.clone(), credentials));
        }
        let tls = self.tls();
        let dial = Dial::master(&self.endpoints[index], tls.as_ref());
        let endpoint = dial
            .endpoint()?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        let channel = dial.connect_lazy(endpoint)?;
        channels[index] = Some(channel.clone());
        Ok(InterceptedService::new(channel, credentials))
    }

    fn forget(&self, index: usize) {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels[index] = None;
    }

    /// Runs a unary call, trying each master once, starting with the current one.
    pub async fn call<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: Fn(ResourcesClient<Connection>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.attempt(|channel| call(resources(channel)), Some(CALL_TIMEOUT), None)
            .await
    }

    /// Runs a write (create, update, patch, delete, bind): `call` sends the request it is
    /// given, which carries this write's number. Besides what [`ApiClient::call`] retries, a
    /// write is retried on the next master after a broken connection, a stopped master or
    /// a timeout: the store recognises the number and applies the write once. Like every
    /// call it goes round the masters for 5 s of no answer (never past
    /// [`crate::request_ids::RETRY_HORIZON`]); then it fails saying the write may or may not
    /// have been applied.
    pub async fn write<M, T, F, Fut>(&self, message: M, call: F) -> Result<T, ClientError>
    where
        M: Clone,
        F: Fn(ResourcesClient<Connection>, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let ticket = self.request_ids.begin();
        let numbered = |channel| {
            let mut request = tonic::Request::new(message.clone());
            if let Ok(value) = ticket.number().to_header().parse() {
                request.metadata_mut().insert(REQUEST_ID_HEADER, value);
            }
            call(resources(channel), request)
        };
        self.attempt(numbered, Some(CALL_TIMEOUT), Some(&ticket))
            .await
    }

    /// Like [`ApiClient::call`], without a time limit (for watch streams).
    pub async fn open<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: Fn(ResourcesClient<Connection>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.attempt(|channel| call(resources(channel)), None, None)
            .await
    }

    /// Like [`ApiClient::open`], for another service the masters serve (the `Kubelet`
    /// service, which forwards each call to the pod's node): `call` gets a master's channel.
    pub async fn open_on<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: Fn(Connection) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.attempt(call, None, None).await
    }

    /// `write`: the ticket of a numbered write (retried more freely, see [`ApiClient::write`]).
    async fn attempt<T, F, Fut>(
        &self,
        call: F,
        limit: Option<Duration>,
        write: Option<&Ticket<'_>>,
    ) -> Result<T, ClientError>
    where
        F: Fn(Connection) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let count = self.endpoints.len();
        if count == 0 {
            return Err(ClientError::Unreachable {
                endpoints: "(none)".into(),
                last: "no server address given".into(),
            });
        }
        let deadline = tokio::time::Instant::now() + FAILOVER_PATIENCE;
        let mut last = String::new();
        loop {
            match self.round(&call, limit, write, &mut last).await {
                Some(outcome) => return outcome,
                None if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(FAILOVER_PAUSE).await;
                }
                None => break,
            }
        }
        if write.is_some() {
            last.push_str("; the write may or may not have been applied: read before retrying");
        }
        if self.tls().is_none() && self.other_protocol.load(Ordering::Relaxed) {
            last.push_str(
                "; a master answered in another protocol: if the masters speak TLS, give \
                 --certificate-authority and a client certificate (or use the CLI config \
                 `rudder up` wrote)",
            );
        }
        Err(ClientError::Unreachable {
            endpoints: self.endpoints.join(","),
            last,
        })
    }

    /// One try on each master, starting with the current one; `None` if none could serve.
    async fn round<T, F, Fut>(
        &self,
        call: &F,
        limit: Option<Duration>,
        write: Option<&Ticket<'_>>,
        last: &mut String,
    ) -> Option<Result<T, ClientError>>
    where
        F: Fn(Connection) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let count = self.endpoints.len();
        let start = self.current.load(Ordering::Relaxed);
        // A numbered write whose fate is unknown may go to the next master, within the horizon.
        let may_retry_unknown = write.is_some_and(|ticket| ticket.may_retry());
        for offset in 0..count {
            let index = (start + offset) % count;
            let channel = match self.channel(index) {
                Ok(channel) => channel,
                Err(error) => {
                    *last = error;
                    continue;
                }
            };
            let outcome = match limit {
                Some(limit) => match tokio::time::timeout(limit, call(channel.clone())).await {
                    Ok(outcome) => outcome,
                    Err(_) if may_retry_unknown => {
                        *last = format!(
                            "{}: no answer in {} s",
                            self.endpoints[index],
                            limit.as_secs()
                        );
                        self.forget(index);
                        continue;
                    }
                    Err(_) => {
                        // The request may have been applied: trying elsewhere could apply
                        // it twice, so the caller decides.
                        self.current.store((index + 1) % count, Ordering::Relaxed);
                        return Some(Err(ClientError::Api {
                            code: Code::DeadlineExceeded,
                            reason: "Timeout".into(),
                            message: format!(
                                "{} gave no answer within {} s; the request may or may not \
                                 have been applied",
                                self.endpoints[index],
                                limit.as_secs()
                            ),
                            status: String::new(),
                        }));
                    }
                },
                None => call(channel).await,
            };
            match outcome {
                Ok(response) => {
                    self.current.store(index, Ordering::Relaxed);
                    return Some(Ok(response.into_inner()));
                }
                Err(status)
                    if is_retryable(&status) || (may_retry_unknown && is_unknown_fate(&status)) =>
                {
                    *last = format!("{}: {}", self.endpoints[index], status.message());
                    self.forget(index);
                }
                Err(status) if is_not_our_protocol(&status) => {
                    // Nothing reached an API server: what answered spoke another protocol.
                    self.other_protocol.store(true, Ordering::Relaxed);
                    *last = format!("{}: {}", self.endpoints[index], status.message());
                    self.forget(index);
                }
                Err(status) => {
                    self.current.store(index, Ordering::Relaxed);
                    return Some(Err(ClientError::from_status(&status)));
                }
            }
        }
        self.current.store((start + 1) % count, Ordering::Relaxed);
        None
    }

    // ---- The verbs with objects as JSON (the calls every component makes) ----

    pub async fn get_object(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<serde_json::Value, ClientError> {
        let request = api::GetRequest {
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
        };
        let object = self
            .call(|mut c| {
                let request = request.clone();
                async move { c.get(request).await }
            })
            .await?;
        decode(&object.json)
    }

    /// Lists objects (items as JSON bytes) with the revision to watch from.
    pub async fn list(&self, request: api::ListRequest) -> Result<api::ListResponse, ClientError> {
        self.call(|mut c| {
            let request = request.clone();
            async move { c.list(request).await }
        })
        .await
    }

    /// Opens a watch stream on one master (without a time limit). When the stream breaks,
    /// [`ApiClient::skip_current`] sends the next watch to another master.
    pub async fn watch(
        &self,
        request: api::WatchRequest,
    ) -> Result<tonic::Streaming<api::WatchEvent>, ClientError> {
        self.open(|mut c| {
            let request = request.clone();
            async move { c.watch(request).await }
        })
        .await
    }

    pub async fn create_object(
        &self,
        resource: &str,
        namespace: &str,
        object: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        self.create_under(None, resource, namespace, object).await
    }

    /// A token for ServiceAccount `namespace/name`: `request` is a TokenRequest; the answer
    /// holds the token in `status.token`.
    pub async fn create_token(
        &self,
        namespace: &str,
        name: &str,
        request: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        let request = api::CreateTokenRequest {
            namespace: namespace.to_string(),
            name: name.to_string(),
            json: request.to_string().into_bytes(),
        };
        let answer = self
            .call(|mut c| {
                let request = request.clone();
                async move { c.create_token(request).await }
            })
            .await?;
        decode(&answer.json)
    }

    /// Replaces the object (`status`: only its status), compare-and-swap when `object`
    /// carries a resourceVersion.
    pub async fn update_object(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        object: &serde_json::Value,
        status: bool,
    ) -> Result<serde_json::Value, ClientError> {
        self.update_under(None, resource, namespace, name, object, status)
            .await
    }

    /// Applies a JSON merge patch to the object (`status`: to its status).
    pub async fn patch_object(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        patch: &serde_json::Value,
        status: bool,
    ) -> Result<serde_json::Value, ClientError> {
        self.patch_under(None, resource, namespace, name, patch, status)
            .await
    }

    pub async fn delete_object(
        &self,
        request: api::DeleteRequest,
    ) -> Result<api::DeleteResponse, ClientError> {
        self.write(
            request,
            |mut c, request| async move { c.delete(request).await },
        )
        .await
    }

    /// Evicts a pod (the eviction subresource): deletes it as `request` says unless the
    /// PodDisruptionBudget guarding it allows no disruption now, which fails with
    /// [`ClientError::is_too_many_requests`] (try again later). Answers as a delete does.
    pub async fn evict(
        &self,
        request: api::EvictRequest,
    ) -> Result<api::DeleteResponse, ClientError> {
        self.write(
            request,
            |mut c, request| async move { c.evict(request).await },
        )
        .await
    }

    /// After a broken stream: later calls start at the next master.
    pub fn skip_current(&self) {
        let count = self.endpoints.len().max(1);
        let index = self.current.load(Ordering::Relaxed);
        self.forget(index % count);
        self.current.store((index + 1) % count, Ordering::Relaxed);
    }

    // ---- Fenced writes (a leader-elected writer's; see `Fence` in api.proto) ----

    /// This client's writes carrying `fence`: each lands only while `fence`'s lease is held
    /// by its holder at its epoch, and is refused (`Forbidden`) otherwise. They are numbered
    /// like every write, so a retried one is applied once.
    pub fn fenced<'a>(&'a self, fence: &'a api::Fence) -> Fenced<'a> {
        Fenced {
            client: self,
            fence,
        }
    }

    async fn create_under(
        &self,
        fence: Option<&api::Fence>,
        resource: &str,
        namespace: &str,
        object: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        let request = api::CreateRequest {
            resource: resource.into(),
            namespace: namespace.into(),
            json: object.to_string().into_bytes(),
            fence: fence.cloned(),
            dry_run: false,
        };
        let created = self
            .write(
                request,
                |mut c, request| async move { c.create(request).await },
            )
            .await?;
        decode(&created.json)
    }

    /// Replaces a namespace's `spec.finalizers` with those of `namespace` (the finalize
    /// subresource; compare-and-swap when it carries a resourceVersion). A terminating
    /// namespace left without finalizers is deleted.
    pub async fn finalize_namespace(
        &self,
        namespace: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        self.finalize_under(None, namespace).await
    }

    async fn finalize_under(
        &self,
        fence: Option<&api::Fence>,
        namespace: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        let request = api::UpdateRequest {
            resource: "namespaces".into(),
            namespace: String::new(),
            name: namespace["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .into(),
            json: namespace.to_string().into_bytes(),
            fence: fence.cloned(),
            dry_run: false,
        };
        let finalized = self
            .write(request, |mut c, request| async move {
                c.finalize(request).await
            })
            .await?;
        decode(&finalized.json)
    }

    async fn update_under(
        &self,
        fence: Option<&api::Fence>,
        resource: &str,
        namespace: &str,
        name: &str,
        object: &serde_json::Value,
        status: bool,
    ) -> Result<serde_json::Value, ClientError> {
        let request = api::UpdateRequest {
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
            json: object.to_string().into_bytes(),
            fence: fence.cloned(),
            dry_run: false,
        };
        let updated = self
            .write(request, |mut c, request| async move {
                if status {
                    c.update_status(request).await
                } else {
                    c.update(request).await
                }
            })
            .await?;
        decode(&updated.json)
    }

    async fn patch_under(
        &self,
        fence: Option<&api::Fence>,
        resource: &str,
        namespace: &str,
        name: &str,
        patch: &serde_json::Value,
        status: bool,
    ) -> Result<serde_json::Value, ClientError> {
        let request = api::PatchRequest {
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
            patch: patch.to_string().into_bytes(),
            fence: fence.cloned(),
            status,
        };
        let patched = self
            .write(
                request,
                |mut c, request| async move { c.patch(request).await },
            )
            .await?;
        decode(&patched.json)
    }
}

/// An object the server sent, as JSON.
fn decode(json: &[u8]) -> Result<serde_json::Value, ClientError> {
    serde_json::from_slice(json).map_err(|error| ClientError::Api {
        code: Code::Internal,
        reason: "InternalError".into(),
        message: format!("the server sent an object that is not JSON: {error}"),
        status: String::new(),
    })
}

/// Whether trying another master is safe and may succeed: this one could not be reached
/// (the request never left), or it answered that the store has no leader (nothing was
/// proposed). A request that may have been applied (a timeout, a leader lost mid-write, a
/// connection broken after sending) is not retried: a create would be applied twice.
pub fn is_retryable(status: &Status) -> bool {
    let from_api_server = !status.details().is_empty();
    if !from_api_server {
        return status.code() == Code::Unavailable;
    }
    status.code() == Code::Unavailable
        && (status.message().contains("no leader is available")
            || status.message().contains("this member has stopped"))
}

/// Whether a call failed because what answered does not speak gRPC over HTTP/2 as this
/// client does (a TLS server asked in plaintext): no API server saw the request.
fn is_not_our_protocol(status: &Status) -> bool {
    status.details().is_empty()
        && status.code() == Code::Internal
        && status.message().contains("h2 protocol error")
}

/// Whether a numbered write's fate is unknown, so that sending it again is how to learn it:
/// no API server answered (the connection failed, or broke after sending: tonic says
/// Unavailable or Unknown "transport error"; an API server always sends a `Status`), or
/// the API server said the store is unavailable (no leader, a leader lost mid-write, a
/// store timeout).
fn is_unknown_fate(status: &Status) -> bool {
    let from_api_server = !status.details().is_empty();
    let broken = matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled
    );
    (!from_api_server && broken) || status.code() == Code::Unavailable
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: Code, status: serde_json::Value, message: &str) -> ClientError {
        ClientError::from_status(&Status::with_details(
            code,
            message,
            status.to_string().into_bytes().into(),
        ))
    }

    #[test]
    fn a_status_without_a_reason_prints_as_kubectl_prints_it() {
        let bare = refused(
            Code::Internal,
            serde_json::json!({ "kind": "Status", "code": 500, "message": "two budgets" }),
            "two budgets",
        );
        assert_eq!(bare.reason(), "");
        assert_eq!(bare.to_string(), "Error from server: two budgets");
        let named = refused(
            Code::NotFound,
            serde_json::json!({ "kind": "Status", "code": 404, "reason": "NotFound" }),
            "pods \"x\" not found",
        );
        assert_eq!(
            named.to_string(),
            "Error from server (NotFound): pods \"x\" not found"
        );
        // Not an API server's answer: the gRPC code names it.
        let transport = ClientError::from_status(&Status::unavailable("connection refused"));
        assert_eq!(transport.reason(), "Unavailable");
    }

    #[test]
    fn causes_tell_a_terminating_namespace_from_other_refusals() {
        let terminating = refused(
            Code::FailedPrecondition,
            serde_json::json!({ "kind": "Status", "code": 403, "reason": "Forbidden",
                                "details": { "causes": [{ "reason": "NamespaceTerminating",
                                    "message": "namespace team is being terminated",
                                    "field": "metadata.namespace" }] } }),
            "serviceaccounts \"default\" is forbidden: unable to create new content in \
             namespace team because it is being terminated",
        );
        assert!(terminating.is_namespace_terminating());
        let fence = refused(
            Code::FailedPrecondition,
            serde_json::json!({ "kind": "Status", "code": 403, "reason": "Forbidden" }),
            "fenced write refused: being terminated",
        );
        assert!(!fence.is_namespace_terminating());
        assert!(fence.is_fence_refused());
        let timeout = refused(
            Code::DeadlineExceeded,
            serde_json::json!({ "kind": "Status", "code": 504, "reason": "Timeout" }),
            "Timeout: couldn't update PodDisruptionBudget \"web\" due to conflicts",
        );
        assert!(timeout.is_timeout() && !timeout.is_too_many_requests());
    }
}
