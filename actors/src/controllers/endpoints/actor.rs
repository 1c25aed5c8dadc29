//! The endpoints controller's shell: Service events, events of the pods a Service selects
//! (before or after the change) and events of the Endpoints and slices it writes become
//! Service keys; a worker computes the Service's backends (reconcile.rs) and writes its
//! Endpoints and slices under the leader's fence, each only where it differs.
//!
//! ```text
//!  Event<Service | Pod | Endpoints | EndpointSlice> ─► Service keys ─► sync(key):
//!     Service gone (a live read agrees) ─► delete its Endpoints and slices
//!     Service being deleted ─► nothing (its slices go with it)
//!     no selector  ─► delete the slices made from a selector; the Endpoints are the
//!                     user's: mirrored into slices (mirror.rs) unless skip-mirror
//!     else         ─► Endpoints created / replaced at the cached resourceVersion;
//!                     slices created, replaced, deleted as `plan_slices` says
//!     ─► forget | rate-limited retry (a conflict or an AlreadyExists: the cache lagged)
//! ```
//!
//! Names are stable (the Service's for Endpoints, a hash of the port set for slices), so a
//! write made twice — by a worker whose cache lagged — is refused as AlreadyExists or a
//! conflict, never doubled: no expectations are needed.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use rudder_proto::api::{DeleteRequest, Fence};
use rudder_proto::client::{ApiClient, ClientError};

use super::mirror::{mirrored_slices, MIRRORED};
use super::reconcile::{
    backends, endpoints, endpoints_agree, is_owned_slice_of, plan_slices, selector_of, slices,
    SliceOwner, BY_SELECTOR, SERVICE_NAME_LABEL,
};
use crate::controllers::runtime::{Controller, Subscriptions, Watches};
use crate::informer::{Cache, Event, ObjectKey};
use crate::pods::cached::Pod;
use crate::queue::WorkQueue;

/// What the controller reads.
#[derive(Clone)]
pub struct Caches {
    pub services: Cache<Service>,
    pub pods: Cache<Pod>,
    pub endpoints: Cache<Endpoints>,
    pub slices: Cache<EndpointSlice>,
}

/// The endpoints controller: clones share the caches and the queue.
#[derive(Clone)]
pub struct EndpointsController {
    client: Arc<ApiClient>,
    fence: Fence,
    caches: Caches,
    queue: WorkQueue<ObjectKey>,
}

impl EndpointsController {
    /// The controller for the leader holding `fence`.
    pub fn new(client: Arc<ApiClient>, fence: Fence, caches: Caches) -> Self {
        Self {
            client,
            fence,
            caches,
            queue: WorkQueue::default(),
        }
    }

    async fn delete(&self, resource: &str, namespace: &str, name: &str) -> Result<(), ClientError> {
        let request = DeleteRequest {
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
            ..Default::default()
        };
        match self.client.fenced(&self.fence).delete_object(request).await {
            Ok(_) => Ok(()),
            Err(error) if error.is_not_found() => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// The Service's slices that `owner` makes.
    fn owned_slices(&self, key: &ObjectKey, owner: &SliceOwner) -> Vec<Arc<EndpointSlice>> {
        self.caches
            .slices
            .in_namespace(&key.namespace)
            .into_iter()
            .filter(|slice| is_owned_slice_of(slice, &key.name, owner))
            .collect()
    }

    async fn sync_endpoints(&self, key: &ObjectKey, desired: Endpoints) -> Result<(), ClientError> {
        let fenced = self.client.fenced(&self.fence);
        match self.caches.endpoints.get(key) {
            None => {
                let body = serde_json::to_value(&desired).expect("Endpoints encode");
                fenced
                    .create_object("endpoints", &key.namespace, &body)
                    .await?;
            }
            Some(current) if !endpoints_agree(&current, &desired) => {
                let mut next = (*current).clone();
                next.subsets = desired.subsets;
                next.metadata.labels = desired.metadata.labels;
                let body = serde_json::to_value(&next).expect("Endpoints encode");
                fenced
                    .update_object("endpoints", &key.namespace, &key.name, &body, false)
                    .await?;
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Brings `owner`'s slices of the Service to `desired`.
    async fn sync_slices(
        &self,
        key: &ObjectKey,
        desired: Vec<EndpointSlice>,
        owner: &SliceOwner,
    ) -> Result<(), ClientError> {
        let existing = self.owned_slices(key, owner);
        let plan = plan_slices(desired, &existing);
        let fenced = self.client.fenced(&self.fence);
        for slice in plan.create {
            let body = serde_json::to_value(&slice).expect("slices encode");
            fenced
                .create_object("endpointslices", &key.namespace, &body)
                .await?;
        }
        for desired in plan.update {
            let name = desired.metadata.name.clone().unwrap_or_default();
            let Some(current) = existing
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(name.as_str()))
            else {
                continue;
            };
            // What this controller decides replaces its part; the rest of the metadata
            // (annotations, finalizers, the resourceVersion to compare) stays.
            let mut slice = (**current).clone();
            slice.endpoints = desired.endpoints;
            slice.ports = desired.ports;
            slice.metadata.labels = desired.metadata.labels;
            slice.metadata.owner_references = desired.metadata.owner_references;
            let body = serde_json::to_value(&slice).expect("slices encode");
            fenced
                .update_object("endpointslices", &key.namespace, &name, &body, false)
                .await?;
        }
        for name in plan.delete {
            self.delete("endpointslices", &key.namespace, &name).await?;
        }
        Ok(())
    }

    /// Every Service of the pod's namespace that selects it.
    fn services_selecting(&self, pod: &Pod) {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        for service in self.caches.services.in_namespace(namespace) {
            let selects = selector_of(&service)
                .is_some_and(|selector| selector.matches_labels(pod.metadata.labels.as_ref()));
            if selects {
                self.queue.add(ObjectKey::of(&service.metadata));
            }
        }
    }
}

impl Controller for EndpointsController {
    type Key = ObjectKey;
    const NAME: &'static str = "endpoints";

    fn queue(&self) -> &WorkQueue<ObjectKey> {
        &self.queue
    }

    fn watch(&self, caches: &mut Subscriptions<'_, Self>) {
        caches.watch(&self.caches.services);
        caches.watch(&self.caches.pods);
        caches.watch(&self.caches.endpoints);
        caches.watch(&self.caches.slices);
    }

    async fn sync(&self, key: ObjectKey) -> Result<Option<Duration>, ClientError> {
        let Some(service) = self.caches.services.get(&key) else {
            // Gone from the cache: make sure it is gone from the API before deleting what
            // stands behind it (a cache that lags must not delete a user's Endpoints).
            match self
                .client
                .get_object("services", &key.namespace, &key.name)
                .await
            {
                Ok(_) => return Ok(Some(Duration::from_secs(1))),
                Err(error) if error.is_not_found() => {}
                Err(error) => return Err(error),
            }
            if self.caches.endpoints.get(&key).is_some() {
                self.delete("endpoints", &key.namespace, &key.name).await?;
            }
            for owner in [BY_SELECTOR, MIRRORED] {
                for slice in self.owned_slices(&key, &owner) {
                    let name = slice.metadata.name.as_deref().unwrap_or_default();
                    self.delete("endpointslices", &key.namespace, name).await?;
                }
            }
            return Ok(None);
        };
        if service.metadata.deletion_timestamp.is_some() {
            // Being deleted: a slice made now would race the garbage collector (and block a
            // foreground deletion); what it owns goes with it.
            return Ok(None);
        }
        let pods = self.caches.pods.in_namespace(&key.namespace);
        let Some(backends) = backends(&service, &pods) else {
            // No selector: the Endpoints are the user's, mirrored into slices; the slices
            // made from a selector it had go.
            self.sync_slices(&key, Vec::new(), &BY_SELECTOR).await?;
            let mirrored = match self.caches.endpoints.get(&key) {
                Some(users) => mirrored_slices(&service, &users),
                None => Vec::new(),
            };
            self.sync_slices(&key, mirrored, &MIRRORED).await?;
            return Ok(None);
        };
        self.sync_endpoints(&key, endpoints(&service, &backends))
            .await?;
        self.sync_slices(&key, slices(&service, &backends), &BY_SELECTOR)
            .await?;
        // Mirrored slices of a Service that now has a selector go.
        self.sync_slices(&key, Vec::new(), &MIRRORED).await?;
        Ok(None)
    }
}

impl Watches<Service> for EndpointsController {
    fn on_event(&self, event: &Event<Service>) {
        if let Some(key) = event.key() {
            self.queue.add(key);
        }
    }
}

impl Watches<Pod> for EndpointsController {
    /// A pod concerns the Services that select it before or after the change.
    fn on_event(&self, event: &Event<Pod>) {
        for pod in event.states() {
            self.services_selecting(pod);
        }
    }
}

impl Watches<Endpoints> for EndpointsController {
    /// Endpoints deleted by someone else are put back; a user's, for a Service without a
    /// selector, are mirrored. An Endpoints object whose Service is not known yet waits
    /// for the Service's own event: taken alone, it would look like a deleted Service's.
    fn on_event(&self, event: &Event<Endpoints>) {
        if let Event::Deleted(endpoints) = event {
            self.queue.add(ObjectKey::of(&endpoints.metadata));
            return;
        }
        for endpoints in event.states() {
            let key = ObjectKey::of(&endpoints.metadata);
            let mirrored = self
                .caches
                .services
                .get(&key)
                .is_some_and(|service| selector_of(&service).is_none());
            if mirrored {
                self.queue.add(key);
            }
        }
    }
}

impl Watches<EndpointSlice> for EndpointsController {
    fn on_event(&self, event: &Event<EndpointSlice>) {
        for slice in event.states() {
            let labels = slice.metadata.labels.as_ref();
            if let Some(service) = labels.and_then(|l| l.get(SERVICE_NAME_LABEL)) {
                self.queue.add(ObjectKey {
                    namespace: slice.metadata.namespace.clone().unwrap_or_default(),
                    name: service.clone(),
                });
            }
        }
    }
}
