//! What the endpoint's calls (server.rs, server/attach.rs) share: the stream type they
//! answer with, how a runtime's refusal reads as a gRPC status, and how often a followed
//! log is looked at.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use tonic::Status;

use crate::runtime::RuntimeError;

/// How often a followed log is checked for more.
pub(super) const FOLLOW_POLL: Duration = Duration::from_millis(200);

pub(super) type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// A runtime's refusal as the client reads it.
pub(super) fn status(error: RuntimeError) -> Status {
    match error {
        RuntimeError::UnknownPod { .. } => Status::not_found(error.to_string()),
        other => Status::failed_precondition(other.to_string()),
    }
}
