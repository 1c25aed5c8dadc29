//! [`ObjectKey`]: how the cache (and a controller's work queue) names an object, and the
//! key of the object that controls another (a pod's ReplicaSet), for mapping events to keys.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// An object's namespace and name (namespace empty for cluster-scoped kinds). Ordered by
/// namespace first, so one namespace's objects are one range of the cache.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of the object these metadata belong to.
    pub fn of(meta: &ObjectMeta) -> Self {
        Self::new(
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    }

    /// The key of the object's controller (the owner reference with `controller: true`) if
    /// it is of `kind` (`ReplicaSet`, `Job`, ...). Owners live in their dependent's namespace.
    pub fn controller_of(meta: &ObjectMeta, kind: &str) -> Option<Self> {
        meta.owner_references
            .iter()
            .flatten()
            .find(|owner| owner.controller == Some(true))
            .filter(|owner| owner.kind == kind)
            .map(|owner| Self::new(meta.namespace.clone().unwrap_or_default(), &owner.name))
    }
}

impl fmt::Display for ObjectKey {
    /// `namespace/name`, or `name` for a cluster-scoped object (as client-go's
    /// `MetaNamespaceKeyFunc`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    fn owned(owners: &[(&str, &str, bool)]) -> ObjectMeta {
        ObjectMeta {
            namespace: Some("web".into()),
            name: Some("pod-1".into()),
            owner_references: Some(
                owners
                    .iter()
                    .map(|(kind, name, controller)| OwnerReference {
                        kind: kind.to_string(),
                        name: name.to_string(),
                        controller: Some(*controller),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn keys_print_as_client_go_keys() {
        assert_eq!(ObjectKey::new("web", "a").to_string(), "web/a");
        assert_eq!(ObjectKey::new("", "node-1").to_string(), "node-1");
    }

    #[test]
    fn the_controller_key_comes_from_the_controlling_owner_of_that_kind() {
        let meta = owned(&[("Deployment", "d", false), ("ReplicaSet", "rs", true)]);
        assert_eq!(
            ObjectKey::controller_of(&meta, "ReplicaSet"),
            Some(ObjectKey::new("web", "rs"))
        );
        assert_eq!(ObjectKey::controller_of(&meta, "Deployment"), None);
        assert_eq!(ObjectKey::controller_of(&owned(&[]), "ReplicaSet"), None);
    }
}
