//! `pods/NAME/log`: the API server finds the pod's node and streams the container's output
//! from that node's kubelet endpoint, as kube-apiserver proxies it (so authorization later
//! covers logs like every other read). Parameters: container, follow, previous, tailLines,
//! limitBytes.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http::StatusCode;
use rudder_proto::node::kubelet_client::KubeletClient;
use rudder_proto::node::LogsRequest;
use rudder_proto::objects::kubelet::kubelet_endpoint;
use serde_json::Value;

use super::options::Query;
use super::respond;
use crate::error::ApiError;
use crate::registry::{Registry, Target};

/// How long reaching a node's endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Checks the container named against the pod's, as kube-apiserver does before it asks the
/// node (pure). Empty: the pod's only container.
pub fn container_of(pod: &Value, name: &str, wanted: &str) -> Result<String, ApiError> {
    let names: Vec<&str> = ["containers", "initContainers"]
        .iter()
        .flat_map(|list| pod["spec"][list].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    match wanted {
        "" => match pod["spec"]["containers"].as_array().map(Vec::as_slice) {
            Some([only]) => Ok(only["name"].as_str().unwrap_or_default().to_owned()),
            _ => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            ))),
        },
        wanted if names.contains(&wanted) => Ok(wanted.to_owned()),
        wanted => Err(ApiError::bad_request(format!(
            "container {wanted} is not valid for pod {name}"
        ))),
    }
}

fn from_node(node: &str, status: tonic::Status) -> ApiError {
    match status.code() {
        tonic::Code::NotFound | tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument => {
            ApiError::bad_request(status.message().to_owned())
        }
        _ => ApiError::internal(format!("node {node}: {}", status.message())),
    }
}

/// Streams `namespace/name`'s log as `text/plain`.
pub async fn logs(
    registry: &Registry,
    namespace: &str,
    name: &str,
    query: &Query,
) -> Result<Response, ApiError> {
    let options = log_options(query)?;
    let pod = registry
        .get(&Target {
            resource: "pods",
            namespace,
            name,
        })
        .await?;
    let container = container_of(&pod, name, &options.container)?;
    let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
    if node.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} is not on a node yet: no logs until it is scheduled"
        )));
    }
    let node_object = registry
        .get(&Target {
            resource: "nodes",
            namespace: "",
            name: node,
        })
        .await?;
    let endpoint = kubelet_endpoint(&node_object)
        .ok_or_else(|| ApiError::internal(format!("node {node} publishes no kubelet endpoint")))?;
    let connect = KubeletClient::connect(endpoint.clone());
    let mut client = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| ApiError::internal(format!("node {node} at {endpoint}: no answer")))?
        .map_err(|error| ApiError::internal(format!("node {node} at {endpoint}: {error}")))?;
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
        .map_err(|status| from_node(node, status))?
        .into_inner();
    let node = node.to_owned();
    let chunks = stream.map(move |chunk| match chunk {
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
    use super::*;
    use serde_json::json;

    fn query(pairs: &[(&str, &str)]) -> Query {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

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

    #[test]
    fn the_container_must_be_the_pod_s_and_named_when_there_are_several() {
        let one = json!({ "spec": { "containers": [{ "name": "app" }] } });
        assert_eq!(container_of(&one, "p", "").unwrap(), "app");
        let error = container_of(&one, "p", "other").unwrap_err();
        assert_eq!(error.to_string(), "container other is not valid for pod p");
        let two = json!({ "spec": { "containers": [{ "name": "a" }, { "name": "b" }] } });
        let error = container_of(&two, "p", "").unwrap_err();
        assert_eq!(
            error.to_string(),
            "a container name must be specified for pod p, choose one of: [a b]"
        );
    }
}
