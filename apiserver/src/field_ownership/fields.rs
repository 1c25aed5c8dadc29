//! The paths of server-side apply, in Kubernetes' `FieldsV1` form: `f:<field>` for a field
//! of a map, `k:{"name":"web"}` for the element of a keyed list, `v:<json>` for a member of a
//! list of scalars merged as a set, `.` for such an element itself. [`FieldSet`] is a set of
//! them; [`fields_of`] the fields an object sets; [`value_at`] what a path reaches in an
//! object. Which lists are keyed, and by what, is [`list_kind`]'s. Pure.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::strategic_merge::{list_strategy, ListStrategy};

/// A set of field paths, as `FieldsV1`: `{"f:spec":{"f:replicas":{}}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet(BTreeMap<String, FieldSet>);

/// A path into an object: `FieldsV1` keys from the root (`["f:spec", "f:replicas"]`).
pub type FieldPath = Vec<String>;

impl FieldSet {
    /// Reads `FieldsV1` JSON; `None` if it is not that shape.
    pub fn from_json(value: &Value) -> Option<FieldSet> {
        let map = value.as_object()?;
        let mut set = BTreeMap::new();
        for (key, child) in map {
            set.insert(key.clone(), FieldSet::from_json(child)?);
        }
        Some(FieldSet(set))
    }

    pub fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(key, child)| (key.clone(), child.to_json()))
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every path that ends in the set (a field with no owned fields below it).
    pub fn leaves(&self) -> Vec<FieldPath> {
        let mut out = Vec::new();
        self.collect_leaves(&mut Vec::new(), &mut out);
        out
    }

    fn collect_leaves(&self, prefix: &mut FieldPath, out: &mut Vec<FieldPath>) {
        for (key, child) in &self.0 {
            prefix.push(key.clone());
            if child.is_empty() {
                out.push(prefix.clone());
            } else {
                child.collect_leaves(prefix, out);
            }
            prefix.pop();
        }
    }

    /// Whether `path` ends in the set.
    pub fn contains(&self, path: &[String]) -> bool {
        match path {
            [] => false,
            [last] => self.0.get(last).is_some_and(FieldSet::is_empty),
            [first, rest @ ..] => self.0.get(first).is_some_and(|child| child.contains(rest)),
        }
    }

    /// Whether the set holds `path` or anything below it.
    pub fn reaches(&self, path: &[String]) -> bool {
        match path {
            [] => !self.is_empty(),
            [first, rest @ ..] => self
                .0
                .get(first)
                .is_some_and(|child| rest.is_empty() || child.reaches(rest)),
        }
    }

    pub fn insert(&mut self, path: &[String]) {
        if let [first, rest @ ..] = path {
            self.0.entry(first.clone()).or_default().insert(rest);
        }
    }

    /// Takes `path` out, and every map left empty above it.
    pub fn remove(&mut self, path: &[String]) {
        match path {
            [] => {}
            [last] => {
                if self.0.get(last).is_some_and(FieldSet::is_empty) {
                    self.0.remove(last);
                }
            }
            [first, rest @ ..] => {
                if let Some(child) = self.0.get_mut(first) {
                    child.remove(rest);
                    if child.is_empty() {
                        self.0.remove(first);
                    }
                }
            }
        }
    }
}

/// The fields an object (or an applied configuration) sets. `strict`: an element of a keyed
/// list without its key is an error (an applied configuration), not skipped (a live object).
pub fn fields_of(kind: &str, object: &Value, strict: bool) -> Result<FieldSet, ApiError> {
    let mut set = FieldSet::default();
    let Some(map) = object.as_object() else {
        return Ok(set);
    };
    for (name, value) in map {
        match name.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                let Some(metadata) = value.as_object() else {
                    continue;
                };
                let tracked: Map<String, Value> = metadata
                    .iter()
                    .filter(|(field, _)| !is_bookkeeping(field))
                    .map(|(field, value)| (field.clone(), value.clone()))
                    .collect();
                let mut below = FieldSet::default();
                let mut path = vec!["metadata"];
                collect_map(kind, &mut path, &tracked, strict, &mut below)?;
                if !below.is_empty() {
                    set.0.insert("f:metadata".into(), below);
                }
            }
            _ => {
                let mut path = vec![name.as_str()];
                let child = field_of(kind, &mut path, value, strict)?;
                set.0.insert(format!("f:{name}"), child);
            }
        }
    }
    Ok(set)
}

/// Metadata the server keeps, which no manager owns.
fn is_bookkeeping(field: &str) -> bool {
    matches!(
        field,
        "name"
            | "namespace"
            | "uid"
            | "resourceVersion"
            | "generation"
            | "creationTimestamp"
            | "deletionTimestamp"
            | "deletionGracePeriodSeconds"
            | "managedFields"
            | "selfLink"
    )
}

fn collect_map<'a>(
    kind: &str,
    path: &mut Vec<&'a str>,
    map: &'a Map<String, Value>,
    strict: bool,
    out: &mut FieldSet,
) -> Result<(), ApiError> {
    for (name, value) in map {
        path.push(name);
        let child = field_of(kind, path, value, strict)?;
        path.pop();
        out.0.insert(format!("f:{name}"), child);
    }
    Ok(())
}

/// How apply treats a list.
pub(super) enum ListKind {
    /// Elements matched by `key` (and by `protocol`, TCP when left out, for ports).
    Keyed {
        key: &'static str,
        with_protocol: bool,
    },
    /// Scalars merged as a set.
    Set,
    Atomic,
}

/// The lists of the strategic-merge table, with apply's own keys for ports: a port is its
/// number and protocol (53/UDP and 53/TCP are two ports).
pub(super) fn list_kind(kind: &str, path: &[&str]) -> ListKind {
    match list_strategy(kind, path) {
        Some(ListStrategy::MergeByKey(key)) => ListKind::Keyed {
            key,
            with_protocol: matches!(key, "containerPort")
                || (kind == "Service" && path == ["spec", "ports"]),
        },
        Some(ListStrategy::MergeScalars) => ListKind::Set,
        None => ListKind::Atomic,
    }
}

/// The protocol a port without one has.
const DEFAULT_PROTOCOL: &str = "TCP";

/// The fields below one field's `value` (empty: the field is a leaf).
fn field_of<'a>(
    kind: &str,
    path: &mut Vec<&'a str>,
    value: &'a Value,
    strict: bool,
) -> Result<FieldSet, ApiError> {
    let mut set = FieldSet::default();
    match value {
        Value::Object(map) => collect_map(kind, path, map, strict, &mut set)?,
        Value::Array(items) => match list_kind(kind, path) {
            ListKind::Keyed { key, with_protocol } => {
                for (index, item) in items.iter().enumerate() {
                    let Some(element) = element_key(key, with_protocol, item) else {
                        if strict {
                            return Err(ApiError::bad_field(
                                format!(".{}", path.join(".")),
                                format!(
                                    "element {index}: associative list with keys has an \
                                     element that omits key field {key:?}"
                                ),
                            ));
                        }
                        continue;
                    };
                    if strict && set.0.contains_key(&element) {
                        return Err(ApiError::bad_field(
                            format!(".{}", path.join(".")),
                            format!(
                                "element {index}: duplicate entries for key {}",
                                display_path(std::slice::from_ref(&element))
                            ),
                        ));
                    }
                    let mut below = FieldSet::default();
                    if let Value::Object(map) = item {
                        collect_map(kind, path, map, strict, &mut below)?;
                    }
                    below.0.insert(".".into(), FieldSet::default());
                    set.0.insert(element, below);
                }
            }
            ListKind::Set => {
                for item in items {
                    set.0.insert(format!("v:{item}"), FieldSet::default());
                }
            }
            ListKind::Atomic => {}
        },
        _ => {}
    }
    Ok(set)
}

/// `k:{"<key>":<value>}` for an element of a list keyed by `key` (and `"protocol"`).
pub(super) fn element_key(key: &str, with_protocol: bool, item: &Value) -> Option<String> {
    let value = item.get(key)?;
    let mut fields = Map::new();
    fields.insert(key.to_string(), value.clone());
    if with_protocol {
        let protocol = item.get("protocol").cloned();
        fields.insert(
            "protocol".into(),
            protocol.unwrap_or_else(|| Value::from(DEFAULT_PROTOCOL)),
        );
    }
    Some(format!("k:{}", Value::Object(fields)))
}

/// The value at `path` in `object`, if there is one.
pub fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut here = object;
    for step in path {
        here = child(here, step)?;
    }
    Some(here)
}

fn child<'a>(value: &'a Value, step: &str) -> Option<&'a Value> {
    if step == "." {
        return Some(value);
    }
    if let Some(field) = step.strip_prefix("f:") {
        return value.as_object()?.get(field);
    }
    let index = element_index(value.as_array()?, step)?;
    value.as_array()?.get(index)
}

/// Which element of `items` the `k:` or `v:` step names.
pub(super) fn element_index(items: &[Value], step: &str) -> Option<usize> {
    if let Some(key) = step.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(key).ok()?;
        return items.iter().position(|item| {
            key.iter().all(|(field, wanted)| match item.get(field) {
                Some(value) => value == wanted,
                None => field == "protocol" && wanted == DEFAULT_PROTOCOL,
            })
        });
    }
    let member: Value = serde_json::from_str(step.strip_prefix("v:")?).ok()?;
    items.iter().position(|item| *item == member)
}

/// Whether `field` (`f:name`) is one of the key fields of the element step `element`.
pub(super) fn is_key_field(element: &str, field: &str) -> bool {
    let (Some(key), Some(field)) = (element.strip_prefix("k:"), field.strip_prefix("f:")) else {
        return false;
    };
    serde_json::from_str::<Map<String, Value>>(key).is_ok_and(|key| key.contains_key(field))
}

pub(super) fn value_at_mut<'a>(object: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut here = object;
    for step in path {
        if step == "." {
            continue;
        }
        here = if let Some(field) = step.strip_prefix("f:") {
            here.as_object_mut()?.get_mut(field)?
        } else {
            let index = element_index(here.as_array()?, step)?;
            here.as_array_mut()?.get_mut(index)?
        };
    }
    Some(here)
}

/// `.spec.template.spec.containers[name="web"].image`, as Kubernetes names a field in
/// conflicts.
pub fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for step in path {
        if let Some(field) = step.strip_prefix("f:") {
            out.push('.');
            out.push_str(field);
        } else if let Some(key) = step.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
            let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(member) = step.strip_prefix("v:") {
            out.push_str(&format!("[={member}]"));
        }
    }
    out
}
