//! The discovery documents clients read before anything else (pure): `/api`, `/apis`, each
//! group version's resources with their verbs, short names, categories and subresources,
//! and `/version`.

use serde_json::{json, Value};

use crate::authz::review;
use crate::kinds::{KindInfo, KINDS, VERBS};

/// The Kubernetes version whose API the served kinds are (k8s-openapi's `v1_34`).
pub const KUBERNETES_MINOR: &str = "34";

/// Kinds with a `scale` subresource (what `kubectl scale` can scale).
pub fn has_scale(info: &KindInfo) -> bool {
    matches!(
        info.kind,
        "Deployment" | "ReplicaSet" | "StatefulSet" | "ReplicationController"
    )
}

/// Kinds `kubectl get all` lists (the `all` category).
fn categories(info: &KindInfo) -> &'static [&'static str] {
    match info.kind {
        "Pod"
        | "Service"
        | "ReplicationController"
        | "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "CronJob" => &["all"],
        _ => &[],
    }
}

/// `/api`: the core group's versions.
pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [],
    })
}

/// The named groups, in the order of the kinds (`/apis`), then the access reviews'.
fn groups() -> Vec<(&'static str, &'static str)> {
    let mut groups: Vec<(&str, &str)> = Vec::new();
    for info in KINDS.iter().filter(|info| !info.group.is_empty()) {
        if !groups.contains(&(info.group, info.version)) {
            groups.push((info.group, info.version));
        }
    }
    groups.push((review::REVIEW_GROUP, "v1"));
    groups
}

/// The access reviews (`crate::authz::review`): kinds that are only created.
fn review_resources() -> Value {
    let resources: Vec<Value> = review::REVIEWS
        .iter()
        .map(|(resource, kind)| {
            json!({
                "name": resource,
                "singularName": kind.to_lowercase(),
                "namespaced": *resource == "localsubjectaccessreviews",
                "kind": kind,
                "verbs": ["create"],
            })
        })
        .collect();
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{}/v1", review::REVIEW_GROUP),
        "resources": resources,
    })
}

fn group(name: &str, version: &str) -> Value {
    let group_version = json!({ "groupVersion": format!("{name}/{version}"), "version": version });
    json!({
        "name": name,
        "versions": [group_version],
        "preferredVersion": group_version,
    })
}

/// `/apis`: every named group and its version.
pub fn group_list() -> Value {
    let groups: Vec<Value> = groups()
        .into_iter()
        .map(|(name, version)| group(name, version))
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// `/apis/<group>`, if served.
pub fn api_group(name: &str) -> Option<Value> {
    let (name, version) = groups().into_iter().find(|(group, _)| *group == name)?;
    let mut group = group(name, version);
    group["kind"] = json!("APIGroup");
    group["apiVersion"] = json!("v1");
    Some(group)
}

/// `/api/v1` or `/apis/<group>/<version>`: the resources served there, if any.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    if (group, version) == (review::REVIEW_GROUP, "v1") {
        return Some(review_resources());
    }
    let kinds: Vec<&KindInfo> = KINDS
        .iter()
        .filter(|info| info.group == group && info.version == version)
        .collect();
    if kinds.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for info in kinds {
        // Namespaces are deleted one at a time (each empties first).
        let verbs: Vec<&str> = VERBS
            .iter()
            .filter(|verb| info.kind != "Namespace" || **verb != "deletecollection")
            .copied()
            .collect();
        let mut resource = json!({
            "name": info.resource,
            "singularName": info.singular,
            "namespaced": info.namespaced,
            "kind": info.kind,
            "verbs": verbs,
        });
        if !info.short_names.is_empty() {
            resource["shortNames"] = json!(info.short_names);
        }
        if !categories(info).is_empty() {
            resource["categories"] = json!(categories(info));
        }
        resources.push(resource);
        let mut subresource = |name: &str, kind: &str, group: &str, verbs: &[&str]| {
            let mut sub = json!({
                "name": format!("{}/{name}", info.resource),
                "singularName": "",
                "namespaced": info.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if !group.is_empty() {
                sub["group"] = json!(group);
                sub["version"] = json!("v1");
            }
            resources.push(sub);
        };
        if info.has_status {
            subresource("status", info.kind, "", &["get", "patch", "update"]);
        }
        if has_scale(info) {
            subresource("scale", "Scale", "autoscaling", &["get", "patch", "update"]);
        }
        match info.kind {
            "Pod" => {
                subresource("binding", "Binding", "", &["create"]);
                subresource("log", "Pod", "", &["get"]);
                subresource("exec", "PodExecOptions", "", &["create", "get"]);
                subresource("attach", "PodAttachOptions", "", &["create", "get"]);
                subresource(
                    "portforward",
                    "PodPortForwardOptions",
                    "",
                    &["create", "get"],
                );
                subresource("eviction", "Eviction", "policy", &["create"]);
            }
            "Namespace" => subresource("finalize", "Namespace", "", &["update"]),
            "ServiceAccount" => subresource(
                "token",
                "TokenRequest",
                "authentication.k8s.io",
                &["create"],
            ),
            _ => {}
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

/// The content type of the aggregated discovery documents (`apidiscovery.k8s.io/v2`).
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an `Accept` header asks for aggregated discovery (v2; v2beta1 is answered with
/// v2's plain form only when asked for nothing else, as client-go takes either).
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|media| {
        let parameters: Vec<&str> = media.split(';').map(str::trim).collect();
        parameters.contains(&"g=apidiscovery.k8s.io")
            && parameters.contains(&"v=v2")
            && parameters.contains(&"as=APIGroupDiscoveryList")
    })
}

/// `/api` (`core`) or `/apis` (the named groups) as one aggregated document: every group,
/// its version, and each version's resources with their subresources.
pub fn aggregated(core: bool) -> Value {
    let mut group_versions: Vec<(&str, &str)> = if core { vec![("", "v1")] } else { groups() };
    group_versions.retain(|(group, _)| group.is_empty() == core);
    let items: Vec<Value> = group_versions
        .into_iter()
        .map(|(group, version)| {
            let list = resource_list(group, version).unwrap_or_default();
            let all = list["resources"].as_array().cloned().unwrap_or_default();
            let resources: Vec<Value> = all
                .iter()
                .filter(|r| !r["name"].as_str().unwrap_or("").contains('/'))
                .map(|r| {
                    let name = r["name"].as_str().unwrap_or("");
                    let subresources: Vec<Value> = all
                        .iter()
                        .filter_map(|sub| {
                            let (parent, subresource) =
                                sub["name"].as_str().unwrap_or("").split_once('/')?;
                            (parent == name).then(|| {
                                let kind_group = sub["group"].as_str().unwrap_or(group);
                                let kind_version = sub["version"].as_str().unwrap_or(version);
                                json!({
                                    "subresource": subresource,
                                    "responseKind": { "group": kind_group,
                                                      "version": kind_version,
                                                      "kind": sub["kind"] },
                                    "verbs": sub["verbs"],
                                })
                            })
                        })
                        .collect();
                    let scope = if r["namespaced"] == true { "Namespaced" } else { "Cluster" };
                    let mut resource = json!({
                        "resource": name,
                        "responseKind": { "group": group, "version": version, "kind": r["kind"] },
                        "scope": scope,
                        "singularResource": r["singularName"],
                        "verbs": r["verbs"],
                    });
                    for field in ["shortNames", "categories"] {
                        if !r[field].is_null() {
                            resource[field] = r[field].clone();
                        }
                    }
                    if !subresources.is_empty() {
                        resource["subresources"] = json!(subresources);
                    }
                    resource
                })
                .collect();
            json!({
                "metadata": { "name": group },
                "versions": [{ "version": version, "resources": resources, "freshness": "Current" }],
            })
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

/// `/version`: the Kubernetes API version served, and Rudder's own.
pub fn version() -> Value {
    let rudder = env!("CARGO_PKG_VERSION");
    json!({
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "gitVersion": format!("v1.{KUBERNETES_MINOR}.0-rudder.{rudder}"),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

/// The architecture as Go names it (what `kubectl version` users know).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_core_group_lists_pods_with_their_short_name_and_subresources() {
        let list = resource_list("", "v1").unwrap();
        assert_eq!(list["groupVersion"], "v1");
        let resources = list["resources"].as_array().unwrap();
        let pods = resources.iter().find(|r| r["name"] == "pods").unwrap();
        assert_eq!(pods["kind"], "Pod");
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert!(resources.iter().any(|r| r["name"] == "pods/status"));
        let eviction = resources
            .iter()
            .find(|r| r["name"] == "pods/eviction")
            .unwrap();
        assert_eq!(eviction["group"], "policy");
    }

    #[test]
    fn named_groups_list_their_versions_and_scale_where_served() {
        let groups = group_list();
        assert!(groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "apps" && g["preferredVersion"]["groupVersion"] == "apps/v1"));
        let apps = resource_list("apps", "v1").unwrap();
        assert!(apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "deployments/scale" && r["kind"] == "Scale"));
        assert_eq!(api_group("apps").unwrap()["kind"], "APIGroup");
        assert!(api_group("widgets.example.com").is_none());
        assert!(resource_list("apps", "v2").is_none());
    }

    #[test]
    fn aggregated_discovery_holds_each_group_s_resources_and_subresources() {
        let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,\
                      application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,\
                      application/json";
        assert!(wants_aggregated(accept));
        assert!(!wants_aggregated("application/json, */*"));
        let core = aggregated(true);
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        let resources = core["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap();
        let pods = resources.iter().find(|r| r["resource"] == "pods").unwrap();
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["responseKind"]["kind"], "Pod");
        assert!(pods["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["subresource"] == "eviction" && s["responseKind"]["group"] == "policy"));
        assert!(resources
            .iter()
            .all(|r| !r["resource"].as_str().unwrap().contains('/')));
        let named = aggregated(false);
        assert!(named["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["metadata"]["name"] == "apps"));
        assert!(named["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["metadata"]["name"] != ""));
    }
}
