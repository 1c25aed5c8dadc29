//! The API server contract (DESIGN.md §4) against a three-master control plane in-process:
//! optimistic concurrency, binding, fencing, graceful deletion, namespaces, owner references,
//! paged lists and watches from their revision, and the Priority admission of new pods.

mod common;

use std::time::Duration;

use common::{bind, create_raw, list, list_page, names, next_event, open_watch, update_raw, Plane};
use rudder_proto::api as pb;
use rudder_proto::client::ClientError;
use serde_json::{json, Value};

fn config_map(name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": name, "labels": labels },
        "data": { "k": "v" }
    })
}

fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "labels": { "app": "web" } },
        "spec": { "containers": [{ "name": "app", "image": "busybox" }] }
    })
}

fn reason(error: &ClientError) -> &str {
    error.reason()
}

/// Waits (bounded) until `condition` holds, checking after every change it could depend on
/// would be too elaborate for these few cases: a short poll with a deadline.
async fn eventually<F, Fut>(what: &str, condition: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn objects_get_server_metadata_and_defaults_and_updates_are_compare_and_swap() {
    let plane = Plane::start(3).await;
    let created = plane
        .client
        .create_object("po", "default", &pod("web-1"))
        .await
        .unwrap();
    let meta = &created["metadata"];
    assert!(!meta["uid"].as_str().unwrap().is_empty());
    assert!(meta["creationTimestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(meta["namespace"], "default");
    assert_eq!(created["spec"]["restartPolicy"], "Always");
    assert_eq!(
        created["spec"]["containers"][0]["imagePullPolicy"],
        "Always"
    );
    assert_eq!(created["status"]["phase"], "Pending");
    let version: i64 = meta["resourceVersion"].as_str().unwrap().parse().unwrap();

    // generateName gives a fresh name; the same name twice is AlreadyExists.
    let generated = plane
        .client
        .create_object(
            "pods",
            "default",
            &json!({ "apiVersion": "v1", "kind": "Pod",
            "metadata": { "generateName": "kubia-" },
            "spec": { "containers": [{ "name": "c", "image": "luksa/kubia" }] } }),
        )
        .await
        .unwrap();
    assert!(generated["metadata"]["name"]
        .as_str()
        .unwrap()
        .starts_with("kubia-"));
    let again = plane
        .client
        .create_object("pods", "default", &pod("web-1"))
        .await
        .unwrap_err();
    assert_eq!(reason(&again), "AlreadyExists");

    // Two writers read the same version; the second one's update is a conflict.
    let mut first = created.clone();
    first["metadata"]["labels"]["tier"] = json!("front");
    let updated = plane
        .client
        .update_object("pods", "default", "web-1", &first, false)
        .await
        .unwrap();
    assert!(
        updated["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > version
    );
    let mut second = created.clone();
    second["metadata"]["labels"]["tier"] = json!("back");
    let stale = plane
        .client
        .update_object("pods", "default", "web-1", &second, false)
        .await
        .unwrap_err();
    assert_eq!(reason(&stale), "Conflict", "{stale}");
    assert!(stale.to_string().contains("the object has been modified"));
    assert_eq!(
        plane
            .client
            .get_object("pods", "default", "web-1")
            .await
            .unwrap()["metadata"]["labels"]["tier"],
        "front"
    );

    // Status changes only through update-status, which leaves the spec alone.
    let mut status = updated.clone();
    status["status"] = json!({ "phase": "Running", "podIP": "10.1.0.2" });
    status["spec"]["activeDeadlineSeconds"] = json!(5);
    let with_status = update_raw(
        &plane.client,
        "pods",
        "default",
        "web-1",
        status.to_string().as_bytes(),
        true,
        None,
    )
    .await
    .unwrap();
    assert_eq!(with_status["status"]["phase"], "Running");
    assert!(with_status["spec"]["activeDeadlineSeconds"].is_null());

    // A merge patch changes what it names; an unchanged write does not bump the version.
    let patched = plane
        .client
        .patch_object(
            "pods",
            "default",
            "web-1",
            &json!({ "metadata": { "labels": { "tier": null, "v": "2" } } }),
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        patched["metadata"]["labels"],
        json!({ "app": "web", "v": "2" })
    );
    // Deletion is the delete verb's: a patch cannot set a deletionTimestamp.
    let sneaky = json!({ "metadata": { "deletionTimestamp": "2020-01-01T00:00:00Z" } });
    let kept = plane
        .client
        .patch_object("pods", "default", "web-1", &sneaky, false)
        .await
        .unwrap();
    assert!(kept["metadata"]["deletionTimestamp"].is_null());
    let same = plane
        .client
        .patch_object(
            "pods",
            "default",
            "web-1",
            &json!({ "metadata": { "labels": { "v": "2" } } }),
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        same["metadata"]["resourceVersion"],
        patched["metadata"]["resourceVersion"]
    );
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn binding_moves_a_pod_only_from_unassigned_and_never_while_it_is_deleted() {
    let plane = Plane::start(3).await;
    plane
        .client
        .create_object("pods", "default", &pod("p"))
        .await
        .unwrap();
    // Two schedulers race: exactly one bind wins, the other is a conflict.
    let (a, b) = tokio::join!(
        bind(&plane.client, "default", "p", "node-a"),
        bind(&plane.client, "default", "p", "node-b")
    );
    let winners = [a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count();
    assert_eq!(winners, 1, "a: {a:?}\nb: {b:?}");
    let loser = a.err().or(b.err()).unwrap();
    assert_eq!(reason(&loser), "Conflict");
    assert!(loser.to_string().contains("already assigned"), "{loser}");
    let bound = plane
        .client
        .get_object("pods", "default", "p")
        .await
        .unwrap();
    let node = bound["spec"]["nodeName"].as_str().unwrap().to_string();
    assert!(node == "node-a" || node == "node-b");
    assert_eq!(bound["status"]["conditions"][0]["type"], "PodScheduled");

    // nodeName cannot be changed by an update either.
    let mut moved = bound.clone();
    moved["spec"]["nodeName"] = json!("node-c");
    assert_eq!(
        reason(
            &plane
                .client
                .update_object("pods", "default", "p", &moved, false)
                .await
                .unwrap_err()
        ),
        "Invalid"
    );

    // A pod being deleted is never bound.
    plane
        .client
        .create_object("pods", "default", &pod("q"))
        .await
        .unwrap();
    let mut held = plane
        .client
        .get_object("pods", "default", "q")
        .await
        .unwrap();
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    plane
        .client
        .update_object("pods", "default", "q", &held, false)
        .await
        .unwrap();
    plane
        .client
        .delete_object(pb::DeleteRequest {
            resource: "pods".into(),
            namespace: "default".into(),
            name: "q".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let refused = bind(&plane.client, "default", "q", "node-a")
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "Forbidden", "{refused}");
    assert!(plane
        .client
        .get_object("pods", "default", "q")
        .await
        .unwrap()["spec"]["nodeName"]
        .is_null());
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deposed_leaders_fenced_write_is_refused_and_writes_nothing() {
    let plane = Plane::start(3).await;
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        .to_string();
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": { "name": "scheduler", "namespace": "kube-system" },
        "spec": { "holderIdentity": "m1", "leaseDurationSeconds": 15, "leaseTransitions": 1,
                  "acquireTime": now, "renewTime": now }
    });
    plane
        .client
        .create_object("leases", "kube-system", &lease)
        .await
        .unwrap();
    let fence = |holder: &str, epoch: i32| pb::Fence {
        lease_namespace: "kube-system".into(),
        lease_name: "scheduler".into(),
        holder: holder.into(),
        epoch,
    };
    // The holder writes under its fence.
    let by_m1 = pod("by-m1").to_string();
    create_raw(
        &plane.client,
        "pods",
        "default",
        by_m1.as_bytes(),
        Some(fence("m1", 1)),
    )
    .await
    .unwrap();
    // m2 takes the lease over (a new epoch); m1 still believes it leads.
    let mut taken = plane
        .client
        .get_object("leases", "kube-system", "scheduler")
        .await
        .unwrap();
    taken["spec"]["holderIdentity"] = json!("m2");
    taken["spec"]["leaseTransitions"] = json!(2);
    plane
        .client
        .update_object("leases", "kube-system", "scheduler", &taken, false)
        .await
        .unwrap();
    let before = plane.revision().await;
    let refused = create_raw(
        &plane.client,
        "pods",
        "default",
        pod("by-deposed-m1").to_string().as_bytes(),
        Some(fence("m1", 1)),
    )
    .await
    .unwrap_err();
    assert_eq!(reason(&refused), "Forbidden", "{refused}");
    assert!(
        refused.to_string().contains("fenced write refused"),
        "{refused}"
    );
    let bind = plane
        .client
        .call(|mut c| async move {
            c.bind(pb::BindRequest {
                namespace: "default".into(),
                name: "by-m1".into(),
                node_name: "n1".into(),
                fence: Some(fence("m1", 1)),
                uid: String::new(),
            })
            .await
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&bind), "Forbidden");
    assert_eq!(plane.revision().await, before, "a fenced write landed");
    // The new holder's write goes through.
    let by_m2 = pod("by-m2").to_string();
    create_raw(
        &plane.client,
        "pods",
        "default",
        by_m2.as_bytes(),
        Some(fence("m2", 2)),
    )
    .await
    .unwrap();
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_deletion_marks_bound_pods_until_the_kubelet_confirms() {
    let plane = Plane::start(3).await;
    plane
        .client
        .create_object("pods", "default", &pod("bound"))
        .await
        .unwrap();
    bind(&plane.client, "default", "bound", "n1").await.unwrap();
    let request = |grace: Option<i64>| pb::DeleteRequest {
        resource: "pods".into(),
        namespace: "default".into(),
        name: "bound".into(),
        grace_period_seconds: grace,
        ..Default::default()
    };
    let marked = plane.client.delete_object(request(None)).await.unwrap();
    assert!(!marked.deleted);
    let marked_pod: Value = plane
        .client
        .get_object("pods", "default", "bound")
        .await
        .unwrap();
    assert_eq!(marked_pod["metadata"]["deletionGracePeriodSeconds"], 30);
    assert!(marked_pod["metadata"]["deletionTimestamp"].is_string());
    // The kubelet confirms with grace period 0.
    assert!(
        plane
            .client
            .delete_object(request(Some(0)))
            .await
            .unwrap()
            .deleted
    );
    assert!(plane
        .client
        .get_object("pods", "default", "bound")
        .await
        .unwrap_err()
        .is_not_found());
    // An unscheduled pod goes at once.
    plane
        .client
        .create_object("pods", "default", &pod("unbound"))
        .await
        .unwrap();
    let gone = plane
        .client
        .delete_object(pb::DeleteRequest {
            resource: "pods".into(),
            namespace: "default".into(),
            name: "unbound".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(gone.deleted);
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_namespace_terminates_until_it_is_finalized() {
    let plane = Plane::start(3).await;
    let created = plane
        .client
        .create_object(
            "ns",
            "",
            &json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "team" } }),
        )
        .await
        .unwrap();
    assert_eq!(created["spec"]["finalizers"], json!(["kubernetes"]));
    plane
        .client
        .create_object("cm", "team", &config_map("settings", json!({})))
        .await
        .unwrap();
    let deleted = plane
        .client
        .delete_object(pb::DeleteRequest {
            resource: "namespaces".into(),
            name: "team".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!deleted.deleted, "a namespace empties before it goes");
    let terminating: Value = serde_json::from_slice(&deleted.json).unwrap();
    assert_eq!(terminating["status"]["phase"], "Terminating");
    // Emptying it is the namespace controller's (rudder-actors): the API keeps what is in it
    // and refuses anything new.
    assert_eq!(
        names(&list(&plane.client, "cm", "team", "", "").await.unwrap()),
        ["settings"]
    );
    let refused = plane
        .client
        .create_object("cm", "team", &config_map("late", json!({})))
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "Forbidden", "{refused}");
    // Deleting it again changes nothing while it holds its finalizer.
    let again = plane
        .client
        .delete_object(pb::DeleteRequest {
            resource: "namespaces".into(),
            name: "team".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!again.deleted);
    // An update cannot drop the finalizer; only the finalize subresource can.
    let mut updated = terminating.clone();
    updated["spec"]["finalizers"] = json!([]);
    let kept = plane
        .client
        .update_object("namespaces", "", "team", &updated, false)
        .await
        .unwrap();
    assert_eq!(kept["spec"]["finalizers"], json!(["kubernetes"]));
    let mut stale = kept.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    stale["spec"]["finalizers"] = json!([]);
    let conflict = plane.client.finalize_namespace(&stale).await.unwrap_err();
    assert_eq!(reason(&conflict), "Conflict", "{conflict}");
    let mut finalized = kept.clone();
    finalized["spec"]["finalizers"] = json!([]);
    plane.client.finalize_namespace(&finalized).await.unwrap();
    assert!(plane
        .client
        .get_object("namespaces", "", "team")
        .await
        .unwrap_err()
        .is_not_found());
    let wrong_kind = plane
        .client
        .finalize_namespace(&json!({ "metadata": { "name": "default" }, "spec": {} }))
        .await;
    assert!(
        wrong_kind.is_ok(),
        "finalizing an active namespace only writes its finalizers"
    );
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn owner_references_are_stored_and_deletion_policies_become_finalizers() {
    let plane = Plane::start(3).await;
    let rs = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": { "name": "web" },
        "spec": { "replicas": 2, "selector": { "matchLabels": { "app": "web" } },
                  "template": { "metadata": { "labels": { "app": "web" } },
                                "spec": { "containers": [{ "name": "c", "image": "i" }] } } }
    });
    let owner = |rs: &Value| {
        json!([{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
        "uid": rs["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true }])
    };
    let first = plane
        .client
        .create_object("rs", "default", &rs)
        .await
        .unwrap();
    let mut owned = pod("web-a");
    owned["metadata"]["ownerReferences"] = owner(&first);
    plane
        .client
        .create_object("pods", "default", &owned)
        .await
        .unwrap();
    let listed = list(&plane.client, "pods", "default", "app=web", "")
        .await
        .unwrap();
    let stored: Value = serde_json::from_slice(&listed.items[0]).unwrap();
    assert_eq!(
        stored["metadata"]["ownerReferences"][0]["uid"],
        first["metadata"]["uid"]
    );
    let delete = |propagation: &str| pb::DeleteRequest {
        resource: "rs".into(),
        namespace: "default".into(),
        name: "web".into(),
        propagation_policy: propagation.into(),
        ..Default::default()
    };
    // Background (the default): the owner goes at once; its dependents are the garbage
    // collector's (rudder-actors), so the request itself leaves them.
    let gone = plane.client.delete_object(delete("")).await.unwrap();
    assert!(gone.deleted);
    assert!(plane
        .client
        .get_object("pods", "default", "web-a")
        .await
        .is_ok());

    // Foreground and Orphan: the owner stays, marked, holding the policy's finalizer for
    // the collector; removing the finalizer completes the deletion.
    for (propagation, finalizer) in [("Foreground", "foregroundDeletion"), ("Orphan", "orphan")] {
        plane
            .client
            .create_object("rs", "default", &rs)
            .await
            .unwrap();
        let marked = plane
            .client
            .delete_object(delete(propagation))
            .await
            .unwrap();
        assert!(!marked.deleted, "{propagation}");
        let marked: Value = serde_json::from_slice(&marked.json).unwrap();
        assert_eq!(marked["metadata"]["finalizers"], json!([finalizer]));
        assert!(marked["metadata"]["deletionTimestamp"].is_string());
        plane
            .client
            .patch_object(
                "rs",
                "default",
                "web",
                &json!({ "metadata": { "finalizers": null } }),
                false,
            )
            .await
            .unwrap();
        assert!(plane
            .client
            .get_object("rs", "default", "web")
            .await
            .unwrap_err()
            .is_not_found());
    }
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paged_lists_are_one_snapshot_and_a_watch_from_their_revision_misses_nothing() {
    let plane = Plane::start(3).await;
    for i in 0..25 {
        let labels = json!({ "parity": if i % 2 == 0 { "even" } else { "odd" } });
        plane
            .client
            .create_object("cm", "default", &config_map(&format!("c{i:02}"), labels))
            .await
            .unwrap();
    }
    let first = list_page(&plane.client, "cm", "default", "", "", 10, "")
        .await
        .unwrap();
    assert_eq!(first.items.len(), 10);
    assert_eq!(first.remaining_item_count, 15);
    // Writes between pages do not show up in later pages of the same list.
    plane
        .client
        .create_object(
            "cm",
            "default",
            &config_map("c99", json!({ "parity": "odd" })),
        )
        .await
        .unwrap();
    let mut all = names(&first);
    let mut token = first.continue_token.clone();
    while !token.is_empty() {
        let page = list_page(&plane.client, "cm", "default", "", "", 10, &token)
            .await
            .unwrap();
        assert_eq!(page.resource_version, first.resource_version);
        all.extend(names(&page));
        token = page.continue_token;
    }
    let expected: Vec<String> = (0..25).map(|i| format!("c{i:02}")).collect();
    assert_eq!(all, expected);
    // Selectors filter across pages.
    let odd = list_page(&plane.client, "cm", "default", "parity=odd", "", 5, "")
        .await
        .unwrap();
    assert_eq!(odd.items.len(), 5);
    let named = list(&plane.client, "cm", "default", "", "metadata.name=c03")
        .await
        .unwrap();
    assert_eq!(names(&named), ["c03"]);

    // A watch from the list's revision sees c99, then later changes, in order.
    let mut watch = open_watch(
        &plane.client,
        pb::WatchRequest {
            resource: "configmaps".into(),
            namespace: "default".into(),
            label_selector: "parity=odd".into(),
            resource_version: first.resource_version.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (kind, object) = next_event(&mut watch).await;
    assert_eq!(
        (kind.as_str(), object["metadata"]["name"].as_str()),
        ("ADDED", Some("c99"))
    );
    // Relabelling out of the selector is a DELETED for this watch; back in, an ADDED.
    plane
        .client
        .patch_object(
            "cm",
            "default",
            "c01",
            &json!({ "metadata": { "labels": { "parity": "even" } } }),
            false,
        )
        .await
        .unwrap();
    let (kind, object) = next_event(&mut watch).await;
    assert_eq!(
        (kind.as_str(), object["metadata"]["name"].as_str()),
        ("DELETED", Some("c01"))
    );
    plane
        .client
        .patch_object(
            "cm",
            "default",
            "c01",
            &json!({ "metadata": { "labels": { "parity": "odd" } } }),
            false,
        )
        .await
        .unwrap();
    let (kind, _) = next_event(&mut watch).await;
    assert_eq!(kind, "ADDED");
    plane
        .client
        .delete_object(pb::DeleteRequest {
            resource: "cm".into(),
            namespace: "default".into(),
            name: "c03".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (kind, object) = next_event(&mut watch).await;
    assert_eq!(
        (kind.as_str(), object["metadata"]["name"].as_str()),
        ("DELETED", Some("c03"))
    );

    // Bookmarks carry the revision reached while nothing matches.
    let mut quiet = open_watch(
        &plane.client,
        pb::WatchRequest {
            resource: "pods".into(),
            namespace: "default".into(),
            resource_version: first.resource_version.clone(),
            allow_bookmarks: true,
            bookmark_interval_ms: 100,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (kind, object) = next_event(&mut quiet).await;
    assert_eq!(kind, "BOOKMARK");
    let reached: i64 = object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(reached >= first.resource_version.parse::<i64>().unwrap());
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_or_continue_from_a_compacted_revision_is_expired() {
    let plane = Plane::start(3).await;
    for i in 0..5 {
        plane
            .client
            .create_object("cm", "default", &config_map(&format!("c{i}"), json!({})))
            .await
            .unwrap();
    }
    let page = list_page(&plane.client, "cm", "default", "", "", 2, "")
        .await
        .unwrap();
    let old = page.resource_version.clone();
    for i in 5..8 {
        plane
            .client
            .create_object("cm", "default", &config_map(&format!("c{i}"), json!({})))
            .await
            .unwrap();
    }
    let now = plane.revision().await;
    plane.cluster.store(0).compact(now).await.unwrap();
    // Watches read a master's local state: let every master apply the compaction first.
    plane.sync().await;
    let mut watch = open_watch(
        &plane.client,
        pb::WatchRequest {
            resource: "cm".into(),
            namespace: "default".into(),
            resource_version: old.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (kind, status) = next_event(&mut watch).await;
    assert_eq!(kind, "ERROR");
    assert_eq!(status["code"], 410);
    assert_eq!(status["reason"], "Expired");
    let expired = list_page(
        &plane.client,
        "cm",
        "default",
        "",
        "",
        2,
        &page.continue_token,
    )
    .await
    .unwrap_err();
    assert_eq!(reason(&expired), "Expired", "{expired}");
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_master_serves_the_api_and_writes_survive_the_loss_of_one() {
    let mut plane = Plane::start(3).await;
    // Stop one master (possibly the leader): the failover client goes on with the others.
    plane.cluster.stop(0).await;
    for i in 0..5 {
        plane
            .client
            .create_object(
                "cm",
                "default",
                &config_map(&format!("after-{i}"), json!({})),
            )
            .await
            .unwrap_or_else(|e| panic!("create after-{i}: {e:?}"));
    }
    assert_eq!(
        names(&list(&plane.client, "cm", "default", "", "").await.unwrap()).len(),
        5
    );
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_on_a_master_that_lost_its_quorum_ends_so_the_client_can_move() {
    let mut plane = Plane::start(3).await;
    let alone = plane.cluster.member(2).client_addr.to_string();
    let client = rudder_proto::client::ApiClient::new(vec![alone]);
    let mut watch = client
        .open(|mut c| async move {
            c.watch(pb::WatchRequest {
                resource: "configmaps".into(),
                namespace: "default".into(),
                allow_bookmarks: true,
                bookmark_interval_ms: 200,
                ..Default::default()
            })
            .await
        })
        .await
        .unwrap();
    // While the quorum holds, the watch sends bookmarks.
    let (kind, _) = next_event(&mut watch).await;
    assert_eq!(kind, "BOOKMARK");
    for i in 0..2 {
        plane.cluster.stop(i).await;
    }
    // Without a quorum the next bookmark check fails: the watch ends with 503, and a
    // client goes on through another master instead of waiting on a silent stream.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watch never ended"
        );
        let (kind, object) = next_event(&mut watch).await;
        if kind == "ERROR" {
            assert_eq!(object["code"], 503, "{object}");
            break;
        }
        assert_eq!(kind, "BOOKMARK");
    }
    plane.shutdown().await;
}

/// A pod in `default` named `name` with `spec` merged into the usual one.
fn pod_with(name: &str, spec: Value) -> Value {
    let mut pod = pod(name);
    if let Value::Object(fields) = spec {
        for (field, value) in fields {
            pod["spec"][field] = value;
        }
    }
    pod
}

fn priority_class(name: &str, value: i64, global_default: bool) -> Value {
    json!({
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": { "name": name },
        "value": value, "globalDefault": global_default
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_pods_take_their_priority_from_their_priority_class() {
    let plane = Plane::start(1).await;
    eventually("the system PriorityClasses are created", || async {
        plane
            .client
            .get_object("priorityclasses", "", "system-node-critical")
            .await
            .is_ok()
            && plane
                .client
                .get_object("pc", "", "system-cluster-critical")
                .await
                .is_ok()
    })
    .await;
    let client = &plane.client;
    let node_critical = client
        .get_object("pc", "", "system-node-critical")
        .await
        .unwrap();
    assert_eq!(node_critical["value"], 2_000_001_000);
    assert_eq!(node_critical["preemptionPolicy"], "PreemptLowerPriority");
    let kept = client
        .delete_object(pb::DeleteRequest {
            resource: "priorityclasses".into(),
            name: "system-node-critical".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&kept), "Forbidden", "{kept}");

    // A built-in class; none at all (no default yet); an unknown one.
    let critical = json!({ "priorityClassName": "system-node-critical" });
    let created = client
        .create_object("pods", "default", &pod_with("critical", critical))
        .await
        .unwrap();
    assert_eq!(created["spec"]["priority"], 2_000_001_000);
    assert_eq!(created["spec"]["preemptionPolicy"], "PreemptLowerPriority");
    let plain = client
        .create_object("pods", "default", &pod("plain"))
        .await
        .unwrap();
    assert_eq!(plain["spec"]["priority"], 0);
    assert!(plain["spec"]["priorityClassName"].is_null());
    let gold = json!({ "priorityClassName": "gold" });
    let refused = client
        .create_object("pods", "default", &pod_with("gold", gold))
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "Forbidden", "{refused}");
    assert!(
        refused
            .to_string()
            .contains("pods \"gold\" is forbidden: no PriorityClass with name gold was found"),
        "{refused}"
    );

    // A user's class: defaulted, and given to the pods that name it.
    let high = client
        .create_object("pc", "", &priority_class("high", 1000, false))
        .await
        .unwrap();
    assert_eq!(high["preemptionPolicy"], "PreemptLowerPriority");
    let named = json!({ "priorityClassName": "high" });
    let web = client
        .create_object("pods", "default", &pod_with("web-high", named))
        .await
        .unwrap();
    assert_eq!(web["spec"]["priority"], 1000);

    // Reserved names and values are refused; a class's value never changes.
    for class in [
        priority_class("system-mine", 10, false),
        priority_class("greedy", 1_000_000_001, false),
    ] {
        let error = client.create_object("pc", "", &class).await.unwrap_err();
        assert_eq!(reason(&error), "Invalid", "{error}");
    }
    let mut revalued = high.clone();
    revalued["value"] = json!(2000);
    let error = client
        .update_object("pc", "", "high", &revalued, false)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("value: Forbidden: may not be changed in an update."),
        "{error}"
    );

    // The global default goes to pods that name no class; a pod may not pick its own number.
    client
        .create_object("pc", "", &priority_class("normal", 100, true))
        .await
        .unwrap();
    let defaulted = client
        .create_object("pods", "default", &pod("defaulted"))
        .await
        .unwrap();
    assert_eq!(defaulted["spec"]["priority"], 100);
    assert_eq!(defaulted["spec"]["priorityClassName"], "normal");
    let own = json!({ "priority": 5 });
    let refused = client
        .create_object("pods", "default", &pod_with("own", own))
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "Forbidden", "{refused}");
    assert!(
        refused.to_string().contains(
            "the integer value of priority (5) must not be provided in pod spec; priority \
             admission controller computed 100 from the given PriorityClass name"
        ),
        "{refused}"
    );

    // An update that leaves the priority out keeps the one the pod was given.
    let mut relabelled = web.clone();
    relabelled["metadata"]["labels"]["tier"] = json!("front");
    if let Some(spec) = relabelled["spec"].as_object_mut() {
        spec.remove("priority");
        spec.remove("preemptionPolicy");
    }
    let updated = client
        .update_object("pods", "default", "web-high", &relabelled, false)
        .await
        .unwrap();
    assert_eq!(updated["spec"]["priority"], 1000);
    assert_eq!(updated["metadata"]["labels"]["tier"], "front");
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_are_written_on_a_lease_that_expires_an_hour_after_their_last_write() {
    let plane = Plane::start(1).await;
    let event = |name: &str| {
        json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": { "name": name, "namespace": "default" },
            "involvedObject": { "kind": "Pod", "name": "web", "namespace": "default" },
            "reason": "Started", "message": "Started container c", "type": "Normal",
            "count": 1
        })
    };
    let store = plane.cluster.store(0);
    let lease_of = |name: &'static str| async move {
        let (_, response) = store
            .range(rudder_raftstore::kv::RangeRequest {
                range: rudder_raftstore::kv::KeyRange::single(
                    format!("/registry/events/default/{name}").into_bytes(),
                ),
                ..Default::default()
            })
            .await
            .unwrap();
        response.kvs[0].lease
    };
    plane
        .client
        .create_object("events", "default", &event("a"))
        .await
        .unwrap();
    plane
        .client
        .create_object("events", "default", &event("b"))
        .await
        .unwrap();
    let lease = lease_of("a").await;
    assert_ne!(lease, 0, "an Event is written on a lease");
    assert_eq!(
        lease_of("b").await,
        lease,
        "Events written together share one"
    );
    let (_, alive) = store.lease_time_to_live(lease, false).await.unwrap();
    assert!(
        (3600..=3660).contains(&alive.ttl),
        "the lease outlives the hour by at most a minute: {alive:?}"
    );
    // A repeat counted by patch keeps it on a lease (its hour starts again).
    plane
        .client
        .patch_object("events", "default", "a", &json!({ "count": 2 }), false)
        .await
        .unwrap();
    assert_ne!(lease_of("a").await, 0);
    // Other kinds are not leased.
    plane
        .client
        .create_object("cm", "default", &config_map("plain", json!({})))
        .await
        .unwrap();
    let (_, response) = store
        .range(rudder_raftstore::kv::RangeRequest {
            range: rudder_raftstore::kv::KeyRange::single(
                b"/registry/configmaps/default/plain".to_vec(),
            ),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(response.kvs[0].lease, 0);
    plane.shutdown().await;
}
