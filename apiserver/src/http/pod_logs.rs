//! `pods/NAME/log`: the API server finds the pod's node and streams the container's output
//! from that node's kubelet endpoint, as kube-apiserver proxies it (so authorization later
//! covers logs like every other read). Parameters: container, follow, previous, tailLines,
//! limitBytes, timestamps, sinceSeconds, sinceTime.

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

/// What a log request asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub container: String,
    pub follow: bool,
    pub previous: bool,
    pub tail_lines: Option<i64>,
    pub limit_bytes: Option<i64>,
    pub timestamps: bool,
    pub since_seconds: Option<i64>,
    /// RFC 3339; empty for none.
    pub since_time: String,
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

/// Reads the query of a log request (pure), checked as kube-apiserver checks it.
pub fn log_options(query: &Query) -> Result<LogOptions, ApiError> {
    let flag = |name: &str| matches!(query.get(name).map(String::as_str), Some("true" | "1"));
    let since_seconds = number(query, "sinceSeconds")?;
    if since_seconds == Some(0) {
        return Err(ApiError::bad_field(
            "sinceSeconds",
            "sinceSeconds must be greater than 0",
        ));
    }
    let since_time = query.get("sinceTime").cloned().unwrap_or_default();
    if !since_time.is_empty() {
        if let Err(error) = since_time.parse::<jiff::Timestamp>() {
            return Err(ApiError::bad_field(
                "sinceTime",
                format!("sinceTime {since_time:?} is not an RFC 3339 time: {error}"),
            ));
        }
        if since_seconds.is_some() {
            return Err(ApiError::bad_request(
                "at most one of sinceTime or sinceSeconds may be specified",
            ));
        }
    }
    Ok(LogOptions {
        container: query.get("container").cloned().unwrap_or_default(),
        follow: flag("follow"),
        previous: flag("previous"),
        tail_lines: number(query, "tailLines")?,
        limit_bytes: number(query, "limitBytes")?,
        timestamps: flag("timestamps"),
        since_seconds,
        since_time,
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
            timestamps: options.timestamps,
            since_seconds: options.since_seconds,
            since_time: options.since_time,
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
    fn log_parameters_are_read_and_checked_as_kube_apiserver_checks_them() {
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
        let timed = log_options(&query(&[("sinceSeconds", "60"), ("timestamps", "true")])).unwrap();
        assert_eq!((timed.since_seconds, timed.timestamps), (Some(60), true));
        assert!(
            !log_options(&query(&[("timestamps", "false")]))
                .unwrap()
                .timestamps
        );
        let zero = log_options(&query(&[("sinceSeconds", "0")])).unwrap_err();
        assert!(zero.to_string().contains("greater than 0"), "{zero}");
        let bad = log_options(&query(&[("sinceTime", "yesterday")])).unwrap_err();
        assert!(bad.to_string().contains("RFC 3339"), "{bad}");
        let both = [("sinceTime", "2026-12-05T06:00:00Z"), ("sinceSeconds", "5")];
        let both = log_options(&query(&both)).unwrap_err();
        assert!(both.to_string().contains("at most one"), "{both}");
    }
}
