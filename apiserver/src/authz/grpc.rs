//! The action a gRPC request takes, as the registry will take it (pure): what
//! kube-apiserver's RequestInfo reads from an HTTP path, read from a request's fields.
//!
//! The registry resolves any name of a kind (`deploy`, `deployments.apps`, `Pod`) and,
//! for a create or an update that names none, the body's kind; it ignores the namespace
//! of a cluster-scoped kind and puts a named object of a namespaced kind without one in
//! `default`. The action is decided the same way, so that what is authorized is what is
//! done.

use serde::Deserialize;

use super::rbac::{Action, ResourceAction};
use super::review;
use crate::kinds::{self, KindInfo};

/// The head of an object's JSON: its kind and where it is.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BodyHead {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: HeadMetadata,
}

#[derive(Debug, Default, Deserialize)]
pub struct HeadMetadata {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
}

impl BodyHead {
    /// The head of `body`; empty when it is not JSON (the registry refuses it).
    pub fn parse(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }
}

/// What a gRPC request names.
#[derive(Debug, Default)]
pub struct Asked<'a> {
    pub verb: &'a str,
    /// As the client named it (any name the registry resolves), or empty.
    pub resource: &'a str,
    pub subresource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    /// A create's or an update's body.
    pub body: Option<&'a BodyHead>,
    /// A list's or a watch's field selector.
    pub field_selector: &'a str,
}

/// The name a field selector pins (`metadata.name=web`), as Kubernetes reads it for a list
/// or watch of one object.
pub fn name_in_field_selector(selector: &str) -> Option<&str> {
    selector.split(',').find_map(|term| {
        let (field, value) = term
            .split_once("==")
            .or_else(|| term.split_once('='))
            .filter(|(field, _)| !field.ends_with('!'))?;
        (field.trim() == "metadata.name").then_some(value.trim())
    })
}

fn kind_of(asked: &Asked) -> Option<&'static KindInfo> {
    if !asked.resource.is_empty() {
        return kinds::resolve(asked.resource);
    }
    let body = asked.body?;
    kinds::by_api_version(&body.api_version, &body.kind)
}

/// The action `asked` takes.
pub fn action(asked: &Asked) -> Action {
    let (group, resource, namespaced) = match kind_of(asked) {
        Some(info) => (info.group, info.resource.to_string(), info.namespaced),
        None if review::is_review(asked.resource) => (
            review::REVIEW_GROUP,
            asked.resource.to_string(),
            asked.resource == "localsubjectaccessreviews",
        ),
        // Not a kind the registry serves: it refuses the request, and only a rule for
        // every resource could allow it.
        None => ("", asked.resource.to_string(), true),
    };
    let collection = matches!(asked.verb, "list" | "watch" | "deletecollection");
    let name = match asked.verb {
        // A create names no object (its name is the new object's).
        "create" if asked.subresource.is_empty() => String::new(),
        "list" | "watch" => name_in_field_selector(asked.field_selector)
            .unwrap_or_default()
            .to_string(),
        _ => asked.name.to_string(),
    };
    let body_namespace = asked
        .body
        .map(|body| body.metadata.namespace.as_str())
        .unwrap_or("");
    let namespace = if resource == "namespaces" {
        // A namespace's own requests are in the namespace, as Kubernetes sees them.
        name.clone()
    } else if !namespaced {
        String::new()
    } else if !asked.namespace.is_empty() {
        asked.namespace.to_string()
    } else if collection {
        // Every namespace.
        String::new()
    } else if !body_namespace.is_empty() {
        body_namespace.to_string()
    } else {
        "default".to_string()
    };
    Action::Resource(ResourceAction {
        verb: asked.verb.to_string(),
        group: group.to_string(),
        resource,
        subresource: asked.subresource.to_string(),
        namespace,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource_action(asked: Asked) -> ResourceAction {
        match action(&asked) {
            Action::Resource(action) => action,
            Action::Path { .. } => unreachable!(),
        }
    }

    #[test]
    fn any_name_of_a_kind_is_the_kind_the_registry_writes() {
        let short = resource_action(Asked {
            verb: "get",
            resource: "deploy",
            namespace: "team",
            name: "web",
            ..Asked::default()
        });
        assert_eq!(
            (short.group.as_str(), short.resource.as_str()),
            ("apps", "deployments")
        );
        let head = BodyHead::parse(
            br#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding",
                 "metadata":{"name":"mine"}}"#,
        );
        let by_body = resource_action(Asked {
            verb: "create",
            body: Some(&head),
            namespace: "team",
            ..Asked::default()
        });
        assert_eq!(by_body.resource, "clusterrolebindings");
        // Cluster-scoped: the namespace given is not where it is written.
        assert_eq!(by_body.namespace, "");
        let node = resource_action(Asked {
            verb: "delete",
            resource: "nodes",
            namespace: "team",
            name: "n1",
            ..Asked::default()
        });
        assert_eq!(node.namespace, "");
    }

    #[test]
    fn a_namespaced_object_without_a_namespace_is_in_default_or_the_bodys() {
        let get = resource_action(Asked {
            verb: "get",
            resource: "secrets",
            name: "db",
            ..Asked::default()
        });
        assert_eq!(get.namespace, "default");
        let head = BodyHead::parse(br#"{"metadata":{"name":"c","namespace":"team"}}"#);
        let create = resource_action(Asked {
            verb: "create",
            resource: "configmaps",
            body: Some(&head),
            ..Asked::default()
        });
        assert_eq!(
            (create.namespace.as_str(), create.name.as_str()),
            ("team", "")
        );
        let everywhere = resource_action(Asked {
            verb: "list",
            resource: "pods",
            ..Asked::default()
        });
        assert_eq!(everywhere.namespace, "");
    }

    #[test]
    fn a_list_pinned_to_one_name_names_it() {
        assert_eq!(name_in_field_selector("metadata.name=web"), Some("web"));
        assert_eq!(
            name_in_field_selector("spec.nodeName=n1,metadata.name==web"),
            Some("web")
        );
        assert_eq!(name_in_field_selector("metadata.name!=web"), None);
        let watch = resource_action(Asked {
            verb: "watch",
            resource: "configmaps",
            namespace: "team",
            field_selector: "metadata.name=settings",
            ..Asked::default()
        });
        assert_eq!(watch.name, "settings");
        let namespace = resource_action(Asked {
            verb: "get",
            resource: "ns",
            name: "team",
            ..Asked::default()
        });
        assert_eq!(namespace.namespace, "team");
    }
}
