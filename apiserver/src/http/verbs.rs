//! A resource request, dispatched by method, collection or object, and subresource to the
//! registry's verbs (the ones the gRPC service calls), and answered (see `respond.rs`).

use axum::response::Response;
use bytes::Bytes;
use http::{header, HeaderMap, Method, StatusCode};
use serde_json::{json, Value};

use super::options::{self, PatchKind, Query};
use super::paths::ResourcePath;
use super::respond::{self, Shape};
use super::table::{wants_table, IncludeObject};
use super::{discovery, pod_logs, scale, watch};
use crate::delete::DeleteOptions;
use crate::error::ApiError;
use crate::kinds::Warnings;
use crate::registry::{Binding, Eviction, Part, PatchType, Registry, Target, WriteOptions};

/// One request to a resource path.
pub struct Call<'a> {
    pub registry: &'a Registry,
    pub method: Method,
    pub path: ResourcePath,
    pub query: Query,
    pub headers: HeaderMap,
    /// JSON or YAML (a protobuf body was read into JSON before the call was made).
    pub body: Bytes,
    /// What the call's writes warn of, sent as `Warning` headers.
    pub warnings: Warnings,
}

impl Call<'_> {
    fn target(&self) -> Target<'_> {
        Target {
            resource: self.path.info.resource,
            namespace: &self.path.namespace,
            name: &self.path.name,
        }
    }

    fn shape(&self) -> Shape {
        let accept = self
            .headers
            .get(header::ACCEPT)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        if wants_table(accept) {
            Shape::Table(IncludeObject::parse(
                self.query.get("includeObject").map(String::as_str),
            ))
        } else {
            Shape::Json
        }
    }

    fn write_options(&self) -> Result<WriteOptions, ApiError> {
        let user_agent = self
            .headers
            .get(header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        Ok(WriteOptions {
            fence: None,
            dry_run: options::dry_run(&self.query)?,
            field_manager: options::field_manager(&self.query, user_agent)?,
            field_validation: options::field_validation(&self.query)?,
            warnings: self.warnings.clone(),
        })
    }

    fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }
}

/// Answers `call`, with a `Warning` header for each warning its writes gave.
pub async fn serve(call: Call<'_>) -> Response {
    let mut response = match dispatch(&call).await {
        Ok(response) => response,
        Err(error) => respond::error(&error),
    };
    for warning in call.warnings.take() {
        // RFC 7234's form, as kube-apiserver sends it: 299 - "text".
        let text = format!("299 - {:?}", warning.replace(['\r', '\n'], " "));
        if let Ok(value) = http::HeaderValue::from_str(&text) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

async fn dispatch(call: &Call<'_>) -> Result<Response, ApiError> {
    let info = call.path.info;
    let collection = call.path.name.is_empty();
    let subresource = call.path.subresource.as_str();
    let shape = call.shape();
    let registry = call.registry;
    // Across all namespaces, only reads: kube-apiserver serves nothing else there.
    let all_namespaces = info.namespaced && call.path.namespace.is_empty();
    if all_namespaces && call.method != Method::GET {
        return Err(not_allowed(call));
    }
    match (&call.method, collection, subresource) {
        (&Method::GET, true, _) if options::is_watch(&call.query) => {
            let options = options::watch_options(&call.path.namespace, &call.query)?;
            let timeout = options::watch_timeout(&call.query)?;
            Ok(watch::watch(registry, info.resource, info.kind, options, timeout, shape).await)
        }
        (&Method::GET, true, _) => {
            let options = options::list_options(&call.path.namespace, &call.query)?;
            Ok(respond::list(
                registry.list(info.resource, &options).await?,
                shape,
            ))
        }
        (&Method::POST, true, _) => {
            let created = registry
                .create(
                    info.resource,
                    &call.path.namespace,
                    &call.body,
                    &call.write_options()?,
                )
                .await?;
            Ok(respond::object(
                StatusCode::CREATED,
                info.kind,
                &created,
                shape,
            ))
        }
        (&Method::DELETE, true, "") if info.kind != "Namespace" => delete_collection(call).await,
        (_, true, _) => Err(not_allowed(call)),
        (_, false, "scale") if discovery::has_scale(info) => scale_verb(call).await,
        (&Method::GET, false, "status") if !info.has_status => Err(super::paths::not_found()),
        (&Method::GET, false, "" | "status") => {
            let object = registry.get(&call.target()).await?;
            Ok(respond::object(StatusCode::OK, info.kind, &object, shape))
        }
        (&Method::PUT, false, "" | "status" | "finalize") => {
            let part = match subresource {
                "" => Part::Object,
                "status" if info.has_status => Part::Status,
                "finalize" if info.kind == "Namespace" => Part::Finalize,
                _ => return Err(super::paths::not_found()),
            };
            let replaced = registry
                .replace(&call.target(), &call.body, part, &call.write_options()?)
                .await?;
            Ok(respond::object(StatusCode::OK, info.kind, &replaced, shape))
        }
        (&Method::PATCH, false, "" | "status") => {
            let part = match subresource {
                "" => Part::Object,
                _ if info.has_status => Part::Status,
                _ => return Err(super::paths::not_found()),
            };
            let kind = options::patch_kind(call.content_type())?;
            let force = options::force(&call.query, Some(kind))?;
            let mut status = StatusCode::OK;
            let patched = match kind {
                PatchKind::Apply if part != Part::Object => {
                    return Err(ApiError::UnsupportedMediaType {
                        message: "server-side apply of the status subresource is not served: \
                                  apply the object, or patch its status"
                            .into(),
                    })
                }
                PatchKind::Apply => {
                    // The manager must be named for an apply, not taken from the User-Agent.
                    let mut options = call.write_options()?;
                    options.field_manager = call.query.get("fieldManager").cloned();
                    let (object, created) = registry
                        .apply(&call.target(), &call.body, force, &options)
                        .await?;
                    if created {
                        status = StatusCode::CREATED;
                    }
                    object
                }
                PatchKind::Patch(patch_type) => {
                    registry
                        .patch_as(
                            patch_type,
                            &call.target(),
                            &call.body,
                            part,
                            &call.write_options()?,
                        )
                        .await?
                }
            };
            Ok(respond::object(status, info.kind, &patched, shape))
        }
        (&Method::DELETE, false, "") => {
            let (options, dry_run) = options::delete_options(&call.query, &call.body)?;
            if dry_run {
                let object = registry.get(&call.target()).await?;
                return Ok(respond::json(StatusCode::OK, &object));
            }
            let (object, deleted) = registry.delete(&call.target(), &options, None).await?;
            // Gone now: a Success Status naming it, as kube-apiserver answers; still being
            // deleted (grace period, finalizers): the object as it now is.
            let answer = if deleted {
                deleted_status(info, &object)
            } else {
                object
            };
            Ok(respond::json(StatusCode::OK, &answer))
        }
        (&Method::GET, false, "log") if info.kind == "Pod" => {
            pod_logs::logs(registry, &call.path.namespace, &call.path.name, &call.query).await
        }
        (&Method::POST, false, "binding") if info.kind == "Pod" => bind(call).await,
        (&Method::POST, false, "eviction") if info.kind == "Pod" => evict(call).await,
        (&Method::POST, false, "token") if info.kind == "ServiceAccount" => {
            refuse_dry_run(call, "token", false)?;
            let answer = registry
                .request_token(&call.path.namespace, &call.path.name, &call.body)
                .await?;
            Ok(respond::json(StatusCode::CREATED, &answer))
        }
        (_, false, "" | "status" | "finalize" | "binding" | "eviction" | "token") => {
            Err(not_allowed(call))
        }
        _ => Err(super::paths::not_found()),
    }
}

fn not_allowed(call: &Call<'_>) -> ApiError {
    let what = match (call.path.name.is_empty(), call.path.subresource.as_str()) {
        (true, _) => format!("the collection of {}", call.path.info.qualified_resource()),
        (false, "") => format!("one of {}", call.path.info.qualified_resource()),
        (false, sub) => format!("{}/{sub}", call.path.info.qualified_resource()),
    };
    ApiError::MethodNotAllowed {
        message: format!("the server does not allow {} on {what}", call.method),
    }
}

/// DELETE of a collection: every object the list's selectors match, each deleted as a
/// DELETE of it would; the answer lists what was deleted (or is being deleted).
async fn delete_collection(call: &Call<'_>) -> Result<Response, ApiError> {
    let info = call.path.info;
    let (delete_options, dry_run) = options::delete_options(&call.query, &call.body)?;
    let mut list_options = options::list_options(&call.path.namespace, &call.query)?;
    list_options.limit = 0;
    list_options.continue_token.clear();
    let mut listed = call.registry.list(info.resource, &list_options).await?;
    if !dry_run {
        let mut deleted = Vec::with_capacity(listed.items.len());
        let mut failed = Vec::new();
        for item in &listed.items {
            let metadata = &item["metadata"];
            let target = Target {
                resource: info.resource,
                namespace: metadata["namespace"].as_str().unwrap_or_default(),
                name: metadata["name"].as_str().unwrap_or_default(),
            };
            match call.registry.delete(&target, &delete_options, None).await {
                Ok((object, _)) => deleted.push(object),
                // Deleted meanwhile by someone else: what was asked for holds.
                Err(ApiError::NotFound { .. }) => {}
                // The others are still deleted; the first failure is the answer.
                Err(error) => failed.push(error),
            }
        }
        if let Some(first) = failed.into_iter().next() {
            return Err(first);
        }
        listed.items = deleted;
    }
    Ok(respond::list(listed, Shape::Json))
}

/// `pods/NAME/binding`: a `Binding` naming the node (the scheduler's write).
async fn bind(call: &Call<'_>) -> Result<Response, ApiError> {
    refuse_dry_run(call, "binding", false)?;
    let binding: Value = serde_json::from_slice(&call.body).map_err(|error| {
        ApiError::bad_request(format!("the Binding is not valid JSON: {error}"))
    })?;
    let target = &binding["target"];
    if target["kind"].as_str().is_some_and(|kind| kind != "Node") {
        return Err(ApiError::bad_field(
            "target.kind",
            "a pod can only be bound to a Node",
        ));
    }
    let node = target["name"].as_str().unwrap_or_default();
    if node.is_empty() {
        return Err(ApiError::bad_field(
            "target.name",
            "a Binding names the node in target.name",
        ));
    }
    let uid = binding["metadata"]["uid"].as_str().unwrap_or_default();
    call.registry
        .bind(
            &Binding {
                namespace: &call.path.namespace,
                name: &call.path.name,
                uid,
                node,
            },
            None,
        )
        .await?;
    Ok(respond::json(StatusCode::CREATED, &success()))
}

/// `pods/NAME/eviction`: the pod's deletion as its PodDisruptionBudgets allow.
async fn evict(call: &Call<'_>) -> Result<Response, ApiError> {
    let eviction: Value = serde_json::from_slice(&call.body).map_err(|error| {
        ApiError::bad_request(format!("the Eviction is not valid JSON: {error}"))
    })?;
    let (delete_options, dry_run) = match eviction.get("deleteOptions") {
        Some(given) if !given.is_null() => {
            options::delete_options(&Query::new(), given.to_string().as_bytes())?
        }
        _ => (DeleteOptions::default(), false),
    };
    refuse_dry_run(call, "eviction", dry_run)?;
    call.registry
        .evict(&Eviction {
            namespace: &call.path.namespace,
            name: &call.path.name,
            options: delete_options,
        })
        .await?;
    Ok(respond::json(StatusCode::CREATED, &success()))
}

/// The Status kube-apiserver answers a deletion that completed with.
fn deleted_status(info: &crate::kinds::KindInfo, object: &Value) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": { "name": object["metadata"]["name"], "group": info.group,
                     "kind": info.resource, "uid": object["metadata"]["uid"] },
    })
}

/// A dry run of a binding or an eviction is refused, not done for real: neither verb can
/// yet decide without writing (`kubectl drain --dry-run=server` sends one).
fn refuse_dry_run(call: &Call<'_>, verb: &str, in_body: bool) -> Result<(), ApiError> {
    if in_body || options::dry_run(&call.query)? {
        return Err(ApiError::bad_field(
            "dryRun",
            format!("a dry run of a {verb} is not served yet; nothing was done"),
        ));
    }
    Ok(())
}

fn success() -> Value {
    json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201 })
}

/// `scale`: read as a Scale; a PUT or PATCH of the Scale sets `spec.replicas`.
async fn scale_verb(call: &Call<'_>) -> Result<Response, ApiError> {
    let registry = call.registry;
    let current = registry.get(&call.target()).await?;
    // The client's resourceVersion, if it gave one, is the object's: compare on it. One
    // the server read itself is not a precondition.
    let (wanted, version) = match call.method {
        Method::GET => return Ok(respond::json(StatusCode::OK, &scale::scale_of(&current))),
        Method::PUT => {
            let scale: Value = serde_json::from_slice(&call.body).map_err(|error| {
                ApiError::bad_request(format!("the Scale is not valid JSON: {error}"))
            })?;
            let version = scale["metadata"]["resourceVersion"].clone();
            (scale, version)
        }
        Method::PATCH => {
            let patch_type = match options::patch_kind(call.content_type())? {
                // A Scale's fields merge the same way either way.
                PatchKind::Patch(PatchType::Strategic) => PatchType::Merge,
                PatchKind::Patch(other) => other,
                PatchKind::Apply => {
                    return Err(ApiError::UnsupportedMediaType {
                        message: "server-side apply of a Scale is not served: apply the \
                                  object's spec.replicas, or patch the scale"
                            .into(),
                    })
                }
            };
            let patch: Value = serde_json::from_slice(&call.body).map_err(|error| {
                ApiError::bad_request(format!("the patch is not valid JSON: {error}"))
            })?;
            let mut unversioned = scale::scale_of(&current);
            unversioned["metadata"]
                .as_object_mut()
                .map(|metadata| metadata.remove("resourceVersion"));
            let scale = crate::registry::patched(patch_type, "Scale", &unversioned, &patch)?;
            let version = scale["metadata"]["resourceVersion"].clone();
            (scale, version)
        }
        _ => return Err(not_allowed(call)),
    };
    let replicas = scale::wanted_replicas(&wanted)?;
    let patch = json!({ "metadata": { "resourceVersion": version },
                        "spec": { "replicas": replicas } });
    let patched = registry
        .patch(
            &call.target(),
            patch.to_string().as_bytes(),
            Part::Object,
            &call.write_options()?,
        )
        .await?;
    Ok(respond::json(StatusCode::OK, &scale::scale_of(&patched)))
}
