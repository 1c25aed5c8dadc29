//! `rudder-node`: what turns a machine into a worker: the kubelet's node duties
//! (registration, Lease heartbeats, NodeStatus) and the pods bound to the node, run as real
//! containers (libcontainer) or simulated (hollow nodes), and the proxy's rules.
//!
//! - [`machine`]: the machine's facts (pure parsing of /proc and /etc).
//! - [`status`]: the Node and Lease objects (pure).
//! - [`pod_range`]: a node without `--pod-cidr` waits for the cluster to give it a range.
//! - [`kubelet`]: the actix actor that registers, heartbeats and reports status, and (with a
//!   runtime) syncs the pods bound to it, which `rudder-actors`' informer follows;
//!   `kubelet::sync` is its pure decision, `kubelet::static_pods` the static pods of
//!   `--manifests` and their mirror pods.
//! - [`runtime`]: the `Runtime` trait; [`runtime::linux`] runs real containers (libcontainer
//!   through `rudder shim`, pod networks, probes, restarts); [`runtime::fake`] for hollow nodes;
//!   [`runtime::lifecycle`] the pure restart/phase/probe rules.
//! - [`server`]: the node's streaming endpoint (logs, exec, attach, port-forward) on the
//!   kubelet port; [`terminal`]: the pseudo-terminals of `exec -t` and `tty: true`
//!   containers; [`attach_wire`]: the frames between the endpoint and a container's shim
//!   for attach (pure); [`log_format`]: containers' log files (CRI format), written by the
//!   shim and read back here.
//! - [`usage`]: what the machine and its containers use (pure parsing of /proc and cgroup
//!   files), served by the endpoint's `Stats` for `rudder top`.
//! - [`service_view`]: the Services and EndpointSlices a node follows once, for the proxy
//!   and DNS.
//! - [`proxy`]: Services and EndpointSlices as this node's nftables table.
//! - [`dns`]: the cluster DNS names, answered by each node for its pods (hickory).
//! - [`api_relay`]: the `default/kubernetes` Service's connections, relayed to the masters.
//! - [`image`]: image references, the node's content-addressed store, pulls from registries,
//!   layer unpacking.

pub mod api_relay;
pub mod attach_wire;
pub mod dns;
pub mod image;
pub mod kubelet;
pub mod log_format;
pub mod machine;
pub mod pod_range;
pub mod proxy;
pub mod runtime;
pub mod server;
pub mod service_view;
pub mod status;
pub mod terminal;
pub mod usage;
