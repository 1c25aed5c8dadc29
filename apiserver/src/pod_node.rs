//! The node a pod runs on, reached for what only the node can do (logs, exec,
//! port-forward): the pod
//! read, its container checked (worded as kube-apiserver words it), the node's kubelet
//! endpoint found and connected to.

use std::time::Duration;

use rudder_proto::node::kubelet_client::KubeletClient;
use rudder_proto::objects::kubelet::kubelet_address;
use serde_json::Value;
use tonic::transport::Channel;

use crate::error::ApiError;
use crate::registry::{Registry, Target};

/// How long reaching a node's endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A pod's node, connected.
pub struct PodNode {
    pub client: KubeletClient<Channel>,
    /// The container asked for, or the pod's only one.
    pub container: String,
    pub node: String,
}

/// Reads `namespace/name`, checks `container` against it, and connects to its node.
pub async fn pod_node(
    registry: &Registry,
    namespace: &str,
    name: &str,
    container: &str,
) -> Result<PodNode, ApiError> {
    let pod = read_pod(registry, namespace, name).await?;
    let container = container_of(&pod, name, container)?;
    let (client, node) = connect_node(registry, &pod, name).await?;
    Ok(PodNode {
        client,
        container,
        node,
    })
}

/// Reads `namespace/name` and connects to its node, for what concerns the whole pod (its
/// network: port-forward). Returns the client and the node's name.
pub async fn whole_pod_node(
    registry: &Registry,
    namespace: &str,
    name: &str,
) -> Result<(KubeletClient<Channel>, String), ApiError> {
    let pod = read_pod(registry, namespace, name).await?;
    connect_node(registry, &pod, name).await
}

async fn read_pod(registry: &Registry, namespace: &str, name: &str) -> Result<Value, ApiError> {
    registry
        .get(&Target {
            resource: "pods",
            namespace,
            name,
        })
        .await
}

async fn connect_node(
    registry: &Registry,
    pod: &Value,
    name: &str,
) -> Result<(KubeletClient<Channel>, String), ApiError> {
    let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
    if node.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} is not on a node yet: wait until it is scheduled"
        )));
    }
    let client = node_client(registry, node).await?;
    Ok((client, node.to_owned()))
}

/// Connects to the endpoint node `node` publishes.
pub async fn node_client(
    registry: &Registry,
    node: &str,
) -> Result<KubeletClient<Channel>, ApiError> {
    let node_object = registry
        .get(&Target {
            resource: "nodes",
            namespace: "",
            name: node,
        })
        .await?;
    let address = kubelet_address(&node_object)
        .ok_or_else(|| ApiError::internal(format!("node {node} publishes no kubelet endpoint")))?;
    // With TLS, the node's certificate names the node, and this master presents its own.
    let tls = registry.kubelet_tls();
    let dial = rudder_proto::dial::Dial::node(&address, tls, node);
    let endpoint = dial.endpoint().map_err(ApiError::internal)?;
    let connect = dial.connect(endpoint);
    let channel = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| ApiError::internal(format!("node {node} at {address}: no answer")))?
        .map_err(|error| ApiError::internal(format!("node {node}: {error}")))?;
    Ok(KubeletClient::new(channel))
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

pub fn from_node(node: &str, status: tonic::Status) -> ApiError {
    match status.code() {
        tonic::Code::NotFound | tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument => {
            ApiError::bad_request(status.message().to_owned())
        }
        // The node ended a stream it had begun, saying why (an attach cut off): its words,
        // not an internal error.
        tonic::Code::Aborted => ApiError::Unsupported {
            message: format!("node {node}: {}", status.message()),
        },
        _ => ApiError::internal(format!("node {node}: {}", status.message())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    #[test]
    fn a_node_s_refusal_is_a_bad_request_and_its_cut_off_stream_its_own_words() {
        let refused = from_node("n1", tonic::Status::failed_precondition("not running"));
        assert_eq!(refused.status_object()["code"], 400);
        let cut = from_node("n1", tonic::Status::aborted("the attach was cut off"));
        assert_eq!(cut.to_string(), "node n1: the attach was cut off");
        assert_eq!(cut.status_object()["code"], 500);
        let broken = from_node("n1", tonic::Status::unavailable("gone"));
        assert!(broken.to_string().starts_with("internal error"), "{broken}");
    }
}
