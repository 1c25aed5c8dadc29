//! Tables for the StatefulSet decision: rolling updates, partitions, OnDelete, revisions
//! (rollback, collision, history) and the claim retention policy.

use serde_json::json;

use super::*;
use crate::controllers::statefulset::fixtures::*;
use crate::controllers::statefulset::history::name_of as revision_name_of;

/// `spec` at nginx:1, then moved to nginx:2 while its 3 pods ran nginx:1: the set, its two
/// revisions, and their names.
fn updating(
    spec: serde_json::Value,
) -> (StatefulSet, Vec<Arc<ControllerRevision>>, String, String) {
    let v1 = web(spec);
    let v2 = with_image(v1.clone(), "nginx:2");
    let (old, new) = (revision(&v1), revision(&v2));
    let status = json!({ "replicas": 3, "currentReplicas": 3, "updatedReplicas": 0,
                         "currentRevision": old, "updateRevision": new });
    (
        with_status(v2.clone(), status),
        history(&[&v1, &v2]),
        old,
        new,
    )
}

/// Ready pods web-0, web-1, ... at these revisions.
fn pods_at<S: AsRef<str>>(revisions: &[S]) -> Vec<Pod> {
    revisions
        .iter()
        .enumerate()
        .map(|(ordinal, revision)| member(&format!("web-{ordinal}"), revision.as_ref()))
        .collect()
}

#[test]
fn a_rolling_update_replaces_the_highest_old_pod_first_one_at_a_time() {
    let (set, revisions, old, new) = updating(json!({}));
    let step = |pods: Vec<Pod>| run_with(&set, pods, &[], &revisions);
    let update = DeleteReason::Update;

    let plan = step(pods_at(&[&old, &old, &old]));
    assert_eq!(deleted(&plan), [("web-2", update)]);
    assert_eq!(
        (plan.status.current_replicas, plan.status.updated_replicas),
        (Some(2), Some(0))
    );

    let plan = step(pods_at(&[&old, &old]));
    assert_eq!(created(&plan), ["web-2"]);
    assert_eq!(
        revision_of_new(&plan, "web-2"),
        new,
        "it comes back at the new revision"
    );

    let mut pods = pods_at(&[&old, &old, &new]);
    pods[2] = unready(pods[2].clone());
    let plan = step(pods);
    assert!(deleted(&plan).is_empty(), "the next waits for web-2");
    assert_eq!(
        plan.waiting,
        [Wait::NotReady {
            pod: "web-2".into()
        }]
    );

    let plan = step(pods_at(&[&old, &old, &new]));
    assert_eq!(deleted(&plan), [("web-1", update)]);

    let plan = step(pods_at(&[&new, &new, &new]));
    assert!(plan.actions.is_empty());
    assert_eq!(
        plan.status.current_revision.as_deref(),
        Some(new.as_str()),
        "done: new is current"
    );
    assert_eq!(plan.status.current_replicas, Some(3));
}

#[test]
fn a_parallel_set_also_updates_one_pod_at_a_time() {
    let (set, revisions, old, new) = updating(json!({ "podManagementPolicy": "Parallel" }));
    let plan = run_with(&set, pods_at(&[&old, &old, &old]), &[], &revisions);
    assert_eq!(deleted(&plan), [("web-2", DeleteReason::Update)]);
    let mut pods = pods_at(&[&old, &old, &new]);
    pods[2] = unready(pods[2].clone());
    let plan = run_with(&set, pods, &[], &revisions);
    assert!(deleted(&plan).is_empty());
    assert_eq!(
        plan.waiting,
        [Wait::Updating {
            pod: "web-2".into()
        }]
    );
}

#[test]
fn a_partition_keeps_the_ordinals_below_it_at_the_current_revision() {
    let strategy = json!({ "updateStrategy": { "type": "RollingUpdate",
                                               "rollingUpdate": { "partition": 2 } } });
    let (set, revisions, old, new) = updating(strategy);
    let plan = run_with(&set, pods_at(&[&old, &old, &old]), &[], &revisions);
    assert_eq!(deleted(&plan), [("web-2", DeleteReason::Update)]);
    let plan = run_with(&set, pods_at(&[&old, &old, &new]), &[], &revisions);
    assert!(
        plan.actions.is_empty(),
        "web-0 and web-1 stay at the old revision"
    );
    assert!(plan.waiting.is_empty());
    let mut pods = pods_at(&[&old, &old, &new]);
    pods.remove(1);
    let plan = run_with(&set, pods, &[], &revisions);
    assert_eq!(created(&plan), ["web-1"]);
    assert_eq!(
        revision_of_new(&plan, "web-1"),
        old,
        "below the partition: the old revision"
    );
}

#[test]
fn on_delete_updates_only_the_pods_that_are_made_anew() {
    let (set, revisions, old, new) = updating(json!({ "updateStrategy": { "type": "OnDelete" } }));
    let plan = run_with(&set, pods_at(&[&old, &old, &old]), &[], &revisions);
    assert!(plan.actions.is_empty());
    let mut pods = pods_at(&[&old, &old, &old]);
    pods.remove(1);
    let plan = run_with(&set, pods, &[], &revisions);
    assert_eq!(created(&plan), ["web-1"]);
    assert_eq!(revision_of_new(&plan, "web-1"), new);
    let plan = run_with(&set, pods_at(&[&new, &new, &new]), &[], &revisions);
    assert_eq!(
        plan.status.current_revision.as_deref(),
        Some(old.as_str()),
        "OnDelete never completes a rolling update"
    );
}

#[test]
fn a_rolling_update_without_parameters_makes_pods_below_current_replicas_at_current() {
    let (set, revisions, old, new) =
        updating(json!({ "updateStrategy": { "type": "RollingUpdate" } }));
    let with_current = |n: i32| {
        let mut s = set.clone();
        s.status.as_mut().unwrap().current_replicas = Some(n);
        s
    };
    let pods = || vec![member("web-0", &old)];
    let plan = run_with(&with_current(2), pods(), &[], &revisions);
    assert_eq!(revision_of_new(&plan, "web-1"), old);
    let plan = run_with(&with_current(1), pods(), &[], &revisions);
    assert_eq!(revision_of_new(&plan, "web-1"), new);
}

#[test]
fn going_back_to_an_old_template_renumbers_its_revision_and_rolls_to_it() {
    let (v2_set, revisions, old, new) = updating(json!({}));
    let mut back = with_image(v2_set, "nginx:1");
    let status = back.status.as_mut().unwrap();
    status.current_revision = Some(new.clone());
    status.update_revision = Some(new.clone());
    let plan = run_with(&back, pods_at(&[&new, &new, &new]), &[], &revisions);
    let renumbered = plan.actions.iter().find_map(|a| match a {
        Action::RenumberRevision { revision, number } => {
            Some((revision_name_of(revision).to_string(), *number))
        }
        _ => None,
    });
    assert_eq!(renumbered, Some((old.clone(), 3)));
    assert!(!plan
        .actions
        .iter()
        .any(|a| matches!(a, Action::CreateRevision(_))));
    assert_eq!(plan.status.update_revision.as_deref(), Some(old.as_str()));
    assert_eq!(deleted(&plan), [("web-2", DeleteReason::Update)]);
}

#[test]
fn a_revision_name_held_by_other_data_raises_the_collision_count_and_waits() {
    let v1 = web(json!({}));
    let v2 = with_image(v1.clone(), "nginx:2");
    let mut impostor = (*first_revision(&v1)).clone();
    impostor.metadata.name = Some(revision(&v2));
    impostor.metadata.owner_references = None;
    impostor.metadata.labels = None;
    let plan = run_with(&v2, pods_at(&["x"]), &[], &[Arc::new(impostor)]);
    assert!(plan.actions.is_empty());
    assert_eq!(
        plan.waiting,
        [Wait::RevisionCollision {
            name: revision(&v2)
        }]
    );
    assert_eq!(
        (plan.status.collision_count, plan.status_changed),
        (Some(1), true)
    );
}

#[test]
fn history_beyond_the_limit_goes_last_and_never_a_revision_in_use() {
    let sets: Vec<StatefulSet> = (1..=4)
        .map(|n| {
            with_image(
                web(json!({ "revisionHistoryLimit": 1, "replicas": 1 })),
                &format!("v{n}"),
            )
        })
        .collect();
    let revisions = history(&sets.iter().collect::<Vec<_>>());
    let names: Vec<String> = revisions
        .iter()
        .map(|r| revision_name_of(r).to_string())
        .collect();
    let set = with_status(
        sets[3].clone(),
        json!({ "replicas": 1, "currentRevision": names[0], "updateRevision": names[3] }),
    );
    let plan = run_with(&set, pods_at(&[&names[0]]), &[], &revisions);
    let dropped: Vec<&str> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::DeleteRevision(r) => Some(revision_name_of(r)),
            _ => None,
        })
        .collect();
    assert_eq!(
        dropped,
        [names[1].as_str()],
        "v1 is in use, v4 is the update, v3 is kept"
    );
    assert!(matches!(
        plan.actions.last(),
        Some(Action::DeleteRevision(_))
    ));
}

#[test]
fn when_scaled_delete_hands_a_condemned_pods_claim_to_it_before_it_goes() {
    let set = web(
        json!({ "replicas": 1, "persistentVolumeClaimRetentionPolicy":
                          { "whenDeleted": "Retain", "whenScaled": "Delete" } }),
    );
    let rev = revision(&set);
    let claims = [claim("www-web-0", vec![]), claim("www-web-1", vec![])];
    let plan = run_with(
        &set,
        pods_at(&[&rev, &rev]),
        &claims,
        &[first_revision(&set)],
    );
    let handed = plan.actions.iter().position(|a| {
        matches!(a, Action::SetClaimOwners { claim, owner_references }
            if claim.metadata.name.as_deref() == Some("www-web-1")
                && owner_references.iter().map(|o| o.uid.as_str()).eq(["uid-web-1"]))
    });
    let gone = plan
        .actions
        .iter()
        .position(|a| matches!(a, Action::DeletePod { .. }));
    assert!(handed.is_some() && handed < gone, "{:?}", plan.actions);
    assert_eq!(deleted(&plan), [("web-1", DeleteReason::ScaleDown)]);
    let handed_over = claim("www-web-1", vec![pod_owner("web-1", "uid-web-1")]);
    let plan = run_with(
        &set,
        pods_at(&[&rev, &rev]),
        &[claims[0].clone(), handed_over],
        &[first_revision(&set)],
    );
    let touched = plan
        .actions
        .iter()
        .filter(|a| matches!(a, Action::SetClaimOwners { .. }));
    assert_eq!(touched.count(), 0, "once handed over, left alone");
}

#[test]
fn when_deleted_delete_makes_the_set_own_every_claim() {
    let set = web(json!({ "persistentVolumeClaimRetentionPolicy":
                          { "whenDeleted": "Delete", "whenScaled": "Retain" } }));
    let rev = revision(&set);
    let plan = run_with(
        &set,
        pods_at(&[&rev]),
        &[claim("www-web-0", vec![])],
        &[first_revision(&set)],
    );
    let owners = plan.actions.iter().find_map(|a| match a {
        Action::SetClaimOwners {
            owner_references, ..
        } => Some(owner_references.clone()),
        _ => None,
    });
    assert_eq!(owners, Some(vec![owner()]));
    let new = new_pods(&plan)[0];
    let new_claim = &new.claims[0];
    assert_eq!(new_claim.metadata.owner_references, Some(vec![owner()]));
}
