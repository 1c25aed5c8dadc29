//! VolumeBinding's decisions against the situations of kube-scheduler's volumebinding tests:
//! the claims that keep a pod off every node, each node's verdict, the PreBind a placement
//! makes, the assume cache, and when a pod's wait for its claims ends. One file: every table
//! is built from the same claims, volumes, classes and nodes.

use super::*;
use rudder_proto::objects::storage::default_storage_class;
use serde_json::{json, Value};

fn node(name: &str, zone: &str) -> Node {
    serde_json::from_value(json!({ "metadata": { "name": name, "labels": {
        "kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone } } }))
    .expect("a test node decodes")
}

fn claim(name: &str, change: impl FnOnce(&mut Value)) -> Arc<PersistentVolumeClaim> {
    let mut value = json!({
        "metadata": { "name": name, "namespace": "default", "uid": format!("{name}-uid"),
                      "resourceVersion": "10" },
        "spec": { "accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                  "resources": { "requests": { "storage": "1Gi" } } },
        "status": { "phase": "Pending" }
    });
    change(&mut value);
    Arc::new(serde_json::from_value(value).expect("a test claim decodes"))
}

fn bound_to(volume: &str) -> impl FnOnce(&mut Value) {
    let volume = volume.to_string();
    move |c: &mut Value| {
        c["spec"]["volumeName"] = json!(volume);
        c["metadata"]["annotations"] = json!({ "pv.kubernetes.io/bind-completed": "yes" });
        c["status"]["phase"] = json!("Bound");
    }
}

fn selected_for(node: &str) -> impl FnOnce(&mut Value) {
    let node = node.to_string();
    move |c: &mut Value| {
        c["metadata"]["annotations"] = json!({ SELECTED_NODE_ANNOTATION: node });
    }
}

fn of_class(class: &str) -> impl FnOnce(&mut Value) {
    let class = class.to_string();
    move |c: &mut Value| c["spec"]["storageClassName"] = json!(class)
}

fn volume_on(
    name: &str,
    node: Option<&str>,
    change: impl FnOnce(&mut Value),
) -> Arc<PersistentVolume> {
    let mut value = json!({
        "metadata": { "name": name, "resourceVersion": "5" },
        "spec": { "accessModes": ["ReadWriteOnce"], "capacity": { "storage": "1Gi" },
                  "storageClassName": "local", "local": { "path": "/mnt/disk" } },
        "status": { "phase": "Available" }
    });
    if let Some(node) = node {
        value["spec"]["nodeAffinity"] = json!({ "required": { "nodeSelectorTerms": [{
            "matchExpressions": [{ "key": "kubernetes.io/hostname", "operator": "In",
                                   "values": [node] }] }] } });
    }
    change(&mut value);
    Arc::new(serde_json::from_value(value).expect("a test volume decodes"))
}

/// The volume reserved for (or bound to) the claim named `claim`.
fn claimed_by(claim: &str) -> impl FnOnce(&mut Value) {
    let claim = claim.to_string();
    move |v: &mut Value| {
        v["spec"]["claimRef"] = json!({ "kind": "PersistentVolumeClaim",
            "namespace": "default", "name": claim, "uid": format!("{claim}-uid") });
        v["status"]["phase"] = json!("Bound");
    }
}

fn storage(claims: &[Arc<PersistentVolumeClaim>], volumes: &[Arc<PersistentVolume>]) -> Storage {
    let mut storage = Storage::default();
    let mut local = default_storage_class();
    local.metadata.name = Some("local".into());
    local.provisioner = NO_PROVISIONER.into();
    let mut immediate = default_storage_class();
    immediate.metadata.name = Some("fast".into());
    immediate.provisioner = "example.com/ssd".into();
    immediate.volume_binding_mode = Some("Immediate".into());
    let mut zoned = default_storage_class();
    zoned.metadata.name = Some("zoned".into());
    zoned.allowed_topologies = Some(
        serde_json::from_value(json!([{ "matchLabelExpressions": [
            { "key": "topology.kubernetes.io/zone", "values": ["a"] }] }]))
        .expect("terms decode"),
    );
    for class in [default_storage_class(), local, immediate, zoned] {
        storage.upsert_class(Arc::new(class));
    }
    for claim in claims {
        storage.upsert_claim(claim.clone());
    }
    for volume in volumes {
        storage.upsert_volume(volume.clone());
    }
    storage
}

fn pod_using(claims: &[&str]) -> Pod {
    let volumes: Vec<Value> = claims
        .iter()
        .map(|c| json!({ "name": c, "persistentVolumeClaim": { "claimName": c } }))
        .collect();
    serde_json::from_value(json!({
        "metadata": { "name": "web-0", "namespace": "default", "uid": "pod-uid" },
        "spec": { "containers": [{ "name": "c" }], "volumes": volumes } }))
    .expect("a test pod decodes")
}

/// Each node's verdict: `Ok` or the reason.
fn verdicts(pod: &Pod, storage: &Storage) -> Vec<String> {
    let volumes = PodVolumes::new(pod, storage);
    [node("n1", "a"), node("n2", "b")]
        .iter()
        .map(|n| match volumes.check(n) {
            Ok(()) => "ok".to_string(),
            Err(unfit) => unfit.reasons().join(", "),
        })
        .collect()
}

const BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
const SHARED_LOCAL_PATH: &str =
    "node(s) didn't find available persistent volumes to bind (persistentvolumeclaim \
     \"data\" cannot be provisioned: rudder.io/local-path volumes live on one node and \
     support only the ReadWriteOnce and ReadWriteOncePod access modes, not ReadWriteMany)";

#[test]
fn claims_keep_a_pod_off_every_node_in_kubernetes_words() {
    let table: Vec<(&str, Vec<Arc<PersistentVolumeClaim>>, &str)> = vec![
        (
            "missing",
            vec![],
            "persistentvolumeclaim \"data\" not found",
        ),
        (
            "being deleted",
            vec![claim("data", |c| {
                c["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z")
            })],
            "persistentvolumeclaim \"data\" is being deleted",
        ),
        (
            "lost",
            vec![claim("data", |c| {
                c["spec"]["volumeName"] = json!("gone");
                c["status"]["phase"] = json!("Lost")
            })],
            "persistentvolumeclaim \"data\" bound to non-existent persistentvolume \"gone\"",
        ),
        (
            "unbound, binds at once",
            vec![claim("data", of_class("fast"))],
            UNBOUND_IMMEDIATE,
        ),
        (
            "unbound, a class that does not exist",
            vec![claim("data", of_class("gold"))],
            UNBOUND_IMMEDIATE,
        ),
        (
            "unbound, waits for its pod but names its volume: the binder's to bind",
            vec![claim("data", |c| c["spec"]["volumeName"] = json!("pv-1"))],
            UNBOUND_IMMEDIATE,
        ),
    ];
    for (why, claims, expected) in table {
        let volumes = PodVolumes::new(&pod_using(&["data"]), &storage(&claims, &[]));
        assert_eq!(volumes.refusal(), Some(expected), "{why}");
    }
    let ephemeral: Pod = serde_json::from_value(json!({
        "metadata": { "name": "web-0", "namespace": "default", "uid": "pod-uid" },
        "spec": { "containers": [{ "name": "c" }],
                  "volumes": [{ "name": "scratch", "ephemeral": { "volumeClaimTemplate": {
                      "spec": { "accessModes": ["ReadWriteOnce"] } } } }] } }))
    .expect("a pod decodes");
    assert!(uses_claims(&ephemeral));
    let volumes = PodVolumes::new(&ephemeral, &storage(&[], &[]));
    assert_eq!(
        volumes.refusal(),
        Some(
            "waiting for ephemeral volume controller to create the persistentvolumeclaim \
             \"web-0-scratch\""
        )
    );
    assert!(!uses_claims(&pod_using(&[])));
}

#[test]
fn each_node_is_checked_against_the_claims_volumes() {
    let pv_n1 = volume_on("pv-n1", Some("n1"), |_| {});
    /// (what, the claims, the volumes, the verdicts on the two nodes)
    type Row<'a> = (
        &'a str,
        Vec<Arc<PersistentVolumeClaim>>,
        Vec<Arc<PersistentVolume>>,
        [&'a str; 2],
    );
    let table: Vec<Row> = vec![
        (
            "bound to a volume on n1",
            vec![claim("data", bound_to("pv-n1"))],
            vec![pv_n1.clone()],
            ["ok", "node(s) had volume node affinity conflict"],
        ),
        (
            "bound to a volume without affinity",
            vec![claim("data", bound_to("pv-any"))],
            vec![volume_on("pv-any", None, |_| {})],
            ["ok", "ok"],
        ),
        (
            "bound to a volume that is gone",
            vec![claim("data", bound_to("pv-gone"))],
            vec![],
            [
                "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)",
                "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)",
            ],
        ),
        (
            "waiting, provisioned anywhere",
            vec![claim("data", |_| {})],
            vec![],
            ["ok", "ok"],
        ),
        (
            "waiting, selected for n2 already",
            vec![claim("data", selected_for("n2"))],
            vec![],
            [BIND_CONFLICT, "ok"],
        ),
        (
            "waiting, selected for n1 already, but its class provisions nothing",
            vec![claim("data", |c| {
                selected_for("n1")(c);
                of_class("local")(c)
            })],
            vec![],
            [BIND_CONFLICT, BIND_CONFLICT],
        ),
        (
            "waiting, selected for n2 already, outside its class's topology",
            vec![claim("data", |c| {
                selected_for("n2")(c);
                of_class("zoned")(c)
            })],
            vec![],
            [BIND_CONFLICT, BIND_CONFLICT],
        ),
        (
            "waiting, static volumes only, one on n1",
            vec![claim("data", of_class("local"))],
            vec![pv_n1.clone()],
            ["ok", BIND_CONFLICT],
        ),
        (
            "waiting, static volumes only, taken",
            vec![claim("data", of_class("local"))],
            vec![volume_on("pv-n1", Some("n1"), claimed_by("other"))],
            [BIND_CONFLICT, BIND_CONFLICT],
        ),
        (
            "waiting, static volumes only, reserved for it on n1",
            vec![claim("data", of_class("local"))],
            vec![volume_on("pv-n1", Some("n1"), claimed_by("data"))],
            ["ok", BIND_CONFLICT],
        ),
        (
            "two claims, one static volume",
            vec![
                claim("data", of_class("local")),
                claim("logs", of_class("local")),
            ],
            vec![pv_n1.clone()],
            [BIND_CONFLICT, BIND_CONFLICT],
        ),
        (
            "waiting, provisioned only in zone a",
            vec![claim("data", of_class("zoned"))],
            vec![],
            ["ok", BIND_CONFLICT],
        ),
        (
            "waiting, local-path asked to share a directory between nodes",
            vec![claim("data", |c| {
                c["spec"]["accessModes"] = json!(["ReadWriteMany"])
            })],
            vec![],
            [SHARED_LOCAL_PATH, SHARED_LOCAL_PATH],
        ),
        (
            "the same, with a shared static volume of its class on n1",
            vec![claim("data", |c| {
                c["spec"]["accessModes"] = json!(["ReadWriteMany"])
            })],
            vec![volume_on("nfs-n1", Some("n1"), |v| {
                v["spec"]["accessModes"] = json!(["ReadWriteMany"]);
                v["spec"]["storageClassName"] = json!("local-path");
            })],
            ["ok", SHARED_LOCAL_PATH],
        ),
    ];
    for (why, claims, volumes, expected) in table {
        let names: Vec<String> = claims
            .iter()
            .map(|c| c.metadata.name.clone().unwrap_or_default())
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let verdicts = verdicts(&pod_using(&names), &storage(&claims, &volumes));
        assert_eq!(verdicts, expected, "{why}");
    }
}

/// A PreBind as names: (volumes reserved: `volume<-claim`, claims annotated:
/// `claim@node`, waits: `claim:volume` or `claim:provisioned`).
fn summary(plan: &PreBind) -> (Vec<String>, Vec<String>, Vec<String>) {
    let reserved = plan
        .reserve
        .iter()
        .map(|v| {
            let claim = claim_ref(v)
                .and_then(|r| r.name.clone())
                .unwrap_or_default();
            format!(
                "{}<-{claim}",
                v.metadata.name.as_deref().unwrap_or_default()
            )
        })
        .collect();
    let selected = plan
        .select
        .iter()
        .map(|c| {
            let node = selected_node(c).unwrap_or_default();
            format!("{}@{node}", c.metadata.name.as_deref().unwrap_or_default())
        })
        .collect();
    let waits = plan
        .waits
        .iter()
        .map(|w| {
            let volume = w.volume.as_deref().unwrap_or("provisioned");
            format!("{}:{volume}", w.claim.name)
        })
        .collect();
    (reserved, selected, waits)
}

#[test]
fn the_pre_bind_reserves_static_volumes_selects_the_node_for_the_rest_and_waits_for_all() {
    fn strs(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }
    let two_gi = |c: &mut Value| {
        of_class("local")(c);
        c["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
    };
    /// (what, the claims the pod uses in its order, the claims, the volumes, reserved,
    /// annotated, waited for)
    type Row<'a> = (
        &'a str,
        Vec<&'a str>,
        Vec<Arc<PersistentVolumeClaim>>,
        Vec<Arc<PersistentVolume>>,
        Vec<&'a str>,
        Vec<&'a str>,
        Vec<&'a str>,
    );
    let table: Vec<Row> = vec![
        (
            "every claim bound: nothing to do",
            vec!["done"],
            vec![claim("done", bound_to("pv-any"))],
            vec![volume_on("pv-any", None, claimed_by("done"))],
            vec![],
            vec![],
            vec![],
        ),
        (
            "a static volume on the node is reserved, not annotated",
            vec!["data"],
            vec![claim("data", of_class("local"))],
            vec![volume_on("pv-n1", Some("n1"), |_| {})],
            vec!["pv-n1<-data"],
            vec![],
            vec!["data:pv-n1"],
        ),
        (
            "two claims: the smaller asks first, none takes a volume twice",
            vec!["big", "small"],
            vec![claim("big", two_gi), claim("small", of_class("local"))],
            vec![
                volume_on("pv-a", Some("n1"), |v| {
                    v["spec"]["capacity"]["storage"] = json!("2Gi")
                }),
                volume_on("pv-b", Some("n1"), |v| {
                    v["spec"]["capacity"]["storage"] = json!("5Gi")
                }),
            ],
            vec!["pv-a<-small", "pv-b<-big"],
            vec![],
            vec!["small:pv-a", "big:pv-b"],
        ),
        (
            "reserved by an earlier attempt: nothing to write, still waited for",
            vec!["data"],
            vec![claim("data", of_class("local"))],
            vec![volume_on("pv-n1", Some("n1"), claimed_by("data"))],
            vec![],
            vec![],
            vec!["data:pv-n1"],
        ),
        (
            "no static volume: provisioned on the node",
            vec!["data"],
            vec![claim("data", |_| {})],
            vec![],
            vec![],
            vec!["data@n1"],
            vec!["data:provisioned"],
        ),
        (
            "selected for this node already: only waited for",
            vec!["data"],
            vec![claim("data", selected_for("n1"))],
            vec![],
            vec![],
            vec![],
            vec!["data:provisioned"],
        ),
        (
            "one bound, one static, one provisioned",
            vec!["done", "data", "scratch"],
            vec![
                claim("done", bound_to("pv-any")),
                claim("data", of_class("local")),
                claim("scratch", |_| {}),
            ],
            vec![
                volume_on("pv-any", None, claimed_by("done")),
                volume_on("pv-n1", Some("n1"), |_| {}),
            ],
            vec!["pv-n1<-data"],
            vec!["scratch@n1"],
            vec!["data:pv-n1", "scratch:provisioned"],
        ),
    ];
    let n1 = node("n1", "a");
    for (why, uses, claims, volumes, reserved, selected, waits) in table {
        let pod = pod_using(&uses);
        let plan = PodVolumes::new(&pod, &storage(&claims, &volumes))
            .pre_bind(&n1)
            .unwrap_or_else(|unfit| panic!("{why}: {unfit}"));
        assert_eq!(
            summary(&plan),
            (strs(&reserved), strs(&selected), strs(&waits)),
            "{why}"
        );
        assert_eq!(plan.is_empty(), waits.is_empty(), "{why}");
        for volume in &plan.reserve {
            assert_eq!(
                volume.metadata.resource_version.as_deref(),
                Some("5"),
                "{why}: written at the version read"
            );
        }
        for claim in &plan.select {
            assert_eq!(
                claim.metadata.resource_version.as_deref(),
                Some("10"),
                "{why}: written at the version read"
            );
        }
    }
    let elsewhere = storage(&[claim("data", selected_for("n2"))], &[]);
    assert_eq!(
        PodVolumes::new(&pod_using(&["data"]), &elsewhere).pre_bind(&n1),
        Err(Unfit::VolumeBindConflict),
        "a node the filter refuses"
    );
}

#[test]
fn an_assumed_reservation_hides_the_volume_until_the_watch_shows_a_newer_one() {
    let n1 = node("n1", "a");
    let first = claim("data", of_class("local"));
    let second = claim("logs", of_class("local"));
    let mut storage = storage(
        &[first.clone(), second.clone()],
        &[volume_on("pv-n1", Some("n1"), |_| {})],
    );
    let plan = PodVolumes::new(&pod_using(&["data"]), &storage)
        .pre_bind(&n1)
        .expect("n1 fits");
    for volume in &plan.reserve {
        storage.assume_volume(volume.clone());
    }
    let logs = pod_using(&["logs"]);
    assert_eq!(
        PodVolumes::new(&logs, &storage).check(&n1),
        Err(Unfit::VolumeBindConflict),
        "the next pod sees the volume taken before the write is watched"
    );
    // The watch repeats the version the reservation was made from: still taken.
    storage.upsert_volume(volume_on("pv-n1", Some("n1"), |_| {}));
    assert_eq!(
        PodVolumes::new(&logs, &storage).check(&n1),
        Err(Unfit::VolumeBindConflict)
    );
    // The bind failed: free again.
    storage.forget(&plan);
    assert_eq!(PodVolumes::new(&logs, &storage).check(&n1), Ok(()));
    // Assumed again, then the write is watched (a newer version): the watched one rules.
    storage.assume_volume(plan.reserve[0].clone());
    storage.upsert_volume(volume_on("pv-n1", Some("n1"), |v| {
        claimed_by("data")(v);
        v["metadata"]["resourceVersion"] = json!("6");
    }));
    assert_eq!(
        storage
            .volume("pv-n1")
            .map(|v| v.metadata.resource_version.clone()),
        Some(Some("6".to_string()))
    );
    assert_eq!(
        PodVolumes::new(&logs, &storage).check(&n1),
        Err(Unfit::VolumeBindConflict)
    );
    // A claim annotated for a node is likewise taken as annotated.
    let mut annotated = PersistentVolumeClaim::clone(&second);
    annotated.metadata.annotations =
        Some([(SELECTED_NODE_ANNOTATION.to_string(), "n2".to_string())].into());
    storage.assume_claim(annotated);
    assert_eq!(
        storage
            .claim("default", "logs")
            .and_then(|c| selected_node(c).map(str::to_string)),
        Some("n2".to_string())
    );
    assert_eq!(
        storage.watched_claim(&ObjectKey::new("default", "logs")),
        Some(&second)
    );
}

#[test]
fn a_pods_wait_ends_when_its_claims_are_bound_or_cannot_be() {
    let n1 = node("n1", "a");
    let static_wait = |written: u64| ClaimWait {
        claim: ObjectKey::new("default", "data"),
        volume: Some("pv-n1".into()),
        written,
    };
    let provision_wait = |written: u64| ClaimWait {
        claim: ObjectKey::new("default", "data"),
        volume: None,
        written,
    };
    let reserved = |version: &str| {
        let version = version.to_string();
        volume_on("pv-n1", Some("n1"), move |v| {
            claimed_by("data")(v);
            v["metadata"]["resourceVersion"] = json!(version);
        })
    };
    let pending = claim("data", of_class("local"));
    let bound = claim("data", |c| {
        of_class("local")(c);
        bound_to("pv-n1")(c);
    });
    /// The claim annotated for n1, at `version`, then changed by `change`.
    fn annotated(version: &str, change: fn(&mut Value)) -> Arc<PersistentVolumeClaim> {
        let version = version.to_string();
        claim("data", move |c| {
            selected_for("n1")(c);
            c["metadata"]["resourceVersion"] = json!(version);
            change(c);
        })
    }
    let provisioned_on = |node: &'static str| {
        volume_on("pvc-data-uid", Some(node), move |v| {
            claimed_by("data")(v);
            v["metadata"]["resourceVersion"] = json!("30");
        })
    };
    let fully_bound = |c: &mut Value| {
        c["spec"]["volumeName"] = json!("pvc-data-uid");
        c["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] = json!("yes");
    };
    let named_only = |c: &mut Value| c["spec"]["volumeName"] = json!("pvc-data-uid");
    let no_annotation = |c: &mut Value| {
        c["metadata"].as_object_mut().unwrap().remove("annotations");
    };
    let waiting = Progress::Waiting;
    /// (what, the waits, the claims, the volumes, where it stands)
    type Row<'a> = (
        &'a str,
        Vec<ClaimWait>,
        Vec<Arc<PersistentVolumeClaim>>,
        Vec<Arc<PersistentVolume>>,
        Progress,
    );
    let table: Vec<Row> = vec![
        (
            "static: the claim bound",
            vec![static_wait(20)],
            vec![bound.clone()],
            vec![reserved("20")],
            Progress::Bound,
        ),
        (
            "static: the reservation not watched yet",
            vec![static_wait(20)],
            vec![bound.clone()],
            vec![volume_on("pv-n1", Some("n1"), |_| {})],
            waiting.clone(),
        ),
        (
            "static: the controller has not bound the claim yet",
            vec![static_wait(20)],
            vec![pending.clone()],
            vec![reserved("20")],
            waiting.clone(),
        ),
        (
            "static: the reservation undone",
            vec![static_wait(20)],
            vec![pending.clone()],
            vec![volume_on("pv-n1", Some("n1"), |v| {
                v["metadata"]["resourceVersion"] = json!("21")
            })],
            Progress::Failed("ClaimRef got reset for pv \"pv-n1\"".into()),
        ),
        (
            "static: the volume now another claim's",
            vec![static_wait(20)],
            vec![pending.clone()],
            vec![volume_on("pv-n1", Some("n1"), |v| {
                claimed_by("other")(v);
                v["metadata"]["resourceVersion"] = json!("21")
            })],
            Progress::Failed("pv \"pv-n1\" is bound to another claim (default/other)".into()),
        ),
        (
            "static: the volume gone",
            vec![static_wait(20)],
            vec![pending.clone()],
            vec![],
            Progress::Failed("persistentvolume \"pv-n1\" not found".into()),
        ),
        (
            "the claim gone",
            vec![static_wait(20)],
            vec![],
            vec![reserved("20")],
            Progress::Failed("persistentvolumeclaim default/data not found".into()),
        ),
        (
            "provisioned: not yet",
            vec![provision_wait(20)],
            vec![annotated("20", |_| {})],
            vec![],
            waiting.clone(),
        ),
        (
            "provisioned: the annotation not watched yet",
            vec![provision_wait(20)],
            vec![annotated("19", no_annotation)],
            vec![],
            waiting.clone(),
        ),
        (
            "provisioned: the provisioner gave the claim back",
            vec![provision_wait(20)],
            vec![annotated("21", no_annotation)],
            vec![],
            Progress::Failed("provisioning failed for PVC \"data\"".into()),
        ),
        (
            "provisioned: its volume not watched yet",
            vec![provision_wait(20)],
            vec![annotated("31", named_only)],
            vec![],
            waiting.clone(),
        ),
        (
            "provisioned: bound, on the node",
            vec![provision_wait(20)],
            vec![annotated("31", fully_bound)],
            vec![provisioned_on("n1")],
            Progress::Bound,
        ),
        (
            "provisioned: bound, but pinned elsewhere",
            vec![provision_wait(20)],
            vec![annotated("31", fully_bound)],
            vec![provisioned_on("n2")],
            Progress::Failed("pv \"pvc-data-uid\" node affinity doesn't match node \"n1\"".into()),
        ),
    ];
    for (why, waits, claims, volumes, expected) in table {
        assert_eq!(
            check_bindings(&waits, &storage(&claims, &volumes), &n1),
            expected,
            "{why}"
        );
    }

    // Another pod sharing the claim wrote (or is writing) what this one waits for: while
    // only the assumed copies show it, it is not taken for undone.
    let mut shared = storage(
        std::slice::from_ref(&pending),
        &[volume_on("pv-n1", Some("n1"), |_| {})],
    );
    let mut annotated_for_n1 = PersistentVolumeClaim::clone(&pending);
    annotated_for_n1.metadata.annotations =
        Some([(SELECTED_NODE_ANNOTATION.to_string(), "n1".to_string())].into());
    shared.assume_claim(annotated_for_n1);
    let reservation = volume_on("pv-n1", Some("n1"), claimed_by("data"));
    shared.assume_volume(PersistentVolume::clone(&reservation));
    assert_eq!(check_bindings(&[provision_wait(0)], &shared, &n1), waiting);
    assert_eq!(check_bindings(&[static_wait(0)], &shared, &n1), waiting);
    let plan = PreBind {
        reserve: vec![PersistentVolume::clone(&reservation)],
        select: vec![PersistentVolumeClaim::clone(&pending)],
        waits: vec![],
    };
    shared.forget(&plan);
    assert_eq!(
        check_bindings(&[provision_wait(0)], &shared, &n1),
        Progress::Failed("provisioning failed for PVC \"data\"".into()),
        "that write failed: undone"
    );
    assert_eq!(
        check_bindings(&[static_wait(0)], &shared, &n1),
        Progress::Failed("ClaimRef got reset for pv \"pv-n1\"".into())
    );
}
