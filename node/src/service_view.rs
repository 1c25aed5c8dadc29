//! Services and their EndpointSlices, followed once per node (the shared informer runtime)
//! and read by both the proxy and the DNS server.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use rudder_actors::controllers::endpoints::reconcile::SERVICE_NAME_LABEL;
use rudder_actors::informer::{Informer, Query};
use rudder_proto::client::ApiClient;

/// The informers of Services and EndpointSlices; clones share them. They stop when the
/// last clone is dropped.
#[derive(Clone)]
pub struct ServiceView {
    pub services: Informer<Service>,
    pub slices: Informer<EndpointSlice>,
}

/// Each Service (by namespace and name) with the slices labelled with its name.
pub type ServicesWithSlices = Vec<(Arc<Service>, Vec<Arc<EndpointSlice>>)>;

impl ServiceView {
    /// Starts both informers on the current tokio runtime.
    pub fn start(client: Arc<ApiClient>) -> Self {
        Self {
            services: Informer::start(client.clone(), Query::all::<Service>(), Vec::new()),
            slices: Informer::start(client, Query::all::<EndpointSlice>(), Vec::new()),
        }
    }

    /// Every Service in (namespace, name) order, each with its slices.
    pub fn services_with_slices(&self) -> ServicesWithSlices {
        let mut by_service: BTreeMap<(String, String), Vec<Arc<EndpointSlice>>> = BTreeMap::new();
        for slice in self.slices.cache().list() {
            let labels = slice.metadata.labels.as_ref();
            if let Some(name) = labels.and_then(|l| l.get(SERVICE_NAME_LABEL)) {
                let namespace = slice.metadata.namespace.clone().unwrap_or_default();
                by_service
                    .entry((namespace, name.clone()))
                    .or_default()
                    .push(slice);
            }
        }
        let mut all: Vec<((String, String), Arc<Service>)> = self
            .services
            .cache()
            .list()
            .into_iter()
            .map(|service| {
                let key = (
                    service.metadata.namespace.clone().unwrap_or_default(),
                    service.metadata.name.clone().unwrap_or_default(),
                );
                (key, service)
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all.into_iter()
            .map(|(key, service)| {
                let slices = by_service.remove(&key).unwrap_or_default();
                (service, slices)
            })
            .collect()
    }
}
