//! The binder's decisions against Kubernetes' PV controller unit tests' situations: claims in
//! each state, volumes in each state, and a bind carried out step by step with a crash after
//! every step. Matching itself is tested beside it, in `scheduling::volumes`.

use super::*;
use crate::controllers::volume::edits::{
    claim_bound, claim_bound_status, volume_bound, volume_phase, volume_unbound,
};
use crate::scheduling::volumes::fixtures::*;
use crate::scheduling::volumes::phase_of;
use rudder_proto::objects::storage::{default_storage_class, SELECTED_NODE_ANNOTATION};
use serde_json::json;

fn classes() -> Vec<Arc<StorageClass>> {
    let mut immediate = default_storage_class();
    immediate.metadata.name = Some("manual".into());
    immediate.metadata.annotations = None;
    immediate.provisioner = rudder_proto::objects::storage::NO_PROVISIONER.into();
    immediate.volume_binding_mode = Some("Immediate".into());
    let mut local = default_storage_class();
    local.metadata.name = Some("local".into());
    local.metadata.annotations = None;
    local.provisioner = rudder_proto::objects::storage::NO_PROVISIONER.into();
    vec![
        Arc::new(default_storage_class()),
        Arc::new(immediate),
        Arc::new(local),
    ]
}

fn plan(claim: &PersistentVolumeClaim, volumes: &[Arc<PersistentVolume>]) -> ClaimPlan {
    let classes = classes();
    let n1 = node("n1");
    plan_claim(
        claim,
        &View {
            volumes,
            classes: &classes,
            selected: Some(&n1),
        },
    )
}

fn note_of(plan: &ClaimPlan) -> Option<(&'static str, &str)> {
    match plan {
        ClaimPlan::Pending { note: Some(note) }
        | ClaimPlan::Lost(note)
        | ClaimPlan::Reschedule(note) => Some((note.reason, note.message.as_str())),
        _ => None,
    }
}

#[test]
fn unbound_claims_are_bound_provisioned_or_wait_in_kubernetes_words() {
    let available = vec![volume("pv-1", "2Gi", |_| {})];
    let bind = plan(&claim(|_| {}), &available);
    let bound_to = match &bind {
        ClaimPlan::Bind { volume } => volume.metadata.name.as_deref(),
        _ => None,
    };
    assert_eq!(bound_to, Some("pv-1"), "{bind:?}");

    let classless = claim(|c| {
        c["spec"]
            .as_object_mut()
            .unwrap()
            .remove("storageClassName");
    });
    assert_eq!(
        plan(&classless, &[]),
        ClaimPlan::AssignClass {
            class: "local-path".into()
        }
    );

    let local = |annotate: bool| {
        claim(move |c| {
            c["spec"]["storageClassName"] = json!("local-path");
            if annotate {
                c["metadata"]["annotations"] = json!({ SELECTED_NODE_ANNOTATION: "n1" });
            }
        })
    };
    assert_eq!(
        note_of(&plan(&local(false), &available)),
        Some((
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding"
        ))
    );
    match plan(&local(true), &available) {
        ClaimPlan::Provision { volume } => {
            assert_eq!(volume.metadata.name.as_deref(), Some("pvc-claim-uid"));
            let volumes = vec![Arc::new(*volume)];
            assert!(
                matches!(plan(&local(true), &volumes), ClaimPlan::Bind { .. }),
                "the provisioned volume is its own"
            );
        }
        other => panic!("not provisioned: {other:?}"),
    }

    let static_only = plan(&claim(|_| {}), &[]);
    assert_eq!(
        note_of(&static_only),
        Some((
            "ExternalProvisioning",
            "Waiting for a volume to be created either by the external provisioner \
             'kubernetes.io/no-provisioner' or manually by the system administrator. If volume \
             creation is delayed, please verify that the provisioner is running and correctly \
             registered."
        ))
    );
    let unknown = claim(|c| c["spec"]["storageClassName"] = json!("gold"));
    assert_eq!(
        note_of(&plan(&unknown, &[])),
        Some((
            "ProvisioningFailed",
            "storageclass.storage.k8s.io \"gold\" not found"
        ))
    );
    let none = claim(|c| c["spec"]["storageClassName"] = json!(""));
    assert_eq!(
        note_of(&plan(&none, &[])),
        Some((
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set"
        ))
    );
}

#[test]
fn a_claim_naming_its_volume_is_bound_to_it_only_if_it_fits() {
    let named = claim(|c| c["spec"]["volumeName"] = json!("pv-1"));
    assert_eq!(plan(&named, &[]), ClaimPlan::Pending { note: None });
    assert!(matches!(
        plan(&named, &[volume("pv-1", "1Gi", |_| {})]),
        ClaimPlan::Bind { .. }
    ));
    assert_eq!(
        note_of(&plan(&named, &[volume("pv-1", "100Mi", |_| {})])),
        Some((
            "VolumeMismatch",
            "Cannot bind to requested volume \"pv-1\": requested PV is too small"
        ))
    );
    let taken = volume("pv-1", "1Gi", |v| {
        v["spec"]["claimRef"] = json!({ "namespace": "default", "name": "other", "uid": "o" })
    });
    assert_eq!(
        note_of(&plan(&named, &[taken])),
        Some((
            "FailedBinding",
            "volume \"pv-1\" already bound to a different claim."
        ))
    );
}

#[test]
fn a_bound_claim_is_repaired_or_lost() {
    let bound = claim(|c| {
        c["spec"]["volumeName"] = json!("pv-1");
        c["metadata"]["annotations"] = json!({ BIND_COMPLETED_ANNOTATION: "yes" });
    });
    assert_eq!(
        note_of(&plan(&bound, &[])),
        Some((
            "ClaimLost",
            "Bound claim has lost its PersistentVolume. Data on the volume is lost!"
        ))
    );
    assert!(matches!(
        plan(&bound, &[volume("pv-1", "1Gi", |_| {})]),
        ClaimPlan::Bind { .. }
    ));
    assert!(matches!(
        plan(&bound, &[volume("pv-1", "1Gi", bound_to_claim)]),
        ClaimPlan::Bind { .. }
    ));
    let elsewhere = volume("pv-1", "1Gi", |v| {
        v["spec"]["claimRef"] = json!({ "namespace": "default", "name": "data", "uid": "old" })
    });
    assert_eq!(
        note_of(&plan(&bound, &[elsewhere])).map(|n| n.0),
        Some("ClaimMisbound")
    );
    let reservation = volume("pv-1", "1Gi", |v| {
        v["spec"]["claimRef"] = json!({ "namespace": "default", "name": "data" })
    });
    assert_eq!(
        note_of(&plan(&bound, &[reservation])).map(|n| n.0),
        Some("ClaimMisbound"),
        "a reference without the claim's uid is not its binding"
    );
    let lost = claim(|c| {
        c["spec"]["volumeName"] = json!("pv-1");
        c["metadata"]["annotations"] = json!({ BIND_COMPLETED_ANNOTATION: "yes" });
        c["status"]["phase"] = json!("Lost");
    });
    assert!(
        matches!(
            plan(&lost, &[volume("pv-1", "1Gi", bound_to_claim)]),
            ClaimPlan::Bind { .. }
        ),
        "a claim marked Lost while its volume was away is bound again"
    );
}

#[test]
fn a_claim_waiting_for_its_pod_takes_only_a_volume_reserved_for_it() {
    let local = claim(|c| {
        c["spec"]["storageClassName"] = json!("local");
        c["metadata"]["annotations"] = json!({ SELECTED_NODE_ANNOTATION: "n1" });
    });
    let on_n1 = |reserved: bool| {
        volume("on-n1", "2Gi", move |v| {
            on_node("n1")(v);
            v["spec"]["storageClassName"] = json!("local");
            if reserved {
                bound_to_claim(v);
            }
        })
    };
    assert_eq!(
        note_of(&plan(&local, &[on_n1(false)])).map(|n| n.0),
        Some("ExternalProvisioning"),
        "a free static volume is the scheduler's to reserve for it, not the binder's to take"
    );
    assert!(matches!(
        plan(&local, &[on_n1(true)]),
        ClaimPlan::Bind { .. }
    ));
}

#[test]
fn a_claim_selected_for_a_node_that_is_gone_goes_back_to_the_scheduler() {
    let local = claim(|c| {
        c["spec"]["storageClassName"] = json!("local-path");
        c["metadata"]["annotations"] = json!({ SELECTED_NODE_ANNOTATION: "n9" });
    });
    let classes = classes();
    let n1 = node("n1");
    for selected in [None, Some(&n1)] {
        let view = View {
            volumes: &[],
            classes: &classes,
            selected,
        };
        match plan_claim(&local, &view) {
            ClaimPlan::Reschedule(note) => {
                assert_eq!(note.reason, "ProvisioningFailed");
                assert!(
                    note.message.contains("node \"n9\" not found"),
                    "{}",
                    note.message
                );
            }
            other => panic!("with {selected:?}: {other:?}"),
        }
    }
    let mut n9 = node("n9");
    n9.metadata.labels = Some([(HOSTNAME_LABEL.to_string(), "n9.local".to_string())].into());
    let view = View {
        volumes: &[],
        classes: &classes,
        selected: Some(&n9),
    };
    let ClaimPlan::Provision { volume } = plan_claim(&local, &view) else {
        panic!("provisioned once the node is known");
    };
    let affinity = serde_json::to_value(&volume.spec.as_ref().expect("a spec").node_affinity)
        .expect("encodes");
    assert_eq!(
        affinity["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"],
        json!(["n9.local"]),
        "pinned by the node's hostname label"
    );
}

#[test]
fn a_volume_pointing_at_a_claim_not_yet_marked_bound_has_the_claim_looked_at() {
    let bound = claim(|c| {
        c["spec"]["volumeName"] = json!("pv-1");
        c["metadata"]["annotations"] = json!({ BIND_COMPLETED_ANNOTATION: "yes" });
        c["status"]["phase"] = json!("Bound");
    });
    let lost = claim(|c| {
        c["spec"]["volumeName"] = json!("pv-1");
        c["metadata"]["annotations"] = json!({ BIND_COMPLETED_ANNOTATION: "yes" });
        c["status"]["phase"] = json!("Lost");
    });
    let pending = claim(|_| {});
    let mine = volume("pv-1", "1Gi", bound_to_claim);
    let someone_elses = volume("pv-1", "1Gi", |v| {
        v["spec"]["claimRef"] = json!({ "namespace": "default", "name": "data", "uid": "old" })
    });
    let reservation = volume("pv-1", "1Gi", |v| {
        v["spec"]["claimRef"] = json!({ "namespace": "default", "name": "data" })
    });
    let table = [
        ("bound both ways", &mine, &bound, false),
        ("marked Lost while its volume was away", &mine, &lost, true),
        ("not bound yet", &mine, &pending, true),
        ("another claim of that name", &someone_elses, &lost, false),
        ("a reservation without a uid", &reservation, &pending, false),
    ];
    for (why, volume, claim, expected) in table {
        assert_eq!(claim_needs_sync(volume, claim), expected, "{why}");
    }
}

#[test]
fn volumes_follow_their_claims() {
    let mine = claim(|c| c["spec"]["volumeName"] = json!("pv-1"));
    let pending = claim(|_| {});
    let other = claim(|c| c["spec"]["volumeName"] = json!("pv-2"));
    let retained = volume("pv-1", "1Gi", bound_to_claim);
    let provisioned = volume("pv-1", "1Gi", |v| {
        bound_to_claim(v);
        v["spec"]["persistentVolumeReclaimPolicy"] = json!("Delete");
        v["metadata"]["annotations"] = json!({ PROVISIONED_BY_ANNOTATION: "rudder.io/local-path" });
    });
    let free = volume("pv-1", "1Gi", |_| {});
    let renamed = claim(|c| c["metadata"]["uid"] = json!("new-uid"));
    let table: Vec<(
        &str,
        &Arc<PersistentVolume>,
        Option<&PersistentVolumeClaim>,
        VolumePlan,
    )> = vec![
        ("free", &free, None, VolumePlan::Phase(PHASE_AVAILABLE)),
        (
            "bound both ways",
            &retained,
            Some(&mine),
            VolumePlan::Phase(PHASE_BOUND),
        ),
        (
            "its claim not bound yet",
            &retained,
            Some(&pending),
            VolumePlan::SyncClaim {
                namespace: "default".into(),
                name: "data".into(),
            },
        ),
        (
            "its claim gone, retained",
            &retained,
            None,
            VolumePlan::Reclaim(Reclaim::Keep),
        ),
        (
            "its claim gone, provisioned here with Delete",
            &provisioned,
            None,
            VolumePlan::Reclaim(Reclaim::Delete),
        ),
        (
            "a claim of the same name with another uid",
            &provisioned,
            Some(&renamed),
            VolumePlan::Reclaim(Reclaim::Delete),
        ),
        (
            "made for a claim that got another volume",
            &provisioned,
            Some(&other),
            VolumePlan::Reclaim(Reclaim::Delete),
        ),
        (
            "a user's reservation for a claim bound elsewhere",
            &retained,
            Some(&other),
            VolumePlan::Unbind {
                by_controller: false,
            },
        ),
    ];
    for (why, volume, claim, expected) in table {
        assert_eq!(plan_volume(volume, claim), expected, "{why}");
    }
    let deleting_static = volume("pv-1", "1Gi", |v| {
        bound_to_claim(v);
        v["spec"]["persistentVolumeReclaimPolicy"] = json!("Delete");
    });
    assert!(matches!(
        plan_volume(&deleting_static, None),
        VolumePlan::Reclaim(Reclaim::Fail(Note {
            reason: "VolumeFailedDelete",
            ..
        }))
    ));
}

/// Carries out a bind's four steps on local copies, stopping after `steps` of them (a
/// crash); returns the volume and claim as they were left.
fn bind_steps(
    volume: &PersistentVolume,
    claim: &PersistentVolumeClaim,
    steps: usize,
) -> (PersistentVolume, PersistentVolumeClaim) {
    let (mut volume, mut claim) = (volume.clone(), claim.clone());
    for step in 0..steps {
        match step {
            0 => {
                if let Some(bound) = volume_bound(&volume, &claim) {
                    volume = bound;
                }
            }
            1 => {
                if let Some(status) = volume_phase(&volume, PHASE_BOUND, None) {
                    volume.status = Some(status);
                }
            }
            2 => {
                if let Some(bound) = claim_bound(&claim, &volume) {
                    claim = bound;
                }
            }
            _ => {
                if let Some(status) = claim_bound_status(&claim, &volume) {
                    claim.status = Some(status);
                }
            }
        }
    }
    (volume, claim)
}

#[test]
fn a_bind_interrupted_after_any_step_is_finished_by_the_next_sync() {
    let start_volume = volume("pv-1", "2Gi", |_| {});
    let start_claim = claim(|_| {});
    for crash_after in 0..=4 {
        let (volume, claim) = bind_steps(&start_volume, &start_claim, crash_after);
        // The next sync, from the claim's side, plans the bind again...
        let volumes = vec![Arc::new(volume.clone())];
        let chosen = match plan(&claim, &volumes) {
            ClaimPlan::Bind { volume } => volume,
            other => panic!("after {crash_after} steps: {other:?}"),
        };
        assert_eq!(chosen.metadata.name.as_deref(), Some("pv-1"));
        // ...and finishing it leaves both bound, whatever was already done.
        let (volume, claim) = bind_steps(&chosen, &claim, 4);
        assert_eq!(phase_of(&volume), PHASE_BOUND, "after {crash_after}");
        assert!(is_bound_to(&volume, &claim));
        assert_eq!(spec_volume_name(&claim), "pv-1");
        let status = claim.status.clone().expect("a status");
        assert_eq!(status.phase.as_deref(), Some(PHASE_BOUND));
        assert_eq!(
            status
                .capacity
                .and_then(|c| c.get("storage").cloned())
                .map(|q| q.0),
            Some("2Gi".to_string())
        );
        assert!(rudder_proto::objects::storage::is_claim_bound(&claim));
        // Done: nothing is left to write.
        assert_eq!(volume_bound(&volume, &claim), None);
        assert_eq!(volume_phase(&volume, PHASE_BOUND, None), None);
        assert_eq!(claim_bound(&claim, &volume), None);
        assert_eq!(claim_bound_status(&claim, &volume), None);
        assert_eq!(
            plan_volume(&volume, Some(&claim)),
            VolumePlan::Phase(PHASE_BOUND)
        );
    }
}

#[test]
fn unbinding_keeps_a_users_reservation() {
    let reserved = volume("pv-1", "1Gi", bound_to_claim);
    let kept = volume_unbound(&reserved, false);
    let reference = kept
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.clone())
        .expect("kept");
    assert_eq!(
        (reference.name.as_deref(), reference.uid),
        (Some("data"), None)
    );
    let freed = volume_unbound(
        &volume("pv-1", "1Gi", |v| {
            bound_to_claim(v);
            v["metadata"]["annotations"] = json!({ BOUND_BY_CONTROLLER_ANNOTATION: "yes" });
        }),
        true,
    );
    assert_eq!(freed.spec.and_then(|s| s.claim_ref), None);
    assert!(!has_annotation(
        &freed.metadata,
        BOUND_BY_CONTROLLER_ANNOTATION
    ));
}
