//! `pods/NAME/log`: the API server finds the pod's node and streams the container's output
//! from that node's kubelet endpoint, as kube-apiserver proxies it (so authorization later
//! covers logs like every other read). Parameters: container, follow, previous, tailLines,
//! limitBytes.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http::StatusCode;
use rudder_proto::node::LogsRequest;

use super::options::Query;
use super::respond;
use crate::error::ApiError;
use crate::pod_node::{from_node, pod_node, PodNode};
use crate::registry::Registry;

/// The log parameters a node's log files can answer (they hold no timestamps yet).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub container: String,
    pub follow: bool,
    pub previous: bool,
    pub tail_lines: Option<i64>,
    pub limit_bytes: Option<i64>,
}

fn number(query: &Query, name: &str) -> Result<Option<i64>, ApiError> {
    match query.get(name).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(text) => match text.parse::<i64>() {
            Ok(0) if name == "limitBytes" => {
                Err(ApiError::bad_field(name, "limitBytes must be at least 1"))
            }
            Ok(value) if value >= 0 => Ok(Some(value)),
            _ => Err(ApiError::bad_field(
                name,
                format!("{name} {text:?} must be a whole number, 0 or more"),
            )),
        },
    }
}

/// Reads the query of a log request (pure).
pub fn log_options(query: &Query) -> Result<LogOptions, ApiError> {
    for unkept in ["sinceSeconds", "sinceTime", "timestamps"] {
        let asked = query
            .get(unkept)
            .is_some_and(|value| !value.is_empty() && value != "false");
        if asked {
            return Err(ApiError::bad_field(
                unkept,
                format!(
                    "{unkept} is not served: a node's container logs carry no timestamps yet; \
                     use tailLines or limitBytes"
                ),
            ));
        }
    }
    let flag = |name: &str| matches!(query.get(name).map(String::as_str), Some("true" | "1"));
    Ok(LogOptions {
        container: query.get("container").cloned().unwrap_or_default(),
        follow: flag("follow"),
        previous: flag("previous"),
        tail_lines: number(query, "tailLines")?,
        limit_bytes: number(query, "limitBytes")?,
    })
}

/// Streams `namespace/name`'s log as `text/plain`.
pub async fn logs(
    registry: &Registry,
    namespace: &str,
    name: &str,
    query: &Query,
) -> Result<Response, ApiError> {
    let options = log_options(query)?;
    let PodNode {
        mut client,
        container,
        node,
    } = pod_node(registry, namespace, name, &options.container).await?;
    let stream = client
        .logs(LogsRequest {
            namespace: namespace.to_owned(),
            pod: name.to_owned(),
            container,
            follow: options.follow,
            previous: options.previous,
            tail_lines: options.tail_lines,
            limit_bytes: options.limit_bytes,
        })
        .await
        .map_err(|status| from_node(&node, status))?
        .into_inner();
    // A master that stops ends the stream, so its server can close the connection.
    let chunks = stream
        .take_until(registry.stopped())
        .map(move |chunk| match chunk {
            Ok(chunk) => Ok(Bytes::from(chunk.data)),
            Err(status) => Err(std::io::Error::other(format!(
                "node {node}: {}",
                status.message()
            ))),
        });
    Ok(respond::with_body(
        StatusCode::OK,
        "text/plain",
        Body::from_stream(chunks),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::options::query;
    use super::*;

    #[test]
    fn log_parameters_and_the_ones_no_log_can_answer() {
        let options = log_options(&query(&[
            ("container", "app"),
            ("follow", "true"),
            ("tailLines", "10"),
        ]))
        .unwrap();
        assert_eq!(
            options,
            LogOptions {
                container: "app".into(),
                follow: true,
                tail_lines: Some(10),
                ..LogOptions::default()
            }
        );
        assert!(log_options(&query(&[("tailLines", "-1")])).is_err());
        let since = log_options(&query(&[("sinceSeconds", "60")])).unwrap_err();
        assert!(since.to_string().contains("tailLines"), "{since}");
        assert!(log_options(&query(&[("timestamps", "false")])).is_ok());
    }
}
