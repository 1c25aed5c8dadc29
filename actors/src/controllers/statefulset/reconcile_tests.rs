//! Tables for the StatefulSet decision: order, scale, the one-pod-per-ordinal rule, claims on
//! pods, status. Updates, revisions and retention are in `reconcile_update_tests.rs`.

use serde_json::json;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::controllers::statefulset::fixtures::*;
use crate::controllers::statefulset::identity::{
    POD_INDEX_LABEL, POD_NAME_LABEL, REVISION_HASH_LABEL,
};

fn parallel(replicas: i32) -> StatefulSet {
    web(json!({ "replicas": replicas, "podManagementPolicy": "Parallel" }))
}

fn ordered(replicas: i32) -> StatefulSet {
    web(json!({ "replicas": replicas }))
}

#[test]
fn a_new_set_makes_ordinal_zero_first_with_its_identity_and_claim() {
    let set = web(json!({}));
    let plan = reconcile(&set, &[], &[], &[], now());
    assert!(matches!(plan.actions[0], Action::CreateRevision(_)));
    assert_eq!(created(&plan), ["web-0"]);
    let new = new_pods(&plan)[0];
    let revision = plan.status.update_revision.clone().unwrap();
    let labels = new.pod.metadata.labels.clone().unwrap();
    assert_eq!(labels[POD_NAME_LABEL], "web-0");
    assert_eq!(labels[POD_INDEX_LABEL], "0");
    assert_eq!(labels[REVISION_HASH_LABEL], revision);
    assert!(revision.starts_with("web-"));
    let spec = new.pod.spec.clone().unwrap();
    assert_eq!(
        (spec.hostname.as_deref(), spec.subdomain.as_deref()),
        (Some("web-0"), Some("nginx"))
    );
    let volumes = spec.volumes.unwrap();
    let volume = &volumes[0];
    assert_eq!(
        volume.persistent_volume_claim.as_ref().unwrap().claim_name,
        "www-web-0"
    );
    let claim = &new.claims[0];
    assert_eq!(claim.metadata.name.as_deref(), Some("www-web-0"));
    assert_eq!(claim.metadata.labels.as_ref().unwrap()["app"], "nginx");
    assert_eq!(
        new.pod.metadata.owner_references.as_ref().unwrap()[0].uid,
        UID
    );
    assert_eq!(plan.status.current_revision, plan.status.update_revision);
    assert_eq!(
        (plan.status.replicas, plan.status.observed_generation),
        (0, Some(2))
    );
    assert_eq!(plan.status.collision_count, Some(0));
    assert!(plan.status_changed);
}

fn not_ready(pod: &str) -> Vec<Wait> {
    vec![Wait::NotReady { pod: pod.into() }]
}

fn going(pod: &str) -> Vec<Wait> {
    vec![Wait::Terminating { pod: pod.into() }]
}

fn taken(pod: &str) -> Vec<Wait> {
    vec![Wait::NameTaken { pod: pod.into() }]
}

#[test]
fn ordered_ready_makes_an_ordinal_only_once_every_lower_one_runs_ready() {
    let rev = revision(&ordered(3));
    let up = |name: &str| member(name, &rev);
    let table: Vec<(Vec<Pod>, Vec<&str>, Vec<Wait>)> = vec![
        (vec![], vec!["web-0"], vec![]),
        (vec![up("web-0")], vec!["web-1"], vec![]),
        (vec![pending(up("web-0"))], vec![], not_ready("web-0")),
        (vec![unready(up("web-0"))], vec![], not_ready("web-0")),
        (vec![up("web-0"), up("web-1")], vec!["web-2"], vec![]),
        (
            vec![up("web-0"), unready(up("web-1"))],
            vec![],
            not_ready("web-1"),
        ),
        (vec![up("web-1")], vec!["web-0"], vec![]),
        (vec![up("web-0"), up("web-2")], vec!["web-1"], vec![]),
        (
            vec![up("web-0"), terminating(up("web-1"))],
            vec![],
            going("web-1"),
        ),
        (vec![up("web-0"), up("web-1"), up("web-2")], vec![], vec![]),
    ];
    for (pods, expected, waiting) in table {
        let names: Vec<String> = pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        let plan = run(&ordered(3), pods);
        assert_eq!(created(&plan), expected, "with {names:?}");
        assert_eq!(plan.waiting, waiting, "with {names:?}");
        assert!(deleted(&plan).is_empty());
    }
}

#[test]
fn ordered_ready_waits_min_ready_seconds_and_looks_again_then() {
    let set = web(json!({ "minReadySeconds": 600 }));
    let rev = revision(&set);
    let fresh = ready_since(member("web-0", &rev), "2024-01-01T00:55:00Z");
    let plan = run(&set, vec![fresh]);
    assert!(created(&plan).is_empty());
    assert_eq!(
        plan.waiting,
        [Wait::NotAvailable {
            pod: "web-0".into()
        }]
    );
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(300)));
    assert_eq!(
        (plan.status.ready_replicas, plan.status.available_replicas),
        (Some(1), Some(0))
    );
    let seasoned = ready_since(member("web-0", &rev), "2024-01-01T00:50:00Z");
    assert_eq!(created(&run(&set, vec![seasoned])), ["web-1"]);
}

#[test]
fn parallel_makes_and_removes_all_at_once() {
    let rev = revision(&parallel(3));
    let plan = run(&parallel(3), vec![unready(member("web-1", &rev))]);
    assert_eq!(created(&plan), ["web-0", "web-2"]);
    assert_eq!(plan.creations(), 2);
    let pods = vec![
        member("web-0", &rev),
        unready(member("web-1", &rev)),
        member("web-2", &rev),
        member("web-3", &rev),
    ];
    let plan = run(&parallel(1), pods);
    let down = DeleteReason::ScaleDown;
    assert_eq!(
        deleted(&plan),
        [("web-3", down), ("web-2", down), ("web-1", down)]
    );
    assert_eq!(plan.deletions(), ["web-3", "web-2", "web-1"]);
}

#[test]
fn an_ordinal_held_by_any_pod_of_its_name_is_waited_for_never_filled_twice() {
    let rev = revision(&ordered(3));
    let up = |name: &str| member(name, &rev);
    let mut relabeled = up("web-1");
    relabeled
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("app".into(), "debug".into());
    // (what holds web-1, what OrderedReady waits for, what Parallel waits for)
    let table: Vec<(&str, Pod, Vec<Wait>, Vec<Wait>)> = vec![
        (
            "being deleted",
            terminating(up("web-1")),
            going("web-1"),
            going("web-1"),
        ),
        (
            "on a silent node",
            unreachable(up("web-1")),
            not_ready("web-1"),
            vec![],
        ),
        (
            "deleted on a silent node",
            terminating(unreachable(up("web-1"))),
            going("web-1"),
            going("web-1"),
        ),
        (
            "ended and being deleted",
            terminating(ended(up("web-1"), "Failed")),
            going("web-1"),
            going("web-1"),
        ),
        (
            "another owner's",
            foreign(up("web-1")),
            taken("web-1"),
            taken("web-1"),
        ),
        ("released", relabeled, taken("web-1"), taken("web-1")),
        (
            "an orphan being deleted",
            terminating(orphan(up("web-1"))),
            taken("web-1"),
            taken("web-1"),
        ),
    ];
    for (holder, pod, ordered_waits, parallel_waits) in table {
        let plan = run(&ordered(3), vec![up("web-0"), pod.clone()]);
        assert!(created(&plan).is_empty(), "OrderedReady, web-1 {holder}");
        assert_eq!(plan.waiting, ordered_waits, "OrderedReady, web-1 {holder}");
        assert!(
            deleted(&plan).is_empty(),
            "web-1 {holder} is not deleted again"
        );
        let plan = run(&parallel(3), vec![up("web-0"), pod]);
        assert_eq!(created(&plan), ["web-2"], "Parallel, web-1 {holder}");
        assert_eq!(plan.waiting, parallel_waits, "Parallel, web-1 {holder}");
        assert!(
            deleted(&plan).is_empty(),
            "web-1 {holder} is not deleted again"
        );
    }
}

/// Every combination of states over three ordinals, both policies, every scale: no plan
/// creates a name the cache holds, OrderedReady creates one pod and only above running ready
/// ones, and scales down one healthy-enough pod at a time.
#[test]
fn no_plan_ever_creates_a_name_the_cache_holds() {
    let rev = revision(&ordered(3));
    let states: [fn(Pod) -> Option<Pod>; 7] = [
        |_| None,
        Some,
        |p| Some(unready(p)),
        |p| Some(terminating(p)),
        |p| Some(ended(p, "Failed")),
        |p| Some(unreachable(p)),
        |p| Some(foreign(p)),
    ];
    let mut plans = 0;
    for combination in 0..states.len().pow(3) {
        let pods: Vec<Pod> = (0..3)
            .filter_map(|ordinal| {
                let state = states[combination / states.len().pow(ordinal) % states.len()];
                state(member(&format!("web-{ordinal}"), &rev))
            })
            .collect();
        let healthy = |name: &str| {
            pods.iter().any(|p| {
                p.metadata.name.as_deref() == Some(name)
                    && p.metadata.deletion_timestamp.is_none()
                    && controller_of(&p.metadata).is_some_and(|o| o.uid == UID)
                    && is_running_and_ready(p)
            })
        };
        for policy in ["OrderedReady", "Parallel"] {
            for replicas in 0..=3 {
                let set = web(json!({ "replicas": replicas, "podManagementPolicy": policy }));
                let plan = run(&set, pods.clone());
                plans += 1;
                let made = created(&plan);
                let context = format!("{policy} {replicas} over {pods:?}");
                for name in &made {
                    assert!(
                        pods.iter()
                            .all(|p| p.metadata.name.as_deref() != Some(*name)),
                        "{name} is in the cache: {context}"
                    );
                }
                let gone = deleted(&plan);
                for (name, _) in &gone {
                    let pod = pods
                        .iter()
                        .find(|p| p.metadata.name.as_deref() == Some(*name));
                    let pod = pod.expect("only cached pods are deleted");
                    assert!(
                        pod.metadata.deletion_timestamp.is_none(),
                        "{name} twice: {context}"
                    );
                    assert_eq!(controller_of(&pod.metadata).unwrap().uid, UID, "{context}");
                }
                if policy == "OrderedReady" {
                    assert!(made.len() <= 1, "{context}");
                    if let Some(name) = made.first() {
                        let ordinal: usize = name[4..].parse().unwrap();
                        for lower in 0..ordinal {
                            assert!(healthy(&format!("web-{lower}")), "{name} early: {context}");
                        }
                    }
                    let downs = gone.iter().filter(|(_, r)| *r == DeleteReason::ScaleDown);
                    assert!(downs.count() <= 1, "{context}");
                }
            }
        }
    }
    assert_eq!(plans, 343 * 2 * 4);
}

#[test]
fn ordered_scale_down_takes_the_highest_and_waits_until_it_is_gone() {
    let rev = revision(&ordered(1));
    let up = |name: &str| member(name, &rev);
    let down = DeleteReason::ScaleDown;
    let plan = run(&ordered(1), vec![up("web-0"), up("web-1"), up("web-2")]);
    assert_eq!(deleted(&plan), [("web-2", down)]);
    let plan = run(
        &ordered(1),
        vec![up("web-0"), up("web-1"), terminating(up("web-2"))],
    );
    assert!(deleted(&plan).is_empty());
    assert_eq!(
        plan.waiting,
        [Wait::Terminating {
            pod: "web-2".into()
        }]
    );
    let plan = run(&ordered(1), vec![up("web-0"), up("web-1")]);
    assert_eq!(deleted(&plan), [("web-1", down)]);
    let plan = run(&ordered(0), vec![up("web-0")]);
    assert_eq!(deleted(&plan), [("web-0", down)]);
}

/// Every pod in range must be healthy; then the highest condemned pod goes if it is healthy
/// or is the lowest unhealthy pod (so one crash-looping pod being scaled away cannot wedge
/// the set), as in Kubernetes.
#[test]
fn ordered_scale_down_waits_while_the_pods_below_it_are_unhealthy() {
    let rev = revision(&ordered(1));
    let up = |name: &str| member(name, &rev);
    let down = DeleteReason::ScaleDown;
    type Row = (Vec<Pod>, Vec<(&'static str, DeleteReason)>, Vec<Wait>);
    let table: Vec<Row> = vec![
        (
            vec![up("web-0"), up("web-1"), unready(up("web-2"))],
            vec![("web-2", down)],
            vec![],
        ),
        (
            vec![up("web-0"), unready(up("web-1")), up("web-2")],
            vec![("web-2", down)],
            vec![],
        ),
        (
            vec![up("web-0"), unready(up("web-1")), unready(up("web-2"))],
            vec![],
            vec![Wait::Unhealthy {
                pod: "web-1".into(),
            }],
        ),
        (
            vec![unready(up("web-0")), up("web-1")],
            vec![],
            not_ready("web-0"),
        ),
        (
            vec![up("web-0"), unready(up("web-1"))],
            vec![("web-1", down)],
            vec![],
        ),
    ];
    for (pods, expected, waiting) in table {
        let names: Vec<String> = pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        let plan = run(&ordered(1), pods);
        assert_eq!(deleted(&plan), expected, "with {names:?}");
        assert_eq!(plan.waiting, waiting, "with {names:?}");
    }
}

#[test]
fn an_ended_pod_is_deleted_and_made_anew_once_gone() {
    let rev = revision(&ordered(2));
    for phase in ["Failed", "Succeeded"] {
        let plan = run(
            &ordered(2),
            vec![ended(member("web-0", &rev), phase), member("web-1", &rev)],
        );
        assert_eq!(deleted(&plan), [("web-0", DeleteReason::Ended)], "{phase}");
        assert!(
            created(&plan).is_empty(),
            "{phase}: not while it is in the cache"
        );
    }
    let plan = run(&parallel(2), vec![ended(member("web-0", &rev), "Failed")]);
    assert_eq!(deleted(&plan), [("web-0", DeleteReason::Ended)]);
    assert_eq!(created(&plan), ["web-1"]);
    let plan = run(&ordered(2), vec![member("web-1", &rev)]);
    assert_eq!(created(&plan), ["web-0"]);
}

#[test]
fn ordinals_start_where_asked_and_every_other_owned_pod_is_condemned() {
    let set = web(json!({ "replicas": 2, "ordinals": { "start": 5 },
                          "podManagementPolicy": "Parallel" }));
    let rev = revision(&set);
    let mut stray = member("web-x", &rev);
    stray.metadata.name = Some("web-x".into());
    let mut padded = member("web-05", &rev);
    padded.metadata.name = Some("web-05".into());
    let stranger = orphan(member("cache-0", &rev));
    let pods = vec![
        member("web-0", &rev),
        member("web-5", &rev),
        stray,
        padded,
        stranger,
    ];
    let plan = run(&set, pods);
    assert_eq!(created(&plan), ["web-6"]);
    let down = DeleteReason::ScaleDown;
    assert_eq!(
        deleted(&plan),
        [("web-0", down), ("web-05", down), ("web-x", down)]
    );
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::AdoptPod(_))),
        "cache-0 is not ours"
    );
    assert_eq!(plan.status.replicas, 4);
}

#[test]
fn orphans_of_its_name_are_adopted_and_pods_it_no_longer_selects_released() {
    let rev = revision(&ordered(3));
    let mut relabeled = member("web-1", &rev);
    relabeled
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("app".into(), "debug".into());
    let plan = run(&ordered(3), vec![orphan(member("web-0", &rev)), relabeled]);
    let adopted: Vec<_> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::AdoptPod(p) => p.metadata.name.as_deref(),
            _ => None,
        })
        .collect();
    assert_eq!(adopted, ["web-0"]);
    let released = match &plan.actions[1] {
        Action::ReleasePod(p) => p.metadata.name.as_deref(),
        _ => None,
    };
    assert_eq!(released, Some("web-1"));
    assert!(
        created(&plan).is_empty(),
        "web-1 keeps its name while released"
    );
    assert_eq!(
        plan.waiting,
        [Wait::NameTaken {
            pod: "web-1".into()
        }]
    );
    assert_eq!(plan.status.replicas, 1);
}

#[test]
fn an_adopted_pod_without_identity_labels_gets_them() {
    let rev = revision(&ordered(1));
    let mut bare = orphan(member("web-0", &rev));
    bare.metadata
        .labels
        .as_mut()
        .unwrap()
        .remove(POD_INDEX_LABEL);
    let plan = run(&ordered(1), vec![bare]);
    let labels = plan.actions.iter().find_map(|a| match a {
        Action::LabelPod { labels, .. } => Some(labels.clone()),
        _ => None,
    });
    assert_eq!(
        labels,
        Some(BTreeMap::from([(
            POD_INDEX_LABEL.to_string(),
            "0".to_string()
        )]))
    );
}

#[test]
fn a_set_being_deleted_only_reports() {
    let revisions = [first_revision(&ordered(3))];
    let rev = revision(&ordered(3));
    let mut set = with_status(
        ordered(3),
        json!({ "replicas": 1, "currentRevision": rev, "updateRevision": rev }),
    );
    set.metadata.deletion_timestamp = Some(Time(now()));
    let pods = vec![member("web-0", &rev), orphan(member("web-1", &rev))];
    let plan = run_with(&set, pods, &[], &revisions);
    assert!(plan.actions.is_empty());
    assert_eq!(
        (plan.status.replicas, plan.status.ready_replicas),
        (1, Some(1))
    );
}

#[test]
fn a_selector_that_is_missing_or_selects_everything_does_nothing() {
    for selector in [json!({}), json!({ "matchLabels": { "bad key!": "x" } })] {
        let set = web(json!({ "selector": selector }));
        let plan = reconcile(
            &set,
            &arcs(vec![orphan(member("web-0", "r"))]),
            &[],
            &[],
            now(),
        );
        assert!(plan.actions.is_empty());
        assert_eq!(plan.waiting, [Wait::InvalidSelector]);
        assert!(!plan.status_changed);
    }
}

#[test]
fn a_pending_pod_gets_back_the_claims_it_lost_and_a_dying_claim_holds_creation() {
    let rev = revision(&ordered(2));
    let plan = run(&ordered(2), vec![pending(member("web-0", &rev))]);
    let remade = plan.actions.iter().find_map(|a| match a {
        Action::CreateClaims(claims) => Some(claims[0].metadata.name.clone()),
        _ => None,
    });
    assert_eq!(remade, Some(Some("www-web-0".to_string())));
    let mut dying = (*claim("www-web-1", vec![])).clone();
    dying.metadata.deletion_timestamp = Some(Time(now()));
    let plan = run_with(
        &ordered(2),
        vec![member("web-0", &rev)],
        &[claim("www-web-0", vec![]), Arc::new(dying)],
        &[first_revision(&ordered(2))],
    );
    assert!(created(&plan).is_empty());
    assert_eq!(
        plan.waiting,
        [Wait::ClaimTerminating {
            claim: "www-web-1".into()
        }]
    );
}

#[test]
fn an_existing_claim_is_reused_and_a_stale_one_waits_for_the_garbage_collector() {
    let set = web(json!({ "persistentVolumeClaimRetentionPolicy":
                          { "whenDeleted": "Retain", "whenScaled": "Delete" } }));
    let revisions = [first_revision(&set)];
    let plan = run_with(&set, vec![], &[claim("www-web-0", vec![])], &revisions);
    assert_eq!(created(&plan), ["web-0"]);
    assert!(new_pods(&plan)[0].claims.is_empty(), "the claim is there");
    let earlier = claim("www-web-0", vec![pod_owner("web-0", "uid-earlier")]);
    let plan = run_with(&set, vec![], &[earlier], &revisions);
    assert!(created(&plan).is_empty());
    assert_eq!(
        plan.waiting,
        [Wait::StaleClaim {
            claim: "www-web-0".into()
        }]
    );
}

#[test]
fn status_counts_ready_available_current_and_updated_pods() {
    let v1 = web(json!({ "minReadySeconds": 600 }));
    let v2 = with_image(v1.clone(), "nginx:2");
    let (old, new) = (revision(&v1), revision(&v2));
    let set = with_status(v2.clone(), json!({ "replicas": 3, "currentRevision": old }));
    let pods = vec![
        member("web-0", &old),
        ready_since(member("web-1", &old), "2024-01-01T00:59:00Z"),
        unready(member("web-2", &new)),
        terminating(member("web-3", &new)),
    ];
    let plan = run_with(&set, pods, &[], &history(&[&v1, &v2]));
    let s = &plan.status;
    assert_eq!(s.replicas, 4, "a pod being deleted still counts");
    assert_eq!((s.ready_replicas, s.available_replicas), (Some(3), Some(2)));
    assert_eq!((s.current_replicas, s.updated_replicas), (Some(2), Some(1)));
    assert_eq!(
        (s.current_revision.as_deref(), s.update_revision.as_deref()),
        (Some(old.as_str()), Some(new.as_str()))
    );
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(540)));
}
