//! Server-side apply: who owns which fields of an object (`metadata.managedFields`), and what
//! an apply makes of the object. Pure.
//!
//! A manager's fields are a [`FieldSet`] in Kubernetes' `FieldsV1` form: `f:<field>` for a
//! field of a map, `k:{"name":"web"}` for the element of a keyed list (containers by name:
//! the merge keys of [`crate::strategic_merge::list_strategy`], with ports keyed by port and
//! protocol as apply keys them), `v:<json>` for a member of a
//! list of scalars merged as a set (finalizers), `.` for such an element itself. Other lists
//! are atomic: owned, replaced and compared whole.
//!
//! - [`apply`]: a manager's configuration merged into the live object. A field the config
//!   sets that another manager owns with another value is a conflict, unless forced (then the
//!   field changes owner); the same value makes the two shared owners. A field the manager
//!   applied before and leaves out now is removed, if nobody else owns it.
//! - [`track_update`]: an ordinary write (update, patch) to an object that has managed
//!   fields: the fields it changed move to the writer's `Update` entry.
//!
//! Left out, as Kubernetes' own apply leaves them out: `apiVersion`, `kind`, the identity and
//! bookkeeping fields of `metadata`, and `status` (owned by its writers, not tracked here).
//! Objects that were never applied carry no managed fields: creating or updating them
//! records nothing (Kubernetes records an `Update` entry for every write).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::{ApiError, FieldConflict};
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
enum ListKind {
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
fn list_kind(kind: &str, path: &[&str]) -> ListKind {
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
fn element_key(key: &str, with_protocol: bool, item: &Value) -> Option<String> {
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
fn element_index(items: &[Value], step: &str) -> Option<usize> {
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

/// One of `metadata.managedFields`.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedEntry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: String,
    pub fields: FieldSet,
}

impl ManagedEntry {
    fn from_json(value: &Value) -> Option<ManagedEntry> {
        let text = |field: &str| value[field].as_str().unwrap_or("").to_string();
        Some(ManagedEntry {
            manager: text("manager"),
            operation: text("operation"),
            api_version: text("apiVersion"),
            time: text("time"),
            subresource: text("subresource"),
            fields: match value.get("fieldsV1") {
                Some(fields) => FieldSet::from_json(fields)?,
                None => FieldSet::default(),
            },
        })
    }

    fn to_json(&self) -> Value {
        let mut entry = Map::new();
        // Go's omitempty: an empty time would not even decode.
        for (field, value) in [
            ("manager", &self.manager),
            ("operation", &self.operation),
            ("apiVersion", &self.api_version),
            ("time", &self.time),
            ("subresource", &self.subresource),
        ] {
            if !value.is_empty() {
                entry.insert(field.into(), Value::from(value.as_str()));
            }
        }
        entry.insert("fieldsType".into(), Value::from("FieldsV1"));
        entry.insert("fieldsV1".into(), self.fields.to_json());
        Value::Object(entry)
    }

    fn is(&self, manager: &str, operation: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource.is_empty()
    }
}

/// The managed fields an object carries (entries that cannot be read are left out).
pub fn managed_entries(object: &Value) -> Vec<ManagedEntry> {
    object["metadata"]["managedFields"]
        .as_array()
        .map(|entries| entries.iter().filter_map(ManagedEntry::from_json).collect())
        .unwrap_or_default()
}

fn set_managed_entries(object: &mut Value, entries: &[ManagedEntry]) {
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if entries.is_empty() {
        metadata.remove("managedFields");
    } else {
        let entries = entries.iter().map(ManagedEntry::to_json).collect();
        metadata.insert("managedFields".into(), Value::Array(entries));
    }
}

/// Who applies, and how.
pub struct Applier<'a> {
    pub manager: &'a str,
    /// The configuration's `apiVersion`, recorded in the entry.
    pub api_version: &'a str,
    /// Take fields other managers own, instead of failing with the conflicts.
    pub force: bool,
    /// RFC 3339, for the entry's `time`.
    pub now: &'a str,
}

/// `config` applied by `applier` to `live` (`None`: the object does not exist yet): the
/// object to write, with its managed fields, or the conflicts that stop it.
pub fn apply(
    kind: &str,
    live: Option<&Value>,
    config: &Value,
    applier: &Applier<'_>,
) -> Result<Result<Value, Vec<FieldConflict>>, ApiError> {
    let applied = fields_of(kind, config, true)?;
    let empty = Value::Object(Map::new());
    let live = live.unwrap_or(&empty);
    let mut entries = managed_entries(live);
    let mine = entries
        .iter()
        .position(|entry| entry.is(applier.manager, "Apply"));
    let before = mine
        .map(|at| entries[at].fields.clone())
        .unwrap_or_default();

    let mut conflicts = Vec::new();
    for path in applied.leaves() {
        if path.last().is_some_and(|step| step == ".") {
            continue;
        }
        let wanted = value_at(config, &path);
        if value_at(live, &path) == wanted {
            continue;
        }
        for entry in entries.iter_mut() {
            // A manager's Update entry is another owner than its Apply entry, as in Kubernetes.
            if entry.is(applier.manager, "Apply") || !entry.fields.contains(&path) {
                continue;
            }
            if applier.force {
                entry.fields.remove(&path);
            } else {
                conflicts.push(FieldConflict {
                    manager: entry.manager.clone(),
                    api_version: entry.api_version.clone(),
                    field: display_path(&path),
                });
            }
        }
    }
    if !conflicts.is_empty() {
        return Ok(Err(conflicts));
    }

    let mut object = merge(kind, &mut Vec::new(), live, config);
    // What this manager applied before and no longer does goes, unless the configuration
    // still reaches it (an empty list now filled) or another owner has it or anything below
    // it (a list element goes only with all its fields).
    let dropped: Vec<FieldPath> = before
        .leaves()
        .into_iter()
        .filter(|path| {
            let target = owned_target(path);
            !applied.reaches(target)
                && !entries.iter().any(|entry| {
                    !entry.is(applier.manager, "Apply") && entry.fields.reaches(target)
                })
        })
        .collect();
    for path in &dropped {
        remove_at(&mut object, path);
    }
    // Nothing changed but the entry's time: the object stays as it is (no write, no event).
    if mine.is_some_and(|at| entries[at].fields == applied)
        && without_managed(&object) == without_managed(live)
    {
        return Ok(Ok(live.clone()));
    }

    let entry = ManagedEntry {
        manager: applier.manager.to_string(),
        operation: "Apply".into(),
        api_version: applier.api_version.to_string(),
        time: applier.now.to_string(),
        subresource: String::new(),
        fields: applied,
    };
    match mine {
        Some(at) => entries[at] = entry,
        None => entries.push(entry),
    }
    entries.retain(|entry| !entry.fields.is_empty());
    set_managed_entries(&mut object, &entries);
    Ok(Ok(object))
}

/// What a leaf path stands for when it goes: a list element for its `.` and for its key
/// fields (an element that stays keeps its key), else itself.
fn owned_target(path: &[String]) -> &[String] {
    match path {
        [element @ .., last] if last == "." => element,
        [.., element, field] if is_key_field(element, field) => &path[..path.len() - 1],
        whole => whole,
    }
}

/// Whether `field` (`f:name`) is one of the key fields of the element step `element`.
fn is_key_field(element: &str, field: &str) -> bool {
    let (Some(key), Some(field)) = (element.strip_prefix("k:"), field.strip_prefix("f:")) else {
        return false;
    };
    serde_json::from_str::<Map<String, Value>>(key).is_ok_and(|key| key.contains_key(field))
}

fn without_managed(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    object
}

/// An ordinary write by `manager` turned `before` into `after`: the fields it changed leave
/// their owners for the writer's `Update` entry. `after`'s own `managedFields`, if it sets
/// them to something else than `before`'s, are taken as given (`[{}]` clears them), as
/// Kubernetes does; left out, they are `before`'s. Objects with no managed fields are left
/// as they are.
pub fn track_update(
    kind: &str,
    before: &Value,
    mut after: Value,
    manager: &str,
    api_version: &str,
    now: &str,
) -> Value {
    let given = &after["metadata"]["managedFields"];
    let kept = &before["metadata"]["managedFields"];
    if !given.is_null() && given != kept {
        if given.as_array().is_some_and(|entries| {
            entries.len() == 1 && entries[0].as_object().is_some_and(Map::is_empty)
        }) {
            set_managed_entries(&mut after, &[]);
        }
        return after;
    }
    let mut entries = managed_entries(before);
    if entries.is_empty() {
        set_managed_entries(&mut after, &[]);
        return after;
    }
    let changed = changed_fields(kind, before, &after);
    if changed.is_empty() {
        set_managed_entries(&mut after, &entries);
        return after;
    }
    for entry in entries.iter_mut() {
        for path in &changed {
            entry.fields.remove(path);
        }
    }
    let mine = entries
        .iter()
        .position(|entry| entry.is(manager, "Update") && entry.api_version == api_version);
    let mut entry = match mine {
        Some(at) => entries.remove(at),
        None => ManagedEntry {
            manager: manager.to_string(),
            operation: "Update".into(),
            api_version: api_version.to_string(),
            time: String::new(),
            subresource: String::new(),
            fields: FieldSet::default(),
        },
    };
    entry.time = now.to_string();
    for path in changed
        .iter()
        .filter(|path| value_at(&after, path).is_some())
    {
        entry.fields.insert(path);
    }
    entries.push(entry);
    entries.retain(|entry| !entry.fields.is_empty());
    set_managed_entries(&mut after, &entries);
    after
}

/// The leaf paths whose value differs between `before` and `after` (set, changed or gone).
fn changed_fields(kind: &str, before: &Value, after: &Value) -> Vec<FieldPath> {
    let (Ok(old), Ok(new)) = (
        fields_of(kind, before, false),
        fields_of(kind, after, false),
    ) else {
        return Vec::new();
    };
    // A list element itself (`.`) changes only when it comes or goes; a change inside it
    // is its fields'.
    let differs = |path: &FieldPath| {
        let (old, new) = (value_at(before, path), value_at(after, path));
        if path.last().is_some_and(|step| step == ".") {
            old.is_some() != new.is_some()
        } else {
            old != new
        }
    };
    let mut changed: Vec<FieldPath> = new.leaves().into_iter().filter(differs).collect();
    changed.extend(
        old.leaves()
            .into_iter()
            .filter(|path| value_at(after, path).is_none()),
    );
    changed
}

/// `config` merged into `live`: maps field by field, keyed lists element by element, set
/// lists as sets, everything else replaced.
fn merge<'a>(kind: &str, path: &mut Vec<&'a str>, live: &Value, config: &'a Value) -> Value {
    match (live, config) {
        (Value::Object(live), Value::Object(config)) => {
            let mut merged = live.clone();
            for (name, value) in config {
                path.push(name);
                let next = match live.get(name) {
                    Some(current)
                        if !(path.len() == 2
                            && path[0] == "metadata"
                            && name == "managedFields") =>
                    {
                        merge(kind, path, current, value)
                    }
                    _ => value.clone(),
                };
                path.pop();
                merged.insert(name.clone(), next);
            }
            Value::Object(merged)
        }
        (Value::Array(live), Value::Array(config)) => match list_kind(kind, path) {
            ListKind::Keyed { key, with_protocol } => {
                let mut merged = live.clone();
                for item in config {
                    let found = element_key(key, with_protocol, item)
                        .and_then(|step| element_index(&merged, &step));
                    match found {
                        Some(at) => merged[at] = merge(kind, path, &merged[at], item),
                        None => merged.push(item.clone()),
                    }
                }
                Value::Array(merged)
            }
            ListKind::Set => {
                let mut merged = live.clone();
                for item in config {
                    if !merged.contains(item) {
                        merged.push(item.clone());
                    }
                }
                Value::Array(merged)
            }
            ListKind::Atomic => Value::Array(config.clone()),
        },
        _ => config.clone(),
    }
}

/// Removes the field, element or set member at `path`, and maps it leaves empty.
fn remove_at(object: &mut Value, path: &[String]) {
    let path = match path {
        [parent @ .., last] if last == "." => parent,
        whole => whole,
    };
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let Some(container) = value_at_mut(object, parents) else {
        return;
    };
    match container {
        Value::Object(map) => {
            if let Some(field) = last.strip_prefix("f:") {
                map.remove(field);
            }
        }
        Value::Array(items) => {
            if let Some(at) = element_index(items, last) {
                items.remove(at);
            }
        }
        _ => {}
    }
    // Maps emptied by the removal go too (not the object's own metadata).
    if parents.len() > 1
        && value_at(object, parents)
            .is_some_and(|value| value.as_object().is_some_and(Map::is_empty))
    {
        remove_at(object, parents);
    }
}

fn value_at_mut<'a>(object: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
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

#[cfg(test)]
#[path = "field_ownership_tests.rs"]
mod tests;
