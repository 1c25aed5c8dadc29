use serde_json::{json, Value};

use super::*;

/// A record built change by change, each at the next revision unless `same` says otherwise.
#[derive(Default)]
struct Record {
    changes: Vec<Change>,
    revision: i64,
    fenced: Vec<FencedWrite>,
}

impl Record {
    fn put(&mut self, key: &str, object: Value) -> &mut Self {
        self.revision += 1;
        self.put_same(key, object)
    }

    /// In the same revision (one transaction) as the change before.
    fn put_same(&mut self, key: &str, object: Value) -> &mut Self {
        self.changes.push(Change {
            revision: self.revision.max(1),
            key: key.into(),
            value: Some(object.to_string()),
        });
        self
    }

    fn delete(&mut self, key: &str) -> &mut Self {
        self.revision += 1;
        self.changes.push(Change {
            revision: self.revision,
            key: key.into(),
            value: None,
        });
        self
    }

    fn node(&mut self, name: &str, pods: u32) -> &mut Self {
        let node = json!({
            "metadata": {"name": name, "uid": format!("node-{name}")},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": pods.to_string()}},
        });
        self.put(&format!("/registry/nodes/{name}"), node)
    }

    fn replica_set(&mut self, name: &str, replicas: i64, deployment: Option<&str>) -> &mut Self {
        let owners = deployment
            .map(|d| json!([{"kind": "Deployment", "name": d, "uid": d, "controller": true}]));
        let rs = json!({
            "metadata": {"name": name, "namespace": "chaos", "uid": name,
                         "ownerReferences": owners.unwrap_or(json!([]))},
            "spec": {"replicas": replicas},
        });
        self.put(&format!("/registry/replicasets/chaos/{name}"), rs)
    }

    fn deployment(&mut self, name: &str, replicas: i64, max_surge: Value) -> &mut Self {
        let deployment = json!({
            "metadata": {"name": name, "namespace": "chaos", "uid": name},
            "spec": {"replicas": replicas,
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": max_surge}}},
        });
        self.put(&format!("/registry/deployments/chaos/{name}"), deployment)
    }

    fn pod(&mut self, name: &str, owner: &str, node: Option<&str>) -> &mut Self {
        let pod = pod(name, owner, node);
        self.put(&format!("/registry/pods/chaos/{name}"), pod)
    }

    fn check(&self) -> Judged {
        check(&self.changes, &self.fenced)
    }
}

fn pod(name: &str, owner: &str, node: Option<&str>) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "chaos", "uid": format!("uid-{name}"),
                     "ownerReferences": [{"kind": "ReplicaSet", "name": owner, "uid": owner,
                                          "controller": true}]},
        "spec": {"nodeName": node.unwrap_or(""),
                 "containers": [{"name": "app", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}}]},
        "status": {"phase": if node.is_some() { "Running" } else { "Pending" }},
    })
}

fn invariants(judged: &Judged) -> Vec<&'static str> {
    judged.violations.iter().map(|v| v.invariant).collect()
}

#[test]
fn a_clean_history_passes_with_its_evidence() {
    let mut record = Record::default();
    record
        .node("n1-0", 2)
        .replica_set("rs", 2, None)
        .pod("rs-a", "rs", None)
        .pod("rs-b", "rs", None)
        .pod("rs-a", "rs", Some("n1-0"))
        .pod("rs-b", "rs", Some("n1-0"));
    let judged = record.check();
    assert_eq!(judged.violations, vec![]);
    assert_eq!(
        judged.evidence,
        Evidence {
            pods_created: 2,
            binds: 2,
            full_nodes: 1,
            growths_judged: 2,
            takeovers: 0,
            fenced_writes: 0,
            ordinals_judged: 0,
        }
    );
}

#[test]
fn a_pod_bound_again_to_another_node_is_caught_and_the_same_node_again_is_not() {
    let mut record = Record::default();
    record
        .node("n1-0", 5)
        .node("n2-0", 5)
        .replica_set("rs", 1, None)
        .pod("p", "rs", Some("n1-0"))
        .pod("p", "rs", Some("n1-0"));
    assert_eq!(record.check().violations, vec![]);
    record.pod("p", "rs", Some("n2-0"));
    let judged = record.check();
    assert_eq!(invariants(&judged), vec!["bound once"]);
    assert!(
        judged.violations[0]
            .detail
            .contains("was bound to n1-0 at revision 4, then to n2-0"),
        "{:?}",
        judged.violations
    );
}

#[test]
fn a_node_given_more_pods_than_it_offers_is_caught_once_while_over() {
    let mut record = Record::default();
    record
        .node("n1-0", 1)
        .replica_set("rs", 3, None)
        .pod("a", "rs", Some("n1-0"))
        .pod("b", "rs", Some("n1-0"))
        .pod("c", "rs", Some("n1-0"));
    let judged = record.check();
    assert_eq!(invariants(&judged), vec!["allocatable"]);
    assert!(
        judged.violations[0].detail.contains("pods 2 of 1"),
        "{:?}",
        judged.violations
    );
    // Finished pods free their place.
    let mut record = Record::default();
    let mut done = pod("a", "rs", Some("n1-0"));
    done["status"]["phase"] = json!("Succeeded");
    record
        .node("n1-0", 1)
        .replica_set("rs", 1, None)
        .put("/registry/pods/chaos/a", done)
        .pod("b", "rs", Some("n1-0"));
    assert_eq!(record.check().violations, vec![]);
}

#[test]
fn cpu_beyond_the_node_is_caught_counting_init_containers_and_overhead() {
    let mut record = Record::default();
    let mut big = pod("big", "rs", Some("n1-0"));
    big["spec"]["initContainers"] = json!([{"resources": {"requests": {"cpu": "1700m"}}}]);
    big["spec"]["overhead"] = json!({"cpu": "100m"});
    record
        .node("n1-0", 10)
        .replica_set("rs", 2, None)
        .put("/registry/pods/chaos/big", big)
        .pod("small", "rs", Some("n1-0"));
    let judged = record.check();
    assert_eq!(invariants(&judged), vec!["allocatable"]);
    assert!(
        judged.violations[0]
            .detail
            .contains("cpu (millis) 2050 of 2000"),
        "{:?}",
        judged.violations
    );
}

#[test]
fn a_replica_set_growing_past_its_replicas_is_caught_but_a_slow_scale_down_is_not() {
    let mut record = Record::default();
    record
        .replica_set("rs", 2, None)
        .pod("a", "rs", None)
        .pod("b", "rs", None);
    // Scaled down to 1: two pods stay until the controller deletes one, which is fine.
    record.replica_set("rs", 1, None);
    assert_eq!(record.check().violations, vec![]);
    // Scaled to 0 now: a pod made on the view before (1) would still be within bounds,
    // but a third pod is more than either value.
    record.replica_set("rs", 0, None).pod("c", "rs", None);
    let judged = record.check();
    assert_eq!(invariants(&judged), vec!["ReplicaSet"]);
    assert!(
        judged.violations[0]
            .detail
            .contains("chaos/rs has 3 active pods, more than 1"),
        "{:?}",
        judged.violations
    );
}

#[test]
fn pods_being_deleted_do_not_count_and_the_previous_replicas_are_allowed() {
    let mut record = Record::default();
    let mut leaving = pod("a", "rs", None);
    leaving["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    record
        .replica_set("rs", 1, None)
        .put("/registry/pods/chaos/a", leaving)
        .pod("b", "rs", None)
        .replica_set("rs", 3, None)
        .pod("c", "rs", None)
        // Down to 2 from 3: a third pod, made on the view of 3, is still within bounds.
        .replica_set("rs", 2, None)
        .delete("/registry/pods/chaos/a")
        .pod("e", "rs", None);
    assert_eq!(record.check().violations, vec![]);
}

#[test]
fn a_deployment_is_judged_on_what_its_replica_sets_ask_for_with_its_surge() {
    let mut record = Record::default();
    record
        .deployment("web", 2, json!(1))
        .replica_set("web-old", 2, Some("web"))
        .replica_set("web-new", 1, Some("web"))
        .pod("o1", "web-old", None)
        .pod("o2", "web-old", None)
        .pod("n1", "web-new", None);
    assert_eq!(record.check().violations, vec![], "2 + maxSurge 1 = 3");
    // The old one scaled down, the new one up: its pod may come before the old one goes.
    record
        .replica_set("web-old", 1, Some("web"))
        .replica_set("web-new", 2, Some("web"))
        .pod("n2", "web-new", None);
    assert_eq!(
        record.check().violations,
        vec![],
        "3 asked, 4 pods for a moment"
    );
    record.replica_set("web-new", 3, Some("web"));
    let judged = record.check();
    assert_eq!(invariants(&judged), vec!["Deployment"]);
    assert!(
        judged.violations[0]
            .detail
            .contains("chaos/web's ReplicaSets ask for 4 pods, more than 3"),
        "{:?}",
        judged.violations
    );
}

#[test]
fn a_deployments_replica_set_is_judged_against_its_own_replicas_too() {
    let mut record = Record::default();
    record
        .deployment("web", 2, json!(1))
        .replica_set("web-new", 2, Some("web"))
        .pod("n1", "web-new", None)
        .pod("n2", "web-new", None)
        .pod("n3", "web-new", None);
    assert_eq!(invariants(&record.check()), vec!["ReplicaSet"]);
}

#[test]
fn an_adopted_orphan_is_no_growth() {
    let mut record = Record::default();
    let mut orphan = pod("o", "rs", None);
    orphan["metadata"]["ownerReferences"] = json!([]);
    record
        .replica_set("rs", 1, None)
        .pod("a", "rs", None)
        .put("/registry/pods/chaos/o", orphan)
        .pod("o", "rs", None);
    assert_eq!(record.check().violations, vec![]);
}

#[test]
fn a_surge_in_percent_rounds_up_and_recreate_has_none() {
    assert_eq!(resolve_surge(&json!("25%"), 3), 1);
    assert_eq!(resolve_surge(&json!("50%"), 4), 2);
    assert_eq!(resolve_surge(&json!(2), 4), 2);
    assert_eq!(resolve_surge(&json!("0%"), 4), 0);
    let recreate = json!({"metadata": {"name": "d", "uid": "d"},
                          "spec": {"replicas": 3, "strategy": {"type": "Recreate"}}});
    assert_eq!(Owner::of(&recreate, None).bound(true), 3);
    let defaulted = json!({"metadata": {"name": "d", "uid": "d"}, "spec": {"replicas": 4}});
    assert_eq!(Owner::of(&defaulted, None).bound(true), 5);
}

#[test]
fn a_leader_lease_going_to_another_holder_is_a_takeover_and_a_renewal_is_not() {
    let lease = |holder: &str| json!({"spec": {"holderIdentity": holder}});
    let mut record = Record::default();
    record
        .put(
            "/registry/leases/kube-system/rudder-scheduler",
            lease("m1_a"),
        )
        .put(
            "/registry/leases/kube-system/rudder-scheduler",
            lease("m1_a"),
        )
        .put("/registry/leases/kube-system/rudder-scheduler", lease(""))
        .put(
            "/registry/leases/kube-system/rudder-scheduler",
            lease("m2_b"),
        )
        .put(
            "/registry/leases/kube-system/rudder-controller-manager",
            lease("m2_b"),
        )
        .put("/registry/leases/kube-node-lease/n1-0", lease("n1-0"))
        .put("/registry/leases/kube-node-lease/n1-0", lease("n1-1"));
    assert_eq!(record.check().evidence.takeovers, 1);
}

#[test]
fn keys_outside_the_judged_kinds_are_ignored() {
    let mut record = Record::default();
    record
        .put(
            "/registry/leases/kube-system/x",
            json!({"spec": {"holderIdentity": "a"}}),
        )
        .put(
            "/registry/leases/kube-system/x",
            json!({"spec": {"holderIdentity": "b"}}),
        )
        .put("chaos/k1", json!("v"))
        .put("/registry/events/chaos/e", json!({}));
    assert_eq!(record.check(), Judged::default());
}

#[test]
fn fenced_writes_are_read_from_a_masters_log() {
    let log = "2026-12-06T14:36:53.7Z DEBUG rudder::fenced: fenced write landed \
               lease=kube-system/rudder-scheduler holder=m1_ab-12 epoch=3 revision=1234\n\
               2026-12-06T14:36:53.8Z  INFO rudder_raftstore::server: member started\n\
               2026-12-06T14:36:53.9Z DEBUG rudder::fenced: fenced write landed lease=x/y\n";
    assert_eq!(
        fenced_writes(log),
        vec![FencedWrite {
            lease: "kube-system/rudder-scheduler".into(),
            holder: "m1_ab-12".into(),
            epoch: 3,
            revision: 1234,
        }]
    );
}

#[test]
fn a_write_under_an_old_epoch_or_another_holder_is_caught() {
    let lease = |holder: &str, epoch: i64| json!({"spec": {"holderIdentity": holder, "leaseTransitions": epoch}});
    let key = "/registry/leases/kube-system/rudder-controller-manager";
    let write = |holder: &str, epoch: i64, revision: i64| FencedWrite {
        lease: "kube-system/rudder-controller-manager".into(),
        holder: holder.into(),
        epoch,
        revision,
    };
    let mut record = Record::default();
    record
        .put(key, lease("m1_a", 1))
        .put("/registry/pods/chaos/x", json!({}))
        .put(key, lease("m2_b", 2))
        .put("/registry/pods/chaos/y", json!({}));
    record.fenced = vec![
        write("m1_a", 1, 2),
        write("m2_b", 2, 4),
        write("m2_b", 2, 3),
    ];
    let judged = record.check();
    assert_eq!(judged.violations, vec![], "each held as its fence said");
    assert_eq!(judged.evidence.fenced_writes, 3);
    // The deposed holder's write after the takeover, and a write before any lease.
    record.fenced = vec![write("m1_a", 1, 4), write("m1_a", 1, 0)];
    let judged = record.check();
    assert_eq!(invariants(&judged), vec!["fenced", "fenced"]);
    assert!(
        judged.violations[0].detail.contains(
            "by m1_a at epoch 1 landed while the lease was held by \"m2_b\" at epoch 2 since \
             revision 3"
        ),
        "{:?}",
        judged.violations
    );
    assert!(judged.violations[1].detail.ends_with("not there"));
}

#[test]
fn a_fenced_write_line_still_being_written_is_not_read() {
    let whole =
        "x DEBUG rudder::fenced: fenced write landed lease=a/b holder=h epoch=1 revision=1234\n";
    let cut = format!(
        "{whole}x DEBUG rudder::fenced: fenced write landed lease=a/b holder=h epoch=1 revision=12"
    );
    assert_eq!(fenced_writes(&cut).len(), 1);
    assert_eq!(fenced_writes(&cut)[0].revision, 1234);
}

/// A pod of StatefulSet `set` named `name`, labelled with `index` when given.
fn stateful_pod(name: &str, set: &str, index: Option<&str>) -> Value {
    let labels = match index {
        Some(index) => json!({"apps.kubernetes.io/pod-index": index}),
        None => json!({}),
    };
    json!({
        "metadata": {"name": name, "namespace": "chaos", "uid": format!("uid-{name}"),
                     "labels": labels,
                     "ownerReferences": [{"kind": "StatefulSet", "name": set, "uid": set,
                                          "controller": true}]},
        "spec": {"containers": [{"name": "app"}]},
    })
}

#[test]
fn two_pods_of_a_stateful_set_never_hold_one_ordinal() {
    let mut record = Record::default();
    record
        .put(
            "/registry/pods/chaos/db-0",
            stateful_pod("db-0", "db", Some("0")),
        )
        .put(
            "/registry/pods/chaos/db-1",
            stateful_pod("db-1", "db", None),
        )
        .delete("/registry/pods/chaos/db-0")
        // The replacement, once its predecessor is gone; another set's ordinal 1.
        .put(
            "/registry/pods/chaos/db-0",
            stateful_pod("db-0", "db", Some("0")),
        )
        .put(
            "/registry/pods/chaos/web-1",
            stateful_pod("web-1", "web", Some("1")),
        );
    let clean = record.check();
    assert_eq!(invariants(&clean), Vec::<&str>::new(), "{clean:?}");
    assert_eq!(clean.evidence.ordinals_judged, 4);

    // A pod named for one ordinal but labelled with a taken one.
    record.put(
        "/registry/pods/chaos/db-7",
        stateful_pod("db-7", "db", Some("1")),
    );
    let judged = record.check();
    assert_eq!(invariants(&judged), ["StatefulSet"], "{judged:?}");
    assert!(
        judged.violations[0]
            .detail
            .contains("ordinal 1 of StatefulSet db"),
        "{judged:?}"
    );
}
