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
//! The paths and their sets are `field_ownership/fields.rs`'s; this file is who owns them.
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

use serde_json::{Map, Value};

use crate::error::{ApiError, FieldConflict};

mod fields;
pub use fields::{display_path, fields_of, value_at, FieldPath, FieldSet};
use fields::{element_index, element_key, is_key_field, list_kind, value_at_mut, ListKind};

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

#[cfg(test)]
#[path = "field_ownership_tests.rs"]
mod tests;
