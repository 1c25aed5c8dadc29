//! The generic part of `describe`: fields as indented YAML-ish `key: value` lines, for kinds
//! without a describer of their own (kubectl's unstructured describer does the same).

use serde_json::{Map, Value};

use super::describe_writer::Writer;

/// Any other kind: its `spec` and `data`, then the other top-level fields and `status`, as
/// indented YAML-ish `key: value` lines.
pub(crate) fn generic(w: &mut Writer, object: &Value) {
    let Some(fields) = object.as_object() else {
        return;
    };
    let mut keys: Vec<&String> = fields
        .keys()
        .filter(|k| !matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
        .collect();
    let rank = |k: &str| match k {
        "spec" => 0,
        "data" => 1,
        "status" => 3,
        _ => 2,
    };
    keys.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
    for key in keys {
        let title = capitalized(key);
        match &fields[key] {
            Value::Object(map) if !map.is_empty() => {
                w.heading(0, &title);
                yaml_map(w, 1, map);
            }
            Value::Array(items) if !items.is_empty() => {
                w.heading(0, &title);
                yaml_items(w, 1, items);
            }
            value => yaml_scalar(w, 0, &title, value),
        }
    }
}

/// `spec` → `Spec`, for the section titles of [`generic`].
fn capitalized(key: &str) -> String {
    let mut chars = key.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// The fields of `map`, sorted by key, nested maps and lists indented below their key.
fn yaml_map(w: &mut Writer, level: usize, map: &Map<String, Value>) {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    for key in keys {
        match &map[key] {
            Value::Object(inner) if !inner.is_empty() => {
                w.heading(level, key);
                yaml_map(w, level + 1, inner);
            }
            Value::Array(items) if !items.is_empty() => {
                w.heading(level, key);
                yaml_items(w, level + 1, items);
            }
            value => yaml_scalar(w, level, key, value),
        }
    }
}

/// List items as `- value`, a map item's fields under its `- `.
fn yaml_items(w: &mut Writer, level: usize, items: &[Value]) {
    for item in items {
        match item {
            Value::Object(map) if !map.is_empty() => {
                let mut inner = Writer::default();
                yaml_map(&mut inner, level + 1, map);
                // The item's first line trades its last indentation step for the dash.
                let dash_at = level * 2;
                let mut text = inner.into_lines();
                if text.len() >= dash_at + 2 {
                    text.replace_range(dash_at..dash_at + 2, "- ");
                }
                w.push_lines(&text);
            }
            other => w.line(level, &format!("- {}", scalar_text(other))),
        }
    }
}

/// `key:<tab>value`; a multi-line string as a `|` block below its key.
fn yaml_scalar(w: &mut Writer, level: usize, key: &str, value: &Value) {
    match value.as_str() {
        Some(text) if text.trim_end().contains('\n') => {
            w.field(level, key, "|");
            for line in text.trim_end().lines() {
                w.raw_line(level + 1, line);
            }
        }
        _ => w.field(level, key, &scalar_text(value)),
    }
}

/// A leaf value as YAML would show it; empty maps and lists as `{}` and `[]`.
fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        Value::Object(map) if map.is_empty() => "{}".into(),
        Value::Array(items) if items.is_empty() => "[]".into(),
        other => other.to_string(),
    }
}
