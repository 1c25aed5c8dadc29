//! The Deployment decision's tables (reconcile.rs), kept apart so that file stays one idea.

use super::super::hash::POD_TEMPLATE_HASH;
use super::*;

fn at(text: &str) -> jiff::Timestamp {
    text.parse().unwrap()
}

fn deployment(image: &str, replicas: i32, strategy: serde_json::Value) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": "web", "namespace": "default", "uid": "d-uid", "generation": 2 },
        "spec": { "replicas": replicas, "strategy": strategy,
                  "selector": { "matchLabels": { "app": "web" } },
                  "template": { "metadata": { "labels": { "app": "web" } },
                                "spec": { "containers": [{ "name": "c", "image": image }] } } }
    }))
    .unwrap()
}

/// A set made by `d` for its current template, with `replicas` of which `available`
/// are available, at `revision`, created at `created`.
fn set_of(
    d: &Deployment,
    replicas: i32,
    available: i32,
    revision: i64,
    created: &str,
) -> Arc<ReplicaSet> {
    let template = d.spec.as_ref().unwrap().template.clone();
    let hash = template_hash(&template, None);
    let mut set = new_set(
        d,
        &template,
        &hash,
        replicas,
        revision,
        &BTreeMap::from([(
            DESIRED_REPLICAS.to_string(),
            d.spec.as_ref().unwrap().replicas.unwrap().to_string(),
        )]),
    );
    set.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        at(created),
    ));
    set.status = Some(k8s_openapi::api::apps::v1::ReplicaSetStatus {
        replicas,
        available_replicas: Some(available),
        ready_replicas: Some(available),
        ..Default::default()
    });
    Arc::new(set)
}

fn rolling() -> serde_json::Value {
    serde_json::json!({ "type": "RollingUpdate" })
}

fn now() -> jiff::Timestamp {
    at("2024-01-01T01:00:00Z")
}

fn progressing_reason(plan: &Plan) -> String {
    let conditions = plan.status.conditions.as_ref().unwrap();
    let progressing = conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    progressing.reason.clone().unwrap()
}

fn resized(plan: &Plan) -> Vec<(String, i32)> {
    plan.resize
        .iter()
        .map(|r| (r.name.clone(), r.replicas))
        .collect()
}

#[test]
fn a_new_deployment_creates_its_first_replica_set_at_revision_one() {
    let d = deployment("web:v1", 3, rolling());
    let plan = reconcile(&d, &[], &[], now()).unwrap();
    let created = plan.create.clone().expect("a new set");
    let hash = template_hash(&d.spec.as_ref().unwrap().template, None);
    assert_eq!(
        created.metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    assert_eq!(created.spec.as_ref().unwrap().replicas, Some(3));
    assert_eq!(
        created.metadata.annotations.as_ref().unwrap()[REVISION],
        "1"
    );
    assert_eq!(
        created
            .spec
            .as_ref()
            .unwrap()
            .selector
            .match_labels
            .as_ref()
            .unwrap()[POD_TEMPLATE_HASH],
        hash
    );
    assert_eq!(plan.revision.as_deref(), Some("1"));
    assert_eq!(progressing_reason(&plan), "NewReplicaSetCreated");
}

#[test]
fn a_template_change_surges_then_shrinks_the_old_set() {
    let v1 = deployment("web:v1", 4, rolling());
    let old = set_of(&v1, 4, 4, 1, "2024-01-01T00:00:00Z");
    let v2 = deployment("web:v2", 4, rolling());
    let plan = reconcile(&v2, std::slice::from_ref(&old), &[], now()).unwrap();
    let created = plan.create.expect("a new set for v2");
    assert_eq!(
        created.spec.as_ref().unwrap().replicas,
        Some(1),
        "25% surge of 4"
    );
    assert_eq!(
        created.metadata.annotations.as_ref().unwrap()[REVISION],
        "2"
    );
    let new = set_of(&v2, 1, 0, 2, "2024-01-01T00:30:00Z");
    let plan = reconcile(&v2, &[old.clone(), new], &[], now()).unwrap();
    assert_eq!(
        resized(&plan),
        [(old.metadata.name.clone().unwrap(), 3)],
        "one unavailable allowed"
    );
}

/// `set` as a cache shows it: `spec.replicas` is `replicas`, and its status the `pods` (of
/// which `available` are available) its controller counted when it last wrote it.
fn showing(set: &ReplicaSet, replicas: i32, pods: i32, available: i32) -> Arc<ReplicaSet> {
    let mut set = set.clone();
    set.spec.as_mut().unwrap().replicas = Some(replicas);
    set.status = Some(k8s_openapi::api::apps::v1::ReplicaSetStatus {
        replicas: pods,
        available_replicas: Some(available),
        ready_replicas: Some(available),
        ..Default::default()
    });
    Arc::new(set)
}

/// A ReplicaSet's controller writes the status it counted before its own deletions (as
/// Kubernetes' does), so a set just scaled down still reports the pods it is deleting
/// until a later sync. 20 replicas, maxUnavailable 25%: 15 must stay available once those
/// pods are gone, so a set counts at most its `spec.replicas` as available.
#[test]
fn an_old_set_still_reporting_the_pods_it_deletes_is_not_scaled_down_twice() {
    let v1 = deployment("web:v1", 20, rolling());
    let v2 = deployment("web:v2", 20, rolling());
    let old = set_of(&v1, 20, 20, 1, "2024-01-01T00:00:00Z");
    let new = set_of(&v2, 0, 0, 2, "2024-01-01T00:30:00Z");
    let old_name = old.metadata.name.clone().unwrap();
    // (what the cache shows; old set: spec, pods and available in its status; new set:
    // spec, available; the old set's next size)
    type Case<'a> = (&'a str, (i32, i32, i32), (i32, i32), Option<i32>);
    let cases: [Case; 5] = [
        (
            "settled: a 5th new pod available lets one old pod go",
            (11, 11, 11),
            (14, 5),
            Some(10),
        ),
        (
            "old just scaled to 10 still reports the 11th pod it deletes, and a 6th new pod \
             is available: one more old pod goes, not two",
            (10, 11, 11),
            (15, 6),
            Some(9),
        ),
        (
            "old scaled from 20 to 15 (a rollout's or an undo's first step) still reports \
             20, and one new pod is available: one old pod goes, not six",
            (15, 20, 20),
            (10, 1),
            Some(14),
        ),
        (
            "no new pod available yet: no old pod goes, whatever the old set reports",
            (15, 20, 20),
            (10, 0),
            None,
        ),
        (
            "an old pod that is not available still counts as unavailable",
            (10, 10, 9),
            (15, 6),
            Some(9),
        ),
    ];
    for (what, (spec, pods, available), (new_spec, new_available), next) in cases {
        let sets = [
            showing(&old, spec, pods, available),
            showing(&new, new_spec, new_spec, new_available),
        ];
        let plan = reconcile(&v2, &sets, &[], now()).unwrap();
        let expected: Vec<(String, i32)> =
            next.map(|n| (old_name.clone(), n)).into_iter().collect();
        assert_eq!(resized(&plan), expected, "{what}");
        let left = next.unwrap_or(spec);
        assert!(
            left + new_available >= 15,
            "{what}: {left} old and {new_available} new available"
        );
    }
}

/// A whole rollout of 20 (at least 15 available, at most 25 pods) in which the old set's
/// status lags behind its scale-downs (its controller has not reported the pods it
/// deleted) while new pods become available one at a time, the Deployment syncing after
/// every change: the floor holds at every step, and the rollout completes.
#[test]
fn a_rollout_keeps_its_floor_while_the_old_set_reports_pods_it_is_deleting() {
    let v1 = deployment("web:v1", 20, rolling());
    let v2 = deployment("web:v2", 20, rolling());
    let old = set_of(&v1, 20, 20, 1, "2024-01-01T00:00:00Z");
    let new = set_of(&v2, 0, 0, 2, "2024-01-01T00:30:00Z");
    let old_name = old.metadata.name.clone().unwrap();
    let new_name = new.metadata.name.clone().unwrap();
    // What the cache shows: the sizes last written, the old set's pods as its controller
    // last counted them (all available), the new set's available pods.
    let (mut old_size, mut old_reported, mut new_size, mut new_available) = (20, 20, 0, 0);
    let mut steps = Vec::new();
    for _ in 0..200 {
        // The Deployment syncs until it has nothing more to change.
        for _ in 0..10 {
            let sets = [
                showing(&old, old_size, old_reported, old_reported),
                showing(&new, new_size, new_size, new_available),
            ];
            let plan = reconcile(&v2, &sets, &[], now()).unwrap();
            let before = (old_size, new_size);
            for (name, replicas) in resized(&plan) {
                if name == old_name {
                    old_size = replicas;
                } else if name == new_name {
                    new_size = replicas;
                }
            }
            // (old size, old pods reported, new size, new available)
            steps.push((old_size, old_reported, new_size, new_available));
            assert!(
                old_size + new_available >= 15,
                "below the floor once the old set has deleted down to its size: {steps:?}"
            );
            assert!(old_size + new_size <= 25, "past the surge: {steps:?}");
            if (old_size, new_size) == before {
                break;
            }
        }
        if new_available < new_size {
            // One more new pod is available before the old set reports its deletions.
            new_available += 1;
        } else if old_reported != old_size {
            old_reported = old_size;
        } else {
            break;
        }
    }
    assert_eq!(
        (old_size, new_size, new_available),
        (0, 20, 20),
        "{steps:?}"
    );
}

#[test]
fn recreate_empties_the_old_set_and_waits_for_its_pods_before_the_new_one() {
    let recreate = serde_json::json!({ "type": "Recreate" });
    let v1 = deployment("web:v1", 3, recreate.clone());
    let v2 = deployment("web:v2", 3, recreate);
    let old = set_of(&v1, 3, 3, 1, "2024-01-01T00:00:00Z");
    let plan = reconcile(&v2, std::slice::from_ref(&old), &[], now()).unwrap();
    assert_eq!(resized(&plan), [(old.metadata.name.clone().unwrap(), 0)]);
    assert!(plan.create.is_none());
    let mut draining = (*set_of(&v1, 0, 0, 1, "2024-01-01T00:00:00Z")).clone();
    draining.status.as_mut().unwrap().replicas = 2;
    let plan = reconcile(&v2, &[Arc::new(draining)], &[], now()).unwrap();
    assert!(
        plan.create.is_none() && plan.resize.is_empty(),
        "old pods still there"
    );
    let mut gone = (*set_of(&v1, 0, 0, 1, "2024-01-01T00:00:00Z")).clone();
    gone.metadata.uid = Some("old-set".into());
    let gone = Arc::new(gone);
    let terminating: crate::pods::cached::Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "old-pod", "deletionTimestamp": "2024-01-01T00:59:00Z",
                      "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet",
                                            "name": "x", "uid": "old-set", "controller": true }] },
        "status": { "phase": "Running" }
    }))
    .unwrap();
    let plan = reconcile(
        &v2,
        std::slice::from_ref(&gone),
        &[Arc::new(terminating)],
        now(),
    )
    .unwrap();
    assert!(plan.create.is_none(), "an old pod is still terminating");
    let plan = reconcile(&v2, &[gone], &[], now()).unwrap();
    assert_eq!(plan.create.unwrap().spec.unwrap().replicas, Some(3));
}

#[test]
fn a_paused_deployment_does_not_roll_out() {
    let v1 = deployment("web:v1", 3, rolling());
    let old = set_of(&v1, 3, 3, 1, "2024-01-01T00:00:00Z");
    let mut v2 = deployment("web:v2", 3, rolling());
    v2.spec.as_mut().unwrap().paused = Some(true);
    let plan = reconcile(&v2, &[old], &[], now()).unwrap();
    assert!(plan.create.is_none() && plan.resize.is_empty());
    assert_eq!(progressing_reason(&plan), "DeploymentPaused");
}

#[test]
fn a_resize_goes_to_the_only_active_set() {
    let v1 = deployment("web:v1", 3, rolling());
    let current = set_of(&v1, 3, 3, 1, "2024-01-01T00:00:00Z");
    let bigger = deployment("web:v1", 5, rolling());
    let plan = reconcile(&bigger, std::slice::from_ref(&current), &[], now()).unwrap();
    assert_eq!(
        resized(&plan),
        [(current.metadata.name.clone().unwrap(), 5)]
    );
    assert_eq!(plan.resize[0].annotations[DESIRED_REPLICAS], "5");
}

#[test]
fn an_undo_brings_the_old_set_back_at_the_next_revision() {
    let v1 = deployment("web:v1", 2, rolling());
    let v2 = deployment("web:v2", 2, rolling());
    let first = set_of(&v1, 0, 0, 1, "2024-01-01T00:00:00Z");
    let second = set_of(&v2, 2, 2, 2, "2024-01-01T00:10:00Z");
    let plan = reconcile(&v1, &[first.clone(), second], &[], now()).unwrap();
    assert!(plan.create.is_none(), "v1's set is reused");
    let back = plan
        .resize
        .iter()
        .find(|r| Some(&r.name) == first.metadata.name.as_ref())
        .unwrap();
    assert_eq!(back.annotations[REVISION], "3");
    assert_eq!(back.annotations[REVISION_HISTORY], "1");
    assert_eq!(plan.revision.as_deref(), Some("3"));
}

#[test]
fn a_complete_deployment_keeps_only_its_history_limit_of_old_sets() {
    let mut d = deployment("web:v4", 2, rolling());
    d.spec.as_mut().unwrap().revision_history_limit = Some(1);
    let sets: Vec<Arc<ReplicaSet>> = ["v1", "v2", "v3"]
        .iter()
        .enumerate()
        .map(|(i, v)| {
            set_of(
                &deployment(&format!("web:{v}"), 2, rolling()),
                0,
                0,
                i64::try_from(i).unwrap() + 1,
                &format!("2024-01-01T00:0{i}:00Z"),
            )
        })
        .chain([set_of(&d, 2, 2, 4, "2024-01-01T00:09:00Z")])
        .collect();
    let plan = reconcile(&d, &sets, &[], now()).unwrap();
    let oldest: Vec<String> = sets[..2]
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(plan.delete, oldest);
    let progressing = plan
        .status
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(
        progressing.reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
}

#[test]
fn orphan_sets_it_selects_are_adopted_and_unselected_ones_released() {
    let d = deployment("web:v1", 1, rolling());
    let mut orphan = (*set_of(&d, 1, 1, 1, "2024-01-01T00:00:00Z")).clone();
    orphan.metadata.owner_references = None;
    let mut unselected = (*set_of(
        &deployment("web:v0", 1, rolling()),
        0,
        0,
        1,
        "2024-01-01T00:00:00Z",
    ))
    .clone();
    unselected.metadata.labels = Some(BTreeMap::from([("app".to_string(), "other".to_string())]));
    let plan = reconcile(&d, &[Arc::new(orphan), Arc::new(unselected)], &[], now()).unwrap();
    assert_eq!(plan.adopt.len(), 1);
    assert_eq!(plan.release.len(), 1);
    assert!(plan.create.is_none(), "the adopted set has the template");
}
