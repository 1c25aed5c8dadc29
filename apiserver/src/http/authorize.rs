//! Every HTTP request authorized before it is served (`crate::authz`): a resource path as
//! the verb, group, resource, subresource, namespace and name kube-apiserver sees in it,
//! any other path as its method and path (`/metrics`, discovery). The health and version
//! endpoints every caller may read pass as they are. A denial is Kubernetes' 403.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use rudder_proto::authn::Caller;
use rudder_raftstore::front_door::open_to_anyone;

use super::{options, paths, respond};
use crate::authz::rbac::{Action, ResourceAction};
use crate::authz::{self, grpc, review, Authorizer};
use crate::request_metrics::http_verb;

/// The middleware: authorizes, then serves as the caller's (so RBAC objects it writes are
/// checked against what it holds).
pub async fn authorized(
    State(authorizer): State<Authorizer>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if open_to_anyone(path) {
        return next.run(request).await;
    }
    let action = match paths::parse(path) {
        // An access review: created, in its group (the handler is `reviews.rs`).
        Some(Err(_)) if review::at_path(path).is_some() => {
            let (resource, namespace) = review::at_path(path).unwrap_or_default();
            Action::Resource(ResourceAction {
                verb: "create".into(),
                group: review::REVIEW_GROUP.into(),
                resource: resource.into(),
                namespace,
                ..ResourceAction::default()
            })
        }
        // Not served: the handler says so (404), to anyone.
        Some(Err(_)) => return next.run(request).await,
        Some(Ok(path)) => {
            let query = request
                .uri()
                .query()
                .and_then(|text| serde_urlencoded::from_str::<options::Query>(text).ok())
                .unwrap_or_default();
            let watch = options::is_watch(&query);
            let named = !path.name.is_empty();
            let verb = match path.subresource.as_str() {
                // Into a running pod: `create`, whatever the method (a WebSocket's GET
                // too), as Kubernetes authorizes them since 1.30.
                "exec" | "attach" | "portforward" => "create",
                _ => http_verb(request.method(), named, watch),
            };
            let name = match verb {
                // A create names no object (its name is the new object's).
                "create" if path.subresource.is_empty() => String::new(),
                // A list or watch of one object, as Kubernetes reads it.
                "list" | "watch" => query
                    .get("fieldSelector")
                    .and_then(|selector| grpc::name_in_field_selector(selector))
                    .unwrap_or_default()
                    .to_string(),
                _ => path.name.clone(),
            };
            // A namespace's own requests are in the namespace, as Kubernetes sees them.
            let namespace = if path.info.resource == "namespaces" {
                name.clone()
            } else {
                path.namespace.clone()
            };
            Action::Resource(ResourceAction {
                verb: verb.into(),
                group: path.info.group.into(),
                resource: path.info.resource.into(),
                subresource: path.subresource.clone(),
                namespace,
                name,
            })
        }
        None => Action::Path {
            verb: request.method().as_str().to_ascii_lowercase(),
            path: path.to_string(),
        },
    };
    let caller = request.extensions().get::<Caller>().cloned();
    match authorizer.authorize(caller.as_ref(), &action).await {
        Ok(()) => authz::acting_as(&authorizer, caller.as_ref(), next.run(request)).await,
        Err(denied) => respond::error(&denied),
    }
}
