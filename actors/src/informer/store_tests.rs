//! The cache's pure core, table by table: snapshots as differences, stale events, indexes
//! following their objects, selector queries.

use std::collections::BTreeMap;

use rudder_proto::objects::selector::LabelSelector;
use serde_json::json;

use super::*;
use crate::informer::index::{by_owner_uid, pods_by_node, NODE_NAME, OWNER_UID};
use crate::pods::cached::Pod;

/// A pod `namespace/name` with uid `name-uid`, at `revision`, with these labels, on `node`
/// (empty: unbound), owned by `owners` (uids).
fn pod(key: &str, revision: u64, labels: &[(&str, &str)], node: &str, owners: &[&str]) -> Pod {
    let (namespace, name) = key.split_once('/').unwrap_or(("", key));
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    let owners: Vec<_> = owners
        .iter()
        .map(|uid| json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": uid, "uid": uid}))
        .collect();
    let pod = json!({
        "metadata": {
            "namespace": namespace, "name": name, "uid": format!("{name}-uid"),
            "resourceVersion": revision.to_string(), "labels": labels, "ownerReferences": owners
        },
        "spec": {"nodeName": node, "containers": []}
    });
    match serde_json::from_value(pod) {
        Ok(pod) => pod,
        Err(error) => panic!("test pod does not decode: {error}"),
    }
}

fn bare(key: &str, revision: u64) -> Pod {
    pod(key, revision, &[], "", &[])
}

fn store() -> Store<Pod> {
    Store::new(vec![by_owner_uid(), pods_by_node()])
}

/// Events as `added ns/name@rv`, `updated ns/name@old->new`, `deleted ns/name@rv`, `synced`.
fn described(events: &[Event<Pod>]) -> Vec<String> {
    let at = |pod: &Pod| {
        format!(
            "{}@{}",
            ObjectKey::of(&pod.metadata),
            pod.metadata.resource_version.as_deref().unwrap_or("")
        )
    };
    events
        .iter()
        .map(|event| match event {
            Event::Added(pod) => format!("added {}", at(pod)),
            Event::Updated { old, new } => format!(
                "updated {}->{}",
                at(old),
                new.metadata.resource_version.as_deref().unwrap_or("")
            ),
            Event::Deleted(pod) => format!("deleted {}", at(pod)),
            Event::Synced => "synced".to_string(),
        })
        .collect()
}

fn names(pods: &[Arc<Pod>]) -> Vec<String> {
    pods.iter()
        .map(|pod| ObjectKey::of(&pod.metadata).to_string())
        .collect()
}

#[test]
fn a_relist_announces_what_changed_while_away_deletions_included() {
    struct Case {
        name: &'static str,
        before: Vec<Pod>,
        listed: Vec<Pod>,
        expected: &'static [&'static str],
    }
    let mut recreated = bare("a/x", 9);
    recreated.metadata.uid = Some("x-uid-2".into());
    let cases = [
        Case {
            name: "first list",
            before: vec![],
            listed: vec![bare("a/x", 3), bare("a/y", 4)],
            expected: &["added a/x@3", "added a/y@4", "synced"],
        },
        Case {
            name: "unchanged objects are not announced again",
            before: vec![bare("a/x", 3)],
            listed: vec![bare("a/x", 3)],
            expected: &["synced"],
        },
        Case {
            name: "deleted, updated and added while disconnected",
            before: vec![bare("a/x", 3), bare("a/y", 4)],
            listed: vec![bare("a/y", 8), bare("b/z", 7)],
            expected: &["deleted a/x@3", "updated a/y@4->8", "added b/z@7", "synced"],
        },
        Case {
            name: "deleted and created again under the same name",
            before: vec![bare("a/x", 3)],
            listed: vec![recreated],
            expected: &["deleted a/x@3", "added a/x@9", "synced"],
        },
        Case {
            name: "an empty list deletes everything",
            before: vec![bare("a/x", 3), bare("b/y", 4)],
            listed: vec![],
            expected: &["deleted a/x@3", "deleted b/y@4", "synced"],
        },
    ];
    for case in cases {
        let mut store = store();
        store.replace(case.before, 5);
        let events = store.replace(case.listed, 10);
        assert_eq!(described(&events), case.expected, "{}", case.name);
        assert_eq!(store.revision(), Some(10), "{}", case.name);
        assert_eq!(store.resume_from(), Some(10), "{}", case.name);
    }
}

#[test]
fn watch_changes_older_than_the_cache_are_ignored() {
    struct Case {
        name: &'static str,
        change: Change<Pod>,
        expected: &'static [&'static str],
    }
    let cases = [
        Case {
            name: "a newer state updates",
            change: Change::Applied(bare("a/x", 12)),
            expected: &["updated a/x@5->12"],
        },
        Case {
            name: "the same state again is a duplicate",
            change: Change::Applied(bare("a/x", 5)),
            expected: &[],
        },
        Case {
            name: "an older state of a held object is stale",
            change: Change::Applied(bare("a/x", 4)),
            expected: &[],
        },
        Case {
            name: "an object older than the revision seen is stale",
            change: Change::Applied(bare("a/new", 9)),
            expected: &[],
        },
        Case {
            name: "a new object is added",
            change: Change::Applied(bare("a/new", 11)),
            expected: &["added a/new@11"],
        },
        Case {
            name: "a deletion carries the last state",
            change: Change::Deleted(bare("a/x", 13)),
            expected: &["deleted a/x@13"],
        },
        Case {
            name: "a stale deletion is ignored",
            change: Change::Deleted(bare("a/x", 9)),
            expected: &[],
        },
        Case {
            name: "the deletion of an object never held says nothing",
            change: Change::Deleted(bare("a/ghost", 13)),
            expected: &[],
        },
        Case {
            name: "a bookmark says nothing",
            change: Change::Bookmark(20),
            expected: &[],
        },
    ];
    for case in cases {
        let mut store = store();
        store.replace(vec![bare("a/x", 5)], 10);
        let events = store.apply(case.change);
        assert_eq!(described(&events), case.expected, "{}", case.name);
    }
}

#[test]
fn events_and_bookmarks_advance_the_revision_to_resume_from() {
    let mut store = store();
    assert_eq!(store.resume_from(), None, "nothing to resume before a list");
    store.replace(vec![bare("a/x", 5)], 10);
    store.apply(Change::Applied(bare("a/x", 12)));
    assert_eq!(store.resume_from(), Some(12));
    store.apply(Change::Bookmark(30));
    assert_eq!(store.resume_from(), Some(30));
    store.apply(Change::Bookmark(25));
    assert_eq!(
        store.resume_from(),
        Some(30),
        "the revision never goes back"
    );
    store.apply(Change::Expired);
    assert_eq!(
        store.resume_from(),
        None,
        "an expired revision needs a list"
    );
    assert!(store.has_synced(), "a cache stays synced while it relists");
    store.replace(vec![], 40);
    assert_eq!(store.resume_from(), Some(40));
}

#[test]
fn indexes_follow_owner_and_node_changes() {
    let mut store = store();
    assert!(!store.has_synced());
    store.replace(
        vec![
            pod("a/p1", 2, &[], "n1", &["rs1"]),
            pod("a/p2", 3, &[], "n1", &["rs1", "rs2"]),
            pod("b/p3", 4, &[], "", &["rs2"]),
        ],
        5,
    );
    let by = |store: &Store<Pod>, index: &str, value: &str| {
        names(&store.indexed(index, value).unwrap_or_default())
    };
    assert_eq!(by(&store, OWNER_UID, "rs1"), ["a/p1", "a/p2"]);
    assert_eq!(by(&store, OWNER_UID, "rs2"), ["a/p2", "b/p3"]);
    assert_eq!(by(&store, NODE_NAME, "n1"), ["a/p1", "a/p2"]);
    // p2 released by rs1 and moved; p3 bound; p1 deleted.
    store.apply(Change::Applied(pod("a/p2", 6, &[], "n2", &["rs2"])));
    store.apply(Change::Applied(pod("b/p3", 7, &[], "n2", &["rs2"])));
    store.apply(Change::Deleted(pod("a/p1", 8, &[], "n1", &["rs1"])));
    assert_eq!(by(&store, OWNER_UID, "rs1"), Vec::<String>::new());
    assert_eq!(by(&store, OWNER_UID, "rs2"), ["a/p2", "b/p3"]);
    assert_eq!(by(&store, NODE_NAME, "n1"), Vec::<String>::new());
    assert_eq!(by(&store, NODE_NAME, "n2"), ["a/p2", "b/p3"]);
    // A relist that drops p3 takes it out of the indexes too.
    store.replace(vec![pod("a/p2", 6, &[], "n2", &["rs2"])], 9);
    assert_eq!(by(&store, NODE_NAME, "n2"), ["a/p2"]);
    assert_eq!(
        store.indexed("zone", "z1").err(),
        Some(NoSuchIndex {
            name: "zone".into()
        })
    );
}

#[test]
fn selector_queries_look_in_one_namespace_and_follow_label_changes() {
    let mut store = store();
    store.replace(
        vec![
            pod("a/web-1", 2, &[("app", "web")], "", &[]),
            pod("a/web-2", 3, &[("app", "web"), ("canary", "1")], "", &[]),
            pod("a/db", 4, &[("app", "db")], "", &[]),
            bare("a/bare", 5),
            pod("b/web-3", 6, &[("app", "web")], "", &[]),
        ],
        6,
    );
    let selected = |store: &Store<Pod>, namespace: &str, selector: &LabelSelector| {
        names(&store.selected(namespace, selector))
    };
    let parse =
        |text: &str| LabelSelector::parse(text).unwrap_or_else(|_| LabelSelector::nothing());
    let cases: [(&str, &str, LabelSelector, &[&str]); 6] = [
        ("a", "app=web", parse("app=web"), &["a/web-1", "a/web-2"]),
        (
            "a",
            "app=web,!canary",
            parse("app=web,!canary"),
            &["a/web-1"],
        ),
        ("b", "app=web", parse("app=web"), &["b/web-3"]),
        (
            "a",
            "empty selects all",
            LabelSelector::default(),
            &["a/bare", "a/db", "a/web-1", "a/web-2"],
        ),
        ("a", "nil selects none", LabelSelector::nothing(), &[]),
        ("c", "empty namespace", LabelSelector::default(), &[]),
    ];
    for (namespace, name, selector, expected) in cases {
        assert_eq!(selected(&store, namespace, &selector), expected, "{name}");
    }
    store.apply(Change::Applied(pod("a/db", 7, &[("app", "web")], "", &[])));
    store.apply(Change::Applied(pod(
        "a/web-1",
        8,
        &[("app", "old")],
        "",
        &[],
    )));
    assert_eq!(
        selected(&store, "a", &parse("app=web")),
        ["a/db", "a/web-2"]
    );
    assert_eq!(store.in_namespace("b").len(), 1);
    assert_eq!(store.len(), 5);
}
