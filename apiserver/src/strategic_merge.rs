//! Strategic merge patch (`application/strategic-merge-patch+json`), what `kubectl apply`,
//! `edit` and `patch` send for built-in kinds: a JSON merge patch in which some lists merge
//! element by element, matched by a key (containers by `name`), instead of being replaced.
//!
//! Which lists merge, and by what key, is the Kubernetes types' `patchStrategy` and
//! `patchMergeKey` markers: [`list_strategy`] holds that table for the served kinds (checked
//! against v1.34's markers), [`replaces_map`] the one map that is replaced, not merged. Lists not
//! in it are replaced whole (atomic), as Kubernetes does for lists without markers.
//! Directives: `$patch: replace|delete|merge` (in a map or a list element),
//! `$retainKeys`, `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`. Pure.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// Elements are objects matched by this field (`patchStrategy:"merge"`,
    /// `patchMergeKey:"<key>"`).
    MergeByKey(&'static str),
    /// A list of scalars merged as a set (`finalizers`).
    MergeScalars,
}

/// Where the pod spec sits in each kind that has one.
fn pod_spec_root(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &["spec"],
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "ReplicationController" => &["spec", "template", "spec"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => &[],
    }
}

/// The strategy of the list at `path` (field names from the object's root, list elements
/// left out) in an object of `kind`; `None`: the list is replaced whole.
pub fn list_strategy(kind: &str, path: &[&str]) -> Option<ListStrategy> {
    use ListStrategy::{MergeByKey, MergeScalars};
    match path {
        [.., "metadata", "finalizers"] => return Some(MergeScalars),
        [.., "metadata", "ownerReferences"] => return Some(MergeByKey("uid")),
        ["status", "conditions"] => return Some(MergeByKey("type")),
        _ => {}
    }
    let root = pod_spec_root(kind);
    if !root.is_empty() && path.starts_with(root) {
        let strategy = match &path[root.len()..] {
            ["containers" | "initContainers" | "ephemeralContainers"] => MergeByKey("name"),
            ["containers" | "initContainers" | "ephemeralContainers", field] => match *field {
                "ports" => MergeByKey("containerPort"),
                "env" => MergeByKey("name"),
                "volumeMounts" => MergeByKey("mountPath"),
                "volumeDevices" => MergeByKey("devicePath"),
                _ => return None,
            },
            ["volumes" | "imagePullSecrets" | "resourceClaims" | "schedulingGates"] => {
                MergeByKey("name")
            }
            ["hostAliases"] => MergeByKey("ip"),
            ["topologySpreadConstraints"] => MergeByKey("topologyKey"),
            _ => return None,
        };
        return Some(strategy);
    }
    match (kind, path) {
        ("Service", ["spec", "ports"]) => Some(MergeByKey("port")),
        ("Node", ["status", "addresses"]) => Some(MergeByKey("type")),
        ("Node", ["spec", "podCIDRs"]) => Some(MergeScalars),
        ("Pod", ["status", "podIPs" | "hostIPs"]) => Some(MergeByKey("ip")),
        ("Pod", ["status", "resourceClaimStatuses"]) => Some(MergeByKey("name")),
        ("ServiceAccount", ["secrets"]) => Some(MergeByKey("name")),
        _ => None,
    }
}

/// Whether the patch of the field at `path` may carry `$retainKeys` (kubectl sends it for
/// these: a Deployment's strategy, each volume's source, each resource claim), which
/// `merge_map` honours wherever it appears. For the OpenAPI documents' markers.
pub fn retains_keys(kind: &str, path: &[&str]) -> bool {
    if kind == "Deployment" && path == ["spec", "strategy"] {
        return true;
    }
    let root = pod_spec_root(kind);
    !root.is_empty()
        && path.starts_with(root)
        && matches!(&path[root.len()..], ["volumes" | "resourceClaims"])
        || (kind == "Pod" && path == ["status", "resourceClaimStatuses"])
}

/// Whether the map at `path` is replaced by the patch's, not merged into
/// (`patchStrategy:"replace"`: a PodDisruptionBudget's selector).
pub fn replaces_map(kind: &str, path: &[&str]) -> bool {
    matches!((kind, path), ("PodDisruptionBudget", ["spec", "selector"]))
}

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// `original` with `patch` applied, for an object of `kind`.
pub fn apply(kind: &str, original: &Value, patch: &Value) -> Result<Value, ApiError> {
    let Value::Object(patch) = patch else {
        return Err(ApiError::bad_request(
            "a strategic merge patch must be a JSON object",
        ));
    };
    let mut path = Vec::new();
    match merge_map(kind, &mut path, original.as_object(), patch)? {
        Some(merged) => Ok(Value::Object(merged)),
        None => Err(ApiError::bad_request(
            "a strategic merge patch cannot delete the whole object: use DELETE",
        )),
    }
}

/// The merge of a map; `None` when the patch deletes it (`$patch: delete`).
fn merge_map<'a>(
    kind: &str,
    path: &mut Vec<&'a str>,
    original: Option<&Map<String, Value>>,
    patch: &'a Map<String, Value>,
) -> Result<Option<Map<String, Value>>, ApiError> {
    let mut merged = match patch.get(PATCH).and_then(Value::as_str) {
        None | Some("merge") => original.cloned().unwrap_or_default(),
        Some("replace") => Map::new(),
        Some("delete") => return Ok(None),
        Some(other) => return Err(unknown_directive(path, other)),
    };
    for (key, value) in patch {
        if key == PATCH || key == RETAIN_KEYS || key.starts_with(SET_ELEMENT_ORDER) {
            continue;
        }
        if let Some(list) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            let Value::Array(gone) = value else {
                return Err(bad_directive(path, key, "must be a list"));
            };
            if let Some(Value::Array(items)) = merged.get_mut(list) {
                items.retain(|item| !gone.contains(item));
            }
            continue;
        }
        path.push(key);
        let current = merged.get(key.as_str());
        let next = match value {
            Value::Null => None,
            Value::Object(inner) if replaces_map(kind, path) => {
                merge_map(kind, path, None, inner)?.map(Value::Object)
            }
            Value::Object(inner) => {
                merge_map(kind, path, current.and_then(Value::as_object), inner)?.map(Value::Object)
            }
            Value::Array(items) => Some(Value::Array(merge_list(
                kind,
                path,
                current.and_then(Value::as_array),
                items,
            )?)),
            scalar => Some(scalar.clone()),
        };
        path.pop();
        match next {
            Some(value) => {
                merged.insert(key.clone(), value);
            }
            None => {
                merged.remove(key.as_str());
            }
        }
    }
    for (key, value) in patch {
        if let Some(list) = key.strip_prefix(SET_ELEMENT_ORDER) {
            if let (Value::Array(order), Some(Value::Array(items))) = (value, merged.get_mut(list))
            {
                path.push(list);
                let key = match list_strategy(kind, path) {
                    Some(ListStrategy::MergeByKey(field)) => Some(field),
                    _ => None,
                };
                path.pop();
                reorder(items, order, key);
            }
        }
    }
    if let Some(retained) = patch.get(RETAIN_KEYS) {
        let Value::Array(retained) = retained else {
            return Err(bad_directive(
                path,
                RETAIN_KEYS,
                "must be a list of field names",
            ));
        };
        merged.retain(|key, _| retained.iter().any(|kept| kept.as_str() == Some(key)));
    }
    Ok(Some(merged))
}

fn merge_list<'a>(
    kind: &str,
    path: &mut Vec<&'a str>,
    original: Option<&Vec<Value>>,
    patch: &'a [Value],
) -> Result<Vec<Value>, ApiError> {
    let replaces = patch
        .iter()
        .any(|item| item.get(PATCH).and_then(Value::as_str) == Some("replace"));
    let strategy = list_strategy(kind, path);
    let (Some(strategy), Some(original), false) = (strategy, original, replaces) else {
        // Replaced whole: the patch's elements, directives (and any nested ones) resolved.
        return patch
            .iter()
            .filter(|item| item.get(PATCH).is_none())
            .map(|item| resolve(kind, path, item))
            .collect();
    };
    let mut merged = original.clone();
    match strategy {
        ListStrategy::MergeScalars => {
            for item in patch {
                if !merged.contains(item) {
                    merged.push(item.clone());
                }
            }
        }
        ListStrategy::MergeByKey(field) => {
            for item in patch {
                let Value::Object(element) = item else {
                    return Err(bad_directive(
                        path,
                        field,
                        "the elements of this list are objects merged by this key",
                    ));
                };
                let Some(wanted) = element.get(field) else {
                    return Err(ApiError::bad_field(
                        path.join("."),
                        format!("an element of this list has no {field:?}, its merge key"),
                    ));
                };
                let at = merged.iter().position(|m| m.get(field) == Some(wanted));
                match (element.get(PATCH).and_then(Value::as_str), at) {
                    (Some("delete"), Some(at)) => {
                        merged.remove(at);
                    }
                    (Some("delete"), None) => {}
                    (_, Some(at)) => {
                        if let Some(next) = merge_map(kind, path, merged[at].as_object(), element)?
                        {
                            merged[at] = Value::Object(next);
                        }
                    }
                    (_, None) => {
                        if let Some(next) = merge_map(kind, path, None, element)? {
                            merged.push(Value::Object(next));
                        }
                    }
                }
            }
        }
    }
    Ok(merged)
}

/// A patch value taken as it is, its directives applied to nothing.
fn resolve<'a>(kind: &str, path: &mut Vec<&'a str>, value: &'a Value) -> Result<Value, ApiError> {
    Ok(match value {
        Value::Object(map) => Value::Object(merge_map(kind, path, None, map)?.unwrap_or_default()),
        other => other.clone(),
    })
}

/// Puts `items` in `order` (`$setElementOrder`): those it names in its order, each of the
/// others kept where it was relative to them (as apimachinery merges the two by their
/// positions in the list as it was).
fn reorder(items: &mut Vec<Value>, order: &[Value], key: Option<&str>) {
    let identity = |item: &Value| match key {
        Some(field) => item.get(field).cloned(),
        None => Some(item.clone()),
    };
    let rank = |item: &Value| {
        let id = identity(item);
        order.iter().position(|o| id.is_some() && identity(o) == id)
    };
    type Placed = Vec<(usize, Value)>;
    let (mut named, others): (Placed, Placed) = items
        .drain(..)
        .enumerate()
        .partition(|(_, item)| rank(item).is_some());
    named.sort_by_key(|(_, item)| rank(item));
    // Merge: at each step the one that stood earlier in the list as it was goes first.
    let mut named = named.into_iter().peekable();
    let mut others = others.into_iter().peekable();
    loop {
        let take_named = match (named.peek(), others.peek()) {
            (Some((a, _)), Some((b, _))) => a < b,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_named {
            named.next()
        } else {
            others.next()
        };
        items.extend(next.map(|(_, item)| item));
    }
}

fn unknown_directive(path: &[&str], directive: &str) -> ApiError {
    ApiError::bad_field(
        path.join("."),
        format!("unknown $patch directive {directive:?}: use replace, merge or delete"),
    )
}

fn bad_directive(path: &[&str], directive: &str, what: &str) -> ApiError {
    ApiError::bad_field(path.join("."), format!("{directive} {what}"))
}

#[cfg(test)]
#[path = "strategic_merge_tests.rs"]
mod tests;
