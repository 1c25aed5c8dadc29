//! The endpoints controller (kube-controller-manager's `endpoint` and `endpointslice`
//! controllers in one): every Service with a selector has an Endpoints object and
//! EndpointSlices listing the pods behind it, ready or not, which the node proxy and the
//! cluster DNS read.
//!
//! - `reconcile.rs`: a Service's backends, its Endpoints and its slices, and the plan that
//!   brings the existing slices there; pure, table-tested.
//! - `mirror.rs`: the user's Endpoints of a Service without a selector as slices (the
//!   `endpointslicemirroring` controller's job); pure.
//! - `actor.rs`: the shell: Service, pod, Endpoints and slice events to Service keys; the
//!   writes under the leader's fence.

pub mod actor;
pub mod mirror;
pub mod reconcile;
