//! `rudder-apiserver`: Kubernetes objects over Rudder's replicated store, served as the
//! `Resources` gRPC service and as the Kubernetes HTTP API, both on every master's client
//! port.
//!
//! ```text
//!  gRPC (service.rs) ─┬─► Registry (registry/, list.rs, delete.rs, watch.rs)
//!  HTTP (http/) ──────┘     │ body (registry/body.rs) ─ objects to write (registry/transform.rs)
//!                           │ kind (kinds.rs) ─ admit: strict decode, defaults, validation
//!                           │                   (validation/, pure, field-pathed errors)
//!                           └─ one store txn per write: compare revision / namespace / lease
//!                              ─► Store (rudder-raftstore, in-process)
//! ```
//!
//! - [`allocation`]: what a Service takes from the cluster's pools (cluster IP, node ports,
//!   load-balancer address), decided in the transaction that writes it (pure; the shell
//!   is `registry/service_allocations.rs`).
//! - [`cluster_config`]: the cluster's network settings as masters publish them for nodes
//!   (the `kube-system/rudder-cluster` ConfigMap; pure).
//! - [`kinds`]: the served kinds, their names and short names, typed admission.
//! - [`validation`]: checks and defaults per kind; [`object`]: keys and stored JSON.
//! - [`registry`]: the [`Registry`] type, get and the store access the verbs share; a file
//!   per verb (`create`, `update`: update, update-status, finalize, patch; `bind`; `evict`:
//!   the eviction subresource, a pod's deletion as its PodDisruptionBudget allows, the
//!   budget's status and the pod's write in one transaction; `fence`: fenced writes, checked
//!   against the leases remembered in `checked_leases`), over
//!   pure `body` parsing and object `transform`s.
//!   [`list`]: pages through [`selectors`]; [`delete`]: graceful deletion, finalizers, the
//!   propagation policies' finalizers (the garbage collector and the namespace controller
//!   of `rudder-actors` finish what they start); [`watch`]: store events as watch events,
//!   each object [`decoded`] once for all of a master's watches.
//! - [`http`]: the Kubernetes HTTP API on the same port (discovery, verbs, watch, Tables
//!   by `rudder-printers`, Status errors); [`strategic_merge`]: the patch kubectl sends;
//!   [`field_ownership`]: server-side apply's managed fields (pure; the shell is
//!   `registry/apply.rs`).
//! - [`pod_node`]: the node a pod runs on, reached for logs, exec and port-forward by the
//!   HTTP API and by
//!   [`kubelet_proxy`], the `Kubelet` gRPC service every master serves for the CLI.
//! - [`request_metrics`]: requests timed and counted by verb, resource and code, at both
//!   front ends; watches open; a master serves them with the store's at `/metrics`.
//! - [`service`]: the gRPC glue; [`master`]: a store member serving the API;
//!   [`caller`]: the client request number every store write of a verb is tagged with.
//! - `test_support` (feature `test-support`): in-process masters for other crates' tests.
//! - [`encryption`]: Secrets sealed (AES-256-GCM) before they enter the store and opened
//!   when read, by the registry; the keyring and its file (`encryption/keyring_file.rs`).
//! - [`role_aggregation`]: aggregated ClusterRoles' rules written back (what the
//!   authorizer decides from), as Kubernetes' aggregation controller does.
//! - [`root_ca`]: every namespace's `kube-root-ca.crt` (the CA pods' token volumes carry);
//!   `registry/service_account.rs`: a new pod's account and its token's volume.
//! - [`service_account_tokens`]: ServiceAccount tokens (signed JWTs, Kubernetes' bound
//!   form), issued by the `serviceaccounts/token` subresource (`registry/token_request.rs`)
//!   and judged at the front door.
//! - [`audit`]: the audit log (Kubernetes' audit Events, one JSON line per request), fed
//!   by both front ends where they measure.
//! - [`authz`]: who may do what — RBAC (Kubernetes' kinds, evaluation and default
//!   roles), asked by both front ends before the registry; grants checked on write.
//! - [`join`]: joining with a join token — a node's certificate, a master's keys — on
//!   every master's client port, before the joiner has a credential.
//! - [`error`]: [`ApiError`], worded like Kubernetes, sent as gRPC status + `Status` JSON.

pub mod allocation;
pub mod audit;
pub mod authz;
pub mod caller;
pub mod cluster_config;
pub mod decoded;
pub mod delete;
pub mod encryption;
pub mod error;
pub mod field_ownership;
pub mod http;
pub mod join;
pub mod kinds;
pub mod kubelet_proxy;
pub mod list;
pub mod master;
pub mod object;
pub mod pod_node;
pub mod registry;
pub mod request_metrics;
pub mod role_aggregation;
pub mod root_ca;
pub mod selectors;
pub mod service;
pub mod service_account_tokens;
pub mod strategic_merge;
#[cfg(feature = "test-support")]
pub mod test_support;
pub mod validation;
pub mod watch;

pub use error::ApiError;
pub use master::{Master, Security};
pub use registry::{Binding, Fence, Part, PatchType, Registry, Target, WriteOptions};
