//! A Deployment's ReplicaSets: which one is new (its template), their sizes and revisions, a
//! new one made from the template, the status they add up to, and the old ones beyond the
//! revision history. Pure.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::hash::POD_TEMPLATE_HASH;
use super::rolling::Size;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// The ReplicaSets a Deployment owns: the one with its template, and the others.
pub struct Owned {
    pub new: Option<Arc<ReplicaSet>>,
    /// Oldest first.
    pub old: Vec<Arc<ReplicaSet>>,
}

/// The new ReplicaSet (the oldest whose template is the Deployment's, ignoring the hash
/// label) and the others, oldest first.
pub fn split(mut owned: Vec<Arc<ReplicaSet>>, template: &PodTemplateSpec) -> Owned {
    owned.sort_by_key(|s| {
        (
            s.metadata.creation_timestamp.as_ref().map(|t| t.0),
            s.metadata.name.clone(),
        )
    });
    let position = owned.iter().position(|s| {
        s.spec
            .as_ref()
            .and_then(|spec| spec.template.as_ref())
            .is_some_and(|t| same_template(t, template))
    });
    let new = position.map(|i| owned.remove(i));
    Owned { new, old: owned }
}

pub fn same_template(set: &PodTemplateSpec, deployment: &PodTemplateSpec) -> bool {
    let mut set = set.clone();
    if let Some(labels) = set.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    let mut deployment = deployment.clone();
    if let Some(labels) = deployment.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    set == deployment
}

pub fn annotation<'a>(set: &'a ReplicaSet, key: &str) -> Option<&'a String> {
    set.metadata.annotations.as_ref()?.get(key)
}

pub fn revision_of(set: &ReplicaSet) -> Option<i64> {
    annotation(set, REVISION)?.parse().ok()
}

/// A ReplicaSet's size. Its available pods are counted at most up to `replicas`: a set just
/// scaled down still reports the pods it is deleting (its controller counts its pods before
/// its own deletions, as Kubernetes' does, and reports them gone only at a later sync), and
/// counting them would let a rolling update scale the old sets down twice for the same new
/// pods (seen: 14 and 13 available of 20 under maxUnavailable 5). Tested in reconcile.rs.
pub fn size_of(set: &ReplicaSet) -> Size {
    let replicas = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    Size {
        name: set.metadata.name.clone().unwrap_or_default(),
        replicas,
        available: set
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0)
            .min(replicas),
        max_replicas: annotation(set, MAX_REPLICAS).and_then(|v| v.parse().ok()),
    }
}

/// A new ReplicaSet for the Deployment's template: `<deployment>-<hash>`, labelled and
/// selecting by the hash, controlled by the Deployment.
pub fn new_set(
    d: &Deployment,
    template: &PodTemplateSpec,
    hash: &str,
    replicas: i32,
    revision: i64,
    annotations: &BTreeMap<String, String>,
) -> ReplicaSet {
    let name = d.metadata.name.clone().unwrap_or_default();
    let mut template = template.clone();
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.labels
        .get_or_insert_with(Default::default)
        .insert(POD_TEMPLATE_HASH.into(), hash.into());
    let labels = meta.labels.clone();
    let spec = d.spec.clone().unwrap_or_default();
    let mut selector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(POD_TEMPLATE_HASH.into(), hash.into());
    let mut set_annotations = annotations.clone();
    set_annotations.insert(REVISION.into(), revision.to_string());
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{hash}")),
            namespace: d.metadata.namespace.clone(),
            labels,
            annotations: Some(set_annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name,
                uid: d.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    }
}

pub fn status(
    d: &Deployment,
    new: Option<&ReplicaSet>,
    old: &[Arc<ReplicaSet>],
) -> DeploymentStatus {
    let all: Vec<&ReplicaSet> = old.iter().map(|s| s.as_ref()).chain(new).collect();
    let sum = |f: &dyn Fn(&ReplicaSet) -> i32| all.iter().map(|s| f(s)).sum::<i32>();
    let of_status = |f: fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> Option<i32>| {
        move |s: &ReplicaSet| s.status.as_ref().and_then(f).unwrap_or(0)
    };
    let available = sum(&of_status(|s| s.available_replicas));
    let total_spec = sum(&|s: &ReplicaSet| s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(sum(&|s: &ReplicaSet| {
            s.status.as_ref().map_or(0, |st| st.replicas)
        })),
        updated_replicas: Some(new.map_or(0, |s| s.status.as_ref().map_or(0, |st| st.replicas))),
        ready_replicas: Some(sum(&of_status(|s| s.ready_replicas))),
        available_replicas: Some(available),
        unavailable_replicas: Some((total_spec - available).max(0)),
        ..Default::default()
    }
}

/// Old sets with nothing left in them beyond the `limit` latest revisions (`cleanupDeployment`).
pub fn history_to_delete(old: &[Arc<ReplicaSet>], limit: i32) -> Vec<String> {
    let mut empty: Vec<&Arc<ReplicaSet>> = old
        .iter()
        .filter(|s| {
            s.spec.as_ref().and_then(|x| x.replicas) == Some(0)
                && s.status.as_ref().is_none_or(|st| st.replicas == 0)
                && s.metadata.deletion_timestamp.is_none()
        })
        .collect();
    // Lowest revision first: a set an undo brought back is old by creation but recent.
    empty.sort_by_key(|s| revision_of(s).unwrap_or(0));
    let excess = empty
        .len()
        .saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
    empty
        .into_iter()
        .take(excess)
        .filter_map(|s| s.metadata.name.clone())
        .collect()
}
