//! [`ClientError`]: why a call failed, worded as kubectl words it, with the Kubernetes
//! reason read from the `Status` the API server sends in the gRPC status's details.

use tonic::{Code, Status};

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// No master answered.
    #[error("no API server could serve the request at {endpoints} (last: {last}); check that the masters are running (`rudder up`, `rudder cluster status`) and --server / RUDDER_SERVER")]
    Unreachable { endpoints: String, last: String },
    /// The API server refused the call; `reason` is Kubernetes' (NotFound, Conflict, ...),
    /// empty when the server's `Status` names none (then it reads, as kubectl prints it,
    /// `Error from server: ...`).
    #[error("{}", server_error(.reason, .message))]
    Api {
        code: Code,
        reason: String,
        message: String,
        /// The Kubernetes `Status` object, as JSON text ("" if the server sent none).
        status: String,
    },
}

impl ClientError {
    /// The Kubernetes reason (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, ...).
    pub fn reason(&self) -> &str {
        match self {
            Self::Unreachable { .. } => "Unreachable",
            Self::Api { reason, .. } => reason,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.reason() == "NotFound"
    }

    /// Whether the server asked to try again later (Kubernetes' 429 `TooManyRequests`): an
    /// eviction that a PodDisruptionBudget does not allow now.
    pub fn is_too_many_requests(&self) -> bool {
        self.reason() == "TooManyRequests"
    }

    /// Whether the server gave up before completing the request (Kubernetes' 504 `Timeout`:
    /// an eviction that kept losing to concurrent changes of its PodDisruptionBudget, or a
    /// write whose fate the store could not tell): it may complete if tried again.
    pub fn is_timeout(&self) -> bool {
        self.reason() == "Timeout"
    }

    /// Whether the object changed (or was replaced) under the request, or a precondition the
    /// request gave (uid, resourceVersion) no longer holds (Kubernetes' 409 `Conflict`).
    pub fn is_conflict(&self) -> bool {
        self.reason() == "Conflict"
    }

    /// Whether a create was refused because its namespace is being deleted (a `Forbidden`
    /// whose `Status` has the `NamespaceTerminating` cause, as Kubernetes' NamespaceLifecycle
    /// admission answers).
    pub fn is_namespace_terminating(&self) -> bool {
        self.reason() == "Forbidden" && self.has_cause("NamespaceTerminating")
    }

    /// Whether the server's `Status` lists a cause of this reason (`details.causes[].reason`).
    pub fn has_cause(&self, reason: &str) -> bool {
        let Self::Api { status, .. } = self else {
            return false;
        };
        serde_json::from_str::<serde_json::Value>(status)
            .ok()
            .and_then(|status| status["details"]["causes"].as_array().cloned())
            .is_some_and(|causes| causes.iter().any(|cause| cause["reason"] == reason))
    }

    /// Whether a fenced write was refused because its fence no longer holds: the writer lost
    /// its lease (a `Forbidden` the API server words "fenced write refused: ...").
    pub fn is_fence_refused(&self) -> bool {
        matches!(
            self,
            Self::Api { reason, message, .. }
                if reason == "Forbidden" && message.starts_with("fenced write refused")
        )
    }

    pub(super) fn from_status(status: &Status) -> Self {
        let details = String::from_utf8_lossy(status.details()).into_owned();
        Self::Api {
            code: status.code(),
            reason: reason_of(status.code(), &details),
            message: status.message().to_string(),
            status: details,
        }
    }
}

/// The Kubernetes reason of a refusal: the `Status`'s (empty when it names none, as a bare
/// 500 does); without a `Status` (not an API server's answer), the gRPC code's name.
fn reason_of(code: Code, details: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(details) {
        Ok(status) if status["kind"] == "Status" => {
            status["reason"].as_str().unwrap_or_default().to_string()
        }
        _ => format!("{code:?}"),
    }
}

/// kubectl's line for a server's refusal: `Error from server (NotFound): ...`, or
/// `Error from server: ...` when the `Status` names no reason.
fn server_error(reason: &str, message: &str) -> String {
    if reason.is_empty() {
        format!("Error from server: {message}")
    } else {
        format!("Error from server ({reason}): {message}")
    }
}
