//! The paths of the Kubernetes API, parsed (pure):
//!
//! ```text
//! /api/v1[/namespaces/NS]/RESOURCE[/NAME[/SUBRESOURCE]]          the core group
//! /apis/GROUP/VERSION[/namespaces/NS]/RESOURCE[/NAME[/SUBRESOURCE]]
//! /api/v1/namespaces/NAME[/status|/finalize]                     a namespace itself
//! ```

use crate::error::ApiError;
use crate::kinds::{KindInfo, KINDS};

/// What a resource path names.
#[derive(Debug, Clone)]
pub struct ResourcePath {
    pub info: &'static KindInfo,
    /// Empty for cluster-scoped kinds and for lists across all namespaces.
    pub namespace: String,
    /// Empty for the collection.
    pub name: String,
    /// `status`, `scale`, `binding`, `eviction`, `log`, ... or empty.
    pub subresource: String,
}

/// The kind served at `group`/`version` as `resource`.
pub fn served(group: &str, version: &str, resource: &str) -> Option<&'static KindInfo> {
    KINDS
        .iter()
        .find(|info| info.group == group && info.version == version && info.resource == resource)
}

/// Parses a path under `/api` or `/apis`. `None`: not a resource path (discovery, say).
pub fn parse(path: &str) -> Option<Result<ResourcePath, ApiError>> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] if !rest.is_empty() => ("", *version, rest),
        ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
        _ => return None,
    };
    Some(resolve(group, version, rest))
}

fn resolve(group: &str, version: &str, rest: &[&str]) -> Result<ResourcePath, ApiError> {
    let (namespace, resource, name, subresource) = match rest {
        // The namespace object and its subresources, not a namespace's collection.
        ["namespaces", name] => ("", "namespaces", *name, ""),
        ["namespaces", name, sub @ ("status" | "finalize")] if group.is_empty() => {
            ("", "namespaces", *name, *sub)
        }
        ["namespaces", namespace, resource, tail @ ..] => match tail {
            [] => (*namespace, *resource, "", ""),
            [name] => (*namespace, *resource, *name, ""),
            [name, sub] => (*namespace, *resource, *name, *sub),
            _ => return Err(not_found()),
        },
        [resource] => ("", *resource, "", ""),
        [resource, name] => ("", *resource, *name, ""),
        [resource, name, sub] => ("", *resource, *name, *sub),
        _ => return Err(not_found()),
    };
    let info = served(group, version, resource).ok_or_else(not_found)?;
    if !info.namespaced && !namespace.is_empty() {
        return Err(not_found());
    }
    // A namespaced kind's object is always named within its namespace.
    if info.namespaced && namespace.is_empty() && !name.is_empty() {
        return Err(not_found());
    }
    Ok(ResourcePath {
        info,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        subresource: subresource.to_owned(),
    })
}

/// What kube-apiserver answers for a path it does not serve.
pub fn not_found() -> ApiError {
    ApiError::PathNotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(path: &str) -> ResourcePath {
        parse(path).expect("a resource path").expect("served")
    }

    #[test]
    fn namespaced_cluster_scoped_and_subresource_paths() {
        let pods = parsed("/api/v1/namespaces/default/pods");
        assert_eq!(
            (pods.info.kind, pods.namespace.as_str()),
            ("Pod", "default")
        );
        assert!(pods.name.is_empty());

        let log = parsed("/api/v1/namespaces/ns/pods/web/log");
        assert_eq!(
            (log.name.as_str(), log.subresource.as_str()),
            ("web", "log")
        );

        let all = parsed("/apis/apps/v1/deployments");
        assert_eq!((all.info.kind, all.namespace.as_str()), ("Deployment", ""));

        let node = parsed("/api/v1/nodes/n1/status");
        assert_eq!((node.info.kind, node.name.as_str()), ("Node", "n1"));
        assert_eq!(node.subresource, "status");
    }

    #[test]
    fn a_namespace_path_names_the_namespace_or_its_contents() {
        let namespace = parsed("/api/v1/namespaces/team");
        assert_eq!(
            (namespace.info.kind, namespace.name.as_str()),
            ("Namespace", "team")
        );
        let finalize = parsed("/api/v1/namespaces/team/finalize");
        assert_eq!(finalize.subresource, "finalize");
        let configmaps = parsed("/api/v1/namespaces/team/configmaps");
        assert_eq!(configmaps.info.kind, "ConfigMap");
    }

    #[test]
    fn unserved_paths_are_not_found_and_others_are_not_resources() {
        assert!(parse("/api/v1/namespaces/a/widgets").unwrap().is_err());
        assert!(parse("/apis/apps/v2/deployments").unwrap().is_err());
        assert!(parse("/api/v1/namespaces/a/nodes/n").unwrap().is_err());
        assert!(parse("/api/v1/namespaces/a/pods/p/log/extra")
            .unwrap()
            .is_err());
        assert!(parse("/api/v1").is_none());
        assert!(parse("/apis/apps/v1").is_none());
        assert!(parse("/version").is_none());
    }
}
