//! A node started without `--pod-cidr` gets its pod range from the cluster: it registers its
//! Node without one and waits until the controller manager's node IPAM controller writes
//! `spec.podCIDR` (a block of `--cluster-cidr`), then builds its pod network on that.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use rudder_proto::client::{ApiClient, ClientError};

use crate::machine::Machine;
use crate::status::{node_object, NodeConfig};

/// How often the Node is read while waiting.
const POLL: Duration = Duration::from_millis(200);
/// How often the wait is reported.
const REPORT: Duration = Duration::from_secs(15);

/// Registers the Node (if it is not there yet) and returns its `spec.podCIDR` once set;
/// fails only when the API refuses the Node.
pub async fn await_pod_range(
    client: &ApiClient,
    config: &NodeConfig,
    machine: &Machine,
) -> Result<String, ClientError> {
    let node = node_object(config, machine, jiff::Timestamp::now());
    let body = serde_json::to_value(&node).expect("a Node always encodes");
    let started = Instant::now();
    let mut reported = started;
    let mut registered = false;
    loop {
        // A master failing over answers nothing for a while: wait it out; only a refusal
        // (the Node is invalid, or forbidden) ends the wait.
        if !registered {
            match client.create_object("nodes", "", &body).await {
                Ok(_) => registered = true,
                Err(error) if error.reason() == "AlreadyExists" => registered = true,
                Err(error) if matches!(error.reason(), "Invalid" | "Forbidden" | "BadRequest") => {
                    return Err(error)
                }
                Err(error) => tracing::warn!(node = %config.name, %error, "registering; retrying"),
            }
        }
        if registered {
            match client.get_object("nodes", "", &config.name).await {
                Ok(current) => {
                    let node: Node = serde_json::from_value(current).unwrap_or_default();
                    let range = node.spec.and_then(|s| s.pod_cidr).filter(|r| !r.is_empty());
                    if let Some(range) = range {
                        tracing::info!(node = %config.name, %range, "pod range allocated");
                        return Ok(range);
                    }
                }
                // Deleted meanwhile: register again.
                Err(error) if error.is_not_found() => registered = false,
                Err(error) => {
                    tracing::warn!(node = %config.name, %error, "reading the Node; retrying")
                }
            }
        }
        if reported.elapsed() >= REPORT {
            reported = Instant::now();
            tracing::warn!(
                node = %config.name,
                waited = ?started.elapsed(),
                "no pod range yet: is a controller manager running with --allocate-node-cidrs \
                 and room left in --cluster-cidr? (or start the node with --pod-cidr)"
            );
        }
        tokio::time::sleep(POLL).await;
    }
}
