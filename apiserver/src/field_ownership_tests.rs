use serde_json::json;

use super::*;

fn applier<'a>(manager: &'a str, force: bool) -> Applier<'a> {
    Applier {
        manager,
        api_version: "apps/v1",
        force,
        now: "2026-12-05T00:00:00Z",
    }
}

fn deployment(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "web", "labels": { "app": "web" } },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": image,
                                            "args": ["-v"] }] }
            }
        }
    })
}

/// alice's first apply: two nginx replicas.
fn alice_applies() -> Value {
    applied(
        "Deployment",
        None,
        &deployment(2, "nginx"),
        &applier("alice", false),
    )
}

/// The conflicts `manager`'s unforced apply of `config` to `live` meets.
fn conflicts(live: &Value, config: &Value, manager: &str) -> Vec<FieldConflict> {
    apply("Deployment", Some(live), config, &applier(manager, false))
        .expect("a valid config")
        .expect_err("conflicts")
}

fn applied(kind: &str, live: Option<&Value>, config: &Value, who: &Applier<'_>) -> Value {
    apply(kind, live, config, who)
        .expect("a valid config")
        .expect("no conflicts")
}

fn path(steps: &[&str]) -> FieldPath {
    steps.iter().map(|s| s.to_string()).collect()
}

#[test]
fn an_applied_config_owns_its_leaves_in_fields_v1_form() {
    let fields = fields_of("Deployment", &deployment(2, "nginx"), true).unwrap();
    let json = fields.to_json();
    assert_eq!(json["f:metadata"], json!({ "f:labels": { "f:app": {} } }));
    let container = &json["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
    assert_eq!(
        *container,
        json!({ ".": {}, "f:name": {}, "f:image": {}, "f:args": {} }),
        "keyed elements by their key; atomic lists whole"
    );
    assert!(json.get("f:apiVersion").is_none() && json.get("f:kind").is_none());
    assert_eq!(FieldSet::from_json(&json), Some(fields));
}

#[test]
fn a_keyed_element_without_its_key_is_a_precise_error() {
    let mut config = deployment(1, "nginx");
    config["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("name");
    let error = fields_of("Deployment", &config, true)
        .unwrap_err()
        .to_string();
    assert!(error.contains("omits key field \"name\""), "{error}");
}

#[test]
fn the_first_apply_creates_and_records_the_manager() {
    let object = alice_applies();
    let entries = managed_entries(&object);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].manager, "alice");
    assert_eq!(entries[0].operation, "Apply");
    assert_eq!(object["spec"]["replicas"], 2);
}

#[test]
fn another_manager_setting_a_different_value_conflicts_unless_forced() {
    let live = alice_applies();
    let conflicts = conflicts(&live, &deployment(3, "nginx"), "bob");
    assert_eq!(
        conflicts,
        [FieldConflict {
            manager: "alice".into(),
            api_version: "apps/v1".into(),
            field: ".spec.replicas".into(),
        }]
    );
    // Forced: bob takes .spec.replicas, alice keeps the rest.
    let forced = applied(
        "Deployment",
        Some(&live),
        &deployment(3, "nginx"),
        &applier("bob", true),
    );
    assert_eq!(forced["spec"]["replicas"], 3);
    let entries = managed_entries(&forced);
    let alice = entries.iter().find(|e| e.manager == "alice").unwrap();
    assert!(!alice.fields.contains(&path(&["f:spec", "f:replicas"])));
    assert!(alice
        .fields
        .contains(&path(&["f:metadata", "f:labels", "f:app"])));
    let bob = entries.iter().find(|e| e.manager == "bob").unwrap();
    assert!(bob.fields.contains(&path(&["f:spec", "f:replicas"])));
}

#[test]
fn the_same_value_makes_shared_owners_and_a_field_goes_only_when_its_last_owner_drops_it() {
    let live = alice_applies();
    let shared = applied(
        "Deployment",
        Some(&live),
        &deployment(2, "nginx"),
        &applier("bob", false),
    );
    let replicas = path(&["f:spec", "f:replicas"]);
    assert!(managed_entries(&shared)
        .iter()
        .all(|entry| entry.fields.contains(&replicas)));
    // alice drops replicas: bob still owns it, so it stays.
    let mut without = deployment(2, "nginx");
    without["spec"].as_object_mut().unwrap().remove("replicas");
    let kept = applied(
        "Deployment",
        Some(&shared),
        &without,
        &applier("alice", false),
    );
    assert_eq!(kept["spec"]["replicas"], 2);
    // bob drops it too: now it goes.
    let gone = applied("Deployment", Some(&kept), &without, &applier("bob", false));
    assert!(gone["spec"].get("replicas").is_none(), "{gone}");
}

#[test]
fn a_field_the_manager_no_longer_applies_is_removed_with_its_emptied_map() {
    let mut config = deployment(2, "nginx");
    config["metadata"]["annotations"] = json!({ "note": "x" });
    let live = applied("Deployment", None, &config, &applier("alice", false));
    let later = applied(
        "Deployment",
        Some(&live),
        &deployment(2, "nginx"),
        &applier("alice", false),
    );
    assert!(later["metadata"].get("annotations").is_none(), "{later}");
    assert_eq!(later["metadata"]["labels"]["app"], "web");
}

#[test]
fn keyed_elements_merge_by_key_and_a_dropped_element_goes() {
    let mut two = deployment(1, "nginx");
    two["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": "sidecar", "image": "busybox" }));
    let live = applied("Deployment", None, &two, &applier("alice", false));
    // Another manager sets a field of the first container alice never set.
    let mut other = json!({ "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "web" },
        "spec": { "template": { "spec": { "containers": [
            { "name": "web", "imagePullPolicy": "Always" } ] } } } });
    let live = applied("Deployment", Some(&live), &other, &applier("bob", false));
    let containers = &live["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["image"], "nginx", "merged, not replaced");
    assert_eq!(containers[0]["imagePullPolicy"], "Always");
    // alice drops the sidecar: it goes; the web container keeps bob's field.
    let live = applied(
        "Deployment",
        Some(&live),
        &deployment(1, "nginx"),
        &applier("alice", false),
    );
    let containers = live["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(containers[0]["imagePullPolicy"], "Always");
    // Atomic lists are replaced whole.
    other = deployment(1, "nginx");
    other["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["-q"]);
    let live = applied("Deployment", Some(&live), &other, &applier("alice", false));
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["-q"])
    );
}

#[test]
fn an_ordinary_update_moves_the_fields_it_changed_to_its_manager() {
    let live = alice_applies();
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(5);
    let tracked = track_update(
        "Deployment",
        &live,
        scaled,
        "kubectl-scale",
        "apps/v1",
        "now",
    );
    let entries = managed_entries(&tracked);
    let replicas = path(&["f:spec", "f:replicas"]);
    let alice = entries.iter().find(|e| e.manager == "alice").unwrap();
    assert!(!alice.fields.contains(&replicas));
    let scaler = entries
        .iter()
        .find(|e| e.manager == "kubectl-scale")
        .unwrap();
    assert_eq!(scaler.operation, "Update");
    assert!(scaler.fields.contains(&replicas));
    // alice applying her old value again now conflicts with the scaler.
    let conflicts = conflicts(&tracked, &deployment(2, "nginx"), "alice");
    assert_eq!(conflicts[0].manager, "kubectl-scale");
    assert_eq!(conflicts[0].field, ".spec.replicas");
}

#[test]
fn an_update_keeps_managed_fields_it_leaves_out_and_clears_them_when_asked() {
    let live = alice_applies();
    let mut replaced = deployment(2, "nginx");
    replaced["metadata"]["labels"]["tier"] = json!("front");
    let tracked = track_update(
        "Deployment",
        &live,
        replaced.clone(),
        "editor",
        "apps/v1",
        "now",
    );
    assert_eq!(managed_entries(&tracked).len(), 2);
    replaced["metadata"]["managedFields"] = json!([{}]);
    let cleared = track_update("Deployment", &live, replaced, "editor", "apps/v1", "now");
    assert!(cleared["metadata"].get("managedFields").is_none());
    // Objects never applied stay without.
    let plain = deployment(1, "a");
    let untouched = track_update(
        "Deployment",
        &plain,
        deployment(3, "b"),
        "x",
        "apps/v1",
        "now",
    );
    assert!(untouched["metadata"].get("managedFields").is_none());
}

#[test]
fn set_lists_merge_as_sets() {
    let config = json!({ "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "c", "finalizers": ["a/x"] } });
    let live = json!({ "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "c", "finalizers": ["b/y"] } });
    let object = applied("ConfigMap", Some(&live), &config, &applier("alice", false));
    assert_eq!(object["metadata"]["finalizers"], json!(["b/y", "a/x"]));
    let fields = &managed_entries(&object)[0].fields;
    assert!(fields.contains(&path(&["f:metadata", "f:finalizers", "v:\"a/x\""])));
}

#[test]
fn conflicting_fields_are_named_as_kubernetes_names_them() {
    let steps = path(&[
        "f:spec",
        "f:template",
        "f:spec",
        "f:containers",
        "k:{\"name\":\"web\"}",
        "f:image",
    ]);
    assert_eq!(
        display_path(&steps),
        ".spec.template.spec.containers[name=\"web\"].image"
    );
}

fn with_containers(containers: Value) -> Value {
    let mut object = deployment(1, "nginx");
    object["spec"]["template"]["spec"]["containers"] = containers;
    object
}

#[test]
fn an_element_someone_else_changed_stays_whole_when_its_applier_drops_it() {
    let two = with_containers(json!([{ "name": "web", "image": "nginx" },
                                     { "name": "side", "image": "busybox" }]));
    let live = applied("Deployment", None, &two, &applier("alice", false));
    // kubectl set image side=busybox:2: an Update of one field inside the element.
    let mut set = live.clone();
    set["spec"]["template"]["spec"]["containers"][1]["image"] = json!("busybox:2");
    let live = track_update("Deployment", &live, set, "kubectl-set", "apps/v1", "now");
    let one = with_containers(json!([{ "name": "web", "image": "nginx" }]));
    let after = applied("Deployment", Some(&live), &one, &applier("alice", false));
    let containers = &after["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        *containers,
        json!([{ "name": "web", "image": "nginx" }, { "name": "side", "image": "busybox:2" }]),
        "the sidecar keeps its key and the setter's field"
    );
}

#[test]
fn ports_are_keyed_by_number_and_protocol() {
    let service = |ports: Value| {
        json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": "dns" },
                "spec": { "ports": ports } })
    };
    let both = service(json!([{ "port": 53, "protocol": "UDP", "name": "dns" },
                              { "port": 53, "protocol": "TCP", "name": "dns-tcp" }]));
    let live = applied("Service", None, &both, &applier("alice", false));
    let again = applied("Service", Some(&live), &both, &applier("alice", false));
    assert_eq!(again["spec"]["ports"], both["spec"]["ports"]);
    let fields = &managed_entries(&again)[0].fields;
    assert!(fields.contains(&path(&[
        "f:spec",
        "f:ports",
        "k:{\"port\":53,\"protocol\":\"UDP\"}",
        "f:name"
    ])));
    // A port without a protocol is TCP's.
    let tcp_only = service(json!([{ "port": 53, "name": "renamed" }]));
    let merged = applied("Service", Some(&live), &tcp_only, &applier("bob", true));
    assert_eq!(merged["spec"]["ports"][1]["name"], "renamed");
    assert_eq!(merged["spec"]["ports"][0]["name"], "dns");
    // The same key twice in a configuration is refused.
    let twice = service(json!([{ "port": 80 }, { "port": 80, "protocol": "TCP" }]));
    let error = apply("Service", None, &twice, &applier("alice", false)).unwrap_err();
    assert!(error.to_string().contains("duplicate entries"), "{error}");
}

#[test]
fn a_list_applied_empty_then_filled_keeps_what_fills_it() {
    let empty = with_containers(json!([{ "name": "web", "image": "nginx", "env": [] }]));
    let live = applied("Deployment", None, &empty, &applier("alice", false));
    let filled = with_containers(
        json!([{ "name": "web", "image": "nginx", "env": [{ "name": "A", "value": "1" }] }]),
    );
    let after = applied("Deployment", Some(&live), &filled, &applier("alice", false));
    assert_eq!(
        after["spec"]["template"]["spec"]["containers"][0]["env"],
        json!([{ "name": "A", "value": "1" }])
    );
}

#[test]
fn an_apply_that_changes_nothing_leaves_the_object_as_it_was() {
    let live = alice_applies();
    let later = Applier {
        now: "2030-01-01T00:00:00Z",
        ..applier("alice", false)
    };
    let again = applied("Deployment", Some(&live), &deployment(2, "nginx"), &later);
    assert_eq!(again, live, "not even the entry's time moves");
}

#[test]
fn a_manager_s_own_update_entry_is_another_owner_for_its_apply() {
    let live = alice_applies();
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(5);
    let live = track_update("Deployment", &live, scaled, "alice", "apps/v1", "now");
    let conflicts = conflicts(&live, &deployment(2, "nginx"), "alice");
    assert_eq!(conflicts[0].manager, "alice");
}

#[test]
fn entries_leave_out_what_they_do_not_know() {
    let entry = ManagedEntry {
        manager: "m".into(),
        operation: "Apply".into(),
        api_version: "v1".into(),
        time: String::new(),
        subresource: String::new(),
        fields: FieldSet::default(),
    };
    let json = entry.to_json();
    assert!(
        json.get("time").is_none() && json.get("subresource").is_none(),
        "{json}"
    );
}
