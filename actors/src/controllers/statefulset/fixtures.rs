//! StatefulSets, their pods, claims and revisions, for the tests of this module.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use serde_json::json;

use super::identity::{Identity, POD_INDEX_LABEL, POD_NAME_LABEL, REVISION_HASH_LABEL};
use super::reconcile::{reconcile, Action, DeleteReason, NewPod, Plan};
use crate::pods::cached::Pod;
use crate::pods::fixtures::ready_pod;

pub const UID: &str = "sts-uid";
pub const T0: &str = "2024-01-01T00:00:00Z";

pub fn at(text: &str) -> jiff::Timestamp {
    text.parse().unwrap()
}

pub fn now() -> jiff::Timestamp {
    at("2024-01-01T01:00:00Z")
}

/// `web`: 3 replicas of nginx:1 behind service `nginx`, a `www` claim each, OrderedReady,
/// RollingUpdate; `spec` merged over that.
pub fn web(spec: serde_json::Value) -> StatefulSet {
    let mut base = json!({
        "replicas": 3,
        "serviceName": "nginx",
        "selector": { "matchLabels": { "app": "nginx" } },
        "template": { "metadata": { "labels": { "app": "nginx" } },
                      "spec": { "containers": [{ "name": "nginx", "image": "nginx:1" }] } },
        "volumeClaimTemplates": [{ "metadata": { "name": "www" },
            "spec": { "accessModes": ["ReadWriteOnce"],
                      "resources": { "requests": { "storage": "1Gi" } } } }]
    });
    for (key, value) in spec.as_object().unwrap() {
        base[key] = value.clone();
    }
    serde_json::from_value(json!({
        "metadata": { "name": "web", "namespace": "default", "uid": UID, "generation": 2 },
        "spec": base
    }))
    .unwrap()
}

/// The set running `image` instead.
pub fn with_image(mut set: StatefulSet, image: &str) -> StatefulSet {
    let spec = set.spec.as_mut().unwrap();
    spec.template.spec.as_mut().unwrap().containers[0].image = Some(image.into());
    set
}

/// The set with this stored status.
pub fn with_status(mut set: StatefulSet, status: serde_json::Value) -> StatefulSet {
    set.status = Some(serde_json::from_value(status).unwrap());
    set
}

/// The revision the set's first sync creates (holding its template).
pub fn first_revision(set: &StatefulSet) -> Arc<ControllerRevision> {
    let plan = reconcile(set, &[], &[], &[], now());
    let created = plan.actions.iter().find_map(|a| match a {
        Action::CreateRevision(r) => Some(ControllerRevision::clone(r)),
        _ => None,
    });
    Arc::new(created.expect("a first sync creates a revision"))
}

/// The revisions of the set's templates over time, numbered 1, 2, ...
pub fn history(sets: &[&StatefulSet]) -> Vec<Arc<ControllerRevision>> {
    (1..)
        .zip(sets)
        .map(|(number, set)| {
            let mut r = (*first_revision(set)).clone();
            r.revision = number;
            Arc::new(r)
        })
        .collect()
}

pub fn revision(set: &StatefulSet) -> String {
    first_revision(set).metadata.name.clone().unwrap()
}

pub fn owner() -> OwnerReference {
    Identity::of(&web(json!({}))).owner_reference()
}

/// A Running, Ready pod of the set at `revision`, with its identity labels.
pub fn member(name: &str, revision: &str) -> Pod {
    let mut p = ready_pod(name, T0);
    p.metadata.uid = Some(format!("uid-{name}"));
    let index = name.rsplit('-').next().unwrap_or("");
    p.metadata.labels = Some(
        [
            ("app", "nginx"),
            (REVISION_HASH_LABEL, revision),
            (POD_NAME_LABEL, name),
            (POD_INDEX_LABEL, index),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    );
    p.metadata.owner_references = Some(vec![owner()]);
    p
}

pub fn unready(mut p: Pod) -> Pod {
    p.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "False".into();
    p
}

/// Its node stopped answering: the node lifecycle controller marks the pod's Ready Unknown.
pub fn unreachable(mut p: Pod) -> Pod {
    p.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "Unknown".into();
    p
}

pub fn pending(mut p: Pod) -> Pod {
    let status = p.status.as_mut().unwrap();
    status.phase = Some("Pending".into());
    status.conditions = None;
    p
}

pub fn ended(mut p: Pod, phase: &str) -> Pod {
    let status = p.status.as_mut().unwrap();
    status.phase = Some(phase.into());
    status.conditions = None;
    p
}

pub fn terminating(mut p: Pod) -> Pod {
    p.metadata.deletion_timestamp = Some(Time(now()));
    p
}

/// Ready since `since` rather than since T0.
pub fn ready_since(mut p: Pod, since: &str) -> Pod {
    let condition = &mut p.status.as_mut().unwrap().conditions.as_mut().unwrap()[0];
    condition.last_transition_time = Some(Time(at(since)));
    p
}

/// Controlled by another object.
pub fn foreign(mut p: Pod) -> Pod {
    p.metadata.owner_references.as_mut().unwrap()[0].uid = "other-uid".into();
    p
}

pub fn orphan(mut p: Pod) -> Pod {
    p.metadata.owner_references = None;
    p
}

pub fn arcs<T>(items: Vec<T>) -> Vec<Arc<T>> {
    items.into_iter().map(Arc::new).collect()
}

/// A claim of the namespace owned by `owners`.
pub fn claim(name: &str, owners: Vec<OwnerReference>) -> Arc<PersistentVolumeClaim> {
    let mut c = PersistentVolumeClaim::default();
    c.metadata.name = Some(name.into());
    c.metadata.namespace = Some("default".into());
    c.metadata.owner_references = Some(owners).filter(|o| !o.is_empty());
    Arc::new(c)
}

pub fn pod_owner(name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Reconciles the set over `pods`, with the revision of its template already made.
pub fn run(set: &StatefulSet, pods: Vec<Pod>) -> Plan {
    run_with(set, pods, &[], &[first_revision(set)])
}

pub fn run_with(
    set: &StatefulSet,
    pods: Vec<Pod>,
    claims: &[Arc<PersistentVolumeClaim>],
    revisions: &[Arc<ControllerRevision>],
) -> Plan {
    reconcile(set, &arcs(pods), claims, revisions, now())
}

pub fn new_pods(plan: &Plan) -> Vec<&NewPod> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            Action::CreatePod(new) => Some(new.as_ref()),
            _ => None,
        })
        .collect()
}

/// The names of the pods the plan creates, in order.
pub fn created(plan: &Plan) -> Vec<&str> {
    new_pods(plan)
        .into_iter()
        .map(|n| n.pod.metadata.name.as_deref().unwrap())
        .collect()
}

/// The pods the plan deletes, in order, and why.
pub fn deleted(plan: &Plan) -> Vec<(&str, DeleteReason)> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            Action::DeletePod { pod, reason } => Some((pod.metadata.name.as_deref()?, *reason)),
            _ => None,
        })
        .collect()
}

/// The revision label of the pod the plan creates with this name.
pub fn revision_of_new(plan: &Plan, name: &str) -> String {
    let new = new_pods(plan)
        .into_iter()
        .find(|n| n.pod.metadata.name.as_deref() == Some(name))
        .expect("the pod is created");
    new.pod.metadata.labels.as_ref().unwrap()[REVISION_HASH_LABEL].clone()
}
