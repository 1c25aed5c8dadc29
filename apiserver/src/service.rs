//! The `Resources` gRPC service: protobuf in, [`Registry`] calls, protobuf out. No decisions
//! here; errors become statuses carrying a Kubernetes `Status` (see `error.rs`). Each call
//! is authorized (`authz`), measured and audited in one place, [`Api::measured`].

use std::pin::Pin;
use std::time::Duration;

use rudder_proto::api as pb;
use rudder_proto::api::resources_server::{Resources, ResourcesServer};
use rudder_proto::authn::Caller;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::audit::{AuditLog, Audited};
use crate::authz::grpc::{self, Asked, BodyHead};
use crate::authz::rbac::Action;
use crate::authz::{self, review, Authorizer};
use crate::caller::on_behalf_of;
use crate::delete::{DeleteOptions, Propagation};
use crate::error::ApiError;
use crate::kinds::KINDS;
use crate::list::ListOptions;
use crate::registry::{Binding, Eviction, Fence, Part, Registry, Target, WriteOptions};
use crate::request_metrics::{http_code_of, ApiMetrics};
use crate::watch::WatchOptions;

/// The largest response (a list of every object of a kind): far above any request, as
/// Kubernetes puts no limit on list sizes; use `limit` to page through big lists.
pub const MAX_RESPONSE_BYTES: usize = 512 * 1024 * 1024;

/// The service over `registry`, ready to add to a tonic server. Requests are limited to
/// `max_request_bytes` (the store's gRPC message limit); responses to [`MAX_RESPONSE_BYTES`].
pub fn service(
    registry: Registry,
    max_request_bytes: usize,
    metrics: ApiMetrics,
    audit: Option<AuditLog>,
    authorizer: Authorizer,
) -> ResourcesServer<Api> {
    ResourcesServer::new(Api {
        registry,
        metrics,
        audit,
        authorizer,
    })
    .max_decoding_message_size(max_request_bytes)
    .max_encoding_message_size(MAX_RESPONSE_BYTES)
}

#[derive(Clone)]
pub struct Api {
    registry: Registry,
    metrics: ApiMetrics,
    /// Where requests are recorded, when the master keeps an audit log.
    audit: Option<AuditLog>,
    authorizer: Authorizer,
}

/// Who asked for what, for authorization and the audit record.
struct Who {
    log: Option<AuditLog>,
    /// What the request does, as the registry will do it.
    action: Action,
    namespace: String,
    name: String,
    caller: Option<Caller>,
    /// The gRPC method called (`/rudder.api.Resources/Bind`).
    method: String,
    received: jiff::Timestamp,
}

/// What a request names, for its authorization and audit record.
trait Named {
    fn names(&self) -> (&str, String);
    /// A create's or an update's object.
    fn body(&self) -> Option<&[u8]> {
        None
    }
    /// A list's or a watch's field selector.
    fn field_selector(&self) -> &str {
        ""
    }
}

macro_rules! named_by_fields {
    ($($message:ty),*) => {$(
        impl Named for $message {
            fn names(&self) -> (&str, String) {
                (&self.namespace, self.name.clone())
            }
        }
    )*};
}
named_by_fields!(
    pb::CreateTokenRequest,
    pb::GetRequest,
    pb::PatchRequest,
    pb::DeleteRequest,
    pb::BindRequest,
    pb::EvictRequest
);

impl Named for pb::UpdateRequest {
    fn names(&self) -> (&str, String) {
        (&self.namespace, self.name.clone())
    }
    fn body(&self) -> Option<&[u8]> {
        Some(&self.json)
    }
}

impl Named for pb::CreateRequest {
    /// The name is the body's (read with the rest of its head).
    fn names(&self) -> (&str, String) {
        (&self.namespace, String::new())
    }
    fn body(&self) -> Option<&[u8]> {
        Some(&self.json)
    }
}

impl Named for pb::ListRequest {
    fn names(&self) -> (&str, String) {
        (&self.namespace, String::new())
    }
    fn field_selector(&self) -> &str {
        &self.field_selector
    }
}

impl Named for pb::WatchRequest {
    fn names(&self) -> (&str, String) {
        (&self.namespace, String::new())
    }
    fn field_selector(&self) -> &str {
        &self.field_selector
    }
}

fn fence(fence: Option<pb::Fence>) -> Option<Fence> {
    fence.map(|f| Fence {
        lease_namespace: f.lease_namespace,
        lease_name: f.lease_name,
        holder: f.holder,
        epoch: f.epoch,
    })
}

fn target<'a>(resource: &'a str, namespace: &'a str, name: &'a str) -> Target<'a> {
    Target {
        resource,
        namespace,
        name,
    }
}

/// The client's number for this request (`rudder-request-id`), if it sent one.
fn request_number<T>(
    request: &Request<T>,
) -> Result<Option<rudder_proto::request_ids::RequestNumber>, Status> {
    use rudder_proto::request_ids::{RequestNumber, REQUEST_ID_HEADER};
    let Some(value) = request.metadata().get(REQUEST_ID_HEADER) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| Status::invalid_argument(format!("{REQUEST_ID_HEADER} is not ASCII text")))?;
    RequestNumber::from_header(text)
        .map(Some)
        .map_err(Status::invalid_argument)
}

fn object(value: serde_json::Value) -> Response<pb::Object> {
    Response::new(pb::Object {
        json: value.to_string().into_bytes(),
    })
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

impl Api {
    /// Who asks for what in `request`, which takes `verb` on `resource` (as named) and
    /// `subresource`.
    fn who<M: Named>(
        &self,
        request: &Request<M>,
        (verb, resource, subresource): (&'static str, &str, &str),
    ) -> Who {
        let log = self.audit.clone();
        let message = request.get_ref();
        let head = message.body().map(BodyHead::parse);
        let (namespace, mut name) = message.names();
        if let Some(head) = head.as_ref().filter(|_| name.is_empty()) {
            name = head.metadata.name.clone();
        }
        let action = grpc::action(&Asked {
            verb,
            resource,
            subresource,
            namespace,
            name: &name,
            body: head.as_ref(),
            field_selector: message.field_selector(),
        });
        let method = request
            .extensions()
            .get::<tonic::GrpcMethod>()
            .map(|method| format!("/{}/{}", method.service(), method.method()))
            .unwrap_or_default();
        Who {
            log,
            action,
            namespace: namespace.to_string(),
            name,
            caller: request.extensions().get::<Caller>().cloned(),
            method,
            received: jiff::Timestamp::now(),
        }
    }

    /// Answers with `answer` if `who` may take the action, timed and counted by
    /// Kubernetes verb, resource and code, and recorded in the audit log as `who` says —
    /// also when the client goes away first.
    async fn measured<T>(
        &self,
        (verb, resource, subresource): (&'static str, &str, &str),
        who: Who,
        answer: impl std::future::Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let caller = who.caller.clone();
        let recording = who.log.as_ref().and_then(|log| {
            log.pending(&Audited {
                verb,
                resource,
                subresource,
                namespace: &who.namespace,
                name: &who.name,
                caller: who.caller.as_ref(),
                uri: &who.method,
                code: None,
                received: who.received,
            })
        });
        let measuring = self.metrics.request(verb, resource, subresource);
        let answer = match self
            .authorizer
            .authorize(caller.as_ref(), &who.action)
            .await
        {
            Ok(()) => authz::acting_as(&self.authorizer, caller.as_ref(), answer).await,
            Err(denied) => Err(denied.into()),
        };
        let code = match &answer {
            Ok(_) if verb == "create" => 201,
            Ok(_) => 200,
            Err(status) => http_code_of(status),
        };
        measuring.finish(code);
        if let Some(recording) = recording {
            recording.answered(code);
        }
        answer
    }

    /// Update and update-status: the object, or only its status, replaced.
    async fn replace(
        &self,
        request: Request<pb::UpdateRequest>,
        part: Part,
    ) -> Result<Response<pb::Object>, Status> {
        let resource = request.get_ref().resource.clone();
        let subresource = match part {
            Part::Object => "",
            Part::Status => "status",
            Part::Finalize => "finalize",
        };
        let who = self.who(&request, ("update", &resource, subresource));
        self.measured(("update", &resource, subresource), who, async move {
            let number = request_number(&request)?;
            let r = request.into_inner();
            let options = WriteOptions {
                fence: fence(r.fence),
                dry_run: r.dry_run,
                ..WriteOptions::default()
            };
            let target = target(&r.resource, &r.namespace, &r.name);
            let replaced = on_behalf_of(
                number,
                self.registry.replace(&target, &r.json, part, &options),
            )
            .await?;
            Ok(object(replaced))
        })
        .await
    }
}

#[tonic::async_trait]
impl Resources for Api {
    async fn discover(
        &self,
        _request: Request<pb::DiscoverRequest>,
    ) -> Result<Response<pb::DiscoverResponse>, Status> {
        let kinds = KINDS
            .iter()
            .map(|info| pb::Kind {
                kind: info.kind.into(),
                group: info.group.into(),
                version: info.version.into(),
                api_version: info.api_version.into(),
                resource: info.resource.into(),
                singular: info.singular.clone(),
                short_names: info.short_names.iter().map(|s| s.to_string()).collect(),
                namespaced: info.namespaced,
            })
            .collect();
        let masters = self
            .registry
            .store()
            .members()
            .into_iter()
            .filter(|m| !m.member.client_addr.is_empty())
            .map(|m| m.member.client_addr)
            .collect();
        Ok(Response::new(pb::DiscoverResponse {
            kinds,
            server_version: env!("CARGO_PKG_VERSION").into(),
            masters,
        }))
    }

    async fn create(
        &self,
        request: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::Object>, Status> {
        let resource = request.get_ref().resource.clone();
        let subresource = "";
        let who = self.who(&request, ("create", &resource, subresource));
        if review::is_review(&resource) {
            let caller = who.caller.clone();
            return self
                .measured(("create", &resource, subresource), who, async move {
                    let r = request.into_inner();
                    let asked = serde_json::from_slice(&r.json).map_err(|error| {
                        ApiError::bad_request(format!("the review is not JSON: {error}"))
                    })?;
                    let answered = review::review(
                        &self.authorizer,
                        caller.as_ref(),
                        &r.resource,
                        &r.namespace,
                        asked,
                    )
                    .await?;
                    Ok(object(answered))
                })
                .await;
        }
        self.measured(("create", &resource, subresource), who, async move {
            let number = request_number(&request)?;
            let r = request.into_inner();
            let options = WriteOptions {
                fence: fence(r.fence),
                dry_run: r.dry_run,
                ..WriteOptions::default()
            };
            let created = on_behalf_of(
                number,
                self.registry
                    .create(&r.resource, &r.namespace, &r.json, &options),
            )
            .await?;
            Ok(object(created))
        })
        .await
    }

    async fn get(&self, request: Request<pb::GetRequest>) -> Result<Response<pb::Object>, Status> {
        let resource = request.get_ref().resource.clone();
        let subresource = "";
        let who = self.who(&request, ("get", &resource, subresource));
        self.measured(("get", &resource, subresource), who, async move {
            let r = request.into_inner();
            Ok(object(
                self.registry
                    .get(&target(&r.resource, &r.namespace, &r.name))
                    .await?,
            ))
        })
        .await
    }

    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let resource = request.get_ref().resource.clone();
        let subresource = "";
        let who = self.who(&request, ("list", &resource, subresource));
        self.measured(("list", &resource, subresource), who, async move {
            let r = request.into_inner();
            let listed = self
                .registry
                .list(
                    &r.resource,
                    &ListOptions {
                        namespace: r.namespace,
                        label_selector: r.label_selector,
                        field_selector: r.field_selector,
                        limit: r.limit,
                        continue_token: r.continue_token,
                        resource_version: r.resource_version,
                    },
                )
                .await?;
            Ok(Response::new(pb::ListResponse {
                items: listed
                    .items
                    .iter()
                    .map(|item| item.to_string().into_bytes())
                    .collect(),
                resource_version: listed.revision.to_string(),
                continue_token: listed.continue_token,
                remaining_item_count: listed.remaining.unwrap_or(0),
                kind: format!("{}List", listed.info.kind),
                api_version: listed.info.api_version.into(),
            }))
        })
        .await
    }

    async fn update(
        &self,
        request: Request<pb::UpdateRequest>,
    ) -> Result<Response<pb::Object>, Status> {
        self.replace(request, Part::Object).await
    }

    async fn update_status(
        &self,
        request: Request<pb::UpdateRequest>,
    ) -> Result<Response<pb::Object>, Status> {
        self.replace(request, Part::Status).await
    }

    async fn finalize(
        &self,
        request: Request<pb::UpdateRequest>,
    ) -> Result<Response<pb::Object>, Status> {
        self.replace(request, Part::Finalize).await
    }

    async fn patch(
        &self,
        request: Request<pb::PatchRequest>,
    ) -> Result<Response<pb::Object>, Status> {
        let resource = request.get_ref().resource.clone();
        let subresource = if request.get_ref().status {
            "status"
        } else {
            ""
        };
        let who = self.who(&request, ("patch", &resource, subresource));
        self.measured(("patch", &resource, subresource), who, async move {
            let number = request_number(&request)?;
            let r = request.into_inner();
            let part = if r.status { Part::Status } else { Part::Object };
            let options = WriteOptions {
                fence: fence(r.fence),
                // A patch request has no dry run.
                dry_run: false,
                ..WriteOptions::default()
            };
            let patched = on_behalf_of(
                number,
                self.registry.patch(
                    &target(&r.resource, &r.namespace, &r.name),
                    &r.patch,
                    part,
                    &options,
                ),
            )
            .await?;
            Ok(object(patched))
        })
        .await
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let resource = request.get_ref().resource.clone();
        let subresource = "";
        let who = self.who(&request, ("delete", &resource, subresource));
        self.measured(("delete", &resource, subresource), who, async move {
            let number = request_number(&request)?;
            let r = request.into_inner();
            let fence = fence(r.fence);
            let options = DeleteOptions {
                grace_period_seconds: r.grace_period_seconds,
                propagation: Propagation::parse(&r.propagation_policy)?,
                precondition_uid: r.precondition_uid,
                precondition_resource_version: r.precondition_resource_version,
            };
            let (object, deleted) = on_behalf_of(
                number,
                self.registry.delete(
                    &target(&r.resource, &r.namespace, &r.name),
                    &options,
                    fence.as_ref(),
                ),
            )
            .await?;
            Ok(Response::new(pb::DeleteResponse {
                json: object.to_string().into_bytes(),
                deleted,
            }))
        })
        .await
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let resource = request.get_ref().resource.clone();
        let subresource = "";
        let who = self.who(&request, ("watch", &resource, subresource));
        self.measured(("watch", &resource, subresource), who, async move {
            let r = request.into_inner();
            let options = WatchOptions {
                namespace: r.namespace,
                label_selector: r.label_selector,
                field_selector: r.field_selector,
                resource_version: r.resource_version,
                allow_bookmarks: r.allow_bookmarks,
                bookmark_interval: (r.bookmark_interval_ms > 0)
                    .then(|| Duration::from_millis(u64::from(r.bookmark_interval_ms))),
                send_initial_events: None,
            };
            let events = self.registry.watch(&r.resource, &options).await?;
            let open = self.metrics.watch_opened(&r.resource);
            let stream = tokio_stream::wrappers::ReceiverStream::new(events).map(move |event| {
                // Counted open until the stream is dropped (the client went away or the
                // watch ended).
                let _open = &open;
                Ok(pb::WatchEvent {
                    r#type: event.kind.into(),
                    object: event.json().to_vec(),
                })
            });
            Ok(Response::new(Box::pin(stream) as Self::WatchStream))
        })
        .await
    }

    async fn evict(
        &self,
        request: Request<pb::EvictRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let resource = "pods".to_owned();
        let subresource = "eviction";
        let who = self.who(&request, ("create", &resource, subresource));
        self.measured(("create", &resource, subresource), who, async move {
            let number = request_number(&request)?;
            let r = request.into_inner();
            let eviction = Eviction {
                namespace: &r.namespace,
                name: &r.name,
                options: DeleteOptions {
                    grace_period_seconds: r.grace_period_seconds,
                    precondition_uid: r.precondition_uid.clone(),
                    precondition_resource_version: r.precondition_resource_version.clone(),
                    ..DeleteOptions::default()
                },
            };
            let (object, deleted) = on_behalf_of(number, self.registry.evict(&eviction)).await?;
            Ok(Response::new(pb::DeleteResponse {
                json: object.to_string().into_bytes(),
                deleted,
            }))
        })
        .await
    }

    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::Object>, Status> {
        let resource = "serviceaccounts".to_owned();
        let subresource = "token";
        let who = self.who(&request, ("create", &resource, subresource));
        self.measured(("create", &resource, subresource), who, async move {
            let r = request.into_inner();
            let answered = self
                .registry
                .request_token(&r.namespace, &r.name, &r.json)
                .await?;
            Ok(object(answered))
        })
        .await
    }

    async fn bind(
        &self,
        request: Request<pb::BindRequest>,
    ) -> Result<Response<pb::Object>, Status> {
        let resource = "pods".to_owned();
        let subresource = "binding";
        let who = self.who(&request, ("create", &resource, subresource));
        self.measured(("create", &resource, subresource), who, async move {
            let number = request_number(&request)?;
            let r = request.into_inner();
            let fence = fence(r.fence);
            let bound = on_behalf_of(
                number,
                self.registry.bind(
                    &Binding {
                        namespace: &r.namespace,
                        name: &r.name,
                        uid: &r.uid,
                        node: &r.node_name,
                    },
                    fence.as_ref(),
                ),
            )
            .await?;
            Ok(object(bound))
        })
        .await
    }
}
