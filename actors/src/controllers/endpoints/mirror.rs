//! EndpointSlices mirrored from the Endpoints a user writes for a Service without a
//! selector (kube-controller-manager's `endpointslicemirroring` controller), pure: the node
//! proxy and the cluster DNS read slices only, and users still write Endpoints — for an
//! external database, say.
//!
//! ```text
//!  Endpoints (the user's) ─ each subset: addresses (ready), notReadyAddresses, ports ─►
//!     Backends ─► slices managed by endpointslicemirroring-controller.k8s.io,
//!                 named <service>-mirror-<port set hash>-<n>
//! ```
//!
//! Endpoints labelled `endpointslice.kubernetes.io/skip-mirror: "true"` are not mirrored,
//! as in Kubernetes.

use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::reconcile::{owned_slices, Backend, BackendPort, SliceOwner};

/// The label that keeps an Endpoints object from being mirrored.
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";

/// The mirrored slices' owner.
pub const MIRRORED: SliceOwner = SliceOwner {
    manager: "endpointslicemirroring-controller.k8s.io",
    infix: "-mirror-",
};

/// Whether `endpoints` are to be mirrored.
pub fn mirrors(endpoints: &Endpoints) -> bool {
    let skip = endpoints
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(SKIP_MIRROR_LABEL));
    skip.map(String::as_str) != Some("true")
}

/// The slices mirroring `endpoints` for `service` (none when they are not to be
/// mirrored).
pub fn mirrored_slices(service: &Service, endpoints: &Endpoints) -> Vec<EndpointSlice> {
    if !mirrors(endpoints) {
        return Vec::new();
    }
    owned_slices(service, &mirrored_backends(endpoints), &MIRRORED)
}

/// Each address of each subset, with that subset's ports: ready ones from `addresses`,
/// the rest from `notReadyAddresses`.
pub fn mirrored_backends(endpoints: &Endpoints) -> Vec<Backend> {
    let mut backends = Vec::new();
    for subset in endpoints.subsets.iter().flatten() {
        let mut ports: Vec<BackendPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|port| BackendPort {
                name: port.name.clone().unwrap_or_default(),
                port: port.port,
                protocol: port.protocol.clone().unwrap_or_else(|| "TCP".into()),
                app_protocol: port.app_protocol.clone(),
            })
            .collect();
        ports.sort();
        let addresses = |list: &Option<Vec<EndpointAddress>>, ready: bool| {
            list.iter()
                .flatten()
                .map(|address| Backend {
                    ip: address.ip.clone(),
                    node: address.node_name.clone(),
                    hostname: address.hostname.clone(),
                    pod: address.target_ref.clone(),
                    ready,
                    serving: ready,
                    terminating: false,
                    ports: ports.clone(),
                })
                .collect::<Vec<_>>()
        };
        backends.extend(addresses(&subset.addresses, true));
        backends.extend(addresses(&subset.not_ready_addresses, false));
    }
    backends
}

#[cfg(test)]
#[path = "mirror_tests.rs"]
mod tests;
