//! The garbage collector's shell: informers over every kind (metadata-only, but for pods,
//! whose shared whole-object cache it reads) feed one ownership graph; an event wakes the
//! objects it may concern (the dependents of an object gone, an owner a dependent released
//! or stopped blocking, an object naming an owner not observed); a worker decides for one
//! object (decide.rs) and writes under the leader's fence. An owner missing from the graph
//! is looked up in the API before anything is deleted for its absence, so a cache that lags
//! (or a kind listed later) deletes nothing.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use rudder_proto::api::{DeleteRequest, Fence};
use rudder_proto::client::{ApiClient, ClientError};
use rudder_proto::objects::deletion::FOREGROUND_DELETION;
use serde_json::json;

use super::decide::{self, Action, OwnerState};
use super::graph::{resource_of, Graph, Node};
use crate::controllers::runtime::{Controller, Subscriptions, Watches};
use crate::informer::{ApiObject, Cache, Event};
use crate::queue::WorkQueue;

/// Subscribes the collector to one kind's cache.
type Subscribe = Arc<dyn Fn(&mut Subscriptions<'_, GarbageCollector>) + Send + Sync>;

/// The caches the graph is built from, one per kind.
#[derive(Clone, Default)]
pub struct GraphSources {
    subscribe: Vec<Subscribe>,
}

impl GraphSources {
    /// Adds a cache of kind `K`: a metadata-only one ([`MetaOnly`]), or a whole-object one
    /// other components share (the graph reads only its objects' metadata).
    ///
    /// [`MetaOnly`]: crate::informer::MetaOnly
    pub fn add<K: ApiObject>(&mut self, cache: Cache<K>) {
        self.subscribe
            .push(Arc::new(move |caches| caches.watch(&cache)));
    }

    /// How many kinds the graph follows.
    pub fn len(&self) -> usize {
        self.subscribe.len()
    }

    pub fn is_empty(&self) -> bool {
        self.subscribe.is_empty()
    }
}

/// The garbage collector: clones share the graph and the queue.
#[derive(Clone)]
pub struct GarbageCollector {
    client: Arc<ApiClient>,
    fence: Fence,
    sources: GraphSources,
    graph: Arc<Mutex<Graph>>,
    /// Uids to look at.
    queue: WorkQueue<String>,
}

impl GarbageCollector {
    pub fn new(client: Arc<ApiClient>, fence: Fence, sources: GraphSources) -> Self {
        Self {
            client,
            fence,
            sources,
            graph: Arc::default(),
            queue: WorkQueue::default(),
        }
    }

    fn graph(&self) -> MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Controller for GarbageCollector {
    type Key = String;
    const NAME: &'static str = "garbagecollector";

    fn queue(&self) -> &WorkQueue<String> {
        &self.queue
    }

    fn watch(&self, caches: &mut Subscriptions<'_, Self>) {
        for subscribe in &self.sources.subscribe {
            subscribe(caches);
        }
    }

    async fn sync(&self, uid: String) -> Result<Option<Duration>, ClientError> {
        let (node, plan) = {
            let graph = self.graph();
            let Some(node) = graph.get(&uid).cloned() else {
                return Ok(None);
            };
            let plan = decide::for_owner(&node, &graph.dependents_of(&uid));
            (node, plan)
        };
        for dependent in plan.wake {
            self.queue.add(dependent);
        }
        let mut writes = plan.writes;
        if !node.owners.is_empty() && !node.deleting {
            let states = self.owner_states(&node).await?;
            let has_dependents = !self.graph().dependents_of(&uid).is_empty();
            writes.extend(decide::for_dependent(&node, &states, has_dependents));
        }
        for write in writes {
            self.carry_out(write).await?;
        }
        Ok(None)
    }
}

impl<K: ApiObject> Watches<K> for GarbageCollector {
    fn on_event(&self, event: &Event<K>) {
        let mut wake = Vec::new();
        {
            let mut graph = self.graph();
            match event {
                Event::Added(object) | Event::Updated { new: object, .. } => {
                    let node = Node::from_meta(K::API_VERSION, K::KIND, object.metadata());
                    let uid = node.identity.uid.clone();
                    let concerns_collector = node.awaits_collector()
                        || node.owners.iter().any(|owner| {
                            graph
                                .get(&owner.uid)
                                .is_none_or(Node::deletes_dependents_first)
                        });
                    let now_owners = node.owners.clone();
                    let now_deleting = node.deleting;
                    let before = graph.observe(node);
                    if concerns_collector {
                        wake.push(uid);
                    }
                    // An owner this object released, stopped blocking, or stopped blocking
                    // by going, may be done waiting.
                    if let Some(before) = before {
                        let started_going = now_deleting && !before.deleting;
                        for owner in before.owners {
                            let changed = !now_owners.contains(&owner);
                            let waits = graph.get(&owner.uid).is_some_and(Node::awaits_collector);
                            if (changed || started_going) && waits {
                                wake.push(owner.uid);
                            }
                        }
                    }
                }
                Event::Deleted(object) => {
                    let uid = object.metadata().uid.clone().unwrap_or_default();
                    if let Some(gone) = graph.forget(&uid) {
                        for owner in gone.owners {
                            if graph.get(&owner.uid).is_some_and(Node::awaits_collector) {
                                wake.push(owner.uid);
                            }
                        }
                    }
                    // Its dependents lost an owner.
                    wake.extend(
                        graph
                            .dependents_of(&uid)
                            .iter()
                            .map(|dependent| dependent.identity.uid.clone()),
                    );
                }
                Event::Synced => wake.extend(graph.needing_attention()),
            }
        }
        for uid in wake {
            self.queue.add(uid);
        }
    }
}

impl GarbageCollector {
    /// The state of each owner `node` names: from the graph when observed there, else from
    /// a read of the API (the graph may lag, or the owner's kind may not be followed).
    async fn owner_states(&self, node: &Node) -> Result<Vec<(String, OwnerState)>, ClientError> {
        let mut states = Vec::new();
        for owner in &node.owners {
            let observed =
                self.graph()
                    .get(&owner.uid)
                    .map(|owner| match owner.deletes_dependents_first() {
                        true => OwnerState::WaitingForDependents,
                        false => OwnerState::Present,
                    });
            let state = match observed {
                Some(state) => state,
                None => self.read_owner(node, owner).await?,
            };
            states.push((owner.uid.clone(), state));
        }
        Ok(states)
    }

    /// An owner not in the graph, as the API has it now.
    async fn read_owner(
        &self,
        node: &Node,
        owner: &OwnerReference,
    ) -> Result<OwnerState, ClientError> {
        let resource = resource_of(&owner.api_version, &owner.kind);
        let read = self
            .client
            .get_object(&resource, &node.identity.namespace, &owner.name)
            .await;
        match read {
            Ok(found) if found["metadata"]["uid"].as_str() == Some(owner.uid.as_str()) => {
                let going = found["metadata"]["deletionTimestamp"].is_string()
                    && found["metadata"]["finalizers"]
                        .as_array()
                        .is_some_and(|held| held.iter().any(|f| f == FOREGROUND_DELETION));
                Ok(match going {
                    true => OwnerState::WaitingForDependents,
                    false => OwnerState::Present,
                })
            }
            // Another object under the owner's name: the owner itself is gone.
            Ok(_) => Ok(OwnerState::Absent),
            Err(error) if error.is_not_found() => Ok(OwnerState::Absent),
            Err(error) if error.reason() == "BadRequest" => {
                // A kind the API does not serve: nothing can be known of the owner, so the
                // dependent stays (as Kubernetes keeps it).
                tracing::warn!(dependent = %node.identity, owner_kind = %owner.kind, %error,
                    "an owner of a kind the API does not serve; leaving the dependent");
                Ok(OwnerState::Present)
            }
            Err(error) => Err(error),
        }
    }

    async fn carry_out(&self, action: Action) -> Result<(), ClientError> {
        let fenced = self.client.fenced(&self.fence);
        let result = match &action {
            Action::Delete {
                object,
                resource_version,
                policy,
            } => {
                tracing::info!(object = %object, policy = policy.as_str(),
                    "garbage collector: deleting a dependent whose owners are gone");
                fenced
                    .delete_object(DeleteRequest {
                        resource: object.resource(),
                        namespace: object.namespace.clone(),
                        name: object.name.clone(),
                        propagation_policy: policy.as_str().into(),
                        precondition_uid: object.uid.clone(),
                        precondition_resource_version: resource_version.clone(),
                        ..Default::default()
                    })
                    .await
                    .map(drop)
            }
            Action::DropOwners {
                object,
                resource_version,
                keep,
                ..
            } => {
                let patch = json!({ "metadata": {
                    "ownerReferences": keep, "resourceVersion": resource_version } });
                fenced
                    .patch_object(
                        &object.resource(),
                        &object.namespace,
                        &object.name,
                        &patch,
                        false,
                    )
                    .await
                    .map(drop)
            }
            Action::RemoveFinalizer {
                object,
                resource_version,
                keep,
                ..
            } => {
                let patch = json!({ "metadata": {
                    "finalizers": keep, "resourceVersion": resource_version } });
                fenced
                    .patch_object(
                        &object.resource(),
                        &object.namespace,
                        &object.name,
                        &patch,
                        false,
                    )
                    .await
                    .map(drop)
            }
        };
        match result {
            // Gone already; or (the preconditions) replaced by another object, or changed
            // since the decision: its event brings it back to be decided again.
            Err(error) if error.is_not_found() => Ok(()),
            Err(error)
                if matches!(action, Action::Delete { .. }) && error.reason() == "Conflict" =>
            {
                Ok(())
            }
            other => other,
        }
    }
}
