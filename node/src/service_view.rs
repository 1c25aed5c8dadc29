//! Services and their EndpointSlices, followed once per node (the shared informer runtime)
//! and read by both the proxy and the DNS server.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use rudder_actors::controllers::endpoints::reconcile::SERVICE_NAME_LABEL;
use rudder_actors::informer::{Index, Informer, ObjectKey, Query};
use rudder_proto::client::ApiClient;

/// The informers of Services and EndpointSlices; clones share them. They stop when the
/// last clone is dropped.
#[derive(Clone)]
pub struct ServiceView {
    pub services: Informer<Service>,
    pub slices: Informer<EndpointSlice>,
}

/// The slices index: by the Service named in their label.
const BY_SERVICE: &str = "service";

fn service_index_value(service: &ObjectKey) -> String {
    format!("{}/{}", service.namespace, service.name)
}

/// The Service a slice is labelled with (`kubernetes.io/service-name`, in its namespace).
pub fn service_of_slice(slice: &EndpointSlice) -> Option<ObjectKey> {
    let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some(ObjectKey::new(
        slice.metadata.namespace.clone().unwrap_or_default(),
        name.clone(),
    ))
}

fn slices_by_service() -> Index<EndpointSlice> {
    Index {
        name: BY_SERVICE,
        values: |slice| {
            service_of_slice(slice)
                .map(|service| service_index_value(&service))
                .into_iter()
                .collect()
        },
    }
}

/// Each Service (by namespace and name) with the slices labelled with its name.
pub type ServicesWithSlices = Vec<(Arc<Service>, Vec<Arc<EndpointSlice>>)>;

impl ServiceView {
    /// Starts both informers on the current tokio runtime.
    pub fn start(client: Arc<ApiClient>) -> Self {
        Self {
            services: Informer::start(client.clone(), Query::all::<Service>(), Vec::new()),
            slices: Informer::start(
                client,
                Query::all::<EndpointSlice>(),
                vec![slices_by_service()],
            ),
        }
    }

    /// One Service (`None` when there is none by that key) with its slices.
    pub fn service_with_slices(
        &self,
        service: &ObjectKey,
    ) -> (Option<Arc<Service>>, Vec<Arc<EndpointSlice>>) {
        let slices = self
            .slices
            .cache()
            .indexed(BY_SERVICE, &service_index_value(service))
            .unwrap_or_default();
        (self.services.cache().get(service), slices)
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
