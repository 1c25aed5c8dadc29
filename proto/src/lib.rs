//! Rudder's wire types, generated from `proto/`, and what every side shares about them:
//!
//! - [`etcdserverpb`] and [`mvccpb`]: the etcd v3 gRPC API (KV, Watch, Lease, Cluster,
//!   Maintenance), field-for-field compatible so `etcdctl` and etcd client libraries work
//!   against Rudder's store unchanged.
//! - [`api`]: the Rudder API (`Resources`): Kubernetes verbs over every kind, objects as
//!   Kubernetes JSON.
//! - [`node`]: the node's streaming endpoint (`Kubelet`: logs and exec).
//! - [`join`]: joining a secured cluster with a join token; [`join_token`]: the tokens
//!   themselves and the Secrets masters keep them in.
//! - [`raft`]: the peer RPCs between store members; each payload is a bincode-encoded
//!   openraft message, so this crate does not depend on openraft.
//!
//! - [`authn`]: who is calling a master (a certificate's subject, a bearer token's).
//! - [`client`]: [`client::ApiClient`], the API's client with failover between masters.
//! - [`metrics`]: the process' Prometheus registry every component registers in, served as
//!   `GET /metrics`, with the process' own CPU, memory and file figures.
//! - [`request_ids`]: numbering writes so that a retried one is applied once.
//! - [`tls`]: the cluster CA and its certificates, servers' TLS, who a client certificate
//!   names; [`dial`]: channels to a master or a node that check the certificate is a
//!   master's or that node's; [`pinned_ca`]: the TLS a joiner speaks with only its token's CA fingerprint;
//!   [`masters_only`]: the accept loop of the ports only masters may call (peer,
//!   kubelet).
//! - [`failpoints`]: fault injection, compiled in only with the `chaos` feature.
//! - [`objects`]: pure helpers over Kubernetes objects for every side: label and field
//!   selectors ([`objects::selector`]), name and label syntax ([`objects::names`]), resource
//!   quantities ([`objects::quantity`]).
//!
//! Conversions to the store's own types live next to those types (`rudder-raftstore`),
//! because Rust's orphan rule puts a `From` impl beside one of its two types.

pub mod authn;
pub mod client;
pub mod dial;
pub mod failpoints;
pub mod join_token;
pub mod masters_only;
pub mod metrics;
pub mod objects;
pub mod pinned_ca;
pub mod request_ids;
pub mod tls;

// The generated code is prost's and tonic's, not ours to lint; the modules above are.
#[allow(clippy::all, clippy::pedantic)]
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

#[allow(clippy::all, clippy::pedantic)]
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

#[allow(clippy::all, clippy::pedantic)]
pub mod raft {
    tonic::include_proto!("rudder.raft");
}

#[allow(clippy::all, clippy::pedantic)]
pub mod api {
    tonic::include_proto!("rudder.api");
}

#[allow(clippy::all, clippy::pedantic)]
pub mod join {
    tonic::include_proto!("rudder.join");
}

#[allow(clippy::all, clippy::pedantic)]
pub mod node {
    tonic::include_proto!("rudder.node");

    impl ExecInput {
        /// The first input of an exec: what to run, and where.
        pub fn start(request: ExecRequest) -> Self {
            ExecInput {
                input: Some(exec_input::Input::Start(request)),
            }
        }

        pub fn stdin(data: Vec<u8>) -> Self {
            ExecInput {
                input: Some(exec_input::Input::Stdin(data)),
            }
        }

        /// The end of the command's standard input.
        pub fn close_stdin() -> Self {
            ExecInput {
                input: Some(exec_input::Input::CloseStdin(true)),
            }
        }

        /// The client's terminal is now `width` × `height` characters.
        pub fn resize(width: u32, height: u32) -> Self {
            ExecInput {
                input: Some(exec_input::Input::Resize(TerminalSize { width, height })),
            }
        }

        /// The request, if this is the first input.
        pub fn into_start(self) -> Option<ExecRequest> {
            match self.input {
                Some(exec_input::Input::Start(request)) => Some(request),
                _ => None,
            }
        }
    }

    impl PortForwardInput {
        /// The first input of a port-forward: which pod's port to connect to.
        pub fn start(request: PortForwardRequest) -> Self {
            PortForwardInput {
                input: Some(port_forward_input::Input::Start(request)),
            }
        }

        pub fn data(data: Vec<u8>) -> Self {
            PortForwardInput {
                input: Some(port_forward_input::Input::Data(data)),
            }
        }

        /// The client sends no more: the connection's writing half is shut.
        pub fn close_write() -> Self {
            PortForwardInput {
                input: Some(port_forward_input::Input::CloseWrite(true)),
            }
        }

        /// The request, if this is the first input.
        pub fn into_start(self) -> Option<PortForwardRequest> {
            match self.input {
                Some(port_forward_input::Input::Start(request)) => Some(request),
                _ => None,
            }
        }
    }
}
