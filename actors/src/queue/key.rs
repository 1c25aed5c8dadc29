//! [`Key`]: what a controller's work queue holds — an object's namespace and name, written
//! `namespace/name` (just `name` for a cluster-scoped object), as client-go's
//! `MetaNamespaceKeyFunc` writes it.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Empty for a cluster-scoped object.
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of an object as JSON (its `metadata.namespace` and `metadata.name`).
    pub fn of(object: &serde_json::Value) -> Self {
        let metadata = &object["metadata"];
        let text = |field: &str| metadata[field].as_str().unwrap_or("").to_string();
        Self {
            namespace: text("namespace"),
            name: text("name"),
        }
    }
}

impl fmt::Display for Key {
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
    use serde_json::json;

    use super::*;

    #[test]
    fn keys_read_as_client_go_writes_them() {
        let pod = json!({ "metadata": { "namespace": "default", "name": "web-1" } });
        assert_eq!(Key::of(&pod), Key::new("default", "web-1"));
        assert_eq!(Key::of(&pod).to_string(), "default/web-1");
        let node = json!({ "metadata": { "name": "n1" } });
        assert_eq!(Key::of(&node).to_string(), "n1");
    }
}
