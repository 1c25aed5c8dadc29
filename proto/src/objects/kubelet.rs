//! Where a node's streaming endpoint (`Kubelet`: logs, exec) is: the node's InternalIP and
//! the kubelet port it publishes in its status, as kube-apiserver reaches a kubelet.

use serde_json::Value;

/// `<InternalIP>:<kubelet port>` of a Node object, if it publishes both.
pub fn kubelet_address(node: &Value) -> Option<String> {
    let status = &node["status"];
    let port = status["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_i64()?;
    let address = status["addresses"]
        .as_array()?
        .iter()
        .find(|a| a["type"] == "InternalIP")?["address"]
        .as_str()?
        .to_string();
    Some(format!("{address}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_the_internal_ip_and_kubelet_port() {
        let node = serde_json::json!({ "status": {
            "addresses": [{ "type": "Hostname", "address": "n1" }, { "type": "InternalIP", "address": "127.0.0.1" }],
            "daemonEndpoints": { "kubeletEndpoint": { "Port": 41234 } },
        }});
        assert_eq!(kubelet_address(&node).as_deref(), Some("127.0.0.1:41234"));
        assert_eq!(kubelet_address(&serde_json::json!({})), None);
    }
}
