//! Why an API call failed, worded like the Kubernetes API server, and carried to clients as
//! a gRPC status whose details hold a Kubernetes `Status` object (reason, code, causes).

use rudder_raftstore::{KvError, StoreError};
use serde_json::{json, Value};

use crate::validation::FieldError;

/// Names an object in messages the way Kubernetes does: `deployments.apps "web"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// `pods`, `deployments.apps`.
    pub resource: String,
    pub name: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.resource, self.name)
    }
}

/// One of a `Status`'s `details.causes` (Kubernetes' `StatusCause`): a machine-readable
/// reason clients branch on, the message, and the field concerned if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `DisruptionBudget`, `NamespaceTerminating`, ...
    pub reason: &'static str,
    pub message: String,
    pub field: Option<&'static str>,
}

impl Cause {
    fn to_json(&self) -> Value {
        let mut cause = json!({ "reason": self.reason, "message": self.message });
        if let Some(field) = self.field {
            cause["field"] = Value::from(field);
        }
        cause
    }
}

/// A field a server-side apply sets that another manager owns with another value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldConflict {
    pub manager: String,
    pub api_version: String,
    /// `.spec.template.spec.containers[name="web"].image`
    pub field: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{object} not found")]
    NotFound { object: ObjectRef },
    #[error("{object} already exists")]
    AlreadyExists { object: ObjectRef },
    /// A stale `resourceVersion`, a failed precondition, or a lost compare-and-swap.
    #[error("Operation cannot be fulfilled on {object}: {reason}")]
    Conflict { object: ObjectRef, reason: String },
    /// A server-side apply sets fields other managers own with other values.
    #[error("Apply failed with {} conflict{}: {}", .conflicts.len(),
            if .conflicts.len() == 1 { "" } else { "s" }, show_conflicts(.conflicts))]
    ApplyConflict {
        object: ObjectRef,
        conflicts: Vec<FieldConflict>,
    },
    /// Validation failed; `kind` like `Deployment.apps`.
    #[error("{kind} {name:?} is invalid: {}", show_causes(.causes))]
    Invalid {
        kind: String,
        name: String,
        causes: Vec<FieldError>,
    },
    /// The request itself is malformed (bad JSON, unknown kind, mismatched names).
    #[error("{message}")]
    BadRequest {
        message: String,
        field: Option<String>,
    },
    /// The request is well-formed but not allowed now (pod being deleted, a fenced writer
    /// that lost its lease).
    #[error("{message}")]
    Forbidden { message: String },
    /// The caller's credential names no one any more (a ServiceAccount token whose account
    /// or pod is gone): Kubernetes' 401.
    #[error("Unauthorized: {message}")]
    Unauthorized { message: String },
    /// The caller may not do this (authorization, or a grant beyond what it holds):
    /// `pods "web" is forbidden: User "jane" cannot delete resource "pods" ...`.
    #[error("{}forbidden: {message}", denied_object(.resource, .name))]
    Denied {
        /// `pods`, `deployments.apps`; empty for a path.
        resource: String,
        group: String,
        name: String,
        message: String,
    },
    /// A create in a namespace being deleted (Kubernetes' NamespaceLifecycle admission): a
    /// `Forbidden` whose `Status` carries the `NamespaceTerminating` cause, which clients
    /// (the ServiceAccount controller, drain) recognise without reading the message.
    #[error(
        "{object} is forbidden: unable to create new content in namespace {namespace} because \
         it is being terminated"
    )]
    NamespaceTerminating {
        object: ObjectRef,
        namespace: String,
    },
    /// The resourceVersion or continue token is older than the store keeps: list again.
    #[error("{message}")]
    Expired { message: String },
    #[error("Request entity too large: the object is {size} bytes, the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// The store cannot answer now (no quorum, leader unreachable, timeout).
    #[error("the cluster is unavailable: {source}; retry shortly")]
    Unavailable {
        #[source]
        source: StoreError,
    },
    /// The write may or may not have been applied, and retrying cannot tell (its first
    /// outcome is forgotten): read the object before writing again. (Kubernetes' Timeout.)
    #[error("{source}")]
    Indeterminate {
        #[source]
        source: StoreError,
    },
    #[error("internal error: {message}")]
    Internal { message: String },
    /// The request may succeed later, not now (Kubernetes' 429): an eviction that would
    /// violate a PodDisruptionBudget. `cause` says why (its reason is the caller's, e.g.
    /// `DisruptionBudget`); clients retry, after `retry_after_seconds` if not 0.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        cause: Cause,
        retry_after_seconds: i64,
    },
    /// The server gave up before completing the request (Kubernetes' 504 `Timeout`): an
    /// eviction whose PodDisruptionBudget kept changing under it. Nothing was written;
    /// clients retry, after `retry_after_seconds`.
    #[error("Timeout: {message}")]
    Timeout {
        message: String,
        retry_after_seconds: i64,
    },
    /// The server understood the request but cannot carry it out as things are (Kubernetes
    /// answers these with a bare 500 `Status` that names no reason, e.g. a pod guarded by two
    /// disruption budgets; kubectl prints it `Error from server: ...`).
    #[error("{message}")]
    Unsupported { message: String },
    /// A request body over the limit, refused before it was read whole.
    #[error("Request entity too large: the body is over the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// A patch that cannot be applied to the object as it is (a JSON patch's `test` that
    /// fails, a path that is not there): Kubernetes' 422.
    #[error("{message}")]
    PatchNotApplicable { message: String },
    /// A path the API does not serve (kube-apiserver's bare 404).
    #[error("the server could not find the requested resource")]
    PathNotFound,
    /// A verb the path does not take (a POST to one object, say).
    #[error("{message}")]
    MethodNotAllowed { message: String },
    /// A body in a format the verb does not take (a patch of an unknown content type).
    #[error("{message}")]
    UnsupportedMediaType { message: String },
}

fn show_conflicts(conflicts: &[FieldConflict]) -> String {
    conflicts
        .iter()
        .map(|c| format!("{}: {}", conflict_message(c), c.field))
        .collect::<Vec<_>>()
        .join("\n")
}

fn conflict_message(conflict: &FieldConflict) -> String {
    format!(
        "conflict with {:?} using {}",
        conflict.manager, conflict.api_version
    )
}

fn show_causes(causes: &[FieldError]) -> String {
    match causes {
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest {
            message: message.into(),
            field: None,
        }
    }

    pub fn bad_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadRequest {
            message: message.into(),
            field: Some(field.into()),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal {
            message: message.into(),
        }
    }

    /// Kubernetes' `reason` (empty: the `Status` names none) and HTTP code for this error.
    pub fn reason_and_code(&self) -> (&'static str, u16) {
        match self {
            Self::NotFound { .. } | Self::PathNotFound => ("NotFound", 404),
            Self::MethodNotAllowed { .. } => ("MethodNotAllowed", 405),
            Self::UnsupportedMediaType { .. } => ("UnsupportedMediaType", 415),
            Self::AlreadyExists { .. } => ("AlreadyExists", 409),
            Self::Conflict { .. } | Self::ApplyConflict { .. } => ("Conflict", 409),
            Self::Invalid { .. } => ("Invalid", 422),
            Self::BadRequest { .. } => ("BadRequest", 400),
            Self::Unauthorized { .. } => ("Unauthorized", 401),
            Self::Forbidden { .. } | Self::NamespaceTerminating { .. } | Self::Denied { .. } => {
                ("Forbidden", 403)
            }
            Self::Expired { .. } => ("Expired", 410),
            Self::TooLarge { .. } | Self::BodyTooLarge { .. } => ("RequestEntityTooLarge", 413),
            Self::PatchNotApplicable { .. } => ("Invalid", 422),
            Self::Unavailable { .. } => ("ServiceUnavailable", 503),
            Self::Indeterminate { .. } | Self::Timeout { .. } => ("Timeout", 504),
            Self::Internal { .. } => ("InternalError", 500),
            Self::Unsupported { .. } => ("", 500),
            Self::TooManyRequests { .. } => ("TooManyRequests", 429),
        }
    }

    /// The Kubernetes `Status` object describing this error.
    pub fn status_object(&self) -> Value {
        let (reason, code) = self.reason_and_code();
        let mut details = json!({});
        match self {
            Self::NotFound { object }
            | Self::AlreadyExists { object }
            | Self::Conflict { object, .. } => {
                details = json!({ "name": object.name, "kind": object.resource });
            }
            Self::ApplyConflict { object, conflicts } => {
                let causes: Vec<Value> = conflicts
                    .iter()
                    .map(|c| {
                        json!({ "reason": "FieldManagerConflict",
                                "message": conflict_message(c), "field": c.field })
                    })
                    .collect();
                details = json!({ "name": object.name, "kind": object.resource,
                                  "causes": causes });
            }
            Self::Invalid { kind, name, causes } => {
                let causes: Vec<Value> = causes
                    .iter()
                    .map(|cause| {
                        let full = cause.to_string();
                        let message = full
                            .strip_prefix(&format!("{}: ", cause.path))
                            .unwrap_or(&full)
                            .to_string();
                        json!({ "reason": cause.reason(), "message": message, "field": cause.path })
                    })
                    .collect();
                details = json!({ "name": name, "kind": kind, "causes": causes });
            }
            Self::Denied {
                resource,
                group,
                name,
                ..
            } => {
                let kind = resource.split('.').next().unwrap_or("");
                details = json!({ "name": name, "group": group, "kind": kind });
                drop_empty(&mut details);
            }
            Self::NamespaceTerminating { object, namespace } => {
                let cause = Cause {
                    reason: "NamespaceTerminating",
                    message: format!("namespace {namespace} is being terminated"),
                    field: Some("metadata.namespace"),
                };
                details = json!({ "name": object.name, "kind": object.resource,
                                  "causes": [cause.to_json()] });
            }
            Self::TooManyRequests {
                cause,
                retry_after_seconds,
                ..
            } => {
                details = json!({ "causes": [cause.to_json()] });
                retry_after(&mut details, *retry_after_seconds);
            }
            Self::Timeout {
                retry_after_seconds,
                ..
            } => retry_after(&mut details, *retry_after_seconds),
            Self::BadRequest {
                field: Some(field),
                message,
            } => {
                details = json!({ "causes": [{ "reason": "FieldValueInvalid", "message": message, "field": field }] });
            }
            _ => {}
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "details": details,
            "code": code,
        });
        // Go's `omitempty`: a Status without a reason has no `reason` field.
        if !reason.is_empty() {
            status["reason"] = Value::from(reason);
        }
        status
    }
}

/// `details.retryAfterSeconds`, left out when 0 (Go's `omitempty`).
fn retry_after(details: &mut Value, seconds: i64) {
    if seconds > 0 {
        details["retryAfterSeconds"] = Value::from(seconds);
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Kv(KvError::Compacted {
                requested,
                compact_revision,
            }) => Self::Expired {
                message: format!(
                    "too old resource version: {requested} ({compact_revision}): list again to get a current resourceVersion"
                ),
            },
            StoreError::Kv(KvError::RequestTooLarge { size, limit }) => {
                Self::TooLarge { size, limit }
            }
            StoreError::Kv(
                error @ (KvError::FutureRevision { .. } | KvError::NegativeRevision { .. }),
            ) => Self::bad_field("resourceVersion", error.to_string()),
            unknown @ StoreError::Kv(
                KvError::OutcomeForgotten { .. } | KvError::RequestIdReused { .. },
            ) => Self::Indeterminate { source: unknown },
            StoreError::Kv(KvError::NoSpace) => Self::internal(
                "etcdserver: mvcc: database space exceeded (the store is past its space quota, \
                 --quota-backend-bytes: an operator must compact and defragment it, then disarm \
                 the NOSPACE alarm)"
                    .to_string(),
            ),
            StoreError::Kv(other) => Self::internal(other.to_string()),
            other => Self::Unavailable { source: other },
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        use tonic::Code;
        let code = match &error {
            ApiError::NotFound { .. } | ApiError::PathNotFound => Code::NotFound,
            ApiError::MethodNotAllowed { .. } | ApiError::UnsupportedMediaType { .. } => {
                Code::Unimplemented
            }
            ApiError::AlreadyExists { .. } => Code::AlreadyExists,
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => Code::Aborted,
            ApiError::Invalid { .. } | ApiError::BadRequest { .. } => Code::InvalidArgument,
            ApiError::Forbidden { .. } | ApiError::NamespaceTerminating { .. } => {
                Code::FailedPrecondition
            }
            ApiError::Denied { .. } => Code::PermissionDenied,
            ApiError::Unauthorized { .. } => Code::Unauthenticated,
            ApiError::Expired { .. } => Code::OutOfRange,
            ApiError::TooLarge { .. } | ApiError::BodyTooLarge { .. } => Code::ResourceExhausted,
            ApiError::PatchNotApplicable { .. } => Code::InvalidArgument,
            ApiError::Unavailable { .. } => Code::Unavailable,
            ApiError::Indeterminate { .. } | ApiError::Timeout { .. } => Code::DeadlineExceeded,
            ApiError::Internal { .. } | ApiError::Unsupported { .. } => Code::Internal,
            // Kubernetes' 429 as gRPC maps it: try again later.
            ApiError::TooManyRequests { .. } => Code::ResourceExhausted,
        };
        let details = error.status_object().to_string();
        tonic::Status::with_details(code, error.to_string(), details.into())
    }
}

/// How a Forbidden names what it is about: `pods "web" is `, `pods is `, or nothing for a
/// path.
fn denied_object(resource: &str, name: &str) -> String {
    match (resource, name) {
        ("", _) => String::new(),
        (resource, "") => format!("{resource} is "),
        (resource, name) => format!("{resource} {name:?} is "),
    }
}

/// Go's `omitempty` on a Status' details.
fn drop_empty(details: &mut Value) {
    if let Some(fields) = details.as_object_mut() {
        fields.retain(|_, value| value.as_str() != Some(""));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_objects_list_every_cause_with_its_field() {
        let error = ApiError::Invalid {
            kind: "Deployment.apps".into(),
            name: "web".into(),
            causes: vec![
                FieldError::invalid("spec.replicas", -1, "must be greater than or equal to 0"),
                FieldError::required("spec.selector", ""),
            ],
        };
        assert_eq!(
            error.to_string(),
            "Deployment.apps \"web\" is invalid: [spec.replicas: Invalid value: \"-1\": must be \
             greater than or equal to 0, spec.selector: Required value]"
        );
        let status = error.status_object();
        assert_eq!(status["code"], 422);
        assert_eq!(status["details"]["causes"][1]["field"], "spec.selector");
        assert_eq!(
            status["details"]["causes"][1]["reason"],
            "FieldValueRequired"
        );
    }

    #[test]
    fn a_refused_eviction_is_kubernetes_429_with_the_budget_as_its_cause() {
        let error = ApiError::TooManyRequests {
            message: "Cannot evict pod as it would violate the pod's disruption budget.".into(),
            cause: Cause {
                reason: "DisruptionBudget",
                message: "The disruption budget web needs 2 healthy pods and has 2 currently"
                    .into(),
                field: None,
            },
            retry_after_seconds: 0,
        };
        let status = error.status_object();
        assert_eq!(
            (status["reason"].as_str(), status["code"].as_i64()),
            (Some("TooManyRequests"), Some(429))
        );
        assert_eq!(status["details"]["causes"][0]["reason"], "DisruptionBudget");
        assert!(status["details"]["causes"][0].get("field").is_none());
        // 0 is no advice: left out, as Go's omitempty leaves it out.
        assert!(status["details"].get("retryAfterSeconds").is_none());
        assert_eq!(
            tonic::Status::from(error).code(),
            tonic::Code::ResourceExhausted
        );
    }

    #[test]
    fn a_contended_eviction_is_kubernetes_504_and_says_when_to_retry() {
        let error = ApiError::Timeout {
            message: "couldn't update PodDisruptionBudget \"web\" due to conflicts".into(),
            retry_after_seconds: 10,
        };
        let status = error.status_object();
        assert_eq!(
            (status["reason"].as_str(), status["code"].as_i64()),
            (Some("Timeout"), Some(504))
        );
        assert_eq!(
            status["message"],
            "Timeout: couldn't update PodDisruptionBudget \"web\" due to conflicts"
        );
        assert_eq!(status["details"]["retryAfterSeconds"], 10);
        assert_eq!(
            tonic::Status::from(error).code(),
            tonic::Code::DeadlineExceeded
        );
    }

    #[test]
    fn a_bare_500_names_no_reason_and_a_terminating_namespace_names_its_cause() {
        let two = ApiError::Unsupported {
            message: "This pod has more than one PodDisruptionBudget, which the eviction \
                      subresource does not support."
                .into(),
        };
        let status = two.status_object();
        assert_eq!(status["code"], 500);
        assert!(status.get("reason").is_none(), "{status}");
        let closing = ApiError::NamespaceTerminating {
            object: ObjectRef {
                resource: "serviceaccounts".into(),
                name: "default".into(),
            },
            namespace: "team".into(),
        };
        assert_eq!(
            closing.to_string(),
            "serviceaccounts \"default\" is forbidden: unable to create new content in \
             namespace team because it is being terminated"
        );
        let status = closing.status_object();
        assert_eq!(
            (status["reason"].as_str(), status["code"].as_i64()),
            (Some("Forbidden"), Some(403))
        );
        assert_eq!(
            status["details"]["causes"][0],
            json!({ "reason": "NamespaceTerminating", "field": "metadata.namespace",
                    "message": "namespace team is being terminated" })
        );
    }

    #[test]
    fn a_compacted_revision_is_expired_and_says_to_list_again() {
        let error = ApiError::from(StoreError::Kv(KvError::Compacted {
            requested: 3,
            compact_revision: 9,
        }));
        assert!(matches!(error, ApiError::Expired { .. }));
        assert!(error.to_string().contains("list again"));
        assert_eq!(tonic::Status::from(error).code(), tonic::Code::OutOfRange);
    }
}
