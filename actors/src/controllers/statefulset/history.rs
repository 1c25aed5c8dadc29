//! A StatefulSet's template history as ControllerRevisions (Kubernetes'
//! `getStatefulSetRevisions` and `truncateHistory`), pure. The hash, the name `<set>-<hash>`
//! and the stored patch are the DaemonSet's (`daemonset::history`); what differs is that a
//! StatefulSet tracks two revisions at once and its pods carry the revision's *name*.
//!
//! ```text
//!  revisions it controls + orphans its selector matches (adopted), by number
//!   latest holds the template ──────────────► update revision = latest
//!   an older one holds it (a rollback) ─────► renumber it one above the latest
//!   none holds it ──────────────────────────► create <set>-<hash>, numbered one above
//!     <set>-<hash> taken by other data ─────► collisionCount + 1, nothing else this sync
//!  current revision = status.currentRevision if it still exists, else the update revision
//!  history: revisions no pod carries, neither current nor update, beyond
//!           revisionHistoryLimit (10) ─────► deleted, lowest number first
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use rudder_proto::objects::selector::LabelSelector;

use super::identity::REVISION_HASH_LABEL;
use crate::controllers::daemonset::history::{revision_data, revision_name, template_hash};
use crate::pods::controller_of;

/// Revisions kept besides the live ones unless the set says otherwise.
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;

/// A revision the set's pods are made from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolved {
    /// What its pods carry in `controller-revision-hash`.
    pub name: String,
    /// The template it stores; `None` when its data does not read back as one.
    pub template: Option<PodTemplateSpec>,
}

/// What to do with the set's revisions, and which two it runs.
#[derive(Debug, Clone, Default)]
pub struct RevisionPlan {
    /// Orphan revisions its selector matches: they get its controller reference.
    pub adopt: Vec<Arc<ControllerRevision>>,
    /// No revision holds the template: create this one.
    pub create: Option<ControllerRevision>,
    /// An older revision holds the template (a rollback): give it this number.
    pub renumber: Option<(Arc<ControllerRevision>, i64)>,
    /// Pods below the partition are made from this one.
    pub current: Resolved,
    /// The template the set asks for now.
    pub update: Resolved,
    pub collision_count: i32,
    /// `<set>-<hash>` is taken by another revision: `collision_count` went up, and the next
    /// sync tries the next hash. Nothing else is done meanwhile.
    pub collision: Option<String>,
    /// The revisions it owns (adopted ones too, not the one to create), oldest first.
    pub owned: Vec<Arc<ControllerRevision>>,
}

/// `revisions`: the ControllerRevisions of the set's namespace.
pub fn plan_revisions(
    set: &StatefulSet,
    selector: &LabelSelector,
    owner: &OwnerReference,
    revisions: &[Arc<ControllerRevision>],
) -> RevisionPlan {
    let template = set
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let status = set.status.clone().unwrap_or_default();
    let mut plan = RevisionPlan {
        collision_count: status.collision_count.unwrap_or(0),
        ..RevisionPlan::default()
    };
    for revision in revisions {
        match controller_of(&revision.metadata) {
            Some(o) if o.uid == owner.uid => plan.owned.push(revision.clone()),
            None if selector.matches_labels(revision.metadata.labels.as_ref()) => {
                plan.adopt.push(revision.clone());
                plan.owned.push(revision.clone());
            }
            _ => {}
        }
    }
    plan.owned.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
    let data = revision_data(&template);
    let next = plan.owned.last().map_or(1, |r| r.revision + 1);
    let latest = plan.owned.last().map(|r| name_of(r).to_string());
    let latest_equal = plan
        .owned
        .iter()
        .rev()
        .find(|r| r.data.as_ref().is_some_and(|d| d.0 == data))
        .cloned();
    let update_name = match latest_equal {
        Some(r) if Some(name_of(&r)) == latest.as_deref() => name_of(&r).to_string(),
        Some(r) => {
            let name = name_of(&r).to_string();
            plan.renumber = Some((r, next));
            name
        }
        None => {
            let hash = template_hash(&template, status.collision_count);
            let set_name = set.metadata.name.as_deref().unwrap_or("");
            let name = revision_name(set_name, &hash);
            if revisions.iter().any(|r| name_of(r) == name) {
                plan.collision_count = plan.collision_count.saturating_add(1);
                plan.collision = Some(name);
                return plan;
            }
            plan.create = Some(new_revision(set, owner, &template, &hash, next));
            name
        }
    };
    plan.update = Resolved {
        name: update_name,
        template: Some(template),
    };
    let current = status
        .current_revision
        .as_deref()
        .and_then(|c| plan.owned.iter().find(|r| name_of(r) == c));
    plan.current = match current {
        Some(r) if name_of(r) != plan.update.name => Resolved {
            name: name_of(r).to_string(),
            template: template_of(r),
        },
        _ => plan.update.clone(),
    };
    plan
}

/// The revisions to delete: those not `live`, oldest first, beyond `limit` of them (a
/// negative limit keeps them all). `owned` is oldest first.
pub fn expired(
    owned: &[Arc<ControllerRevision>],
    live: &BTreeSet<&str>,
    limit: i32,
) -> Vec<Arc<ControllerRevision>> {
    let Ok(limit) = usize::try_from(limit) else {
        return Vec::new();
    };
    let history: Vec<&Arc<ControllerRevision>> = owned
        .iter()
        .filter(|r| !live.contains(name_of(r)))
        .collect();
    let excess = history.len().saturating_sub(limit);
    history.into_iter().take(excess).cloned().collect()
}

/// The template a revision stores (its patch without `$patch`), as `ApplyRevision` restores it.
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision
        .data
        .as_ref()?
        .0
        .get("spec")?
        .get("template")?
        .clone();
    template.as_object_mut()?.remove("$patch");
    serde_json::from_value(template).ok()
}

fn new_revision(
    set: &StatefulSet,
    owner: &OwnerReference,
    template: &PodTemplateSpec,
    hash: &str,
    number: i64,
) -> ControllerRevision {
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.to_string(), hash.to_string());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(
                set.metadata.name.as_deref().unwrap_or(""),
                hash,
            )),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: set.metadata.annotations.clone(),
            owner_references: Some(vec![owner.clone()]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(revision_data(template))),
        revision: number,
    }
}

/// Kubernetes' `SortControllerRevisions`: by number, then age, then name.
fn order_key(r: &ControllerRevision) -> (i64, Option<jiff::Timestamp>, &str) {
    (
        r.revision,
        r.metadata.creation_timestamp.as_ref().map(|t| t.0),
        name_of(r),
    )
}

pub fn name_of(revision: &ControllerRevision) -> &str {
    revision.metadata.name.as_deref().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use serde_json::json;

    fn web(image: &str, current: Option<&str>) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": { "name": "web", "namespace": "default", "uid": "sts-uid" },
            "spec": { "selector": { "matchLabels": { "app": "nginx" } },
                      "template": { "metadata": { "labels": { "app": "nginx" } },
                                    "spec": { "containers": [{ "name": "c", "image": image }] } } },
            "status": { "replicas": 0, "currentRevision": current }
        }))
        .unwrap()
    }

    fn owner() -> OwnerReference {
        super::super::identity::Identity::of(&web("x", None)).owner_reference()
    }

    fn selector() -> LabelSelector {
        let labels = BTreeMap::from([("app".to_string(), "nginx".to_string())]);
        LabelSelector::from_set(&labels)
    }

    fn revision(image: &str, number: i64) -> Arc<ControllerRevision> {
        let set = web(image, None);
        let template = set.spec.clone().unwrap().template;
        let hash = template_hash(&template, None);
        Arc::new(new_revision(&set, &owner(), &template, &hash, number))
    }

    fn plan(set: &StatefulSet, revisions: &[Arc<ControllerRevision>]) -> RevisionPlan {
        plan_revisions(set, &selector(), &owner(), revisions)
    }

    #[test]
    fn a_new_set_gets_revision_one_as_both_current_and_update() {
        let p = plan(&web("v1", None), &[]);
        let created = p.create.expect("a first revision");
        assert_eq!(created.revision, 1);
        assert_eq!(
            created.metadata.name.as_deref(),
            Some(p.update.name.as_str())
        );
        assert!(p.update.name.starts_with("web-"));
        assert_eq!(p.current, p.update);
        assert_eq!(created.metadata.owner_references.unwrap()[0].uid, "sts-uid");
    }

    #[test]
    fn a_template_change_makes_an_update_revision_beside_the_current_one() {
        let v1 = revision("v1", 1);
        let p = plan(&web("v2", Some(name_of(&v1))), std::slice::from_ref(&v1));
        assert_eq!(p.create.as_ref().map(|r| r.revision), Some(2));
        assert_eq!(p.current.name, name_of(&v1));
        let image = |t: &Option<PodTemplateSpec>| {
            t.as_ref().unwrap().spec.as_ref().unwrap().containers[0]
                .image
                .clone()
        };
        assert_eq!(image(&p.current.template).as_deref(), Some("v1"));
        assert_eq!(image(&p.update.template).as_deref(), Some("v2"));
    }

    #[test]
    fn an_unchanged_template_keeps_the_latest_and_a_rollback_renumbers() {
        let (v1, v2) = (revision("v1", 1), revision("v2", 2));
        let same = plan(&web("v2", Some(name_of(&v2))), &[v1.clone(), v2.clone()]);
        assert!(same.create.is_none() && same.renumber.is_none());
        assert_eq!(same.update.name, name_of(&v2));
        let back = plan(&web("v1", Some(name_of(&v2))), &[v1.clone(), v2.clone()]);
        assert!(back.create.is_none());
        assert_eq!(
            back.renumber.as_ref().map(|(r, n)| (name_of(r), *n)),
            Some((name_of(&v1), 3))
        );
        assert_eq!(
            (back.update.name.as_str(), back.current.name.as_str()),
            (name_of(&v1), name_of(&v2))
        );
    }

    #[test]
    fn a_name_taken_by_other_data_raises_the_collision_count() {
        let set = web("v2", None);
        let hash = template_hash(&set.spec.clone().unwrap().template, None);
        let mut impostor = (*revision("v1", 1)).clone();
        impostor.metadata.name = Some(revision_name("web", &hash));
        impostor.metadata.owner_references = None;
        impostor.metadata.labels = None;
        let p = plan(&set, &[Arc::new(impostor)]);
        assert_eq!((p.collision_count, p.create.is_none()), (1, true));
        assert_eq!(p.collision, Some(revision_name("web", &hash)));
    }

    #[test]
    fn orphans_the_selector_matches_are_adopted_and_others_ignored() {
        let mut orphan = (*revision("v1", 1)).clone();
        orphan.metadata.owner_references = None;
        let mut stranger = (*revision("v0", 7)).clone();
        stranger.metadata.owner_references = None;
        stranger.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
        let p = plan(&web("v1", None), &[Arc::new(orphan), Arc::new(stranger)]);
        assert_eq!(p.adopt.len(), 1);
        assert!(p.create.is_none(), "the adopted orphan holds the template");
        assert_eq!(p.owned.len(), 1);
    }

    #[test]
    fn history_beyond_the_limit_goes_oldest_first_but_never_a_live_revision() {
        let owned: Vec<_> = (1..=5).map(|n| revision(&format!("v{n}"), n)).collect();
        let live: BTreeSet<&str> = [name_of(&owned[0]), name_of(&owned[4])].into();
        let names = |rs: Vec<Arc<ControllerRevision>>| -> Vec<String> {
            rs.iter().map(|r| name_of(r).to_string()).collect()
        };
        assert_eq!(
            names(expired(&owned, &live, 1)),
            names(owned[1..3].to_vec())
        );
        assert!(expired(&owned, &live, 3).is_empty());
        assert!(expired(&owned, &live, -1).is_empty());
        assert_eq!(expired(&owned, &live, 0).len(), 3);
    }
}
