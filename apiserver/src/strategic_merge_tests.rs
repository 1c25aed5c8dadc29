use serde_json::json;

use super::*;

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "web", "finalizers": ["a"], "labels": { "app": "web", "tier": "x" } },
        "spec": { "replicas": 1, "template": { "spec": {
            "containers": [
                { "name": "app", "image": "app:1",
                  "env": [{ "name": "A", "value": "1" }, { "name": "B", "value": "2" }],
                  "args": ["--one"] },
                { "name": "sidecar", "image": "side:1" },
            ],
            "tolerations": [{ "key": "k", "operator": "Exists" }],
        } } }
    })
}

#[test]
fn containers_merge_by_name_and_their_env_by_name() {
    let patch = json!({ "spec": { "template": { "spec": { "containers": [
        { "name": "app", "image": "app:2", "env": [{ "name": "B", "value": "3" }] },
    ] } } } });
    let merged = apply("Deployment", &deployment(), &patch).unwrap();
    let containers = &merged["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["image"], "app:2");
    assert_eq!(
        containers[0]["env"],
        json!([{ "name": "A", "value": "1" }, { "name": "B", "value": "3" }])
    );
    assert_eq!(
        containers[1]["name"], "sidecar",
        "the other container is kept"
    );
    assert_eq!(containers[0]["args"], json!(["--one"]));
}

#[test]
fn lists_without_a_strategy_are_replaced_and_null_deletes() {
    let patch = json!({
        "metadata": { "labels": { "tier": null } },
        "spec": { "template": { "spec": {
            "tolerations": [{ "key": "other", "operator": "Exists" }],
            "containers": [{ "name": "app", "args": ["--two"] }],
        } } }
    });
    let merged = apply("Deployment", &deployment(), &patch).unwrap();
    assert_eq!(merged["metadata"]["labels"], json!({ "app": "web" }));
    let spec = &merged["spec"]["template"]["spec"];
    assert_eq!(
        spec["tolerations"],
        json!([{ "key": "other", "operator": "Exists" }])
    );
    assert_eq!(spec["containers"][0]["args"], json!(["--two"]));
}

#[test]
fn directives_delete_replace_and_order_elements() {
    let patch = json!({
        "metadata": { "finalizers": ["b"], "$deleteFromPrimitiveList/finalizers": ["a"] },
        "spec": { "template": { "spec": {
            "$setElementOrder/containers": [{ "name": "sidecar" }, { "name": "app" }],
            "containers": [{ "name": "app", "$patch": "delete" }, { "name": "new", "image": "n" }],
        } } }
    });
    let merged = apply("Deployment", &deployment(), &patch).unwrap();
    assert_eq!(merged["metadata"]["finalizers"], json!(["b"]));
    let names: Vec<_> = merged["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["sidecar", "new"]);

    let replace = json!({ "spec": { "template": { "spec": {
        "containers": [{ "$patch": "replace" }, { "name": "only", "image": "o" }],
    } } } });
    let merged = apply("Deployment", &deployment(), &replace).unwrap();
    assert_eq!(
        merged["spec"]["template"]["spec"]["containers"],
        json!([{ "name": "only", "image": "o" }])
    );

    let whole_map = json!({ "metadata": { "labels": { "$patch": "replace", "only": "this" } } });
    let merged = apply("Deployment", &deployment(), &whole_map).unwrap();
    assert_eq!(merged["metadata"]["labels"], json!({ "only": "this" }));
}

#[test]
fn retain_keys_drops_the_fields_not_named() {
    let original = json!({ "spec": { "strategy": { "type": "RollingUpdate",
                                                    "rollingUpdate": { "maxSurge": 1 } } } });
    let patch = json!({ "spec": { "strategy": { "$retainKeys": ["type"], "type": "Recreate" } } });
    let merged = apply("Deployment", &original, &patch).unwrap();
    assert_eq!(merged["spec"]["strategy"], json!({ "type": "Recreate" }));
}

#[test]
fn service_ports_merge_by_port_and_conditions_by_type() {
    let service = json!({ "spec": { "ports": [{ "port": 80, "name": "http" },
                                               { "port": 443, "name": "https" }] },
                          "status": { "conditions": [{ "type": "A", "status": "True" }] } });
    let patch = json!({ "spec": { "ports": [{ "port": 443, "targetPort": 8443 }] },
                        "status": { "conditions": [{ "type": "B", "status": "False" }] } });
    let merged = apply("Service", &service, &patch).unwrap();
    assert_eq!(merged["spec"]["ports"][1]["targetPort"], 8443);
    assert_eq!(merged["spec"]["ports"][0]["name"], "http");
    assert_eq!(merged["status"]["conditions"].as_array().unwrap().len(), 2);
}

#[test]
fn bad_patches_say_what_is_wrong() {
    let no_key =
        json!({ "spec": { "template": { "spec": { "containers": [{ "image": "x" }] } } } });
    let error = apply("Deployment", &deployment(), &no_key).unwrap_err();
    assert!(error.to_string().contains("\"name\""), "{error}");
    let bad = json!({ "metadata": { "$patch": "explode" } });
    let error = apply("Deployment", &deployment(), &bad).unwrap_err();
    assert!(error.to_string().contains("explode"), "{error}");
    assert!(apply("Deployment", &deployment(), &json!([1])).is_err());
}

#[test]
fn a_budget_s_selector_is_replaced_and_service_account_secrets_merge() {
    let budget = json!({ "spec": { "selector": { "matchLabels": { "a": "1" },
                                                 "matchExpressions": [] } } });
    let patch = json!({ "spec": { "selector": { "matchLabels": { "b": "2" } } } });
    let merged = apply("PodDisruptionBudget", &budget, &patch).unwrap();
    assert_eq!(
        merged["spec"]["selector"],
        json!({ "matchLabels": { "b": "2" } })
    );

    let account = json!({ "secrets": [{ "name": "a" }] });
    let merged = apply(
        "ServiceAccount",
        &account,
        &json!({ "secrets": [{ "name": "b" }] }),
    )
    .unwrap();
    assert_eq!(merged["secrets"], json!([{ "name": "a" }, { "name": "b" }]));
}

#[test]
fn elements_the_order_leaves_out_keep_their_place() {
    let original = json!({ "spec": { "template": { "spec": { "containers": [
        { "name": "sidecar", "image": "s" }, { "name": "app", "image": "a" },
    ] } } } });
    let patch = json!({ "spec": { "template": { "spec": {
        "$setElementOrder/containers": [{ "name": "app" }],
        "containers": [{ "name": "app", "image": "a2" }],
    } } } });
    let merged = apply("Deployment", &original, &patch).unwrap();
    let names: Vec<_> = merged["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["sidecar", "app"]);
}
