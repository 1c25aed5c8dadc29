//! The access reviews over HTTP (`POST /apis/authorization.k8s.io/v1/...`), which
//! `kubectl auth can-i` sends: JSON or protobuf in, the review with its status out
//! (`crate::authz::review` answers).

use axum::response::Response;
use http::request::Parts;
use http::{Method, StatusCode};

use rudder_proto::authn::Caller;

use super::{protobuf, respond};
use crate::authz::{review, Authorizer};
use crate::error::ApiError;

/// Answers the review `resource` (in `namespace`, for a local one) that `body` holds.
pub async fn answer(
    authorizer: &Authorizer,
    parts: &Parts,
    (resource, namespace): (&str, &str),
    body: &[u8],
) -> Response {
    if parts.method != Method::POST {
        return respond::error(&ApiError::MethodNotAllowed {
            message: format!("{resource} are only created (POST)"),
        });
    }
    let protobuf = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(protobuf::is_protobuf);
    let asked = if protobuf {
        protobuf::object_from_protobuf(body)
    } else {
        serde_json::from_slice(body)
            .map_err(|error| ApiError::bad_request(format!("the review is not JSON: {error}")))
    };
    let caller = parts.extensions.get::<Caller>();
    let answered = match asked {
        Ok(asked) => review::review(authorizer, caller, resource, namespace, asked).await,
        Err(error) => Err(error),
    };
    match answered {
        Ok(answered) => respond::json(StatusCode::CREATED, &answered),
        Err(error) => respond::error(&error),
    }
}
