//! The Deployment controller's decision (Kubernetes' `deployment_controller.go` `syncDeployment`),
//! pure: a Deployment, the ReplicaSets of its namespace and `now` in; what to adopt, release,
//! create, resize and delete, and the status to write, out. One step per sync; the
//! ReplicaSets' status changes bring the next.
//!
//! ```text
//!  claim ReplicaSets ─► new one = same template (ignoring pod-template-hash), else create
//!  deleting: status only │ paused: resize only │ size changed: proportional resize
//!  Recreate: old → 0, wait for their pods to go, then new → replicas
//!  RollingUpdate: grow new within maxSurge (rolling.rs), else shrink old within maxUnavailable
//!  complete or paused: delete old ReplicaSets beyond revisionHistoryLimit
//!  status: counts, Available, Progressing (progress.rs)
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rudder_proto::objects::selector::LabelSelector;

use super::hash::template_hash;
use super::progress::{moved, set_available, set_progressing, Progress};
use super::rolling::{fenceposts, next_new_size, scale_proportionally, shrink_old, Size};
use super::sets::{
    annotation, history_to_delete, new_set, revision_of, size_of, split, status, Owned,
    DESIRED_REPLICAS, MAX_REPLICAS, REVISION, REVISION_HISTORY,
};
use crate::pods::cached::Pod;
use crate::pods::controller_of;

/// A change to an existing ReplicaSet: its new size and the annotations to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resize {
    pub name: String,
    pub replicas: i32,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub adopt: Vec<Arc<ReplicaSet>>,
    pub release: Vec<Arc<ReplicaSet>>,
    /// The new ReplicaSet to create (named `<deployment>-<hash>`).
    pub create: Option<ReplicaSet>,
    pub resize: Vec<Resize>,
    /// Old ReplicaSets beyond the revision history.
    pub delete: Vec<String>,
    /// The Deployment's own `revision` annotation, when it changes.
    pub revision: Option<String>,
    pub status: DeploymentStatus,
    pub requeue_after: Option<Duration>,
}

/// Why a Deployment cannot be acted on (it would have been refused by validation).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeploymentError {
    #[error("spec.selector is invalid")]
    BadSelector,
    #[error("spec.strategy.rollingUpdate: {0}")]
    BadStrategy(#[from] crate::intstr::NotAPercentage),
}

/// `sets` and `pods`: those of the Deployment's namespace (pods only matter to Recreate, which
/// waits until no pod of an old set is left, terminating ones included).
pub fn reconcile(
    d: &Deployment,
    sets: &[Arc<ReplicaSet>],
    pods: &[Arc<Pod>],
    now: jiff::Timestamp,
) -> Result<Plan, DeploymentError> {
    let spec = d.spec.clone().unwrap_or_default();
    let selector =
        LabelSelector::from_api(&spec.selector).map_err(|_| DeploymentError::BadSelector)?;
    let replicas = spec.replicas.unwrap_or(1);
    let strategy = spec.strategy.clone().unwrap_or_default();
    let recreate = strategy.type_.as_deref() == Some("Recreate");
    let rolling = strategy.rolling_update.clone().unwrap_or_default();
    let quarter = IntOrString::String("25%".into());
    let (surge, unavailable) = if recreate {
        (0, 0)
    } else {
        let surge = rolling.max_surge.as_ref().unwrap_or(&quarter);
        fenceposts(
            surge,
            rolling.max_unavailable.as_ref().unwrap_or(&quarter),
            replicas,
        )?
    };
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let deleting = d.metadata.deletion_timestamp.is_some();

    let mut plan = Plan::default();
    let mut owned = Vec::new();
    for set in sets {
        let labels = set.metadata.labels.clone().unwrap_or_default();
        let selected = selector.matches(&labels);
        match controller_of(&set.metadata) {
            Some(owner) if owner.uid == uid => {
                if selected {
                    owned.push(set.clone());
                } else if !deleting {
                    plan.release.push(set.clone());
                }
            }
            None if selected && !deleting && set.metadata.deletion_timestamp.is_none() => {
                plan.adopt.push(set.clone());
                owned.push(set.clone());
            }
            _ => {}
        }
    }
    let template = spec.template.clone();
    let Owned { new, old } = split(owned, &template);
    let max_revision = old
        .iter()
        .chain(&new)
        .filter_map(|s| revision_of(s))
        .max()
        .unwrap_or(0);
    let sizes_old: Vec<Size> = old.iter().map(|s| size_of(s)).collect();
    let annotations = |r: i32| -> BTreeMap<String, String> {
        BTreeMap::from([
            (DESIRED_REPLICAS.to_string(), replicas.to_string()),
            (MAX_REPLICAS.to_string(), (r + surge).to_string()),
        ])
    };
    let resize = |name: &str, to: i32| Resize {
        name: name.to_string(),
        replicas: to,
        annotations: annotations(replicas),
    };

    let mut progress = Progress::Still;
    let paused = spec.paused == Some(true);
    if !deleting {
        let active: Vec<Size> = new
            .iter()
            .map(|s| size_of(s))
            .chain(sizes_old.iter().rev().cloned())
            .filter(|s| s.replicas > 0)
            .collect();
        let wanted = replicas.to_string();
        let scaling_event = new.iter().chain(&old).any(|s| {
            size_of(s).replicas > 0 && annotation(s, DESIRED_REPLICAS).is_some_and(|v| *v != wanted)
        });
        if paused {
            progress = Progress::Paused;
            if scaling_event {
                plan.resize = scale(replicas, surge, &active, new.as_deref(), &resize);
            }
        } else if scaling_event && !recreate {
            plan.resize = scale(replicas, surge, &active, new.as_deref(), &resize);
        } else if new.is_none() {
            let hash = template_hash(&template, d.status.as_ref().and_then(|s| s.collision_count));
            // Recreate: the new set only once the old ones are empty and their pods gone.
            let initial = if recreate {
                if sizes_old.iter().any(|s| s.replicas > 0) {
                    plan.resize = sizes_old
                        .iter()
                        .filter(|s| s.replicas > 0)
                        .map(|s| resize(&s.name, 0))
                        .collect();
                    None
                } else if old
                    .iter()
                    .any(|s| s.status.as_ref().is_some_and(|st| st.replicas > 0))
                    || old_pods_running(&old, pods)
                {
                    None
                } else {
                    Some(replicas)
                }
            } else {
                let nothing_yet = Size {
                    name: String::new(),
                    replicas: 0,
                    available: 0,
                    max_replicas: None,
                };
                Some(next_new_size(replicas, surge, &sizes_old, &nothing_yet))
            };
            if let Some(initial) = initial {
                plan.create = Some(new_set(
                    d,
                    &template,
                    &hash,
                    initial,
                    max_revision + 1,
                    &annotations(replicas),
                ));
                plan.revision = Some((max_revision + 1).to_string());
                progress = Progress::Created;
            }
        } else if let Some(current) = &new {
            let name = current.metadata.name.clone().unwrap_or_default();
            let current_size = size_of(current);
            // An old template come back (a rollback) takes the next revision.
            let revision = revision_of(current).unwrap_or(0);
            let old_max = old.iter().filter_map(|s| revision_of(s)).max().unwrap_or(0);
            let mut bump = BTreeMap::new();
            if revision <= old_max {
                bump.insert(REVISION.to_string(), (old_max + 1).to_string());
                let history = annotation(current, REVISION_HISTORY)
                    .map(|h| format!("{h},{revision}"))
                    .unwrap_or(revision.to_string());
                bump.insert(REVISION_HISTORY.to_string(), history);
            }
            let deployment_revision = bump.get(REVISION).cloned().unwrap_or(revision.to_string());
            if d.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION))
                != Some(&deployment_revision)
            {
                plan.revision = Some(deployment_revision);
            }
            if recreate {
                if sizes_old.iter().any(|s| s.replicas > 0) {
                    plan.resize = sizes_old
                        .iter()
                        .filter(|s| s.replicas > 0)
                        .map(|s| resize(&s.name, 0))
                        .collect();
                } else if old
                    .iter()
                    .all(|s| s.status.as_ref().is_none_or(|st| st.replicas == 0))
                    && !old_pods_running(&old, pods)
                    && current_size.replicas != replicas
                {
                    plan.resize = vec![resize(&name, replicas)];
                }
            } else {
                let all: Vec<Size> = sizes_old
                    .iter()
                    .cloned()
                    .chain([current_size.clone()])
                    .collect();
                let target = if current_size.replicas > replicas {
                    replicas
                } else {
                    next_new_size(replicas, surge, &all, &current_size)
                };
                if target != current_size.replicas {
                    plan.resize = vec![resize(&name, target)];
                } else {
                    plan.resize = shrink_old(replicas, unavailable, &current_size, &sizes_old)
                        .into_iter()
                        .map(|(n, r)| resize(&n, r))
                        .collect();
                }
            }
            if !bump.is_empty() {
                match plan.resize.iter_mut().find(|r| r.name == name) {
                    Some(r) => r.annotations.extend(bump),
                    None => plan.resize.push(Resize {
                        name: name.clone(),
                        replicas: current_size.replicas,
                        annotations: annotations(replicas).into_iter().chain(bump).collect(),
                    }),
                }
            }
        }
    }

    let status = status(d, new.as_deref(), &old);
    let complete = is_complete(&status, replicas, d.metadata.generation);
    if (complete || paused) && !deleting && plan.create.is_none() {
        plan.delete = history_to_delete(&old, spec.revision_history_limit.unwrap_or(10));
    }
    let before = d.status.clone().unwrap_or_default();
    let old_before = before.replicas.unwrap_or(0) - before.updated_replicas.unwrap_or(0);
    let old_after = status.replicas.unwrap_or(0) - status.updated_replicas.unwrap_or(0);
    let was_paused = before
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("DeploymentPaused"));
    if progress == Progress::Still && was_paused && !paused {
        progress = Progress::Resumed;
    }
    if progress == Progress::Still {
        progress = if complete && new.is_some() {
            Progress::Complete
        } else if moved(&before, &status, old_before, old_after) {
            Progress::Moved
        } else {
            Progress::Still
        };
    }
    let mut status = DeploymentStatus {
        conditions: before.conditions.clone(),
        collision_count: before.collision_count,
        ..status
    };
    let new_name = plan
        .create
        .as_ref()
        .or(new.as_deref())
        .and_then(|s| s.metadata.name.clone())
        .unwrap_or_default();
    set_available(&mut status, replicas, unavailable, now);
    plan.requeue_after = set_progressing(
        &mut status,
        progress,
        &new_name,
        Some(spec.progress_deadline_seconds.unwrap_or(600)),
        now,
    );
    plan.status = status;
    Ok(plan)
}

/// Whether a pod of an old set still exists and has not finished (terminating ones count:
/// Recreate means no old pod runs beside a new one).
fn old_pods_running(old: &[Arc<ReplicaSet>], pods: &[Arc<Pod>]) -> bool {
    pods.iter().any(|pod| {
        let owner = controller_of(&pod.metadata);
        owner.is_some_and(|o| {
            old.iter()
                .any(|s| s.metadata.uid.as_deref() == Some(o.uid.as_str()))
        }) && !crate::pods::is_terminal(pod)
    })
}

/// Resizes for a changed `replicas`: one active set takes it all; with none active the
/// new set does; else proportionally (`sync.go` `scale`).
fn scale(
    replicas: i32,
    surge: i32,
    active: &[Size],
    new: Option<&ReplicaSet>,
    resize: &dyn Fn(&str, i32) -> Resize,
) -> Vec<Resize> {
    match active {
        [only] => vec![resize(&only.name, replicas)],
        [] => new
            .map(|s| vec![resize(&size_of(s).name, replicas)])
            .unwrap_or_default(),
        _ => {
            let mut resized: Vec<Resize> = scale_proportionally(replicas, surge, active)
                .into_iter()
                .map(|(n, r)| resize(&n, r))
                .collect();
            // Sets left the same still get the new annotations.
            let unchanged: Vec<Resize> = active
                .iter()
                .filter(|s| !resized.iter().any(|r| r.name == s.name))
                .map(|s| resize(&s.name, s.replicas))
                .collect();
            resized.extend(unchanged);
            resized
        }
    }
}

/// Every pod updated, available, and nothing old left (`DeploymentComplete`).
fn is_complete(status: &DeploymentStatus, replicas: i32, generation: Option<i64>) -> bool {
    status.updated_replicas == Some(replicas)
        && status.replicas == Some(replicas)
        && status.available_replicas == Some(replicas)
        && status.observed_generation >= generation
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
