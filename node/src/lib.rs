//! `rudder-node`: what turns a machine into a worker. So far the kubelet's node duties —
//! registration, Lease heartbeats, NodeStatus — for real and hollow (simulated) nodes; pods,
//! runtimes, images, networking and the proxy follow (issue 5).
//!
//! - [`machine`]: the machine's facts (pure parsing of /proc and /etc).
//! - [`status`]: the Node and Lease objects (pure).
//! - [`kubelet`]: the actix actor that registers, heartbeats and reports status.

pub mod kubelet;
pub mod machine;
pub mod status;
